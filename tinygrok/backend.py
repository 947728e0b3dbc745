"""Which array library runs the numbers, and what it runs on (versions, BLAS library, threads)."""
from __future__ import annotations

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
