"""tinygrok reproduce: a plan of grids run into one directory, killed mid-way and resumed, then a results page with
one row per claim of paper.CLAIMS; the plan's estimate; the verdicts' rules."""

import inspect
import json
import subprocess
import sys

import pytest
from test_cli import DATED, PLAIN, assert_refused, killed_when, refused_here, tinygrok

from tinygrok.lab import extracts, grids, records, reproduction, results_page, sweep, sweep_report
from tinygrok.lab.grids import Filters
from tinygrok.run.runs import METRICS, Run, RunError
from tinygrok.science import paper, undefined

# a tiny plan registered as the scale "tiny", here and in the CLI: the same command, the same code path
REGISTER = """
from tinygrok.lab import reproduction
from tinygrok.lab.grids import Filters
small = dict(preset="classroom", ops=("add",), seeds=(42,), max_steps=400)
reproduction.SCALES["tiny"] = lambda: (
    reproduction.Stage("table1", "table1", Filters(**small), "add, seed 42, 400 steps"),
    reproduction.Stage("lr-sweep", "lr-sweep", Filters(lrs=(3e-3, 1e-2), **small)))
"""
exec(REGISTER)
TINY = (
    "import sys"
    + REGISTER
    + """
from tinygrok.cli.app import main
sys.argv = ["tinygrok", "reproduce", "--scale", "tiny", "--out", sys.argv[1]]
main()
"""
)


def claim_rows(page: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")] for line in page.splitlines() if line.startswith("| §")
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny plan killed mid-way, then run again to its end: its sweep directories, records and page."""
    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    killed_when(
        [sys.executable, "-c", TINY, str(out)],  # the command and its worker processes
        lambda: any(p.read_text().count("\n") >= 3 for p in out.glob("*/*/" + METRICS)),
    )
    assert not (out / "lr-sweep").exists(), "killed too late"
    again = subprocess.run([sys.executable, "-c", TINY, str(out)], capture_output=True, text=True, env=PLAIN)
    assert again.returncode == 0, again.stderr
    assert "tiny reproduction" in again.stdout and "results page" in again.stdout and "stage 2 of 2" in again.stdout
    logged = DATED.findall(again.stdout)
    assert logged[0].startswith("stage 1 of 2, table1: ") and logged[-1] == "stage 2 of 2, lr-sweep: 2 done", logged
    return out


def test_a_reproduction_killed_mid_way_resumes_and_builds_every_claim_row_from_paper(tiny):
    out = tiny
    for stage in ("table1", "lr-sweep"):
        index = json.loads((out / stage / sweep.INDEX).read_text())
        assert {entry["state"] for entry in index["runs"].values()} == {"done"}
    (walk,) = [p for p in (out / "table1").glob("grok_*") if "weight_decay" not in p.name]  # (and add without)
    steps = [row["step"] for row in Run(walk).metrics()]
    assert steps == list(range(0, steps[-1] + 1, 100))  # resumed where it was killed: no step lost or repeated
    state = json.loads((out / "records" / reproduction.STATE).read_text())
    assert state["scale"] == "tiny" and len(state["parts"]) >= 2 and reproduction.wall_seconds(state) > 0
    assert {label for part in state["parts"] for label in part["stages"]} == {"table1", "lr-sweep"}
    assert len(list((out / "records").glob("*" + records.SUFFIX))) == 4  # add, add without decay; two rates

    page = (out / results_page.RESULTS).read_text()
    rows = claim_rows(page)
    assert [(row[0], row[1]) for row in rows] == [(c.number, c.words) for c in paper.CLAIMS]  # one row per claim
    by_words = {row[1]: row for row in rows}
    for claim in paper.CLAIMS:
        row = by_words[claim.words] if list(by_words).count(claim.words) == 1 else None
        if row and claim.measure == "unmeasured":
            assert row[5] == f"not measured: {claim.args['why']}"
        elif row and not {"table1", "lr-sweep"} & set(claim.stages):
            assert row[3] == "—"
            assert row[5] == f"not measured at this scale: its grid ({claim.stages[0]}) is not in the plan"
    memorized = Run(walk).summary()["memorization_step"]
    row = by_words["the training set is learnt first"]
    assert row[3] == f"{memorized} (n 1)" and row[2] == "train acc >= 95% at 300-500 steps"
    assert "; at this scale: add, seed 42, 400 steps" in row[5]  # the stage's cut, said beside its verdict
    assert "| code |" in page and "| machine |" in page and "| time |" in page
    assert (out / "results_figures" / "table1_defect_by_op.png").exists()


def test_records_of_two_halves_merge_to_the_same_page_and_a_recorded_run_is_not_run_again(tiny, tmp_path, caplog):
    """Each half of the plan records the runs it finished (here: its sweep's runs, done already) into a folder of
    its own, as two machines would; merged, they give the page of the plan run at once, and the page is a function
    of the records alone (its figures aside): written again, byte for byte the same."""
    plan = reproduction.stages("tiny")
    for half, stages in (("a", plan[:1]), ("b", plan[1:])):
        reproduction.run("tiny", stages, tiny, tmp_path / half, sweep.local_executor(1))
    (tmp_path / "a" / "junk.json.gz").write_bytes(b"not a record")
    _, skipped = reproduction.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert len(skipped) == 1 and "junk.json.gz" in skipped[0]  # said, and left where it is
    once = json.loads((tmp_path / "merged" / reproduction.STATE).read_text())
    assert reproduction.merge([tmp_path / "a", tmp_path / "merged"], tmp_path / "merged")[0] == once  # nothing twice
    page = results_page.write(tmp_path / "merged", tmp_path / "one" / results_page.RESULTS).read_text()
    assert claim_rows(page) == claim_rows((tiny / results_page.RESULTS).read_text())
    again = results_page.write(tmp_path / "merged", tmp_path / "two" / results_page.RESULTS).read_text()
    assert again == page.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    assert "runs recorded" in page and "| table1 | table1 | 2 of 2 |" in page
    assert not (tmp_path / "merged" / "junk.json.gz").exists()  # merged: only records
    (tmp_path / "merged" / "bad.json.gz").write_bytes(b"not a record")
    assert "Not records, left out: " in results_page.write(tmp_path / "merged", tmp_path / "one" / "p.md").read_text()
    assert [m for m in caplog.messages if "bad.json.gz" in m][0].startswith("left out of the results page")
    state = reproduction.run("tiny", plan, tmp_path / "fresh", tmp_path / "merged", sweep.local_executor(1))
    assert not (tmp_path / "fresh").exists() and len(state["parts"]) == 3  # every run recorded: nothing ran
    with pytest.raises(RunError, match="holds the records of the tiny reproduction, not machine"):
        reproduction.run("machine", plan, tmp_path / "fresh", tmp_path / "merged", sweep.local_executor(1))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / reproduction.STATE).write_text("{}")
    for folder, words in (
        (tmp_path / "empty", "reproduce.json lacks scale, parts"),
        (tmp_path / "nowhere", "holds no reproduction's records"),
    ):
        with pytest.raises(RunError, match=f"{folder}.*{words}"):
            reproduction.merge([tmp_path / "a", folder], tmp_path / "merged-again")
        with pytest.raises(RunError, match=f"{folder}.*{words}"):
            results_page.write(folder, tmp_path / "three" / results_page.RESULTS)
    (tmp_path / "empty" / reproduction.STATE).write_text('{"scale": "galactic", "parts": []}')
    with pytest.raises(RunError, match="is no reproduction's state: it needs a scale"):
        reproduction.merge([tmp_path / "empty"], tmp_path / "merged-again")
    assert not (tmp_path / "merged-again").exists() and not (tmp_path / "three").exists()


def test_the_plan_estimate_lists_every_stage_and_a_total(tmp_path):
    result = tinygrok("reproduce", "--scale", "machine", "--estimate", "--out", str(tmp_path / "never"))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    runs = sum(len(stage.specs()) for stage in reproduction.stages("machine"))
    assert f"{runs} runs" in text and "h of CPU time" in text and "on 2 cores" in text
    assert not (tmp_path / "never").exists()  # an estimate runs nothing
    assert_refused(refused_here("reproduce", "--scale", "huge", "--out", str(tmp_path / "x")), "--scale", "huge")
    (tmp_path / "file").write_text("")
    assert_refused(refused_here("reproduce", "--scale", "classroom", "--out", str(tmp_path / "file")), "is a file")
    for page in (tmp_path, tmp_path / "file" / "results.md"):
        given = ("--out", str(tmp_path / "x"), "--page", str(page))
        assert_refused(refused_here("reproduce", "--scale", "classroom", *given), "--page", "directory, or lies under")
        assert_refused(
            refused_here("results", "--records", str(tmp_path), "--out", str(page)), "--out", "or lies under"
        )
    assert not (tmp_path / "x").exists()
    (tmp_path / "other" / "records").mkdir(parents=True)
    (tmp_path / "other" / "records" / reproduction.STATE).write_text(json.dumps({"scale": "machine", "parts": []}))
    assert_refused(refused_here("reproduce", "--scale", "classroom", "--out", str(tmp_path / "other")), "machine")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["records"]  # nothing ran


def test_a_results_page_of_no_records_or_for_no_checkout_is_refused_before_anything_is_written(tmp_path):
    page = tmp_path / "page" / "results.md"
    assert_refused(refused_here("results", "--records", str(tmp_path / "x"), "--out", str(page)), "reproduce.json")
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    (records_dir / reproduction.STATE).write_text(json.dumps({"scale": "machine", "parts": []}))
    no_checkout = ["--checkout", str(tmp_path)]
    assert_refused(refused_here("results", "--records", str(records_dir), "--out", str(page), *no_checkout), "README")
    assert not page.parent.exists()  # neither the page nor its figures' folder


def test_the_estimate_counts_only_the_runs_without_a_record():
    costs = {"train_step_ms": 20.0, "eval_ms": 115.0, "commutator_sample_ms": 72.0}
    plan = reproduction.stages("classroom")
    first = plan[0].specs()
    whole = reproduction.estimate(plan, costs)
    part = reproduction.estimate(plan, costs, frozenset(spec.name for spec in first[1:]))
    assert [r["left"] for r in whole] == [r["runs"] for r in whole] == [r["runs"] for r in part]
    assert part[0]["left"] == 1 and part[0]["cpu_seconds"] == pytest.approx(grids.estimate_cpu_seconds(first[0], costs))
    assert part[1:] == whole[1:] and part[0]["cpu_seconds"] < whole[0]["cpu_seconds"]
    done = reproduction.estimate(plan, costs, frozenset(s.name for stage in plan for s in stage.specs()))
    assert reproduction.wall_estimate(done, 2) == 0 and {r["left"] for r in done} == {0}


def test_the_estimate_counts_a_run_that_resumes_from_its_furthest_checkpoint(tmp_path, monkeypatch):
    costs = {"train_step_ms": 20.0, "eval_ms": 115.0, "commutator_sample_ms": 72.0}
    plan = reproduction.stages("classroom")[:1]
    first = plan[0].specs()[0]
    steps = {tmp_path / "out" / plan[0].label / first.name: 300, tmp_path / "rec" / "resume" / first.name: 500}
    monkeypatch.setattr(reproduction, "_step", lambda run_dir: steps.get(run_dir, -1))
    others = frozenset(s.name for s in plan[0].specs()[1:])
    rows = reproduction.estimate(plan, costs, others, tmp_path / "out", tmp_path / "rec")
    left = grids.estimate_cpu_seconds(first, costs, 500)
    assert rows[0]["cpu_seconds"] == pytest.approx(left) and 0 < left < grids.estimate_cpu_seconds(first, costs)
    assert grids.estimate_cpu_seconds(first, costs, 10**9) == 0  # a run past its expected steps


def test_every_scale_plans_grids_that_exist_and_the_classroom_one_fits_a_quarter_hour():
    costs = {"train_step_ms": 20.0, "eval_ms": 115.0, "commutator_sample_ms": 72.0}  # the paper's size, one core
    for scale in reproduction.SCALES:
        plan = reproduction.stages(scale)
        assert len({stage.label for stage in plan}) == len(plan) and all(stage.specs() for stage in plan)
        snapshotted = [s.config for stage in plan for s in stage.specs() if s.config.snapshot_every]
        assert all(cfg.max_steps // cfg.snapshot_every >= 2 for cfg in snapshotted)  # 3 snapshots, for a PCA
    hours = {
        scale: reproduction.wall_estimate(reproduction.estimate(reproduction.stages(scale), costs), 2) / 3600
        for scale in reproduction.SCALES
    }
    assert hours["classroom"] < 0.3 and hours["machine"] < 12 and hours["full"] > hours["machine"]
    labels = {stage.label for stage in reproduction.stages("machine")}
    never = {"§10 #8", "§10 #22", "§9.3"}  # no grid measures them (§9.3: its alignment claim): their rows say why
    expected = {"machine": never | {"§8.3 figI5"}, "full": never}  # figI5's dose sweeps only at the full scale
    for scale, unmeasured in expected.items():
        labels = {stage.label for stage in reproduction.stages(scale)}
        assert {claim.number for claim in paper.CLAIMS if not labels & set(claim.stages)} == unmeasured


def run(op="add", seed=42, **results_):
    return {
        "name": f"{op}{seed}",
        "op": op,
        "seed": seed,
        "lr": 1e-3,
        "weight_decay": 1.0,
        "hook": "none",
        "recipe": "walkthrough",
        **results_,
    }


@pytest.mark.parametrize(
    "values, verdict",
    [
        ((2000, 2100), "**replicates**"),  # the mean in the paper's range
        ((1500, 2800), "differs (the ranges overlap)"),
        ((600, 700), "differs"),
    ],
)
def test_a_claim_is_judged_by_its_mean_against_the_paper_range(values, verdict):
    claim = paper.Claim(
        "§x", "a claim", "1800-2100", "mean", ("table1",), dict(ops="grokking"), 1800, 2100, args=dict(key="onset_step")
    )
    runs = [run(seed=s, onset_step=v) for s, v in zip((42, 137), values)]
    planned = {"table1": reproduction.Stage("table1", "table1", Filters(ops=("add",), seeds=(42, 137)))}
    number, _, found = results_page.measure(claim, {"table1": runs}, planned)
    assert found == verdict and number.endswith("(n 2)")
    assert results_page.measure(claim, {"table1": runs[:1]}, planned) == (  # judged on all its runs, never on a part
        "",
        "not measured",
        "not measured yet: 1 of its 2 runs has finished",
    )


def test_a_point_value_replicates_inside_the_95_percent_interval_and_within_20_percent():
    claim = paper.Claim(
        "§x", "hero", "1600", "mean", ("table1",), dict(ops="sub"), 1600, 1600, args=dict(key="lead_steps")
    )
    planned = {
        n: {"table1": reproduction.Stage("table1", "table1", Filters(ops=("sub",), seeds=(42, 137)[:n]))}
        for n in (1, 2)
    }
    judged = [
        results_page.measure(
            claim, {"table1": [run("sub", s, lead_steps=v) for s, v in zip((42, 137), leads)]}, planned[len(leads)]
        )[2]
        for leads in ((1300, 1700), (1500, 1510), (400, 3600), (1400,), (1200,))
    ]
    assert judged == ["**replicates**", "differs", "too few runs to tell", "**replicates**", "differs"]
    empty = results_page.measure(claim, {"table1": [run("sub", 42, lead_steps=None)]}, planned[1])
    assert empty == ("", "not measured", "not measured: none of its 1 runs defines it")
    add_only = {"table1": reproduction.Stage("table1", "table1", Filters(ops=("add",), seeds=(42,)))}
    finished_add = {"table1": [run("add", 42, lead_steps=1600)]}
    assert (
        results_page.measure(claim, finished_add, add_only)[2]
        == "not measured: none of its stage's runs has these settings"
    )
    assert results_page.measure(claim, finished_add, planned[1])[2] == "not measured yet: 0 of its 1 runs have finished"


def test_the_slow_regime_is_shown_seed_by_seed_beside_table_2():
    stage = {s.label: s for s in reproduction.stages("machine")}["slow"]
    pc1 = {f"blocks.{layer}.W_{m}": 0.5 + layer / 10 + i / 1000 for layer in range(3) for i, m in enumerate("QKVO")}
    steps = dict(grok_step=598_000, grok_step_90=571_000, onset_step=5_000, lead_steps=566_000)
    finished = run(seed=137, rho=0.9999991, pc1=pc1, pca_snapshots=30, n_layers=3, wall_seconds=25_200.0,
                   cpu_seconds=24_840.0, resumes=3)  # fmt: skip
    finished.update(steps)
    lines = "\n".join(results_page._slow_table([finished], stage)).splitlines()
    rows = [line.split(" | ") for line in lines if line.startswith("| 42 ") or line.startswith("| 137 ")]
    assert [row[:3] for row in rows] == [["| 42", "paper", "612,000"], ["| 42", "tinygrok", "not finished"],
                                         ["| 137", "paper", "572,000"], ["| 137", "tinygrok", "598,000"]]  # fmt: skip
    assert rows[2][3:] == ["550,000", "10,000", "540,000", "", "", "", "", "", " |"]
    both = next(line for line in lines if line.startswith("| both ")).split(" | ")
    assert both[6:9] == ["80.5% / 80.1% / 89.7% / 78.1%", "33", "0.999997-1.000000"]
    assert rows[3][3:] == ["571,000", "5,000", "566,000", "70.0% / 70.1% / 70.2% / 70.3%", "30", "0.999999",
                           "7.00 h", "6.90 h", "3 |"]  # fmt: skip
    assert "one every 20,000 steps, to detection" in lines[2]


def test_a_rho_of_1_from_float32_rounding_says_so_beside_its_verdict():
    """The slow regime's float32 defect has no component left in the execution subspace's coordinates (exec_proj
    exactly 0, as at both of its final checkpoints): rho is exactly 1 whatever the geometry, which the verdict's
    words say, in how many of the runs; not where a probe's projection is nonzero, or the run is float64."""
    stages = {s.label: s for s in reproduction.stages("machine")}
    claim = next(c for c in paper.CLAIMS if c.stages == ("slow",) and c.args.get("key") == "rho")
    exact, inside = {"exec_proj": 0.0, "exec_rho": 1.0}, {"exec_proj": 1e-4, "exec_rho": 0.9999991}
    runs = [
        run(seed=s, dtype="float32", max_steps=650_000, grok_step=600_000, n_layers=3, rho=rho, geometry=probes)
        for s, rho, probes in ((42, 1.0, [exact, exact]), (137, 0.9999991, [exact, inside]))
    ]
    shown, kind, words = results_page.measure(claim, {"slow": runs}, stages)
    assert (shown, kind) == ("1.000000 ± 0.000001 [0.999999, 1.000000] (n 2)", "replicates")
    assert words == (
        "**replicates**; in 1 of 2 runs float32 leaves the defect exactly 0 in the execution subspace's coordinates "
        "([paper](paper.md) §6.6): rho is exactly 1 there, whatever the geometry"
    )
    for change in ({"dtype": "float64"}, {"geometry": [exact, {"exec_proj": 2e-9, "exec_rho": 1.0}]}, {"geometry": []}):
        assert results_page.measure(claim, {"slow": [{**runs[0], **change}, runs[1]]}, stages)[2] == "**replicates**"


def test_a_claim_on_runs_that_all_grokked_differs_where_one_never_did_or_waits_where_the_scale_cut_it_short():
    stages = {scale: {s.label: s for s in reproduction.stages(scale)} for scale in ("machine", "classroom")}
    grokked = dict(grok_step=598_000, grok_step_90=571_000, lead_steps=561_000)
    never = dict(grok_step=None, grok_step_90=None, lead_steps=None)
    late = dict(grok_step=604_000, grok_step_90=583_000, lead_steps=573_000)
    claims = {claim.words: claim for claim in paper.CLAIMS if claim.stages == ("slow",)}
    rows = {}
    zero = {"exec_rho": {"records": 1, "of": 1, "why": undefined.WHY["_rho"]}}  # float32: every delta exactly 0
    for first in (never, late):
        runs = [
            run(seed=s, max_steps=650_000, onset_step=10_000, metrics=[], geometry=[], n_layers=3, **steps)
            for s, steps in ((42, first), (137, grokked))
        ]
        runs[1].update(rho=None, undefined=zero)
        rows[first["grok_step"]] = {
            words: results_page.measure(c, {"slow": runs}, stages["machine"]) for words, c in claims.items()
        }
    dnf = "differs: 1 of its 2 runs (seed 42) never grokked in 650,000 steps; the paper's all did"
    assert rows[None]["the slow regime groks late"] == ("598000 (n 1)", "differs", dnf)  # not judged on seed 137 alone
    assert rows[None]["the onset precedes grokking in the slow regime"] == ("1/1 positive", "differs", dnf)
    assert rows[None]["its onset by the released rule (floor 5)"][1] == "replicates"  # an onset needs no grokking
    assert {words for words, row in rows[None].items() if row[1] == "differs"} == set(claims) - {
        "its onset by the released rule (floor 5)"
    }
    assert rows[604_000]["the slow regime groks late"] == (
        "601000 ± 4243 [598000, 604000] (n 2)", "replicates", "**replicates**"
    )  # fmt: skip
    assert rows[604_000]["the onset precedes grokking in the slow regime"][:2] == ("2/2 positive", "replicates")
    assert rows[604_000]["its curvature lies outside the execution subspace"][1:] == (
        "not measured", "not measured: none of its 2 runs defines it (in 1 of them: every defect sample is exactly 0: "
        "no direction to measure)"
    )  # fmt: skip
    short = run(seed=42, max_steps=4000, onset_step=1000, metrics=[], geometry=[], n_layers=3, **never)
    classroom = results_page.measure(claims["the slow regime groks late"], {"slow": [short]}, stages["classroom"])
    assert classroom == ("", "not measured", "not measured: its run (seed 42) never grokked in 4,000 steps; at this "
                         "scale: seed 42, 4,000 steps: the machinery only, far from grokking")  # fmt: skip
    table1 = next(claim for claim in paper.CLAIMS if claim.words == "all leads are positive: a sign test")
    leads = [
        run(op, s, lead_steps=900, grok_step=3000, max_steps=200_000)
        for op in paper.GROKKING_OPS
        for s in (42, 137, 2024)
    ]
    leads[0].update(never)
    assert results_page.measure(table1, {"table1": leads}, stages["machine"])[1:] == (
        "differs", "differs: 1 of its 12 runs (seed 42) never grokked in 200,000 steps; the paper's all did"
    )  # fmt: skip


def test_a_phase_median_a_runs_first_and_last_value_and_the_best_run():
    accs = [(0.1, 0.0), (0.99, 0.1), (0.99, 0.2), (0.99, 0.5), (1.0, 0.96), (1.0, 0.99)]  # (train, test)
    metrics = [{"step": 100 * i, "train_acc": a, "test_acc": t} for i, (a, t) in enumerate(accs)]
    ratios = [2.0, 3.0, 1.0, 1.2, 0.7, 0.5]
    runs = [
        run(seed=seed, metrics=metrics, geometry=[{"step": 100 * i, "r": v * k} for i, v in enumerate(ratios)])
        for seed, k in ((42, 1.0), (137, 2.0))
    ]
    medians = {phase: results_page._phase_median(runs, "r", phase).values for phase in ("memorization", "post-grok")}
    assert medians == {"memorization": [2.0, 4.0], "post-grok": [0.6, 1.2]}
    runs[0]["geometry"][0]["r"] = None  # not defined there: the first is the next one's
    runs[0]["grok_step"], runs[1]["grok_step"] = 300, None  # the second never grokked: no value up to detection
    ends = {end: results_page._geometry_at(runs, "r", end).values for end in ("first", "grok")}
    assert ends == {"first": [3.0, 4.0], "grok": [1.2]}
    best = results_page._best(
        [run(seed=s, lead_steps=v, eval_every=100) for s, v in ((42, 1300), (137, 1700), (7, None))], "lead_steps"
    )
    assert best.values == [1700] and best.resolution == 100


def test_a_share_of_runs_is_judged_exactly():
    claim = paper.Claim("§x", "they all grok", "3/3", "grokked", ("table1",), dict(ops="grokking"), 1, 1)
    planned = {"table1": reproduction.Stage("table1", "table1", Filters(ops=("add",)))}
    two_of_three = [run(seed=s, grok_step=g) for s, g in ((42, 3000), (137, None), (2024, 3100))]
    assert results_page.measure(claim, {"table1": two_of_three}, planned) == ("2/3 grok", "differs", "differs")
    two = {"table1": reproduction.Stage("table1", "table1", Filters(ops=("add",), seeds=(42, 2024)))}
    assert results_page.measure(claim, {"table1": two_of_three[::2]}, two)[1:] == ("replicates", "**replicates**")


def intervention(seed, hook, grok_step, op="add"):
    return run(op, seed, recipe="intervene", hook=hook, batches="sibling", grok_step=grok_step)


def test_interventions_are_selected_by_arm_dose_and_basis_and_delayed_against_the_probed_baseline():
    runs = [
        run(seed=42, recipe="pca", grok_step=3000),  # the baseline: not what delays are measured against
        intervention(42, "none", 3200),
        intervention(137, "none", 3400),
        intervention(42, "project:s=0.5,basis=pca,start=500", 3600),
        intervention(137, "project:s=0.5,basis=pca,start=500", None),
        intervention(42, "project:s=0.5,basis=random,start=500", 3300),
        intervention(42, "noise:eps=0.5,basis=pca,start=500,every=50", 3250),
        intervention(42, "kick:alpha=10.0,basis=pca,start=500,samples=9", 3100),
        intervention(42, "kick:alpha=5.0,basis=pca,start=500,samples=9", 3150),
    ]
    pca = results_page.select(runs, ops="add", dose=0.5, arm="project", basis="pca")
    assert [r["grok_step"] for r in pca] == [3600, None]
    assert results_page.MEASURES["delay"](pca, stage_runs=runs) == results_page.Measured(
        [400], "+400 [+400 to +400] (n 1), 1/2 DNF"
    )  # seed 42's own
    assert [r["hook"] for r in results_page.select(runs, arm="kick", dose="primary")] == [runs[-2]["hook"]]
    assert (
        len(results_page.select(runs, arm="none")) == 2 and len(results_page.select(runs)) == 1
    )  # phase 2's, the baseline
    steps = results_page.MEASURES["grok_steps"](results_page.select(runs, arm="project"), stage_runs=runs)
    assert steps.values == [3600, 3300] and steps.shown == "3450 ± 212, 2/3 grok"
    claim = paper.Claim(
        "§x", "s = 1 delays", "+800", "delay", ("dose",), dict(dose=0.5, arm="project", basis="pca", seed=137), 800, 800
    )
    dose = reproduction.Stage("dose", "dose-response", Filters(ops=("add",)))
    assert results_page.measure(claim, {"dose": runs}, {"dose": dose}) == (
        "1/1 DNF",
        "differs",
        "differs: none of its runs grokked",
    )


def test_a_verdict_says_when_the_values_resolution_and_not_their_spread_leaves_it_open():
    """+200 in every seed against the paper's +300: grok steps counted at evaluations every 100 steps cannot tell."""
    seeds, hook = (42, 137, 2024), "project:s=0.5,basis=pca,start=500"
    runs = [intervention(s, "none", 3000) for s in seeds] + [intervention(s, hook, 3200) for s in seeds]
    runs = [{**r, "eval_every": 100} for r in runs]
    claim = paper.Claim("§x", "s = 0.5 delays", "+300", "delay", ("dose",), dict(dose=0.5, **paper._PROJECT), 300, 300)
    dose = {"dose": reproduction.Stage("dose", "dose-response", Filters(ops=("add",)))}
    assert results_page.measure(claim, {"dose": runs}, dose) == (
        "+200 ± 0 [+200 to +200] (n 3)",
        "too few runs to tell",
        "too few runs to tell (here how finely each value is measured, 100, sets the interval)",
    )
    runs[-1] = {**runs[-1], "grok_step": 3800}  # +800: now the seeds' spread sets it
    assert results_page.measure(claim, {"dose": runs}, dose)[2] == "too few runs to tell"


README = """## The paper, claim by claim

Words.

| claim | paper | tinygrok | verdict |
|---|---|---|---|
| b | old | old | old |

## The lessons
"""
LESSON = """# %% [markdown]
# ## On the paper's model, seed by seed
#
# | seed | old |
# |---|---|
#
# What the table shows
"""


def test_the_checkouts_extracts_take_the_pages_rows_of_readmes_claims_and_the_reference_protocols_seeds(tmp_path):
    (tmp_path / "lessons").mkdir()
    (tmp_path / "README.md").write_text(README)
    (tmp_path / extracts.LESSON).write_text(LESSON)
    page = "| section | claim |\n|---|---|\n| §1 | a | pa | ta | — | yes | — |\n| §2 | b | pb | tb | — | differs | — |"
    runs = [
        run(seed=42, recipe="intervene", hook="none", batches="shifted", grok_step=3000),
        run(seed=42, recipe="intervene", hook="project:s=1.0,basis=pca,start=500", batches="shifted", grok_step=None),
        run(seed=7, recipe="intervene", hook="none", batches="sibling", grok_step=3100),  # not the reference's
    ]
    texts = extracts.texts(tmp_path, page, runs)
    assert texts[tmp_path / "README.md"] == README.replace("| b | old | old | old |", "| b | pb | tb | differs |")
    assert texts[tmp_path / extracts.LESSON] == LESSON.replace(
        "# | seed | old |\n# |---|---|", "# | seed | none | project 1 |\n# |---|---|---|\n# | 42 | 3000 | DNF |"
    )
    with pytest.raises(RunError, match="no intervention runs of add on shifted"):
        extracts.texts(tmp_path, page, runs[2:])
    (tmp_path / "README.md").write_text(README.replace("| b |", "| c |"))
    with pytest.raises(RunError, match="the results page lacks: c$"):
        extracts.texts(tmp_path, page, runs)
    with pytest.raises(RunError, match="checkout's root"):
        extracts.check(tmp_path / "lessons")


def test_an_extract_without_its_heading_or_table_is_refused_and_one_at_the_end_keeps_its_newline(tmp_path):
    (tmp_path / "lessons").mkdir()
    (tmp_path / extracts.LESSON).write_text(LESSON)
    readme = tmp_path / "README.md"
    for text, error in (
        ("# tinygrok\n", "has no line '## The paper, claim by claim'"),
        (README.replace("| b | old | old | old |\n", "").replace("|", "~") + "| a table | elsewhere |\n", "no table"),
    ):
        readme.write_text(text)
        with pytest.raises(RunError, match=error):
            extracts.check(tmp_path)
        assert readme.read_text() == text
    last = README.split("\n\n## The lessons")[0] + "\n"  # the table ends the file
    readme.write_text(last)
    page = "| §2 | b | pb | tb | — | differs | — |"
    runs = [run(seed=1, recipe="intervene", hook="none", batches="shifted", grok_step=3000)]
    assert extracts.texts(tmp_path, page, runs)[readme] == last.replace("| old | old | old |", "| pb | tb | differs |")


def test_the_measures_that_read_a_runs_rows():
    def probed(name, probes, geometry=(), **fields):
        rows = [{"step": step, "test_acc": acc, "defect": d} for step, acc, d in probes]
        return run(name=name, metrics=rows, geometry=list(geometry), **fields)

    grokked = probed(
        "g",
        [(0, 0.0, 2.0), (100, 0.2, 40.0), (200, 0.95, 300.0), (300, 1.0, 500.0)],
        [{"weight_svd_proj": 0.01}, {"weight_svd_proj": 0.03}, {"weight_svd_proj": None}],
        grok_step=300,
        grok_step_90=200,
        onset_step=100,
    )
    never = probed("n", [(0, 0.0, 2.0), (100, 0.0, 8.0), (200, 0.01, 10.0)], op="x3_xy", grok_step=None)
    runs = [grokked, never]
    ratio = results_page.MEASURES["final_defect_ratio"](runs)
    assert ratio.values == [50.0] and ratio.shown == "50 (D 500 over 10; n 1 and 1)"
    assert results_page.MEASURES["geometry_median"]([grokked], key="weight_svd_proj").values == [0.02]
    assert results_page.MEASURES["defect_at"](runs, step=100) == results_page.Measured(
        [40.0, 8.0], "24 ± 22.6 [8, 40] (n 2): 40 (grok_90 200), 8 (grok_90 never)"
    )
    assert results_page.MEASURES["defect_at"](runs, step=300).shown == "500 (n 1); its run's grok_90: 200"
    assert results_page.MEASURES["defect_before_grok"](runs).values == [40.0]  # the probe before grok_90 (200)
    assert results_page.MEASURES["max_defect"](runs).values == [500.0, 10.0]
    assert results_page.MEASURES["lead_50"](runs).values == [100]  # test acc 0.95 >= 0.5 at 200, onset 100
    layers = {"blocks.0.W_Q": 0.6, "blocks.1.W_Q": 0.8, "blocks.1.W_K": float("nan")}
    assert results_page.MEASURES["per_matrix"]([run(pc1=layers, n_layers=2)], key="pc1", layer="last").values == [0.8]


def test_every_claim_names_a_measure_and_settings_that_exist():
    words = [claim.words for claim in paper.CLAIMS]
    assert len(set(words)) == len(words)  # a claim is found by its words, on the page and in README's extract
    selectable = set(inspect.signature(results_page.select).parameters) - {"runs"}
    for claim in paper.CLAIMS:
        assert set(claim.where) <= selectable, claim
        if claim.measure == "unmeasured":
            assert set(claim.args) == {"why"} and not claim.stages
            continue
        parameters = inspect.signature(results_page.MEASURES[claim.measure]).parameters
        assert set(claim.args) <= set(parameters) - {"runs", "_"}, claim
        assert claim.low is not None and claim.low <= claim.high and claim.stages, claim
        assert claim.figure in ("", *sweep_report.FIGURES), claim
