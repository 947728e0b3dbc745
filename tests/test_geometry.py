"""A run's geometry end to end, on a small probed run: files written, numbers in range, figures drawn."""

import json
import math
import shutil

import numpy as np
import pytest
from test_commutator import random_projection_tolerance

from tinygrok.run import geometry, plots
from tinygrok.run.runs import GEOMETRY, METRICS, SUMMARY, Run, RunError
from tinygrok.run.train import train
from tinygrok.science import undefined
from tinygrok.science.config import Config
from tinygrok.science.model import param_count

CFG = Config(
    p=11,
    d_model=16,
    n_heads=2,
    d_ff=32,
    batch_size=32,
    eval_every=10,
    max_steps=200,
    snapshot_every=20,
    theta_every=50,
    probe_every=20,
    probe_samples=3,
)


def said_to_grok(run: Run) -> Run:
    """The run, its metrics rewritten to say it memorized at step 40 and grokked from step 120 (detection at 140)."""
    rows = [
        {**r, "train_acc": 1.0 if r["step"] >= 40 else 0.1, "test_acc": 1.0 if r["step"] >= 120 else 0.1}
        for r in run.metrics()
    ]
    (run.path / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    run = Run.create(tmp_path_factory.mktemp("runs") / "geo", CFG)
    train(CFG, run)
    return run, geometry.analyse(run, k=3)[0]


def test_summary_gains_the_geometry_numbers(analysed):
    run, summary = analysed
    assert set(summary["pc1"]) == {f"blocks.{layer}.W_{m}" for layer in (0, 1) for m in "QKVO"}
    assert all(0 < v <= 1 for v in summary["pc1"].values())
    assert summary["baseline_defect"] > 0 and summary["defect_growth_run"] >= summary["defect_growth"] >= 1
    rows = run.geometry()
    assert [r["step"] for r in rows] == [0, 50, 100, 150, 200]
    k_exec, p = CFG.n_layers * 4 * 2, param_count(CFG)
    for r in rows:
        assert math.sqrt(1 - 0.5) < r["exec_rho"] <= 1  # most of the defect lies outside a 16-dim subspace
        # random K-dim subspaces catch about sqrt(K/P) of a vector: the median sample's mean over 5 bases
        assert r["exec_random_proj"] == pytest.approx(math.sqrt(k_exec / p), rel=random_projection_tolerance(k_exec, 5))
    assert [r["step"] for r in rows if "alignment_ratio" in r] == [200]  # a step of 200, as the reference's (§6.5)
    assert summary == json.loads((run.path / SUMMARY).read_text())["results"] == run.summary()
    assert run.stages() == ["train", "geometry"] and "wall_seconds" in run.environment()
    assert (run.path / GEOMETRY).exists() and run.basis().shape == (param_count(CFG), k_exec)


def test_execution_basis_spans_the_snapshot_motion(analysed):
    """B's top components come from the snapshots: B captures most of the attention weights' net motion."""
    run, _ = analysed
    _, basis = geometry.analyse_pca(run)
    thetas = run.rows("thetas.npy")
    motion = np.asarray(thetas[-1], dtype=np.float64) - np.asarray(thetas[0], dtype=np.float64)
    from tinygrok.science.model import attention_layout

    mask = np.zeros(motion.size, dtype=bool)
    for start, shape in attention_layout(CFG).values():
        mask[start : start + shape[0] * shape[1]] = True
    attn_motion = np.where(mask, motion, 0.0)
    captured = np.linalg.norm(basis.T @ attn_motion) / np.linalg.norm(attn_motion)
    assert captured > 0.8


def test_every_figure_is_drawn(analysed):
    run, _ = analysed
    names = {p.name for p in plots.save_all(run.path)}
    assert names == {"training.png", "defect.png", "explained_variance.png", "trajectory.png", "projections.png"}
    assert all((run.path / n).stat().st_size > 10_000 for n in names)


def test_the_dimension_sweep_grows_with_the_subspace_at_four_phases(analysed, tmp_path):
    """On a copy of the small run whose metrics say it memorized at step 40 and grokked (detection at 140):
    one row per phase and size; nested subspaces catch more of each defect as k grows; random bases about
    sqrt(K/P) (P is small, so roughly); the file and its figure written. A run that never grokked is refused."""
    run, _ = analysed
    with pytest.raises(RunError, match="memorized and grokked"):
        geometry.dimension_sweep(run, ks=(1,))
    copy = said_to_grok(Run(shutil.copytree(run.path, tmp_path / "grokked")))
    got = geometry.dimension_sweep(copy, ks=(1, 2, 4), k_samples=2, n_random=2)
    assert [(r["phase"], r["step"], r["K"]) for r in got[::3]] == [
        ("early", 200, 8),
        ("memorization", 0, 8),
        ("detection", 100, 8),
        ("detection + 500", 200, 8),
    ]
    assert [r["K"] for r in got[:3]] == [8, 16, 32] and copy.dimensions() == got
    for phase in range(4):
        for key in ("weight_svd", "pca"):
            values = [r[key] for r in got[3 * phase : 3 * phase + 3]]
            assert values == sorted(values) and 0 < values[-1] <= 1
    for r in got:  # the mean of 2 samples (their median) over 2 bases: 4 values
        assert r["theory"] == math.sqrt(r["K"] / param_count(CFG))
        assert r["random"] == pytest.approx(r["theory"], rel=random_projection_tolerance(r["K"], 4))
    assert plots.save(copy, "dimensions").stat().st_size > 10_000


def test_the_headline_ratios_are_medians_over_the_memorization_phase_and_rho_over_every_theta(analysed, tmp_path):
    run, _ = analysed
    copy = said_to_grok(Run(shutil.copytree(run.path, tmp_path / "copy")))  # memorizing: the thetas at 50 and 100
    made = [
        {
            "step": s,
            "defect": 10.0,
            "exec_rho": 0.9 + s / 1e4,
            "exec_random_ratio": i,
            "weight_svd_random_ratio": 10 + i,
        }
        for i, s in enumerate((0, 50, 100, 150, 200))
    ]
    summary = geometry.summarise(copy, geometry.analyse_pca(copy)[0], made)
    assert summary["pca_snapshots"] == 8  # steps 0, 20, ..., 140: up to detection, not the 11 the run took
    assert (summary["exec_random_ratio"], summary["exec_random_ratio_weight_svd"]) == (1.5, 11.5)  # of 1, 2; 11, 12
    assert summary["memorization_phase_probes"] == 2 and summary["rho"] == pytest.approx(0.91)  # over all five
    assert summary["exec_random_by_defect"] == {"5-15": 1.5, "15-30": None, ">=30": None}
    assert summary["alignment_ratio"] is None and summary["undefined"] == {}  # no row has an alignment


@pytest.fixture
def zeroed(analysed, tmp_path, monkeypatch):
    """A copy of the small run, analysed again with every defect vector from step 100 on exactly 0."""
    run = Run(shutil.copytree(analysed[0].path, tmp_path / "zeroed"))
    thetas = [np.asarray(t) for t in run.rows("thetas.npy")]
    measure = geometry.defect_samples

    def zero_late(theta, *args):
        drawn = measure(theta, *args)
        late = min(range(len(thetas)), key=lambda i: np.abs(thetas[i] - theta).max()) >= 2  # step >= 100
        return [{**s, "delta": 0 * s["delta"], "defect": 0.0} for s in drawn] if late else drawn

    monkeypatch.setattr(geometry, "defect_samples", zero_late)
    return run, geometry.analyse(run, k=3)[0]


def test_a_run_whose_late_defects_are_zero_is_analysed_and_counts_them(zeroed):
    run, summary = zeroed
    rows = run.geometry()
    assert [r["exec_rho"] is None for r in rows] == [False, False, True, True, True]
    assert [r["zero_defect_samples"] for r in rows] == [0, 0, 3, 3, 3]
    assert rows[-1]["alignment_ratio"] is None
    assert summary["undefined"]["exec_rho"] == {"records": 3, "of": 5, "why": undefined.WHY["_rho"]}
    assert summary["undefined"]["weight_svd_random_ratio"]["records"] == 3
    assert summary["undefined"]["alignment_ratio"] == {"records": 1, "of": 1, "why": undefined.WHY["alignment_ratio"]}
    assert summary["rho"] == pytest.approx(np.median([r["exec_rho"] for r in rows[:2]]))
    assert summary["alignment_ratio"] is None
    text = (run.path / GEOMETRY).read_text() + (run.path / SUMMARY).read_text()
    assert "null" in text and "NaN" not in text and "Infinity" not in text
    assert json.loads((run.path / SUMMARY).read_text())["results"]["undefined"] == summary["undefined"]


def test_the_commutator_command_and_the_figures_show_undefined_values(zeroed, capsys):
    from tinygrok.cli import app as cli

    run, _ = zeroed
    cli.commutator(run.path, samples=3, threads=1, array_backend="numpy")
    shown = capsys.readouterr().out
    assert shown.split("what happened")[0].count("undefined") == 3 * 3 + 1  # three steps; the alignment at 200
    assert "exec_rho, weight_svd_rho: undefined in 3 of 5 records (every defect sample is exactly 0" in " ".join(
        shown.split()
    )
    assert plots.save(run, "projections").stat().st_size > 10_000


def test_the_dimension_sweep_is_undefined_where_the_defect_is_zero(zeroed):
    run = said_to_grok(zeroed[0])
    got = geometry.dimension_sweep(run, ks=(1, 2), k_samples=2, n_random=2)
    assert [(r["phase"], r["pca"] is None) for r in got[::2]] == [
        ("early", True),
        ("memorization", False),
        ("detection", True),
        ("detection + 500", True),
    ]
    assert all(r["weight_svd"] is None and r["random"] is None and r["theory"] > 0 for r in got if r["pca"] is None)
    assert undefined.tally(got)["pca"] == {"records": 6, "of": 8, "why": undefined.ZERO_DEFECT}
    assert plots.save(run, "dimensions").stat().st_size > 10_000


def test_last_layer_float16_snapshots_give_its_pc1_and_rho_comes_from_the_final_checkpoint(analysed, tmp_path):
    """The slow regime's recording (what fits a carried state): snapshots of the last layer only, in float16,
    hold those matrices rounded, and their PC1 is float32's within 1e-4 (this tiny run moves ~0.02 between
    snapshots, against float16's spacing of ~2.4e-4 at its weights' scale: 3e-5 measured; 1.6e-6 on the paper
    model's walkthroughs); with no theta saved, the geometry is measured once, at the final checkpoint."""
    run, summary = analysed
    cfg = CFG.replace(snapshot_layers=1, snapshot_dtype="float16", theta_every=0)
    slow = Run.create(tmp_path / "slow", cfg)
    train(cfg, slow)
    full = geometry.run_trajectories(run, CFG)
    kept = geometry.run_trajectories(slow, cfg)
    assert list(kept) == [f"blocks.1.W_{m}" for m in "QKVO"]
    assert all(np.array_equal(kept[name], full[name].astype(np.float16).astype(np.float64)) for name in kept)
    summary16, rows = geometry.analyse(slow, k=3)
    assert all(abs(summary16["pc1"][name] - summary["pc1"][name]) < 1e-4 for name in kept)
    assert [r["step"] for r in rows] == [200] and 0 < rows[0]["exec_rho"] <= 1
    assert slow.basis().shape == (param_count(CFG), 8)  # 2 directions x the 4 matrices recorded


def test_pca_of_a_run_without_enough_snapshots_is_refused_in_one_line(tmp_path):
    cfg = CFG.replace(snapshot_every=0, probe_every=0, theta_every=0, max_steps=20)
    run = Run.create(tmp_path / "none", cfg)
    train(cfg, run)
    with pytest.raises(RunError, match=r"took no attention snapshots \(--snapshot-every 0\)"):
        geometry.trajectories_to_detection(run)
    sparse = Run.create(tmp_path / "one", cfg.replace(snapshot_every=1000))
    train(sparse.config(), sparse)
    with pytest.raises(RunError, match="has 1 attention snapshots; PCA needs at least 3"):  # never detected
        geometry.trajectories_to_detection(sparse)
