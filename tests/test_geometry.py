"""A run's geometry end to end, on a small probed run: files written, numbers in range, figures drawn."""
import json
import math

import numpy as np
import pytest

from tinygrok import geometry
from tinygrok.config import Config
from tinygrok.model import param_count
from tinygrok import plots
from tinygrok.runs import GEOMETRY, SUMMARY, Run
from tinygrok.train import train

CFG = Config(p=11, d_model=16, n_heads=2, d_ff=32, batch_size=32, eval_every=20, max_steps=200,
             snapshot_every=20, theta_every=50, probe_every=20, probe_samples=3)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    run = Run.create(tmp_path_factory.mktemp("runs") / "geo", CFG)
    train(CFG, run)
    return run, geometry.analyse(run, k=3)[0]


def test_summary_gains_the_geometry_numbers(analysed):
    run, summary = analysed
    assert set(summary["pc1"]) == {f"blocks.{l}.W_{m}" for l in (0, 1) for m in "QKVO"}
    assert all(0 < v <= 1 for v in summary["pc1"].values())
    assert summary["baseline_defect"] > 0 and summary["defect_growth_run"] >= summary["defect_growth"] >= 1
    rows = run.geometry()
    assert [r["step"] for r in rows] == [0, 50, 100, 150, 200]
    k_exec, p = CFG.n_layers * 4 * 2, param_count(CFG)
    for r in rows:
        assert math.sqrt(1 - 0.5) < r["exec_rho"] <= 1  # most of the defect lies outside a 16-dim subspace
        # random K-dim subspaces catch about sqrt(K/P) of a vector (P is small here, so only roughly)
        assert r["exec_random_proj"] == pytest.approx(math.sqrt(k_exec / p), rel=0.5)
    assert all("alignment_ratio" in r for r in rows[1:])
    assert summary == json.loads((run.path / SUMMARY).read_text())["results"] == run.summary()
    assert run.stages() == ["train", "geometry"] and "wall_seconds" in run.environment()
    assert (run.path / GEOMETRY).exists() and run.basis().shape == (param_count(CFG), k_exec)


def test_execution_basis_spans_the_snapshot_motion(analysed):
    """B's top components come from the snapshots: B captures most of the attention weights' net motion."""
    run, _ = analysed
    _, basis = geometry.analyse_pca(run)
    thetas = run.rows("thetas.npy")
    motion = np.asarray(thetas[-1], dtype=np.float64) - np.asarray(thetas[0], dtype=np.float64)
    from tinygrok.model import attention_layout
    mask = np.zeros(motion.size, dtype=bool)
    for start, shape in attention_layout(CFG).values():
        mask[start:start + shape[0] * shape[1]] = True
    attn_motion = np.where(mask, motion, 0.0)
    captured = np.linalg.norm(basis.T @ attn_motion) / np.linalg.norm(attn_motion)
    assert captured > 0.8


def test_every_figure_is_drawn(analysed):
    run, _ = analysed
    names = {p.name for p in plots.save_all(run.path)}
    assert names == {"training.png", "defect.png", "explained_variance.png", "trajectory.png", "projections.png"}
    assert all((run.path / n).stat().st_size > 10_000 for n in names)
