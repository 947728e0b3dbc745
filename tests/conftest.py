"""Shared fixtures: a tiny model config that trains in seconds, and deterministic BLAS threads."""

import pytest

from tinygrok.engine import parallel
from tinygrok.science.config import Config


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    """Pin BLAS to one thread: timings are steadier and results reproducible across machines' core counts."""
    with parallel.cores(1):
        yield


def tiny_config(**overrides) -> Config:
    """A model small enough for finite differences and second-order checks."""
    base = dict(p=7, d_model=8, n_heads=2, d_ff=12, batch_size=16, dtype="float64")
    return Config(**{**base, **overrides})
