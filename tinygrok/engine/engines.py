"""Which code trains a run: the readable engine, or the fast one, an accelerator checked against it.

- readable: model.py's forward pass, its gradient by autograd, optim.py's AdamW: the code a student reads.
- fast: the same mathematics for speed: fast.py's forward pass and written-out backward, kernels.adamw_step.
- auto (a config's default): the fast engine, once `self_check` has found it equal to the readable one at the
  run's parameters, in float64; otherwise the readable one, and a line that says why. So a changed model.py or
  optim.py is never silently ignored: training runs it.

Both engines split a batch into the same shards and run them side by side on several cores (parallel.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from autograd import grad

from tinygrok.engine import backend, kernels, parallel
from tinygrok.engine.fast import flat_grad, forward as fast_forward
from tinygrok.science import optim
from tinygrok.science.config import Config
from tinygrok.science.data import Dataset
from tinygrok.science.model import flatten, forward as readable_forward, layout, loss_fn, unflatten
from tinygrok.science.optim import AdamWState

CHECK_EXAMPLES = 8  # training examples the self-check compares the engines on
CHECK_TOLERANCE = 1e-8  # relative, in float64: the engines' loss, gradient and AdamW step agree far closer


def readable_grad(theta, tokens, labels, cfg: Config):
    """The mean loss's gradient by autograd through model.py: (P,) -> (P,). Differentiated with respect to the
    parameters by name, then flattened: autograd's gradient of a slice of theta would be a zero (P,) array each."""
    return flatten(grad(loss_fn)(unflatten(theta, cfg), tokens, labels, cfg.n_heads))


def readable_logits(theta, tokens, cfg: Config):
    """model.py's forward pass: tokens (N, 2) -> logits (N, vocab)."""
    return readable_forward(unflatten(theta, cfg), tokens, cfg.n_heads)


def fast_logits(theta, tokens, cfg: Config):
    """fast.py's forward pass: tokens (N, 2) -> logits (N, vocab)."""
    return fast_forward(kernels.views(theta, layout(cfg)), tokens, cfg.n_heads)


def readable_adamw(theta, grad_, m, v, t: int, **hyper) -> tuple:
    """optim.py's AdamW step, as kernels.adamw_step is called: the step count after it, t."""
    theta, state = optim.adamw_step(theta, grad_, AdamWState(t - 1, m, v), **hyper)
    return theta, state.m, state.v


@dataclass(frozen=True)
class Engine:
    """What trains and probes: the gradient of the mean loss over a batch (theta, tokens, labels, cfg) -> (P,), a
    module-level function that worker processes import by name; the logits (theta, tokens, cfg) -> (N, vocab);
    one AdamW step (theta, g, m, v, t, **hyper) -> (theta, m, v)."""

    name: str
    gradient: Callable
    logits: Callable
    adamw: Callable


ENGINES = {"readable": Engine("readable", readable_grad, readable_logits, readable_adamw),
           "fast": Engine("fast", flat_grad, fast_logits, kernels.adamw_step)}


def self_check(theta, data: Dataset, cfg: Config) -> Optional[str]:
    """None if the fast engine agrees with the readable one at theta (cast to float64) on the first
    CHECK_EXAMPLES training examples (the logits, the gradient of the mean loss, one AdamW step of that gradient) within
    CHECK_TOLERANCE (relative); else one line saying what differs."""
    cfg64 = cfg.replace(dtype="float64")
    theta64 = backend.to_host(theta).astype(np.float64)
    x, y = data.train_x[:CHECK_EXAMPLES], data.train_y[:CHECK_EXAMPLES]
    with parallel.recorded_arithmetic():
        logits = [e.logits(theta64, x, cfg64) for e in ENGINES.values()]
        grads = [e.gradient(theta64, x, y, cfg64) for e in ENGINES.values()]
        hyper = dict(lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps, weight_decay=cfg.weight_decay)
        zeros = np.zeros_like(theta64)
        steps = [e.adamw(theta64, grads[0], zeros, zeros, 1, **hyper)[0] for e in ENGINES.values()]
    for what, (readable, fast) in (("logits", logits), ("gradients", grads), ("AdamW steps", steps)):
        gap = float(np.linalg.norm(np.subtract(fast, readable)) / (np.linalg.norm(readable) + 1e-300))
        if not gap <= CHECK_TOLERANCE:
            return (f"the fast engine's {what} differ from model.py's and optim.py's (relative {gap:.1e} > "
                    f"{CHECK_TOLERANCE:g}): training on the readable engine")
    return None


def choose(cfg: Config, theta, data: Dataset) -> tuple[Engine, str]:
    """The engine a run trains on, and the line that says why (empty when it is the one asked for without a
    check): the one cfg.engine names, or for "auto" the fast one if self_check passes, else the readable one."""
    if cfg.engine != "auto":
        return ENGINES[cfg.engine], ""
    found = self_check(theta, data, cfg)
    return (ENGINES["readable"], found) if found else (ENGINES["fast"], "")
