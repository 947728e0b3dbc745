"""One function per figure; each reads a run directory and writes a PNG into it."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from tinygrok.analysis import grok_summary  # noqa: E402
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
    path = run.path / "training.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
