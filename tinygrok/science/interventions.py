"""Interventions as part of a run: what may change the clipped gradient, and theta, around each optimizer step.

A run names its hook with the hook's parameters in the config, as text: `hook = "project:s=0.5,basis=pca,start=500"`
(`--hook` on the command line). So config.json records it, and a resume restores it. One training step is

    g = clip(gradient at theta)
    theta, g = hook.before_update(theta, g, step, ctx)     step: the updates made before this one
    theta = AdamW(theta, g)
    theta = hook.after_update(theta, step + 1, ctx)

where ctx holds what a hook may use besides theta and g: the run's own "hook" random stream, saved in every
checkpoint (a hook draws randomness from nothing else), the execution basis B (P, K) the run was given
(hook_basis.npy in its directory), commutator samples at theta on batches from that stream, and the way to the
run's array device. The default, "none", changes nothing.

The causal interventions of PAPER.md §8.2 (all from update `start` = 500), with B orthonormal, P = I - B B^T the
projection onto its orthogonal complement. Their schedules count updates from 1, as the reference's loop does:
before_update acts on the update about to be made, number step + 1; after_update after update number `step`.

    project         g <- g - s P g = g_par + (1 - s) g_perp, every update       (s = 1: no orthogonal gradient)
    penalty         the same with s = lambda, on every 10th update only
    kick            once, at update 500: theta <- theta + alpha ||eta g_A|| u, u = P delta / ||P delta||, delta the
                    commutator of the median-D sample of 9
    noise           every 50 updates: theta <- theta + eps P z / ||P z||, z ~ N(0, I)
    sustained_kick  every 50 updates, after the optimizer step: the kick, from 5 samples
    random_kick     every 50 updates, after the optimizer step: theta <- theta + alpha 1.5e-3 P z / ||P z||

`basis` says which B the run is given: "pca" (the baseline run's trajectory PCA, §5.5) or "random" (a random
orthonormal basis of the same size, the ablation).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import numpy as np

BASES = ("pca", "random")  # which execution basis an intervention run is given (recipes.intervention_basis)
RANDOM_KICK_STEP = 1.5e-3  # the reference's hard-coded "typical ||eta g_A||" for the random kicks (§8.2)


@dataclass(frozen=True)
class Context:
    """What a hook may use besides theta and the gradient."""

    rng: np.random.Generator  # the run's own "hook" stream
    basis: Optional[np.ndarray] = None  # B (P, K), orthonormal columns, in theta's dtype; None if not given
    defects: Optional[Callable] = None  # (theta, k) -> k commutator samples at theta, their batches from rng
    device: Callable = np.asarray  # a host array -> the run's array backend (noise is drawn on the host: the same
    #                                numbers on any backend)


@dataclass(frozen=True)
class Hook:
    """The identity hook ("none"). A hook overrides either method or both. Its parameters are checked by name: s
    in [0, 1], every and samples at least 1, basis one of BASES, any other number at least 0."""

    DOSE: ClassVar[str] = ""  # the parameter an intervention's strength sets (tinygrok intervene --dose)

    def __post_init__(self):
        bad = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if not _allowed(f.name, getattr(self, f.name))}
        if bad:
            raise ValueError(f"{self.name}: " + ", ".join(f"{k}={v!r}" for k, v in bad.items()) + " is not allowed: "
                             f"s is in [0, 1], every and samples at least 1, basis one of {', '.join(BASES)}, the "
                             "others at least 0")

    @property
    def name(self) -> str:
        return next(key for key, cls in HOOKS.items() if cls is type(self))

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        """After clipping, before AdamW: returns (theta, grad), either one changed or not."""
        return theta, grad

    def after_update(self, theta, step: int, ctx: Context):
        """After the optimizer step that made `step` updates in all: returns theta, changed or not."""
        return theta

    def with_dose(self, dose: Optional[float], basis: str = "pca") -> "Hook":
        """This intervention at strength `dose` (None: its default, the paper's primary), given the `basis`
        execution basis."""
        if not self.DOSE:
            raise ValueError(f"{self.spec} is not an intervention with a dose: the arms are {', '.join(ARMS)}")
        return dataclasses.replace(self, **({self.DOSE: dose} if dose is not None else {}), basis=basis)

    @property
    def needs_basis(self) -> bool:
        """Whether the run must be given an execution basis (hook_basis.npy)."""
        return "basis" in {f.name for f in dataclasses.fields(self)}

    @property
    def spec(self) -> str:
        """The hook's one text form, every parameter written out: "weight_noise:sigma=0.001,every=50"."""
        values = ",".join(f"{f.name}={_text(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{self.name}:{values}" if values else self.name


@dataclass(frozen=True)
class WeightNoise(Hook):
    """theta <- theta + sigma z, z ~ N(0, I_P), after every `every`-th optimizer step: isotropic noise on the
    weights, drawn from the hook's own stream (so the batches and probes stay as they were)."""

    sigma: float = 1e-3
    every: int = 50

    def after_update(self, theta, step: int, ctx: Context):
        if step % self.every:
            return theta
        noise = ctx.rng.standard_normal(theta.size).astype(theta.dtype)  # (P,), drawn on the host: the same anywhere
        return theta + self.sigma * ctx.device(noise)


@dataclass(frozen=True)
class L2Penalty(Hook):
    """g <- g + lam theta: an L2 penalty lam/2 ||theta||^2 through the gradient (added after clipping), the
    regularisation AdamW's decoupled decay replaces. Adam then divides it, coordinate by coordinate, by
    sqrt(v_hat): large-gradient weights are decayed less, which is why it is not weight decay (Loshchilov &
    Hutter). Use it with weight_decay 0 to compare the two."""

    lam: float = 1.0

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        return theta, grad + self.lam * theta


# ---------------------------------------------------------------------- the causal interventions (§8.2)
def orthogonal_part(x, basis):
    """P x = x - B B^T x: the part of x outside the span of B's orthonormal columns. (P,) -> (P,)"""
    return x - basis @ (basis.T @ x)


def direction(x):
    """x / ||x||, or zero where x is (numerically) zero: then there is no kick, as the reference skips it."""
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 1e-15 else x * 0


def _allowed(name: str, value) -> bool:
    if name == "basis":
        return value in BASES
    low, high = {"s": (0, 1), "every": (1, None), "samples": (1, None)}.get(name, (0, None))
    return value >= low and (high is None or value <= high)


def _due(update: int, start: int, every: int) -> bool:
    """Whether an arm acting every `every` updates from update `start` acts on (or after) this one."""
    return update >= start and update % every == 0


@dataclass(frozen=True)
class Project(Hook):
    """Gradient suppression (1B-project): g <- g - s (g - B B^T g) = g_par + (1 - s) g_perp on every step from
    `start`, after clipping and before AdamW (whose per-coordinate scaling then acts on the projected gradient).
    s = 0 changes nothing; s = 1 leaves no gradient outside the execution subspace."""

    DOSE: ClassVar[str] = "s"

    s: float = 0.5
    basis: str = "pca"
    start: int = 500

    def acts(self, update: int) -> bool:
        return update >= self.start

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if not self.acts(step + 1):
            return theta, grad
        return theta, grad - self.s * orthogonal_part(grad, ctx.basis)


@dataclass(frozen=True)
class Penalty(Project):
    """1B-penalty: the projection of `project` with s = lambda, on the steps from `start` that are multiples of
    10 only (the paper's primary lambda: 0.5)."""

    def acts(self, update: int) -> bool:
        return _due(update, self.start, 10)


@dataclass(frozen=True)
class Noise(Hook):
    """1A-noise: every `every` steps from `start`, before the optimizer step, theta <- theta + eps P z / ||P z||,
    z ~ N(0, I_P): noise of norm eps (absolute) outside the execution subspace."""

    DOSE: ClassVar[str] = "eps"

    eps: float = 0.1
    basis: str = "pca"
    start: int = 500
    every: int = 50

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if not _due(step + 1, self.start, self.every):
            return theta, grad
        return theta + self.eps * _orthogonal_direction(theta, ctx), grad


@dataclass(frozen=True)
class Kick(Hook):
    """1A-kick: once, at step `start`, before the optimizer step: of `samples` commutator samples at theta take
    the defect vector delta of the median-D one; u = P delta / ||P delta|| (its part outside the execution
    subspace, normalised); theta <- theta + alpha ||eta g_A|| u, ||eta g_A|| from one more sample. The samples'
    batches come from the hook's stream (the reference drew them from its training stream)."""

    DOSE: ClassVar[str] = "alpha"

    alpha: float = 10.0
    basis: str = "pca"
    start: int = 500
    samples: int = 9

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if step + 1 != self.start:
            return theta, grad
        return theta + _curvature_kick(theta, self.alpha, self.samples, ctx), grad


@dataclass(frozen=True)
class SustainedKick(Hook):
    """Sustained commutator kicks: the kick of `kick`, from `samples` samples, every `every` steps from `start`,
    after the optimizer step."""

    DOSE: ClassVar[str] = "alpha"

    alpha: float = 100.0
    basis: str = "pca"
    start: int = 500
    every: int = 50
    samples: int = 5

    def after_update(self, theta, step: int, ctx: Context):
        if not _due(step, self.start, self.every):
            return theta
        return theta + _curvature_kick(theta, self.alpha, self.samples, ctx)


@dataclass(frozen=True)
class RandomKick(Hook):
    """The sustained kicks' control: every `every` steps from `start`, after the optimizer step,
    theta <- theta + alpha 1.5e-3 P z / ||P z||, z ~ N(0, I_P) (1.5e-3: the reference's typical ||eta g_A||)."""

    DOSE: ClassVar[str] = "alpha"

    alpha: float = 100.0
    basis: str = "pca"
    start: int = 500
    every: int = 50

    def after_update(self, theta, step: int, ctx: Context):
        if not _due(step, self.start, self.every):
            return theta
        return theta + self.alpha * RANDOM_KICK_STEP * _orthogonal_direction(theta, ctx)


def _orthogonal_direction(theta, ctx: Context):
    """P z / ||P z|| for z ~ N(0, I_P) from the hook's stream (drawn on the host: the same on any backend)."""
    z = ctx.device(ctx.rng.standard_normal(theta.size).astype(theta.dtype))
    return direction(orthogonal_part(z, ctx.basis))


def _curvature_kick(theta, alpha: float, samples: int, ctx: Context):
    """alpha ||eta g_A|| u: u the unit orthogonal part of the median-D sample's delta (§8.2)."""
    probes = sorted(ctx.defects(theta, samples), key=lambda p: p["defect"])
    delta = probes[len(probes) // 2]["delta"]  # the median sample's (the upper middle one of an even number)
    size = ctx.defects(theta, 1)[0]["step_norm"]
    return (alpha * size) * direction(orthogonal_part(delta, ctx.basis))


def _text(value) -> str:
    """A parameter's value as the hook's text writes it: a number exactly (repr), a name as it is."""
    return value if isinstance(value, str) else repr(value)


HOOKS: dict[str, type] = {"none": Hook, "weight_noise": WeightNoise, "l2": L2Penalty, "project": Project,
                          "penalty": Penalty, "kick": Kick, "noise": Noise, "sustained_kick": SustainedKick,
                          "random_kick": RandomKick}

ARMS = [name for name, cls in HOOKS.items() if cls.DOSE]  # the causal interventions, each with a strength


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
