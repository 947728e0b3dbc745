"""The README stays true: its set-up commands are what CI runs, its tables match the code, its Python example runs;
the README is a front door and docs/ holds the measurements, each page naming its commits once."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import copy_classroom_run

from tinygrok.lab import lessons, records
from tinygrok.science.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def setup_commands() -> list[str]:
    block = README.split("## Set-up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    run_it, test_it = setup_commands()
    install = run_it.rsplit(" && ", 1)[0]  # the README's first command, minus the training job itself
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and test_it in ci


PRESET_WORDS = {  # how the README's presets table says each setting
    "p": "p {}", "n_layers": "{} layers", "d_model": "d_model {}", "d_ff": "d_ff {}", "lr": "lr {}",
    "batch_size": "batch {}", "weight_decay": "weight decay {}", "beta2": "beta2 {}", "max_steps": "max {} steps",
    "eval_every": "evaluated every {} steps", "snapshot_every": "attention snapshots every {}",
    "onset_floor": "onset floor {}",
}  # fmt: skip


def test_presets_table_lists_every_preset_with_its_values():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|$", README, re.M)}
    assert set(PRESETS) <= set(rows)
    for name, overrides in PRESETS.items():
        for key, value in overrides.items():
            if isinstance(value, float):
                shown = f"{value:g}".replace("e-0", "e-")
            else:
                shown = f"{value // 1000}k" if value >= 100_000 else f"{value:,}"
            said = PRESET_WORDS[key].format(shown)
            assert re.search(rf"(^|, ){re.escape(said)}(,|$)", rows[name].strip()), f"README's {name} row lacks {said}"


COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}\b")  # a short commit hash
DOCS = ["results", "beyond", "differences", "speed", "architecture"]


def test_the_readme_is_a_front_door_without_commit_hashes():
    assert len(README.splitlines()) <= 200
    assert not COMMIT.findall(README)
    for page in DOCS:
        assert f"(docs/{page}.md)" in README


def test_docs_name_their_commits_only_in_the_table_at_their_top():
    """A page's numbers say once, at its top, which commits and machine they come from; no sentence names one."""
    for page in DOCS:
        lines = (ROOT / "docs" / f"{page}.md").read_text().splitlines()
        for number, line in enumerate(lines):
            if COMMIT.search(line):
                assert line.startswith("|") and number < 15, f"docs/{page}.md:{number + 1}: {line}"


def test_every_relative_link_leads_to_a_file():
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which is not there"


def test_the_walkthrough_table_is_its_recorded_runs():
    """The README's first table: the walkthrough's run (`tinygrok grok`: add, seed 42) and, in its last row, the
    intervention taking away all the gradient outside B (s = 1) on it, as the one-machine reproduction recorded them."""
    table = README.split("beside the paper:\n\n", 1)[1].split("\n\n", 1)[0]
    shown = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \|$", table, re.M))
    run = records.load(ROOT / "docs/records/grok_paper_add_s42.json.gz")["results"]
    taken = records.load(
        ROOT / "docs/records/intervene_shifted_paper_add_s42_hookproject-s1.0-basispca-start500.json.gz"
    )
    pc1, ratio = sorted(run["pc1"].values()), run["exec_random_ratio_weight_svd"]
    assert shown == {
        "grok step (test accuracy 90%)": str(run["grok_step_90"]),
        "curvature onset (D > 10 x its start and > 20)": str(run["onset_step"]),
        "lead: grok step − onset": str(run["lead_steps"]),
        "PC1 share of each attention matrix's trajectory": f"{100 * pc1[0]:.1f}–{100 * pc1[-1]:.1f}%",
        "defect growth over the run": f"{run['defect_growth_run']:.0f}x",
        "curvature in the execution subspace / in random ones (weight-SVD basis)": f"{ratio:.2f}",
        "removing the gradient outside the execution subspace (s = 1; the paper's protocol)": "never groks"
        if taken["results"]["grok_step"] is None
        else "groks",
    }


def test_the_lessons_table_lists_the_lessons_as_they_are():
    rows = re.findall(r"^\| (\d) \| ([^|]+) \|[^|]+\| ([^|]+) \|$", README, re.M)
    said = [
        re.match(r"(\d+ min) in class; code: about ([\d.]+ (?:s|min)) ", item.duration) for item in lessons.catalogue()
    ]
    assert [(int(n), title.strip(), time.strip()) for n, title, time in rows] == [
        (item.number, item.title, " + ".join(times.groups())) for item, times in zip(lessons.catalogue(), said)
    ]  # the README's times are the ones each lesson states


def test_the_python_example_runs_and_groks(tmp_path, classroom_run):
    """Its run is the session's classroom run (the same spec), put where the example finds it done."""
    example = README.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    copy_classroom_run(classroom_run, tmp_path / "runs")
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    grok_90, detected = map(int, re.search(r"grokked at step (\d+) - detected at (\d+)", result.stdout).groups())
    assert 0 < grok_90 <= detected < 10_000
    last = ast.literal_eval(result.stdout.split("last evaluation: ", 1)[1].strip())
    assert last["test_acc"] >= 0.98 and last["step"] >= detected


def test_the_results_page_is_the_one_its_records_give(monkeypatch):
    """docs/results.md is generated: `tinygrok results --records docs/records --out docs/results.md` from the
    records committed beside it gives it byte for byte (its figures drawn, not saved)."""
    from tinygrok.lab import results_page

    monkeypatch.chdir(ROOT)
    page = Path("docs") / "results.md"
    assert results_page.text(Path("docs") / "records", page) == page.read_text()


def test_the_forecast_page_is_the_one_its_records_give(monkeypatch):
    """docs/forecast.md is generated: `tinygrok forecast-score --held-out tinygrok/run/forecast_held_out --out
    docs/forecast.md` gives it byte for byte."""
    from tinygrok.lab import forecast_scoring

    monkeypatch.chdir(ROOT)
    page = Path("docs") / "forecast.md"
    assert forecast_scoring.page([Path("tinygrok/run/forecast_held_out")], page) == page.read_text()


def test_tinygrok_results_with_a_checkout_rewrites_its_readme_and_lesson_8_tables(tmp_path, monkeypatch):
    """The command line's way to the two extracts: stale tables in a copy of the checkout come back as they are
    here (the test below holds these to the records)."""
    from test_cli import refused_here as in_process  # typer's CliRunner: no interpreter start-up

    checkout = tmp_path / "checkout"
    (checkout / "lessons").mkdir(parents=True)
    stale = {
        "README.md": (README, "| claim | paper | tinygrok | verdict |"),
        "lessons/08_interventions.py": ((ROOT / "lessons/08_interventions.py").read_text(), "# | seed | none |"),
    }
    for name, (text, header) in stale.items():
        rows = text.split(header, 1)[1].split("\n\n", 1)[0]  # the table's rows: made stale
        (checkout / name).write_text(text.replace(rows, rows.replace("|", "| stale |", 1), 1))
        assert (checkout / name).read_text() != text
    monkeypatch.chdir(ROOT)
    result = in_process(
        "results", "--records", "docs/records", "--out", str(tmp_path / "r.md"), "--checkout", str(checkout)
    )
    assert result.returncode == 0, result.stderr
    for name, (text, _) in stale.items():
        assert (checkout / name).read_text() == text, name


def test_the_readme_and_lesson_8_extracts_are_the_ones_the_records_give():
    """README's claim-by-claim table (the page's rows of the claims it names) and lesson 8's table of the paper's
    model's interventions, seed by seed, are what `tinygrok results --records docs/records --out docs/results.md
    --checkout .` writes."""
    from tinygrok.lab import extracts, sweep_report

    runs = sweep_report.recorded_runs(ROOT / "docs" / "records")[0]
    page = (ROOT / "docs" / "results.md").read_text()
    for path, text in extracts.texts(ROOT, page, runs).items():
        assert path.read_text() == text, f"{path.name} differs from its extract of the records"


def test_lesson_8_says_what_its_seed_table_shows():
    """The prose under lesson 8's table of the paper's model's interventions (held to the records above), seed by
    seed: project at s = 1 stops every seed; inside the attention matrices B slows grokking and a random subspace
    speeds it; a random subspace delays by at most 100 steps at s up to 0.75, B by 100 to 1,100; the kick, the
    noise and the penalty move the grok step by 0 to 300."""
    from tinygrok.lab import extracts

    lesson = (ROOT / extracts.LESSON).read_text().splitlines()
    header, _, *rows = [extracts.cells(line[1:]) for line in lesson if line.startswith("# |")]
    column = {name: [row[i] for row in rows if row[i]] for i, name in enumerate(header)}  # a seed's runs of the arm

    def delays(*names: str) -> list[int]:
        return [int(cell.split("(")[1].rstrip(")")) for name in names for cell in column[name]]

    assert set(column["project 1"] + column["project 1 (random)"]) == {"DNF"}
    assert min(delays("project_attention 1")) > 0 > max(delays("project_attention 1 (random)"))
    doses = ("0.25", "0.5", "0.75")
    assert max(delays(*(f"project {s} (random)" for s in doses))) <= 100
    assert (min(delays(*(f"project {s}" for s in doses))), max(delays(*(f"project {s}" for s in doses)))) == (100, 1100)
    paper_strengths = delays("kick 10", "noise 0.1", "penalty 0.5")
    assert (min(paper_strengths), max(paper_strengths)) == (0, 300)
    prose = " ".join(line.lstrip("# ") for line in lesson)
    for words in ("delays grokking by at most 100 steps", "B delays it by 100 to 1,100", "by 0 to 300 steps"):
        assert words in prose, words
