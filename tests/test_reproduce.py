"""tinygrok reproduce: a plan of grids run into one directory, killed mid-way and resumed, then a results page with
one row per claim of paper.CLAIMS; the plan's estimate; the verdicts' rules."""
import json
import subprocess
import sys

import pytest

from test_cli import assert_refused, killed_when, tinygrok
from tinygrok.lab import reproduce, results, sweep
from tinygrok.run.runs import METRICS, Run
from tinygrok.science import paper

# the CLI with a tiny plan injected as the scale "tiny": the same command, the same code path
TINY = """
import sys
from tinygrok.lab import reproduce
from tinygrok.lab.grids import Filters
small = dict(preset="classroom", ops=("add",), seeds=(42,), max_steps=700)
reproduce.SCALES["tiny"] = lambda: (
    reproduce.Stage("table1", "table1", Filters(**small), "add, seed 42, 700 steps"),
    reproduce.Stage("lr-sweep", "lr-sweep", Filters(lrs=(3e-3, 1e-2), **small)))
from tinygrok.cli.app import main
sys.argv = ["tinygrok", "reproduce", "--scale", "tiny", "--out", sys.argv[1]]
main()
"""


def claim_rows(page: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in page.splitlines()
            if line.startswith("| §")]


def test_a_reproduction_killed_mid_way_resumes_and_builds_every_claim_row_from_paper(tmp_path):
    out = tmp_path / "tiny"
    killed_when([sys.executable, "-c", TINY, str(out)],  # the command and its worker processes
                lambda: any(p.read_text().count("\n") >= 3 for p in out.glob("*/*/" + METRICS)))
    assert not (out / "lr-sweep").exists(), "killed too late"
    again = subprocess.run([sys.executable, "-c", TINY, str(out)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "tiny reproduction" in again.stdout and "results page" in again.stdout

    for stage in ("table1", "lr-sweep"):
        index = json.loads((out / stage / sweep.INDEX).read_text())
        assert {entry["state"] for entry in index["runs"].values()} == {"done"}
    (walk,) = [p for p in (out / "table1").glob("grok_*") if "weight_decay" not in p.name]  # (and add without)
    steps = [row["step"] for row in Run(walk).metrics()]
    assert steps == list(range(0, steps[-1] + 1, 100))  # resumed where it was killed: no step lost or repeated
    state = json.loads((out / reproduce.STATE).read_text())
    assert state["scale"] == "tiny" and len(state["parts"]) >= 2 and reproduce.wall_seconds(state) > 0

    page = (out / results.RESULTS).read_text()
    rows = claim_rows(page)
    assert [(row[0], row[1]) for row in rows] == [(c.number, c.words) for c in paper.CLAIMS]  # one row per claim
    by_words = {row[1]: row for row in rows}
    for claim in paper.CLAIMS:
        row = by_words[claim.words] if list(by_words).count(claim.words) == 1 else None
        if row and claim.measure == "unmeasured":
            assert row[5] == f"not measured: {claim.where['why']}"
        elif row and claim.stage not in ("table1", "lr-sweep"):
            assert row[3] == "—"
            assert row[5] == f"not measured at this scale: its grid ({claim.stage}) is not in the plan"
    memorized = Run(walk).summary()["memorization_step"]
    row = by_words["the training set is learnt first"]
    assert row[3] == f"{memorized} (n 1)" and row[2] == "train acc >= 95% at 300-500 steps"
    assert "; at this scale: add, seed 42, 700 steps" in row[5]  # the stage's cut, said beside its verdict
    assert "| commit |" in page and "| wall time |" in page and (out / "table1_defect_by_op.png").exists()


def test_the_plan_estimate_lists_every_stage_and_a_total(tmp_path):
    result = tinygrok("reproduce", "--scale", "machine", "--estimate", "--out", str(tmp_path / "never"))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    runs = sum(len(stage.specs()) for stage in reproduce.stages("machine"))
    assert f"{runs} runs" in text and "h of CPU time" in text and "on 2 cores" in text
    assert not (tmp_path / "never").exists()  # an estimate runs nothing
    assert_refused(tinygrok("reproduce", "--scale", "huge", "--out", str(tmp_path / "x")), "--scale", "huge")


def test_every_scale_plans_grids_that_exist_and_the_classroom_one_fits_a_quarter_hour():
    costs = {"train_step_ms": 20.0, "eval_ms": 115.0, "commutator_sample_ms": 72.0}  # the paper's size, one core
    for scale in reproduce.SCALES:
        plan = reproduce.stages(scale)
        assert len({stage.label for stage in plan}) == len(plan) and all(stage.specs() for stage in plan)
    hours = {scale: reproduce.wall_estimate(reproduce.estimate(reproduce.stages(scale), costs), 2) / 3600
             for scale in reproduce.SCALES}
    assert hours["classroom"] < 0.3 and hours["machine"] < 12 and hours["full"] > hours["machine"]
    labels = {stage.label for stage in reproduce.stages("machine")}
    assert {claim.stage for claim in paper.CLAIMS if claim.measure != "unmeasured"} - labels == {"interventions-add"}


def run(op="add", seed=42, **results_):
    return {"name": f"{op}{seed}", "op": op, "seed": seed, "lr": 1e-3, "weight_decay": 1.0, "hook": "none",
            "recipe": "walkthrough", **results_}


@pytest.mark.parametrize("values, verdict", [
    ((2000, 2100), "**replicates**"),  # the mean in the paper's range
    ((1500, 2800), "differs (the ranges overlap)"), ((600, 700), "differs")])
def test_a_claim_is_judged_by_its_mean_against_the_paper_range(values, verdict):
    claim = paper.Claim("§x", "a claim", "1800-2100", "mean", "table1", dict(ops="grokking", key="onset_step"),
                        1800, 2100)
    runs = [run(seed=s, onset_step=v) for s, v in zip((42, 137), values)]
    number, found = results.measure(claim, {"table1": runs}, {"table1": reproduce.Stage("table1", "table1")})
    assert found == verdict and number.endswith("(n 2)")


def test_a_point_value_replicates_within_two_standard_errors_or_20_percent_of_one_value():
    claim = paper.Claim("§x", "hero", "1600", "mean", "table1", dict(ops="sub", key="lead_steps"), 1600, 1600)
    planned = {"table1": reproduce.Stage("table1", "table1")}
    judged = [results.measure(claim, {"table1": [run("sub", s, lead_steps=v) for s, v in zip((42, 137), leads)]},
                              planned)[1] for leads in ((1300, 1700), (1300, 1400), (1400,), (1200,))]
    assert judged == ["**replicates**", "differs", "**replicates** (within 20%)", "differs"]  # 1500 ± 2 x 200: in
    empty = results.measure(claim, {"table1": [run("sub", 42, lead_steps=None)]}, planned)
    assert empty == ("", "not measured at this scale: none of its 1 runs defines it")
    assert results.measure(claim, {"table1": [run("add", 42, lead_steps=1600)]}, planned)[1] == \
        "not measured at this scale: none of its stage's runs has these settings"


def test_a_share_of_runs_is_judged_exactly():
    claim = paper.Claim("§x", "they all grok", "3/3", "grokked", "table1", dict(ops="grokking"), 1, 1)
    planned = {"table1": reproduce.Stage("table1", "table1")}
    two_of_three = [run(seed=s, grok_step=g) for s, g in ((42, 3000), (137, None), (2024, 3100))]
    assert results.measure(claim, {"table1": two_of_three}, planned) == ("2/3 grok", "differs")
    assert results.measure(claim, {"table1": two_of_three[::2]}, planned) == ("2/2 grok", "**replicates**")
