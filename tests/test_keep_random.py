"""keep_random (not the paper's arm): the gradient reduced to a fixed random rank-k subspace, g <- R R^T g, R drawn
once from the run's own stream, the same after a resume."""

import numpy as np
import pytest
from conftest import tiny_config

from tinygrok.run.runs import METRICS, Run
from tinygrok.run.train import train
from tinygrok.science.data import stream
from tinygrok.science.interventions import Context, parse
from tinygrok.science.pca import random_basis

P = 2000


def context(seed: int = 42) -> Context:
    return Context(np.random.default_rng(0), subspace=lambda k: random_basis(P, k, stream(seed, "keep_random")))


def gradient(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(P)


def test_it_keeps_exactly_the_part_of_the_gradient_in_a_random_k_dimensional_subspace():
    theta, g = np.zeros(P), gradient(1)
    R = random_basis(P, 3, stream(42, "keep_random"))  # (P, 3): the subspace, computed independently
    kept = parse("keep_random:k=3").before_update(theta, g, 499, context())[1]  # update 500: it acts
    np.testing.assert_allclose(kept, R @ (R.T @ g), rtol=1e-12)
    np.testing.assert_allclose(R.T @ kept, R.T @ g, rtol=1e-12)  # what lies in the subspace is kept whole
    assert (
        np.linalg.matrix_rank(
            np.stack([parse("keep_random:k=3").before_update(theta, gradient(s), 600, context())[1] for s in range(6)])
        )
        == 3
    )
    again = parse("keep_random:k=3").before_update(theta, kept, 700, context())[1]
    np.testing.assert_allclose(again, kept, rtol=1e-10, atol=1e-12)  # a projection: idempotent
    assert np.linalg.norm(kept) < 0.1 * np.linalg.norm(g)  # ~sqrt(3 / 2000) of a random gradient survives


def test_it_waits_for_its_start_and_draws_its_subspace_from_the_seed():
    theta, g = np.zeros(P), gradient(2)
    assert np.array_equal(parse("keep_random:k=3").before_update(theta, g, 498, context())[1], g)  # update 499
    hook = parse("keep_random:k=4,start=10")
    first = hook.before_update(theta, g, 9, context())[1]
    assert np.array_equal(hook.before_update(theta, g, 50, context())[1], first)  # one subspace for the whole run
    other_seed = parse("keep_random:k=4,start=10").before_update(theta, g, 9, context(seed=7))[1]
    assert not np.allclose(other_seed, first)
    assert np.array_equal(parse("keep_random:k=4,start=10").before_update(theta, g, 9, context())[1], first)


def test_its_dose_is_k_and_it_needs_no_basis():
    hook = parse("keep_random").with_dose(16.0)
    assert hook.spec == "keep_random:k=16,start=500" and not hook.needs_basis
    with pytest.raises(ValueError, match="k=0 is not allowed"):
        parse("keep_random:k=0")


def test_a_run_with_it_resumes_bit_for_bit(tmp_path):
    cfg = tiny_config(dtype="float32", max_steps=60, eval_every=10, hook="keep_random:k=3,start=20")
    whole = Run.create(tmp_path / "whole", cfg)
    train(cfg, whole)

    class Crash(Exception):
        pass

    def crash(step, row, end):
        if step == 45:
            raise Crash

    crashed = Run.create(tmp_path / "crashed", cfg)  # checkpointed at every evaluation: the last one at step 40
    with pytest.raises(Crash):
        train(cfg, crashed, on_step=crash)
    train(cfg, crashed, resume=True)  # R is drawn again, from the same stream
    assert (crashed.path / METRICS).read_bytes() == (whole.path / METRICS).read_bytes()
    plain = Run.create(tmp_path / "plain", cfg.replace(hook="none"))
    train(plain.config(), plain)
    assert (plain.path / METRICS).read_bytes() != (whole.path / METRICS).read_bytes()  # the hook did something
