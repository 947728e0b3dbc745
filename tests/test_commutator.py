"""The commutator defect against the exact Lie bracket, and the probe's independence from training."""

import numpy as np
import pytest
from conftest import tiny_config

from tinygrok.engine.engines import ENGINES
from tinygrok.engine.parallel import Derivatives
from tinygrok.run.runs import Run
from tinygrok.run.train import train
from tinygrok.science.commutator import alignment, defect_sample, lie_bracket, subspace_ratios, weight_svd_basis
from tinygrok.science.config import Config
from tinygrok.science.data import make_dataset, sample_batch, stream
from tinygrok.science.model import flatten, init_params, layout
from tinygrok.science.pca import random_basis


def test_defect_over_eta_squared_converges_to_the_lie_bracket():
    """delta / eta^2 = H_B g_A - H_A g_B + O(eta): the error falls linearly with eta (float64)."""
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(7, "init")))
    data = make_dataset(cfg.op, cfg.p, 0.5, 7)
    rng = stream(7, "probes")
    a, b = sample_batch(data, 16, rng), sample_batch(data, 16, rng)
    bracket = lie_bracket(theta, a, b, Derivatives(cfg))
    etas = np.array([1e-1, 3e-2, 1e-2, 3e-3, 1e-3])
    errors = np.array(
        [np.linalg.norm(defect_sample(theta, a, b, Derivatives(cfg), eta)["delta"] / eta**2 - bracket) for eta in etas]
    ) / np.linalg.norm(bracket)
    slope = np.polyfit(np.log(etas), np.log(errors), 1)[0]
    assert 0.8 < slope < 1.2, (slope, errors)
    assert errors[-1] < 1e-2 and np.all(np.diff(errors) < 0)


def test_defect_normalisation():
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(8, "init")))
    data = make_dataset(cfg.op, cfg.p, 0.5, 8)
    a = sample_batch(data, 16, stream(8, "x"))
    same = defect_sample(theta, a, a, Derivatives(cfg))
    assert same["defect"] == 0.0  # one batch commutes with itself exactly
    b = sample_batch(data, 16, stream(8, "y"))
    s = defect_sample(theta, a, b, Derivatives(cfg), eta=1e-3)
    readable = ENGINES["readable"].gradient  # autograd through model.py: not the fast engine the probe uses
    eta, g = 1e-3, (lambda t, batch: readable(t, *batch, cfg))  # the two orders by hand
    theta_ab = theta - eta * g(theta, a) - eta * g(theta - eta * g(theta, a), b)
    theta_ba = theta - eta * g(theta, b) - eta * g(theta - eta * g(theta, b), a)
    np.testing.assert_allclose(s["delta"], theta_ab - theta_ba, rtol=1e-9, atol=1e-12 * np.abs(theta).max())
    norms = [np.linalg.norm(eta * g(theta, batch)) for batch in (a, b)]
    assert s["scale"] == pytest.approx(norms[0] * norms[1] + 1e-12, rel=1e-12)
    assert s["defect"] == pytest.approx(np.linalg.norm(theta_ab - theta_ba) / s["scale"], rel=1e-9)


def test_weight_svd_basis_spans_the_top_singular_pairs_of_each_block():
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(9, "init")))
    basis = weight_svd_basis(theta, cfg, k=3)
    assert basis.shape == (theta.size, 2 * 4 * 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(24), atol=1e-12)
    start, shape = layout(cfg)["blocks.1.W_K"]
    u, _, vt = np.linalg.svd(theta[start : start + shape[0] * shape[1]].reshape(shape))
    for i in range(3):
        rank_one = np.zeros(theta.size)
        rank_one[start : start + shape[0] * shape[1]] = np.outer(u[:, i], vt[i]).ravel()
        assert np.linalg.norm(basis.T @ rank_one) == pytest.approx(1.0, abs=1e-10)  # inside the span
    rank_four = np.zeros(theta.size)
    rank_four[start : start + shape[0] * shape[1]] = np.outer(u[:, 3], vt[3]).ravel()
    assert np.linalg.norm(basis.T @ rank_four) < 1e-10  # the 4th singular pair is not


def test_alignment_and_subspace_ratios_on_known_vectors():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(5000)
    assert alignment(direction, [3 * direction, -direction])["mean_abs_cos"] == pytest.approx(1.0)
    random_ratio = alignment(direction, [rng.standard_normal(5000) for _ in range(200)])["ratio"]
    assert random_ratio == pytest.approx(1.0, abs=0.1)  # random directions: mean|cos| = sqrt(2/(pi P))
    basis, _ = np.linalg.qr(rng.standard_normal((5000, 8)))
    inside = [{"delta": basis @ rng.standard_normal(8), "scale": 1.0} for _ in range(3)]
    randoms = {8: [random_basis(5000, 8, rng) for _ in range(5)]}
    for r in randoms[8]:
        np.testing.assert_allclose(r.T @ r, np.eye(8), atol=1e-12)
    out = subspace_ratios(inside, {"b": basis}, randoms)
    assert out["b_proj"] == pytest.approx(1.0) and out["b_rho"] == pytest.approx(0.0, abs=1e-6)
    # the median sample's mean over the 5 bases (the samples' norms differ more than their projections' noise)
    assert out["b_random_proj"] == pytest.approx(np.sqrt(8 / 5000), rel=random_projection_tolerance(8, 5))


def test_probing_does_not_change_training(tmp_path):
    """Probe batches come from their own stream: training metrics are bit-identical with probes on or off."""
    base = Config(p=11, d_model=16, n_heads=2, d_ff=32, batch_size=32, eval_every=20, max_steps=100)
    probed = base.replace(probe_every=20, probe_samples=3, theta_every=40)
    train(base, Run.create(tmp_path / "off", base))
    train(probed, Run.create(tmp_path / "on", probed))
    off, on = Run(tmp_path / "off").metrics(), Run(tmp_path / "on").metrics()
    assert all("defect" in r and r["defect"] > 0 for r in on)
    assert [{k: r_on[k] for k in r_off} for r_on, r_off in zip(on, off)] == off
    assert Run(tmp_path / "on").rows("thetas.npy").shape == (
        1 + 100 // 40,
        flatten(init_params(base, stream(0, "init"))).size,
    )


def test_exec_random_is_sqrt_p_over_k_inside_the_basis_and_one_for_random_vectors():
    """exec/random compares norms: a vector inside a K-dim basis projects fully (1) where random K-dim subspaces
    catch sqrt(K/P) of it, so the ratio is sqrt(P/K) (P/K in squared norms); a random vector is caught alike by
    both (1). Over 25 vectors and 5 random bases the median's standard error is ~1% and ~2.5%: 4% and 10% below."""
    rng = np.random.default_rng(1)
    n_params, k = 20_000, 64
    basis = random_basis(n_params, k, rng)
    randoms = {k: [random_basis(n_params, k, rng) for _ in range(5)]}
    inside = [{"delta": basis @ rng.standard_normal(k), "scale": 1.0} for _ in range(25)]
    anywhere = [{"delta": rng.standard_normal(n_params), "scale": 1.0} for _ in range(25)]
    assert subspace_ratios(inside, {"b": basis}, randoms)["b_random_ratio"] == pytest.approx(
        np.sqrt(n_params / k), rel=0.04
    )
    assert subspace_ratios(anywhere, {"b": basis}, randoms)["b_random_ratio"] == pytest.approx(1.0, rel=0.10)


def random_projection_tolerance(k: int, n: int) -> float:
    """How far a mean of n values of ||R^T v|| / ||v|| (R a random K-dim subspace of R^P) may lie from sqrt(K/P),
    relatively: its bias 1/(4K) plus 3 standard errors, each value's spread being sqrt(K/P) / sqrt(2K)."""
    return 1 / (4 * k) + 3 / np.sqrt(2 * k * n)


@pytest.mark.parametrize("k", [8, 32, 128])
def test_random_projections_of_a_random_vector_match_sqrt_k_over_p(k):
    """The dimension sweep's random line: for a random K-dim subspace ||B^T v|| / ||v|| has mean
    sqrt(K/P) (1 - 1/(4K) + ...) and standard deviation sqrt(K/P) / sqrt(2K); the mean over 60 bases lies within
    the bias 1/(4K) plus 3 standard errors of sqrt(K/P) (K = 8: 11%; K = 128: 2.5%)."""
    rng = np.random.default_rng(k)
    n_params = 20_000
    v = rng.standard_normal(n_params)
    caught = [np.linalg.norm(random_basis(n_params, k, rng).T @ v) / np.linalg.norm(v) for _ in range(60)]
    assert np.mean(caught) == pytest.approx(np.sqrt(k / n_params), rel=random_projection_tolerance(k, 60))
