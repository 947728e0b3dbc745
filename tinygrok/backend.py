"""Which array library runs the numbers, and what it runs on (versions, BLAS library, threads)."""
from __future__ import annotations

import ctypes
import platform
from importlib.metadata import PackageNotFoundError, version

from threadpoolctl import threadpool_info

NAME = "numpy"  # the array backend in use


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def blas() -> dict:
    """The BLAS library NumPy calls and its thread count, as threadpoolctl reports it."""
    for pool in threadpool_info():
        if pool["user_api"] == "blas":
            return {"blas": f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')})",
                    "threads": pool["num_threads"]}
    return {"blas": "unknown", "threads": None}


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
