"""The run recipe: one function that any caller (a CLI command, a process pool, a Dask worker, a lesson) calls to
get a run done.

A RunSpec is a Config plus what to do with it: "train" (train until grokking, or max steps), "pca" (train, then the
trajectory PCA), "walkthrough" (train while probing curvature, then the trajectory PCA, the curvature geometry
and the figures), or "intervene" (PAPER.md §8.1's second phase: train with an intervention hook, probed, given the
execution basis of its baseline, the "pca" run of the same seed beside it; `baseline(spec)`). `execute(spec,
out)` runs it in out/spec.name, skipping a finished run and resuming an interrupted one, and returns the run's
results. Everything here is picklable and top-level, so `executor.submit(execute, spec, out)` works as it is.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tinygrok.engine import parallel
from tinygrok.run import geometry, plots
from tinygrok.run.runs import CHECKPOINT, HOOK_BASIS, METRICS, Run, RunError
from tinygrok.run.train import StepCallback, diverged, train
from tinygrok.science import config, interventions
from tinygrok.science.config import Config, ConfigError
from tinygrok.science.data import stream
from tinygrok.science.model import attention_layout, param_count
from tinygrok.science.paper import GROKKING_OPS, NON_GROKKING_OPS
from tinygrok.science.pca import random_basis

# The walkthrough's additions to its preset (PAPER.md §6.2, the generalization-dynamics runs): K = 5 commutator
# samples every 100 steps, training continued 1,000 steps past detection; all parameters saved every 200 steps
# for the curvature geometry.
WALKTHROUGH_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, theta_every=200)
WALKTHROUGH_PRESETS = ("paper", "classroom")  # evaluated every 100 steps, as the probe cadence needs
# The second phase of an intervention (§8.1): K = 5 probes every 100 steps, 1,000 steps past detection, and the
# paper's 15,000-step cap for its sweeps (DNF: not grokked by then).
INTERVENTION_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, max_steps=15_000)
# what each recipe does, in order
STAGES = {"train": ("train",), "pca": ("train", "pca"), "walkthrough": ("train", "geometry", "figures"),
          "intervene": ("train",)}
EXISTING = ("continue", "resume", "refuse", "restart")  # what execute does with a run directory that exists


@dataclass(frozen=True)
class RunSpec:
    """What to run: the config, the recipe ("train", "pca" or "walkthrough"), and the preset the config was made from
    (its name lists the settings that differ from it)."""

    config: Config
    recipe: str = "train"
    preset: str = "paper"

    def __post_init__(self):
        if self.recipe not in STAGES:
            raise ConfigError(f"recipe {self.recipe!r} is invalid: must be one of {', '.join(STAGES)}")

    @property
    def name(self) -> str:
        """The run directory's name: [grok_]PRESET_OP_sSEED, then every other setting that differs from the
        preset (with the recipe's settings), e.g. paper_add_s42_lr0.0003. Different specs never share a name."""
        cfg, base = self.config, config.preset(self.preset, **recipe_settings(self.recipe))
        prefix = {"walkthrough": ["grok"], "intervene": ["intervene"]}.get(self.recipe, [])
        parts = prefix + [self.preset, cfg.op, f"s{cfg.seed}"]
        parts += [name + _path_safe(getattr(cfg, name)) for name in _differences(cfg, base) if name not in ("op", "seed")]
        return "_".join(parts)


def recipe_settings(recipe: str) -> dict:
    return {"walkthrough": WALKTHROUGH_SETTINGS, "intervene": INTERVENTION_SETTINGS}.get(recipe, {})


def spec(recipe: str = "train", preset: str = "paper", **settings) -> RunSpec:
    """The spec of a run: `preset`, the recipe's own settings, then `settings` (None values are ignored)."""
    if recipe == "walkthrough" and preset not in WALKTHROUGH_PRESETS:
        raise ConfigError(f"--preset={preset!r} is invalid for the walkthrough (tinygrok grok): must be one of "
                          f"{', '.join(WALKTHROUGH_PRESETS)}")
    given = {key: value for key, value in settings.items() if value is not None}
    return RunSpec(config.preset(preset, **{**recipe_settings(recipe), **given}), recipe, preset)


def saved_spec(path: Path | str, recipe: str = "train", **given) -> RunSpec:
    """The spec of the run saved at `path`, to continue it: its own config.json, and the preset it differs from
    least. A RunError names the `given` settings (None values are ignored) that differ from it."""
    cfg = Run(path).config()
    differing = sorted(k for k, v in given.items() if v is not None and getattr(cfg, k) != v)
    if differing:
        raise RunError(f"{path} continues with its saved config; these options differ from it: "
                       + ", ".join("--" + k.replace("_", "-") for k in differing))
    return RunSpec(cfg, recipe, min(config.PRESETS, key=lambda name: len(_differences(cfg, config.preset(name)))))


def _differences(a: Config, b: Config) -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if getattr(a, f.name) != getattr(b, f.name)]


def execute(spec: RunSpec, out: Path | str = "runs", *, path: Optional[Path | str] = None,
            existing: str = "continue", cores: int = 1, on_step: Optional[StepCallback] = None,
            on_stage: Optional[Callable[[str], None]] = None) -> dict:
    """Do every stage of `spec`'s recipe not yet done in out/spec.name (or in `path`), and return the run's results.

    existing, for a run directory that is there already: "continue" skips what is finished and resumes training
    from the checkpoint (or starts again if it died before its first); "resume" does the same but requires the run
    to be there; "refuse" raises RunError; "restart" clears it and starts again. Nothing on disk changes before the
    spec and the directory have been checked. It uses `cores` cores (one by default: beside other runs in a pool);
    the numbers do not depend on it. Progress: on_step(step, metrics row or None, end step or None) after every
    training step, on_stage(name) before each stage. One process at a time writes a run (Run.writing); a run
    that diverged raises train.Diverged.
    """
    path = Path(path) if path is not None else run_path(spec, out)
    if existing == "resume" and not path.is_dir():
        Run(path).config()  # a RunError: there is no run to resume
    with _writer_of(path), parallel.cores(cores):
        run = _prepare(spec, path, existing)
        if failure := diverged(run):  # it stops at the same step however often it is run
            raise failure
        for stage in STAGES[spec.recipe]:
            if stage in run.stages():  # read again after each stage: training drops a stale analysis
                continue
            if on_stage:
                on_stage(stage)
            if stage == "train":
                if interventions.parse(spec.config.hook).needs_basis and not run.has(HOOK_BASIS):
                    run.write_hook_basis(intervention_basis(spec, run.path.parent))
                train(spec.config, run, resume=run.has(CHECKPOINT), on_step=on_step)
            elif stage == "pca":
                geometry.analyse_trajectory(run)
            elif stage == "geometry":
                geometry.analyse(run)
            else:
                plots.save_all(run)
                run.record("figures", {})
    return run.summary()


def intervention(arm: str, dose: Optional[float] = None, basis: str = "pca", preset: str = "paper",
                 **settings) -> RunSpec:
    """The spec of an intervention run: arm (a hook of interventions.py) at `dose` (its strength: project's s,
    kick's alpha, noise's eps, ...; None: the paper's primary), given the "pca" or a "random" execution basis."""
    given = f"--arm {arm}" + (f" --dose {dose}" if dose is not None else "") + f" --basis {basis}"
    if arm.replace("-", "_") not in interventions.ARMS:
        raise ConfigError(f"{given}: the arms are {', '.join(interventions.ARMS)} (by name alone: --dose and "
                          "--basis set their parameters)")
    try:
        hook = interventions.parse(arm.replace("-", "_")).with_dose(dose, basis)
    except ValueError as err:
        raise ConfigError(f"{given}: {err}") from None
    return spec("intervene", preset, hook=hook.spec, **settings)


def baseline(spec: RunSpec) -> RunSpec:
    """The baseline of an intervention run (§8.1 phase 1): the same model, data and seed, no hook, no probes,
    trained to detection, then its trajectory PCA (the "pca" recipe, whose basis.npy the intervention uses). Its
    max_steps is the intervention's cap."""
    base = config.preset(spec.preset)
    cfg = spec.config.replace(hook="none", probe_every=base.probe_every, probe_samples=base.probe_samples,
                              extra_steps=base.extra_steps)
    return RunSpec(cfg, "pca", spec.preset)


def intervention_basis(spec: RunSpec, beside: Path) -> np.ndarray:
    """The execution basis B (P, K) the intervention run `spec` is given: its baseline's (in `beside`, which must
    be finished), or for basis "random" a random orthonormal one of the same size (its own "random_basis" stream;
    the reference: a Gaussian matrix's QR, seeded seed + 77777)."""
    cfg, hook = spec.config, interventions.parse(spec.config.hook)
    if hook.basis == "random":
        k = len(attention_layout(cfg)) * geometry.BASIS_COMPONENTS
        return random_basis(param_count(cfg), k, stream(cfg.seed, "random_basis")).astype(cfg.dtype)
    base = Run(Path(beside) / baseline(spec).name)
    if "pca" not in base.stages():
        raise RunError(f"the intervention {spec.name} needs its baseline run {base.path} finished first "
                       "(tinygrok intervene and tinygrok sweep run it)")
    return base.basis().astype(cfg.dtype)  # the dtype training uses it in


def needs_baseline(spec: RunSpec) -> bool:
    """Whether the run is given its baseline's execution basis (an intervention with basis "pca")."""
    hook = interventions.parse(spec.config.hook)
    return spec.recipe == "intervene" and hook.needs_basis and hook.basis == "pca"


def waves(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The specs in the order they can run: the baselines the others need first, then the others."""
    needed = {baseline(s).name for s in specs if needs_baseline(s)}
    first = [s for s in specs if s.name in needed]
    return [wave for wave in (first, [s for s in specs if s.name not in needed]) if wave]


def run_path(spec: RunSpec, out: Path | str = "runs") -> Path:
    """Where execute(spec, out) runs it."""
    return Path(out) / spec.name


@contextlib.contextmanager
def _writer_of(path: Path):
    """Hold the lock of the run directory `path`, creating it if need be (and removing it again, empty, if the run
    was refused)."""
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with Run(path).writing():
            yield
    except BaseException:
        if created and not any(path.iterdir()):
            path.rmdir()
        raise


def _prepare(spec: RunSpec, path: Path, existing: str) -> Run:
    """The run directory `path` (which exists, locked), checked against the spec and `existing`, set up if need be."""
    if existing not in EXISTING:
        raise ValueError(f"existing={existing!r}: must be one of {', '.join(EXISTING)}")
    for leftover in path.glob("*.tmp"):  # a write that a kill interrupted before its rename: never valid
        leftover.unlink()
    if existing == "restart" or not any(path.iterdir()):
        return Run.create(path, spec.config, force=existing == "restart")
    if existing == "refuse":
        raise RunError(f"run directory {path} already exists: pass --resume to continue it or --force to start "
                       "it again")
    run = Run(path)
    differing = _differences(run.config(), spec.config)
    if differing:
        raise RunError(f"{path} holds a run with other settings ({', '.join(differing)}): give it another "
                       "directory, or start it again (--force)")
    if run.has(CHECKPOINT):
        run.load_checkpoint()  # refused now, before anything changes, if it cannot be read
    elif run.stages() or run.has(METRICS) and (path / METRICS).read_bytes().count(b"\n") > 1:
        raise RunError(f"cannot resume: {path / CHECKPOINT} is missing, and starting again would lose what the run "
                       "recorded: start it again with --force, or restore the checkpoint")
    else:  # died before its first checkpoint: nothing to keep
        return Run.create(path, spec.config, force=True)
    return run


def _path_safe(value) -> str:
    """A setting's value in a directory name: exact (repr keeps every digit of a float), without : , = or /."""
    return repr(value).strip("'").replace(":", "-").replace(",", "-").replace("=", "").replace("/", "-")


# ---------------------------------------------------------------------- the paper's experiments as named grids
SEEDS = (42, 137, 2024)
LEARNING_RATES = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # six half-decade rates, 300x (PAPER.md §7.4, inferred)
PROBES = dict(probe_every=100, probe_samples=5, extra_steps=1000)  # §6.2: K = 5 every 100, 1,000 past detection
# the reference's random-subspace control (§6.2, §6.4): K = 7 samples every 100 steps, 1,500 steps past detection;
# all parameters saved every 100 steps, for exec/random at each of them
CONTROLS = dict(probe_samples=7, theta_every=100, extra_steps=1500)

Row = tuple  # (recipe, preset, settings): one run of a grid, before filters


def _table1() -> list[Row]:
    """Table 1, onset and lead: 4 grokking operations x 3 seeds, probed, and 3 controls (§10 #4, #10-#13).

    The controls, as the reference's generalization-dynamics runs: the two non-grokking operations for 7,500 steps
    and add without weight decay for 5,000."""
    return ([("walkthrough", "paper", dict(op=op, seed=seed)) for op in GROKKING_OPS for seed in SEEDS]
            + [("walkthrough", "paper", dict(op=op, seed=42, max_steps=7500)) for op in NON_GROKKING_OPS]
            + [("walkthrough", "paper", dict(op="add", seed=42, weight_decay=0.0, max_steps=5000))])


def _pca() -> list[Row]:
    """Trajectory PCA: 6 operations x weight decay {1, 0} x 3 seeds (§5.4).

    No-decay runs for 50,000 steps with snapshots every 500; the non-grokking operations run all 200,000 steps."""
    no_decay = dict(weight_decay=0.0, max_steps=50_000, snapshot_every=500)
    return [("pca", "paper", dict(op=op, seed=seed, **(no_decay if wd == 0 else {})))
            for op in GROKKING_OPS + NON_GROKKING_OPS for wd in (1.0, 0.0) for seed in SEEDS]


def _lr_sweep() -> list[Row]:
    """The lead-time power law: 6 learning rates x 4 grokking operations x 3 seeds, probed (§7.4, §10 #15-#20)."""
    return [("train", "paper", dict(op=op, seed=seed, lr=lr, **PROBES))
            for lr in LEARNING_RATES for op in GROKKING_OPS for seed in SEEDS]


def _slow() -> list[Row]:
    """The slow regime, GPU-scale: 3 layers, lr 5e-5, add, seeds 42 and 137 (§9.2).

    K = 5 probes every 5,000 steps, 20,000 steps past detection, at most 650,000 steps."""
    return [("train", "slow", dict(op="add", seed=seed, probe_every=5000, probe_samples=5, extra_steps=20_000,
                                   max_steps=650_000)) for seed in (42, 137)]


DOSES = (0.0, 0.25, 0.5, 0.75, 1.0)  # project's s: 0 is the probed baseline (§8.2, multi-op dose-response)
ARM_DOSES = {"kick": (1.0, 5.0, 10.0, 20.0), "noise": (0.01, 0.05, 0.1, 0.5), "penalty": (0.1, 0.3, 0.5, 0.9),
             "project": (0.25, 0.5, 0.75, 1.0)}  # figI5's sweeps on add; the paper's primary doses: 10, 0.1, 0.5, 0.5
KICK_ALPHAS = (50.0, 100.0, 200.0, 500.0)  # figI8


def _arm(arm: str, dose: float, basis: str = "pca") -> str:
    return interventions.parse(arm).with_dose(dose, basis).spec


def _dose_response() -> list[Row]:
    """Dose-response: project at s = 0 to 1 x 4 grokking operations x 3 seeds (§8.3 figI10).

    s = 0, 0.25, 0.5, 0.75, 1, probed, each seed's baseline first (its basis)."""
    return [("intervene", "paper", dict(op=op, seed=seed, hook=_arm("project", s)))
            for op in GROKKING_OPS for seed in SEEDS for s in DOSES]


def _interventions_add() -> list[Row]:
    """The interventions on add: kick, noise, penalty, project, random-basis project (§8.3 figI4-I6).

    No hook, and kick, noise, penalty, project at four doses each, and project with a random basis at the same
    four, x 3 seeds."""
    arms = ["none"] + [_arm(arm, dose) for arm, doses in ARM_DOSES.items() for dose in doses]
    arms += [_arm("project", s, "random") for s in ARM_DOSES["project"]]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in SEEDS for hook in arms]


def _kicks() -> list[Row]:
    """Sustained kicks on add, along curvature or at random, alpha 50-500 (§8.3 figI8).

    Every 50 steps from step 500, after the optimizer step; and no hook; x 3 seeds."""
    arms = ["none"] + [_arm(arm, a) for arm in ("sustained_kick", "random_kick") for a in KICK_ALPHAS]
    return [("intervene", "paper", dict(op="add", seed=seed, hook=hook)) for seed in SEEDS for hook in arms]


def _controls() -> list[Row]:
    """exec/random with the reference's own control protocol: 4 grokking operations x 3 seeds (§6.4).

    The walkthrough with K = 7 defect samples every 100 steps (its onset too), parameters saved every 100 steps
    (the weight-SVD and trajectory-PCA bases' projections at each, 5 random bases of each size), 1,500 steps
    past detection."""
    return [("walkthrough", "paper", dict(op=op, seed=seed, **CONTROLS)) for op in GROKKING_OPS for seed in SEEDS]


def _float64_check() -> list[Row]:
    """The walkthrough of add, seed 42, in float32 and in float64: which features of the defect are float32's.

    §6.6: exact zeros, quantised values and post-grokking spikes may be rounding; float64 tells."""
    return [("walkthrough", "paper", dict(op="add", seed=42, dtype=dtype)) for dtype in ("float32", "float64")]


EXPERIMENTS = {"table1": _table1, "pca": _pca, "lr-sweep": _lr_sweep, "slow": _slow, "dose-response": _dose_response,
               "interventions-add": _interventions_add, "kicks": _kicks, "controls": _controls,
               "float64-check": _float64_check}


@dataclass(frozen=True)
class Filters:
    """What makes a grid smaller: only these operations, seeds and learning rates (None: all), max_steps as a
    cap on every run, and preset "classroom" in place of "paper" (CPU-sized)."""

    ops: Optional[tuple] = None
    seeds: Optional[tuple] = None
    lrs: Optional[tuple] = None
    max_steps: Optional[int] = None
    preset: Optional[str] = None

    def describe(self) -> str:
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        text = {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in given.items()}
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in text.items()) or "none"


def grid(name: str, filters: Filters = Filters()) -> list[RunSpec]:
    """The run specs of the named experiment, filtered. A ConfigError for an unknown name or empty result."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}: must be one of {', '.join(EXPERIMENTS)}")
    if filters.preset not in (None, "paper", "classroom") or (filters.preset and name == "slow"):
        raise ConfigError(f"--preset={filters.preset!r} is invalid here: the paper's experiments run on paper, or "
                          "classroom (CPU-sized; not for slow)")
    specs = []
    for recipe, preset, settings in EXPERIMENTS[name]():
        preset = filters.preset or preset
        cfg = config.preset(preset, **{**recipe_settings(recipe), **settings})
        if any(wanted is not None and value not in wanted for wanted, value in
               ((filters.ops, cfg.op), (filters.seeds, cfg.seed), (filters.lrs, cfg.lr))):
            continue
        if filters.max_steps is not None:
            settings = {**settings, "max_steps": min(cfg.max_steps, filters.max_steps)}
        specs.append(spec(recipe, preset, **settings))
    if not specs:
        raise ConfigError(f"the filters ({filters.describe()}) leave no run of {name}")
    baselines = {b.name: b for b in (baseline(s) for s in specs if needs_baseline(s))}
    return list(baselines.values()) + specs


def expected_steps(cfg: Config) -> int:
    """A guess at a run's length: a grokking operation with weight decay in the 2-layer model groks near
    3,000 x (1e-3 / lr) steps (PAPER.md §10 #16: ~3k at 1e-3, ~34k at 1e-4), then trains its extra steps, unless
    the projection removes all its orthogonal gradient; anything else runs to max_steps."""
    hook = interventions.parse(cfg.hook)
    if isinstance(hook, interventions.Project) and type(hook) is not interventions.Penalty and hook.s == 1:
        return cfg.max_steps  # no gradient outside the execution subspace: no grokking (§8.3)
    if cfg.op in GROKKING_OPS and cfg.weight_decay > 0 and cfg.n_layers == 2:
        return min(cfg.max_steps, round(3000 * 1e-3 / cfg.lr) + cfg.extra_steps)
    return cfg.max_steps


def estimate_cpu_seconds(spec: RunSpec, costs: dict) -> float:
    """One core's time for the run, from `tinygrok bench`'s milliseconds at the paper's size (train_step_ms,
    eval_ms, commutator_sample_ms), scaled by the model's size: steps x (a step + its share of the evaluations
    and probes). The post-hoc analysis of a walkthrough is not counted (about 20 s at the paper's size)."""
    cfg = spec.config
    per_step = costs["train_step_ms"] + costs["eval_ms"] / cfg.eval_every
    if cfg.probe_every:
        per_step += cfg.probe_samples * costs["commutator_sample_ms"] / cfg.probe_every
    size = param_count(cfg) / param_count(config.preset("paper"))
    return expected_steps(cfg) * per_step * size / 1e3
