"""The two intervention protocols (PAPER.md §8.1): on "sibling" batches (the paper's) a run shares its baseline's
init and split and draws other batches from the first update on, so the baseline's execution basis is a sibling
trajectory's; on "own" batches it retraces its baseline until the hook starts, so the basis is its own future
path. Measuring never changes training in either."""
import json

import numpy as np
import pytest

from tinygrok.lab import grids, recipes
from tinygrok.run.runs import CONFIG, METRICS, SNAPSHOTS, Run
from tinygrok.run.train import train
from tinygrok.science.config import ConfigError, preset
from tinygrok.science.model import param_count
from tinygrok.science.pca import random_basis

CFG = preset("classroom", batch_size=64, snapshot_every=1)  # every update's attention weights kept
BASIS = random_basis(param_count(CFG), 16, np.random.default_rng(0)).astype(np.float32)


def trained(path, **changes) -> Run:
    """A classroom run with `changes`, given BASIS, trained to its max_steps."""
    cfg = CFG.replace(**changes)
    run = Run.create(path, cfg)
    run.write_hook_basis(BASIS)
    train(cfg, run)
    return run


def test_an_own_run_retraces_its_baseline_until_the_hook_starts(tmp_path):
    baseline = trained(tmp_path / "baseline", max_steps=501)
    own = trained(tmp_path / "own", max_steps=501, hook="project:s=1.0,start=500", probe_every=100)
    a, b = baseline.rows(SNAPSHOTS), own.rows(SNAPSHOTS)  # (502, 8 d^2): steps 0-501
    assert np.array_equal(a[:500], b[:500])  # after updates 1-499, probes and all: bit for bit
    assert not np.array_equal(a[500], b[500])  # update 500 is the first the hook acts on (start=500)


def test_a_sibling_run_shares_init_and_split_and_draws_other_batches_from_update_one(tmp_path):
    baseline = trained(tmp_path / "baseline", max_steps=3)
    sibling = trained(tmp_path / "sibling", max_steps=3, hook="project:s=0.0", batches="sibling", probe_every=100)
    a, b = baseline.rows(SNAPSHOTS), sibling.rows(SNAPSHOTS)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])  # same init; update 1 differs
    split = ("op", "p", "train_frac", "seed")  # what the split is made of (data.make_dataset)
    assert [getattr(sibling.config(), k) for k in split] == [getattr(baseline.config(), k) for k in split]
    first = json.loads((sibling.path / METRICS).read_text().splitlines()[0])
    assert first["train_acc"] == json.loads((baseline.path / METRICS).read_text().splitlines()[0])["train_acc"]


def test_the_run_name_and_config_json_carry_the_protocol(tmp_path):
    sibling, own = (recipes.intervention("project", 0.5, preset="classroom", **given) for given in ({}, {"batches": "own"}))
    assert sibling.name == "intervene_sibling_classroom_add_s42_hookproject-s0.5-basispca-start500"
    assert own.name == "intervene_own_classroom_add_s42_hookproject-s0.5-basispca-start500"
    assert recipes.baseline(sibling).name == recipes.baseline(own).name == "classroom_add_s42_max_steps15000"
    assert recipes.baseline(sibling).config.batches == "own"  # one baseline: the seed's batches
    Run.create(tmp_path / "run", sibling.config)
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["batches"] == "sibling"
    with pytest.raises(ConfigError, match="--batches='mine' is invalid: must be own or sibling"):
        CFG.replace(batches="mine")


def test_a_run_directory_from_before_the_setting_reads_and_resumes_as_own(tmp_path):
    whole = trained(tmp_path / "whole", max_steps=200)
    old = trained(tmp_path / "old", max_steps=100)
    saved = json.loads((old.path / CONFIG).read_text())
    del saved["batches"]
    (old.path / CONFIG).write_text(json.dumps(saved))
    assert old.config().batches == "own"
    train(old.config().replace(max_steps=200), old, resume=True)
    assert (old.path / METRICS).read_bytes() == (whole.path / METRICS).read_bytes()


def test_the_grids_run_the_sibling_protocol_unless_asked_for_own_and_filter_by_arm_and_dose():
    default = grids.grid("dose-response", grids.Filters(ops=("add",), seeds=(42,), doses=(0.5,)))
    own = grids.grid("dose-response", grids.Filters(ops=("add",), seeds=(42,), doses=(0.5,), batches="own"))
    for specs, batches in ((default, "sibling"), (own, "own")):
        assert [(s.recipe, s.config.batches, s.config.hook) for s in specs] == [
            ("pca", "own", "none"), ("intervene", batches, "project:s=0.0,basis=pca,start=500"),
            ("intervene", batches, "project:s=0.5,basis=pca,start=500")]  # s = 0 kept: the delays' reference
    arms = grids.grid("interventions-add", grids.Filters(seeds=(42,), arms=("kick",), doses=(10.0, 0.1)))
    assert [(s.recipe, s.config.hook) for s in arms] == [  # the baseline, and kick alone: no noise at 0.1, no none
        ("pca", "none"), ("intervene", "kick:alpha=10.0,basis=pca,start=500,samples=9")]
    with pytest.raises(ConfigError, match="--batches sets the intervention runs' batches: table1 has none"):
        grids.grid("table1", grids.Filters(batches="own"))
