"""Running a grid of run specs on a concurrent.futures Executor: local worker processes, or a Dask cluster.

Each run goes to recipes.execute in its own directory (named by its spec) inside the sweep directory, so a
finished run is skipped and an interrupted one resumes from its checkpoint, wherever it runs. The sweep directory
keeps index.json (written atomically): the experiment, the filters, and each run's state (queued, running, done,
diverged, failed), attempts and error. A failed run is retried once, then reported with its error; a run that
diverged (a non-finite number: train.Diverged) is reported so and not retried, as it would diverge again at the
same step; if the executor itself breaks (a local worker process killed), a fresh one takes the runs not done.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tinygrok.lab import recipes
from tinygrok.lab.recipes import RunSpec
from tinygrok.run.runs import METRICS, Run, RunError, directory_lock, read_json, write_json
from tinygrok.run.train import Diverged

INDEX = "index.json"
STATES = ("queued", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")  # a sweep run again skips these


def read_index(out: Path) -> dict:
    """The index of the sweep directory `out`: its experiment, filters and runs (name -> state, attempts, error,
    recipe); a RunError if it is not one."""
    path = Path(out) / INDEX
    index = read_json(path, "experiment", "filters", "runs")
    if not isinstance(index["runs"], dict) or not all(
        isinstance(entry, dict) and entry.get("state") in STATES and "recipe" in entry
        for entry in index["runs"].values()
    ):
        raise RunError(f"{path} is no sweep's index: each of its runs needs a state ({', '.join(STATES)}) and a recipe")
    return index


def load_index(out: Path, experiment: str, filters: str, specs: list[RunSpec]) -> dict:
    """The sweep directory's index, or a new one; a RunError if the directory holds another experiment's sweep."""
    path = Path(out) / INDEX
    if path.exists():
        index = read_index(out)
        if (index["experiment"], index["filters"]) != (experiment, filters):
            raise RunError(
                f"{out} holds the sweep of {index['experiment']} ({index['filters']}), not "
                f"{experiment} ({filters}): give this one another --out"
            )
    else:
        index = {"experiment": experiment, "filters": filters, "runs": {}}
    for spec in specs:
        entry = index["runs"].setdefault(spec.name, {"state": "queued", "attempts": 0, "error": None})
        entry["recipe"] = spec.recipe
        if entry["state"] not in FINISHED:  # failed, or running when the last sweep was killed: another chance
            entry.update(state="queued", attempts=0)
    return index


def run_grid(
    specs: list[RunSpec],
    out: Path,
    index: dict,
    make_executor: Callable[[], Executor],
    *,
    retries: int = 1,
    on_change: Callable[[dict], None] | None = None,
    poll_seconds: float = 1.0,
) -> dict:
    """Run every spec whose state is not done, on executors from make_executor(), keeping `index` (saved in out)
    up to date; returns it. The baselines of interventions run first (recipes.waves). on_change(index) is
    called after every change and every poll."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_name = {spec.name: spec for spec in specs}
    with directory_lock(out):  # one sweep at a time writes a sweep directory (each run also locks its own)
        for wave in recipes.waves(specs):
            todo = [spec.name for spec in wave if index["runs"][spec.name]["state"] not in FINISHED]
            while todo:
                todo = _run_on(make_executor(), todo, by_name, out, index, retries, on_change, poll_seconds)
    return index


def _run_on(
    executor: Executor,
    names: list[str],
    by_name: dict,
    out: Path,
    index: dict,
    retries: int,
    on_change,
    poll_seconds: float,
) -> list[str]:
    """Run `names` on one executor; returns those left to run when it broke (empty when it did not)."""

    def submit(name: str):
        index["runs"][name].update(state="queued")
        return executor.submit(recipes.execute, by_name[name], out)

    def save():
        write_json(out / INDEX, index)
        if on_change:
            on_change(index)

    began = time.time()
    with executor:
        pending = {submit(name): name for name in names}
        save()
        while pending:
            done, _ = wait(pending, timeout=poll_seconds, return_when=FIRST_COMPLETED)
            # running: a run whose metrics were written since this executor began (a process pool's futures say
            # they run while they still wait in its queue; Dask's do not say)
            for future, name in pending.items():
                if future not in done:
                    index["runs"][name]["state"] = "running" if _written_since(out / name, began) else "queued"
            for future in done:
                name = pending.pop(future)
                entry = index["runs"][name]
                try:
                    entry.update(state="done", results=future.result(), error=None)
                except BrokenProcessPool:  # the pool lost a worker: a new pool runs what is not done
                    entry.update(state="queued")
                    left = [name, *pending.values()]
                    for other in pending.values():
                        index["runs"][other].update(state="queued")
                    save()
                    return left
                except Diverged as err:
                    entry.update(state="diverged", error=str(err))
                except Exception as err:  # a run's failure is recorded, not raised
                    entry["attempts"] += 1
                    entry.update(state="failed", error=f"{type(err).__name__}: {err}")
                    if entry["attempts"] <= retries:
                        pending[submit(name)] = name
            save()
    return []


def _written_since(run_dir: Path, began: float) -> bool:
    try:
        return (run_dir / METRICS).stat().st_mtime >= began
    except OSError:
        return False


def summary(index: dict) -> dict[str, int]:
    """How many runs are in each state."""
    counts = {state: 0 for state in STATES}
    for entry in index["runs"].values():
        counts[entry["state"]] += 1
    return counts


def outcome(counts: dict[str, int]) -> str:
    """summary's counts in words: "N runs done, M diverged, K failed"."""
    return f"{counts['done']} runs done, {counts['diverged']} diverged, {counts['failed']} failed"


def progress(out: Path, name: str) -> dict | None:
    """The latest metrics row of a run in the sweep (step, accuracies), or None before its first."""
    try:
        rows = Run(Path(out) / name).metrics()
    except (RunError, ValueError, OSError):
        return None
    return rows[-1] if rows else None


def dask_executor(address: str) -> Callable[[], Executor]:
    """Executors of the Dask cluster whose scheduler is at `address` (tcp://HOST:PORT): its workers run the specs,
    and a run whose worker dies is given to another by the scheduler (it resumes from its checkpoint, so the run
    directories must be on a file system every worker sees)."""
    try:
        from distributed import Client
    except ImportError:
        raise RunError("--scheduler needs dask.distributed: pip install -e '.[cluster]'") from None
    try:
        client = Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError) as err:
        raise RunError(f"cannot reach a Dask scheduler at {address} ({type(err).__name__}: {err})") from None
    return client.get_executor


def local_executor(workers: int) -> Callable[[], Executor]:
    """Local worker processes, one core each (recipes.execute runs on one core by default)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copied locks or threads
    return lambda: ProcessPoolExecutor(workers, mp_context=context)
