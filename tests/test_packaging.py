"""The built wheel stands alone: its lessons inside the package, the CLI inside the package, nothing named `cli`
at the top of site-packages. Built from a copy of the tracked sources (no stale build/), installed by unpacking
it onto the path of a fresh interpreter ahead of this checkout's editable install."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import copy_classroom_run

from tinygrok.lab.lessons import catalogue
from tinygrok.run import grok_forecaster

NUMBERS = [lesson.number for lesson in catalogue()]  # the lessons in the checkout: the wheel must ship them all

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if name.split("/")[0] in ("pyproject.toml", "README.md", "tinygrok", "lessons") and (ROOT / name).exists():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("tinygrok-*.whl")
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(path).extractall(site)
    return path, site


def in_wheel(site: Path, *args: str, cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(site), "TINYGROK_FAST": "1", "TINYGROK_RUNS": str(cwd / "runs")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_the_wheel_has_no_top_level_cli_and_ships_the_lessons(wheel):
    names = zipfile.ZipFile(wheel[0]).namelist()
    top = {name.split("/")[0] for name in names if not name.startswith("tinygrok-")}
    assert top == {"tinygrok"}
    lessons = sorted(n for n in names if n.startswith("tinygrok/lesson_files/") and n[22:24].isdigit())
    assert [int(n[22:24]) for n in lessons] == NUMBERS and "tinygrok/lesson_files/solutions.py" in names
    assert {"tinygrok/run/forecaster.json", "tinygrok/run/forecast_runs.jsonl.gz"} <= set(names)  # the forecaster
    held_out = {n.rsplit("/", 1)[1] for n in names if n.startswith("tinygrok/run/forecast_held_out/")}
    shipped = {p.name for p in grok_forecaster.HELD_OUT_RECORDS.glob("*.json.gz")}
    assert held_out == shipped != set()  # the records of its held-out runs


def test_from_the_wheel_the_lessons_are_listed_and_lesson_1_runs(wheel, tmp_path, classroom_run):
    _, site = wheel
    copy_classroom_run(classroom_run, tmp_path / "runs")  # lesson 1's run, trained by the session
    where = in_wheel(
        site, "-c", "import tinygrok, tinygrok.lab.lessons as l; print(tinygrok.__file__, l.LESSONS_DIR)", cwd=tmp_path
    )
    assert where.stdout.split() == [str(site / "tinygrok" / "__init__.py"), str(site / "tinygrok" / "lesson_files")]
    listing = in_wheel(site, "-m", "tinygrok", "lesson", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert [
        line.split("│")[1].strip()
        for line in listing.stdout.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    ] == [str(n) for n in NUMBERS] and NUMBERS == list(range(1, 10))
    first = in_wheel(site, "-m", "tinygrok", "lesson", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "lesson 1 done" in first.stdout and list((tmp_path / "runs" / "figures").glob("*.png"))
    assert "Usage: python -m tinygrok" in in_wheel(site, "-m", "tinygrok", "--help", cwd=tmp_path).stdout
