"""A run's record (records.py): what reports read of a run, written once, read back equal, merged by name; a file
that is not a record is named in one line and left as it is."""

import gzip
import math

import pytest

from tinygrok.lab import records, sweep_report
from tinygrok.run.runs import RunError
from tinygrok.science.config import preset

CONFIG = preset("classroom", seed=7).to_dict()


def record(name="classroom_add_s7", grok_step=1400, **changes) -> dict:
    return {
        "name": name,
        "recipe": "train",
        "preset": "classroom",
        "config": CONFIG,
        "results": {"grok_step": grok_step, "steps": 1500},
        "environment": {"wall_seconds": 12.5},
        "stages": ["train"],
        "metrics": [{"step": 0, "test_acc": 0.01}, {"step": 100, "test_acc": float("nan")}],
        "geometry": [],
        **changes,
    }


def test_a_record_is_read_back_as_written_and_the_same_record_gives_the_same_bytes(tmp_path):
    path = records.save(record(), tmp_path / "a")
    again = records.save(record(), tmp_path / "b")
    assert path.read_bytes() == again.read_bytes() and path.name == "classroom_add_s7.json.gz"
    back, written = records.load(path), record()
    assert {key: back[key] for key in written if key != "metrics"} == {
        k: v for k, v in written.items() if k != "metrics"
    }
    assert back["metrics"][0] == {"step": 0, "test_acc": 0.01} and back["metrics"][1]["step"] == 100
    assert math.isnan(back["metrics"][1]["test_acc"])  # a NaN (a diverged run's) survives the record
    (run,) = sweep_report.recorded_runs(tmp_path / "a")[0]
    assert (run["seed"], run["grok_step"], run["preset_lr"], run["wall_seconds"]) == (7, 1400, True, 12.5)


def test_records_from_two_folders_merge_by_name_and_a_foreign_or_corrupt_file_gets_one_line(tmp_path):
    folder = tmp_path / "records"
    records.save(record(), folder)
    records.save(record("classroom_add_s8", 1500), folder)
    (folder / "broken.json.gz").write_bytes(b"not gzip")
    (folder / "foreign.json.gz").write_bytes(gzip.compress(b'{"name": "foreign"}'))
    found, problems = records.load_all(folder)
    assert sorted(found) == ["classroom_add_s7", "classroom_add_s8"]
    assert len(problems) == 2 and all("\n" not in line for line in problems)
    assert "broken.json.gz is not a readable run record" in problems[0]
    assert "foreign.json.gz is not a tinygrok run record: it has no recipe, preset, config" in problems[1]
    assert (folder / "broken.json.gz").read_bytes() == b"not gzip"  # left as it was


def test_a_record_under_another_name_is_refused(tmp_path):
    path = records.save(record(), tmp_path)
    path.rename(tmp_path / "other.json.gz")
    with pytest.raises(RunError, match="holds the record of classroom_add_s7"):
        records.load(tmp_path / "other.json.gz")


def test_a_config_written_before_the_snapshot_options_loads_with_their_defaults():
    """Records and run directories from before snapshot_layers and snapshot_dtype existed (docs/records) load as
    the runs they were: every layer, in the run's dtype."""
    from tinygrok.science.config import ADDED_SINCE_RECORDS, Config

    old = {k: v for k, v in Config().to_dict().items() if k not in ADDED_SINCE_RECORDS}
    assert Config.from_dict(old) == Config()
    assert (Config().snapshot_layers, Config().snapshot_dtype) == (0, "same")
