"""The run directory: everything a run writes, written so that a crash loses at most one evaluation interval.

    config.json       the fully resolved Config
    metrics.jsonl     one JSON row per evaluation, appended and flushed row by row
    checkpoint.npz    params (by name), AdamW state, step, RNG states; written to a temp file, then renamed
    summary.json      {"results": ..., "environment": ..., "stages": [...]}: what the run measured (grok steps,
                      accuracies, and after the analysis onset, lead, PC1, ...), apart from where and how fast it ran
                      (versions, BLAS, threads, wall time), and the stages done ("train", then "pca", or
                      "geometry" and "figures")
    snapshots.npy     attention matrices every cfg.snapshot_every steps, appended row by row (a growing .npy,
                      not DESIGN.md's .npz: an .npz cannot be appended to, and a 200k-step run holds ~1 GB)
    thetas.npy        all parameters every cfg.theta_every steps, likewise
    pca.json          the trajectory PCA (geometry.py); basis.npy, the execution basis B (P, K) built from it
    geometry.jsonl    the defect's projections at each saved theta (geometry.py)
    hook_basis.npy    the execution basis an intervention's hook uses, given before training (interventions.py)
    NAME.png          the figures (plots.py draws them; Run.figure names their files)

Every module reads and writes these files through a Run: their names live here only.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np

from tinygrok.config import Config, ConfigError

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"
SNAPSHOTS, THETAS = "snapshots.npy", "thetas.npy"  # growing (S, D) arrays, one row per snapshot
PCA, BASIS, GEOMETRY = "pca.json", "basis.npy", "geometry.jsonl"
DIMENSIONS = "dimensions.jsonl"  # proj/full against the subspace size at four phases (geometry.dimension_sweep)
HOOK_BASIS = "hook_basis.npy"  # the execution basis an intervention run is given (from its baseline)
_NPY_HEADER_BYTES = 128  # fixed, so the header can be rewritten in place as rows are appended


class RunError(Exception):
    """A run directory cannot be used as asked (exists, missing, corrupt)."""


def _write_atomically(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp over `path`: readers never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.save(f, array)

    _write_atomically(path, write)


def _npy_header(shape: tuple, dtype) -> bytes:
    """A version-1.0 .npy header padded to exactly _NPY_HEADER_BYTES."""
    text = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    text = text.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def write_json(path: Path, obj: dict) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def write_text(path: Path, text: str) -> Path:
    _write_atomically(path, lambda tmp: tmp.write_text(text))
    return path


def read_json(path: Path) -> dict:
    """A JSON file, or a RunError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} cannot be read as JSON ({err})") from None


class Run:
    """A run directory on disk."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: Path | str, cfg: Config, force: bool = False) -> "Run":
        """A new run at `path`; an existing non-empty directory is refused unless `force` (then it is cleared)."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunError(f"{run.path} exists and is not a directory")
        if run.path.exists() and any(run.path.iterdir()):
            if not force:
                raise RunError(f"run directory {run.path} already exists: pass --resume to continue it "
                               "or --force to start it again")
            if not (run.path / CONFIG).is_file():
                raise RunError(f"{run.path} is not empty and not a tinygrok run: refusing to clear it with --force")
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        write_json(run.path / CONFIG, cfg.to_dict())
        return run

    @classmethod
    def open(cls, path: Path | str) -> "Run":
        """An existing run, refused with a clear message if its config or checkpoint is missing or unreadable."""
        run = cls(path)
        run.config()  # validates
        run.load_checkpoint()  # validates
        return run

    def config(self) -> Config:
        if not (self.path / CONFIG).is_file():
            raise RunError(f"{self.path} is not a tinygrok run: {CONFIG} is missing")
        try:
            saved = json.loads((self.path / CONFIG).read_text())
            if isinstance(saved, dict) and "batch_shards" not in saved:  # tinygrok 0.1 cut batches by --threads
                saved["batch_shards"] = self._checkpoint_meta().get("batch_shards", 1)
            return Config.from_dict(saved)
        except (json.JSONDecodeError, TypeError, ConfigError) as err:
            raise RunError(f"{self.path / CONFIG} is not a valid config: {err}") from None

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, row: dict) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_step: int) -> list[dict]:
        """Drop rows after `last_step` (they were measured after the checkpoint a resume restarts from)."""
        rows = [r for r in self.metrics() if r["step"] <= last_step]
        _write_atomically(self.path / METRICS, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))
        return rows

    # ------------------------------------------------------------------ growing arrays
    def append_rows(self, name: str, rows: np.ndarray) -> None:
        """Append rows (n, D) to the .npy file `name`: data first, then the header's row count, so a crash
        leaves a valid file holding every fully written row. np.load opens it like any .npy."""
        rows = np.ascontiguousarray(rows)
        path = self.path / name
        n_old = len(self.rows(name)) if path.exists() else 0
        with open(path, "r+b" if path.exists() else "w+b") as f:
            f.seek(_NPY_HEADER_BYTES + n_old * rows[0].nbytes)
            f.write(rows.tobytes())
            f.truncate()
            f.seek(0)
            f.write(_npy_header((n_old + len(rows),) + rows.shape[1:], rows.dtype))

    def rows(self, name: str) -> np.ndarray:
        """The (S, D) array in `name`, memory-mapped (read-only)."""
        return np.load(self.path / name, mmap_mode="r")

    def truncate_rows(self, name: str, n: int) -> None:
        """Keep the first n rows of `name` (a resume drops snapshots taken after its checkpoint): the header
        first, then the file's end, so a crash in between leaves a valid file."""
        path = self.path / name
        if not path.exists():
            return
        rows = self.rows(name)
        n = min(n, len(rows))
        shape, dtype, row_bytes = (n,) + rows.shape[1:], rows.dtype, rows[0].nbytes if len(rows) else 0
        del rows  # release the memory map before resizing the file
        with open(path, "r+b") as f:
            f.write(_npy_header(shape, dtype))
            f.truncate(_NPY_HEADER_BYTES + n * row_bytes)

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self, params: dict, arrays: dict, meta: dict) -> None:
        """params by name, other arrays (optimizer state), and JSON-able `meta` (step, RNG states, ...)."""
        payload = {f"param:{k}": np.asarray(v) for k, v in params.items()}
        payload.update({k: np.asarray(v) for k, v in arrays.items()})
        payload["meta"] = np.array(json.dumps(meta))

        def write(tmp: Path):
            with open(tmp, "wb") as f:
                np.savez(f, **payload)

        _write_atomically(self.path / CHECKPOINT, write)

    def _checkpoint_meta(self) -> dict:
        """The checkpoint's meta (empty without a readable one), without loading its arrays."""
        try:
            with np.load(self.path / CHECKPOINT) as z:
                return json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
            return {}

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
        _save_npy(self.path / BASIS, basis)

    def pca(self) -> dict:
        return self._json(PCA)

    def basis(self) -> np.ndarray:
        """The execution basis B (P, K) the analysis saved."""
        if not self.has(BASIS):
            raise RunError(f"{self.path} has no {BASIS}: run its analysis first (tinygrok pca {self.path})")
        return np.load(self.path / BASIS)

    def write_hook_basis(self, basis: np.ndarray) -> None:
        """Give the run the execution basis (P, K) its intervention hook uses (interventions.py)."""
        _save_npy(self.path / HOOK_BASIS, basis)

    def hook_basis(self) -> np.ndarray:
        if not self.has(HOOK_BASIS):
            raise RunError(f"{self.path} has no {HOOK_BASIS}, the execution basis its hook needs: run it with "
                           "tinygrok intervene, which builds one from a baseline run")
        return np.load(self.path / HOOK_BASIS)

    def write_geometry(self, rows: list[dict]) -> None:
        self._write_rows(GEOMETRY, rows)

    def geometry(self) -> list[dict]:
        return self._rows(GEOMETRY)

    def write_dimensions(self, rows: list[dict]) -> None:
        self._write_rows(DIMENSIONS, rows)

    def dimensions(self) -> list[dict]:
        return self._rows(DIMENSIONS)

    def _write_rows(self, name: str, rows: list[dict]) -> None:
        _write_atomically(self.path / name, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))

    def _rows(self, name: str) -> list[dict]:
        return [json.loads(line) for line in self._text(name).splitlines() if line.strip()]

    # ------------------------------------------------------------------ summary
    def record(self, stage: str, results: dict, environment: dict | None = None) -> dict:
        """Add a finished stage's results (and what it ran on) to summary.json; returns all results so far.
        Training comes first: recording it drops whatever an analysis of the unfinished run had recorded."""
        summary = self._summary() if self.has(SUMMARY) and stage != "train" else {"results": {}, "environment": {},
                                                                                   "stages": []}
        summary["results"].update(results)
        summary["environment"].update(environment or {})
        summary["stages"] = [s for s in summary["stages"] if s != stage] + [stage]
        write_json(self.path / SUMMARY, summary)
        return summary["results"]

    def summary(self) -> dict:
        """What the run measured, so far (summary.json's results)."""
        return self._summary()["results"]

    def environment(self) -> dict:
        """Where and how fast it ran: versions, BLAS, threads, wall time."""
        return self._summary()["environment"]

    def stages(self) -> list[str]:
        """The stages finished: "train", then "pca" (experiments' pca recipe) or "geometry" and "figures" (a
        walkthrough)."""
        return self._summary()["stages"] if self.has(SUMMARY) else []

    def figure(self, name: str) -> Path:
        """Where the figure `name` (plots.FIGURES) is saved."""
        return self.path / f"{name}.png"

    def _summary(self) -> dict:
        summary = self._json(SUMMARY)
        if "results" not in summary:  # tinygrok 0.1 wrote one flat dict, at the end of training (and analysis)
            return {"results": summary, "environment": {}, "stages": ["train"]}
        return summary

    def _text(self, name: str) -> str:
        if not self.has(name):
            raise RunError(f"{self.path} has no {name}")
        return (self.path / name).read_text()

    def _json(self, name: str) -> dict:
        if not self.has(name):
            raise RunError(f"{self.path} has no {name}")
        return read_json(self.path / name)
