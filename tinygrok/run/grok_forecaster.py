"""The grok-step forecaster as shipped (science/forecast.py, fitted on stored runs): a run's record, its replay,
and what it ships as beside this module: forecaster.json (the coefficients, the model it applies to, the runs it
was fitted on), forecast_runs.jsonl.gz (those runs' records, so a refit needs no run directories: `tinygrok
forecast-fit`), and forecast_held_out/ (the records of the runs it is scored on and was never fitted on: `tinygrok
forecast-score`).

Training does not show the forecast live: on the held-out runs it does not beat the learning rate alone
(docs/forecast.md, forecast_scoring.decision)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
from pathlib import Path

from tinygrok.run.runs import Run, RunError, read_json, write_json
from tinygrok.science.analysis import first_step
from tinygrok.science.config import Config
from tinygrok.science.forecast import ROW_KEYS, Forecast, Forecaster, Record

SHIPPED = Path(__file__).with_name("forecaster.json")
RECORDS = Path(__file__).with_name("forecast_runs.jsonl.gz")
HELD_OUT_RECORDS = Path(__file__).with_name("forecast_held_out")  # the records (lab/records.py) of runs it never saw
MODEL_KEYS = (
    "p",
    "train_frac",
    "n_layers",
    "d_model",
    "n_heads",
    "d_ff",
    "batch_size",
    "eval_every",
    "probe_every",
)  # what must match for a fitted forecaster to apply to a run


def model_of(cfg: Config) -> dict:
    return {key: getattr(cfg, key) for key in MODEL_KEYS}


def mismatch(cfg: Config, model: dict) -> str | None:
    """Why a forecaster fitted on `model` does not apply to a run of cfg, or None if it does."""
    if not cfg.probe_every:
        return "the run has no curvature probes (the forecaster reads the defect: --probe-every 100)"
    differ = [
        f"{key} {getattr(cfg, key)} (fitted: {model[key]})" for key in MODEL_KEYS if getattr(cfg, key) != model[key]
    ]
    return f"the forecaster was fitted on another model: {', '.join(differ)}" if differ else None


def record_of(run: Run) -> Record:
    """The run's record (a RunError, in one line, if it has no probes or no metrics)."""
    return from_rows(run.path.name, run.config(), run.metrics(), str(run.path))


def from_rows(name: str, cfg: Config, rows: list[dict], where: str) -> Record:
    """The forecaster's record of a run from its config and metric rows (`where` names it in a RunError)."""
    try:
        probed = [{key: r[key] for key in ROW_KEYS} for r in rows if r.get("defect") is not None]
    except KeyError as err:
        raise RunError(f"{where} has a probed metrics row without {err}") from None
    if not probed:
        raise RunError(
            f"{where} has no curvature probes: the forecaster reads the defect (train it with --probe-every 100)"
        )
    return Record(name, cfg.op, cfg.seed, cfg.lr, cfg.weight_decay, first_step(rows, "test_acc", 0.9), tuple(probed))


@functools.lru_cache(maxsize=1)
def shipped() -> tuple[Forecaster, dict]:
    """The shipped forecaster and the model it applies to."""
    data = read_json(SHIPPED)
    return Forecaster(*(tuple(data[k]) for k in ("a", "b", "interval", "runs"))), data["model"]


def replay(run: Run) -> tuple[Record, list[Forecast | None]]:
    """The run's record and the shipped forecaster's forecast after each of its probes, as someone watching would have
    shown them (a RunError, in one line, where the forecaster does not apply to the run)."""
    if why := mismatch(run.config(), shipped()[1]):
        raise RunError(f"cannot forecast {run.path}: {why}")
    rec = record_of(run)
    return rec, replay_record(rec)


def replay_record(rec: Record) -> list[Forecast | None]:
    """The shipped forecaster's forecast after each probe of a record."""
    return shipped()[0].forecasts(rec.rows, rec.lr, rec.weight_decay)


def write_shipped(forecaster: Forecaster, model: dict, records: list[Record], folder: Path) -> list[Path]:
    """forecaster.json and forecast_runs.jsonl.gz into folder (the package's own, for the shipped data)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SHIPPED.name, {**dataclasses.asdict(forecaster), "model": model})
    lines = "".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in records)
    (folder / RECORDS.name).write_bytes(gzip.compress(lines.encode(), mtime=0))
    return [folder / SHIPPED.name, folder / RECORDS.name]


def shipped_records(path: Path = RECORDS) -> list[Record]:
    """The records the shipped forecaster was fitted on."""
    try:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        return [Record(**{**(d := json.loads(line)), "rows": tuple(d["rows"])}) for line in lines]
    except (OSError, EOFError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
        raise RunError(f"{path} holds no forecaster's run records (a forecast_runs.jsonl.gz): {err}") from None
