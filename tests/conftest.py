"""Shared fixtures: a tiny model config that trains in seconds, deterministic BLAS threads, the classroom model
trained to grokking once per test session, and the lessons' FAST mode."""

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from tinygrok.engine import parallel
from tinygrok.lab import recipes
from tinygrok.science.config import Config

CLASSROOM = recipes.spec("train", "classroom")  # the lessons' run: trained to detection


# the longest test files, longest first: pytest-xdist hands out files in collection order, so the two test processes
# end together; the lessons (which share the classroom run) go to the same process
LONGEST_FIRST = (
    *("test_lessons_long.py", "test_sweep.py", "test_lessons.py", "test_experiments.py", "test_cli.py"),
    *("test_reproduce.py", "test_interventions.py", "test_engines.py", "test_kills.py", "test_forecast.py"),
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread(worker_id):
    """Pin BLAS to one thread: timings are steadier and results reproducible across machines' core counts. Each
    pytest-xdist test process keeps to a core of its own, and so do the processes it starts (CLI commands, notebook
    kernels, a run's gradient workers): none of them takes the other test process's core."""
    if worker_id != "master" and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker_id.removeprefix("gw")) % len(cores)]})
    with parallel.cores(1):
        yield


def tiny_config(**overrides) -> Config:
    """A model small enough for finite differences and second-order checks."""
    base = dict(p=7, d_model=8, n_heads=2, d_ff=12, batch_size=16, dtype="float64")
    return Config(**{**base, **overrides})


@pytest.fixture(scope="session")
def classroom_run(tmp_path_factory, worker_id) -> Path:
    """The directory of CLASSROOM's run, trained once for the whole session: the first test process to ask
    trains it, holding a lock on the session's shared folder; the others wait for it and reuse it. Copy it
    (`copy_classroom_run`) before writing into it."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # pytest-xdist: the folder above every worker's
    with open(shared / "classroom.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recipes.execute(CLASSROOM, shared / "shared-runs")  # nothing to do once it is trained
    return recipes.run_path(CLASSROOM, shared / "shared-runs")


def copy_classroom_run(classroom_run: Path, runs: Path) -> Path:
    """The shared classroom run copied into the folder of runs `runs`, where recipes.execute finds it done."""
    return Path(shutil.copytree(classroom_run, recipes.run_path(CLASSROOM, runs)))


@pytest.fixture(scope="module")
def fast_mode(tmp_path_factory, classroom_run):
    """The lessons' FAST mode, and one folder of runs for a test module's lessons (a run made by one lesson is
    reused by the next), the session's classroom run in it."""
    runs = tmp_path_factory.mktemp("lesson-runs")
    copy_classroom_run(classroom_run, runs)
    saved = {k: os.environ.get(k) for k in ("TINYGROK_FAST", "TINYGROK_RUNS", "TINYGROK_FIGURES")}
    os.environ.update(TINYGROK_FAST="1", TINYGROK_RUNS=str(runs), TINYGROK_FIGURES=str(runs / "figures"))
    yield runs
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
