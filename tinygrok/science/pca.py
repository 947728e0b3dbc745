"""PCA of attention-weight trajectories (docs/paper.md §5): explained variance, expanding windows, the random-walk
null (and one with weight decay), the execution basis B and its control, a random orthonormal basis.

A trajectory is an (S, D) array: S snapshots of one weight matrix, flattened row-major (D = d_in * d_out).
All arithmetic is float64, whatever the training dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrajectoryPCA:
    """ratios (r,): explained-variance ratios, largest first; components (k, D): unit principal directions;
    scores (S, k): each snapshot's coordinates along them."""

    ratios: np.ndarray
    components: np.ndarray
    scores: np.ndarray

    @property
    def pc1(self) -> float:
        return float(self.ratios[0])


def _centred_deltas(traj: np.ndarray) -> np.ndarray:
    """X_t = vec(W_t - W_0), columns centred over snapshots (§5.1): (S, D)."""
    x = traj.astype(np.float64) - traj[0].astype(np.float64)  # (S, D), on the trajectory's device
    return x - x.mean(axis=0)


def _gram_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, = squared singular values) and eigenvectors of the (S, S) Gram matrix X X^T."""
    evals, evecs = np.linalg.eigh(x @ x.T)  # ascending
    return np.clip(evals[::-1], 0.0, None), evecs[:, ::-1]


def trajectory_pca(traj: np.ndarray, k: int = 5) -> TrajectoryPCA:
    """PCA of one trajectory through the S x S Gram matrix (S snapshots << D weights, so far cheaper than an SVD).

    Explained-variance ratio_i = sigma_i^2 / sum_j sigma_j^2; component_i = X^T u_i / sigma_i.
    """
    x = _centred_deltas(traj)
    sq_sigma, u = _gram_spectrum(x)
    total = sq_sigma.sum()
    if total == 0:
        raise ValueError("the trajectory does not move: no principal components")
    k = min(k, int(np.sum(sq_sigma > 1e-12 * total)))
    sigma = np.sqrt(sq_sigma[:k])
    components = (x.T @ u[:, :k] / sigma).T  # (k, D), unit rows
    return TrajectoryPCA(sq_sigma / total, components, u[:, :k] * sigma)


def pc1_share(traj: np.ndarray) -> float:
    """sigma_1^2 / sum sigma^2 of the centred deltas: the fraction of the motion along one direction."""
    sq_sigma, _ = _gram_spectrum(_centred_deltas(traj))
    return float(sq_sigma[0] / sq_sigma.sum())


def expanding_window_pc1(traj: np.ndarray, n_windows: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """PC1 share of the first t snapshots for t = unique(linspace(max(5, T // 20), T, n)) (§5.2, figF)."""
    s = len(traj)
    sizes = np.unique(np.linspace(max(5, s // 20), s, n_windows).astype(int))
    return sizes, np.array([pc1_share(traj[:t]) for t in sizes])


def random_walk_null(traj: np.ndarray, rng: np.random.Generator, n_walks: int = 10) -> dict:
    """PC1 shares of isotropic random walks with the real step norms, and the real trajectory's z-score (§5.3).

    Each walk: unit Gaussian directions scaled by s_t = ||W_{t+1} - W_t||, summed from 0.
    """
    x = np.asarray(traj, dtype=np.float64)
    step_norms = np.linalg.norm(np.diff(x, axis=0), axis=1)  # (S-1,)
    walks = []
    for _ in range(n_walks):
        steps = rng.standard_normal((len(step_norms), x.shape[1]))
        steps *= (step_norms / np.linalg.norm(steps, axis=1))[:, None]
        walks.append(np.vstack([np.zeros(x.shape[1]), np.cumsum(steps, axis=0)]))  # (S, D), starts at 0
    return _against(x, walks)


def decay_walk(traj: np.ndarray, shrink: float, directions: np.ndarray) -> np.ndarray:
    """(S, D): a walk that decays as the run does and moves as far as the run otherwise does, in the directions
    given (rows of directions (S-1, D), any length): y_0 = W_0, y_t = shrink y_{t-1} + ||W_t - shrink W_{t-1}|| u_t."""
    x = np.asarray(traj, dtype=np.float64)
    sizes = np.linalg.norm(x[1:] - shrink * x[:-1], axis=1)  # (S-1,): what decay alone does not explain
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    walk = [x[0]]
    for size, unit in zip(sizes, units):
        walk.append(shrink * walk[-1] + size * unit)
    return np.array(walk)


def decay_walk_null(traj: np.ndarray, shrink: float, rng: np.random.Generator, n_walks: int = 10) -> dict:
    """random_walk_null against walks that also decay (decay_walk, random directions): weight decay alone moves
    the weights along a straight line to 0, which a PC1 share counts as one-dimensional motion. shrink: the
    decay between two snapshots, (1 - lr * weight_decay) ** snapshot_every."""
    x = np.asarray(traj, dtype=np.float64)
    return _against(x, [decay_walk(x, shrink, rng.standard_normal((len(x) - 1, x.shape[1]))) for _ in range(n_walks)])


def _against(x: np.ndarray, walks: list[np.ndarray]) -> dict:
    """The PC1 share of x beside those of the walks: their mean and spread, and x's z-score."""
    null = np.array([pc1_share(walk) for walk in walks])
    real = pc1_share(x)
    return {
        "pc1": real,
        "null_mean": float(null.mean()),
        "null_std": float(null.std()),
        "z": float((real - null.mean()) / (null.std() + 1e-8)),
    }


def block_basis(blocks: list[tuple[int, np.ndarray]], n_params: int) -> np.ndarray:
    """Columns of R^P from per-block directions: each (offset, rows (k, D)) puts its k rows, as columns, at
    theta[offset : offset + D]. Orthonormal rows within a block and disjoint blocks make the columns orthonormal
    by construction (the reference's QR of them changes nothing)."""
    columns = []
    for offset, rows in blocks:
        for row in rows:
            col = np.zeros(n_params)
            col[offset : offset + row.size] = row
            columns.append(col)
    return np.stack(columns, axis=1)  # (P, K)


def execution_basis(pcas: dict[str, TrajectoryPCA], offsets: dict[str, int], n_params: int, k: int = 2) -> np.ndarray:
    """B (P, K): the top-k components of each matrix's trajectory at that matrix's offset in theta (§5.5).

    pcas: name -> the PCA of that parameter's trajectory; offsets: name -> its start in the flat theta.
    """
    return block_basis([(offsets[name], pca.components[:k]) for name, pca in pcas.items()], n_params)


def random_basis(n_params: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random k-dimensional orthonormal basis of R^P (P, k): a Gaussian matrix G orthonormalised as
    G R^-1 with R^T R = G^T G (Cholesky QR: exact enough, as G is near-orthogonal when k << P, and far cheaper
    than Householder QR when P is large)."""
    g = rng.standard_normal((n_params, k))
    return g @ np.linalg.inv(np.linalg.cholesky(g.T @ g).T)


# ---------------------------------------------------------------------- a run's attention trajectory
def analyse_trajectories(
    trajectories: dict[str, np.ndarray], rng: np.random.Generator, k: int = 5
) -> tuple[dict, dict[str, TrajectoryPCA]]:
    """Per matrix: PC1 share, the top-k explained-variance ratios and the z-score against the random-walk null
    (JSON-able), and the PCA itself (for the execution basis)."""
    out, pcas = {"pc1": {}, "top_ratios": {}, "null_z": {}}, {}
    for name, traj in trajectories.items():
        pcas[name] = trajectory_pca(traj, k)
        out["pc1"][name] = pcas[name].pc1
        out["top_ratios"][name] = [float(r) for r in pcas[name].ratios[:k]]
        out["null_z"][name] = random_walk_null(traj, rng)["z"]
    return out, pcas
