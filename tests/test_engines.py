"""The model you read is the model that trains (engines.py): the readable engine (model.py, autograd, optim.py)
and the fast one compute the same run; auto trains on the fast one only once it has checked it against the
readable one, so a changed model.py is never silently ignored."""

import json
import logging

import numpy as np
import pytest
from test_cli import SMALL

from tinygrok.engine import engines, parallel
from tinygrok.engine.fast import flat_grad
from tinygrok.run import geometry
from tinygrok.run.runs import METRICS, Run
from tinygrok.run.train import fresh_state, train
from tinygrok.science import model
from tinygrok.science.commutator import defect_sample
from tinygrok.science.config import ConfigError, preset
from tinygrok.science.data import make_dataset, sample_batch, stream

CFG = preset("classroom", max_steps=200)
DATA = make_dataset(CFG.op, CFG.p, CFG.train_frac, CFG.seed)


def trained(path, **changes) -> Run:
    cfg = CFG.replace(**changes)
    run = Run.create(path, cfg)
    train(cfg, run)
    return run


def rows(run: Run) -> list[dict]:
    return [json.loads(line) for line in (run.path / METRICS).read_text().splitlines()]


def test_auto_checks_the_fast_engine_and_trains_on_it_bit_for_bit(tmp_path, caplog):
    assert engines.self_check(fresh_state(CFG).theta, DATA, CFG) is None
    with caplog.at_level(logging.WARNING):
        auto = trained(tmp_path / "auto")
    fast = trained(tmp_path / "fast", engine="fast")
    assert (auto.path / METRICS).read_bytes() == (fast.path / METRICS).read_bytes()
    assert auto.environment()["engine"] == "fast" and not caplog.records


def test_a_changed_model_is_noticed_in_one_line_and_trained_on_the_readable_engine(tmp_path, monkeypatch, caplog):
    """GELU replaced by ReLU in model.py (one core: the change is this process's)."""
    plain = trained(tmp_path / "plain")
    monkeypatch.setattr(model, "gelu", lambda u: np.maximum(u, 0))
    with parallel.cores(1), caplog.at_level(logging.WARNING):
        changed = trained(tmp_path / "relu")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "the fast engine's logits differ from model.py's and optim.py's" in line and "readable engine" in line
    assert changed.environment()["engine"] == "readable" and changed.environment()["engine_check"] == line
    assert [r["train_loss"] for r in rows(changed)][1:] != [r["train_loss"] for r in rows(plain)][1:]


def test_after_training_a_changed_model_is_probed_as_it_trains(tmp_path, monkeypatch, caplog):
    """The curvature analysis after training (geometry.py) takes its gradients at each saved theta from the engine
    training would choose there: the fast one as model.py stands, model.py's once GELU is replaced by ReLU in it
    (said once, not at every theta)."""
    cfg = CFG.replace(max_steps=40, eval_every=20, snapshot_every=20, theta_every=20, probe_every=0, **SMALL)
    run = Run.create(tmp_path / "run", cfg)
    train(cfg, run)
    plain = geometry.analyse(run, k=2)[1]
    monkeypatch.setattr(model, "gelu", lambda u: np.maximum(u, 0))
    with parallel.cores(1), caplog.at_level(logging.WARNING):
        relu = geometry.analyse(run, k=2)[1]
    assert [r["engine"] for r in plain] == ["fast"] * 3 and [r["engine"] for r in relu] == ["readable"] * 3
    (line,) = caplog.messages
    assert "the fast engine's logits differ from model.py's" in line
    assert all(a["defect"] != b["defect"] for a, b in zip(plain, relu))


def test_a_changed_optimizer_is_noticed(monkeypatch):
    written = engines.optim.adamw_step
    monkeypatch.setattr(
        engines.optim,
        "adamw_step",
        lambda theta, g, state, **hyper: written(theta, g, state, **{**hyper, "weight_decay": 0.0}),
    )  # the decay left out
    assert "AdamW steps differ" in engines.self_check(fresh_state(CFG).theta, DATA, CFG)


def test_the_engines_train_the_same_float64_run_within_1e_9_for_500_steps(tmp_path):
    small = dict(SMALL, batch_size=64)  # a smaller classroom model, so that 500 readable float64 steps take seconds
    runs = [
        trained(tmp_path / name, engine=name, dtype="float64", max_steps=500, **small) for name in ("readable", "fast")
    ]
    readable, fast = map(rows, runs)
    assert [r["step"] for r in readable] == [r["step"] for r in fast] == list(range(0, 501, 100))
    for a, b in zip(readable, fast):
        assert a.keys() == b.keys(), (a["step"], a.keys() ^ b.keys())
        for key in {"train_loss", "test_loss", "grad_norm"} & a.keys():  # step 0 has no step's gradient
            assert a[key] == pytest.approx(b[key], rel=1e-9), (a["step"], key)
        assert (a["train_acc"], a["test_acc"]) == (b["train_acc"], b["test_acc"])


def test_the_commutator_defect_is_the_same_through_either_engine():
    cfg = CFG.replace(dtype="float64")
    theta = fresh_state(cfg).theta
    rng = stream(0, "test")
    a, b = (sample_batch(DATA, 64, rng) for _ in range(2))
    readable, fast = (
        defect_sample(theta, a, b, parallel.Derivatives(cfg, gradient))
        for gradient in (engines.readable_grad, flat_grad)
    )
    assert readable["defect"] == pytest.approx(fast["defect"], rel=1e-10)
    # delta is the difference of two parameter vectors of norm ~||theta||: each carries ~1e-16 ||theta|| of rounding
    assert np.linalg.norm(readable["delta"] - fast["delta"]) < 1e-15 * np.linalg.norm(theta)


def test_a_resume_on_another_engine_says_so_and_an_in_memory_change_stays_on_one_core(tmp_path, monkeypatch, caplog):
    run = trained(tmp_path / "run", max_steps=100)
    monkeypatch.setattr(model, "gelu", lambda u: np.maximum(u, 0))
    with parallel.cores(2), pytest.raises(ConfigError, match="worker processes load another model.py"):
        train(CFG, run, resume=True)  # its workers would train half of each batch on the file's GELU
    with parallel.cores(1), caplog.at_level(logging.WARNING):
        train(CFG, run, resume=True)
    assert "it trained on the fast engine up to step 100, and goes on on the readable one" in caplog.text
    assert run.environment()["engine"] == "readable"


def test_auto_checks_again_at_every_checkpoint_as_a_resume_from_it_would(tmp_path, monkeypatch, caplog):
    """A verdict that fails once the run has left its start (a stand-in for a fast engine that goes wrong late in
    training): the run goes on on the readable engine from its first checkpoint, and a run stopped there and resumed
    trains the same numbers."""
    start, check = fresh_state(CFG).theta, engines.self_check
    monkeypatch.setattr(
        engines, "self_check", lambda theta, *rest: check(theta, *rest) if np.array_equal(theta, start) else "a verdict"
    )
    with caplog.at_level(logging.WARNING):
        whole = trained(tmp_path / "whole")
    assert caplog.messages == [
        "it trained on the fast engine up to step 100, and goes on on the readable one: a verdict"
    ]
    assert whole.environment()["engine"] == "readable"
    cut = trained(tmp_path / "cut", max_steps=100)
    train(CFG, cut, resume=True)
    assert (cut.path / METRICS).read_bytes() == (whole.path / METRICS).read_bytes()
    fast = trained(tmp_path / "fast", engine="fast")
    assert rows(fast)[:2] == rows(whole)[:2] and rows(fast)[2:] != rows(whole)[2:]  # steps 0 and 100 on the fast one
