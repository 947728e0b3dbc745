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


def texts(checkout: Path, page: str, runs: list[dict]) -> dict[Path, str]:
    """README.md's and lesson 8's texts in `checkout` with their tables made from `page` (a results page's text)
    and `runs` (its records' entries). A RunError if a file or its table is missing, or README names a claim the
    page lacks."""
    readme, lesson = checkout / "README.md", checkout / LESSON
    readme_text, lesson_text = _read(readme), _read(lesson)
    claims = {row[1]: row for row in map(cells, page.splitlines()) if row[0].startswith("§")}
    chosen = [cells(line)[0] for line in _table_span(readme_text, README_HEADING, "")[1][2:]]  # below its header
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
        readme: _replace_table(readme_text, README_HEADING, "", claim_table),
        lesson: _replace_table(lesson_text, LESSON_HEADING, "# ", "\n".join(seed_table)),
    }


def write(checkout: Path, page: Path, folder: Path) -> list[Path]:
    """Rewrite the extracts in `checkout` from the results page at `page` and its folder of records; the files
    written."""
    runs = sweep_report.recorded_runs(folder)[0]
    return [write_text(path, text) for path, text in texts(checkout, page.read_text(), runs).items()]


def _read(path: Path) -> str:
    if not path.exists():
        raise RunError(f"{path} is not there: --checkout must be a tinygrok checkout's root")
    return path.read_text()


def _table_span(text: str, heading: str, prefix: str) -> tuple[list[str], list[str], list[str]]:
    """`text`'s lines before the first table after the line `heading` (its lines starting `prefix` + "|"), the
    table's, and those after it."""
    lines = text.split("\n")
    if heading not in lines:
        raise RunError(f"there is no line {heading!r} to find a table under")
    start = lines.index(heading)
    while start < len(lines) and not lines[start].startswith(prefix + "|"):
        start += 1
    end = start
    while end < len(lines) and lines[end].startswith(prefix + "|"):
        end += 1
    return lines[:start], lines[start:end], lines[end:]


def _replace_table(text: str, heading: str, prefix: str, table: str) -> str:
    """`text` with the first table after the line `heading` replaced by `table`, each line after `prefix`."""
    before, _, after = _table_span(text, heading, prefix)
    return "\n".join(before + [prefix + line for line in table.split("\n")] + after)
