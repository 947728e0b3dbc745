"""tinygrok against the PyTorch reference, interleaved in one process, at the paper settings.

    pip install torch==2.13.0         # benchmark-only dependency (a local CPU build on these machines)
    python benchmarks/compare.py      # prints a table, writes benchmarks/results.json

For each BLAS thread count (set explicitly for both: threadpoolctl and torch.set_num_threads) and each workload
(training step at batch 512 and on the whole training set, a full evaluation of all pairs, one commutator-defect
sample), the two libraries alternate call by call; medians over the repeats are compared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch_reference as ref  # noqa: E402
from tinygrok import backend  # noqa: E402
from tinygrok.bench import peak_mib, workloads  # noqa: E402
from tinygrok.config import preset  # noqa: E402
from tinygrok.data import make_dataset, stream  # noqa: E402


def torch_workloads(cfg) -> dict:
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model, opt, loss_fn = ref.make(cfg)
    tx, ty = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    ax = torch.from_numpy(np.concatenate([data.train_x, data.test_x]))
    ay = torch.from_numpy(np.concatenate([data.train_y, data.test_y]))
    rng = stream(cfg.seed, "torch-bench")

    def batch():
        idx = torch.from_numpy(rng.integers(0, len(tx), cfg.batch_size))
        return tx[idx], ty[idx]

    return {
        "train_step": lambda: ref.train_step(model, opt, loss_fn, *batch()),
        "train_step_full_batch": lambda: ref.train_step(model, opt, loss_fn, tx, ty),
        "eval": lambda: ref.evaluate(model, ax, ay),
        "commutator_sample": lambda: ref.commutator_sample(model, loss_fn, batch(), batch()),
    }


def interleaved_medians(jobs: dict, repeats: int) -> dict:
    """{(library, workload): median ms}, the libraries alternating call by call after two warm-up calls."""
    times = {key: [] for key in jobs}
    for fn in jobs.values():
        fn(), fn()
    for _ in range(repeats):
        for key, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[key].append(1e3 * (time.perf_counter() - start))
    return {key: statistics.median(t) for key, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    cfg = preset("paper")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        with backend.blas_threads(threads):
            ours, theirs = workloads(cfg), torch_workloads(cfg)
            jobs = {**{("tinygrok", k): f for k, f in ours.items()}, **{("torch", k): f for k, f in theirs.items()}}
            medians = interleaved_medians(jobs, args.repeats)
            for name in ours:
                t, r = medians[("tinygrok", name)], medians[("torch", name)]
                rows.append({"threads": threads, "workload": name, "tinygrok_ms": round(t, 2),
                             "torch_ms": round(r, 2), "ratio": round(t / r, 3),
                             "tinygrok_peak_mib": round(peak_mib(ours[name]), 1)})
    info = {**{k: v for k, v in backend.describe().items() if k != "threads"}, "torch": torch.__version__,
            "env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}}
    print(f"{'threads':>7} {'workload':<22} {'tinygrok ms':>11} {'torch ms':>9} {'ratio':>6} {'peak MiB':>8}")
    for r in rows:
        print(f"{r['threads']:>7} {r['workload']:<22} {r['tinygrok_ms']:>11} {r['torch_ms']:>9} {r['ratio']:>6} "
              f"{r['tinygrok_peak_mib']:>8}")
    print(json.dumps(info))
    args.out.write_text(json.dumps({"rows": rows, "environment": info}, indent=2) + "\n")


if __name__ == "__main__":
    main()
