"""One function per figure; each reads a run directory and writes a PNG into it."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402

from tinygrok.analysis import curvature_summary, grok_summary  # noqa: E402
from tinygrok.model import param_count  # noqa: E402
from tinygrok.geometry import trajectories_to_detection  # noqa: E402
from tinygrok.pca import trajectory_pca  # noqa: E402
from tinygrok.runs import Run  # noqa: E402


def plot_training(run_dir: Path | str) -> Path:
    """Train/test accuracy and loss against step (log scale, as in the grokking literature), grok steps marked."""
    run = Run(run_dir)
    cfg, rows = run.config(), [r for r in run.metrics() if r["step"] > 0]
    if not rows:
        raise ValueError(f"{run.path} has no evaluations after step 0 to plot")
    steps = [r["step"] for r in rows]
    marks = grok_summary(rows, cfg.stop_acc, cfg.stop_patience)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for split, colour in (("train", "tab:blue"), ("test", "tab:red")):
        ax_acc.plot(steps, [r[f"{split}_acc"] for r in rows], color=colour, label=split)
        ax_loss.plot(steps, [r[f"{split}_loss"] for r in rows], color=colour, label=split)
    for ax in (ax_acc, ax_loss):
        for key, style in (("memorization_step", ":"), ("grok_step_90", "--")):
            if marks[key] is not None:
                ax.axvline(marks[key], color="grey", ls=style, label=f"{key} = {marks[key]}")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.legend(loc="best", fontsize=8)
    ax_acc.set_ylabel("accuracy")
    ax_loss.set_ylabel("mean cross-entropy")
    ax_loss.set_yscale("log")
    fig.suptitle(f"{cfg.op} mod {cfg.p}, seed {cfg.seed}: memorization, then grokking")
    return _save(fig, run, "training.png")


def plot_defect(run_dir: Path | str) -> Path:
    """The paper's central figure: commutator defect (log, median and quartiles) and test accuracy against step,
    with the curvature onset and grok_90 marked: curvature rises before generalisation does."""
    run = Run(run_dir)
    cfg, metrics = run.config(), run.metrics()
    rows = [r for r in metrics if r.get("defect") is not None]
    if not rows:
        raise ValueError(f"{run.path} has no commutator probes (train with --probe-every)")
    marks = {**grok_summary(metrics, cfg.stop_acc, cfg.stop_patience),
             **curvature_summary(metrics, floor=cfg.onset_floor)}
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.fill_between(steps, [r["defect_q25"] for r in rows], [r["defect_q75"] for r in rows], alpha=0.25,
                    color="tab:purple", label="defect, quartiles")
    ax.plot(steps, [r["defect"] for r in rows], color="tab:purple", label="defect D, median of samples")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("commutator defect D")
    acc = ax.twinx()
    acc.plot(steps, [r["test_acc"] for r in rows], color="tab:red", label="test accuracy")
    acc.plot(steps, [r["train_acc"] for r in rows], color="tab:blue", alpha=0.5, label="train accuracy")
    acc.set_ylabel("accuracy")
    acc.set_ylim(0, 1.02)
    for key, style in (("onset_step", ":"), ("grok_step_90", "--")):
        if marks.get(key) is not None:
            ax.axvline(marks[key], color="black", ls=style, label=f"{key} = {marks[key]}")
    handles = ax.get_legend_handles_labels()
    more = acc.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="center left", fontsize=8)
    lead = marks.get("lead_steps")
    fig.suptitle(f"Curvature rises before generalisation (lead {lead} steps)" if lead is not None
                 else "Commutator defect and accuracy")
    return _save(fig, run, "defect.png")


def plot_explained_variance(run_dir: Path | str) -> Path:
    """Explained variance of the top-5 principal components of each attention matrix's trajectory."""
    run = Run(run_dir)
    ratios = json.loads((run.path / "pca.json").read_text())["top_ratios"]
    fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
    width = 0.8 / len(ratios)
    for i, (name, values) in enumerate(ratios.items()):
        ax.bar([k + i * width for k in range(len(values))], [100 * v for v in values], width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(5)], [f"PC{k + 1}" for k in range(5)])
    ax.set_ylabel("explained variance (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Attention-weight trajectories are nearly one-dimensional: PC1 dominates")
    return _save(fig, run, "explained_variance.png")


def plot_trajectory(run_dir: Path | str) -> Path:
    """Each attention matrix of the last layer, up to the detection step (as pca.json), projected on its own
    PC1-PC2 plane, coloured by step."""
    run = Run(run_dir)
    cfg = run.config()
    last = f"blocks.{cfg.n_layers - 1}."
    trajectories = {k: v for k, v in trajectories_to_detection(run).items() if k.startswith(last)}
    steps = [i * cfg.snapshot_every for i in range(len(next(iter(trajectories.values()))))]
    fig, axes = plt.subplots(1, len(trajectories), figsize=(4 * len(trajectories), 3.8), constrained_layout=True)
    for ax, (name, traj) in zip(axes, trajectories.items()):
        pca = trajectory_pca(traj, k=2)
        coords = pca.scores  # (S, 2)
        points = ax.scatter(coords[:, 0], coords[:, 1], c=steps, cmap="viridis", s=12)
        ax.plot(coords[:, 0], coords[:, 1], color="grey", lw=0.5)
        ax.set_title(f"{name} (PC1 {100 * pca.pc1:.0f}%)", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
    fig.colorbar(points, ax=axes, label="step")
    fig.suptitle("Last-layer attention weights on their first two principal components, up to grokking detection")
    return _save(fig, run, "trajectory.png")


def plot_projections(run_dir: Path | str) -> Path:
    """proj/full of the defect: execution basis vs random bases of the same size vs sqrt(K/P)."""
    run = Run(run_dir)
    rows = [json.loads(line) for line in (run.path / "geometry.jsonl").read_text().splitlines()]
    cfg = run.config()
    k_exec, k_svd = cfg.n_layers * 4 * 2, cfg.n_layers * 4 * 3  # 2 PCA components, 3 singular pairs per matrix
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.plot(steps, [r["exec_proj"] for r in rows], "o-", label=f"execution basis (trajectory PCA, K={k_exec})")
    ax.plot(steps, [r["exec_random_proj"] for r in rows], "s--", label=f"random bases, K={k_exec}")
    ax.plot(steps, [r["weight_svd_proj"] for r in rows], "^-", label=f"current-weight-SVD basis, K={k_svd}")
    ax.plot(steps, [r["weight_svd_random_proj"] for r in rows], "v--", label=f"random bases, K={k_svd}")
    for k, style in ((k_exec, ":"), (k_svd, "-.")):
        ax.axhline(np.sqrt(k / param_count(cfg)), color="grey", ls=style, label=f"sqrt(K/P), K={k}")
    ax.set_xlabel("step")
    ax.set_ylabel("||projection of defect|| / ||defect||")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.suptitle("Where the curvature points: the defect's share in the execution subspaces and in random ones")
    return _save(fig, run, "projections.png")


def plot_all(run_dir: Path | str) -> list[Path]:
    """Every figure the run's files allow."""
    run = Run(run_dir)
    figures = [plot_training(run.path)]
    if any(r.get("defect") is not None for r in run.metrics()):
        figures.append(plot_defect(run.path))
    if (run.path / "pca.json").exists():
        figures += [plot_explained_variance(run.path), plot_trajectory(run.path)]
    if (run.path / "geometry.jsonl").exists():
        figures.append(plot_projections(run.path))
    return figures


def _save(fig, run: Run, name: str) -> Path:
    path = run.path / name
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
