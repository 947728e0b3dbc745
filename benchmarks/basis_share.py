"""How much of the gradient lies in the execution basis B, for the intervention protocols (docs/differences.md).

On "own" batches an intervention run retraces its baseline until the projection starts, so the baseline's B is
the PCA of the run's own future path; on "shifted" batches (the reference code's) a closely related path's; on
"sibling" batches an independent run's.
This trains, for one seed of add, the project arm at s = 0 and at `--doses` on each protocol, saving all
parameters every `--every` steps, and at every saved theta from update 500 to the detection step of the s = 0 run
on the same batches takes the gradient of the mean loss over the whole training set, g, and reports
proj/full = ||B^T g_A|| / ||g_A|| of its attention-block part g_A (the coordinates B lives on) for the baseline's
B and for a random orthonormal basis of the block of the same size; ||B^T g|| / ||g|| of the whole gradient
(what project at s = 1 keeps); and the same proj/full, for both bases, of the attention block's steps since the
previous saved theta (the update AdamW made of the gradients). The runs go to --out and resume when the same
command runs again.

    python benchmarks/basis_share.py --out /tmp/basis_share [--seed 42] [--doses 0.75] [--every 200] [--preset paper]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from tinygrok.engine import parallel
from tinygrok.lab import recipes
from tinygrok.run.runs import THETAS, Run
from tinygrok.science.analysis import detection_step, mean_sd
from tinygrok.science.commutator import projection_fractions
from tinygrok.science.data import make_dataset, stream
from tinygrok.science.model import attention_indices
from tinygrok.science.pca import random_basis

START = 500  # the projection's first update (project's start)
COLUMNS = ("gradient", "gradient, random", "whole gradient", "steps", "steps, random")


def shares(run: Run, basis: np.ndarray, random_block: np.ndarray, last_step: int) -> list[dict]:
    """proj/full of the training-set gradient at each saved theta of `run` in (START, last_step]."""
    cfg = run.config()
    data, block = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed), attention_indices(cfg)
    thetas, rows = run.rows(THETAS), []
    for i, theta in enumerate(thetas):
        step = i * cfg.theta_every
        if START < step <= last_step:
            g = np.asarray(parallel.batch_gradient(np.array(theta), data.train_x, data.train_y, cfg), np.float64)
            moved = np.asarray(theta[block], np.float64) - thetas[i - 1][block]  # the steps since the last theta
            rows.append(
                {
                    "step": step,
                    "gradient": projection_fractions(g[block], basis[block])[0],
                    "gradient, random": projection_fractions(g[block], random_block)[0],
                    "whole gradient": projection_fractions(g, basis)[0],
                    "steps": projection_fractions(moved, basis[block])[0],
                    "steps, random": projection_fractions(moved, random_block)[0],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--doses", type=float, nargs="*", default=[0.75])
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--preset", default="paper", help="paper, or classroom for a quick look")
    args = parser.parse_args()
    with threadpool_limits(1):
        print("BLAS threads: 1 (threadpoolctl); one process")
        table = []
        for batches in ("own", "shifted", "sibling"):
            specs = [
                recipes.intervention(
                    "project", s, preset=args.preset, batches=batches, seed=args.seed, theta_every=args.every
                )
                for s in [0.0, *args.doses]
            ]
            base = recipes.baseline(specs[0])
            recipes.execute(base, args.out)
            basis = Run(args.out / base.name).basis()
            block = attention_indices(specs[0].config)
            random_block = random_basis(len(block), basis.shape[1], stream(args.seed, "basis share"))
            results = [recipes.execute(spec, args.out) for spec in specs]
            last = detection_step(
                Run(args.out / specs[0].name).metrics(), specs[0].config.stop_acc, specs[0].config.stop_patience
            )
            for spec, result in zip(specs, results):
                rows = shares(Run(args.out / spec.name), basis, random_block, last)
                table.append((batches, spec.config.hook, result.get("grok_step"), rows))
    print(f"saved thetas every {args.every} steps in ({START}, detection of the s = 0 run]; median [min-max]")
    print("| batches | hook | grok step | n | B: g_A | random: g_A | B: whole g | B: steps | random: steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batches, hook, grok, rows in table:
        cells = [_median_range([r[key] for r in rows]) for key in COLUMNS]
        print(f"| {batches} | {hook} | {grok} | {len(rows)} | " + " | ".join(cells) + " |")


def _median_range(values: list[float]) -> str:
    return f"{np.median(values):.3f} [{min(values):.3f}-{max(values):.3f}] (mean {mean_sd(values)['mean']:.3f})"


if __name__ == "__main__":
    main()
