"""Trajectory PCA against trajectories whose answer is known."""

import math

import numpy as np
import pytest

from tinygrok.science.commutator import projection_fractions
from tinygrok.science.pca import (
    decay_walk,
    decay_walk_null,
    execution_basis,
    expanding_window_pc1,
    pc1_share,
    random_walk_null,
    trajectory_pca,
)

rng = np.random.default_rng(0)


def test_planted_rank_one_trajectory_is_recovered():
    u = rng.standard_normal(500)
    u /= np.linalg.norm(u)
    steps = np.linspace(0, 1, 40) ** 2  # any monotone schedule along one direction
    traj = rng.standard_normal(500) + steps[:, None] * 3.0 * u + 1e-4 * rng.standard_normal((40, 500))
    pca = trajectory_pca(traj, k=3)
    assert pca.pc1 > 0.9999
    assert abs(pca.components[0] @ u) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-10)
    assert pca.ratios.sum() == pytest.approx(1.0)


def test_planted_rank_two_shares():
    a, b = np.eye(300)[0], np.eye(300)[1]
    t = np.arange(50.0)
    traj = np.outer(np.cos(t), a) * 2.0 + np.outer(np.sin(t), b)  # variance ratio 4 : 1 (nearly)
    ratios = trajectory_pca(traj).ratios
    centred = traj - traj[0] - (traj - traj[0]).mean(axis=0)
    by_svd = np.linalg.svd(centred, compute_uv=False) ** 2  # independent of the Gram matrix and eigh
    np.testing.assert_allclose(ratios[:2], by_svd[:2] / by_svd.sum(), rtol=1e-10)
    assert ratios[0] == pytest.approx(0.8, abs=0.001) and ratios[1] == pytest.approx(0.2, abs=0.001)  # 4 : 1


def test_random_walk_pc1_is_six_over_pi_squared():
    """A long isotropic random walk in high dimension puts 6/pi^2 of its (centred) variance on PC1."""
    walk = np.cumsum(rng.standard_normal((400, 4000)), axis=0)  # only its step norms matter to the null
    null = random_walk_null(walk, np.random.default_rng(1), n_walks=12)
    assert null["null_mean"] == pytest.approx(6 / math.pi**2, abs=0.05)
    assert abs(null["z"]) < 4  # the walk itself is one more draw from the null


def test_a_decay_walk_retraces_pure_decay_and_is_a_random_walk_without_decay():
    w0 = rng.standard_normal(300)
    decayed = np.array([0.8**t * w0 for t in range(30)])  # decay alone: a straight line to 0
    directions = rng.standard_normal((29, 300))
    assert np.allclose(decay_walk(decayed, 0.8, directions), decayed)
    assert pc1_share(decayed) == pytest.approx(1.0) and decay_walk_null(decayed, 0.8, rng)[
        "null_mean"
    ] == pytest.approx(1)
    walk = np.cumsum(rng.standard_normal((30, 300)), axis=0)
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    steps = np.linalg.norm(np.diff(walk, axis=0), axis=1)[:, None] * units  # (29, 300)
    assert np.allclose(
        decay_walk(walk, 1.0, directions), walk[0] + np.vstack([np.zeros(300), np.cumsum(steps, axis=0)])
    )


def test_decay_raises_the_pc1_of_random_walks_far_above_six_over_pi_squared():
    """A random walk that also decays, from a start far from 0, moves mostly along the line to 0."""
    own = np.random.default_rng(3)
    walk = [10 * own.standard_normal(2000)]
    for _ in range(39):
        walk.append(0.9 * walk[-1] + 0.3 * own.standard_normal(2000))
    null = decay_walk_null(np.array(walk), 0.9, np.random.default_rng(2))
    assert null["null_mean"] > 0.9 > 6 / math.pi**2 + 0.2  # the random-walk null: 0.61
    assert null["pc1"] == pytest.approx(null["null_mean"], abs=0.005)  # the walk is one more draw of this null


def test_expanding_windows_grow_to_the_whole_trajectory():
    traj = np.cumsum(rng.standard_normal((120, 50)), axis=0)
    sizes, shares = expanding_window_pc1(traj)
    assert sizes[0] == 6 and sizes[-1] == 120 and len(sizes) == 20
    assert shares[-1] == pytest.approx(pc1_share(traj))


def test_execution_basis_is_orthonormal_and_blockwise():
    offsets = {"a": 3, "b": 40, "c": 100}
    trajs = {name: np.cumsum(rng.standard_normal((30, 25)), axis=0) for name in offsets}
    basis = execution_basis({name: trajectory_pca(t) for name, t in trajs.items()}, offsets, n_params=200, k=2)
    assert basis.shape == (200, 6)
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-12)
    for j, name in enumerate(n for n in offsets for _ in range(2)):
        support = np.flatnonzero(np.abs(basis[:, j]) > 1e-14)
        assert support.min() >= offsets[name] and support.max() < offsets[name] + 25


def test_rho_of_a_random_vector_is_sqrt_one_minus_k_over_p():
    p, k = 20_000, 16
    basis, _ = np.linalg.qr(rng.standard_normal((p, k)))
    rhos = [projection_fractions(rng.standard_normal(p), basis)[1] for _ in range(20)]
    assert np.mean(rhos) == pytest.approx(math.sqrt(1 - k / p), abs=1e-4)


def test_scores_are_the_centred_deltas_in_component_coordinates():
    traj = np.cumsum(rng.standard_normal((30, 40)), axis=0)
    pca = trajectory_pca(traj, k=3)
    x = traj - traj[0]
    np.testing.assert_allclose(pca.scores, (x - x.mean(0)) @ pca.components.T, atol=1e-9)
