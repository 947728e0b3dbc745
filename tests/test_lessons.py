"""The lessons are acceptance tests: in FAST mode each runs top to bottom as a notebook in a real Jupyter kernel
(converted by jupytext, executed by nbclient) with the solutions filled in, every exercise check says right, and a
wrong answer fails the check; then, in the same kernel, every cell a student who has answered nothing would run
differently (the cells that read an answer, or a name such a cell sets) runs as the student gets it, and each
exercise says it is not answered yet. One lesson runs as a script from the command line."""

import ast
import re
import subprocess
import sys

import jupytext  # the lessons' extra (pip install -e ".[dev,lessons]"): CI installs it, so these tests never skip
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from test_cli import CLI

from tinygrok.lab import lessons

CATALOGUE = lessons.catalogue()
WRONG = {
    1: ("1a", "4704"),
    2: ("2a", "0.5"),
    3: ("3a", "(3, 2, 4, 16)"),
    4: ("4c", '"no decay"'),
    5: ("5e", '"blocks.0.W_Q"'),
    6: ("6a", "1.0"),
    7: ("7b", "0"),
    8: ("8a", "[1.0, 2.0, 3.0]"),
    9: ("9b", "0.0"),
}  # one wrong answer per lesson


def test_there_are_nine_lessons_each_with_its_duration_and_exercises():
    assert [lesson.number for lesson in CATALOGUE] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    for lesson in CATALOGUE:
        text = lesson.path.read_text()
        assert lesson.duration != "?" and "**Learning goals**" in text and "## Going further" in text
        assert len(lessons.ANSWER_LINE.findall(text)) >= 2 and "lessons.show(" in text, lesson.path
    labels = [label for lesson in CATALOGUE for label in lessons.ANSWER_LINE.findall(lesson.path.read_text())]
    assert sorted(labels) == sorted(lessons.solutions())  # one solution for each exercise


def test_a_check_takes_arrays_in_norm_numbers_to_their_tolerance_and_the_rest_as_equal(capsys):
    lessons.check("x", np.array([1.0, 0.0, 2.0]), np.array([1.0, 1e-20, 2.0]), rel=1e-12)  # a zero as 1e-20
    lessons.check("y", (3, 4), (3, 4), rel=0)
    lessons.check("z", ({"s = 0"}, (None, 2000)), ({"s = 0"}, (None, 2000)))
    lessons.check("u", {"a": [None, 2000]}, {"a": (None, 2000)})  # a list for a tuple
    lessons.check("w", None, 1.0, hint="a hint")
    assert capsys.readouterr().out.splitlines() == [
        "exercise x: right",
        "exercise y: right",
        "exercise z: right",
        "exercise u: right",
        "exercise w: not answered yet. a hint",
    ]
    for answer, expected in ((np.array([1.0, 2.02]), np.array([1.0, 2.0])), (2, (2,)), ((None, 1), (None, 2))):
        with pytest.raises(lessons.Wrong, match="is not right"):
            lessons.check("v", answer, expected, rel=1e-3)


LONG = (4, 8)  # the two longest lessons run in test_lessons_long.py, beside these on another test process


@pytest.mark.parametrize(
    "lesson", [lesson for lesson in CATALOGUE if lesson.number not in LONG], ids=lambda lesson: lesson.path.stem
)
def test_a_lesson_runs_as_a_notebook_a_wrong_answer_fails_its_check_and_a_student_is_not_answered_yet(
    lesson, fast_mode, tmp_path
):
    check_notebook(lesson, tmp_path)


def check_notebook(lesson: lessons.Lesson, tmp_path) -> None:
    """The module docstring's check of one lesson, in FAST mode (the fast_mode fixture)."""
    notebook = jupytext.reads(lessons.with_solutions(lesson.path.read_text()), fmt="py:percent")
    student = jupytext.reads(lesson.path.read_text(), fmt="py:percent")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        outputs = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
        answered = len(lessons.ANSWER_LINE.findall(lesson.path.read_text()))
        assert len(re.findall(r"exercise \w+: right", outputs)) == answered >= 2, outputs
        inline = [
            out for cell in notebook.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})
        ]
        assert inline, "no figure was drawn inline"

        label, wrong = WRONG[lesson.number]
        index = next(i for i, cell in enumerate(notebook.cells) if f"answer_{label} = " in cell.source)
        cell = notebook.cells[index].copy()
        cell.source = re.sub(rf"^answer_{label} = .*$", f"answer_{label} = {wrong}", cell.source, count=1, flags=re.M)
        with pytest.raises(CellExecutionError, match=f"exercise {label}: .* is not right"):
            client.execute_cell(cell, index)

        rerun, names = cells_a_student_runs_differently(student.cells)
        client.execute_cell(
            jupytext.reads(f"for name in {sorted(names)!r}:\n    globals().pop(name, None)").cells[0], 0
        )
        for index in rerun:  # in order, from a namespace without what only the solutions made
            client.execute_cell(student.cells[index], index)
        shown = "".join(out.get("text", "") for i in rerun for out in student.cells[i].get("outputs", []))
        assert len(re.findall(r"exercise \w+: not answered yet", shown)) == answered, shown


def cells_a_student_runs_differently(cells) -> tuple[list[int], set[str]]:
    """The code cells whose run differs when no exercise is answered: those with an answer line, and those that
    read a name one of them sets, in order; and the names only such cells set (cleared before they run again).
    Names by assignment only: a cell that changes an object another cell made, in place, is not followed (the
    lessons' cells do not)."""
    rerun, tainted, clean = [], set(), set()
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        set_here = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        set_here |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if lessons.ANSWER_LINE.search(cell.source) or read & tainted:
            rerun.append(index)
            tainted |= set_here
        else:
            clean |= set_here
    return rerun, tainted - clean


def test_a_lesson_runs_as_a_script_from_the_cli(fast_mode, tmp_path):
    """As a student gets it, with no answers yet: lesson 2 (it trains nothing), its figures saved to files."""
    result = subprocess.run(
        [sys.executable, CLI, "lesson", "2"], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not answered yet" in result.stdout and "figure: " in result.stdout and "figures are in" in result.stdout


def test_the_cli_lists_the_lessons_and_writes_a_notebook(tmp_path):
    listing = subprocess.run([sys.executable, CLI, "lesson"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and all(lesson.title[:20] in listing.stdout for lesson in CATALOGUE)
    missing = subprocess.run([sys.executable, CLI, "lesson", "10"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no lesson 10" in missing.stderr
    written = subprocess.run(
        [sys.executable, CLI, "lesson", "2", "--notebook"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )  # into the current directory
    target = tmp_path / "02_gradients.ipynb"
    assert written.returncode == 0 and target.exists()
    assert len(jupytext.read(target).cells) == len(jupytext.read(lessons.LESSONS_DIR / "02_gradients.py").cells)
