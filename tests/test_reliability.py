"""Bad files, divergence, two writers and a full disk: each ends in one clear line and a run that can be continued."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tinygrok.cli import app as cli
from tinygrok.lab import recipes, sweep, sweep_report
from tinygrok.run import runs
from tinygrok.run.runs import CHECKPOINT, CONFIG, METRICS, SNAPSHOTS, SUMMARY, Run
from tinygrok.run.train import Diverged, train
from tinygrok.science import config

SMALL = config.preset("classroom", max_steps=30, eval_every=10, snapshot_every=10)
SPEC = recipes.RunSpec(SMALL, "train", "classroom")


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def assert_one_line(result, code: int, *words: str):
    assert result.exit_code == code, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(path: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "run"
    recipes.execute(SPEC, path=path)
    return path


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    copy.mkdir()
    for p in trained.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    return copy


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte_inside_the_params(path: Path) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param:W_E.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside W_E's stored bytes
    path.write_bytes(bytes(data))


def edit_json(name: str, change):
    def edit(path: Path) -> None:
        saved = json.loads((path.parent / name).read_text())
        change(saved)
        (path.parent / name).write_text(json.dumps(saved))

    return edit


BAD_FILES = {  # what is done to the run -> (the file, words its message must hold)
    "truncated checkpoint": (CHECKPOINT, truncate, ["checkpoint.npz", "corrupt"]),
    "corrupted checkpoint": (CHECKPOINT, flip_a_byte_inside_the_params, ["checkpoint.npz", "corrupt"]),
    "config of wrong type": (
        CONFIG,
        edit_json(CONFIG, lambda c: c.update(p="59")),
        ["config.json", 'p is "59"', "integer"],
    ),
    "config unknown field": (CONFIG, edit_json(CONFIG, lambda c: c.update(warmup=10)), ["config.json", "warmup"]),
    "config of another version": (
        CONFIG,
        edit_json(CONFIG, lambda c: c.pop("onset_floor")),
        ["config.json", "missing field(s) onset_floor", "another version"],
    ),
    "config not an object": (CONFIG, lambda p: p.write_text("[1, 2]"), ["config.json", "list"]),
    "metrics not JSON": (METRICS, lambda p: p.write_text("step,loss\n0,4.1\n"), ["metrics.jsonl line 1", "JSON"]),
    "snapshots of the wrong shape": (
        SNAPSHOTS,
        lambda p: np.save(p, np.zeros((3, 5), np.float32)),
        ["snapshots.npy", "(3, 5)", "rows of"],
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("command", ["train --resume --out", "pca", "commutator", "plot"])
def test_a_bad_file_is_refused_in_one_line_naming_it(run_copy, case, command):
    name, damage, words = BAD_FILES[case]
    if command.startswith("train"):
        (run_copy / SUMMARY).unlink()  # killed before its end: a resume reads all its files
    damage(run_copy / name)
    before = snapshot(run_copy)
    result = invoke(*command.split(), str(run_copy))
    reads = {
        "train": (CHECKPOINT, CONFIG, METRICS, SNAPSHOTS),
        "pca": (CONFIG, METRICS, SNAPSHOTS),
        "commutator": (CONFIG,),
        "plot": (CONFIG, METRICS),
    }[command.split()[0]]
    if name not in reads:  # a command that does not read the file: it works, or is refused in one line
        if result.exit_code == 2:
            assert_one_line(result, 2)
        else:
            assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        return
    line = assert_one_line(result, 2, *words)
    assert str(run_copy / name) in line
    assert snapshot(run_copy) == before


def test_a_summary_or_a_sweep_index_without_its_keys_is_refused_in_one_line(run_copy, tmp_path):
    (run_copy / SUMMARY).write_text("{}")
    assert_one_line(invoke("train", "--resume", "--out", str(run_copy)), 2, "lacks results, environment, stages")
    (tmp_path / "sweep").mkdir()
    index = tmp_path / "sweep" / sweep.INDEX
    for text, words in (
        ("{}", "lacks experiment, filters, runs"),
        ('{"experiment": "table1", "filters": "", "runs": {"a": {"state": "weird", "recipe": "train"}}}', "no sweep"),
    ):
        index.write_text(text)
        for command in (["report", str(index.parent)], ["record", str(index.parent), "--into", str(tmp_path / "r")]):
            assert_one_line(invoke(*command), 2, str(index), words)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "sweep"]


def test_a_missing_config_and_a_missing_run_are_named(tmp_path):
    assert_one_line(invoke("pca", str(tmp_path)), 2, str(tmp_path), "config.json is missing")
    assert_one_line(invoke("train", "--resume", "--out", str(tmp_path / "nowhere")), 2, "nowhere", "config.json")
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------- divergence
DIVERGES = SMALL.replace(lr=1e30, weight_decay=0.0)  # one Adam step moves each weight by ~1e30: overflow


def test_a_diverging_run_stops_at_that_step_and_keeps_its_last_good_checkpoint(tmp_path):
    path = tmp_path / "run"
    with pytest.raises(Diverged) as caught:
        recipes.execute(recipes.RunSpec(DIVERGES, "train", "classroom"), path=path)
    err = caught.value
    assert err.step == 2 and err.quantity == "the gradient norm" and not np.isfinite(err.value)
    run = Run(path)
    assert run.summary()["diverged_at"] == 2 and run.summary()["diverged"] == "the gradient norm"
    assert run.stages() == ["diverged"] and [r["step"] for r in run.metrics()] == [0]
    params, _, meta = run.load_checkpoint()  # the last good one: step 0's
    assert meta["step"] == 0 and all(np.isfinite(w).all() for w in params.values())
    before = snapshot(path)
    line = assert_one_line(
        invoke("train", "--resume", "--out", str(path)),
        cli.EXIT_DIVERGED,
        "diverged at step 2",
        "the gradient norm is nan",
    )
    assert "Traceback" not in line and snapshot(path) == before  # run again, it stops at once: nothing changes


def test_divergence_from_the_command_line_is_one_line_and_exit_3(tmp_path):
    options = ["--preset", "classroom", "--lr", "1e30", "--weight-decay", "0", "--max-steps", "30"]
    assert_one_line(
        invoke("train", *options, "--out", str(tmp_path / "r")),
        cli.EXIT_DIVERGED,
        "diverged at step 2: the gradient norm is nan",
    )  # NumPy's overflow warnings silenced


def test_a_non_finite_parameter_or_loss_stops_the_run(tmp_path):
    from tinygrok.run import train as train_module

    state = train_module.fresh_state(SMALL)
    state.theta[5] = np.inf
    with pytest.raises(Diverged, match="step 0: the train loss is nan"), np.errstate(invalid="ignore"):  # inf - inf
        train_module.Recorder(
            SMALL,
            Run.create(tmp_path / "r", SMALL),
            train_module.make_dataset(SMALL.op, SMALL.p, SMALL.train_frac, SMALL.seed),
            [],
        )(state, {}, 30, train_module.not_spent())
    hook = config.preset("classroom", hook="weight_noise:sigma=1e38,every=1")  # a kick past float32's range
    with pytest.raises(Diverged, match="a parameter is (-)?inf"):
        train(hook.replace(max_steps=3), Run.create(tmp_path / "kicked", hook.replace(max_steps=3)))


def test_a_sweep_reports_a_diverged_run_as_diverged_and_does_not_retry_it(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    specs = [SPEC, recipes.RunSpec(DIVERGES, "train", "classroom")]
    index = sweep.load_index(tmp_path, "mixed", "", specs)
    index = sweep.run_grid(specs, tmp_path, index, lambda: ThreadPoolExecutor(1), poll_seconds=60)
    entry = index["runs"][specs[1].name]
    assert entry["state"] == "diverged" and entry["attempts"] == 0 and "step 2" in entry["error"]
    assert sweep.summary(index)["done"] == 1 and sweep.summary(index)["failed"] == 0
    assert sweep.load_index(tmp_path, "mixed", "", specs)["runs"][specs[1].name]["state"] == "diverged"
    text = sweep_report.write([tmp_path]).read_text()
    assert "1 runs done, 1 diverged, 0 failed" in text and f"- diverged: {specs[1].name}: the run diverged" in text


# ---------------------------------------------------------------------- one writer
def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(run_copy):
    with Run(run_copy).writing():  # this process writes the run ...
        before = snapshot(run_copy)
        other = subprocess.run(
            [sys.executable, "-m", "tinygrok", "pca", str(run_copy)], capture_output=True, text=True
        )  # ... so another is refused
        assert other.returncode == 2 and "being written by another process" in other.stderr
        assert len(other.stderr.strip().splitlines()) == 1 and snapshot(run_copy) == before
        with Run(run_copy).writing():  # re-entrant within the process
            pass
    pid = os.fork()
    if pid == 0:  # a writer killed while holding the lock
        with Run(run_copy).writing():
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    with Run(run_copy).writing():  # the kernel dropped its lock
        pass


def test_a_second_sweep_into_the_same_directory_is_refused(tmp_path):
    with runs.directory_lock(tmp_path):  # a sweep runs there ...
        other = subprocess.run(
            [
                sys.executable,
                "-m",
                "tinygrok",
                "sweep",
                "table1",
                "--out",
                str(tmp_path),
                "--preset",
                "classroom",
                "--ops",
                "add",
                "--seeds",
                "42",
                "--max-steps",
                "10",
            ],
            capture_output=True,
            text=True,
        )
    assert other.returncode == 2 and "being written by another process" in other.stderr  # ... so another is refused
    assert len(other.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- disk full
def test_a_full_disk_keeps_the_last_checkpoint_and_the_rows_and_says_what_failed(trained, tmp_path, monkeypatch):
    path, original, checkpoints = tmp_path / "run", runs._write, []

    def full_at_the_third_checkpoint(f, data):
        if Path(f.name).name == CHECKPOINT + ".tmp":
            checkpoints.append(1)
            if len(checkpoints) == 3:  # step 20's: a part written, then the disk is full
                original(f, data[:1000])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(f, data)

    monkeypatch.setattr(runs, "_write", full_at_the_third_checkpoint)
    options = ["--preset", "classroom", "--max-steps", "30", "--eval-every", "10", "--snapshot-every", "10"]
    line = assert_one_line(invoke("train", *options, "--out", str(path)), 1)
    assert f"could not write {path / CHECKPOINT}: No space left on device" in line
    assert Run(path).load_checkpoint()[2]["step"] == 10 and not list(path.glob("*.tmp"))
    assert [r["step"] for r in Run(path).metrics()] == [0, 10, 20]  # written before the checkpoint that failed
    monkeypatch.setattr(runs, "_write", original)
    assert invoke("train", "--resume", "--out", str(path)).exit_code == 0  # space again: it continues
    assert (path / METRICS).read_bytes() == (trained / METRICS).read_bytes()


# ---------------------------------------------------------------------- progress
def test_the_end_is_known_only_once_grokking_is_detected(tmp_path):
    seen = []  # a low threshold, so that "grokking" is detected within seconds (at step 200): the same mechanism
    cfg = config.preset("classroom", extra_steps=30, max_steps=400, eval_every=10, stop_acc=0.01, stop_patience=3)
    train(cfg, Run.create(tmp_path / "r", cfg), on_step=lambda step, row, end: seen.append((step, end)))
    detected = Run(tmp_path / "r").summary()["grok_step"]
    assert 0 < detected < 400 and all(end is None for step, end in seen if step < detected)
    assert all(end == detected + 30 for step, end in seen if step >= detected) and seen[-1][0] == detected + 30
