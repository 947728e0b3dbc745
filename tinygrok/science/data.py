"""The task (docs/paper.md §1): six binary operations mod a prime p, a seeded split, a with-replacement batch
sampler."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# name -> (formula on integer arrays, smallest operand). mul leaves out 0 as the reference code does (§1.1).
OPERATIONS: dict[str, tuple[Callable, int]] = {
    "add": (lambda a, b: a + b, 0),
    "sub": (lambda a, b: a - b, 0),
    "mul": (lambda a, b: a * b, 1),
    "x2_y2": (lambda a, b: a**2 + b**2, 0),
    "x2_xy_y2": (lambda a, b: a**2 + a * b + b**2, 0),
    "x3_xy": (lambda a, b: a**3 + a * b, 0),
}


def is_prime(n: int) -> bool:
    return isinstance(n, int) and n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


@dataclass(frozen=True)
class Dataset:
    """Token pairs and labels of one operation, already split. Tokens are int64 (N, 2); labels int64 (N,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def all_pairs(op: str, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Every operand pair in row-major order, [(lo, lo), (lo, lo+1), ...], and its result mod p."""
    fn, lo = OPERATIONS[op]
    a, b = np.meshgrid(np.arange(lo, p), np.arange(lo, p), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)  # (N, 2)
    y = np.mod(fn(x[:, 0], x[:, 1]), p).astype(np.int64)  # (N,)  np.mod is non-negative for p > 0
    return x, y


def pair_count(op: str, p: int) -> int:
    """How many operand pairs the operation has: (p - lo)^2, lo its smallest operand (1 for mul, else 0)."""
    return (p - OPERATIONS[op][1]) ** 2


def split_sizes(op: str, p: int, train_frac: float) -> tuple[int, int]:
    """How many pairs the training and the test split hold: int(frac * N) and the rest, of N = pair_count."""
    n = pair_count(op, p)
    n_train = int(train_frac * n)
    return n_train, n - n_train


def make_dataset(op: str, p: int, train_frac: float, seed: int) -> Dataset:
    """Split as the reference does (§1.3): Python's `random.Random(seed).shuffle`, first int(frac * N) train."""
    x, y = all_pairs(op, p)
    order = list(range(len(x)))
    random.Random(seed).shuffle(order)
    order = np.array(order)
    n_train = split_sizes(op, p, train_frac)[0]
    train, test = order[:n_train], order[n_train:]
    return Dataset(x[train], y[train], x[test], y[test])


def sample_batch(data: Dataset, batch_size: int, rng: np.random.Generator) -> tuple:
    """A training batch drawn with replacement (§1.4) from the caller's own random stream: tokens (batch, 2) and
    labels (batch,), NumPy arrays (whoever computes on a device moves them there)."""
    idx = rng.integers(0, len(data.train_x), size=batch_size)
    return data.train_x[idx], data.train_y[idx]


def skip_batches(data: Dataset, batch_size: int, rng: np.random.Generator, count: int) -> None:
    """Draw `count` training batches from `rng` and throw them away: the stream moves on exactly as if they had
    been trained on (or probed with, as the reference's probes take theirs from its training stream, §8.1)."""
    for _ in range(count):
        sample_batch(data, batch_size, rng)


def stream(seed: int, name: str) -> np.random.Generator:
    """A named, independent random stream: init, batches and probes never draw from each other."""
    return np.random.default_rng([seed, *name.encode()])
