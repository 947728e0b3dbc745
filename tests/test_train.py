"""The training loop: bit-identical reruns, resume == uninterrupted, and a small model that really groks."""

import shutil

import numpy as np
import pytest

import tinygrok.run.train as train_module
from tinygrok.engine import parallel
from tinygrok.engine.fast import forward
from tinygrok.engine.ops import cross_entropy
from tinygrok.run.runs import METRICS, SNAPSHOTS, THETAS, Run
from tinygrok.run.train import evaluate, fresh_state, train
from tinygrok.science.config import Config
from tinygrok.science.data import make_dataset
from tinygrok.science.model import unflatten

SMALL = Config(
    p=11,
    d_model=16,
    n_heads=2,
    d_ff=32,
    batch_size=32,
    eval_every=20,
    max_steps=120,
    snapshot_every=20,
    theta_every=40,
    probe_every=40,
    probe_samples=2,
)


class Interrupt(Exception):
    pass


def test_same_seed_gives_bit_identical_metrics(tmp_path):
    for name in ("a", "b"):
        train(SMALL, Run.create(tmp_path / name, SMALL))
    a, b = ((tmp_path / n / METRICS).read_bytes() for n in ("a", "b"))
    assert a == b and a.count(b"\n") == 1 + 120 // 20
    other = SMALL.replace(seed=43)
    train(other, Run.create(tmp_path / "c", other))
    assert (tmp_path / "c" / METRICS).read_bytes() != a


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    train(SMALL, Run.create(tmp_path / "whole", SMALL))

    def crash_at_70(step, row, end):  # after the step-60 checkpoint, with 10 unsaved steps
        if step == 70:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(SMALL, Run.create(tmp_path / "split", SMALL), on_step=crash_at_70)
    # as if it had crashed after writing the step-80 row but before its checkpoint: the resume drops that row
    Run(tmp_path / "split").append_metrics({"step": 80, "train_acc": 0.0, "test_acc": 0.0})
    summary = train(SMALL, Run(tmp_path / "split"), resume=True)
    assert summary["steps"] == 120
    for name in (METRICS, SNAPSHOTS, THETAS):  # metrics with probe columns, and both trajectories
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "split" / name).read_bytes(), name
    whole, split = (Run(tmp_path / n).load_checkpoint() for n in ("whole", "split"))
    for part in (0, 1):  # params by name, then the AdamW moments
        assert whole[part].keys() == split[part].keys()
        assert all(np.array_equal(whole[part][k], split[part][k]) for k in whole[part])
    assert whole[2]["batch_rng"] == split[2]["batch_rng"] and whole[2]["adam_t"] == split[2]["adam_t"] == 120
    assert {a.dtype for part in whole[:2] for a in part.values()} == {np.dtype(np.float32)}  # float32 throughout


def test_a_resume_counts_itself_and_a_checkpoint_from_before_the_count_leaves_it_unknown(tmp_path):
    def crash_at_70(step, row, end):
        if step == 70:
            raise Interrupt

    for name, counted in (("counted", True), ("before", False)):
        with pytest.raises(Interrupt):
            train(SMALL, Run.create(tmp_path / name, SMALL), on_step=crash_at_70)
        run = Run(tmp_path / name)
        params, arrays, meta = run.load_checkpoint()
        assert meta["resumes"] == 0 and meta["cpu_seconds"] > 0 and meta["wall_seconds"] >= meta["cpu_seconds"] / 2
        if not counted:  # as a checkpoint written before CPU time and resumptions were counted
            del meta["cpu_seconds"], meta["resumes"]
            run.save_checkpoint(params, arrays, meta)
        train(SMALL, run, resume=True)
        spent = run.environment()
        if counted:
            assert spent["resumes"] == 1 and spent["cpu_seconds"] > meta["cpu_seconds"]
        else:
            assert spent["resumes"] is None and spent["cpu_seconds"] is None and spent["wall_seconds"] > 0


@pytest.fixture(scope="module")
def classroom(classroom_run):
    """The classroom preset trained to detection, as `tinygrok train --preset classroom` does (the session's)."""
    run = Run(classroom_run)
    return run.summary(), run.metrics()


def test_classroom_preset_groks(classroom):
    summary, rows = classroom
    assert summary["final_test_acc"] == rows[-1]["test_acc"] >= 0.98  # the stop rule: 98% at the last evaluations
    assert summary["memorization_step"] + 500 <= summary["grok_step_90"]  # memorize first, generalise later
    assert rows[[r["step"] for r in rows].index(summary["memorization_step"])]["test_acc"] < 0.3


def test_stop_rule_is_patience_then_extra_steps(classroom, classroom_run, tmp_path):
    """§1.5: detection = 3rd consecutive evaluation with test acc >= 0.98; then train `extra_steps` more."""
    summary, rows = classroom
    assert summary["steps"] == summary["grok_step"] == rows[-1]["step"]  # the preset's extra_steps: 0
    more = Run(shutil.copytree(classroom_run, tmp_path / "more"))
    assert train(more.config().replace(extra_steps=100), more, resume=True)["steps"] == summary["grok_step"] + 100
    assert [r["step"] for r in more.metrics()][-2:] == [summary["grok_step"], summary["grok_step"] + 100]
    before = [r["test_acc"] for r in rows if r["step"] <= summary["grok_step"]]
    assert min(before[-3:]) >= 0.98 and not all(a >= 0.98 for a in before[-4:])


def test_evaluate_in_chunks_is_exact_accuracy_and_mean_loss(monkeypatch):
    cfg = SMALL
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    theta = fresh_state(cfg).theta
    whole = evaluate(theta, data, cfg)
    monkeypatch.setattr(train_module, "EVAL_CHUNK", 7)  # 60 examples in 9 chunks, the last one short
    chunked = evaluate(theta, data, cfg)
    logits = forward(unflatten(theta, cfg), data.test_x, cfg.n_heads)
    assert chunked["test_acc"] == whole["test_acc"] == np.mean(np.argmax(logits, 1) == data.test_y)
    assert chunked["test_loss"] == pytest.approx(float(cross_entropy(logits, data.test_y)), rel=1e-6)
    with parallel.cores(2):  # chunks evaluated side by side in two processes: the same numbers
        assert evaluate(theta, data, cfg) == chunked
