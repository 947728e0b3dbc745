"""One optimizer step, written out (PAPER.md §3): global-norm clipping, a gradient transform, then AdamW.

Everything acts on the flat parameter vector theta (P,) and its gradient (P,). Nothing is updated in place:
each step returns new arrays, so values captured by autograd's traces are never modified behind its back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math

import numpy as np

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6)

# (clipped grad (P,), step) -> grad (P,); step counts the updates made before this one (0 for the first).
GradTransform = Callable[[np.ndarray, int], np.ndarray]


def identity_transform(grad: np.ndarray, step: int) -> np.ndarray:
    """The default gradient transform: leave the gradient as it is."""
    return grad


@dataclass(frozen=True)
class AdamWState:
    """AdamW's memory: step count t, first moment m (P,), second moment v (P,)."""

    t: int
    m: np.ndarray
    v: np.ndarray

    @classmethod
    def zeros_like(cls, theta: np.ndarray) -> "AdamWState":
        return cls(0, np.zeros_like(theta), np.zeros_like(theta))


def clip_by_global_norm(grad: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """g * min(1, max_norm / (||g|| + 1e-6)), and ||g|| before clipping. max_norm = 0 turns clipping off."""
    norm = math.sqrt(float(np.dot(grad, grad)))
    scale = max_norm / (norm + CLIP_EPS)
    if max_norm == 0 or scale >= 1.0:
        return grad, norm
    return grad * grad.dtype.type(scale), norm


def adamw_step(theta: np.ndarray, grad: np.ndarray, state: AdamWState, *, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float) -> tuple[np.ndarray, AdamWState]:
    """One AdamW step (Loshchilov & Hutter; torch.optim.AdamW's order of operations):

        theta <- theta * (1 - lr * weight_decay)            decoupled decay, on every parameter
        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        theta <- theta - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
    """
    t = state.t + 1
    m = state.m * beta1  # new arrays, then updated in place: the old state is never modified
    m += (1 - beta1) * grad
    v = state.v * beta2
    v += (1 - beta2) * (grad * grad)
    denom = np.sqrt(v)  # sqrt(v_hat) + eps = sqrt(v) / sqrt(1 - beta2^t) + eps
    denom *= 1.0 / math.sqrt(1 - beta2**t)
    denom += eps
    update = m * (lr / (1 - beta1**t))  # lr * m_hat
    update /= denom
    new_theta = theta * (1 - lr * weight_decay)  # decoupled decay
    new_theta -= update
    return new_theta, AdamWState(t, m, v)
