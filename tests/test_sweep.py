"""Sweeps: a grid run on local worker processes, skipped when done, resumed after kill -9 with the same results,
failures retried once and reported, and bad input refused in one line."""

import json
import os
import signal
import sys

import numpy as np
import pytest
from test_cli import CLI, DATED, assert_refused, killed_when, refused_here, tinygrok

from tinygrok.cli import views
from tinygrok.lab import grids, recipes, sweep
from tinygrok.run.runs import METRICS, Run

TINY = ["table1", "--preset", "classroom", "--ops", "add", "--seeds", "42,137", "--max-steps", "200"]


def results(out):
    index = json.loads((out / sweep.INDEX).read_text())
    return {name: (entry["state"], (out / name / METRICS).read_bytes()) for name, entry in index["runs"].items()}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The tiny sweep, uninterrupted."""
    out = tmp_path_factory.mktemp("sweeps") / "whole"
    result = tinygrok("sweep", *TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    (out.parent / "whole.log").write_text(result.stdout)
    return out


def test_a_sweep_killed_mid_grid_resumes_and_equals_an_uninterrupted_one(whole, tmp_path):
    expected = results(whole)
    assert len(expected) == 3 and all(state == "done" for state, _ in expected.values())

    out = tmp_path / "killed"
    killed_when(
        [sys.executable, CLI, "sweep", *TINY, "--out", str(out)],  # the sweep and its worker processes
        lambda: any(p.read_text().count("\n") >= 3 for p in out.glob("*/" + METRICS)),
    )
    index = json.loads((out / sweep.INDEX).read_text())
    assert any(entry["state"] != "done" for entry in index["runs"].values()), "killed too late"
    finished_before = {name for name, entry in index["runs"].items() if entry["state"] == "done"}
    mtimes = {name: (out / name / METRICS).stat().st_mtime_ns for name in finished_before}
    again = tinygrok("sweep", *TINY, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert results(out) == expected
    assert all((out / name / METRICS).stat().st_mtime_ns == mtimes[name] for name in finished_before)  # not retrained
    rerun = tinygrok("sweep", *TINY, "--out", str(out))
    assert rerun.returncode == 0 and "3 runs done" in rerun.stdout
    assert "3 done" in rerun.stdout and "100% of the expected steps" in rerun.stdout  # the table and the bar


def test_a_sweep_logged_to_a_file_says_its_states_as_they_change(whole, monkeypatch, capsys):
    dated = DATED.findall((whole.parent / "whole.log").read_text())  # the fixture's stdout: no terminal
    assert dated[0] == "table1: 3 queued" and dated[-1] == "table1: 3 done" and len(set(dated)) == len(dated)
    monkeypatch.setattr(views.console, "_force_terminal", False)  # captured: no terminal, whatever the shell says
    clock = iter([0.0, 1.0, 2.0, 700.0])
    progress = views.LogProgress(seconds=600, clock=lambda: next(clock))
    for states, line in ((1, "a"), (1, "b"), (2, "c"), (2, "d")):  # at 0, 1, 2 and 700 s
        progress(states, lambda line=line: line)
    assert DATED.findall(capsys.readouterr().out) == ["a", "c", "d"]  # b: no change, and too soon


def test_a_failing_run_is_retried_once_then_reported(tmp_path):
    specs = grids.grid("table1", grids.Filters(ops=("add",), seeds=(42,), max_steps=200, preset="classroom"))
    taken = specs[0]
    other = recipes.spec("train", "classroom", max_steps=50)
    recipes.execute(other, path=tmp_path / taken.name)  # its directory holds another run: execute refuses
    index = sweep.load_index(tmp_path, "table1", "test", specs)
    index = sweep.run_grid(specs, tmp_path, index, sweep.local_executor(1))
    entry = index["runs"][taken.name]
    assert entry["state"] == "failed" and entry["attempts"] == 2 and "other settings" in entry["error"]
    assert sweep.summary(index) == {"queued": 0, "running": 0, "done": 1, "diverged": 0, "failed": 1}
    assert Run(tmp_path / taken.name).config().max_steps == 50  # left as it was


def test_bad_sweeps_are_refused_in_one_line(whole, tmp_path):
    assert_refused(refused_here("sweep", "table2", "--out", str(tmp_path / "a")), "unknown experiment")
    assert_refused(refused_here("sweep", "pca", "--lrs", "0.5", "--out", str(tmp_path / "b")), "leave no run")
    assert_refused(refused_here("sweep", "pca", "--seeds", "x", "--out", str(tmp_path / "c")), "--seeds")
    assert_refused(
        refused_here("sweep", "kicks", "--arms", "kick,projekt", "--out", str(tmp_path / "c")),
        "--arms='kick,projekt' is invalid: projekt is not an arm; they are none, project,",
    )
    capped = ["table1", "--preset", "classroom", "--max-steps", "1", "--out", str(tmp_path / "d")]
    assert_refused(refused_here("sweep", *capped), "--max-steps=1 with --snapshot-every=1", "3 attention snapshots")
    assert not (tmp_path / "d").exists()
    before = results(whole)
    another = ["pca", "--ops", "add", "--seeds", "42", "--max-steps", "100", "--preset", "classroom"]
    assert_refused(refused_here("sweep", *another, "--out", str(whole)), "holds the sweep of table1")
    assert results(whole) == before


def test_a_grid_on_a_dask_cluster_survives_a_killed_worker_and_equals_local_processes(whole, tmp_path):
    """The path --scheduler takes, on a real LocalCluster of 2 worker processes; one is killed mid-run. `whole`
    ran the same grid on local processes."""
    from distributed import Client, LocalCluster

    specs = grids.grid("table1", grids.Filters(ops=("add",), seeds=(42, 137), max_steps=200, preset="classroom"))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        out = tmp_path / "dask"
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill_one_worker_mid_run(index):
            unfinished = [name for name, entry in index["runs"].items() if entry["state"] != "done"]
            if not killed and any((sweep.progress(out, name) or {}).get("step", 0) >= 60 for name in unfinished):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        index = sweep.run_grid(
            specs,
            out,
            sweep.load_index(out, "table1", "t", specs),
            sweep.dask_executor(cluster.scheduler_address),
            on_change=kill_one_worker_mid_run,
            poll_seconds=0.05,
        )
    assert killed and sweep.summary(index)["done"] == len(specs) == 3
    assert results(out) == results(whole)


def test_an_unreachable_scheduler_is_refused_in_one_line(tmp_path):
    assert_refused(
        refused_here("sweep", *TINY, "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path)),
        "cannot reach a Dask scheduler",
    )


def test_the_report_lists_every_run_and_the_statistics_beside_the_paper(whole, tmp_path):
    from tinygrok.lab import sweep_report

    assert tinygrok("report", str(whole)).returncode == 0
    text = (whole / sweep_report.REPORT).read_text()
    runs = sweep_report.sweep_runs(whole)
    assert len(runs) == 3 and all(r["name"] in text for r in runs) and "these runs differ in" not in text
    assert (
        "| add | 0.003 | 2 |" in text and "the classroom preset" in text and "2933 (add)" in text
    )  # two grokking runs of add, beside Table 1
    assert "add (wd 0, seed 42)" in text and "29 (add)" in text  # the no-decay control, beside the paper's 29x
    pc1 = [v for r in runs if r["weight_decay"] for v in r["pc1"].values()]  # 2 runs x 8 matrices, vs §5.4
    verdict = "replicates" if 0.638 <= sum(pc1) / 16 <= 0.815 else "differs"  # the mean inside the paper's range
    assert (
        f"| PC1 share (add, wd 1, 200 steps, every matrix) | {sum(pc1) / 16:.1%} ± " in text
        and "(n 16) | 63.8%-81.5% (add) |" in text
        and f"up to detection, per matrix | {verdict} |" in text
    )
    assert "PC1 share, no weight decay (add, wd 0, 200 steps, every matrix)" in text
    for figure in ("defect_by_op", "pc1_by_op"):  # one rate: no power law to draw
        assert f"![{figure}]({figure}.png)" in text and (whole / f"{figure}.png").stat().st_size > 10_000
    assert_refused(refused_here("report", str(tmp_path / "nowhere")), "index.json")
    (tmp_path / "a-file").write_text("")
    assert_refused(refused_here("report", str(whole), "--out", str(tmp_path / "a-file")), "is a file")
    (tmp_path / "empty").mkdir()
    for source, words in ((tmp_path / "nowhere", "neither a sweep directory"), (tmp_path / "empty", "no run records")):
        assert_refused(refused_here("report", str(source), "--out", str(tmp_path / "report")), words)
    assert not (tmp_path / "report").exists()  # refused before anything is written


def test_the_pc1_figure_labels_its_points_where_the_paper_has_no_bar():
    from tinygrok.lab import sweep_report

    slow = {"op": "add", "weight_decay": 0.1, "n_layers": 3, "hook": "none", "recipe": "probed", "steps": 1200}
    slow["pc1"] = {f"blocks.2.W_{m}": 0.9 for m in "QKVO"}  # no paper bar for the 3-layer model (figH differs)
    fast = {**slow, "op": "sub", "n_layers": 2, "weight_decay": 1.0, "pc1": {f"blocks.1.W_{m}": 0.7 for m in "QKVO"}}
    ours, theirs = "tinygrok (each run's matrices)", "paper (seed means per matrix)"
    for runs, labels in (([slow], [ours]), ([slow, fast], [theirs, ours])):
        legend = sweep_report.pc1_by_op(runs).axes[0].get_legend()
        assert sorted(text.get_text() for text in legend.get_texts()) == labels


def test_the_defect_figure_shows_a_median_of_exactly_zero_on_a_symlog_scale():
    """The slow regime's float32 defect is exactly 0 for long stretches (docs/paper.md §6.6): a log scale would
    drop those probes from the line; symlog shows them, in the panel that has one."""
    from tinygrok.lab import sweep_report

    def run(op, defects):
        metrics = [{"step": 5000 * i, "defect": d} for i, d in enumerate(defects)]
        return {"op": op, "seed": 42, "lr": 5e-5, "weight_decay": 0.1, "hook": "none", "recipe": "probed",
                "baseline_defect": 100.0, "onset_step": None, "grok_step_90": None, "metrics": metrics}  # fmt: skip

    zeros, none = [2.8, 110.0, 0.0, 0.023, 9000.0], [2.8, 110.0, 30.0, 9000.0]
    add, sub = sweep_report.defect_curves([run("add", zeros), run("sub", none)]).axes
    assert (add.get_yscale(), add.get_ylim()[0], sub.get_yscale()) == ("symlog", 0, "log")
    assert add.yaxis.get_transform().linthresh == 0.01  # the decade below 0.023: logarithmic above it
    assert "linear below 0.01, so 0 shows" in add.get_ylabel() and "0 shows" not in sub.get_ylabel()
    assert list(add.get_lines()[0].get_ydata()) == zeros and list(sub.get_lines()[0].get_ydata()) == none


def test_the_report_fits_the_power_law_over_learning_rates():
    from tinygrok.lab import sweep_report

    runs = [
        {"lr": lr, "grok_step": grok, "onset_step": grok - lead}
        for lr, grok, lead in ((1e-2, 1000, 100), (1e-3, 3000, 400), (1e-4, 30000, 8000), (1e-4, 40000, -5))
    ]
    fit, lines = sweep_report._power_law(runs)
    least_squares = np.polyfit(np.log([1000, 3000, 30000]), np.log([100, 400, 8000]), 1)[0]  # the 3 positive leads
    assert fit["alpha"] == pytest.approx(least_squares, rel=1e-12) and fit["n"] == 3
    text = "\n".join(lines)
    assert f"alpha = {fit['alpha']:.2f}" in text and "n 3, 1 runs dropped" in text and "1.27 ± 0.03" in text
    assert sweep_report._power_law(runs[:2])[0] is None and "No fit" in "\n".join(sweep_report._power_law(runs[:2])[1])
    assert sweep_report._power_law([dict(runs[0])]) == (None, [])  # one rate: no section
    figure = sweep_report.lead_vs_grok(runs, fit)
    fitted = figure.axes[0].lines[-2]  # the fitted line through the runs' points
    x, y = fitted.get_data()
    assert y[-1] / y[0] == pytest.approx((x[-1] / x[0]) ** fit["alpha"])


def test_the_report_gives_exec_random_per_run_and_defect_level_beside_the_paper():
    from tinygrok.lab import sweep_report

    levels = {"5-15": 2.5, "15-30": 1.5, ">=30": None}
    runs = [
        {
            "name": f"r{seed}",
            "op": "add",
            "seed": seed,
            "recipe": "walkthrough",
            "hook": "none",
            "memorization_phase_probes": 12,
            "exec_random_ratio_weight_svd": svd,
            "exec_random_ratio": pca,
            "exec_random_by_defect_weight_svd": levels,
            "exec_random_by_defect": {k: 1.0 for k in levels},
        }
        for seed, svd, pca in ((42, 2.0, 0.9), (137, 2.2, 1.1))
    ]
    text = "\n".join(sweep_report._controls(runs))
    assert "| add | 42 | 12 | 2 | 2.5 / 1.5 / none | 2.04 (add) | 0.9 | 1 / 1 / 1 | 0.86 (add) |" in text
    assert "| **add** | mean ± sd |  | 2.1 ± 0.141 (n 2) |  |  | 1 ± 0.141 (n 2) |  |  |" in text
    assert "(5-15 / 15-30 / >=30)" in text and sweep_report._controls([dict(runs[0], hook="kick:alpha=10.0")]) == []


def test_the_report_names_the_settings_its_tables_do_not_split_runs_by():
    """beta2 and the batch size are named with their values; max_steps (when a run stops) and an intervention's
    runs are not."""
    from tinygrok.lab import sweep_report
    from tinygrok.science.config import Config

    settings = ({}, {"beta2": 0.999, "max_steps": 10}, {"beta2": 0.999, "batch_size": 256}, {"weight_decay": 0.5})
    runs = [{"hook": "none", "recipe": "train", "config": Config(**s)} for s in settings]
    intervened = {"hook": "project", "recipe": "intervene", "config": Config(lr=3e-4)}
    assert sweep_report._pooled(runs[:1] + runs[3:] + [intervened]) == []
    assert sweep_report._pooled(runs)[0].endswith(
        "differ in beta2 (0.98, 0.999); batch_size (256, 512): no table below splits them by those."
    )


def test_the_report_sets_a_float32_run_beside_its_float64_twin():
    from tinygrok.lab import sweep_report
    from tinygrok.science import analysis

    defects = {"float32": [2.0, 2.0, 30.0, 0.0, 4000.0, 0.0], "float64": [2.0, 2.1, 31.0, 900.0, 1200.0, 800.0]}
    runs = []
    for dtype, ds in defects.items():
        rows = [
            {"step": 100 * i, "train_acc": 1.0, "test_acc": 0.1 if i < 3 else 0.95, "defect": d}
            for i, d in enumerate(ds)
        ]
        runs.append(
            {
                "name": dtype,
                "metrics": rows,
                "op": "add",
                "seed": 42,
                "lr": 1e-3,
                "weight_decay": 1.0,
                "n_layers": 2,
                "max_steps": 100,
                "dtype": dtype,
                "recipe": "walkthrough",
                "hook": "none",
                **analysis.grok_summary(rows),
                **analysis.curvature_summary(rows),
            }
        )
    assert analysis.defect_features(runs[0]["metrics"]) == {
        "zero_defects": 2,
        "probes": 6,
        "max_defect_before_grok": 30.0,
        "max_defect_after_grok": 4000.0,
    }
    assert sweep_report.precision_pairs(runs) == [tuple(runs)] and sweep_report.precision_pairs(runs[:1]) == []
    text = "\n".join(sweep_report._precision(runs))
    assert "| max D after grok_90 | 4000 | 1200 |" in text and "| probes with D exactly 0 | 2 | 0 |" in text
    assert sweep_report.precision_overlay(runs).axes[0].get_title() == "add, seed 42"


def test_the_report_gives_the_pc1_z_scores_beside_figure_e():
    from tinygrok.lab import sweep_report

    common = dict(seed=42, lr=1e-3, weight_decay=1.0, preset_lr=True, recipe="pca", hook="none", n_layers=2, steps=3000)
    runs = [
        dict(common, name="a", op="add", pc1={"m": 0.7}, pc1_null_z={"m": 55.0, "n": 70.0}),
        dict(common, name="b", op="x3_xy", pc1={"m": 0.5}, pc1_null_z={"m": 10.0}),
    ]
    text = "\n".join(sweep_report._measured_vs_paper(runs, None))
    assert (
        "| PC1 z-score vs random walks (add, wd 1, every matrix) | 62.5 ± 10.6 [55.0-70.0] (n 2) | 5-20 sigma" in text
    )
    assert (
        "| PC1 z-score vs random walks (x3_xy, wd 1, every matrix) | 10.0 (n 1) | -75 to -30 (x3_xy) |  | differs |"
    ) in text
