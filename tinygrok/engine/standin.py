"""A strict stand-in for a GPU array library, so that the device code path is tested on any CPU.

`DeviceArray` holds a NumPy array but behaves like CuPy's ndarray in the ways that matter for tinygrok: NumPy's
functions and ufuncs dispatch to it (NEP 13 and NEP 18) and return device arrays, reductions return 0-d device
arrays, and it refuses to leave the "device" implicitly: `np.asarray(a)` raises, mixing it with a NumPy array
in any operation raises, and only `a.get()` copies it to the host. A path that passes with it cannot be hiding a
host round trip or a NumPy allocation that CuPy would refuse.

The module doubles as the array namespace of the backend (`asarray`, `zeros`, `arange`, ...), as `cupy` does.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.special


class HostMixingError(TypeError):
    """A NumPy array met a device array, or a device array was converted to NumPy implicitly."""


def _to_data(obj):
    """Device arrays -> their data, recursively through tuples, lists and dicts; NumPy arrays are refused."""
    if isinstance(obj, DeviceArray):
        return obj._data
    if isinstance(obj, np.ndarray):
        raise HostMixingError(f"a NumPy array {obj.shape} met a device array: transfer it with asarray() first")
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_data(item) for item in obj)
    if isinstance(obj, dict):
        return {key: _to_data(value) for key, value in obj.items()}
    return obj


def _to_device(obj):
    """NumPy results -> device arrays (scalars become 0-d arrays, as CuPy's reductions return), recursively."""
    if isinstance(obj, (np.ndarray, np.generic)):
        return DeviceArray(np.asarray(obj))
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # named results, e.g. of np.linalg.eigh
        return type(obj)(*(_to_device(item) for item in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(item) for item in obj)
    return obj


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array that lives on the (pretend) device. Arithmetic operators come from NDArrayOperatorsMixin, which
    routes them through __array_ufunc__, as CuPy's do."""

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray):
        self._data = data

    # ------------------------------------------------------------------ leaving the device
    def __array__(self, dtype=None, copy=None):
        raise HostMixingError("implicit conversion of a device array to NumPy is not allowed: use .get()")

    def get(self) -> np.ndarray:
        """A host copy (CuPy's ndarray.get)."""
        return self._data.copy()

    def __float__(self):
        return float(self._data)  # CuPy allows these for one-element arrays (a synchronising copy)

    def __int__(self):
        return int(self._data)

    def __bool__(self):
        return bool(self._data)

    def item(self):
        return self._data.item()

    # ------------------------------------------------------------------ dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if getattr(np, ufunc.__name__, None) is not ufunc:
            return NotImplemented  # another library's ufunc (scipy.special.erf): a GPU library may not have it
        for value in inputs + tuple(kwargs.get("out", ())):
            if not isinstance(value, (DeviceArray, np.ndarray, numbers.Number, np.generic)):
                return NotImplemented  # e.g. an autograd box: let it handle the operation
        out = kwargs.get("out")
        result = getattr(ufunc, method)(*_to_data(inputs), **_to_data(kwargs))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _to_device(result)

    def __array_function__(self, func, types, args, kwargs):
        if not all(issubclass(t, DeviceArray) for t in types):
            if any(issubclass(t, np.ndarray) for t in types):
                raise HostMixingError(f"np.{func.__name__} was given NumPy and device arrays together")
            return NotImplemented
        return _to_device(func(*_to_data(args), **_to_data(kwargs)))

    def __matmul__(self, other):
        """CuPy's @ does not hand the product to the other operand (an autograd box): neither does this."""
        if not isinstance(other, DeviceArray):
            raise TypeError(f"device array @ {type(other).__name__} is not supported (as in CuPy)")
        return np.matmul(self, other)

    def __rmatmul__(self, other):
        raise TypeError(f"{type(other).__name__} @ device array is not supported (as in CuPy)")

    # ------------------------------------------------------------------ indexing (views share memory)
    def __getitem__(self, key):
        return _to_device(self._data[_to_data(key)])

    def __setitem__(self, key, value):
        self._data[_to_data(key)] = _to_data(value)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"DeviceArray({self._data!r})"

    # ------------------------------------------------------------------ the ndarray attributes tinygrok uses
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    T = property(lambda self: DeviceArray(self._data.T))

    def view(self, dtype=None):
        """A view with another dtype. CuPy reads a class given here as a dtype too, so an array class (autograd's
        concatenate asks for view(numpy.ndarray)) is refused, as CuPy would fail on it."""
        if isinstance(dtype, type) and not issubclass(dtype, np.generic):
            raise TypeError(f"view({dtype.__name__}): a device array takes a dtype here, not an array class")
        return DeviceArray(self._data.view() if dtype is None else self._data.view(dtype))

    def __getattr__(self, name):
        """Array methods (reshape, ravel, astype, sum, ...) run on the device and return device arrays."""
        method = getattr(self._data, name)
        if not callable(method):
            raise AttributeError(name)
        return lambda *args, **kwargs: _to_device(method(*_to_data(args), **_to_data(kwargs)))


# ---------------------------------------------------------------------- the array namespace, as `cupy` has
def asarray(obj, dtype=None) -> DeviceArray:
    """Host data -> a device array (a transfer: always a copy)."""
    if isinstance(obj, DeviceArray):
        return obj if dtype is None else obj.astype(dtype)
    return DeviceArray(np.array(obj, dtype=dtype))


def asnumpy(a) -> np.ndarray:
    return a.get() if isinstance(a, DeviceArray) else np.asarray(a)


def _creator(numpy_function):
    return lambda *args, **kwargs: DeviceArray(numpy_function(*args, **kwargs))


zeros, ones, empty, arange, full = (_creator(f) for f in (np.zeros, np.ones, np.empty, np.arange, np.full))


def erf(a: DeviceArray) -> DeviceArray:
    """The device's own error function (CuPy's is cupyx.scipy.special.erf)."""
    return DeviceArray(scipy.special.erf(a._data))


ndarray = DeviceArray
