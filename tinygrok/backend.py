"""Which array library runs the numbers, and what it runs on (versions, BLAS library, threads)."""
from __future__ import annotations

import ctypes
import os
import platform
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

NAME = "numpy"  # the array backend in use


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def blas() -> dict:
    """The BLAS library NumPy's matmuls call and its thread count, as threadpoolctl reports it.

    SciPy may load a second copy of OpenBLAS; the one inside NumPy's own package directory is the one that
    matters here (tinygrok uses SciPy only for erf, which calls no BLAS)."""
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    for pool in sorted(pools, key=lambda p: not p["filepath"].startswith(os.path.join(numpy_dir, "numpy"))):
        return {"blas": f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')})",
                "threads": pool["num_threads"]}
    return {"blas": "unknown", "threads": None}


def blas_threads(n: int):
    """A context in which every BLAS library tinygrok loads uses n threads (SciPy's is loaded first, so the
    limit reaches it too)."""
    import scipy.special  # noqa: F401 - loads SciPy's BLAS before the limit is set

    return threadpool_limits(n, user_api="blas")


def describe() -> dict:
    """Versions, backend and BLAS: written into every summary and printed by `tinygrok doctor`."""
    return {"backend": NAME, "python": platform.python_version(),
            **{pkg: _version(pkg) for pkg in ("tinygrok", "numpy", "autograd", "scipy")}, **blas()}


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of handing them back to the kernel.

    A training step allocates and frees ~25 MB of temporaries. By default glibc returns big blocks to the
    kernel, so every step pays ~6,000 page faults to get fresh zeroed pages (measured: 15-25% of a paper-size
    step). Raising the mmap and trim thresholds keeps them in the heap. Linux/glibc only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
