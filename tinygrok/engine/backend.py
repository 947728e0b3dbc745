"""Which array library runs the numbers (NumPy, or CuPy on a GPU), moving data between host and device, and
what it runs on (versions, BLAS library, threads).

The model, optimizer and probes are written once against NumPy's API; NumPy's dispatch protocols (NEP 13, 18)
send every call on a device array to its own library. `use("cupy")` registers CuPy's arrays with autograd (its
boxes and a vector space that allocates on the device) and makes `xp` the module new arrays are made with.
Everything that is logged or saved passes through `to_host`: run directories always hold NumPy arrays.
(How many cores the work uses is parallel.py's business.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import scipy.special
from autograd.extend import VSpace
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vspaces import ArrayVSpace
from threadpoolctl import threadpool_info

from tinygrok.engine import standin

BACKENDS = ("numpy", "cupy", "auto")  # what --backend accepts; tests also use "standin" (tinygrok/engine/standin.py)
NAME = "numpy"  # the array backend in use
xp = np  # its array module: asarray, zeros, arange, ... make arrays on its device


class BackendError(ValueError):
    """The requested array backend is not available here."""


class DeviceVSpace(ArrayVSpace):
    """autograd's vector space of a device array type: zeros and ones are made on the device, and its shape is
    read without the host conversion (np.asarray) that autograd's own ArrayVSpace does."""

    def __init__(self, value):
        self.shape, self.dtype, self.module = value.shape, value.dtype, _modules[type(value)]

    def zeros(self):
        return self.module.zeros(self.shape, dtype=self.dtype)

    def ones(self):
        return self.module.ones(self.shape, dtype=self.dtype)

    def randn(self):  # used by autograd.test_util's gradient checks
        return self.module.asarray(np.asarray(np.random.randn(*self.shape), dtype=self.dtype))


_modules: dict[type, object] = {}  # device array type -> its array module
_special: dict[type, object] = {}  # device array type -> its special functions (erf), as scipy.special's


def register_device_arrays(array_type: type, module, special) -> None:
    """Teach autograd to trace `array_type` (ArrayBox wraps it) and to make its gradients on the device;
    `module` makes new arrays there, `special` has its erf."""
    _modules[array_type], _special[array_type] = module, special
    ArrayBox.register(array_type)
    VSpace.register(array_type, DeviceVSpace)


def cupy_module():
    """The cupy module, if CuPy is installed and sees a CUDA device; else a BackendError saying what is missing."""
    try:
        import cupy
    except ImportError:
        raise BackendError("--backend=cupy needs CuPy: pip install 'tinygrok[cupy]' (on a machine with CUDA)") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver or runtime missing: CuPy raises its own runtime errors
        raise BackendError(f"--backend=cupy: CuPy is installed but finds no CUDA device ({err})") from None
    if count == 0:
        raise BackendError("--backend=cupy: CuPy is installed but finds no CUDA device")
    return cupy


def use(name: str) -> str:
    """Make `name` the array backend: numpy, cupy, auto (CuPy when a CUDA device is present, else NumPy), or
    standin (the strict CPU stand-in for a device, for tests). Returns the backend chosen."""
    global NAME, xp
    if name == "auto":
        try:
            cupy_module()
            name = "cupy"
        except BackendError:
            name = "numpy"
    if name == "numpy":
        NAME, xp = "numpy", np
        return NAME
    if name == "cupy":
        module = cupy_module()
        import cupyx.scipy.special as special
    elif name == "standin":
        module = special = standin
    else:
        raise BackendError(f"--backend={name!r} is invalid: must be one of {', '.join(BACKENDS)}")
    register_device_arrays(module.ndarray, module, special)
    NAME, xp = name, module
    return NAME


def array_module(a):
    """The array module of `a`'s library (numpy, cupy, or the stand-in), to make new arrays beside it."""
    return _modules.get(type(a), np)


def erf(x):
    """The exact error function, computed on x's device (SciPy's for NumPy arrays)."""
    return _special.get(type(x), scipy.special).erf(x)


def to_device(a):
    """Host data -> an array of the active backend (no copy with NumPy)."""
    return xp.asarray(a)


def to_host(a) -> np.ndarray:
    """Any array -> a NumPy array (a device-to-host copy for device arrays)."""
    return a if isinstance(a, np.ndarray) else a.get()


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
        return {
            "blas": f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')})",
            "threads": pool["num_threads"],
        }
    return {"blas": "unknown", "threads": None}


def describe() -> dict:
    """The code's commit, the machine, versions, backend and BLAS: written into every summary and printed by
    `tinygrok doctor`."""
    return {
        "commit": code_commit(),
        "machine": machine(),
        "backend": NAME,
        "python": platform.python_version(),
        **{pkg: _version(pkg) for pkg in ("tinygrok", "numpy", "autograd", "scipy")},
        **blas(),
    }


@functools.cache
def code_commit() -> str:
    """The git commit of the running tinygrok ("+" if it has uncommitted changes), or "unknown" outside a checkout."""

    def git(*args: str) -> str:  # no optional locks: a run killed during `git status` leaves no index.lock behind
        checkout = str(Path(__file__).resolve().parents[2])
        command = ["git", "--no-optional-locks", "-C", checkout, *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return git("rev-parse", "--short=10", "HEAD") + (
            "+" if git("status", "--porcelain", "--untracked-files=no") else ""
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@functools.cache
def machine() -> str:
    """This machine in a few words: its processor and its cores, e.g. "x86_64 (AMD EPYC), 2 cores"."""
    try:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        model = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return platform.machine() + (f" ({model})" if model else "") + f", {cores} cores"


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of handing them back to the kernel.

    A training step allocates and frees ~25 MB of temporaries. By default glibc returns big blocks to the
    kernel, so every step pays thousands of page faults for fresh zeroed pages.
    Raising the mmap and trim thresholds keeps them in the heap. Linux/glibc only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


# glibc's fenv_t on x86-64: 32 bytes, the SSE control register MXCSR at byte 28; FTZ (bit 15) flushes subnormal
# results to zero, DAZ (bit 6) reads subnormal inputs as zero
_FENV_BYTES, _MXCSR_AT, _FTZ_DAZ = 32, 28, 0x8040


@functools.cache
def _libm():
    """The C maths library, where its fenv_t's layout is known (Linux on x86-64); else None."""
    found = ctypes.util.find_library("m") if sys.platform == "linux" and platform.machine() == "x86_64" else None
    return ctypes.CDLL(found) if found else None


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[bool]:
    """A context in which this thread's float arithmetic flushes subnormal numbers to zero (float32: |x| below
    1.2e-38; float64: below 2.2e-308), as TensorFlow's and XLA's CPU kernels do; yields whether it could.

    Why: x86 computes with subnormals in microcode, many times slower than with normal numbers. A run whose
    weights decay towards zero (the projection intervention at s = 1, docs/paper.md §8) spends nearly all its time
    there (docs/differences.md gives the cost). Numbers that are not subnormal are computed exactly as they would be
    otherwise. Linux on x86-64 (glibc's fenv); elsewhere a no-op.
    """
    libm = _libm()
    if libm is None:
        yield False
        return
    saved = ctypes.create_string_buffer(_FENV_BYTES)
    libm.fegetenv(saved)
    mxcsr = int.from_bytes(saved.raw[_MXCSR_AT : _MXCSR_AT + 4], "little") | _FTZ_DAZ
    flushed = ctypes.create_string_buffer(saved.raw[:_MXCSR_AT] + mxcsr.to_bytes(4, "little"), _FENV_BYTES)
    libm.fesetenv(flushed)
    try:
        yield True
    finally:
        libm.fesetenv(saved)
