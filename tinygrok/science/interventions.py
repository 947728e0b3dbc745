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

The causal interventions of docs/paper.md §8.2 (all from update `start` = 500), with B orthonormal, P = I - B B^T the
projection onto its orthogonal complement. Their schedules count updates from 1, as the reference's loop does:
before_update acts on the update about to be made, number step + 1; after_update after update number `step`.

    project         g <- g - s P g = g_par + (1 - s) g_perp, every update       (s = 1: no orthogonal gradient)
    project_attention  not the paper's: the same inside the attention matrices only, g <- g - s (M g - B B^T g)
    penalty         the same with s = lambda, on every 10th update only
    kick            once, at update 500: theta <- theta + alpha ||eta g_A|| u, u = P delta / ||P delta||, delta the
                    commutator of the median-D sample of 9
    noise           every 50 updates: theta <- theta + eps P z / ||P z||, z ~ N(0, I)
    sustained_kick  every 50 updates, after the optimizer step: the kick, from 5 samples
    random_kick     every 50 updates, after the optimizer step: theta <- theta + alpha 1.5e-3 P z / ||P z||
    keep_random     not the paper's: every update, g <- R R^T g, R a random orthonormal basis of k directions

And two controls outside the paper, without a basis: weight_noise (theta <- theta + sigma z, z ~ N(0, I), after
every 50th update) and l2 (g <- g + lam theta: an L2 penalty through the gradient, beside AdamW's decoupled decay).

`basis` says which B the run is given: "pca" (the baseline run's trajectory PCA, §5.5) or "random" (a random
orthonormal basis of the same size, the ablation; for project_attention, random inside the attention matrices).

A hook is one declaration, here, from which everything else derives: its name (`class X(Hook, name="x")`), its
parameters (`param`: type, allowed values, default, meaning), its formula (the docstring), whether it needs an
execution basis (it has a `basis` parameter), the parameter its dose sets (DOSE), the doses the paper swept
(SWEEP) and what the paper reports (PAPER). Config validation, `--hook` and `--arm`, the grids and the report read
them from HOOKS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

BASES = ("pca", "random")  # which execution basis an intervention run is given (recipes.intervention_basis)
RANDOM_KICK_STEP = 1.5e-3  # the reference's hard-coded "typical ||eta g_A||" for the random kicks (§8.2)
HOOKS: dict[str, type] = {}  # name -> Hook class, in the order they are declared (Hook.__init_subclass__)


def param(default, meaning: str, low: float | None = 0, high: float | None = None, choices: tuple | None = None):
    """A hook's parameter: its default, what it means, and what is allowed (low <= value <= high, or one of
    choices). Its type is the field's annotation."""
    return field(default=default, metadata=dict(meaning=meaning, low=low, high=high, choices=choices))


class Reported(NamedTuple):
    """What the paper reports for an arm at one dose (§8.3): the mean grok step over seeds 42/137/2024 read off its
    figure (about ±50 steps; None: no seed grokked within the cap, DNF 0/3), the figure, the delay over the
    baseline where the paper states it, a text in place of the step where the paper gives no number, and the
    figI4 summary table's step where it gives this arm at this dose another one."""

    step: int | None
    source: str
    delay: int | None = None
    text: str = ""
    figi4: int | None = None


@dataclass(frozen=True)
class Context:
    """What a hook may use besides theta and the gradient."""

    rng: np.random.Generator  # the run's own "hook" stream
    basis: np.ndarray | None = None  # B (P, K), orthonormal columns, in theta's dtype; None if not given
    defects: Callable | None = None  # (theta, k) -> k commutator samples at theta, their batches from rng
    device: Callable = np.asarray  # a host array -> the run's array backend (noise is drawn on the host: the same
    #                                numbers on any backend)
    subspace: Callable | None = None  # k -> R (P, k): the run's random orthonormal basis of k directions, drawn
    #                                   once from its "keep_random" stream (so the same after a resume)
    attention: np.ndarray | None = None  # (P,) 1 on the attention matrices' weights (where B lies), 0 elsewhere


@dataclass(frozen=True)
class Hook:
    """The identity hook ("none"). A hook overrides either method or both, and declares itself as the module's
    docstring says."""

    NAME: ClassVar[str] = "none"
    DOSE: ClassVar[str] = ""  # the parameter an intervention's strength sets (tinygrok intervene --dose); "": none
    SWEEP: ClassVar[tuple] = ()  # the doses the paper swept on add (the grids)
    INSIDE_ATTENTION: ClassVar[bool] = False  # whether its basis "random" lies inside the attention matrices only
    PAPER: ClassVar[dict] = {  # (op, dose, basis) -> Reported: the runs without intervention (figI4, figI10)
        ("add", 0.0, "pca"): Reported(3233, "figI4; figI10 ~3200"),
        **{
            (op, 0.0, "pca"): Reported(step, "figI10") for op, step in {"sub": 3730, "mul": 2830, "x2_y2": 2630}.items()
        },
    }

    def __init_subclass__(cls, name: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        cls.SWEEP, cls.PAPER = vars(cls).get("SWEEP", ()), vars(cls).get("PAPER", {})  # each hook's own, not inherited
        if name:
            cls.NAME, HOOKS[name] = name, cls

    def __post_init__(self):
        bad = [
            f"{f.name}={getattr(self, f.name)!r} is not allowed: {f.name} is {_allowed(f)}"
            for f in dataclasses.fields(self)
            if not _admits(f, getattr(self, f.name))
        ]
        if bad:
            raise ValueError(f"{self.NAME}: " + "; ".join(bad))

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        """After clipping, before AdamW: returns (theta, grad), either one changed or not."""
        return theta, grad

    def after_update(self, theta, step: int, ctx: Context):
        """After the optimizer step that made `step` updates in all: returns theta, changed or not."""
        return theta

    def first_update(self) -> int:
        """The first update the hook acts on (or right after): its `start` (1 without one), on the first multiple
        of its `every` from there where it has one. A run that ends before it would never see the hook act."""
        return _first_on(getattr(self, "start", 1), getattr(self, "every", 1))

    def with_dose(self, dose: float | None, basis: str = "pca") -> Hook:
        """This intervention at strength `dose` (None: its default, the paper's primary), given the `basis`
        execution basis (if it takes one)."""
        if not self.DOSE:
            raise ValueError(f"{self.spec} is not an intervention with a dose: the arms are {', '.join(ARMS)}")
        changes = {"basis": basis} if self.needs_basis else {}
        if dose is not None:  # --dose is a float: a whole one fits an int parameter, any other is refused below
            whole = _kind(_field(type(self), self.DOSE)) == "int" and float(dose).is_integer()
            changes[self.DOSE] = int(dose) if whole else float(dose)
        return dataclasses.replace(self, **changes)

    @property
    def needs_basis(self) -> bool:
        """Whether the run must be given an execution basis (hook_basis.npy): whether the hook has a `basis`."""
        return any(f.name == "basis" for f in dataclasses.fields(self))

    @property
    def is_identity(self) -> bool:
        """Whether this hook changes nothing (a report counts it among the runs without intervention)."""
        return type(self) is Hook

    def prevents_grokking(self) -> bool:
        """Whether the paper finds grokking impossible under this hook (a run's expected length: its cap)."""
        return False

    @property
    def spec(self) -> str:
        """The hook's one text form, every parameter written out: "weight_noise:sigma=0.001,every=50"."""
        values = ",".join(f"{f.name}={_text(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{self.NAME}:{values}" if values else self.NAME

    @classmethod
    def explain(cls, name: str) -> str:
        """One parameter as help shows it: "s, the share of the orthogonal gradient removed (in [0, 1], 0.5)"."""
        f = _field(cls, name)
        return f"{name}, {f.metadata['meaning']} ({_allowed(f)}, default {_text(f.default)})"


HOOKS["none"] = Hook


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _kind(f: dataclasses.Field) -> str:
    """A parameter's type as a name: "float", "int", "str" or "bool" (annotations may be text or the type)."""
    return getattr(f.type, "__name__", f.type)


def _admits(f: dataclasses.Field, value) -> bool:
    """Whether the parameter `f` allows `value`: of its type (an int will do for a float), within its range."""
    kind, m = _kind(f), f.metadata
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    if not isinstance(value, {"float": (int, float), "int": int, "str": str}[kind]):
        return False
    if m["choices"] is not None:
        return value in m["choices"]
    if kind == "str":
        return True  # a range is for numbers
    return (m["low"] is None or value >= m["low"]) and (m["high"] is None or value <= m["high"])


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m["choices"] is not None:
        return "one of " + ", ".join(m["choices"])
    if _kind(f) in ("bool", "str"):
        return {"bool": "true or false", "str": "text"}[_kind(f)]
    kind = "a whole number" if _kind(f) == "int" else "a number"
    if m["high"] is not None:
        return f"in [{_text(m['low'])}, {_text(m['high'])}]"
    return f"{kind} >= {_text(m['low'])}" if m["low"] is not None else kind


def _text(value) -> str:
    """A parameter's value as the hook's text writes it: a number exactly (repr), a name as it is."""
    return value if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else repr(value)


def _parsed(text: str, kind: str):
    """A parameter's value from the hook's text: by the parameter's type (a bool is true or false)."""
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError
        return text == "true"
    return {"float": float, "int": int, "str": str}[kind](text)


@dataclass(frozen=True)
class WeightNoise(Hook, name="weight_noise"):
    """theta <- theta + sigma z, z ~ N(0, I_P), after every `every`-th optimizer step: isotropic noise on the
    weights, drawn from the hook's own stream (so the batches and probes stay as they were)."""

    sigma: float = param(1e-3, "the noise's standard deviation, per parameter")
    every: int = param(50, "optimizer steps between two draws", low=1)

    def after_update(self, theta, step: int, ctx: Context):
        if step % self.every:
            return theta
        noise = ctx.rng.standard_normal(theta.size).astype(theta.dtype)  # (P,), drawn on the host: the same anywhere
        return theta + self.sigma * ctx.device(noise)


@dataclass(frozen=True)
class L2Penalty(Hook, name="l2"):
    """g <- g + lam theta: an L2 penalty lam/2 ||theta||^2 through the gradient (added after clipping), the
    regularisation AdamW's decoupled decay replaces. Adam then divides it, coordinate by coordinate, by
    sqrt(v_hat): large-gradient weights are decayed less, which is why it is not weight decay (Loshchilov &
    Hutter). Use it with weight_decay 0 to compare the two."""

    lam: float = param(1.0, "the penalty's coefficient")

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


def _acts_on(update: int, start: int, every: int) -> bool:
    """Whether an arm acts on (or right after) update number `update`: on every multiple of `every` from update
    `start` on."""
    return update >= start and update % every == 0


def _first_on(start: int, every: int) -> int:
    """The first update `_acts_on` holds for: the first multiple of `every` from `start` on."""
    return -(-start // every) * every


BASIS = "the execution basis: pca (the baseline run's trajectory PCA) or random (the ablation)"
START = "the first update it acts on (or after)"
EVERY = "updates between two actions"


@dataclass(frozen=True)
class Project(Hook, name="project"):
    """Gradient suppression (1B-project): g <- g - s (g - B B^T g) = g_par + (1 - s) g_perp on every step from
    `start`, after clipping and before AdamW (whose per-coordinate scaling then acts on the projected gradient).
    s = 0 changes nothing; s = 1 leaves no gradient outside the execution subspace."""

    DOSE: ClassVar[str] = "s"
    SWEEP: ClassVar[tuple] = (0.25, 0.5, 0.75, 1.0)  # figI5 (random basis: figI6)
    # figI10's means per operation; the multi-op script's docstring gives add's delays over its baseline
    PAPER: ClassVar[dict] = {
        **{
            (op, s, "pca"): Reported(step, "figI10", delay)
            for op, steps in {
                "add": (3300, 3470, 4070),
                "sub": (3770, 4170, 4330),
                "mul": (3000, 3070, 3470),
                "x2_y2": (2730, 3000, 3130),
            }.items()
            for s, step, delay in zip((0.25, 0.5, 0.75), steps, (34, 300, 800) if op == "add" else (None,) * 3)
        },
        **{(op, 1.0, "pca"): Reported(None, "figI10, figI5") for op in ("add", "sub", "mul", "x2_y2")},
        ("add", 0.5, "pca"): Reported(3470, "figI10", 300, figi4=3533),
        ("add", 1.0, "random"): Reported(None, "figI6"),
        **{("add", s, "random"): Reported(None, "figI6", text="< 50 steps of delay") for s in (0.25, 0.5, 0.75)},
    }

    s: float = param(0.5, "the share of the orthogonal gradient removed", high=1)
    basis: str = param("pca", BASIS, choices=BASES)
    start: int = param(500, START, low=1)

    def acts(self, update: int) -> bool:
        return update >= self.start

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if not self.acts(step + 1):
            return theta, grad
        return theta, grad - self.s * orthogonal_part(grad, ctx.basis)

    @property
    def is_identity(self) -> bool:
        return self.s == 0

    def prevents_grokking(self) -> bool:
        return self.s == 1  # §8.3: no gradient outside the execution subspace, no grokking


@dataclass(frozen=True)
class ProjectAttention(Project, name="project_attention"):
    """Not the paper's: the projection of `project` inside the attention matrices only, where B lies (§5.5):
    g <- g - s (M g - B B^T g), M the diagonal 0/1 mask of the weights of W_Q, W_K, W_V, W_O in every layer.
    Embeddings, MLPs, layer norms and biases keep their whole gradient. `project` at s = 1 leaves every parameter
    outside the attention matrices no gradient, so its failure to grok says nothing about B itself; here, at
    s = 1, only the attention matrices are held to B's span (basis "random": to a random subspace of the same size
    inside them)."""

    SWEEP: ClassVar[tuple] = (0.75, 1.0)
    INSIDE_ATTENTION: ClassVar[bool] = True

    basis: str = param(
        "pca",
        "the execution basis: pca (the baseline run's trajectory PCA) or random (a random "
        "one inside the attention matrices)",
        choices=BASES,
    )

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if not self.acts(step + 1):
            return theta, grad
        return theta, grad - self.s * (ctx.attention * grad - ctx.basis @ (ctx.basis.T @ grad))

    def prevents_grokking(self) -> bool:
        return False  # unknown: what this control measures


@dataclass(frozen=True)
class Penalty(Project, name="penalty"):
    """1B-penalty: the projection of `project` with s = lambda, on the steps from `start` that are multiples of
    10 only (the paper's primary lambda: 0.5)."""

    SWEEP: ClassVar[tuple] = (0.1, 0.3, 0.5, 0.9)  # figI5
    PAPER: ClassVar[dict] = {
        ("add", dose, "pca"): Reported(step, "figI5")
        for dose, step in {0.1: 3333, 0.3: 3200, 0.5: 3267, 0.9: 3200}.items()
    }
    every: ClassVar[int] = 10  # fixed, as the paper's (first_update reads it as the other hooks' parameter)

    def acts(self, update: int) -> bool:
        return _acts_on(update, self.start, self.every)

    def prevents_grokking(self) -> bool:
        return False  # nine updates in ten keep their orthogonal part


@dataclass(frozen=True)
class Kick(Hook, name="kick"):
    """1A-kick: once, at step `start`, before the optimizer step: of `samples` commutator samples at theta take
    the defect vector delta of the median-D one; u = P delta / ||P delta|| (its part outside the execution
    subspace, normalised); theta <- theta + alpha ||eta g_A|| u, ||eta g_A|| from one more sample. The samples'
    batches come from the hook's stream (the reference drew them from its training stream)."""

    DOSE: ClassVar[str] = "alpha"
    SWEEP: ClassVar[tuple] = (1.0, 5.0, 10.0, 20.0)  # figI5
    PAPER: ClassVar[dict] = {
        ("add", dose, "pca"): Reported(step, "figI5")
        for dose, step in {1.0: 3200, 5.0: 3200, 10.0: 3233, 20.0: 3200}.items()
    }

    alpha: float = param(10.0, "the kick's size, in steps of ||eta g_A||")
    basis: str = param("pca", BASIS, choices=BASES)
    start: int = param(500, "the update it acts on, once", low=1)
    samples: int = param(9, "commutator samples the median-D one is taken from", low=1)

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if step + 1 != self.start:
            return theta, grad
        return theta + _curvature_kick(theta, self.alpha, self.samples, ctx), grad


@dataclass(frozen=True)
class Noise(Hook, name="noise"):
    """1A-noise: every `every` steps from `start`, before the optimizer step, theta <- theta + eps P z / ||P z||,
    z ~ N(0, I_P): noise of norm eps (absolute) outside the execution subspace."""

    DOSE: ClassVar[str] = "eps"
    SWEEP: ClassVar[tuple] = (0.01, 0.05, 0.1, 0.5)  # figI5
    PAPER: ClassVar[dict] = {
        ("add", dose, "pca"): Reported(step, "figI5")
        for dose, step in {0.01: 3167, 0.05: 3200, 0.1: 3200, 0.5: 3167}.items()
    }

    eps: float = param(0.1, "the noise's norm")
    basis: str = param("pca", BASIS, choices=BASES)
    start: int = param(500, START, low=1)
    every: int = param(50, EVERY, low=1)

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if not _acts_on(step + 1, self.start, self.every):
            return theta, grad
        return theta + self.eps * _orthogonal_direction(theta, ctx), grad


@dataclass(frozen=True)
class SustainedKick(Hook, name="sustained_kick"):
    """Sustained commutator kicks: the kick of `kick`, from `samples` samples, every `every` steps from `start`,
    after the optimizer step."""

    DOSE: ClassVar[str] = "alpha"
    SWEEP: ClassVar[tuple] = (50.0, 100.0, 200.0, 500.0)  # figI8
    PAPER: ClassVar[dict] = {
        ("add", dose, "pca"): Reported(step, "figI8") for dose, step in zip(SWEEP, (3233, 3200, 3167, 3200))
    }

    alpha: float = param(100.0, "the kick's size, in steps of ||eta g_A||")
    basis: str = param("pca", BASIS, choices=BASES)
    start: int = param(500, START, low=1)
    every: int = param(50, EVERY, low=1)
    samples: int = param(5, "commutator samples the median-D one is taken from", low=1)

    def after_update(self, theta, step: int, ctx: Context):
        if not _acts_on(step, self.start, self.every):
            return theta
        return theta + _curvature_kick(theta, self.alpha, self.samples, ctx)


@dataclass(frozen=True)
class RandomKick(Hook, name="random_kick"):
    """The sustained kicks' control: every `every` steps from `start`, after the optimizer step,
    theta <- theta + alpha 1.5e-3 P z / ||P z||, z ~ N(0, I_P) (1.5e-3: the reference's typical ||eta g_A||)."""

    DOSE: ClassVar[str] = "alpha"
    SWEEP: ClassVar[tuple] = (50.0, 100.0, 200.0, 500.0)  # figI8
    PAPER: ClassVar[dict] = {
        ("add", dose, "pca"): Reported(step, "figI8") for dose, step in zip(SWEEP, (3200, 3200, 3167, 3300))
    }

    alpha: float = param(100.0, "the kick's size, in steps of 1.5e-3")
    basis: str = param("pca", BASIS, choices=BASES)
    start: int = param(500, START, low=1)
    every: int = param(50, EVERY, low=1)

    def after_update(self, theta, step: int, ctx: Context):
        if not _acts_on(step, self.start, self.every):
            return theta
        return theta + self.alpha * RANDOM_KICK_STEP * _orthogonal_direction(theta, ctx)


@dataclass(frozen=True)
class KeepRandom(Hook, name="keep_random"):
    """Keep only a random rank-k subspace of the gradient: g <- R R^T g on every update from `start`, after
    clipping and before AdamW, R (P, k) a uniformly random orthonormal basis drawn once, from the run's
    "keep_random" stream (ctx.subspace; so a resumed run has the same R). Not in the paper: its author reports in
    a follow-up note that keeping any rank-3 subspace speeds grokking about 2.3x."""

    DOSE: ClassVar[str] = "k"

    k: int = param(3, "the number of gradient directions kept", low=1)
    start: int = param(500, START, low=1)

    def before_update(self, theta, grad, step: int, ctx: Context) -> tuple:
        if step + 1 < self.start:
            return theta, grad
        kept = ctx.subspace(self.k)  # (P, k)
        return theta, kept @ (kept.T @ grad)


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


# ---------------------------------------------------------------------- what the rest of tinygrok reads
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
            raise ValueError(
                f"hook {name!r} has no parameter {key!r}"
                + (f": it takes {', '.join(fields)}" if fields else ": it takes none")
            )
        if key in kwargs:
            raise ValueError(f"hook {name!r}: {key} is given twice")
        try:
            kwargs[key] = _parsed(value, _kind(fields[key]))
        except ValueError:
            raise ValueError(
                f"hook {name!r}: {key}={value!r} is not allowed: {key} is {_allowed(fields[key])}"
            ) from None
    return HOOKS[name](**kwargs)
