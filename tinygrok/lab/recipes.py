"""The run recipe: one function that any caller (a CLI command, a process pool, a Dask worker, a lesson) calls to
get a run done.

A RunSpec is a Config plus a recipe, the named stages to do with it in order (RECIPES): "train" (train until
grokking, or max steps), "pca" (train, then the trajectory PCA), "probed" (train, then the trajectory PCA and the
curvature geometry at the saved parameters), "walkthrough" (train while probing curvature, then the trajectory PCA,
the curvature geometry and the figures), or "intervene" (docs/paper.md §8.1's second phase: train with an
intervention hook, probed, given the execution basis of its baseline, the "pca" run of the same seed beside it;
`baseline(spec)`). Each stage is a function in STAGES: a new kind of experiment registers its stages there and
names them in RECIPES. `execute(spec, out)` runs a spec in out/spec.name, skipping the stages a run has finished
and resuming an interrupted one, and returns the run's results. Everything here is picklable and top-level, so
`executor.submit(execute, spec, out)` works as it is. The paper's grids of specs are grids.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygrok.engine import parallel
from tinygrok.run import geometry, plots
from tinygrok.run.runs import CHECKPOINT, HOOK_BASIS, METRICS, Run, RunError
from tinygrok.run.train import StepCallback, diverged, train
from tinygrok.science import config, interventions
from tinygrok.science.config import Config, ConfigError
from tinygrok.science.data import stream
from tinygrok.science.model import attention_indices, attention_layout, param_count
from tinygrok.science.pca import random_basis

# The walkthrough's additions to its preset (docs/paper.md §6.2, the generalization-dynamics runs): K = 5 commutator
# samples every 100 steps, training continued 1,000 steps past detection; all parameters saved every 200 steps
# for the curvature geometry.
WALKTHROUGH_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, theta_every=200)
WALKTHROUGH_PRESETS = ("paper", "classroom")  # evaluated every 100 steps, as the probe cadence needs
# The second phase of an intervention (§8.1): K = 5 probes every 100 steps, 1,000 steps past detection, the
# paper's 15,000-step cap for its sweeps (DNF: not grokked by then), and the reference code's batches: the seed's
# own stream, shifted by the batches its probes take (config.BATCH_STREAMS says what B is to the run on each).
INTERVENTION_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, max_steps=15_000, batches="shifted")
EXISTING = ("continue", "resume", "refuse", "restart")  # what execute does with a run directory that exists


@dataclass(frozen=True)
class RunSpec:
    """What to run: the config, the recipe (a key of RECIPES), and the preset the config was made from (its name
    lists the settings that differ from it)."""

    config: Config
    recipe: str = "train"
    preset: str = "paper"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe {self.recipe!r} is invalid: must be one of {', '.join(RECIPES)}")
        cfg = self.config
        if {"pca", "geometry"} & set(RECIPES[self.recipe]) and not 0 < 2 * cfg.snapshot_every <= cfg.max_steps:
            raise ConfigError(
                f"--max-steps={cfg.max_steps} with --snapshot-every={cfg.snapshot_every} leaves fewer than the 3 "
                f"attention snapshots the trajectory PCA of this {self.recipe} run needs ("
                + ("snapshots are off)" if not cfg.snapshot_every else "--max-steps at least twice --snapshot-every)")
            )

    @property
    def name(self) -> str:
        """The run directory's name: [grok_ | intervene_BATCHES_]PRESET_OP_sSEED, then every other setting that
        differs from the preset (with the recipe's settings), e.g. paper_add_s42_lr0.0003 or
        intervene_shifted_paper_add_s42_hookproject-s0.5. Specs with different configs or presets never share a
        name; the train, pca and probed recipes of one config are one run, their stages built on one training."""
        cfg, base = self.config, config.preset(self.preset, **recipe_settings(self.recipe))
        prefix = {"walkthrough": ["grok"], "intervene": ["intervene", cfg.batches]}.get(self.recipe, [])
        parts = prefix + [self.preset, cfg.op, f"s{cfg.seed}"]
        named = ("op", "seed", "batches") if self.recipe == "intervene" else ("op", "seed")
        parts += [name + _path_safe(getattr(cfg, name)) for name in _differences(cfg, base) if name not in named]
        return "_".join(parts)


def recipe_settings(recipe: str) -> dict:
    return {"walkthrough": WALKTHROUGH_SETTINGS, "intervene": INTERVENTION_SETTINGS}.get(recipe, {})


def spec(recipe: str = "train", preset: str = "paper", **settings) -> RunSpec:
    """The spec of a run: `preset`, the recipe's own settings, then `settings` (None values are ignored)."""
    if recipe == "walkthrough" and preset not in WALKTHROUGH_PRESETS:
        raise ConfigError(
            f"--preset={preset!r} is invalid for the walkthrough (tinygrok grok): must be one of "
            f"{', '.join(WALKTHROUGH_PRESETS)}"
        )
    given = {key: value for key, value in settings.items() if value is not None}
    return RunSpec(config.preset(preset, **{**recipe_settings(recipe), **given}), recipe, preset)


def saved_spec(path: Path | str, recipe: str = "train", **given) -> RunSpec:
    """The spec of the run saved at `path`, to continue it: its own config.json, and the preset it differs from
    least. A RunError names the `given` settings (None values are ignored) that differ from it."""
    cfg = Run(path).config()
    differing = sorted(k for k, v in given.items() if v is not None and getattr(cfg, k) != v)
    if differing:
        raise RunError(
            f"{path} continues with its saved config; these options differ from it: "
            + ", ".join("--" + k.replace("_", "-") for k in differing)
            + " (to train with them, start a new run: another --out, or --force to start this one over)"
        )
    return RunSpec(cfg, recipe, min(config.PRESETS, key=lambda name: len(_differences(cfg, config.preset(name)))))


def _differences(a: Config, b: Config) -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if getattr(a, f.name) != getattr(b, f.name)]


def execute(
    spec: RunSpec,
    out: Path | str = "runs",
    *,
    path: Path | str | None = None,
    existing: str = "continue",
    cores: int = 1,
    on_step: StepCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict:
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
    check_destination(path, existing)
    if _needs_pca_basis(spec) and not (path / HOOK_BASIS).exists():
        _finished_baseline(spec, path.parent)  # a RunError if it is not there
    with _writer_of(path), parallel.cores(cores):
        run = _prepare(spec, path, existing)
        if failure := diverged(run):  # it stops at the same step however often it is run
            raise failure
        for stage in RECIPES[spec.recipe]:
            if stage in run.stages():  # read again after each stage: training drops a stale analysis
                continue
            if on_stage:
                on_stage(stage)
            STAGES[stage](spec, run, on_step)
    return run.summary()


def _train(spec: RunSpec, run: Run, on_step: StepCallback | None) -> None:
    """Training to detection (and its extra steps), or max_steps; an intervention is given its basis first."""
    if interventions.parse(spec.config.hook).needs_basis and not run.has(HOOK_BASIS):
        run.write_hook_basis(intervention_basis(spec, run.path.parent))
    train(spec.config, run, resume=run.has(CHECKPOINT), on_step=on_step)


def _pca(spec: RunSpec, run: Run, on_step: StepCallback | None) -> None:
    """The trajectory PCA and the execution basis (basis.npy)."""
    geometry.analyse_trajectory(run)


def _geometry(spec: RunSpec, run: Run, on_step: StepCallback | None) -> None:
    """The trajectory PCA, then the curvature geometry at the saved parameters."""
    geometry.analyse(run)


def _figures(spec: RunSpec, run: Run, on_step: StepCallback | None) -> None:
    plots.save_all(run)
    run.record("figures", {})


StageFunction = Callable[[RunSpec, Run, StepCallback | None], None]
STAGES: dict[str, StageFunction] = {"train": _train, "pca": _pca, "geometry": _geometry, "figures": _figures}
# the stages of each recipe, in order
RECIPES = {
    "train": ("train",),
    "pca": ("train", "pca"),
    "probed": ("train", "geometry"),
    "walkthrough": ("train", "geometry", "figures"),
    "intervene": ("train",),
}


def intervention(arm: str, dose: float | None = None, basis: str = "pca", preset: str = "paper", **settings) -> RunSpec:
    """The spec of an intervention run: arm (a hook of interventions.py) at `dose` (its strength: project's s,
    kick's alpha, noise's eps, ...; None: the paper's primary), given the "pca" or a "random" execution basis."""
    given = (
        f"--arm {arm}"
        + (f" --dose {dose}" if dose is not None else "")
        + (f" --basis {basis}" if basis != "pca" else "")
    )  # what was given (pca: the default)
    if arm.replace("-", "_") not in interventions.ARMS:
        arms = ", ".join(name.replace("_", "-") for name in interventions.ARMS)
        raise ConfigError(f"{given}: the arms are {arms} (by name alone: --dose and --basis set their parameters)")
    try:
        hook = interventions.parse(arm.replace("-", "_")).with_dose(dose, basis)
    except ValueError as err:
        raise ConfigError(f"{given}: {err}") from None
    return spec("intervene", preset, hook=hook.spec, **settings)


def baseline(spec: RunSpec) -> RunSpec:
    """The baseline of an intervention run (§8.1 phase 1): the same model, data and seed, no hook, no probes, no
    saved thetas, on the seed's own batches, trained to detection, then its trajectory PCA (the "pca" recipe,
    whose basis.npy the intervention uses). Its max_steps is the intervention's cap."""
    base = config.preset(spec.preset)
    cfg = spec.config.replace(
        hook="none",
        probe_every=base.probe_every,
        probe_samples=base.probe_samples,
        extra_steps=base.extra_steps,
        theta_every=base.theta_every,
        batches=base.batches,
    )
    return RunSpec(cfg, "pca", spec.preset)


def intervention_basis(spec: RunSpec, beside: Path) -> np.ndarray:
    """The execution basis B (P, K) the intervention run `spec` is given: its baseline's (in `beside`, which must
    be finished), or for basis "random" a random orthonormal one of the same size (its own "random_basis" stream;
    the reference: a Gaussian matrix's QR, seeded seed + 77777), inside the attention matrices for an arm that
    acts there only."""
    cfg, hook = spec.config, interventions.parse(spec.config.hook)
    if hook.basis == "random":
        k, rng = len(attention_layout(cfg)) * geometry.BASIS_COMPONENTS, stream(cfg.seed, "random_basis")
        if not hook.INSIDE_ATTENTION:
            return random_basis(param_count(cfg), k, rng).astype(cfg.dtype)
        inside = attention_indices(cfg)
        basis = np.zeros((param_count(cfg), k), dtype=cfg.dtype)  # (P, K)
        basis[inside] = random_basis(len(inside), k, rng)
        return basis
    return _finished_baseline(spec, beside).basis().astype(cfg.dtype)  # the dtype training uses it in


def _finished_baseline(spec: RunSpec, beside: Path) -> Run:
    """The baseline run of `spec` in `beside`, its execution basis built; a RunError if it is not."""
    base = Run(Path(beside) / baseline(spec).name)
    if "pca" not in base.stages():
        raise RunError(
            f"the intervention {spec.name} needs its baseline run {base.path} finished first "
            "(tinygrok intervene and tinygrok sweep run it)"
        )
    return base


def _needs_pca_basis(spec: RunSpec) -> bool:
    hook = interventions.parse(spec.config.hook)
    return hook.needs_basis and hook.basis == "pca"


def needs_baseline(spec: RunSpec) -> bool:
    """Whether the run is given its baseline's execution basis (an intervention with basis "pca")."""
    return spec.recipe == "intervene" and _needs_pca_basis(spec)


def waves(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The specs in the order they can run: the baselines the others need first, then the others."""
    needed = {baseline(s).name for s in specs if needs_baseline(s)}
    first = [s for s in specs if s.name in needed]
    return [wave for wave in (first, [s for s in specs if s.name not in needed]) if wave]


def run_path(spec: RunSpec, out: Path | str = "runs") -> Path:
    """Where execute(spec, out) runs it."""
    return Path(out) / spec.name


def check_destination(path: Path, existing: str) -> None:
    """A RunError if execute could not run in `path` as `existing` asks (EXISTING): asked again under the run's
    lock, and before a run that must wait for another (an intervention for its baseline) is started."""
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory")
    if existing == "resume" and not path.is_dir():
        Run(path).config()  # a RunError: there is no run to resume
    if existing == "refuse" and path.is_dir() and any(p.suffix != ".tmp" for p in path.iterdir()):
        raise RunError(
            f"run directory {path} already exists: pass --resume to continue it or --force to start it again"
        )


@contextlib.contextmanager
def _writer_of(path: Path):
    """Hold the lock of the run directory `path`, creating it if need be (and removing it again, empty, if the run
    was refused)."""
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
    check_destination(path, existing)  # again, now that the run is locked
    run = Run(path)
    differing = _differences(run.config(), spec.config)
    if differing:
        raise RunError(
            f"{path} holds a run with other settings ({', '.join(differing)}): give it another "
            "directory, or start it again (--force)"
        )
    if run.has(CHECKPOINT):
        run.load_checkpoint()  # refused now, before anything changes, if it cannot be read
    elif run.stages() or run.has(METRICS) and (path / METRICS).read_bytes().count(b"\n") > 1:
        raise RunError(
            f"cannot resume: {path / CHECKPOINT} is missing, and starting again would lose what the run "
            "recorded: start it again with --force, or restore the checkpoint"
        )
    else:  # died before its first checkpoint: nothing to keep
        return Run.create(path, spec.config, force=True)
    return run


def _path_safe(value) -> str:
    """A setting's value in a directory name: exact (repr keeps every digit of a float), without : , = or /."""
    return repr(value).strip("'").replace(":", "-").replace(",", "-").replace("=", "").replace("/", "-")
