"""The paper's experiments as named grids of run specs (tinygrok experiments, tinygrok sweep NAME), the filters that
make a grid smaller, and what a grid's runs are expected to cost.

A grid is data: a function returning rows (recipe, preset, settings), one per run, turned into RunSpecs by `grid`,
with the baselines its interventions need first. A new experiment is a new entry in EXPERIMENTS (and, if it needs
one, a stage registered in recipes.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tinygrok.lab.recipes import RunSpec, baseline, needs_baseline, recipe_settings, spec
from tinygrok.science import config, interventions
from tinygrok.science.config import Config, ConfigError
from tinygrok.science.model import param_count
from tinygrok.science.paper import GROKKING_OPS, NON_GROKKING_OPS

SEEDS = (42, 137, 2024)
LEARNING_RATES = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # six half-decade rates, 300x (docs/paper.md §7.4, inferred)
PROBES = dict(probe_every=100, probe_samples=5, extra_steps=1000)  # §6.2: K = 5 every 100, 1,000 past detection
# the reference's random-subspace control (§6.2, §6.4): K = 7 samples every 100 steps, 1,500 steps past detection;
# all parameters saved every 100 steps, for exec/random at each of them
CONTROLS = dict(probe_samples=7, theta_every=100, extra_steps=1500)

Row = tuple  # (recipe, preset, settings): one run of a grid, before filters
# A grid is a function of the seeds its seeded runs take (the paper's SEEDS unless --seeds names others); runs the
# paper made with one seed only keep theirs.


def _table1(seeds: tuple) -> list[Row]:
    """Table 1, onset and lead: 4 grokking operations x 3 seeds, probed, and 3 controls (§10 #4, #10-#13).

    The controls, as the reference's generalization-dynamics runs: the two non-grokking operations for 7,500 steps
    and add without weight decay for 5,000."""
    return (
        [("walkthrough", "paper", dict(op=op, seed=seed)) for op in GROKKING_OPS for seed in seeds]
        + [("walkthrough", "paper", dict(op=op, seed=42, max_steps=7500)) for op in NON_GROKKING_OPS]
        + [("walkthrough", "paper", dict(op="add", seed=42, weight_decay=0.0, max_steps=5000))]
    )


def _pca(seeds: tuple) -> list[Row]:
    """Trajectory PCA: 6 operations x weight decay {1, 0} x 3 seeds (§5.4).

    No-decay runs for 50,000 steps with snapshots every 500; the non-grokking operations run all 200,000 steps."""
    no_decay = dict(weight_decay=0.0, max_steps=50_000, snapshot_every=500)
    return [
        ("pca", "paper", dict(op=op, seed=seed, **(no_decay if wd == 0 else {})))
        for op in GROKKING_OPS + NON_GROKKING_OPS
        for wd in (1.0, 0.0)
        for seed in seeds
    ]


def _lr_sweep(seeds: tuple) -> list[Row]:
    """The lead-time power law: 6 learning rates x 6 operations x 3 seeds, probed (§7.4, §10 #15-#20).

    The non-grokking operations for at most 50,000 steps, as in the reference's LR sweep (§12)."""
    return [
        (
            "train",
            "paper",
            dict(op=op, seed=seed, lr=lr, **PROBES, **({"max_steps": 50_000} if op in NON_GROKKING_OPS else {})),
        )
        for lr in LEARNING_RATES
        for op in GROKKING_OPS + NON_GROKKING_OPS
        for seed in seeds
    ]


def _slow(seeds: tuple) -> list[Row]:
    """The slow regime: 3 layers, lr 5e-5, weight decay 0.1, add, seeds 42 and 137 (§9.2).

    K = 5 probes every 5,000 steps, 20,000 steps past detection, at most 650,000 steps. Snapshots of the last
    layer's attention matrices, in float16, every 20,000 steps: its trajectory PCA on those to detection (29-31
    at the paper's detection steps, beside its 33-snapshot numbers, §9.1), and the execution basis from them
    (K = 8; the reference: 24, every layer every 5,000 steps), with rho at the final checkpoint (as the
    reference). So a run's carried state (reproduction.carry) stays within 10 MiB: a 4.8 MiB checkpoint and at
    most 33 snapshots of 0.125 MiB."""
    return [
        (
            "probed",
            "slow",
            dict(
                op="add",
                seed=seed,
                probe_every=5000,
                probe_samples=5,
                extra_steps=20_000,
                max_steps=650_000,
                snapshot_every=20_000,
                snapshot_layers=1,
                snapshot_dtype="float16",
            ),
        )
        for seed in (42, 137)
    ]


DOSES = (0.0, 0.25, 0.5, 0.75, 1.0)  # project's s: 0 is the probed baseline (§8.2, multi-op dose-response)


def _arm(arm: str, dose: float, basis: str = "pca") -> str:
    return interventions.parse(arm).with_dose(dose, basis).spec


def _dose_response(seeds: tuple) -> list[Row]:
    """Dose-response: project at s = 0 to 1 x 4 grokking operations x 3 seeds (§8.3 figI10).

    s = 0, 0.25, 0.5, 0.75, 1, probed, each seed's baseline first (its basis)."""
    return [
        ("intervene", "paper", dict(op=op, seed=seed, hook=_arm("project", s)))
        for op in GROKKING_OPS
        for seed in seeds
        for s in DOSES
    ]


def _interventions_add(seeds: tuple) -> list[Row]:
    """The interventions on add: kick, noise, penalty, project, random-basis project (§8.3 figI4-I6).

    No hook, and kick, noise, penalty, project at four doses each, and project with a random basis at the same
    four, x 3 seeds."""
    sweeps = {arm: interventions.HOOKS[arm].SWEEP for arm in ("kick", "noise", "penalty", "project")}  # figI5
    arms = ["none"] + [_arm(arm, dose) for arm, doses in sweeps.items() for dose in doses]
    arms += [_arm("project", s, "random") for s in sweeps["project"]]  # figI6
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in seeds for hook in arms]


def _interventions_primary(seeds: tuple) -> list[Row]:
    """figI4: no hook, and kick, noise, penalty and project at the paper's primary strengths, on add (§8.3).

    Each arm at its default (the paper's primary: alpha 10, eps 0.1, lambda 0.5, s 0.5), x 3 seeds."""
    arms = ["none"] + [interventions.parse(arm).with_dose(None).spec for arm in ("kick", "noise", "penalty", "project")]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in seeds for hook in arms]


def _random_basis(seeds: tuple) -> list[Row]:
    """figI6: project with a random orthonormal basis in place of the trajectory PCA's, on add (§8.3).

    s = 0.25 to 1 and no hook, x 3 seeds."""
    arms = ["none"] + [_arm("project", s, "random") for s in interventions.HOOKS["project"].SWEEP]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in seeds for hook in arms]


def _kicks(seeds: tuple) -> list[Row]:
    """Sustained kicks on add, along curvature or at random, alpha 50-500 (§8.3 figI8).

    Every 50 steps from step 500, after the optimizer step; and no hook; x 3 seeds."""
    sweeps = {arm: interventions.HOOKS[arm].SWEEP for arm in ("sustained_kick", "random_kick")}  # figI8
    arms = ["none"] + [_arm(arm, alpha) for arm, alphas in sweeps.items() for alpha in alphas]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in seeds for hook in arms]


def _attention_only(seeds: tuple) -> list[Row]:
    """Not the paper's: project inside the attention matrices only, s = 0.75 and 1, with the baseline's trajectory
    PCA basis and with a random one of the same size inside the same matrices, on add; and project at s = 0 (the
    dose-response's, the delays' reference); x 3 seeds.

    Whether holding only the attention matrices to B stops grokking while a random subspace does not (§8.3's
    s = 1 control freezes every other parameter too)."""
    sweep = interventions.HOOKS["project_attention"].SWEEP
    arms = [_arm("project", 0.0)] + [_arm("project_attention", s, basis) for basis in ("pca", "random") for s in sweep]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in seeds for hook in arms]


def _controls(seeds: tuple) -> list[Row]:
    """exec/random with the reference's own control protocol: 4 grokking operations x 3 seeds (§6.4).

    The walkthrough with K = 7 defect samples every 100 steps (its onset too), parameters saved every 100 steps
    (the weight-SVD and trajectory-PCA bases' projections at each, 5 random bases of each size), 1,500 steps
    past detection."""
    return [("walkthrough", "paper", dict(op=op, seed=seed, **CONTROLS)) for op in GROKKING_OPS for seed in seeds]


def _float64_check(seeds: tuple) -> list[Row]:
    """The walkthrough of add, seed 42, in float32 and in float64: which features of the defect are float32's.

    §6.6: exact zeros, quantised values and post-grokking spikes may be rounding; float64 tells."""
    return [("walkthrough", "paper", dict(op="add", seed=42, dtype=dtype)) for dtype in ("float32", "float64")]


HELD_OUT_SEEDS = (7, 99)  # seeds no run the shipped grok forecaster was fitted on has (forecaster.json)


def _forecast_held_out(seeds: tuple) -> list[Row]:
    """Not the paper's: runs the grok forecaster is never fitted on, to score it once (docs/forecast.md).

    Its own seeds whatever --seeds says. The fitted rates 1e-3 and 1e-2 at new seeds, 4 grokking operations x 2
    seeds; rates between them (3e-3, 4 operations; 3e-4, add and mul); add at another weight decay (0.5, 2) and
    another training fraction (0.4, 0.6); the two non-grokking operations at 2 seeds for 5,000 steps, as their
    fitted runs; and 1e-4 at seeds 137 and 2024 for add and sub (the reproduction's lr-sweep runs)."""
    first = HELD_OUT_SEEDS[0]
    settings = (
        [dict(op=op, seed=seed, lr=lr) for lr in (1e-3, 1e-2) for op in GROKKING_OPS for seed in HELD_OUT_SEEDS]
        + [dict(op=op, seed=first, lr=3e-3) for op in GROKKING_OPS]
        + [dict(op=op, seed=first, lr=3e-4) for op in ("add", "mul")]
        + [dict(op="add", seed=first, weight_decay=wd) for wd in (0.5, 2.0)]
        + [dict(op="add", seed=first, train_frac=frac) for frac in (0.4, 0.6)]
        + [dict(op=op, seed=seed, max_steps=5000) for op in NON_GROKKING_OPS for seed in HELD_OUT_SEEDS]
        + [dict(op=op, seed=seed, lr=1e-4) for op in ("add", "sub") for seed in (137, 2024)]
    )
    return [("train", "paper", {**row, **PROBES}) for row in settings]


EXPERIMENTS = {
    "table1": _table1,
    "pca": _pca,
    "lr-sweep": _lr_sweep,
    "slow": _slow,
    "dose-response": _dose_response,
    "interventions-add": _interventions_add,
    "interventions-primary": _interventions_primary,
    "random-basis": _random_basis,
    "attention-only": _attention_only,
    "kicks": _kicks,
    "controls": _controls,
    "float64-check": _float64_check,
    "forecast-held-out": _forecast_held_out,
}


@dataclass(frozen=True)
class Filters:
    """What makes a grid smaller or another variant: these seeds in place of the paper's three (the runs the paper
    made with one seed kept where it is among them); only these operations and learning rates (None: all);
    only these intervention arms (hook names, "none" among them) and doses (the runs without intervention kept),
    with their baselines; max_steps as a cap on every run; preset "classroom" in place of "paper" (CPU-sized);
    and the intervention runs' batches ("own" or "sibling" in place of the reference's, "shifted")."""

    ops: tuple | None = None
    seeds: tuple | None = None
    lrs: tuple | None = None
    arms: tuple | None = None
    doses: tuple | None = None
    max_steps: int | None = None
    preset: str | None = None
    batches: str | None = None

    def describe(self) -> str:
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        text = {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in given.items()}
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in text.items()) or "none"


def _dose(cfg: Config) -> float | None:
    """The dose of the run's intervention; None for a run without one (a doses filter keeps it)."""
    hook = interventions.parse(cfg.hook)
    return None if hook.is_identity or not hook.DOSE else getattr(hook, hook.DOSE)


def grid(name: str, filters: Filters = Filters()) -> list[RunSpec]:
    """The run specs of the named experiment, filtered. A ConfigError for an unknown name or empty result."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}: must be one of {', '.join(EXPERIMENTS)}")
    if filters.preset not in (None, "paper", "classroom") or (filters.preset and name == "slow"):
        raise ConfigError(
            f"--preset={filters.preset!r} is invalid here: the paper's experiments run on paper, or "
            "classroom (CPU-sized; not for slow)"
        )
    specs = []
    for recipe, preset, settings in EXPERIMENTS[name](filters.seeds or SEEDS):
        preset = filters.preset or preset
        cfg = config.preset(preset, **{**recipe_settings(recipe), **settings})
        if any(
            wanted is not None and value is not None and value not in wanted
            for wanted, value in (
                (filters.ops, cfg.op),
                (filters.seeds, cfg.seed),
                (filters.lrs, cfg.lr),
                (filters.doses, _dose(cfg)),
            )
        ):
            continue
        arm = interventions.parse(cfg.hook).NAME
        if filters.arms is not None and recipe == "intervene" and arm not in filters.arms:
            continue
        if filters.max_steps is not None:
            steps = min(cfg.max_steps, filters.max_steps)
            settings = {**settings, "max_steps": steps}
            if cfg.snapshot_every > steps // 2:  # a capped run keeps 3 snapshots at least, for its PCA
                settings["snapshot_every"] = max(steps // 2, 1)
        if recipe == "intervene":
            settings = {**settings, "batches": filters.batches}
        specs.append(spec(recipe, preset, **settings))
    if not specs:
        raise ConfigError(f"the filters ({filters.describe()}) leave no run of {name}")
    if filters.batches is not None and not any(s.recipe == "intervene" for s in specs):
        raise ConfigError(f"--batches sets the intervention runs' batches: {name} has none")
    baselines = {b.name: b for b in (baseline(s) for s in specs if needs_baseline(s))}
    return list(baselines.values()) + specs


def expected_steps(cfg: Config) -> int:
    """A guess at a run's length: a grokking operation with weight decay in the 2-layer model groks near
    3,000 x (1e-3 / lr) steps (docs/paper.md §10 #16: ~3k at 1e-3, ~34k at 1e-4), then trains its extra steps, unless
    its hook prevents grokking (Hook.prevents_grokking); anything else runs to max_steps."""
    if interventions.parse(cfg.hook).prevents_grokking():
        return cfg.max_steps
    if cfg.op in GROKKING_OPS and cfg.weight_decay > 0 and cfg.n_layers == 2:
        return min(cfg.max_steps, round(3000 * 1e-3 / cfg.lr) + cfg.extra_steps)
    return cfg.max_steps


def estimate_cpu_seconds(spec: RunSpec, costs: dict, done_steps: int = 0) -> float:
    """One core's time for the run, or for what is left of it past `done_steps` (its checkpoint's), from `tinygrok
    bench`'s milliseconds at the paper's size (train_step_ms, eval_ms, commutator_sample_ms), scaled by the model's
    size: steps x (a step + its share of the evaluations and probes). The post-hoc analysis of a walkthrough is not
    counted."""
    cfg = spec.config
    per_step = costs["train_step_ms"] + costs["eval_ms"] / cfg.eval_every
    if cfg.probe_every:
        per_step += cfg.probe_samples * costs["commutator_sample_ms"] / cfg.probe_every
    size = param_count(cfg) / param_count(config.preset("paper"))
    return max(expected_steps(cfg) - done_steps, 0) * per_step * size / 1e3
