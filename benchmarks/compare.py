"""tinygrok against the PyTorch reference at the paper settings, in alternating worker processes.

    pip install -e ".[bench]"         # torch 2.13.0: benchmark-only (a local CPU build on these machines)
    python benchmarks/compare.py      # prints a table, writes benchmarks/results.json

For each BLAS thread count (set explicitly for both: threadpoolctl and torch.set_num_threads) and each workload
(training step at batch 512 and on the whole training set, a full evaluation of all pairs, one commutator-defect
sample; and with --runs, one evaluation interval of each run protocol: 100 training steps, an evaluation and, for
the generalization-dynamics run, K = 5 commutator samples, reported per step), a worker process per library
times `repeats` calls; the libraries alternate for `rounds` rounds, so a
drifting shared machine affects both alike, and medians over all calls are compared (with the range of the
ratios of the rounds' own medians, to show how much the machine moved). Separate processes keep
OpenBLAS's and torch's OpenMP thread pools from spinning against each other (alternating them call by call in
one process made torch's 2-thread step 2.4x slower than its 1-thread step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch_reference as ref

from tinygrok.engine import backend, parallel
from tinygrok.lab.benchmark import peak_mib, workloads
from tinygrok.science.config import preset
from tinygrok.science.data import make_dataset, stream


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


EVAL_EVERY = 100  # steps between evaluations, in both protocols (docs/paper.md §3)
RUNS = {"training_run": 0, "dynamics_run": 5}  # commutator samples per evaluation: none, or K = 5 (§6.2)


def run_interval(jobs: dict, samples: int, arithmetic=contextlib.nullcontext):
    """One evaluation interval of a run, as both libraries' runs count it: EVAL_EVERY training steps, an evaluation
    of all pairs and `samples` commutator samples, under `arithmetic` (tinygrok's training loop runs in
    parallel.recorded_arithmetic: BLAS on one thread per process, the cores side by side)."""

    def interval():
        with arithmetic():
            for _ in range(EVAL_EVERY):
                jobs["train_step"]()
            jobs["eval"]()
            for _ in range(samples):
                jobs["commutator_sample"]()

    return interval


def worker(library: str, threads: int, repeats: int, overrides: dict, only: list) -> dict:
    """{workload: [ms, ...]} for one library at the paper settings with `overrides`, after two warm-up calls of
    each workload (all, or those named in `only`)."""
    cfg = preset("paper", **overrides)
    torch.set_num_threads(threads)
    with parallel.cores(threads):
        jobs = workloads(cfg) if library == "tinygrok" else torch_workloads(cfg)
        arithmetic = parallel.recorded_arithmetic if library == "tinygrok" else contextlib.nullcontext
        jobs.update({name: run_interval(jobs, samples, arithmetic) for name, samples in RUNS.items()})
        jobs = {k: f for k, f in jobs.items() if k in only or not only and k not in RUNS}
        times = {}
        for name, fn in jobs.items():
            fn(), fn()
            times[name] = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                per_call = EVAL_EVERY if name in RUNS else 1  # a run interval is reported per step
                times[name].append(1e3 * (time.perf_counter() - start) / per_call)
        if library == "tinygrok" and not only:
            times["peak_mib"] = {name: peak_mib(fn) for name, fn in jobs.items()}
    return times


def run_worker(library: str, threads: int, repeats: int, overrides: dict | None = None, only=()) -> dict:
    """worker() in a fresh process, so that one library's thread pool never competes with the other's."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        library,
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        "--config",
        json.dumps(overrides or {}),
        "--only",
        *only,
    ]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks since boot from /proc/stat, (0, 0) where there is none: time a hypervisor gave
    this virtual machine's cores to someone else, which slows whichever library is running."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    return sum(fields[:8]), fields[7]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per workload per worker")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two libraries")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--worker", choices=["tinygrok", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument(
        "--runs",
        action="store_true",
        help="time the two run protocols (ms per step, evaluation and probes included) instead of the single workloads",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads[0], args.repeats, json.loads(args.config), args.only)))
        return
    rows, steal = [], {}  # steal: % of CPU time the hypervisor took, per thread count
    for threads in args.threads:
        rounds, peaks = [], {}  # rounds[i][library][workload] = [ms, ...]
        before = cpu_ticks()
        for _ in range(args.rounds):
            only = list(RUNS) if args.runs else []
            rounds.append(
                {library: run_worker(library, threads, args.repeats, only=only) for library in ("tinygrok", "torch")}
            )
            peaks.update(rounds[-1]["tinygrok"].pop("peak_mib", {}))
        ticks, stolen = (b - a for a, b in zip(before, cpu_ticks()))
        steal[threads] = round(100 * stolen / max(ticks, 1), 1)
        for name in rounds[0]["tinygrok"]:
            t, r = (statistics.median([ms for one in rounds for ms in one[lib][name]]) for lib in ("tinygrok", "torch"))
            per_round = [
                statistics.median(one["tinygrok"][name]) / statistics.median(one["torch"][name]) for one in rounds
            ]  # how much the shared machine moved the ratio
            rows.append(
                {
                    "threads": threads,
                    "workload": name,
                    "tinygrok_ms": round(t, 2),
                    "torch_ms": round(r, 2),
                    "ratio": round(t / r, 3),
                    "round_ratios": [round(x, 3) for x in per_round],
                    "tinygrok_peak_mib": round(peaks.get(name, float("nan")), 1),
                }
            )
    info = {
        **{k: v for k, v in backend.describe().items() if k != "threads"},
        "torch": torch.__version__,
        "env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")},
    }
    print(
        f"{'threads':>7} {'workload':<22} {'tinygrok ms':>11} {'torch ms':>9} {'ratio':>6} {'rounds':>11} "
        "tinygrok peak MiB (one core; torch's allocator is invisible to tracemalloc)"
    )
    for r in rows:
        spread = f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}"
        print(
            f"{r['threads']:>7} {r['workload']:<22} {r['tinygrok_ms']:>11} {r['torch_ms']:>9} {r['ratio']:>6} "
            f"{spread:>11} {r['tinygrok_peak_mib']:>8}"
        )
    print(f"CPU time stolen by the hypervisor while measuring, by threads: {steal} %")
    print(json.dumps(info))
    args.out.write_text(json.dumps({"rows": rows, "steal_percent": steal, "environment": info}, indent=2) + "\n")


if __name__ == "__main__":
    main()
