"""Interventions as part of a run: what may change the clipped gradient, and theta, around each optimizer step.

A run names its hook with the hook's parameters in the config, as text: `hook = "weight_noise:sigma=0.001,every=50"`
(`--hook` on the command line). So config.json records it, and a resume restores it. One training step is

    g = clip(gradient at theta)
    theta, g = hook.before_update(theta, g, step, rng)     step: the updates made before this one
    theta = AdamW(theta, g)
    theta = hook.after_update(theta, step + 1, rng)

and the hook draws its randomness only from `rng`, the run's own "hook" stream, saved in every checkpoint. The
default, "none", changes nothing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tinygrok import backend


@dataclass(frozen=True)
class Hook:
    """The identity hook ("none"). A hook overrides either method or both."""

    def before_update(self, theta, grad, step: int, rng: np.random.Generator) -> tuple:
        """After clipping, before AdamW: returns (theta, grad), either one changed or not."""
        return theta, grad

    def after_update(self, theta, step: int, rng: np.random.Generator):
        """After the optimizer step that made `step` updates in all: returns theta, changed or not."""
        return theta

    @property
    def spec(self) -> str:
        """The hook's one text form, every parameter written out: "weight_noise:sigma=0.001,every=50"."""
        name = next(key for key, cls in HOOKS.items() if cls is type(self))
        values = ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{name}:{values}" if values else name


@dataclass(frozen=True)
class WeightNoise(Hook):
    """theta <- theta + sigma z, z ~ N(0, I_P), after every `every`-th optimizer step: isotropic noise on the
    weights, drawn from the hook's own stream (so the batches and probes stay as they were)."""

    sigma: float = 1e-3
    every: int = 50

    def __post_init__(self):
        if not (self.sigma >= 0 and self.every >= 1):
            raise ValueError(f"weight_noise needs sigma >= 0 and every >= 1, got sigma={self.sigma}, "
                             f"every={self.every}")

    def after_update(self, theta, step: int, rng: np.random.Generator):
        if step % self.every:
            return theta
        noise = rng.standard_normal(theta.size).astype(theta.dtype)  # (P,), drawn on the host: the same anywhere
        return theta + self.sigma * backend.to_device(noise)


@dataclass(frozen=True)
class L2Penalty(Hook):
    """g <- g + lam theta: an L2 penalty lam/2 ||theta||^2 through the gradient (added after clipping), the
    regularisation AdamW's decoupled decay replaces. Adam then divides it, coordinate by coordinate, by
    sqrt(v_hat): large-gradient weights are decayed less, which is why it is not weight decay (Loshchilov &
    Hutter). Use it with weight_decay 0 to compare the two."""

    lam: float = 1.0

    def before_update(self, theta, grad, step: int, rng: np.random.Generator) -> tuple:
        return theta, grad + self.lam * theta


HOOKS: dict[str, type] = {"none": Hook, "weight_noise": WeightNoise, "l2": L2Penalty}


def parse(spec: str) -> Hook:
    """The hook that "NAME" or "NAME:KEY=VALUE,KEY=VALUE" names; a ValueError saying what is wrong otherwise."""
    name, _, args = spec.partition(":")
    if name not in HOOKS:
        raise ValueError(f"unknown hook {name!r}: must be one of {', '.join(HOOKS)}")
    fields = {f.name: f for f in dataclasses.fields(HOOKS[name])}
    kwargs = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise ValueError(f"hook {name!r} has no parameter {key!r}" + (
                f": it takes {', '.join(fields)}" if fields else ": it takes none"))
        try:
            kwargs[key] = type(fields[key].default)(value)
        except ValueError:
            raise ValueError(f"hook {name!r}: {key}={value!r} is not a {type(fields[key].default).__name__}") from None
    return HOOKS[name](**kwargs)
