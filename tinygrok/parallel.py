"""Using several cores: `with cores(n):` runs tinygrok's work on n of them.

More BLAS threads speed up only the matrix products; NumPy's element-wise loops and autograd's bookkeeping stay
on one core (measured on a 2-core machine: a training step 1.1x faster with 2 BLAS threads than with 1). So work
is split into independent pieces instead, one per core, each with BLAS on one thread:

- evaluation chunks run on threads: forward passes trace nothing, and NumPy releases the GIL inside its loops;
- gradients run in worker processes: autograd's tracing is not thread-safe (its trace counter is shared by all
  threads) and its Python bookkeeping would hold the GIL. A commutator sample has two pairs of independent
  gradients; a training batch is split into one shard per core (`batch_gradient`).

Outside these pieces (SVDs, Hessian-vector products) BLAS uses n threads. On a GPU backend everything is serial:
the device is the parallel part.
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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits

from tinygrok import backend
from tinygrok.config import Config
from tinygrok.model import flat_grad

_cores = 1  # n of the innermost cores(n) context
_workers: list["GradientWorker"] = []  # its gradient worker processes, started when first needed


@contextlib.contextmanager
def cores(n: int):
    """A context in which tinygrok uses n cores: BLAS threads, evaluation threads and gradient processes.
    Worker processes started inside it are stopped when it ends."""
    global _cores, _workers
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


def _one_blas_thread():
    return _blas_controller().limit(limits=1, user_api="blas")


def _serial() -> bool:
    return _cores == 1 or backend.NAME != "numpy"


def parallel_map(fn, items: list) -> list:
    """[fn(item) for item in items], on n threads with BLAS pinned to one thread each. For NumPy work that
    autograd does not trace, such as evaluation; the results, in order, do not depend on n."""
    if _serial() or len(items) < 2:
        return [fn(item) for item in items]
    with _one_blas_thread(), ThreadPoolExecutor(_cores) as pool:
        return list(pool.map(fn, items))


def gradients(jobs: list[tuple], cfg: Config) -> list:
    """[flat_grad(theta, tokens, labels, cfg) for (theta, tokens, labels) in jobs], n at a time: one here, the
    others in worker processes. The same values as computing them one after another with BLAS on one thread."""
    if _serial() or len(jobs) < 2:
        return [flat_grad(*job, cfg) for job in jobs]
    _start_workers(max(job[0].nbytes for job in jobs))
    results = []
    for start in range(0, len(jobs), _cores):
        here, *there = jobs[start:start + _cores]
        busy = _workers[:len(there)]
        for worker, job in zip(busy, there):
            worker.submit(*job, cfg)
        try:
            with _one_blas_thread():
                mine = flat_grad(*here, cfg)
        finally:  # read the workers' replies even if this gradient failed, so none is left for the next call
            theirs = _collect(busy)
        results += [mine, *theirs]
    return results


def _collect(workers: list["GradientWorker"]) -> list:
    """Every worker's result, in order; a failure is raised only once all replies have been read."""
    results, errors = [], []
    for worker in workers:
        try:
            results.append(worker.result())
        except WorkerError as err:
            errors.append(err)
    if errors:
        raise errors[0]
    return results


def _start_workers(capacity: int) -> None:
    """Make sure n - 1 gradient workers run, each able to take a theta of `capacity` bytes."""
    for i, worker in enumerate(_workers):
        if worker.capacity < capacity or worker.process.poll() is not None:
            worker.close()
            _workers[i] = GradientWorker(capacity)
    _workers.extend(GradientWorker(capacity) for _ in range(_cores - 1 - len(_workers)))


def batch_gradient(theta, tokens, labels, cfg: Config):
    """The gradient of the mean loss over a batch (N examples): with n cores, the size-weighted mean of the
    gradients of n contiguous shards, computed side by side. Mathematically the same as one gradient of the whole
    batch; in float32 the sums are grouped differently, so results are reproducible for a given n."""
    n = len(tokens)
    if _serial() or n < _cores:
        return flat_grad(theta, tokens, labels, cfg)
    bounds = [n * i // _cores for i in range(_cores + 1)]
    shards = [(theta, tokens[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:])]
    total = None
    for (_, shard, _), grad in zip(shards, gradients(shards, cfg)):
        grad *= len(shard) / n  # a Python float: the gradient's dtype is kept
        total = grad if total is None else total + grad
    return total  # (P,)


class WorkerError(RuntimeError):
    """A gradient worker process failed or died."""


class GradientWorker:
    """A Python process computing flat_grad on request. theta goes in and the gradient comes back through a
    block of shared memory (2 x P numbers: nothing large is pickled); the batch and config go through its stdin,
    its reply (None, or the error's traceback) through its stdout.

    A plain subprocess, not multiprocessing: its spawn method re-imports the caller's main script (which then
    needs an `if __name__ == "__main__"` guard), and fork copies this process's threads' locks."""

    def __init__(self, capacity: int):
        self.capacity = capacity  # bytes of theta it can take
        self.memory_fd = _anonymous_file(2 * capacity)
        self.memory = mmap.mmap(self.memory_fd, 2 * capacity)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # tinygrok importable, installed or not
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from tinygrok.parallel import serve; serve({self.memory_fd}, {capacity})"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[self.memory_fd], env=env,
            start_new_session=True)  # Ctrl-C reaches only this process, which then closes the pipe

    def submit(self, theta, tokens, labels, cfg: Config) -> None:
        self.job = (theta.dtype, theta.size)
        _slots(self.memory, *self.job)[0] = theta
        with contextlib.suppress(BrokenPipeError):  # a dead worker: result() finds its output ended
            pickle.dump((theta.dtype.str, theta.size, tokens, labels, cfg), self.process.stdin)
            self.process.stdin.flush()

    def result(self) -> np.ndarray:
        try:
            error = pickle.load(self.process.stdout)
        except EOFError:
            raise WorkerError(f"a gradient worker process died (exit code {self.process.wait()})") from None
        if error:
            raise WorkerError(f"a gradient worker failed:\n{error}")
        return _slots(self.memory, *self.job)[1].copy()  # (P,)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # a dead worker's pipe
            self.process.stdin.close()  # the worker reads the end of its input and returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process.stdout.close()
        self.memory.close()
        os.close(self.memory_fd)


def _anonymous_file(size: int) -> int:
    """The descriptor of a nameless file of `size` bytes, for memory shared with a child process: in RAM
    (memfd) on Linux; elsewhere an unlinked temporary file. Nothing is left behind however the processes end."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tinygrok-gradients")
    else:
        fd, path = tempfile.mkstemp(prefix="tinygrok-gradients-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


def _slots(memory: mmap.mmap, dtype, size: int) -> np.ndarray:
    """theta's slot and its gradient's in the shared memory: (2, P)."""
    return np.ndarray((2, size), dtype, buffer=memory)


def serve(memory_fd: int, capacity: int) -> None:
    """A gradient worker's loop: read a request from stdin, write the gradient into the shared memory, reply None
    (or the error's traceback) on stdout, until stdin ends."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    threadpool_limits(1, user_api="blas")
    backend.reuse_freed_memory()
    memory = mmap.mmap(memory_fd, 2 * capacity)
    while True:
        try:
            dtype, size, tokens, labels, cfg = pickle.load(requests)
        except EOFError:
            return
        try:
            theta, out = _slots(memory, dtype, size)
            out[:] = flat_grad(theta, tokens, labels, cfg)
            error = None
        except Exception:
            error = traceback.format_exc()
        pickle.dump(error, replies)
        replies.flush()
