"""The three intervention protocols (docs/differences.md): on "shifted" batches (the reference code's) update k
trains on the baseline's batch k + 2K ceil(k / probe_every), as the reference's probes take two batches a sample
from its training stream; on "sibling" batches a run shares its baseline's init and split and draws other batches
from the first update on; on "own" batches it retraces its baseline until the hook starts, and measuring never
changes training."""

import json
import math

import numpy as np
import pytest

from tinygrok.lab import grids, recipes
from tinygrok.run import train as training
from tinygrok.run.runs import CONFIG, METRICS, SNAPSHOTS, Run
from tinygrok.run.train import train
from tinygrok.science.config import ConfigError, preset
from tinygrok.science.data import make_dataset, sample_batch, stream
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


def baseline_batch_numbers(monkeypatch, cfg, runs) -> list[int]:
    """Which of the baseline's batches (numbered from 1, as its updates) each update trains on, in order, over the
    training calls `runs` makes: derived from the streams by matching every batch drawn for an update against the
    seed's own batch stream."""
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    rng = stream(cfg.seed, "batches")
    number = {sample_batch(data, cfg.batch_size, rng)[0].tobytes(): k for k in range(1, 1000)}
    drawn = []

    def recording(*args):
        batch = sample_batch(*args)
        drawn.append(number[batch[0].tobytes()])
        return batch

    monkeypatch.setattr(training, "sample_batch", recording)
    runs()
    return drawn


@pytest.mark.parametrize("hook, extra", [("project:s=0.5,start=5", 0), ("kick:alpha=1.0,start=15,samples=1", 4)])
def test_a_shifted_run_trains_on_the_baseline_batch_k_plus_2K_ceil_k_over_probe_every_through_a_resume(
    tmp_path, monkeypatch, hook, extra
):
    """K = 3 samples every 10 updates: 6 batches skipped at step 0 and after every probe. A kick's samples skip
    theirs too (the reference drew them from its training stream): 2 x (1 + 1) after update 15."""
    cfg = CFG.replace(
        batch_size=16,
        eval_every=10,
        probe_every=10,
        probe_samples=3,
        hook=hook,
        batches="shifted",
        snapshot_every=0,
        max_steps=25,
    )
    run = Run.create(tmp_path / "run", cfg)
    run.write_hook_basis(BASIS)
    drawn = baseline_batch_numbers(
        monkeypatch, cfg, lambda: (train(cfg, run), train(cfg.replace(max_steps=45), run, resume=True))
    )
    expected = [k + 2 * 3 * math.ceil(k / 10) + (extra if k > 15 else 0) for k in range(1, 46)]
    assert drawn == expected  # 25 updates, killed (its checkpoint at 25), then 20 more after the resume


def test_a_sibling_run_shares_init_and_split_and_draws_other_batches_from_update_one(tmp_path):
    baseline = trained(tmp_path / "baseline", max_steps=3)
    sibling = trained(
        tmp_path / "sibling", max_steps=3, hook="project:s=0.0,start=1", batches="sibling", probe_every=100
    )
    a, b = baseline.rows(SNAPSHOTS), sibling.rows(SNAPSHOTS)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])  # same init; update 1 differs
    split = ("op", "p", "train_frac", "seed")  # what the split is made of (data.make_dataset)
    assert [getattr(sibling.config(), k) for k in split] == [getattr(baseline.config(), k) for k in split]
    first = json.loads((sibling.path / METRICS).read_text().splitlines()[0])
    assert first["train_acc"] == json.loads((baseline.path / METRICS).read_text().splitlines()[0])["train_acc"]


def test_the_run_name_and_config_json_carry_the_protocol(tmp_path):
    shifted, own = (
        recipes.intervention("project", 0.5, preset="classroom", **given) for given in ({}, {"batches": "own"})
    )
    assert shifted.name == "intervene_shifted_classroom_add_s42_hookproject-s0.5-basispca-start500"
    assert own.name == "intervene_own_classroom_add_s42_hookproject-s0.5-basispca-start500"
    assert recipes.baseline(shifted).name == recipes.baseline(own).name == "classroom_add_s42_max_steps15000"
    assert recipes.baseline(shifted).config.batches == "own"  # one baseline: the seed's batches, no probes
    Run.create(tmp_path / "run", shifted.config)
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["batches"] == "shifted"
    with pytest.raises(ConfigError, match="--batches='mine' is invalid: must be own or shifted or sibling"):
        CFG.replace(batches="mine")


def test_the_grids_run_the_shifted_protocol_unless_asked_for_another_and_filter_by_arm_and_dose():
    default = grids.grid("dose-response", grids.Filters(ops=("add",), seeds=(42,), doses=(0.5,)))
    own = grids.grid("dose-response", grids.Filters(ops=("add",), seeds=(42,), doses=(0.5,), batches="own"))
    for specs, batches in ((default, "shifted"), (own, "own")):
        assert [(s.recipe, s.config.batches, s.config.hook) for s in specs] == [
            ("pca", "own", "none"),
            ("intervene", batches, "project:s=0.0,basis=pca,start=500"),
            ("intervene", batches, "project:s=0.5,basis=pca,start=500"),
        ]  # s = 0 kept: the delays' reference
    arms = grids.grid("interventions-add", grids.Filters(seeds=(42,), arms=("kick",), doses=(10.0, 0.1)))
    assert [(s.recipe, s.config.hook) for s in arms] == [  # the baseline, and kick alone: no noise at 0.1, no none
        ("pca", "none"),
        ("intervene", "kick:alpha=10.0,basis=pca,start=500,samples=9"),
    ]
    with pytest.raises(ConfigError, match="--batches sets the intervention runs' batches: table1 has none"):
        grids.grid("table1", grids.Filters(batches="own"))
