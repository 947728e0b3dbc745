"""Kill anywhere: SIGKILL a run (and a tiny sweep) inside each kind of write, resume it, and find every file equal
to an uninterrupted run's.

Every byte a run writes passes through runs._write. A forked child runs the work with that function replaced:
at the n-th write to the chosen file it writes a part of the bytes, flushes, and sends itself SIGKILL, so the kill
lands inside that write. The cuts are those a SIGKILL can leave: nothing written, everything written (and not yet
renamed into place, or not yet followed by the header that counts the new rows), and, for writes larger than a
page and for a metrics line (as a full disk leaves it), a part. The parent then resumes the run as `tinygrok
train --resume` does (or runs the sweep again) and compares metrics, snapshots, thetas, the checkpoint's arrays
and meta, and the summary's results with those of a run never interrupted.

By default a fixed selection of moments runs; TINYGROK_KILLS=all kills at every
write of every kind instead (several times longer): `TINYGROK_KILLS=all pytest tests/test_kills.py`.
"""

import json
import math
import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_cli import SMALL

from tinygrok.lab import grids, recipes, reproduction, sweep
from tinygrok.run import runs
from tinygrok.run.runs import CHECKPOINT, METRICS, SNAPSHOTS, SUMMARY, THETAS, Run
from tinygrok.science import config
from tinygrok.science.model import snapshot_dtype, snapshot_layout

CFG = dict(
    max_steps=40, eval_every=10, snapshot_every=5, theta_every=10, probe_every=20, probe_samples=2, **SMALL
)  # 40 steps in 0.15 s
SPEC = recipes.RunSpec(config.preset("classroom", **CFG), "train", "classroom")
KINDS = (METRICS, SNAPSHOTS, THETAS, CHECKPOINT, SUMMARY)
PAGE = 4096
EVERYWHERE = os.environ.get("TINYGROK_KILLS") == "all"


def counted_writes(work) -> list[tuple[str, int]]:
    """(file name, bytes) of every write `work` makes, in order."""
    seen, original = [], runs._write
    runs._write = lambda f, data: (seen.append((Path(f.name).name.removesuffix(".tmp"), len(data))), original(f, data))
    try:
        work()
    finally:
        runs._write = original
    return seen


def killed_inside(work, name: str, nth: int, cut: float) -> bool:
    """Run work() in a forked child that SIGKILLs itself inside its nth write to `name`, after int(cut * bytes)
    of them; whether it died so (False: the work ended first)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            count, original = 0, runs._write

            def write(f, data):
                nonlocal count
                if Path(f.name).name.removesuffix(".tmp") == name:
                    count += 1
                    if count == nth:
                        original(f, data[: int(cut * len(data))])
                        f.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                original(f, data)

            runs._write = write
            work()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def cuts(name: str, size: int) -> tuple:
    """The states a kill can leave a write in: none of it, all of it, and for large writes (and metrics lines,
    as a full disk tears them) a part, cut at a page boundary where there is one."""
    if name == METRICS:
        return 0.0, 0.5, 1.0
    if size > PAGE:
        return 0.0, (size // 2 // PAGE * PAGE) / size, 1.0
    return 0.0, 1.0


def moments(writes: list[tuple[str, int]]) -> list[tuple[str, int, float]]:
    """(file, n-th write to it, cut): every write with TINYGROK_KILLS=all, else the first, a middle and the last
    write of each file, with each of their cuts."""
    chosen = []
    for name in {name for name, _ in writes}:
        sizes = [size for n, size in writes if n == name]
        n = len(sizes)
        picks = range(1, n + 1) if EVERYWHERE else sorted({1, max(n // 2, 1), n})  # n // 2: a row, not a header
        chosen += [(name, nth, cut) for nth in picks for cut in cuts(name, sizes[nth - 1])]
    return sorted(chosen)


def files(path: Path) -> dict:
    """What must not depend on a kill: the rows, the checkpoint's contents but its wall time, the results."""
    params, arrays, meta = Run(path).load_checkpoint()
    for spent in ("wall_seconds", "cpu_seconds", "resumes"):
        meta.pop(spent)
    return {name: (path / name).read_bytes() for name in (METRICS, SNAPSHOTS, THETAS)} | {
        "checkpoint": ({k: v.tobytes() for k, v in {**params, **arrays}.items()}, meta),
        "results": Run(path).summary(),
        "leftovers": sorted(p.name for p in path.iterdir() if p.suffix == ".tmp"),
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("kills") / "whole"
    writes = counted_writes(lambda: recipes.execute(SPEC, path=path))
    return files(path), writes


def test_a_run_killed_inside_any_write_resumes_to_the_same_files(uninterrupted, tmp_path):
    expected, writes = uninterrupted
    chosen = moments(writes)
    assert {name for name, _, _ in chosen} >= {*KINDS, "config.json"} and len(chosen) >= 30
    print(f"{len(chosen)} kills:", ", ".join(f"{name} #{nth} at {cut:.2f}" for name, nth, cut in chosen))
    for i, (name, nth, cut) in enumerate(chosen):
        path = tmp_path / str(i)
        assert killed_inside(lambda: recipes.execute(SPEC, path=path), name, nth, cut), (name, nth, cut)  # noqa: B023
        recipes.execute(SPEC, path=path, existing="resume")  # as tinygrok train --resume
        assert files(path) == expected, (name, nth, cut)


# ---------------------------------------------------------------------- a tiny sweep
SWEEP = [recipes.RunSpec(config.preset("classroom", seed=seed, **CFG), "train", "classroom") for seed in (1, 2)]


def run_sweep(out: Path) -> dict:
    index = sweep.load_index(out, "kills", "", SWEEP)
    # no polls before a run ends: index.json is written once at the start and once per finished run
    return sweep.run_grid(SWEEP, out, index, lambda: ThreadPoolExecutor(1), poll_seconds=60)


def sweep_files(out: Path) -> dict:
    index = json.loads((out / sweep.INDEX).read_text())
    return {"index": index, **{spec.name: files(out / spec.name) for spec in SWEEP}}


def test_a_sweep_killed_inside_any_write_runs_again_to_the_same_files(tmp_path):
    writes = counted_writes(lambda: run_sweep(tmp_path / "whole"))
    expected = sweep_files(tmp_path / "whole")
    n_index = sum(name == sweep.INDEX for name, _ in writes)
    assert n_index == 1 + len(SWEEP)
    chosen = [(sweep.INDEX, nth, cut) for nth in range(1, n_index + 1) for cut in (0.0, 1.0)]
    chosen += [(METRICS, 7, 0.5), (CHECKPOINT, 6, 1.0)]  # inside the second run
    for i, (name, nth, cut) in enumerate(chosen):
        out = tmp_path / str(i)
        assert killed_inside(lambda: run_sweep(out), name, nth, cut), (name, nth, cut)  # noqa: B023 - called here
        run_sweep(out)
        assert sweep_files(out) == expected, (name, nth, cut)
    assert all(entry["state"] == "done" for entry in expected["index"]["runs"].values())


def test_a_torn_last_metrics_line_is_repaired_on_resume_and_named_before(tmp_path):
    path = tmp_path / "run"
    recipes.execute(recipes.RunSpec(SPEC.config.replace(max_steps=20), "train", "classroom"), path=path)
    whole = (path / METRICS).read_bytes()
    (path / METRICS).write_bytes(whole + b'{"step": 30, "train_lo')
    with pytest.raises(runs.RunError, match=r"metrics.jsonl line 4 .*cut short by a kill; resume the run"):
        Run(path).metrics()
    rows = Run(path).truncate_metrics(20)
    assert [r["step"] for r in rows] == [0, 10, 20] and (path / METRICS).read_bytes() == whole


def test_rows_half_appended_to_a_growing_array_are_dropped(tmp_path):
    run = Run.create(tmp_path / "run", SPEC.config)
    width = runs._row_width(SNAPSHOTS, SPEC.config)
    first = np.arange(2 * width, dtype=np.float32).reshape(2, width)
    run.append_rows(SNAPSHOTS, first)
    with open(run.path / SNAPSHOTS, "ab") as f:  # a third row, half written, its header not yet updated
        f.write(first[0, : width // 2].tobytes())
    assert np.array_equal(run.rows(SNAPSHOTS), first)
    run.append_rows(SNAPSHOTS, first[:1])
    assert np.array_equal(run.rows(SNAPSHOTS), np.concatenate([first, first[:1]]))


# ---------------------------------------------------------------------- a slow run carried between machines
SLOW = recipes.RunSpec(
    config.preset(
        "slow",
        max_steps=30,
        eval_every=10,
        snapshot_every=5,
        snapshot_layers=1,
        snapshot_dtype="float16",
        theta_every=30,
        probe_every=10,
        probe_samples=2,
    ),
    "train",
    "slow",
)  # the slow regime's 3-layer model and its recording (grids._slow); its checkpoint is 5.1 MB


def test_a_slow_run_carried_off_a_killed_machine_resumes_to_the_same_files(tmp_path):
    """Killed inside its second checkpoint write; its resume state carried into a records folder (what a working
    period commits), the machine's run directory gone; put back on the next machine over what a partial directory
    held, and resumed, it ends with the files of a run never interrupted. Carrying again what is carried already
    carries nothing."""
    recipes.execute(SLOW, path=tmp_path / "whole")
    machine, folder, here = tmp_path / "machine", tmp_path / "records", tmp_path / "next" / SLOW.name
    assert killed_inside(lambda: recipes.execute(SLOW, path=machine / "slow" / SLOW.name), CHECKPOINT, 2, 0.5)
    carried, left = reproduction.carry(machine, folder)
    assert list(carried) == [SLOW.name] and not left
    assert reproduction.carry(machine, folder) == ({}, {})
    shutil.rmtree(machine)
    here.mkdir(parents=True)
    (here / SUMMARY).write_text('{"stages": ["train"]}')  # a stale file of a directory with no checkpoint
    reproduction.restore([SLOW], here.parent, folder)
    recipes.execute(SLOW, path=here, existing="resume")
    assert files(here) == files(tmp_path / "whole")
    resumed, whole = Run(here), Run(tmp_path / "whole")
    assert (resumed.environment()["resumes"], whole.environment()["resumes"]) == (1, 0)
    assert 0 < whole.environment()["cpu_seconds"] <= 1.2 * whole.environment()["wall_seconds"]  # one core
    _a_slow_run_at_its_cap_fits((tmp_path / "whole" / CHECKPOINT).stat().st_size)


def _a_slow_run_at_its_cap_fits(checkpoint: int) -> None:
    """A slow-regime run at its 650,000-step cap: its checkpoint (this many bytes), its snapshots and its metrics
    rows (at most 500 bytes each) within reproduction.CARRY_LIMIT."""
    for spec in grids.grid("slow"):
        cfg = spec.config
        width = sum(math.prod(shape) for _, shape in snapshot_layout(cfg).values())
        snapshots = (cfg.max_steps // cfg.snapshot_every + 1) * width * snapshot_dtype(cfg).itemsize
        metrics = (cfg.max_steps // cfg.eval_every + 1) * 500
        assert checkpoint + snapshots + metrics <= reproduction.CARRY_LIMIT, (checkpoint, snapshots, metrics)
