"""The training loop (docs/paper.md §3): sample -> grad -> clip -> hook -> AdamW -> hook -> evaluate -> checkpoint."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinygrok.engine import backend, engines, kernels, parallel
from tinygrok.engine.engines import ENGINES, Engine
from tinygrok.run.runs import CHECKPOINT_STREAMS, SNAPSHOTS, THETAS, Run, RunError
from tinygrok.science import interventions
from tinygrok.science.analysis import curvature_summary, detection_step, grok_summary
from tinygrok.science.commutator import defect_samples, defect_stats
from tinygrok.science.config import BATCH_STREAMS, Config
from tinygrok.science.data import Dataset, make_dataset, sample_batch, skip_batches, stream
from tinygrok.science.interventions import Hook
from tinygrok.science.model import attention_indices, flatten, init_params, layout, param_count, snapshot_vector
from tinygrok.science.optim import AdamWState, clip_by_global_norm
from tinygrok.science.pca import random_basis

LOG = logging.getLogger(__name__)  # the engine's line, when auto trains on the readable one
EVAL_CHUNK = 512  # examples per forward pass on a CPU: activations stay in the L2 cache (fastest measured)
DEVICE_EVAL_CHUNK = 16_384  # on a GPU: few large passes, each ending in a synchronising copy of two numbers


@dataclass
class TrainState:
    """Everything that changes during training; with the Config it determines the rest of the run."""

    theta: np.ndarray  # (P,) flat parameters
    adam: AdamWState
    step: int
    batch_rng: np.random.Generator
    probe_rng: np.random.Generator  # the commutator's batches: never the training batches' stream
    hook_rng: np.random.Generator  # the intervention's randomness, if it has any

    def streams(self) -> dict[str, np.random.Generator]:
        """The random streams a checkpoint saves, by their names in it."""
        return {"batch_rng": self.batch_rng, "probe_rng": self.probe_rng, "hook_rng": self.hook_rng}


DIVERGED_STAGE = "diverged"  # summary.json's stage of a run stopped by a non-finite number


class Diverged(Exception):
    """Training produced a non-finite number at `step`: the run stopped there, its last good checkpoint kept."""

    def __init__(self, step: int, quantity: str, value: float | str):
        super().__init__(step, quantity, value)  # picklable: a sweep's worker sends it back whole
        self.step, self.quantity, self.value = step, quantity, value

    def __str__(self) -> str:
        return (
            f"the run diverged at step {self.step}: {self.quantity} is {self.value}; it stopped there, its last "
            "good checkpoint kept and diverged_at in summary.json (a smaller --lr may help)"
        )


def _check_finite(step: int, quantity: str, value: float) -> None:
    if not math.isfinite(value):
        raise Diverged(step, quantity, value)


def fresh_state(cfg: Config) -> TrainState:
    theta = backend.to_device(flatten(init_params(cfg, stream(cfg.seed, "init"))))
    return TrainState(theta, AdamWState.zeros_like(theta), 0, **initial_streams(cfg))


def initial_streams(cfg: Config) -> dict[str, np.random.Generator]:
    """The run's random streams as they start, by their keys in a checkpoint: the batches' as cfg.batches says."""
    names = {**CHECKPOINT_STREAMS, "batch_rng": BATCH_STREAMS[cfg.batches]}
    return {key: stream(cfg.seed, name) for key, name in names.items()}


def evaluate(theta: np.ndarray, data: Dataset, cfg: Config, engine: Engine = ENGINES["fast"]) -> dict:
    """Mean loss and exact accuracy on the whole train and test sets (§1.5), in chunks of examples, by the
    engine's forward pass; with several cores, each takes a run of whole chunks. The numbers do not depend on the
    cores."""
    size = EVAL_CHUNK if backend.NAME == "numpy" else DEVICE_EVAL_CHUNK
    row = {}
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        jobs = [(theta, x[a:b], y[a:b], size, engine) for a, b in parallel.ranges(len(x), multiple=size)]
        totals = [chunk for part in parallel.side_by_side(chunk_totals, jobs, cfg) for chunk in part]
        row[f"{split}_loss"] = sum(loss for loss, _ in totals) / len(x)
        row[f"{split}_acc"] = sum(hits for _, hits in totals) / len(x)
    return row


def chunk_totals(theta, tokens, labels, size: int, engine: Engine, cfg: Config) -> list[tuple[float, int]]:
    """(summed loss, correct predictions) of each chunk of `size` examples, in order."""
    totals = []
    for i in range(0, len(tokens), size):
        x, y = backend.to_device(tokens[i : i + size]), backend.to_device(labels[i : i + size])
        logits = engine.logits(theta, x, cfg)  # (size, vocab)
        totals.append(
            (float(kernels.cross_entropy(logits, y)) * len(logits), int(np.sum(np.argmax(logits, axis=1) == y)))
        )
    return totals


def train_step(
    state: TrainState,
    data: Dataset,
    cfg: Config,
    hook: Hook,
    basis: np.ndarray | None = None,
    engine: Engine = ENGINES["fast"],
) -> tuple[TrainState, dict]:
    """One optimizer step (optim.py's: clip, then AdamW) on the engine's gradient and AdamW, the hook around it
    (given `basis`, if it needs the execution basis); returns the new state and the step's pre-clipping gradient
    norm. The engine is the caller's choice, unchecked (train() chooses it by cfg.engine: engines.choose)."""
    x, y = map(backend.to_device, sample_batch(data, cfg.batch_size, state.batch_rng))
    g = parallel.batch_gradient(state.theta, x, y, cfg, engine.gradient)  # (P,)
    g, norm = clip_by_global_norm(g, cfg.clip_norm)
    _check_finite(state.step + 1, "the gradient norm", norm)  # a non-finite loss has a non-finite gradient
    defects = functools.partial(
        _hook_defects,
        data=data,
        cfg=cfg,
        rng=state.hook_rng,
        batch_rng=state.batch_rng,
        derivatives=parallel.Derivatives(cfg, engine.gradient),
    )
    ctx = interventions.Context(
        state.hook_rng,
        basis,
        defects,
        backend.to_device,
        functools.partial(_random_subspace, cfg, backend.NAME),
        _attention_mask(cfg),
    )
    theta, g = hook.before_update(state.theta, g, state.step, ctx)
    t = state.adam.t + 1
    theta, m, v = engine.adamw(theta, g, state.adam.m, state.adam.v, t, **cfg.adamw())
    theta = hook.after_update(theta, state.step + 1, ctx)
    finite = np.isfinite(theta)  # (P,) bool, on theta's device
    if not bool(finite.all()):
        raise Diverged(state.step + 1, "a parameter", float(theta[~finite][0]))
    new = dataclasses.replace(state, theta=theta, adam=AdamWState(t, m, v), step=state.step + 1)
    return new, {"grad_norm": norm}


def _hook_defects(
    theta,
    k: int,
    data: Dataset,
    cfg: Config,
    rng: np.random.Generator,
    batch_rng: np.random.Generator,
    derivatives: parallel.Derivatives,
) -> list:
    """k commutator samples at theta for a hook, on batches from its stream (the training stream moves past them
    on shifted batches)."""
    samples = defect_samples(theta, data, cfg, rng, k, derivatives)
    skip_probed_batches(batch_rng, data, cfg, k)
    return samples


def skip_probed_batches(batch_rng: np.random.Generator, data: Dataset, cfg: Config, samples: int) -> None:
    """On "shifted" batches, the training stream moves past the two batches each commutator sample takes in the
    reference, whose probes draw from its training stream (§8.1); on the others the probes change no batch."""
    if cfg.batches == "shifted":
        skip_batches(data, cfg.batch_size, batch_rng, 2 * samples)


def _attention_mask(cfg: Config):
    """(P,) 1 on the attention matrices' weights (W_Q, W_K, W_V, W_O of every layer), 0 elsewhere, on the run's
    device."""
    return _device_mask(cfg, backend.NAME)


@functools.lru_cache(maxsize=8)
def _device_mask(cfg: Config, backend_name: str):
    """_attention_mask, cached per config and backend (backend_name only keys the cache: one mask per device)."""
    mask = np.zeros(param_count(cfg), dtype=cfg.dtype)
    mask[attention_indices(cfg)] = 1
    return backend.to_device(mask)


@functools.lru_cache(maxsize=8)
def _random_subspace(cfg: Config, backend_name: str, k: int):
    """R (P, k): the run's random orthonormal basis of k directions (keep_random's), drawn on the host from its
    "keep_random" stream once per run, the same after a resume; on the run's device (backend_name: the cache's
    key)."""
    return backend.to_device(random_basis(param_count(cfg), k, stream(cfg.seed, "keep_random")).astype(cfg.dtype))


# ---------------------------------------------------------------------- checkpoints
def not_spent() -> dict:
    """What a run has spent before its first step: wall and CPU seconds (the training process's own; a gradient
    worker process's is not counted), and how many times it was resumed."""
    return {"wall_seconds": 0.0, "cpu_seconds": 0.0, "resumes": 0}


def save_state(run: Run, state: TrainState, cfg: Config, spent: dict, engine: str = "fast") -> None:
    meta = {
        "step": state.step,
        "adam_t": state.adam.t,
        **spent,
        "batch_shards": cfg.batch_shards,
        "engine": engine,
        **{key: rng.bit_generator.state for key, rng in state.streams().items()},
    }
    params = {name: backend.to_host(w) for name, w in kernels.views(state.theta, layout(cfg)).items()}  # NumPy on disk
    moments = {"adam_m": backend.to_host(state.adam.m), "adam_v": backend.to_host(state.adam.v)}
    run.save_checkpoint(params, moments, meta)


def load_state(run: Run, cfg: Config) -> tuple[TrainState, dict, str]:
    """The state saved in the run's checkpoint, what the run has spent so far (not_spent's keys; a checkpoint
    written before CPU time and resumptions were counted gives None for them: unknown), and the engine it trained
    on."""
    params, arrays, meta = run.load_checkpoint()
    spec = layout(cfg)
    expected = {
        **{k: shape for k, (_, shape) in spec.items()},
        "adam_m": (param_count(cfg),),
        "adam_v": (param_count(cfg),),
    }
    found = {k: v.shape for k, v in {**params, **arrays}.items()}
    dtypes = {a.dtype for a in (*params.values(), *arrays.values())}
    written = {"step", "adam_t", "wall_seconds", "batch_shards", "engine"}  # save_state's meta, besides the streams
    if found != expected or dtypes != {np.dtype(cfg.dtype)} or not written <= set(meta):
        raise RunError(f"cannot resume: the checkpoint in {run.path} does not match its config.json")
    if meta["batch_shards"] != cfg.batch_shards:
        raise RunError(
            f"cannot resume {run.path}: its checkpoint was trained with batches cut into "
            f"{meta['batch_shards']} shard(s), its config.json says {cfg.batch_shards}"
        )
    streams = initial_streams(cfg)
    try:
        for key, rng in streams.items():
            rng.bit_generator.state = meta[key]
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"cannot resume: the checkpoint in {run.path} has no valid RNG state ({err})") from None
    adam = AdamWState(meta["adam_t"], backend.to_device(arrays["adam_m"]), backend.to_device(arrays["adam_v"]))
    theta = backend.to_device(flatten({k: params[k] for k in spec}))
    spent = {key: meta.get(key) for key in not_spent()}
    return TrainState(theta, adam, meta["step"], **streams), spent, meta["engine"]


def _plus(before: float | None, now: float) -> float | None:
    """A count carried across resumes, added to: None (not counted before) stays None."""
    return None if before is None else before + now


# ---------------------------------------------------------------------- the loop
# after every step: (step, its metrics row or None, the step the run will end at once that is known, else None)
StepCallback = Callable[[int, dict | None, int | None], None]


def train(
    cfg: Config,
    run: Run,
    *,
    resume: bool = False,
    on_step: StepCallback | None = None,
) -> dict:
    """Train until grokking is detected (plus cfg.extra_steps) or cfg.max_steps; return the results (the
    summary's; its environment holds the timing, versions and BLAS).

    Every cfg.eval_every steps: evaluate (and probe the curvature, if asked), append a metrics row, write a
    checkpoint. With `resume`, continue from the run's checkpoint: the result is bit-identical to a run that was
    never interrupted. A non-finite gradient norm, parameter or loss stops the run (Diverged) at that step, its
    last good checkpoint kept, with diverged_at in summary.json. It holds the run's lock (Run.writing).
    """
    with run.writing():
        return _train(cfg, run, resume, on_step)


def _start(cfg: Config, run: Run, resume: bool) -> tuple[TrainState, dict, list[dict], str | None]:
    """Where training starts: the state, what was spent before, the metrics rows so far and the engine that trained
    the last steps (None: a fresh run). A resume starts from the checkpoint, with the rows and snapshots written
    after it dropped."""
    if not resume:
        return fresh_state(cfg), not_spent(), [], None
    state, spent_before, before = load_state(run, cfg)
    spent_before["resumes"] = _plus(spent_before["resumes"], 1)
    rows = run.truncate_metrics(state.step)
    for name, every in ((SNAPSHOTS, cfg.snapshot_every), (THETAS, cfg.theta_every)):
        run.truncate_rows(name, state.step // every + 1 if every else 0)
    return state, spent_before, rows, before


def _train(cfg: Config, run: Run, resume: bool, on_step: StepCallback | None) -> dict:
    backend.reuse_freed_memory()
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    state, spent_before, rows, before = _start(cfg, run, resume)
    engine, why = _engine_from(state, data, cfg, before)
    if why:
        LOG.warning(why)
    hook = interventions.parse(cfg.hook)
    recorder = Recorder(cfg, run, data, rows, engine)
    basis = backend.to_device(run.hook_basis().astype(cfg.dtype)) if hook.needs_basis else None
    start, cpu_start, first_step, train_seconds = time.perf_counter(), time.process_time(), state.step, 0.0

    def spent() -> dict:
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        return {
            **spent_before,
            "wall_seconds": spent_before["wall_seconds"] + wall,
            "cpu_seconds": _plus(spent_before["cpu_seconds"], cpu),
        }

    try:
        with parallel.recorded_arithmetic():  # the cores work side by side: the numbers never depend on how many
            if not rows:
                recorder(state, {}, stop_at=cfg.max_steps, spent=spent_before)
            stop_at, known = _stop_step(rows, cfg)
            while state.step < stop_at:
                t0 = time.perf_counter()
                state, info = train_step(state, data, cfg, hook, basis, recorder.engine)
                train_seconds += time.perf_counter() - t0
                row = recorder(state, info, stop_at, spent())
                if row is not None:
                    stop_at, known = _stop_step(rows, cfg)
                    if state.step < stop_at:
                        why = _recheck(recorder, state, cfg) or why
                if on_step:
                    on_step(state.step, row, stop_at if known else None)
    except Diverged as err:
        run.record(
            DIVERGED_STAGE,
            {
                **_results(rows, cfg),
                "diverged_at": err.step,
                "diverged": err.quantity,
                "diverged_value": str(err.value),
                "steps": err.step - 1,
            },
            _environment(spent(), recorder.engine, why),
        )
        raise
    environment = _environment(spent(), recorder.engine, why)
    if state.step > first_step:  # a step's time, unless this was a resume of a run with no steps left
        environment["train_step_ms"] = round(1e3 * train_seconds / (state.step - first_step), 3)
    return run.record("train", {**_results(rows, cfg), "steps": state.step}, environment)


def _engine_from(state: TrainState, data: Dataset, cfg: Config, before: str | None) -> tuple[Engine, str]:
    """The engine that trains the run's next steps (engines.choose, which for "auto" checks the fast engine at
    state.theta), and the line that says why (empty if none); a change from `before`, the engine that trained the
    steps up to here, is said."""
    engine, why = engines.choose(cfg, state.theta, data)
    if before not in (None, engine.name):
        why = f"it trained on the {before} engine up to step {state.step}, and goes on on the {engine.name} one" + (
            f": {why}" if why else ""
        )
    return engine, why


def _recheck(recorder: Recorder, state: TrainState, cfg: Config) -> str:
    """At a checkpoint of an "auto" run, the engine chosen again, as a resume from the checkpoint would choose it
    (the fast engine checked at this state); it trains the next steps and records their probes. The line that says
    so where the engine changes, else ""."""
    if cfg.engine != "auto":
        return ""
    engine, why = _engine_from(state, recorder.data, cfg, recorder.engine.name)
    if engine is recorder.engine:
        return ""
    LOG.warning(why)
    recorder.engine = engine
    return why


def _environment(spent: dict, engine: Engine, why: str) -> dict:
    """Where, how long and on what the run trained: its wall and CPU time so far and its resumptions, the engine
    that trained its last steps (and the latest line that said why, where auto did not simply train on the fast
    one), versions, BLAS, threads."""
    return {
        "wall_seconds": round(spent["wall_seconds"], 3),
        "cpu_seconds": None if spent["cpu_seconds"] is None else round(spent["cpu_seconds"], 3),
        "resumes": spent["resumes"],
        "engine": engine.name,
        **({"engine_check": why} if why else {}),
        **backend.describe(),
    }


def _results(rows: list[dict], cfg: Config) -> dict:
    """What the metrics rows say about the run: grok steps, curvature onset and lead, final accuracies."""
    return {
        **grok_summary(rows, cfg.stop_acc, cfg.stop_patience),
        **(curvature_summary(rows, floor=cfg.onset_floor) if cfg.probe_every else {}),
        "final_train_acc": rows[-1]["train_acc"] if rows else None,
        "final_test_acc": rows[-1]["test_acc"] if rows else None,
        "params": param_count(cfg),
    }


def diverged(run: Run) -> Diverged | None:
    """How the run diverged, if it did (summary.json, as train recorded it)."""
    if DIVERGED_STAGE not in run.stages():
        return None
    results = run.summary()
    return Diverged(results["diverged_at"], results["diverged"], results["diverged_value"])


@dataclass
class Recorder:
    """What the loop writes after a step: snapshots, and at evaluation steps a metrics row (with the curvature
    probe, at probed steps) and a checkpoint. Appends to `rows` and returns the new row, or None between
    evaluations."""

    cfg: Config
    run: Run
    data: Dataset
    rows: list
    engine: Engine = ENGINES["fast"]

    def __call__(self, state: TrainState, info: dict, stop_at: int, spent: dict) -> dict | None:
        cfg, step = self.cfg, state.step
        if _due(step, cfg.snapshot_every):  # cut out on the host: autograd's concatenate asks the arrays it
            # joins for a view as NumPy's ndarray, which a GPU array library refuses
            self.run.append_rows(SNAPSHOTS, snapshot_vector(backend.to_host(state.theta), cfg)[None])
        if _due(step, cfg.theta_every):
            self.run.append_rows(THETAS, backend.to_host(state.theta)[None])
        if step % cfg.eval_every and step != stop_at:
            return None
        row = {"step": step, **evaluate(state.theta, self.data, cfg, self.engine), **info}
        for split in ("train", "test"):
            _check_finite(step, f"the {split} loss", row[f"{split}_loss"])
        if _due(step, cfg.probe_every):
            samples = defect_samples(
                state.theta,
                self.data,
                cfg,
                state.probe_rng,
                cfg.probe_samples,
                parallel.Derivatives(cfg, self.engine.gradient),
            )
            row.update(defect_stats(samples))
            skip_probed_batches(state.batch_rng, self.data, cfg, cfg.probe_samples)
        self.rows.append(row)
        self.run.append_metrics(row)
        save_state(self.run, state, cfg, spent, self.engine.name)
        return row


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _stop_step(rows: list[dict], cfg: Config) -> tuple[int, bool]:
    """The step to stop at: cfg.max_steps, or cfg.extra_steps past the detection step once grokking has been
    detected; and whether that end is known (it is once grokking is detected: before, the run may still grok)."""
    detected = detection_step(rows, cfg.stop_acc, cfg.stop_patience)
    return (cfg.max_steps, False) if detected is None else (min(cfg.max_steps, detected + cfg.extra_steps), True)
