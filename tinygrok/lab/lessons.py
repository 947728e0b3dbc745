"""What the classroom lessons share: the FAST switch, where their runs and figures go, figures shown inline or
saved, exercise checks that say right or wrong, and the list of lessons (lessons/ of a checkout, shipped in the
wheel as the package data tinygrok.lesson_files).

TINYGROK_FAST=1 shrinks every training to what runs in under two minutes on two cores; TINYGROK_RUNS names the
folder of the lessons' runs (default runs/lessons in the current directory: a lesson run again reuses them),
TINYGROK_FIGURES the folder a lesson run as a script saves its figures into (default: runs/lessons/figures).

An exercise is a line `answer_X = None  # your answer` and a check: replace None, run the cell, and the check
says right, or raises Wrong with a hint. lessons/solutions.py holds one solution to each.
"""

from __future__ import annotations

import importlib.resources
import io
import os
import re
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygrok.engine import parallel
from tinygrok.engine.engines import ENGINES
from tinygrok.lab import recipes
from tinygrok.run.runs import Run
from tinygrok.science import optim

LESSONS_DIR = Path(str(importlib.resources.files("tinygrok.lesson_files")))


def fast() -> bool:
    """Whether TINYGROK_FAST=1 asks for the short version."""
    return os.environ.get("TINYGROK_FAST") == "1"


def pick(real, quick):
    """`real` normally, `quick` in FAST mode."""
    return quick if fast() else real


def runs_dir() -> Path:
    """Where the lessons keep their runs: runs/lessons in the current directory, the same folder whether a lesson
    runs from the command line or in a notebook (`tinygrok lesson N --notebook` writes it there)."""
    return Path(os.environ.get("TINYGROK_RUNS", Path.cwd() / "runs" / "lessons"))


def run(spec: recipes.RunSpec) -> Run:
    """The spec's run in the lessons' folder, done on every core it can use (skipped if it is there already)."""
    recipes.execute(spec, runs_dir(), cores=parallel.default_cores(spec.config))
    return Run(recipes.run_path(spec, runs_dir()))


def show(fig, name: str):
    """Show a figure: inline in a notebook; from a script, saved as NAME.png (and the path printed)."""
    try:
        from IPython import get_ipython

        kernel = get_ipython() is not None and hasattr(get_ipython(), "kernel")
    except ImportError:
        kernel = False
    if kernel:  # as a PNG, whatever matplotlib's backend (a Figure made without pyplot has no inline display)
        from IPython.display import Image, display

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        display(Image(data=buffer.getvalue()))
        return None
    folder = Path(os.environ.get("TINYGROK_FIGURES", runs_dir() / "figures"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=100)
    print(f"figure: {path}")
    return path


def training_step(cfg) -> Callable:
    """One step of the readable engine as a function of (theta, state, tokens, labels) -> (theta, state): the
    gradient by autograd through model.py, clipped, then optim.py's AdamW (what lesson 4 asks for)."""

    def step(theta, state, tokens, labels):
        g, _ = optim.clip_by_global_norm(ENGINES["readable"].gradient(theta, tokens, labels, cfg), cfg.clip_norm)
        return optim.adamw_step(theta, g, state, **cfg.adamw())

    return step


class Wrong(AssertionError):
    """An exercise's answer is not right."""


def check(label: str, answer, expected, *, rel: float = 1e-6, hint: str = "") -> None:
    """Print that exercise `label` is right (or not answered yet, with the hint), or raise Wrong. Numbers and
    arrays must agree to a relative tolerance `rel`, arrays in norm (||answer - expected|| <= rel ||expected||: an
    entry that is 0 one way may be 1e-20 another); anything else must be equal, a list and a tuple alike."""
    if answer is None:
        print(f"exercise {label}: not answered yet. {hint}".strip())
        return
    try:
        given, wanted = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
        numeric = not np.isnan(wanted).any()  # None becomes nan: (None, 2000) is compared as it is
    except (TypeError, ValueError):
        numeric = False
    if numeric:
        right = given.shape == wanted.shape and bool(np.linalg.norm(given - wanted) <= rel * np.linalg.norm(wanted))
    else:
        right = _as_lists(answer) == _as_lists(expected)
    if not right:
        raise Wrong(f"exercise {label}: {answer!r} is not right. {hint}".strip())
    print(f"exercise {label}: right")


def _as_lists(value):
    """value with every tuple in it a list (in lists, tuples and dict values)."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return {k: _as_lists(v) for k, v in value.items()} if isinstance(value, dict) else value


ANSWER_LINE = re.compile(r"^answer_(\w+) = None  # your answer$", re.M)


def solutions() -> dict[str, str]:
    """Exercise label -> a solution, as the expression to put in its answer line (lessons/solutions.py)."""
    return runpy.run_path(str(LESSONS_DIR / "solutions.py"))["SOLUTIONS"]


def with_solutions(source: str) -> str:
    """A lesson's source with every `answer_X = None  # your answer` line filled in with the solution."""
    known = solutions()
    return ANSWER_LINE.sub(lambda m: f"answer_{m.group(1)} = {known[m.group(1)]}  # a solution", source)


@dataclass(frozen=True)
class Lesson:
    number: int
    path: Path
    title: str
    duration: str  # as the lesson states it


def catalogue() -> list[Lesson]:
    """The lessons in lessons/, in order, with the title and duration each states in its first cell."""
    found = []
    for path in sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py")):
        text = path.read_text()
        title = re.search(r"^# # Lesson \d+: (.+)$", text, re.M)
        duration = re.search(r"^# \*\*Duration:\*\* (.+)$", text, re.M)
        found.append(
            Lesson(
                int(path.name[:2]), path, title.group(1) if title else path.stem, duration.group(1) if duration else "?"
            )
        )
    return found
