"""One optimizer step, written out (docs/paper.md §3): global-norm clipping, then AdamW with decoupled weight decay.

Everything acts on the flat parameter vector theta (P,) and its gradient (P,). Nothing is updated in place:
each step returns new arrays. Clipping always runs from here; AdamW too on the readable engine, while the fast one
runs kernels.adamw_step, the same update in fewer passes over memory, once a run has checked it equal to this one
(engine/engines.py). What a run may do between clipping and AdamW (an intervention)
is interventions.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6)


@dataclass(frozen=True)
class AdamWState:
    """AdamW's memory: step count t, first moment m (P,), second moment v (P,)."""

    t: int
    m: np.ndarray
    v: np.ndarray

    @classmethod
    def zeros_like(cls, theta: np.ndarray) -> AdamWState:
        return cls(0, np.zeros_like(theta), np.zeros_like(theta))


def clip_by_global_norm(grad: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """g * min(1, max_norm / (||g|| + 1e-6)), and ||g|| before clipping. max_norm = 0 turns clipping off."""
    norm = math.sqrt(float(np.dot(grad, grad)))
    scale = max_norm / (norm + CLIP_EPS)
    if max_norm == 0 or scale >= 1.0:
        return grad, norm
    return grad * grad.dtype.type(scale), norm


def adamw_step(
    theta: np.ndarray,
    grad: np.ndarray,
    state: AdamWState,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> tuple[np.ndarray, AdamWState]:
    """One AdamW step (Loshchilov & Hutter), as torch.optim.AdamW takes it: decay, then the Adam update."""
    t = state.t + 1
    m = beta1 * state.m + (1 - beta1) * grad  # first moment: a running mean of the gradient
    v = beta2 * state.v + (1 - beta2) * grad * grad  # second moment: a running mean of its square
    m_hat = m / (1 - beta1**t)  # bias correction: m and v start at zero, so early means are too small
    v_hat = v / (1 - beta2**t)
    theta = theta * (1 - lr * weight_decay)  # decoupled weight decay, on every parameter, not via the gradient
    theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)  # each coordinate moves about lr, whatever its scale
    return theta, AdamWState(t, m, v)
