"""A run's geometry, end to end, from its files: PCA of the attention trajectory and the execution basis
(pca.py), curvature projections at the saved parameters (commutator.py), onset and lead (analysis.py).

Writes pca.json, basis.npy and geometry.jsonl into the run directory and adds the headline numbers to the summary.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from tinygrok.engine import backend, engines, parallel
from tinygrok.run.runs import SNAPSHOTS, THETAS, Run, RunError
from tinygrok.run.train import load_state
from tinygrok.science import undefined
from tinygrok.science.analysis import (
    by_defect_level,
    curvature_summary,
    detection_step,
    grok_summary,
    memorization_phase,
)
from tinygrok.science.commutator import (
    alignment,
    defect_samples,
    defect_stats,
    singular_directions,
    subspace_ratios,
    weight_svd_basis,
)
from tinygrok.science.config import Config
from tinygrok.science.data import Dataset, make_dataset, stream
from tinygrok.science.model import attention_layout, param_count, snapshot_layout
from tinygrok.science.pca import analyse_trajectories, execution_basis, random_basis, trajectory_pca

BASIS_COMPONENTS = 2  # top-2 components per matrix: K = layers * 4 * 2 (§5.5)
SVD_COMPONENTS = 3  # the reference control's top-3 singular pairs per matrix: K = layers * 4 * 3 (§6.4)
ALIGNMENT_SAMPLES = 12  # the converse's commutator vectors per saved theta (§6.5)
ALIGNMENT_SPAN = 200  # steps the alignment's step spans: the reference's checkpoints were 200 steps apart (§6.5)
LOG = logging.getLogger(__name__)  # the engine's line, when auto probes on the readable one


def run_trajectories(run: Run, cfg: Config, n: int | None = None) -> dict[str, np.ndarray]:
    """name -> (S, d_in*d_out) trajectory of every attention matrix from the run's snapshots.npy (its first n
    snapshots if n is given; only those are read and converted)."""
    snaps = run.rows(SNAPSHOTS)[:n]  # (S, sum of sizes), memory-mapped
    out, col = {}, 0
    for name, (_, shape) in snapshot_layout(cfg).items():
        size = math.prod(shape)
        out[name] = np.asarray(snaps[:, col : col + size], dtype=np.float64)
        col += size
    return out


def trajectories_to_detection(run: Run) -> dict[str, np.ndarray]:
    """Each attention matrix's snapshots up to the detection step (all of them if the run never grokked):
    the paper's PCA runs stopped there (§1.5, §5.1), while `tinygrok grok` trains 1,000 steps further for the
    curvature record."""
    cfg = run.config()
    if not cfg.snapshot_every:
        raise RunError(f"{run.path} took no attention snapshots (--snapshot-every 0): PCA needs them")
    n_snapshots = len(run.rows(SNAPSHOTS)) if run.has(SNAPSHOTS) else 0
    end = detection_step(run.metrics(), cfg.stop_acc, cfg.stop_patience)
    keep = n_snapshots if end is None else min(n_snapshots, end // cfg.snapshot_every + 1)
    if keep < 3:
        raise RunError(
            f"{run.path} has {keep} attention snapshots{' up to detection' if end else ''}; PCA needs at least 3 "
            "(train longer, or with a smaller --snapshot-every)"
        )
    return run_trajectories(run, cfg, keep)


def analyse_pca(run: Run) -> tuple[dict, np.ndarray]:
    """PC1 share, top-5 ratios and null z-score per attention matrix, and the execution basis B (P, K), from the
    trajectories up to detection; both saved in the run (pca.json, basis.npy), holding its lock."""
    with run.writing():
        cfg = run.config()
        trajectories = trajectories_to_detection(run)
        keep = len(next(iter(trajectories.values())))
        stats, pcas = analyse_trajectories(trajectories, stream(cfg.seed, "null"))
        result = {"snapshots": keep, "last_step": (keep - 1) * cfg.snapshot_every, **stats}
        offsets = {name: start for name, (start, _) in snapshot_layout(cfg).items()}
        basis = execution_basis(pcas, offsets, param_count(cfg), BASIS_COMPONENTS)
        run.write_pca(result, basis)
    return result, basis


def analyse_trajectory(run: Run) -> dict:
    """The trajectory PCA alone, for runs that are not probed (the pca experiment): pca.json, basis.npy, and its
    headline numbers (pca_headline) added to the summary as the "pca" stage; returns all the run's results. BLAS on
    one thread."""
    with run.writing(), parallel.recorded_arithmetic():
        pca, _ = analyse_pca(run)
        return run.record("pca", pca_headline(pca))


def pca_headline(pca: dict) -> dict:
    """What a run's summary keeps of its PCA (analyse_pca): PC1 and its null z-score per matrix, and how many
    snapshots it took."""
    return {"pc1": pca["pc1"], "pc1_null_z": pca["null_z"], "pca_snapshots": pca["snapshots"]}


def analyse_curvature(run: Run, basis: np.ndarray, k: int = 5) -> list[dict]:
    """The commutator projections at every saved theta (saved_thetas; saved in the run); empty if there is none."""
    rows = curvature_at_saved_thetas(run, run.config(), basis, k)
    if rows:
        run.write_geometry(rows)
    return rows


def saved_thetas(run: Run, cfg: Config) -> list[tuple[int, np.ndarray]]:
    """(step, theta (P,)) of every theta the run saved (thetas.npy, every cfg.theta_every steps); for a run that
    saves none (theta_every 0), its final checkpoint's (the slow regime measures rho there only, §9.2)."""
    if cfg.theta_every:
        return [(i * cfg.theta_every, row) for i, row in enumerate(run.rows(THETAS))] if run.has(THETAS) else []
    state = load_state(run, cfg)[0]
    return [(state.step, backend.to_host(state.theta))]


def probe_derivatives(
    cfg: Config, theta: np.ndarray, data: Dataset, before: str | None = None
) -> tuple[parallel.Derivatives, str]:
    """The curvature probes' derivatives at theta from the engine training would choose there (engines.choose, as
    at each of its checkpoints: a model.py changed since is probed as it now is), and that engine's name. Its
    line is logged, as training logs it, unless the engine is `before`, the one chosen at the previous theta."""
    engine, why = engines.choose(cfg, backend.to_device(theta), data)
    if why and engine.name != before:
        LOG.warning(why)
    return parallel.Derivatives(cfg, engine.gradient), engine.name


def curvature_at_saved_thetas(
    run: Run, cfg: Config, exec_basis: np.ndarray, k: int = 5, n_random: int = 5
) -> list[dict]:
    """At every saved theta of the run (saved_thetas): k defect samples and their projections onto the execution
    basis (retrospective trajectory PCA, §5.5), the current-weight-SVD basis (what the reference's control used,
    §6.4) and n_random random bases of each size (drawn once for the whole run, as the defects do not depend on
    them; the reference drew 5 fresh ones per sample); plus the alignment (§6.5) of the step since the saved theta
    ALIGNMENT_SPAN steps before (or the previous one, if none was saved then) with ALIGNMENT_SAMPLES defects (the
    first k of them those above). Batches come from a "posthoc" stream of their own; each theta is probed on the
    engine training would choose there (probe_derivatives), named in its row."""
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    rng = stream(cfg.seed, "posthoc")
    n_params, k_svd = param_count(cfg), len(attention_layout(cfg)) * SVD_COMPONENTS
    random_bases = {
        size: [random_basis(n_params, size, rng) for _ in range(n_random)] for size in {exec_basis.shape[1], k_svd}
    }
    thetas, rows, engine = saved_thetas(run, cfg), [], None
    spans = cfg.theta_every and ALIGNMENT_SPAN % cfg.theta_every == 0
    lag = ALIGNMENT_SPAN // cfg.theta_every if spans else 1  # saved thetas back
    for i, (step, saved) in enumerate(thetas):
        theta = np.array(saved)  # host: bases and projections are computed here, the probes on the device
        derivatives, engine = probe_derivatives(cfg, theta, data, engine)
        drawn = [
            {**s, "delta": backend.to_host(s["delta"])}
            for s in defect_samples(backend.to_device(theta), data, cfg, rng, max(k, ALIGNMENT_SAMPLES), derivatives)
        ]
        samples = drawn[:k]
        bases = {"exec": exec_basis, "weight_svd": weight_svd_basis(theta, cfg, SVD_COMPONENTS)}
        row = {
            "step": step,
            "engine": engine,
            **defect_stats(samples),
            **subspace_ratios(samples, bases, random_bases),
            "zero_defect_samples": sum(s["defect"] == 0 for s in samples),
        }
        if i >= lag:
            row["alignment_ratio"] = alignment(theta - thetas[i - lag][1], [s["delta"] for s in drawn])["ratio"]
        rows.append(row)
    return rows


MEDIAN_OF = {  # a headline number of the summary -> the geometry.jsonl quantity it is the median of
    "rho": "exec_rho",
    "exec_random_ratio": "exec_random_ratio",
    "exec_random_ratio_weight_svd": "weight_svd_random_ratio",
    "alignment_ratio": "alignment_ratio",
}


def summarise(run: Run, pca: dict, geometry: list[dict]) -> dict:
    """The geometry headline numbers, added to the run's summary; returns all its results. Medians leave the
    undefined records out; "undefined" counts them, per quantity, and says why (undefined.py)."""
    metrics = run.metrics()
    memorizing = set(memorization_phase(metrics))
    in_phase = [r for r in geometry if r["step"] in memorizing]
    headline = {
        **curvature_summary(metrics, floor=run.config().onset_floor),
        **pca_headline(pca),
        "rho": undefined.median(r[MEDIAN_OF["rho"]] for r in geometry),  # at every saved theta
        "exec_random_ratio": undefined.median(r[MEDIAN_OF["exec_random_ratio"]] for r in in_phase),
        "exec_random_ratio_weight_svd": undefined.median(
            r[MEDIAN_OF["exec_random_ratio_weight_svd"]] for r in in_phase
        ),
        "exec_random_by_defect": by_defect_level(in_phase, "exec_random_ratio"),
        "exec_random_by_defect_weight_svd": by_defect_level(in_phase, "weight_svd_random_ratio"),
        "alignment_ratio": undefined.median(r.get(MEDIAN_OF["alignment_ratio"]) for r in geometry),
        "memorization_phase_probes": len(in_phase),
        "undefined": undefined.tally(geometry),
    }
    return run.record("geometry", headline)


def analyse(run: Run, k: int | None = None) -> tuple[dict, list[dict]]:
    """Everything above, in order, with k defect samples at each saved theta (default: the run's probe_samples):
    the updated summary, and the projections at each saved theta. BLAS on one thread: the same numbers on any
    number of cores. It holds the run's lock."""
    with run.writing(), parallel.recorded_arithmetic():
        pca, basis = analyse_pca(run)
        rows = analyse_curvature(run, basis, k or run.config().probe_samples)
        return summarise(run, pca, rows), rows


# ---------------------------------------------------------------------- the dimension sweep (§6.4, figC3)
DIMENSIONS = (1, 2, 3, 4, 8, 16, 32)  # directions per attention matrix: K = layers * 4 * k


def dimension_sweep(run: Run, ks: tuple = DIMENSIONS, k_samples: int = 5, n_random: int = 3) -> list[dict]:
    """proj/full of the commutator defect against the subspace's size, at the four phases of figC3: step 200,
    memorization (train acc >= 0.95), detection and detection + 500 (each at the saved theta at or before it).
    For k directions per attention matrix: the top-k of its current-weight SVD, of its trajectory PCA (up to
    detection), and the first K = layers*4*k columns of n_random random bases of the largest size; each the
    median over k_samples defects (as subspace_ratios: undefined where the median defect is 0); beside
    sqrt(K/P), a random subspace's expectation. Written into the run (dimensions.jsonl), holding its lock, and
    returned: one row per phase and k."""
    with run.writing(), parallel.recorded_arithmetic():  # as every number a run records
        rows = _dimension_rows(run, ks, k_samples, n_random)
        run.write_dimensions(rows)
    return rows


def _dimension_rows(run: Run, ks: tuple, k_samples: int, n_random: int) -> list[dict]:
    cfg, metrics = run.config(), run.metrics()
    detected = detection_step(metrics, cfg.stop_acc, cfg.stop_patience)
    memorized = grok_summary(metrics)["memorization_step"]
    if detected is None or memorized is None or not run.has(THETAS) or cfg.snapshot_layers:
        raise RunError(
            f"the dimension sweep needs a run that memorized and grokked, with its parameters saved "
            f"(--theta-every) and every layer's snapshots: {run.path} is not one"
        )
    layout, n_params, thetas = attention_layout(cfg), param_count(cfg), run.rows(THETAS)
    pca = {name: trajectory_pca(traj, max(ks)).components for name, traj in trajectories_to_detection(run).items()}
    data, rng = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed), stream(cfg.seed, "dimensions")
    rows, engine = [], None
    for phase, wanted in (
        ("early", 200),
        ("memorization", memorized),
        ("detection", detected),
        ("detection + 500", detected + 500),
    ):
        index = min(wanted // cfg.theta_every, len(thetas) - 1)
        theta = np.array(thetas[index])
        derivatives, engine = probe_derivatives(cfg, theta, data, engine)
        samples = [
            (backend.to_host(s["delta"]).astype(np.float64), s["scale"])
            for s in defect_samples(backend.to_device(theta), data, cfg, rng, k_samples, derivatives)
        ]
        svd = {
            name: singular_directions(theta[start : start + math.prod(shape)].reshape(shape), max(ks))
            for name, (start, shape) in layout.items()
        }
        along = {
            "weight_svd": [_per_matrix(delta, layout, svd) for delta, _ in samples],
            "pca": [_per_matrix(delta, layout, pca) for delta, _ in samples],
        }  # (matrices, k) per sample
        randoms = [
            [basis.T @ delta for delta, _ in samples]  # (K,) per sample, one random basis at a time
            for basis in (random_basis(n_params, len(layout) * max(ks), rng) for _ in range(n_random))
        ]
        scales = np.array([scale for _, scale in samples])
        full = float(np.median([np.linalg.norm(delta) for delta, _ in samples] / scales))
        for k in ks:
            size = len(layout) * k
            norms = {name: [np.linalg.norm(c[:, :k]) for c in coords] for name, coords in along.items()}
            norms["random"] = np.mean([[np.linalg.norm(c[:size]) for c in basis] for basis in randoms], axis=0)
            rows.append(
                {
                    "phase": phase,
                    "step": index * cfg.theta_every,
                    "engine": engine,
                    "k": k,
                    "K": size,
                    **{
                        name: undefined.ratio(float(np.median(np.array(v) / scales)), full) for name, v in norms.items()
                    },
                    "theory": math.sqrt(size / n_params),
                }
            )
    return rows


def _per_matrix(delta: np.ndarray, layout: dict, directions: dict) -> np.ndarray:
    """delta's coordinates along each attention matrix's directions (rows (k, D) at the matrix's offset):
    (matrices, k), zero where a matrix has fewer (a trajectory of few snapshots has few components)."""
    coords = np.zeros((len(layout), max(len(d) for d in directions.values())))
    for i, (name, (start, shape)) in enumerate(layout.items()):
        coords[i, : len(directions[name])] = directions[name] @ delta[start : start + math.prod(shape)]
    return coords
