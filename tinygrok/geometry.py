"""A run's geometry, end to end, from its files: PCA of the attention trajectory and the execution basis
(pca.py), curvature projections at the saved parameters (commutator.py), onset and lead (analysis.py).

Writes pca.json and geometry.jsonl into the run directory and adds the headline numbers to summary.json.
"""
from __future__ import annotations

import json
import statistics

import numpy as np

from tinygrok.analysis import curvature_summary, memorization_phase
from tinygrok.commutator import analyse_run
from tinygrok.data import stream
from tinygrok.model import attention_layout, param_count
from tinygrok.pca import analyse_trajectories, execution_basis, run_trajectories
from tinygrok.runs import SNAPSHOTS, SUMMARY, THETAS, Run, RunError, write_json

PCA_JSON, GEOMETRY_JSONL = "pca.json", "geometry.jsonl"
BASIS_COMPONENTS = 2  # top-2 components per matrix: K = layers * 4 * 2 (§5.5)


def analyse_pca(run: Run) -> tuple[dict, np.ndarray]:
    """PC1 share, top-5 ratios and null z-score per attention matrix (pca.json), and the execution basis B."""
    cfg = run.config()
    n_snapshots = len(run.rows(SNAPSHOTS)) if (run.path / SNAPSHOTS).exists() else 0
    if n_snapshots < 3:
        raise RunError(f"{run.path} has {n_snapshots} attention snapshots; PCA needs at least 3 "
                       "(train longer, or with a smaller --snapshot-every)")
    trajectories = run_trajectories(run, cfg)
    result = analyse_trajectories(trajectories, stream(cfg.seed, "null"))
    write_json(run.path / PCA_JSON, result)
    offsets = {name: start for name, (start, _) in attention_layout(cfg).items()}
    n_params = param_count(cfg)
    return result, execution_basis(trajectories, offsets, n_params, BASIS_COMPONENTS)


def analyse_curvature(run: Run, basis: np.ndarray, k: int = 5) -> list[dict]:
    """The commutator projections at every saved theta (geometry.jsonl); empty if the run saved none."""
    if not (run.path / THETAS).exists():
        return []
    rows = analyse_run(run, run.config(), basis, k)
    (run.path / GEOMETRY_JSONL).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def summarise(run: Run, pca: dict, geometry: list[dict]) -> dict:
    """The geometry headline numbers, merged into summary.json and returned."""
    metrics = run.metrics()
    memorizing = set(memorization_phase(metrics))
    in_phase = [r for r in geometry if r["step"] in memorizing]
    headline = {**curvature_summary(metrics), "pc1": pca["pc1"],
                "rho": _median(r["exec_rho"] for r in geometry),
                "exec_random_ratio": _median(r["exec_random_ratio"] for r in in_phase),
                "exec_random_ratio_weight_svd": _median(r["weight_svd_random_ratio"] for r in in_phase),
                "memorization_phase_probes": len(in_phase)}
    summary = {**run.summary(), **headline} if (run.path / SUMMARY).exists() else headline
    run.write_summary(summary)
    return summary


def analyse(run: Run, k: int = 5) -> dict:
    """Everything above, in order; returns the updated summary."""
    pca, basis = analyse_pca(run)
    return summarise(run, pca, analyse_curvature(run, basis, k))


def _median(values):
    values = [v for v in values if v == v]  # drop NaN (a defect of exactly 0 has no direction)
    return statistics.median(values) if values else None
