"""The results page's extracts elsewhere in a checkout, kept equal to the records: README.md's claim-by-claim table
(the claims README chooses, each row's numbers and verdict as the page has them) and lesson 8's table of the paper's
model's interventions, seed by seed (sweep_report.seed_tables of the add runs)."""

from __future__ import annotations

from pathlib import Path

from tinygrok.lab import recipes, sweep_report
from tinygrok.run.runs import RunError, write_text

README_HEADING = "## The paper, claim by claim"
LESSON = Path("lessons") / "08_interventions.py"
LESSON_HEADING = "# ## On the paper's model, seed by seed"
PAGE_COLUMNS = (1, 2, 3, 5)  # of a results page's row: claim, paper, tinygrok, verdict


def cells(line: str) -> list[str]:
    """A markdown table row's cells, stripped."""
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def check(checkout: Path) -> None:
    """A RunError (one line) unless `checkout` holds README.md and lesson 8, each with its table under its heading:
    asked before a results page is written, so that a wrong --checkout costs nothing."""
    for path, heading, prefix in _places(checkout):
        _table_span(_read(path), heading, prefix, path)


def texts(checkout: Path, page: str, runs: list[dict]) -> dict[Path, str]:
    """README.md's and lesson 8's texts in `checkout` with their tables made from `page` (a results page's text)
    and `runs` (its records' entries). A RunError if a file or its table is missing, or README names a claim the
    page lacks."""
    (readme, *readme_at), (lesson, *lesson_at) = _places(checkout)
    readme_text, lesson_text = _read(readme), _read(lesson)
    claims = {row[1]: row for row in (cells(line) for line in page.splitlines() if line.startswith("| §"))}
    chosen = [cells(line)[0] for line in _table_span(readme_text, *readme_at, readme)[1][2:]]  # below its header
    if missing := [claim for claim in chosen if claim not in claims]:
        raise RunError(f"{readme}'s claim-by-claim table names claims the results page lacks: {'; '.join(missing)}")
    claim_table = sweep_report.table(["claim", "paper", "tinygrok", "verdict"], [
        [claims[claim][i] for i in PAGE_COLUMNS] for claim in chosen
    ])  # fmt: skip
    batches = recipes.INTERVENTION_SETTINGS["batches"]  # the reference's protocol
    add = [run for run in runs if run["op"] == "add" and run["batches"] == batches]
    seed_table = [line for line in sweep_report.seed_tables(add) if line.startswith("|")]
    if not seed_table:
        raise RunError(f"the records hold no intervention runs of add on {batches} batches for lesson 8's table")
    return {
        readme: _replace_table(readme_text, *readme_at, readme, claim_table),
        lesson: _replace_table(lesson_text, *lesson_at, lesson, "\n".join(seed_table)),
    }


def write(checkout: Path, page: Path, folder: Path) -> list[Path]:
    """Rewrite the extracts in `checkout` from the results page at `page` and its folder of records; the files
    written."""
    runs = sweep_report.recorded_runs(folder)[0]
    return [write_text(path, text) for path, text in texts(checkout, page.read_text(), runs).items()]


def _places(checkout: Path) -> tuple[tuple[Path, str, str], ...]:
    """(file, the heading its table is under, the prefix of the table's lines) of each extract."""
    return (checkout / "README.md", README_HEADING, ""), (checkout / LESSON, LESSON_HEADING, "# ")


def _read(path: Path) -> str:
    if not path.exists():
        raise RunError(f"{path} is not there: --checkout must be a tinygrok checkout's root")
    return path.read_text()


def _table_span(text: str, heading: str, prefix: str, path: Path) -> tuple[list[str], list[str], list[str]]:
    """`text`'s lines before the table under the line `heading` (its lines start `prefix` + "|"; no other heading
    comes between), the table's, and those after it. A RunError naming `path` if there is none."""
    lines = text.split("\n")
    if heading not in lines:
        raise RunError(f"{path} has no line {heading!r}, which its table is under")
    start = lines.index(heading) + 1
    while start < len(lines) and not lines[start].startswith((prefix + "|", prefix + "#")):
        start += 1
    end = start
    while end < len(lines) and lines[end].startswith(prefix + "|"):
        end += 1
    if end == start:
        raise RunError(f"{path} has no table under {heading!r}")
    return lines[:start], lines[start:end], lines[end:]


def _replace_table(text: str, heading: str, prefix: str, path: Path, table: str) -> str:
    """`text` with the table under the line `heading` replaced by `table`, each line after `prefix`."""
    before, _, after = _table_span(text, heading, prefix, path)
    return "\n".join(before + [prefix + line for line in table.split("\n")] + after)
