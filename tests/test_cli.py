"""The command line: bad input gets one line naming the problem, exit code 2, and touches no existing run."""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygrok.run import geometry
from tinygrok.run.runs import GEOMETRY, Run, RunError
from tinygrok.science import analysis
from tinygrok.science.model import param_count

CLI = str(Path(__file__).resolve().parents[1] / "cli.py")
TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-ff", "8", "--batch-size", "8", "--eval-every", "5"]
# the classroom model at about a quarter of its cost, for checks that do not depend on its size (resumes, kills)
SMALL = dict(p=23, d_model=32, d_ff=64, batch_size=32)
SMALL_ARGS = [arg for key, value in SMALL.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


# what tinygrok sees when its output goes to a file: no terminal, whatever the shell running the tests asks for
PLAIN = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
DATED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$", re.M)  # a line of a log's progress (views.LogProgress)


def tinygrok(*args, cwd=None):
    return subprocess.run([sys.executable, CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=PLAIN)


def killed_when(command: list, ready, timeout: float = 120) -> None:
    """Run `command` until ready() holds (or `timeout` seconds), then kill -9 it with every process it started."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def snapshot(path: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    result = tinygrok("train", *TINY, "--max-steps", "10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def refused_here(*args) -> subprocess.CompletedProcess:
    """A command line that must be refused, run in this process by typer's CliRunner (a refusal comes before any
    work: no interpreter start-up to pay for it); as tinygrok() returns it."""
    from typer.testing import CliRunner

    from tinygrok.cli import app

    result = CliRunner().invoke(app.app, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_refused(result, *words):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--op", "div"], ["--op", "div"]),
        (["--p", "96"], ["--p", "96", "prime"]),
        (["--train-frac", "1.5"], ["--train-frac"]),
        (["--train-frac", "0"], ["--train-frac"]),
        (["--lr", "-0.001"], ["--lr"]),
        (["--d-model", "130"], ["--n-heads", "d-model"]),
        (["--preset", "huge"], ["--preset", "huge"]),
        (["--preset", ""], ["--preset=''"]),  # not the default
        (["--seed", "-1"], ["--seed"]),
        (["--lr", "2", "--weight-decay", "1"], ["--weight-decay", "lr * weight-decay < 1"]),
        (["--backend", "gpu"], ["--backend", "gpu", "numpy, cupy, auto"]),
        pytest.param(
            ["--backend", "cupy"],
            ["--backend=cupy", "tinygrok[cupy]"],
            marks=pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed"),
        ),
    ],
)
def test_bad_values_refused_without_touching_the_run(existing_run, args, words):
    before = snapshot(existing_run)
    assert_refused(refused_here("train", *args, "--out", str(existing_run)), *words)
    assert snapshot(existing_run) == before


def test_existing_run_needs_resume_or_force(existing_run):
    before = snapshot(existing_run)
    assert_refused(refused_here("train", *TINY, "--out", str(existing_run)), "already exists", "--resume", "--force")
    assert snapshot(existing_run) == before


def test_resume_missing_or_corrupt_checkpoint(existing_run, tmp_path):
    assert_refused(refused_here("train", "--resume", "--out", str(tmp_path / "nowhere")), "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in existing_run.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "checkpoint.npz").write_bytes(b"not a zip file")
    before = snapshot(broken)
    assert_refused(refused_here("train", "--resume", "--out", str(broken)), "corrupt", "checkpoint")
    assert snapshot(broken) == before
    (broken / "checkpoint.npz").unlink()
    assert_refused(refused_here("train", "--resume", "--out", str(broken)), "checkpoint.npz is missing")


def test_resume_refuses_changed_settings(existing_run):
    before = snapshot(existing_run)
    assert_refused(refused_here("train", "--resume", "--out", str(existing_run), "--lr", "0.5"), "--lr", "--force")
    assert_refused(refused_here("train", "--resume", "--out", str(existing_run), "--preset", "paper"), "--preset")
    assert snapshot(existing_run) == before


def test_train_writes_a_complete_run_and_resume_extends_nothing(existing_run):
    assert {"config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"} <= set(snapshot(existing_run))
    summary = json.loads((existing_run / "summary.json").read_text())
    for key in (
        "grok_step_90",
        "grok_step",
        "memorization_step",
        "final_train_acc",
        "final_test_acc",
        "steps",
        "params",
    ):
        assert key in summary["results"]
    for key in ("wall_seconds", "train_step_ms", "threads", "numpy", "blas"):  # apart from the results
        assert key in summary["environment"]
    summary, run = summary["results"], Run(existing_run)
    rows, cfg = run.metrics(), run.config()
    assert summary["steps"] == rows[-1]["step"] == 10 and cfg.p == 7 and summary["params"] == param_count(cfg)
    assert (summary["final_train_acc"], summary["final_test_acc"]) == (rows[-1]["train_acc"], rows[-1]["test_acc"])
    assert summary["grok_step_90"] == analysis.first_step(rows, "test_acc", 0.9)
    before = snapshot(existing_run)
    assert tinygrok("train", "--resume", "--out", str(existing_run)).returncode == 0
    assert snapshot(existing_run) == before  # a finished run: nothing to extend, nothing rewritten


def test_force_restarts_and_plot_draws(tmp_path):
    out = tmp_path / "run"
    assert tinygrok("train", *TINY, "--max-steps", "5", "--out", str(out)).returncode == 0
    old = Run(out).metrics()
    result = tinygrok("train", *TINY, "--seed", "43", "--max-steps", "10", "--out", str(out), "--force", "--plot")
    assert result.returncode == 0, result.stderr
    run = Run(out)
    assert run.config().seed == 43 and run.summary()["steps"] == 10 and run.environment()["resumes"] == 0
    assert run.metrics()[0]["step"] == 0 and run.metrics()[0] != old[0]  # a new run from step 0, not the old one
    assert (out / "training.png").stat().st_size > 10_000
    assert "tinygrok plot" in result.stdout


def test_doctor_reports_blas_and_backend():
    result = tinygrok("doctor")
    assert result.returncode == 0 and "blas" in result.stdout and "numpy" in result.stdout
    assert "--backend cupy" in result.stdout  # whether the GPU backend would work here, and if not, why


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "grok"
    result = tinygrok("grok", "--preset", "classroom", "--max-steps", "200", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_grok_walkthrough_explains_and_draws(walkthrough):
    out, result = walkthrough
    for phrase in ("what happened", "lead time", "exec/random", "PC1 share"):
        assert phrase in result.stdout
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert {"onset_step", "lead_steps", "defect_growth", "pc1", "rho", "exec_random_ratio"} <= set(summary)
    assert json.loads((out / "config.json").read_text())["probe_every"] == 100
    for figure in ("training.png", "defect.png", "explained_variance.png", "trajectory.png", "projections.png"):
        assert (out / figure).exists()


def test_a_walkthrough_without_weight_decay_counts_its_exactly_zero_defects_and_the_view_says_so(tmp_path):
    """The paper's control memorizes and never groks; late in it float32 makes the defect exactly 0 (§6.6): the
    analysis leaves those records out of its medians, counts them, and says so. (p = 31, so that the loss
    collapses within 1,000 steps: every probe from step 700 on gives exactly 0.)"""
    from tinygrok.cli import views
    from tinygrok.lab import recipes

    spec = recipes.spec("walkthrough", "classroom", weight_decay=0.0, p=31, max_steps=1000)
    summary = recipes.execute(spec, tmp_path)
    out = tmp_path / spec.name
    rows = [json.loads(line) for line in (out / "geometry.jsonl").read_text().splitlines()]
    assert summary["grok_step"] is None and summary["memorization_step"] is not None
    zero = [r["step"] for r in rows if r["exec_rho"] is None]
    assert zero and all(r["defect"] == 0 for r in rows if r["step"] in zero)
    assert summary["undefined"]["exec_rho"] == {
        "records": len(zero),
        "of": len(rows),
        "why": "every defect sample is exactly 0: no direction to measure",
    }
    assert summary["rho"] == statistics.median(r["exec_rho"] for r in rows if r["exec_rho"] is not None)
    with views.console.capture() as shown:
        views.explain(summary, "add")
    assert f"exec_rho, weight_svd_rho: undefined in {len(zero)} of {len(rows)} records" in " ".join(shown.get().split())
    for name in ("summary.json", "geometry.jsonl"):
        assert "NaN" not in (out / name).read_text() and "Infinity" not in (out / name).read_text()


def test_pca_and_commutator_commands_on_a_run(walkthrough):
    out, _ = walkthrough
    pca = tinygrok("pca", str(out))
    assert pca.returncode == 0
    for name, share in Run(out).pca()["pc1"].items():  # each matrix's line shows its PC1 as pca.json has it
        assert f"{100 * share:.1f}%" in next(line for line in pca.stdout.splitlines() if name in line), name
    comm = tinygrok("commutator", str(out), "--samples", "2")
    assert comm.returncode == 0 and "exec/random" in comm.stdout
    rows = Run(out).geometry()  # rewritten with K = 2: the table shows these rows
    assert all(f"{r['exec_rho']:.6f}" in comm.stdout and f"{r['defect']:.3g}" in comm.stdout for r in rows)


def test_commutator_takes_the_runs_own_sample_count_unless_told(tmp_path):
    """A run probed with K = 3 is re-analysed with K = 3: the same geometry.jsonl as its analysis in this process."""
    out = tmp_path / "k3"
    args = ("--max-steps", "60", "--snapshot-every", "10", "--theta-every", "20", "--probe-samples", "3")
    assert tinygrok("train", *TINY, *args, "--out", str(out)).returncode == 0
    shutil.copytree(out, tmp_path / "here")
    geometry.analyse(Run(tmp_path / "here"))
    assert tinygrok("commutator", str(out)).returncode == 0
    assert (out / GEOMETRY).read_bytes() == (tmp_path / "here" / GEOMETRY).read_bytes()
    assert tinygrok("commutator", str(out), "--samples", "5").returncode == 0
    assert (out / GEOMETRY).read_bytes() != (tmp_path / "here" / GEOMETRY).read_bytes()


def test_commutator_and_pca_need_saved_trajectories(existing_run):
    assert_refused(refused_here("commutator", str(existing_run)), "--theta-every")
    assert_refused(refused_here("pca", str(existing_run)), "snapshots", "at least 3")


def test_a_path_the_system_refuses_is_one_line_exit_1(tmp_path):
    """An output under a file, or over one: the system's word for it, on one line (what a full disk or a read-only
    folder gives too)."""
    (tmp_path / "a-file").write_text("")
    for args, words in (
        (["train", *TINY, "--out", str(tmp_path / "a-file" / "run")], "a-file/run: Not a directory"),
        (["sweep", "table1", "--preset", "classroom", "--out", str(tmp_path / "a-file")], "a-file: File exists"),
    ):
        result = refused_here(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and words in lines[0], result.stderr


def test_plot_refuses_a_run_with_nothing_to_draw_and_a_corrupt_basis_is_named(existing_run, tmp_path):
    copy = shutil.copytree(existing_run, tmp_path / "copy")
    first = (copy / "metrics.jsonl").read_text().splitlines()[0]  # step 0 only
    (copy / "metrics.jsonl").write_text(first + "\n")
    assert_refused(refused_here("plot", str(copy)), "no evaluations after step 0")
    (copy / "basis.npy").write_bytes(b"not an array")
    with pytest.raises(RunError, match="basis.npy cannot be read as a .npy array"):
        Run(copy).basis()


def test_grok_refuses_bad_input(tmp_path):
    assert_refused(refused_here("grok", "--op", "div", "--out", str(tmp_path / "x")), "--op")
    assert_refused(refused_here("grok", "--preset", "slow", "--out", str(tmp_path / "x")), "--preset", "grok")
    assert not (tmp_path / "x").exists()
    short = refused_here("grok", "--preset", "classroom", "--max-steps", "100", "--out", str(tmp_path / "short"))
    assert_refused(short, "--max-steps=100", "fewer than the 3 attention snapshots")  # before it trains
    assert not (tmp_path / "short").exists()


def test_threads_option_reaches_numpy_blas(tmp_path):
    out = tmp_path / "t"
    assert tinygrok("train", *TINY, "--max-steps", "5", "--threads", "1", "--out", str(out)).returncode == 0
    assert json.loads((out / "summary.json").read_text())["environment"]["threads"] == 1


def test_bench_json_has_the_documented_keys_and_sane_times():
    """`tinygrok bench --json`: one JSON object other tools can compare against (paper settings, 2 cores)."""
    result = tinygrok("bench", "--json", "--repeats", "1", "--threads", "2")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["threads"] == 2 and out["backend"] == "numpy" and out["blas"] != "unknown"
    step, full, commutator = out["train_step_ms"], out["train_step_full_batch_ms"], out["commutator_sample_ms"]
    assert 0 < step < full and 0 < out["eval_ms"] and 0 < commutator  # the whole set is 9x a batch
