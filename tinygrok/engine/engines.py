"""Which code trains a run: the readable engine, or the fast one, an accelerator checked against it.

- readable: model.py's forward pass, its gradient by autograd, optim.py's AdamW: the code a student reads.
- fast: the same mathematics for speed: fast.py's forward pass and written-out backward, kernels.adamw_step.
- auto (a config's default): the fast engine, once `self_check` has found it equal to the readable one at the
  run's parameters, in float64 and in float32; otherwise the readable one, and a line that says why. So a changed
  model.py or optim.py is never silently ignored: training runs it, and the curvature analysis after training
  (geometry.py) probes it.

Both engines split a batch into the same shards and run them side by side on several cores (parallel.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from autograd import grad

from tinygrok.engine import backend, kernels, parallel
from tinygrok.engine.fast import flat_grad
from tinygrok.engine.fast import forward as fast_forward
from tinygrok.science import optim
from tinygrok.science.config import Config, ConfigError
from tinygrok.science.data import Dataset
from tinygrok.science.model import flatten, layout, loss_fn, unflatten
from tinygrok.science.model import forward as readable_forward
from tinygrok.science.optim import AdamWState

CHECK_EXAMPLES = 32  # training examples the self-check compares the engines on
CHECK_TOLERANCE = 1e-8  # relative, in float64: the engines' logits, gradient and AdamW step agree far closer
# relative, in float32: they agree to about 3e-7 at initialisation (its GELU polynomial, roundings) and 2e-5 late in
# training, where a small loss leaves a small gradient of cancelling terms
CHECK_TOLERANCE_FLOAT32 = 1e-4
CHECK_STEP = 7  # the AdamW step count the check's update is taken at


def readable_grad(theta, tokens, labels, cfg: Config):
    """The mean loss's gradient by autograd through model.py: (P,) -> (P,), differentiated with respect to
    model.py's parameters by name (the dict unflatten gives), then flattened."""
    return flatten(grad(loss_fn)(unflatten(theta, cfg), tokens, labels, cfg.n_heads))


def readable_logits(theta, tokens, cfg: Config):
    """model.py's forward pass: tokens (N, 2) -> logits (N, vocab)."""
    return readable_forward(unflatten(theta, cfg), tokens, cfg.n_heads)


def fast_logits(theta, tokens, cfg: Config):
    """fast.py's forward pass: tokens (N, 2) -> logits (N, vocab)."""
    return fast_forward(kernels.views(theta, layout(cfg)), tokens, cfg.n_heads)


def readable_adamw(theta, grad_, m, v, t: int, **hyper) -> tuple:
    """optim.py's AdamW step, called as kernels.adamw_step is (t: the step count after it) -> (theta, m, v)."""
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


ENGINES = {
    "readable": Engine("readable", readable_grad, readable_logits, readable_adamw),
    "fast": Engine("fast", flat_grad, fast_logits, kernels.adamw_step),
}


def self_check(theta, data: Dataset, cfg: Config) -> str | None:
    """None if the fast engine agrees with the readable one at theta on the first CHECK_EXAMPLES training examples:
    the logits and the gradient of the mean loss in float64 (within CHECK_TOLERANCE, relative) and in float32
    (within CHECK_TOLERANCE_FLOAT32: the fast engine's float32 GELU is its own polynomial), and one AdamW step of
    that gradient from moments of step CHECK_STEP (the step taken, relative); else one line saying what differs.
    All of it in the arithmetic of training (parallel.recorded_arithmetic), so that the verdict at a state is the
    same wherever it is asked."""
    x, y = data.train_x[:CHECK_EXAMPLES], data.train_y[:CHECK_EXAMPLES]
    host = backend.to_host(theta)  # (P,)
    with parallel.recorded_arithmetic():
        for dtype, tolerance in (("float64", CHECK_TOLERANCE), ("float32", CHECK_TOLERANCE_FLOAT32)):
            config, at = cfg.replace(dtype=dtype), host.astype(dtype)
            logits = [e.logits(at, x, config) for e in ENGINES.values()]
            grads = [e.gradient(at, x, y, config) for e in ENGINES.values()]
            if found := _differ((("logits", logits), ("gradients", grads)), tolerance, dtype):
                return found
        steps = _adamw_steps(host.astype(np.float64), cfg)
        return _differ((("AdamW steps", steps),), CHECK_TOLERANCE, "float64")


def _adamw_steps(theta, cfg: Config) -> list:
    """What each engine's AdamW moves theta by, from random moments at step CHECK_STEP (every term of the update
    matters there, unlike at step 1, where Adam's step is sign(g) whatever the betas)."""
    g, m, v = np.random.default_rng(0).standard_normal((3, theta.size))  # (P,) each
    return [e.adamw(theta, g, 0.1 * m, 0.01 * v * v, CHECK_STEP, **cfg.adamw())[0] - theta for e in ENGINES.values()]


def _differ(pairs: tuple, tolerance: float, dtype: str) -> str | None:
    """The line for the first (what, (readable, fast)) pair whose relative difference exceeds `tolerance`."""
    for what, (readable, fast) in pairs:
        gap = float(np.linalg.norm(np.subtract(fast, readable)) / (np.linalg.norm(readable) + 1e-300))
        if not gap <= tolerance:
            return (
                f"the fast engine's {what} differ from model.py's and optim.py's in {dtype} (relative {gap:.1e} "
                f"> {tolerance:g}): training on the readable engine"
            )
    return None


def choose(cfg: Config, theta, data: Dataset) -> tuple[Engine, str]:
    """The engine a run trains on, and the line that says why (empty when it is the one asked for without a
    check): the one cfg.engine names, or for "auto" the fast one if self_check passes, else the readable one.
    A ConfigError where the readable engine cannot run as asked (_check_readable)."""
    found = self_check(theta, data, cfg) if cfg.engine == "auto" else None
    engine = ENGINES["readable" if cfg.engine == "readable" or found else "fast"]
    if engine.name == "readable":
        _check_readable(theta, data, cfg)
    return engine, found or ""


def _check_readable(theta, data: Dataset, cfg: Config) -> None:
    """A ConfigError on a GPU backend (autograd differentiates NumPy only), or on several cores whose worker
    processes load another model.py than this process runs (a change made in memory: the workers import the file)."""
    if backend.NAME != "numpy":
        raise ConfigError(
            f"the readable engine runs on NumPy only (autograd differentiates NumPy), not on "
            f"{backend.NAME}: use --engine fast, or --backend numpy"
        )
    x, y = data.train_x[:CHECK_EXAMPLES], data.train_y[:CHECK_EXAMPLES]
    here, there = parallel.side_by_side(readable_grad, [(backend.to_host(theta), x, y)] * 2, cfg)  # there: a worker
    if not np.array_equal(here, there):
        raise ConfigError(
            "the worker processes load another model.py or optim.py than this process runs (a change "
            "made in memory?): train on one core (--threads 1), or make the change in the file"
        )
