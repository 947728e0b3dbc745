"""Curvature probes (docs/paper.md §6): the commutator defect, the exact Lie bracket, and projections of the
defect onto the execution basis, random bases and the current-weight-SVD basis.

Gradients here are the plain mean cross-entropy gradients at theta: no weight decay, no clipping, no Adam (§6.1).
How they are computed is the engine's (parallel.Derivatives: either engine's gradient, side by side); the formulas
here take it as an argument. Probe batches come from the caller's own random stream, so probing never changes the
training trajectory, except on an intervention's "shifted" batches, where training skips the batches the
reference's probes would have taken (docs/differences.md).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tinygrok.science import undefined
from tinygrok.science.config import Config
from tinygrok.science.data import Dataset, sample_batch
from tinygrok.science.model import attention_layout
from tinygrok.science.pca import block_basis

ETA = 1e-3  # the probe step, fixed in every experiment of the paper (§6.1)
DEFECT_EPS = 1e-12  # the reference's guard in the denominator


class Derivatives(Protocol):
    """What a probe needs of the batch loss L(theta) (its engine: parallel.Derivatives)."""

    def gradients(self, jobs: list[tuple]) -> list:
        """[grad L_batch(theta) for (theta, tokens, labels) in jobs], each (P,)."""

    def hvp(self, theta, batch: tuple, v):
        """H_batch(theta) v: (P,) -> (P,)."""


def defect_sample(theta, batch_a, batch_b, derivatives: Derivatives, eta: float = ETA) -> dict:
    """One commutator sample (§6.1, eq. 2-4): take the two gradient steps in both orders and compare.

        theta_AB = theta - eta g_A(theta) - eta g_B(theta - eta g_A(theta))      (and A <-> B for theta_BA)
        delta = theta_AB - theta_BA;   D = ||delta|| / (||eta g_A|| ||eta g_B|| + 1e-12)

    To leading order delta = eta^2 (H_B g_A - H_A g_B), so D is a normalised curvature, independent of eta.
    """
    g_a, g_b = derivatives.gradients([(theta, *batch_a), (theta, *batch_b)])  # (P,) each
    theta_a, theta_b = theta - eta * g_a, theta - eta * g_b  # (P,): one step each
    g_ab, g_ba = derivatives.gradients([(theta_a, *batch_b), (theta_b, *batch_a)])
    theta_ab = theta_a - eta * g_ab
    theta_ba = theta_b - eta * g_ba
    delta = theta_ab - theta_ba  # (P,)
    scale = eta * float(np.linalg.norm(g_a)) * eta * float(np.linalg.norm(g_b)) + DEFECT_EPS
    return {
        "delta": delta,
        "defect": float(np.linalg.norm(delta)) / scale,
        "scale": scale,
        "step_norm": eta * float(np.linalg.norm(g_a)),
    }


def defect_samples(
    theta, data: Dataset, cfg: Config, rng: np.random.Generator, k: int, derivatives: Derivatives, eta: float = ETA
) -> list:
    """k independent samples, each on two fresh training batches of cfg.batch_size drawn from `rng`."""
    return [
        defect_sample(
            theta, sample_batch(data, cfg.batch_size, rng), sample_batch(data, cfg.batch_size, rng), derivatives, eta
        )
        for _ in range(k)
    ]


def defect_stats(samples: list) -> dict:
    """Median and quartiles of D over the samples: what a metrics row records."""
    q25, median, q75 = np.percentile([s["defect"] for s in samples], [25, 50, 75])
    return {"defect": float(median), "defect_q25": float(q25), "defect_q75": float(q75)}


def lie_bracket(theta, batch_a, batch_b, derivatives: Derivatives):
    """H_B g_A - H_A g_B: the exact eta -> 0 limit of delta / eta^2 (P,)."""
    g_a, g_b = derivatives.gradients([(theta, *batch_a), (theta, *batch_b)])
    return derivatives.hvp(theta, batch_b, g_a) - derivatives.hvp(theta, batch_a, g_b)


# ---------------------------------------------------------------------- projections (§6.3, §6.4)
def projection_fractions(delta: np.ndarray, basis: np.ndarray) -> tuple[float | None, float | None]:
    """(||B B^T delta|| / ||delta||, ||delta - B B^T delta|| / ||delta||) = (proj/full, rho) for orthonormal B;
    both undefined (None) for delta = 0."""
    full = float(np.linalg.norm(delta))
    proj = float(np.linalg.norm(basis.T @ delta))  # ||B^T delta|| = ||B B^T delta||
    return undefined.ratio(proj, full), undefined.ratio(math.sqrt(max(0.0, full**2 - proj**2)), full)


def singular_directions(w: np.ndarray, k: int) -> np.ndarray:
    """The unit rank-one matrices u_i v_i^T of w's top-k singular pairs (all of them if it has fewer), flattened:
    (k, D), orthonormal rows."""
    u, _, vt = np.linalg.svd(w.astype(np.float64))
    return np.stack([np.outer(u[:, i], vt[i]).ravel() for i in range(min(k, *w.shape))])


def weight_svd_basis(theta: np.ndarray, cfg: Config, k: int = 3) -> np.ndarray:
    """The basis the reference code's random-subspace control actually used (§6.4): for every layer and attention
    matrix W, the top-k rank-one matrices u_i v_i^T of W's SVD at theta, at W's offset: (P, layers*4*k)."""
    return block_basis(
        [
            (start, singular_directions(theta[start : start + math.prod(shape)].reshape(shape), k))
            for start, shape in attention_layout(cfg).values()
        ],
        theta.size,
    )


def subspace_ratios(samples: list, bases: dict[str, np.ndarray], random_bases: dict[int, list]) -> dict:
    """For each named basis B (P, K): proj/full of the defect, the same for the random K-dim bases in
    random_bases[K], their ratio (exec/random, §6.4) and rho (§6.3). As the reference computes them:
    proj/full = median_k(||B^T delta_k|| / s_k) / median_k(||delta_k|| / s_k), s_k the sample's normaliser;
    random: the mean over the random bases inside each sample, then the median. Theory for random: sqrt(K/P).
    Where the median defect is exactly 0 they are undefined (None); rho is the median over the samples whose
    delta is not 0 (undefined.py).
    """
    deltas = [(s["delta"].astype(np.float64), s["scale"]) for s in samples]  # once, not per basis

    def median_proj(project):
        return float(np.median([project(delta) / scale for delta, scale in deltas]))

    full = median_proj(np.linalg.norm)
    out = {}
    for name, basis in bases.items():
        randoms = random_bases[basis.shape[1]]
        proj = undefined.ratio(median_proj(lambda d: np.linalg.norm(basis.T @ d)), full)  # noqa: B023 - called here
        rand = undefined.ratio(
            median_proj(lambda d: np.mean([np.linalg.norm(r.T @ d) for r in randoms])),  # noqa: B023 - called here
            full,
        )
        out.update(
            {
                f"{name}_proj": proj,
                f"{name}_random_proj": rand,
                f"{name}_random_ratio": undefined.ratio(proj, rand),
                f"{name}_rho": undefined.median(projection_fractions(d, basis)[1] for d, _ in deltas),
            }
        )
    return out


def alignment(dtheta: np.ndarray, deltas: list) -> dict:
    """Trajectory-curvature alignment (§6.5): mean |cos(dtheta, delta_k)| and its ratio to sqrt(2/(pi P)),
    the mean |cos| of two random directions in R^P. A delta_k = 0 has no angle and is left out (counted in
    "zero_deltas"); with dtheta = 0 or every delta_k = 0 both are undefined (None)."""
    step = float(np.linalg.norm(dtheta))
    unit = dtheta / step if step else dtheta  # (P,); a zero step has no direction, and no cosine below
    norms = [float(np.linalg.norm(d)) for d in deltas]  # 0 also for a float32 delta whose norm underflows
    cosines = [abs(unit @ d) / norm for d, norm in zip(deltas, norms) if step and norm > 0]
    mean_cos = float(np.mean(cosines)) if cosines else None
    baseline = math.sqrt(2 / (math.pi * dtheta.size))
    return {
        "mean_abs_cos": mean_cos,
        "ratio": undefined.ratio(mean_cos, baseline),
        "zero_deltas": sum(norm == 0 for norm in norms),
    }
