"""Timing tinygrok's workloads: medians over repeats, the cores used set explicitly, peak memory per workload."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

from tinygrok.engine import backend, parallel
from tinygrok.engine.engines import ENGINES
from tinygrok.run.train import evaluate, fresh_state, train_step
from tinygrok.science.commutator import defect_sample
from tinygrok.science.config import Config
from tinygrok.science.data import make_dataset, sample_batch, stream
from tinygrok.science.interventions import Hook


def median_ms(
    fn: Callable[[], object], repeats: int, warmup: int = 2, sync: Callable[[], object] = lambda: None
) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls; `sync` waits for work fn() left
    queued on a device (a GPU runs asynchronously), so that it is timed too."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def peak_mib(fn: Callable[[], object]) -> float:
    """Peak memory NumPy allocated during one call of fn() on one core, in MiB (tracemalloc sees NumPy's buffers,
    but only in this process: on several cores, each worker process holds its own share)."""
    with parallel.cores(1):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()


def workloads(cfg: Config) -> dict[str, Callable[[], object]]:
    """The named workloads of a training run on its engine (auto: the fast one): one optimizer step (batch
    cfg.batch_size, and the whole training set), one full evaluation, one commutator-defect sample (four
    gradients)."""
    backend.reuse_freed_memory()
    engine = ENGINES["readable" if cfg.engine == "readable" else "fast"]
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    state = {"s": fresh_state(cfg)}
    rng = stream(cfg.seed, "bench")
    full = cfg.replace(batch_size=len(data.train_x))

    def step(config):
        def run():
            state["s"], _ = train_step(state["s"], data, config, Hook(), engine=engine)

        return run

    return {
        "train_step": step(cfg),
        "train_step_full_batch": step(full),
        "eval": lambda: evaluate(state["s"].theta, data, cfg, engine),
        "commutator_sample": lambda: defect_sample(
            state["s"].theta,
            sample_batch(data, cfg.batch_size, rng),
            sample_batch(data, cfg.batch_size, rng),
            parallel.Derivatives(cfg, engine.gradient),
        ),
    }


def bench(cfg: Config, threads: int, repeats: int = 10) -> dict:
    """Median ms of every workload on `threads` cores (parallel.cores), peak MiB of each; plus BLAS and versions."""
    with parallel.cores(threads):
        jobs = workloads(cfg)
        result = {f"{name}_ms": round(median_ms(fn, repeats), 3) for name, fn in jobs.items()}
        result.update({f"{name}_peak_mib": round(peak_mib(fn), 1) for name, fn in jobs.items()})
        result.update(backend.describe())
    return {"repeats": repeats, **result}
