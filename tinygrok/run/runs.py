"""The run directory: everything a run writes, written so that a crash loses at most one evaluation interval.

    config.json       the fully resolved Config
    metrics.jsonl     one JSON row per evaluation, appended and flushed row by row
    checkpoint.npz    params (by name), AdamW state, step, RNG states; written to a temp file, then renamed
    summary.json      {"results": ..., "environment": ..., "stages": [...]}: what the run measured (grok steps,
                      accuracies, and after the analysis onset, lead, PC1, ...), apart from where and how fast it ran
                      (versions, BLAS, threads, wall and CPU time, resumptions), and the stages done ("train",
                      then "pca", or "geometry" and "figures")
    snapshots.npy     attention matrices every cfg.snapshot_every steps, appended row by row (a growing .npy:
                      an .npz cannot be appended to, and a 200k-step run holds ~1 GB)
    thetas.npy        all parameters every cfg.theta_every steps, likewise
    pca.json          the trajectory PCA (geometry.py); basis.npy, the execution basis B (P, K) built from it
    geometry.jsonl    the defect's projections at each saved theta (geometry.py)
    hook_basis.npy    the execution basis an intervention's hook uses, given before training (interventions.py)
    NAME.png          the figures (plots.py draws them; Run.figure names their files)

Every module reads and writes these files through a Run: their names live here only.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np

from tinygrok.science.config import Config, ConfigError
from tinygrok.science.model import param_count, snapshot_dtype, snapshot_layout

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"
CHECKPOINT_STREAMS = {"batch_rng": "batches", "probe_rng": "probes", "hook_rng": "hook"}  # key -> data.stream name
SNAPSHOTS, THETAS = "snapshots.npy", "thetas.npy"  # growing (S, D) arrays, one row per snapshot
PCA, BASIS, GEOMETRY = "pca.json", "basis.npy", "geometry.jsonl"
DIMENSIONS = "dimensions.jsonl"  # proj/full against the subspace size at four phases (geometry.dimension_sweep)
HOOK_BASIS = "hook_basis.npy"  # the execution basis an intervention run is given (from its baseline)
_NPY_HEADER_BYTES = 128  # fixed, so the header can be rewritten in place as rows are appended


class RunError(Exception):
    """A run directory cannot be used as asked (exists, missing, corrupt, in use)."""


class WriteError(RunError):
    """A write failed (a full disk, ...); the files as they were before it are intact."""


def _write(f, data: bytes) -> None:
    """Every byte a run writes passes here: one place to see them all (the kill tests stop a process inside it)."""
    f.write(data)


@contextlib.contextmanager
def _failing_as_write_error(path: Path):
    """An OSError while writing `path` becomes a WriteError that names the file and what failed."""
    try:
        yield
    except OSError as err:
        raise WriteError(
            f"could not write {path}: {err.strerror or err}; what was written before is intact, "
            "and the run can be resumed once the cause is fixed"
        ) from None


def _load_npy(path: Path, **how) -> np.ndarray:
    """The array in the .npy file at `path` (np.load's options `how`), or a RunError if it is not one."""
    try:
        return np.load(path, **how)
    except (OSError, ValueError) as err:
        raise RunError(f"{path} cannot be read as a .npy array ({err})") from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file, then rename it over `path`: readers (and a resume after a crash) see the
    old file or the new one, never a mixture. A failed write removes its temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    with _failing_as_write_error(path):
        try:
            with open(tmp, "wb") as f:
                _write(f, data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_header(shape: tuple, dtype) -> bytes:
    """A version-1.0 .npy header padded to exactly _NPY_HEADER_BYTES."""
    text = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    text = text.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _json_lines(rows: list[dict], allow_nan: bool = True) -> bytes:
    return "".join(json.dumps(r, allow_nan=allow_nan) + "\n" for r in rows).encode()


def write_json(path: Path, obj: dict) -> None:
    _write_atomically(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_bytes(path: Path, data: bytes) -> Path:
    _write_atomically(path, data)
    return path


def read_json(path: Path, *keys: str) -> dict:
    """A JSON object from a file, holding `keys`, or a RunError naming it."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} cannot be read as JSON ({err})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path} holds a JSON {type(obj).__name__}, not the object tinygrok writes there")
    if missing := [key for key in keys if key not in obj]:
        raise RunError(f"{path} lacks {', '.join(missing)}: it is not the file tinygrok writes there")
    return obj


class Run:
    """A run directory on disk."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: Path | str, cfg: Config, force: bool = False) -> Run:
        """A new run at `path`; an existing non-empty directory is refused unless `force` (then it is emptied)."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunError(f"{run.path} exists and is not a directory")
        if run.path.exists() and any(run.path.iterdir()):
            if not force:
                raise RunError(
                    f"run directory {run.path} already exists: pass --resume to continue it "
                    "or --force to start it again"
                )
            if not (run.path / CONFIG).is_file():
                raise RunError(f"{run.path} is not empty and not a tinygrok run: refusing to clear it with --force")
            for entry in run.path.iterdir():  # the directory itself stays: a writer's lock is on it
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        run.path.mkdir(parents=True, exist_ok=True)
        write_json(run.path / CONFIG, cfg.to_dict())
        return run

    def config(self) -> Config:
        if not (self.path / CONFIG).is_file():
            raise RunError(f"{self.path} is not a tinygrok run: {CONFIG} is missing")
        try:
            return Config.from_dict(read_json(self.path / CONFIG))
        except ConfigError as err:
            raise RunError(f"{self.path / CONFIG} is not a valid config: {err}") from None

    @contextlib.contextmanager
    def writing(self):
        """Hold the run's lock while writing into it: another process that tries is refused with a RunError.
        The lock is the kernel's (flock on the directory), so a killed process cannot leave it stuck; it is
        re-entrant within a process."""
        with directory_lock(self.path):
            yield self

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, row: dict) -> None:
        path = self.path / METRICS
        with _failing_as_write_error(path), open(path, "ab") as f:
            _write(f, _json_lines([row]))

    def metrics(self) -> list[dict]:
        """The metrics rows; a RunError naming the line that is not one (a torn last line: resume repairs it)."""
        if not self.has(METRICS):
            return []
        return self._metric_rows(self._text(METRICS))

    def truncate_metrics(self, last_step: int) -> list[dict]:
        """Drop rows after `last_step` (they were measured after the checkpoint a resume restarts from), and a
        last line the run was killed while writing."""
        text = self._text(METRICS) if self.has(METRICS) else ""
        complete = text[: text.rfind("\n") + 1]  # a line without its newline was cut short by a kill
        rows = [r for r in self._metric_rows(complete) if r["step"] <= last_step]
        _write_atomically(self.path / METRICS, _json_lines(rows))
        return rows

    def _metric_rows(self, text: str) -> list[dict]:
        rows = self._parse_rows(METRICS, text)
        for number, row in enumerate(rows, 1):
            if not isinstance(row.get("step"), int):
                raise RunError(f"{self.path / METRICS} line {number} is not a metrics row: it has no step")
        return rows

    def _parse_rows(self, name: str, text: str) -> list[dict]:
        """The JSON objects of a .jsonl file, one per line; a RunError naming the first line that is not one."""
        rows = []
        for number, line in enumerate(text.splitlines(keepends=True), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                torn = not line.endswith("\n")  # a kill while the line was written
                raise RunError(
                    f"{self.path / name} line {number} is not a JSON row ({err.msg})"
                    + (": it was cut short by a kill; resume the run to repair it" if torn else "")
                ) from None
            if not isinstance(row, dict):
                raise RunError(f"{self.path / name} line {number} is a JSON {type(row).__name__}, not a row")
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ growing arrays
    def append_rows(self, name: str, rows: np.ndarray) -> None:
        """Append rows (n, D) to the .npy file `name`: data first, then the header's row count, so a crash
        leaves a valid file holding every fully written row. np.load opens it like any .npy."""
        rows, path = np.ascontiguousarray(rows), self.path / name
        if not path.exists():  # created whole, with its first rows, so it never exists without a header
            return _write_atomically(path, _npy_header(rows.shape, rows.dtype) + rows.tobytes())
        n_old = len(self.rows(name, rows.shape[1], rows.dtype))
        with _failing_as_write_error(path), open(path, "r+b") as f:
            f.seek(_NPY_HEADER_BYTES + n_old * rows[0].nbytes)
            _write(f, rows.tobytes())
            f.truncate()
            f.seek(0)
            _write(f, _npy_header((n_old + len(rows),) + rows.shape[1:], rows.dtype))

    def rows(self, name: str, width: int | None = None, dtype=None) -> np.ndarray:
        """The (S, D) array in `name`, memory-mapped (read-only); a RunError if it is not one (of D = `width`
        columns of `dtype`, where given: by default those of the run's config)."""
        path = self.path / name
        rows = _load_npy(path, mmap_mode="r")
        cfg = None if width and dtype else self.config()  # read config.json once, and only when needed
        width, dtype = width or _row_width(name, cfg), np.dtype(dtype or _row_dtype(name, cfg))
        if rows.ndim != 2 or rows.shape[1] != width or rows.dtype != dtype:
            raise RunError(
                f"{path} holds a {rows.dtype} array of shape {rows.shape}, not rows of {width} "
                f"{dtype} values as this run's config.json says"
            )
        return rows

    def truncate_rows(self, name: str, n: int) -> None:
        """Keep the first n rows of `name` (a resume drops snapshots taken after its checkpoint): the header
        first, then the file's end, so a crash in between leaves a valid file."""
        path = self.path / name
        if not path.exists():
            return
        rows = self.rows(name)
        n = min(n, len(rows))
        shape, dtype, row_bytes = (n,) + rows.shape[1:], rows.dtype, rows.shape[1] * rows.dtype.itemsize
        del rows  # release the memory map before resizing the file
        with _failing_as_write_error(path), open(path, "r+b") as f:
            _write(f, _npy_header(shape, dtype))
            f.truncate(_NPY_HEADER_BYTES + n * row_bytes)

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self, params: dict, arrays: dict, meta: dict) -> None:
        """params by name, other arrays (optimizer state), and JSON-able `meta` (step, RNG states, ...)."""
        payload = {f"param:{k}": np.asarray(v) for k, v in params.items()}
        payload.update({k: np.asarray(v) for k, v in arrays.items()})
        payload["meta"] = np.array(json.dumps(meta))
        buffer = io.BytesIO()
        np.savez(buffer, **payload)
        _write_atomically(self.path / CHECKPOINT, buffer.getvalue())

    def load_checkpoint(self) -> tuple[dict, dict, dict]:
        """(params by name, other arrays, meta) from checkpoint.npz; RunError if missing or corrupt."""
        path = self.path / CHECKPOINT
        if not path.is_file():
            raise RunError(f"cannot resume: no checkpoint at {path}")
        try:
            with np.load(path) as z:
                params = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("param:")}
                arrays = {k: z[k] for k in z.files if not k.startswith("param:") and k != "meta"}
                meta = json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
            raise RunError(f"cannot resume: checkpoint {path} is corrupt ({type(err).__name__}: {err})") from None
        return params, arrays, meta

    def has(self, name: str) -> bool:
        """Whether the run has written the file `name` (one of this module's names)."""
        return (self.path / name).exists()

    # ------------------------------------------------------------------ analyses
    def write_pca(self, pca: dict, basis: np.ndarray) -> None:
        write_json(self.path / PCA, pca)
        _write_atomically(self.path / BASIS, _npy_bytes(basis))

    def pca(self) -> dict:
        return self._json(PCA)

    def basis(self) -> np.ndarray:
        """The execution basis B (P, K) the analysis saved."""
        if not self.has(BASIS):
            raise RunError(f"{self.path} has no {BASIS}: run its analysis first (tinygrok pca {self.path})")
        return _load_npy(self.path / BASIS)

    def write_hook_basis(self, basis: np.ndarray) -> None:
        """Give the run the execution basis (P, K) its intervention hook uses (interventions.py)."""
        _write_atomically(self.path / HOOK_BASIS, _npy_bytes(basis))

    def hook_basis(self) -> np.ndarray:
        if not self.has(HOOK_BASIS):
            raise RunError(
                f"{self.path} has no {HOOK_BASIS}, the execution basis its hook needs: run it with "
                "tinygrok intervene, which builds one from a baseline run"
            )
        return _load_npy(self.path / HOOK_BASIS)

    def write_geometry(self, rows: list[dict]) -> None:
        self._write_rows(GEOMETRY, rows)

    def geometry(self) -> list[dict]:
        return self._rows(GEOMETRY)

    def write_dimensions(self, rows: list[dict]) -> None:
        self._write_rows(DIMENSIONS, rows)

    def dimensions(self) -> list[dict]:
        return self._rows(DIMENSIONS)

    def _write_rows(self, name: str, rows: list[dict]) -> None:
        """geometry.jsonl and dimensions.jsonl: an undefined value is null there, never NaN or inf."""
        _write_atomically(self.path / name, _json_lines(rows, allow_nan=False))

    def _rows(self, name: str) -> list[dict]:
        return self._parse_rows(name, self._text(name))

    # ------------------------------------------------------------------ summary
    def record(self, stage: str, results: dict, environment: dict | None = None) -> dict:
        """Add a finished stage's results (and what it ran on) to summary.json; returns all results so far.
        Training comes first: recording it drops whatever an analysis of the unfinished run had recorded."""
        summary = (
            self._summary()
            if self.has(SUMMARY) and stage != "train"
            else {"results": {}, "environment": {}, "stages": []}
        )
        summary["results"].update(results)
        summary["environment"].update(environment or {})
        summary["stages"] = [s for s in summary["stages"] if s != stage] + [stage]
        write_json(self.path / SUMMARY, summary)
        return summary["results"]

    def summary(self) -> dict:
        """What the run measured, so far (summary.json's results)."""
        return self._summary()["results"]

    def environment(self) -> dict:
        """Where and how fast it ran: versions, BLAS, threads, wall and CPU time, resumptions."""
        return self._summary()["environment"]

    def stages(self) -> list[str]:
        """The stages finished: "train", then "pca" (the pca recipe of recipes.py) or "geometry" and "figures" (a
        walkthrough)."""
        return self._summary()["stages"] if self.has(SUMMARY) else []

    def figure(self, name: str) -> Path:
        """Where the figure `name` (plots.FIGURES) is saved."""
        return self.path / f"{name}.png"

    def _summary(self) -> dict:
        return self._json(SUMMARY, "results", "environment", "stages")

    def _text(self, name: str) -> str:
        if not self.has(name):
            raise RunError(f"{self.path} has no {name}")
        try:
            return (self.path / name).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RunError(f"{self.path / name} cannot be read as text ({err})") from None

    def _json(self, name: str, *keys: str) -> dict:
        if not self.has(name):
            raise RunError(f"{self.path} has no {name}")
        return read_json(self.path / name, *keys)


def _row_width(name: str, cfg: Config) -> int:
    """The columns of a growing array: the attention matrices' entries (snapshots) or all parameters (thetas)."""
    if name == SNAPSHOTS:
        return sum(math.prod(shape) for _, shape in snapshot_layout(cfg).values())
    if name == THETAS:
        return param_count(cfg)
    raise ValueError(f"{name} is not one of a run's growing arrays")


def _row_dtype(name: str, cfg: Config) -> np.dtype:
    """The numbers of a growing array: the snapshots' dtype, or the run's (thetas)."""
    return snapshot_dtype(cfg) if name == SNAPSHOTS else np.dtype(cfg.dtype)


_held_locks: dict[Path, tuple[int, int]] = {}  # directory -> (its open descriptor, how many holders here)


@contextlib.contextmanager
def directory_lock(path: Path):
    """An exclusive, non-blocking flock on the directory `path` for the duration (see Run.writing)."""
    key = Path(path).resolve()
    if key not in _held_locks:
        fd = os.open(key, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(
                f"{path} is being written by another process (a training, resume, analysis or sweep): "
                "wait for it to finish, or give this one another directory"
            ) from None
        _held_locks[key] = (fd, 0)
    fd, holders = _held_locks[key]
    _held_locks[key] = (fd, holders + 1)
    try:
        yield
    finally:
        fd, holders = _held_locks[key]
        if holders == 1:
            del _held_locks[key]
            os.close(fd)  # closing the last descriptor releases the lock
        else:
            _held_locks[key] = (fd, holders - 1)
