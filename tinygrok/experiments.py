"""The run recipe: one function that any caller (a CLI command, a process pool, a Dask worker, a lesson) calls to
get a run done.

A RunSpec is a Config plus what to do with it: "train" (train until grokking, or max steps), or "walkthrough"
(train while probing curvature, then the trajectory PCA, the curvature geometry and the figures). `execute(spec,
out)` runs it in out/spec.name, skipping a finished run and resuming an interrupted one, and returns the run's
results. Everything here is picklable and top-level, so `executor.submit(execute, spec, out)` works as it is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from typing import Callable

from tinygrok import config, geometry, parallel, plots
from tinygrok.config import Config, ConfigError
from tinygrok.runs import CHECKPOINT, Run, RunError
from tinygrok.train import StepCallback, train

# The walkthrough's additions to its preset (PAPER.md §6.2, the generalization-dynamics runs): K = 5 commutator
# samples every 100 steps, training continued 1,000 steps past detection; all parameters saved every 200 steps
# for the curvature geometry.
WALKTHROUGH_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, theta_every=200)
WALKTHROUGH_PRESETS = ("paper", "classroom")  # evaluated every 100 steps, as the probe cadence needs
STAGES = {"train": ("train",), "walkthrough": ("train", "geometry", "figures")}  # what each recipe does, in order
EXISTING = ("continue", "resume", "refuse", "restart")  # what execute does with a run directory that exists


@dataclass(frozen=True)
class RunSpec:
    """What to run: the config, the recipe ("train" or "walkthrough"), and the preset the config was made from
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
        parts = (["grok"] if self.recipe == "walkthrough" else []) + [self.preset, cfg.op, f"s{cfg.seed}"]
        parts += [name + _path_safe(getattr(cfg, name)) for name in _differences(cfg, base) if name not in ("op", "seed")]
        return "_".join(parts)


def recipe_settings(recipe: str) -> dict:
    return WALKTHROUGH_SETTINGS if recipe == "walkthrough" else {}


def spec(recipe: str = "train", preset: str = "paper", **settings) -> RunSpec:
    """The spec of a run: `preset`, the recipe's own settings, then `settings` (None values are ignored)."""
    if recipe == "walkthrough" and preset not in WALKTHROUGH_PRESETS:
        raise ConfigError(f"--preset={preset!r} is invalid for the walkthrough (tinygrok grok): must be one of "
                          f"{', '.join(WALKTHROUGH_PRESETS)}")
    return RunSpec(config.preset(preset, **{**recipe_settings(recipe), **settings}), recipe, preset)


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
    from the checkpoint (or starts again if it died before its first); "resume" requires a checkpoint to resume
    from; "refuse" raises RunError; "restart" clears it and starts again. Nothing on disk changes before the
    spec and the directory have been checked. It uses `cores` cores (one by default: beside other runs in a pool);
    the numbers do not depend on it. Progress: on_step(step, metrics row or None) after every training step,
    on_stage(name) before each stage.
    """
    run = _prepare(spec, Path(path) if path is not None else run_path(spec, out), existing)
    with parallel.cores(cores):
        for stage in STAGES[spec.recipe]:
            if stage in run.stages():  # read again after each stage: training drops a stale analysis
                continue
            if on_stage:
                on_stage(stage)
            if stage == "train":
                train(spec.config, run, resume=run.has(CHECKPOINT), on_step=on_step)
            elif stage == "geometry":
                geometry.analyse(run)
            else:
                plots.save_all(run)
                run.record("figures", {})
    return run.summary()


def run_path(spec: RunSpec, out: Path | str = "runs") -> Path:
    """Where execute(spec, out) runs it."""
    return Path(out) / spec.name


def _prepare(spec: RunSpec, path: Path, existing: str) -> Run:
    """The run directory `path`, checked against the spec and `existing`, created if need be."""
    if existing not in EXISTING:
        raise ValueError(f"existing={existing!r}: must be one of {', '.join(EXISTING)}")
    if existing == "resume":
        run = Run.open(path)  # a config and a readable checkpoint, or a RunError
    elif existing == "restart" or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return Run.create(path, spec.config, force=existing == "restart")
    elif existing == "refuse":
        raise RunError(f"run directory {path} already exists: pass --resume to continue it or --force to start "
                       "it again")
    else:
        run = Run(path)
    differing = _differences(run.config(), spec.config)
    if differing:
        raise RunError(f"{path} holds a run with other settings ({', '.join(differing)}): give it another "
                       "directory, or start it again (--force)")
    if not run.has(CHECKPOINT) and not run.stages():  # died before its first checkpoint: nothing to keep
        return Run.create(path, spec.config, force=True)
    return run


def _path_safe(value) -> str:
    """A setting's value in a directory name: exact (repr keeps every digit of a float), without : , = or /."""
    return repr(value).strip("'").replace(":", "-").replace(",", "-").replace("=", "").replace("/", "-")
