"""`tinygrok reproduce`: the paper's experiments at one scale, from one command, into one folder of run records.

A scale is a plan: stages run one after another, each a grid of grids.py (filtered) run by sweep.run_grid in its own
sweep directory DIR/LABEL, so the same command again resumes what was interrupted. Every finished run leaves its
record (records.py) in the records folder, and a run with a record is not run again: the folder, not DIR, is the
reproduction's state, so it can be carried (committed) from machine to machine and day to day while DIR is lost.
The folder's reproduce.json keeps the scale and every part the command ran in: when it began, its wall time, and
that time per stage, so that a reproduction resumed over several days, or merged from several machines, still
knows its totals. A run longer than a working period leaves, by `carry`, its exact resume state in the folder's
resume/NAME (at most CARRY_LIMIT), which the next part puts back into DIR to resume it, and which its record
replaces. The results page (results_page.py) is a function of
the folder alone.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinygrok.lab import grids, recipes, records, sweep
from tinygrok.lab.grids import Filters
from tinygrok.lab.recipes import RunSpec
from tinygrok.run.runs import (
    CHECKPOINT,
    CONFIG,
    HOOK_BASIS,
    METRICS,
    SNAPSHOTS,
    THETAS,
    Run,
    RunError,
    read_json,
    write_bytes,
    write_json,
)
from tinygrok.science.config import ConfigError
from tinygrok.science.paper import GROKKING_OPS, NON_GROKKING_OPS

STATE = "reproduce.json"
RELEASED_LRS = (1e-4, 1e-3, 1e-2)  # the learning rates of the reference's released LR sweep (§7.4)
RESUME = "resume"  # FOLDER/resume/NAME: the exact resume state of a run a working period did not finish
CARRIED = (CHECKPOINT, CONFIG, METRICS, SNAPSHOTS, THETAS)  # the checkpoint first: rows past it are cut on resume;
# no summary: the next machine redoes every stage after training (a resume at the last step trains nothing)
CARRY_LIMIT = 10 * 2**20  # bytes (10 MiB) a run's resume state may take in the repository


@dataclass(frozen=True)
class Stage:
    """One grid of a plan: the experiment, its filters, the sweep directory's name in the reproduction's, and
    what the filters leave out (said in the plan and on the results page; "" when nothing is)."""

    label: str
    experiment: str
    filters: Filters = Filters()
    cut: str = ""

    def specs(self) -> list[RunSpec]:
        return grids.grid(self.experiment, self.filters)


def _classroom() -> tuple[Stage, ...]:
    """Every claim's machinery on the CPU-sized model (the slow regime: the paper's 3-layer model for 4,000
    steps), seed 42 and 137, in about a quarter of an hour on 2 cores."""
    small = dict(preset="classroom", seeds=(42, 137))
    return (
        Stage(
            "table1",
            "table1",
            Filters(max_steps=5000, **small),
            "the classroom model, seeds 42 and 137, at most 5,000 steps",
        ),
        Stage("controls", "controls", Filters(ops=("add",), **small), "the classroom model, add"),
        Stage("float64-check", "float64-check", Filters(preset="classroom"), "the classroom model"),
        Stage(
            "lr-sweep",
            "lr-sweep",
            Filters(ops=("add",), lrs=(1e-3, 3e-3, 1e-2), max_steps=6000, **small),
            "the classroom model, add, 3 rates, at most 6,000 steps",
        ),
        Stage(
            "lr-sweep-non-grokking",
            "lr-sweep",
            Filters(ops=("x2_xy_y2",), lrs=(3e-3, 1e-2), max_steps=3000, preset="classroom", seeds=(42,)),
            "the classroom model, x2_xy_y2, seed 42, 2 rates, at most 3,000 steps",
        ),
        Stage(
            "pca",
            "pca",
            Filters(ops=("add", "x2_xy_y2"), max_steps=3000, **small),
            "the classroom model, add and x2_xy_y2, at most 3,000 steps",
        ),
        Stage(
            "dose-response",
            "dose-response",
            Filters(ops=("add",), doses=(0.5, 1.0), max_steps=4000, **small),
            "the classroom model, add, s = 0.5 and 1, at most 4,000 steps",
        ),
        Stage(
            "interventions-primary",
            "interventions-primary",
            Filters(preset="classroom", seeds=(42,)),
            "the classroom model, seed 42",
        ),
        Stage(
            "kicks",
            "kicks",
            Filters(doses=(100.0,), max_steps=4000, preset="classroom", seeds=(42,)),
            "the classroom model, seed 42, alpha 100, at most 4,000 steps",
        ),
        Stage(
            "slow",
            "slow",
            Filters(seeds=(42,), max_steps=4000),
            "seed 42, 4,000 steps: the machinery only, far from grokking",
        ),
    )


def _machine() -> tuple[Stage, ...]:
    """The paper's model on one machine, ~11 h on 2 cores by --estimate: every grid but the full LR sweep and the
    long non-grokking PCA runs, and the slow regime."""
    return (
        Stage("table1", "table1"),
        Stage("controls", "controls"),
        Stage("float64-check", "float64-check"),
        Stage(
            "lr-sweep",
            "lr-sweep",
            Filters(ops=GROKKING_OPS, lrs=RELEASED_LRS),
            "the reference's released rates 1e-4, 1e-3, 1e-2 (of six)",
        ),
        Stage(
            "lr-sweep-non-grokking",
            "lr-sweep",
            Filters(ops=NON_GROKKING_OPS, lrs=RELEASED_LRS, max_steps=10_000),
            "x2_xy_y2 and x3_xy at the released rates, at most 10,000 steps (the reference: 50,000; at 1e-4 "
            "the grokking operations take ~34,000, so 0/3 there says little)",
        ),
        Stage(
            "pca",
            "pca",
            Filters(max_steps=10_000),
            "at most 10,000 steps (the paper: 50,000 without weight decay, 200,000 for x2_xy_y2 and x3_xy)",
        ),
        Stage("dose-response", "dose-response"),
        Stage(
            "dose-response-seeds",
            "dose-response",
            Filters(ops=("add",), seeds=(1, 2, 3)),
            "not the paper's: add with three more seeds, 1, 2 and 3 (how far the seeds' spread goes)",
        ),
        Stage("interventions-primary", "interventions-primary", cut="the primary strengths only (figI4)"),
        Stage("random-basis", "random-basis"),
        Stage(
            "attention-only", "attention-only", cut="not the paper's: the projection inside the attention matrices only"
        ),
        Stage("kicks", "kicks", Filters(doses=(100.0,)), "alpha 100 only (figI8: 50-500)"),
        Stage("slow", "slow"),
    )


def _full() -> tuple[Stage, ...]:
    """Every grid as the paper ran it: for a cluster."""
    return tuple(
        Stage(name, name)
        for name in (
            "table1",
            "controls",
            "float64-check",
            "lr-sweep",
            "pca",
            "dose-response",
            "interventions-add",
            "kicks",
            "slow",
        )
    )


SCALES: dict[str, Callable[[], tuple[Stage, ...]]] = {"classroom": _classroom, "machine": _machine, "full": _full}


def stages(scale: str) -> tuple[Stage, ...]:
    """The plan of the named scale; a ConfigError for an unknown one."""
    if scale not in SCALES:
        raise ConfigError(f"--scale={scale!r} is invalid: must be one of {', '.join(SCALES)}")
    return SCALES[scale]()


def estimate(
    plan: tuple[Stage, ...],
    costs: dict,
    recorded: frozenset[str] = frozenset(),
    out: Path | None = None,
    folder: Path | None = None,
) -> list[dict]:
    """Per stage: its runs, how many of them are left to run given the names of the runs `recorded` (_unrecorded),
    and those runs' one-core CPU time and the longest one's (grids.estimate_cpu_seconds, from `tinygrok bench`'s
    costs), in seconds; a run that will resume counted from its checkpoint (out/LABEL/NAME's, or the one carried
    into folder/resume, whichever is further on)."""
    rows = []
    for stage in plan:
        specs = stage.specs()
        seconds = [
            grids.estimate_cpu_seconds(spec, costs, _done_steps(spec, out and out / stage.label, folder))
            for spec in _unrecorded(specs, recorded)
        ]
        rows.append(
            {
                "stage": stage,
                "runs": len(specs),
                "left": len(seconds),
                "cpu_seconds": sum(seconds),
                "longest": max(seconds, default=0.0),
            }
        )
    return rows


def wall_estimate(rows: list[dict], workers: int) -> float:
    """Seconds on `workers` cores: each stage takes its CPU time shared out, or its longest run if longer."""
    return sum(max(r["cpu_seconds"] / workers, r["longest"]) for r in rows)


def run(
    scale: str,
    plan: tuple[Stage, ...],
    out: Path,
    folder: Path,
    make_executor: Callable,
    *,
    on_change: Callable[[Stage, dict], None] | None = None,
) -> dict:
    """Run every run of `plan` that has no record in `folder` into out/LABEL, stage by stage, recording each as it
    finishes; then return the folder's reproduce.json: the scale, each part's wall seconds and each stage's (this
    part's added). A RunError if the folder holds another scale's reproduction."""
    out, folder = Path(out), Path(folder)
    state = _state(folder, scale)
    state["parts"].append({"began": round(time.time(), 3), "seconds": 0.0, "stages": {}})  # its id too
    write_json(folder / STATE, state)
    for stage in plan:
        todo = _unrecorded(stage.specs(), set(records.load_all(folder)[0]))
        if not todo:
            continue
        _borrow_baselines(todo, out, stage.label)
        restore(todo, out / stage.label, folder)
        index = sweep.load_index(out / stage.label, stage.experiment, stage.filters.describe(), todo)
        last = time.time()

        def changed(index: dict, stage: Stage = stage) -> None:
            nonlocal last
            _record_finished(out / stage.label, index, folder)
            if time.time() - last >= 30:  # a kill loses at most half a minute of the wall time's count
                last = _count(state, stage, last, folder)
            if on_change:
                on_change(stage, index)

        try:
            index = sweep.run_grid(todo, out / stage.label, index, make_executor, on_change=changed)
            _record_finished(out / stage.label, index, folder)
        finally:
            _count(state, stage, last, folder)
    return state


def _count(state: dict, stage: Stage, since: float, folder: Path) -> float:
    """Add the wall time since `since` to this part's, in all and in the stage's, save reproduce.json; returns now."""
    now, part = time.time(), state["parts"][-1]
    part["seconds"] = round(part["seconds"] + now - since, 1)
    part["stages"][stage.label] = round(part["stages"].get(stage.label, 0.0) + now - since, 1)
    write_json(folder / STATE, state)
    return now


def _unrecorded(specs: list[RunSpec], recorded: set[str] | frozenset[str]) -> list[RunSpec]:
    """The specs whose names are not among `recorded`, and the baselines they need (whose directories give their
    basis)."""
    needed = {recipes.baseline(s).name for s in specs if s.name not in recorded and recipes.needs_baseline(s)}
    return [s for s in specs if s.name not in recorded or s.name in needed]


def _borrow_baselines(specs: list[RunSpec], out: Path, label: str) -> None:
    """Copy into out/label each baseline of `specs` that another stage's sweep has finished (its run directory,
    whose execution basis the interventions read), rather than train it again."""
    for spec in specs:
        here = out / label / spec.name
        if spec.recipe != "pca" or here.exists():
            continue
        done = [path for path in out.glob(f"*/{spec.name}") if "pca" in Run(path).stages()]
        if done:
            shutil.copytree(done[0], here)


def _record_finished(out: Path, index: dict, folder: Path) -> None:
    """Write the record of every finished run of the sweep in `out` that `folder` lacks (an existing record is
    never rewritten: a run done again leaves the first one); a carried resume state of it goes."""
    for name, entry in index["runs"].items():
        if entry["state"] == "done" and not (folder / (name + records.SUFFIX)).exists():
            records.save(records.of_run(out / name, entry["recipe"]), folder)
            shutil.rmtree(folder / RESUME / name, ignore_errors=True)


def carry(out: Path, folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Copy into folder/resume/NAME the exact resume state of every unfinished run under out's stages, so that the
    reproduction resumes it on another machine; returns (name -> bytes carried, name -> why not). Run it while the
    reproduction is stopped (SIGSTOP) or ended: a copy of a frozen run is as good as a kill, which a resume
    repairs. Finished runs are recorded first, and a recorded run's carried state goes. What stays behind: an
    intervention run (its hook basis, tens of MiB at the paper's size) and a state over CARRY_LIMIT."""
    carried, left = {}, {}
    for index_path in sorted(Path(out).glob(f"*/{sweep.INDEX}")):
        _record_finished(index_path.parent, sweep.read_index(index_path.parent), folder)
    for run_dir in sorted(path.parent for path in Path(out).glob(f"*/*/{CHECKPOINT}")):
        target = folder / RESUME / run_dir.name
        if (folder / (run_dir.name + records.SUFFIX)).exists():
            shutil.rmtree(target, ignore_errors=True)
            continue
        files = [run_dir / name for name in CARRIED if (run_dir / name).exists()]
        size = sum(f.stat().st_size for f in files)
        if (run_dir / HOOK_BASIS).exists():
            left[run_dir.name] = "an intervention run: its hook basis is too large to carry"
        elif size > CARRY_LIMIT:
            left[run_dir.name] = f"its state is {size / 2**20:.1f} MiB, over {CARRY_LIMIT / 2**20:.0f} MiB"
        elif _step(run_dir) > _step(target):
            _replace_dir(target, files)
            carried[run_dir.name] = size
    return carried, left


def _done_steps(spec: RunSpec, stage_out: Path | None, folder: Path | None) -> int:
    """The steps a run has trained: its furthest checkpoint, in stage_out or carried into folder (0: none)."""
    places = [place / spec.name for place in (stage_out, folder and folder / RESUME) if place is not None]
    return max([0, *map(_step, places)])


def _step(run_dir: Path) -> int:
    """The step of the run's checkpoint (-1 where there is none)."""
    return Run(run_dir).load_checkpoint()[2]["step"] if (run_dir / CHECKPOINT).exists() else -1


def _replace_dir(target: Path, files: list[Path]) -> None:
    """target holding copies of files, replacing what it held: written beside it, then renamed into place (a kill
    between the two renames leaves the old state as NAME.old)."""
    staging, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        write_bytes(staging / path.name, path.read_bytes())
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def restore(specs: list[RunSpec], out: Path, folder: Path) -> None:
    """Put each spec's carried resume state (folder/resume/NAME) into out where it is further on than out's own
    checkpoint of the run (or out has none: the machine that ran it is gone), replacing that run directory."""
    for spec in specs:
        carried, here = folder / RESUME / spec.name, out / spec.name
        if carried.is_dir() and _step(carried) > _step(here):
            shutil.rmtree(here, ignore_errors=True)
            shutil.copytree(carried, here)


def read_state(folder: Path) -> dict:
    """A records folder's reproduce.json: its scale and its parts (when each began, its seconds, per stage); a
    RunError if the folder has none, or if it is not one."""
    path = Path(folder) / STATE
    if not path.exists():
        raise RunError(
            f"{folder} holds no reproduction's records (it has no {STATE}: tinygrok reproduce --records writes it)"
        )
    state = read_json(path, "scale", "parts")
    if (
        state["scale"] not in SCALES
        or not isinstance(state["parts"], list)
        or not all(isinstance(part, dict) and {"began", "seconds", "stages"} <= set(part) for part in state["parts"])
    ):
        raise RunError(f"{path} is no reproduction's state: it needs a scale ({', '.join(SCALES)}) and its parts")
    return state


def _state(folder: Path, scale: str) -> dict:
    if not (folder / STATE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        return {"scale": scale, "parts": []}
    state = read_state(folder)
    if state["scale"] != scale:
        raise RunError(
            f"{folder} holds the records of the {state['scale']} reproduction, not {scale}: give this "
            "one other --records"
        )
    return state


def merge(sources: list[Path], into: Path) -> tuple[dict, list[str]]:
    """Bring several folders of records of one scale's reproduction (other machines', days', workers') into
    `into`: each run's record once (the one already there, else the first found), each part once (by when it
    began: merging a folder twice adds nothing). Returns the merged reproduce.json and a line for each file left
    behind as no readable record. A RunError, before anything is written, for a folder of another scale, or none."""
    into, sources = Path(into), [Path(source) for source in sources]
    if not sources:
        raise RunError("no folders of records to merge")
    states = [read_state(source) for source in sources]
    for source, other in zip(sources, states):
        if other["scale"] != states[0]["scale"]:
            raise RunError(f"{source} holds the {other['scale']} reproduction's records, not {states[0]['scale']}'s")
    state, skipped = _state(into, states[0]["scale"]), []
    for source, other in zip(sources, states):
        found, problems = records.load_all(source)
        skipped += problems
        for name in found:
            path = source / (name + records.SUFFIX)
            if not (into / path.name).exists():
                write_bytes(into / path.name, path.read_bytes())
        known = {part["began"] for part in state["parts"]}
        state["parts"] += [part for part in other["parts"] if part["began"] not in known]
    write_json(into / STATE, state)
    return state, skipped


def wall_seconds(state: dict, label: str | None = None) -> float:
    """The reproduction's wall time so far (in the stage `label` only, if given), summed over its parts."""
    return sum(part["seconds"] if label is None else part["stages"].get(label, 0.0) for part in state["parts"])
