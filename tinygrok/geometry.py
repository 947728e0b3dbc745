"""A run's geometry, end to end, from its files: PCA of the attention trajectory and the execution basis
(pca.py), curvature projections at the saved parameters (commutator.py), onset and lead (analysis.py).

Writes pca.json, basis.npy and geometry.jsonl into the run directory and adds the headline numbers to the summary.
"""
from __future__ import annotations

import statistics

import numpy as np

from tinygrok import backend, parallel
from tinygrok.analysis import curvature_summary, detection_step, memorization_phase
from tinygrok.commutator import (alignment, defect_samples, defect_stats, random_basis, subspace_ratios,
                                 weight_svd_basis)
from tinygrok.config import Config
from tinygrok.data import make_dataset, stream
from tinygrok.model import attention_layout, param_count
from tinygrok.pca import analyse_trajectories, execution_basis, run_trajectories
from tinygrok.runs import SNAPSHOTS, THETAS, Run, RunError
BASIS_COMPONENTS = 2  # top-2 components per matrix: K = layers * 4 * 2 (§5.5)
SVD_COMPONENTS = 3  # the reference control's top-3 singular pairs per matrix: K = layers * 4 * 3 (§6.4)


def trajectories_to_detection(run: Run) -> dict[str, np.ndarray]:
    """Each attention matrix's snapshots up to the detection step (all of them if the run never grokked):
    the paper's PCA runs stopped there (§1.5, §5.1), while `tinygrok grok` trains 1,000 steps further for the
    curvature record."""
    cfg = run.config()
    n_snapshots = len(run.rows(SNAPSHOTS)) if run.has(SNAPSHOTS) else 0
    end = detection_step(run.metrics(), cfg.stop_acc, cfg.stop_patience)
    keep = n_snapshots if end is None else min(n_snapshots, end // cfg.snapshot_every + 1)
    if keep < 3:
        raise RunError(f"{run.path} has {keep} attention snapshots up to detection; PCA needs at least 3 "
                       "(train longer, or with a smaller --snapshot-every)")
    return run_trajectories(run, cfg, keep)


def analyse_pca(run: Run) -> tuple[dict, np.ndarray]:
    """PC1 share, top-5 ratios and null z-score per attention matrix, and the execution basis B (P, K), from the
    trajectories up to detection; both saved in the run (pca.json, basis.npy)."""
    cfg = run.config()
    trajectories = trajectories_to_detection(run)
    keep = len(next(iter(trajectories.values())))
    stats, pcas = analyse_trajectories(trajectories, stream(cfg.seed, "null"))
    result = {"snapshots": keep, "last_step": (keep - 1) * cfg.snapshot_every, **stats}
    offsets = {name: start for name, (start, _) in attention_layout(cfg).items()}
    basis = execution_basis(pcas, offsets, param_count(cfg), BASIS_COMPONENTS)
    run.write_pca(result, basis)
    return result, basis


def analyse_trajectory(run: Run) -> dict:
    """The trajectory PCA alone, for runs that are not probed (the pca experiment): pca.json, basis.npy, and PC1
    per matrix added to the summary as the "pca" stage; returns all the run's results. BLAS on one thread."""
    with parallel.recorded_arithmetic():
        pca, _ = analyse_pca(run)
    return run.record("pca", {"pc1": pca["pc1"]})


def analyse_curvature(run: Run, basis: np.ndarray, k: int = 5) -> list[dict]:
    """The commutator projections at every saved theta (saved in the run); empty if the run saved none."""
    if not run.has(THETAS):
        return []
    rows = curvature_at_saved_thetas(run, run.config(), basis, k)
    run.write_geometry(rows)
    return rows


def curvature_at_saved_thetas(run: Run, cfg: Config, exec_basis: np.ndarray, k: int = 5,
                              n_random: int = 5) -> list[dict]:
    """At every saved theta of the run (thetas.npy): k defect samples and their projections onto the execution
    basis (retrospective trajectory PCA, §5.5), the current-weight-SVD basis (what the reference's control used,
    §6.4) and n_random random bases of each size (drawn once for the whole run, as the defects do not depend on
    them; the reference drew 5 fresh ones per sample); plus the alignment (§6.5) of the step since the previous
    saved theta with the k defects (the paper: 12). Batches come from a "posthoc" stream of their own."""
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    rng = stream(cfg.seed, "posthoc")
    n_params, k_svd = param_count(cfg), len(attention_layout(cfg)) * SVD_COMPONENTS
    random_bases = {size: [random_basis(n_params, size, rng) for _ in range(n_random)]
                    for size in {exec_basis.shape[1], k_svd}}
    rows, previous = [], None
    for i, saved in enumerate(run.rows(THETAS)):
        theta = np.array(saved)  # host: bases and projections are computed here, the probes on the device
        samples = [{**s, "delta": backend.to_host(s["delta"])}
                   for s in defect_samples(backend.to_device(theta), data, cfg, rng, k)]
        bases = {"exec": exec_basis, "weight_svd": weight_svd_basis(theta, cfg, SVD_COMPONENTS)}
        row = {"step": i * cfg.theta_every, **defect_stats(samples), **subspace_ratios(samples, bases, random_bases)}
        if previous is not None:
            row["alignment_ratio"] = alignment(theta - previous, [s["delta"] for s in samples])["ratio"]
        rows.append(row)
        previous = theta
    return rows


def summarise(run: Run, pca: dict, geometry: list[dict]) -> dict:
    """The geometry headline numbers, added to the run's summary; returns all its results."""
    metrics = run.metrics()
    memorizing = set(memorization_phase(metrics))
    in_phase = [r for r in geometry if r["step"] in memorizing]
    headline = {**curvature_summary(metrics, floor=run.config().onset_floor), "pc1": pca["pc1"],
                "rho": _median(r["exec_rho"] for r in geometry),
                "exec_random_ratio": _median(r["exec_random_ratio"] for r in in_phase),
                "exec_random_ratio_weight_svd": _median(r["weight_svd_random_ratio"] for r in in_phase),
                "memorization_phase_probes": len(in_phase)}
    return run.record("geometry", headline)


def analyse(run: Run, k: int | None = None) -> tuple[dict, list[dict]]:
    """Everything above, in order, with k defect samples at each saved theta (default: the run's probe_samples):
    the updated summary, and the projections at each saved theta. BLAS on one thread: the same numbers on any
    number of cores."""
    with parallel.recorded_arithmetic():
        pca, basis = analyse_pca(run)
        rows = analyse_curvature(run, basis, k or run.config().probe_samples)
        return summarise(run, pca, rows), rows


def _median(values):
    values = [v for v in values if v == v]  # drop NaN (a defect of exactly 0 has no direction)
    return statistics.median(values) if values else None
