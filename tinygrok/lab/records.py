"""A finished run's record: everything the reports and the results page read of a run, in one small file.

A record holds the run's name, recipe and preset, its config, its summary (results, environment, stages), its
metric rows and its geometry rows (the environment names the code's commit and the machine it ran on); no
checkpoint, snapshot or saved parameters, so a few KB gzipped. Records live where run directories do not survive
(docs/records/ in the repository): one file a run, named after it, and different specs never share a name, so
records from other machines, days or a cluster's workers merge by sitting in one folder. Reports and the results
page read records, never the run directories behind them.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tinygrok.lab import recipes
from tinygrok.run.runs import GEOMETRY, Run, RunError, write_bytes
from tinygrok.science.config import Config, ConfigError

SUFFIX = ".json.gz"
KEYS = ("name", "recipe", "preset", "config", "results", "environment", "stages", "metrics", "geometry")


def of_run(path: Path, recipe: str) -> dict:
    """The record of the finished run in `path`, which ran `recipe`."""
    run = Run(path)
    spec = recipes.saved_spec(path, recipe)
    return {
        "name": path.name,
        "recipe": recipe,
        "preset": spec.preset,
        "config": spec.config.to_dict(),
        "results": run.summary(),
        "environment": run.environment(),
        "stages": run.stages(),
        "metrics": run.metrics(),
        "geometry": run.geometry() if run.has(GEOMETRY) else [],
    }


def save(record: dict, folder: Path) -> Path:
    """Write `record` into `folder` as NAME.json.gz, atomically; the same record always gives the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    path = folder / (record["name"] + SUFFIX)
    write_bytes(path, gzip.compress(text, mtime=0))
    return path


def load(path: Path) -> dict:
    """The record in `path`; a RunError in one line if it is not a tinygrok run's record or cannot be read."""
    try:
        record = json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, EOFError, ValueError) as err:
        raise RunError(f"{path} is not a readable run record ({err})") from None
    missing = [key for key in KEYS if key not in record] if isinstance(record, dict) else list(KEYS)
    if missing:
        raise RunError(f"{path} is not a tinygrok run record: it has no {', '.join(missing)}")
    try:
        Config.from_dict(record["config"])
    except ConfigError as err:
        raise RunError(f"{path} is not a tinygrok run record: its config is invalid ({err})") from None
    if Path(path).name != record["name"] + SUFFIX:
        raise RunError(f"{path} holds the record of {record['name']}: its file must be named {record['name']}{SUFFIX}")
    return record


def load_all(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """Every record in `folder` by run name, and one line for each file there that is not a readable record (left
    as it is)."""
    records, problems = {}, []
    for path in sorted(Path(folder).glob("*" + SUFFIX)):
        try:
            record = load(path)
        except RunError as err:
            problems.append(str(err))
            continue
        records[record["name"]] = record
    return records, problems
