"""The figures of a run, drawn from its files: one function per figure, and `save`, which writes one into the run.

Each figure function takes a run (a Run or its path) and, optionally, the Axes to draw on; it returns the Figure,
a new one when no Axes are given, so in a notebook `plots.defect("runs/...")` shows inline. Nothing here chooses
matplotlib's backend (the CLI picks Agg), and no figure is registered with pyplot, so none is left open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tinygrok.run import grok_forecaster
from tinygrok.run.geometry import SVD_COMPONENTS, trajectories_to_detection
from tinygrok.run.runs import DIMENSIONS, GEOMETRY, PCA, Run, RunError
from tinygrok.science.analysis import curvature_onset, curvature_summary, grok_summary
from tinygrok.science.forecast import Forecast, Record, before_grok
from tinygrok.science.model import param_count
from tinygrok.science.pca import trajectory_pca


def training(run: Run | Path | str, axes=None) -> Figure:
    """Train/test accuracy and loss against step (log scale, as in the grokking literature), grok steps marked;
    on two Axes."""
    run = _as_run(run)
    cfg, rows = run.config(), [r for r in run.metrics() if r["step"] > 0]
    if not rows:
        raise RunError(f"{run.path} has no evaluations after step 0 to plot: train it further")
    steps = [r["step"] for r in rows]
    marks = grok_summary(rows, cfg.stop_acc, cfg.stop_patience)
    fig, (ax_acc, ax_loss) = _axes(axes, 2, (11, 4))
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
    fig.suptitle(
        f"{cfg.op} mod {cfg.p}, seed {cfg.seed}: memorization, then grokking"
        if marks["grok_step_90"]
        else f"{cfg.op} mod {cfg.p}, seed {cfg.seed}: no grokking (test accuracy never reached 90%)"
    )
    return fig


def defect(run: Run | Path | str, ax=None) -> Figure:
    """The paper's central figure: commutator defect (log, median and quartiles) and test accuracy against step,
    with the curvature onset and grok_90 marked: curvature rises before generalisation does."""
    run = _as_run(run)
    cfg, metrics = run.config(), run.metrics()
    rows = [r for r in metrics if r.get("defect") is not None]
    if not rows:
        raise ValueError(f"{run.path} has no commutator probes (train with --probe-every)")
    marks = {
        **grok_summary(metrics, cfg.stop_acc, cfg.stop_patience),
        **curvature_summary(metrics, floor=cfg.onset_floor),
    }
    steps = [r["step"] for r in rows]
    fig, ax = _axes(ax, 1, (8, 4.5))
    ax.fill_between(
        steps,
        [r["defect_q25"] for r in rows],
        [r["defect_q75"] for r in rows],
        alpha=0.25,
        color="tab:purple",
        label="defect, quartiles",
    )
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
    ax.set_title(
        f"Curvature rises before generalisation (lead {lead} steps)"
        if lead is not None and lead > 0
        else "Commutator defect and accuracy"
    )
    return fig


def explained_variance(run: Run | Path | str, ax=None) -> Figure:
    """Explained variance of the top-5 principal components of each attention matrix's trajectory."""
    ratios = _as_run(run).pca()["top_ratios"]
    fig, ax = _axes(ax, 1, (9, 4))
    width = 0.8 / len(ratios)
    for i, (name, values) in enumerate(ratios.items()):
        ax.bar([k + i * width for k in range(len(values))], [100 * v for v in values], width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(5)], [f"PC{k + 1}" for k in range(5)])
    ax.set_ylabel("explained variance (%)")
    ax.legend(fontsize=7, ncol=2)
    pc1 = [100 * values[0] for values in ratios.values()]
    ax.set_title(f"How one-dimensional each attention matrix's trajectory is: PC1 holds {min(pc1):.0f}-{max(pc1):.0f}%")
    return fig


def trajectory(run: Run | Path | str, axes=None) -> Figure:
    """Each attention matrix of the last layer, up to the detection step (as the PCA), projected on its own
    PC1-PC2 plane, coloured by step; on one Axes per matrix."""
    run = _as_run(run)
    cfg = run.config()
    last = f"blocks.{cfg.n_layers - 1}."
    trajectories = {k: v for k, v in trajectories_to_detection(run).items() if k.startswith(last)}
    steps = [i * cfg.snapshot_every for i in range(len(next(iter(trajectories.values()))))]
    fig, axes = _axes(axes, len(trajectories), (4 * len(trajectories), 3.8))
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
    return fig


def projections(run: Run | Path | str, ax=None) -> Figure:
    """proj/full of the defect: execution basis vs random bases of the same size vs sqrt(K/P)."""
    run = _as_run(run)
    rows, cfg = run.geometry(), run.config()
    k_exec, k_svd = run.basis().shape[1], cfg.n_layers * 4 * SVD_COMPONENTS
    steps = [r["step"] for r in rows]
    fig, ax = _axes(ax, 1, (8, 4.5))
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
    ax.set_title("Where the curvature points: the defect's share in the execution subspaces and in random ones")
    return fig


def dimensions(run: Run | Path | str, axes=None) -> Figure:
    """proj/full of the defect against the subspace size K at four phases (tinygrok dimensions: the weight-SVD,
    trajectory-PCA and random bases, and sqrt(K/P)); on four Axes."""
    run = _as_run(run)
    rows = run.dimensions()
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    fig, axes = _axes(axes, len(phases), (4 * len(phases), 4))
    for ax, phase in zip(axes, phases):
        at_phase = [r for r in rows if r["phase"] == phase]
        sizes = [r["K"] for r in at_phase]
        for key, style, label in (
            ("weight_svd", "^-", "current-weight SVD"),
            ("pca", "o-", "trajectory PCA"),
            ("random", "s--", "random bases"),
            ("theory", "k:", "sqrt(K/P)"),
        ):
            ax.plot(sizes, [r[key] for r in at_phase], style, ms=4, label=label)
        title = f"{phase} (step {at_phase[0]['step']})"
        ax.set(xscale="log", yscale="log", xlabel="K (directions in all)", title=title)
    axes[0].set_ylabel("||projection of defect|| / ||defect||")
    axes[0].legend(fontsize=8)
    fig.suptitle("How much of the curvature each subspace holds, by its size: above the dotted line = enriched")
    return fig


def forecast(run: Run | Path | str | Record, ax=None, baseline: Forecast | None = None) -> Figure:
    """The grok forecast against step, replayed as someone watching would have seen it (up to grok_90): the
    forecast step and its 80% interval, the truth (grok_90) and the curvature onset marked, and P(grok) beside. For
    a run, or a stored record; with a baseline's forecast, one that does not change with the step (the learning
    rate alone's), as a line and its interval."""
    rec, made = (
        (run, grok_forecaster.replay_record(run)) if isinstance(run, Record) else grok_forecaster.replay(_as_run(run))
    )
    shown = [(f.step, f) for f in before_grok(rec, made)]  # what someone watching saw
    steps = [s for s, _ in shown]
    fig, ax = _axes(ax, 1, (8, 4.5))
    ax.fill_between(
        steps,
        [f.low for _, f in shown],
        [f.high for _, f in shown],
        alpha=0.25,
        color="tab:green",
        label="80% interval",
    )
    ax.plot(steps, [f.grok_step for _, f in shown], color="tab:green", label="forecast grok_90")
    if baseline is not None:
        ax.axhspan(baseline.low, baseline.high, color="tab:blue", alpha=0.1, label="its 80%")
        ax.axhline(baseline.grok_step, color="tab:blue", ls="-.", label="learning rate alone")
    if rec.grok_90 is not None:
        ax.axhline(rec.grok_90, color="black", ls="--", label=f"true grok_90 = {rec.grok_90}")
    onset = curvature_onset(list(rec.rows))["onset_step"]  # the paper model's floor, the only one forecast
    if onset is not None:
        ax.axvline(onset, color="black", ls=":", label=f"onset_step = {onset}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("forecast grok step")
    p = ax.twinx()
    p.plot(steps, [f.p_grok for _, f in shown], color="tab:red", alpha=0.6, label="P(grok)")
    p.set_ylim(0, 1.02)
    p.set_ylabel("P(grok)")
    handles, more = ax.get_legend_handles_labels(), p.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper right", fontsize=8)
    ax.set_title(f"Grok forecast of {rec.op}, lr {rec.lr:g}, seed {rec.seed}")
    return fig


FIGURES = {
    "training": training,
    "defect": defect,
    "explained_variance": explained_variance,
    "trajectory": trajectory,
    "projections": projections,
    "dimensions": dimensions,
    "forecast": forecast,
}  # Run.figure(NAME)


def available(run: Run | Path | str) -> list[str]:
    """The figures the run's files allow, by name."""
    run = _as_run(run)
    names = ["training"]
    if any(r.get("defect") is not None for r in run.metrics()):
        names.append("defect")
    if run.has(PCA):
        names += ["explained_variance", "trajectory"]
    if run.has(GEOMETRY):
        names.append("projections")
    if run.has(DIMENSIONS):
        names.append("dimensions")
    return names


def save(run: Run | Path | str, name: str) -> Path:
    """Draw the figure `name` and write it into the run directory as NAME.png."""
    run = _as_run(run)
    path = run.figure(name)
    FIGURES[name](run).savefig(path, dpi=120)
    return path


def save_all(run: Run | Path | str) -> list[Path]:
    """Every figure the run's files allow, written into it."""
    return [save(run, name) for name in available(run)]


def _as_run(run: Run | Path | str) -> Run:
    return run if isinstance(run, Run) else Run(run)


def _axes(given, n: int, figsize: tuple):
    """(figure, the Axes to draw on): the given ones (n of them, or one), or a new Figure with n side by side."""
    if given is not None:
        axes = list(given) if n > 1 else [given]
        if len(axes) != n:
            raise ValueError(f"this figure draws on {n} Axes, {len(axes)} given")
        return axes[0].figure, (axes if n > 1 else axes[0])
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, n)
    return fig, (list(axes) if n > 1 else axes)
