"""Using several cores: `with cores(n):` runs tinygrok's work on n of them.

More BLAS threads speed up only the matrix products; NumPy's element-wise loops and the Python between them stay
on one core (docs/speed.md: where the time goes). So the work is cut into independent pieces instead, one per
core, each with BLAS on one thread, and n - 1 of them run in worker processes (`side_by_side`): a commutator
sample's two pairs of independent gradients, the shards a training batch is cut into (`batch_gradient`), the
chunks of an evaluation. Every result is the same on any number of cores. Processes, not threads: the Python
between NumPy calls holds the GIL (evaluation on two threads is slower than in two processes), and autograd's
tracing is not thread-safe (its trace counter is shared by all threads).

Training and the geometry analysis keep BLAS on one thread throughout (`recorded_arithmetic`, which also flushes
subnormal numbers to zero), so that what a run records never depends on n; elsewhere (Hessian-vector products,
bench) BLAS uses n threads. On a GPU backend everything is serial: the device is the parallel part.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from autograd import grad
from threadpoolctl import ThreadpoolController, threadpool_limits

from tinygrok.engine import backend
from tinygrok.engine.fast import flat_grad
from tinygrok.engine.ops import sum_axis
from tinygrok.science.config import Config

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder this tinygrok/ is in: what a worker imports

_cores = 1  # n of the innermost cores(n) context
_workers: list[Worker] = []  # its worker processes, started when first needed


@contextlib.contextmanager
def cores(n: int):
    """A context in which tinygrok uses n cores: BLAS threads, and worker processes for side_by_side.
    Worker processes started inside it are stopped when it ends."""
    global _cores, _workers
    if n < 1:
        raise ValueError(f"cores({n}): at least one core")
    previous = _cores, _workers
    _cores, _workers = n, []
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        for worker in _workers:
            worker.close()
        _cores, _workers = previous


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # scanning the loaded libraries takes milliseconds: once


@contextlib.contextmanager
def recorded_arithmetic():
    """The arithmetic of everything tinygrok records: BLAS on one thread (how many threads sum a product can move
    its last bits; the cores work side by side instead), subnormal numbers flushed to zero
    (backend.subnormals_flushed: without it a collapsing run is ~15 times slower), and NumPy's overflow warnings
    silenced: training checks for non-finite numbers itself and stops with one line (train.Diverged)."""
    with (
        _blas_controller().limit(limits=1, user_api="blas"),
        backend.subnormals_flushed(),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
    ):
        yield


def _serial() -> bool:
    return _cores == 1 or backend.NAME != "numpy" or os.name != "posix"


def side_by_side(fn, jobs: list[tuple], cfg: Config) -> list:
    """[fn(*job, cfg) for job in jobs], n at a time: the first of each n here, the others in worker processes,
    BLAS on one thread in each: the same values as computing them here one after another.

    fn must be a module-level function (workers import it by name). Its first argument, theta (P,), goes to a
    worker through shared memory, and so does a result of theta's shape and dtype (a gradient); anything else is
    pickled.
    """
    if _serial() or len(jobs) < 2:
        return [fn(*job, cfg) for job in jobs]
    _start_workers(max(job[0].nbytes for job in jobs), min(_cores, len(jobs)) - 1)
    results = []
    for start in range(0, len(jobs), _cores):
        here, *there = jobs[start : start + _cores]
        busy = []
        try:
            for worker, job in zip(_workers, there):
                worker.submit(fn, *job, cfg)
                busy.append(worker)
            with recorded_arithmetic():
                own = fn(*here, cfg)  # this process's job
        finally:  # read the workers' replies even if this job failed, so none is left for the next call
            theirs = _collect(busy)
        results += [own, *theirs]
    return results


@dataclass(frozen=True)
class Derivatives:
    """What the curvature probes (commutator.py) need of the loss, from an engine's gradient (the fast one unless
    given another): plain mean cross-entropy gradients at several (theta, tokens, labels), side by side given
    several cores, and Hessian-vector products.
    Batches drawn on the host go to the array backend's device here."""

    cfg: Config
    gradient: Callable = flat_grad  # (theta, tokens, labels, cfg) -> (P,): the engine's (engines.py)

    def gradients(self, jobs: list[tuple]) -> list:
        """[d loss_batch / d theta at theta for (theta, tokens, labels) in jobs], each (P,)."""
        return side_by_side(
            self.gradient, [(theta, *map(backend.to_device, batch)) for theta, *batch in jobs], self.cfg
        )

    def hvp(self, theta, batch: tuple, v):
        """H v, the Hessian of the batch loss at theta times v: (P,) -> (P,), by differentiating <grad, v>."""
        tokens, labels = map(backend.to_device, batch)
        return grad(lambda t: sum_axis(self.gradient(t, tokens, labels, self.cfg) * v, 0))(theta)


def _collect(workers: list[Worker]) -> list:
    """Every worker's result, in order; a failure is raised only once every reply has been read (or its worker
    stopped), so that no reply is left for the next call."""
    results, errors = [], []
    for worker in workers:
        try:
            results.append(worker.result())
        except WorkerError as err:
            errors.append(err)
    if errors:
        raise errors[0]
    return results


def _start_workers(capacity: int, count: int) -> None:
    """Make sure at least `count` workers run, each able to take a theta of `capacity` bytes."""
    for i, worker in enumerate(_workers):
        if worker.capacity < capacity or worker.process.poll() is not None:
            worker.close()
            _workers[i] = Worker(capacity)
    _workers.extend(Worker(capacity) for _ in range(count - len(_workers)))


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_cores(cfg: Config) -> int:
    """The cores a run uses unless told otherwise: all there are, but no more than its batch has shards."""
    return max(1, min(available_cores(), cfg.batch_shards))


def split(n: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[0, n) cut into at most `parts` contiguous ranges of near-equal size, cut only at multiples of `multiple`,
    none of them empty."""
    blocks = -(-n // multiple)
    parts = max(1, min(parts, blocks))
    cuts = [min(n, multiple * (blocks * i // parts)) for i in range(parts + 1)]
    return list(zip(cuts, cuts[1:]))


def ranges(n: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[0, n) cut into one contiguous range per core (one range when serial), at multiples of `multiple`."""
    return split(n, 1 if _serial() else _cores, multiple)


def batch_gradient(theta, tokens, labels, cfg: Config, gradient: Callable = flat_grad):
    """The gradient of the mean loss over a batch (N examples), always as the size-weighted mean of the gradients
    of cfg.batch_shards contiguous shards, summed in shard order: side by side on several cores, one after another
    on one. Mathematically one gradient of the whole batch; in float32 the grouping of the sums moves the last
    bits, so it is fixed by the config, never by the number of cores. `gradient`: the engine's (engines.py), a
    module-level function."""
    shards = [(theta, tokens[a:b], labels[a:b]) for a, b in split(len(tokens), cfg.batch_shards)]
    if len(shards) == 1:
        with recorded_arithmetic():
            return gradient(theta, tokens, labels, cfg)
    total = None
    for (_, shard, _), part in zip(shards, side_by_side(gradient, shards, cfg)):
        part *= len(shard) / len(tokens)  # a Python float: the gradient's dtype is kept
        total = part if total is None else total + part
    return total  # (P,)


class WorkerError(RuntimeError):
    """A worker process failed or died."""


class Worker:
    """A Python process computing fn(theta, ..., cfg) on request. theta goes in, and a result of its size comes
    back, through a block of shared memory (2 x P numbers: nothing large is pickled); fn, the other arguments and
    the config go through its stdin, its reply through its stdout.

    A plain subprocess, not multiprocessing: its spawn method re-imports the caller's main script (which then
    needs an `if __name__ == "__main__"` guard), and fork copies this process's threads' locks."""

    def __init__(self, capacity: int):
        self.capacity = capacity  # bytes of theta it can take
        self.job = None  # (dtype, P) of the request it is working on
        self.memory_fd = _anonymous_file(2 * capacity)
        self.memory = mmap.mmap(self.memory_fd, 2 * capacity)
        start = (
            f"import sys; sys.path[0] = {str(PACKAGE_ROOT)!r}; "  # this tinygrok, not one in the working directory
            f"from tinygrok.engine.parallel import serve; serve({self.memory_fd}, {capacity})"
        )
        one_thread = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", start],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=[self.memory_fd],
            env={**os.environ, **one_thread},
            start_new_session=True,
        )  # Ctrl-C reaches only this process, which then closes the pipe

    def submit(self, fn, theta, *args) -> None:
        request = pickle.dumps((fn, theta.dtype.str, theta.size, args))  # first: it may fail (fn not importable)
        self.job = (theta.dtype, theta.size)
        _slots(self.memory, *self.job)[0] = theta
        with contextlib.suppress(BrokenPipeError):  # a dead worker: result() finds its output ended
            self.process.stdin.write(request)
            self.process.stdin.flush()

    def result(self):
        try:
            kind, value = pickle.load(self.process.stdout)
        except BaseException as err:  # its reply is lost (or unread, on Ctrl-C): it must not serve another call
            self.close()
            if isinstance(err, Exception):
                raise WorkerError(f"a worker process died (exit code {self.process.returncode})") from None
            raise
        if kind == "error":
            raise WorkerError(f"a worker failed:\n{value}")
        return _slots(self.memory, *self.job)[1].copy() if kind == "in memory" else value

    def close(self) -> None:
        if self.memory.closed:
            return
        with contextlib.suppress(BrokenPipeError):  # a dead worker's pipe
            self.process.stdin.close()  # the worker reads the end of its input and returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.memory.close()
        os.close(self.memory_fd)


def _anonymous_file(size: int) -> int:
    """The descriptor of a nameless file of `size` bytes, for memory shared with a child process: in RAM
    (memfd) on Linux; elsewhere an unlinked temporary file. Nothing is left behind however the processes end."""
    try:
        fd = os.memfd_create("tinygrok-worker")
    except (AttributeError, OSError):  # not Linux, or not allowed here
        fd, path = tempfile.mkstemp(prefix="tinygrok-worker-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


def _slots(memory: mmap.mmap, dtype, size: int) -> np.ndarray:
    """theta's slot and its gradient's in the shared memory: (2, P)."""
    return np.ndarray((2, size), dtype, buffer=memory)


def serve(memory_fd: int, capacity: int) -> None:
    """A worker's loop, until stdin ends: read a request, compute it with theta from the shared memory, reply
    ("in memory", None) having written a result of theta's size there, ("value", result), or ("error",
    traceback)."""
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else written to stdout, even from C, goes to stderr: it must not corrupt the replies
    sys.stdout = sys.stderr
    backend.reuse_freed_memory()
    memory = mmap.mmap(memory_fd, 2 * capacity)
    while True:
        try:
            fn, dtype, size, args = pickle.load(requests)
        except EOFError:
            return
        try:
            theta, out = _slots(memory, dtype, size)
            with recorded_arithmetic():
                result = fn(theta, *args)
            if isinstance(result, np.ndarray) and (result.shape, result.dtype) == (theta.shape, theta.dtype):
                out[:] = result
                reply = pickle.dumps(("in memory", None))
            else:
                reply = pickle.dumps(("value", result))
        except Exception:
            reply = pickle.dumps(("error", traceback.format_exc()))
        replies.write(reply)
        replies.flush()
