"""Model and probe code must never hand an autograd Box to plain numpy: it silently breaks differentiation."""

import autograd.numpy as anp
import numpy
import pytest
from autograd import grad
from autograd.tracer import Box
from conftest import tiny_config

from tinygrok.engine import fast
from tinygrok.science import model
from tinygrok.science.data import stream
from tinygrok.science.model import flatten, init_params


def _refuse_boxes(name, args, kwargs):
    for a in (*args, *kwargs.values()):
        if any(isinstance(x, Box) for x in (a if isinstance(a, (list, tuple)) else (a,))):
            raise AssertionError(f"plain numpy.{name} was called inside a differentiated function")


class _GuardedUfunc:
    """A ufunc that refuses Boxes when called; its methods (reduce, at, ...) pass through."""

    def __init__(self, name, ufunc):
        self._name, self._ufunc = name, ufunc

    def __call__(self, *args, **kwargs):
        _refuse_boxes(self._name, args, kwargs)
        return self._ufunc(*args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._ufunc, attr)


def _guard(name, fn):
    if isinstance(fn, numpy.ufunc):
        return _GuardedUfunc(name, fn)

    def guarded(*args, **kwargs):
        _refuse_boxes(name, args, kwargs)
        return fn(*args, **kwargs)

    return guarded


@pytest.fixture
def plain_numpy_refuses_boxes(monkeypatch):
    """Every public numpy function and ufunc raises if an autograd Box reaches it."""
    for name in dir(numpy):
        fn = getattr(numpy, name)
        if not name.startswith("_") and callable(fn) and not isinstance(fn, type):
            monkeypatch.setattr(numpy, name, _guard(name, fn))


def _batch(cfg):
    rs = stream(0, "test-batch")
    return rs.integers(0, cfg.p, (8, 2)), rs.integers(0, cfg.p, 8)


@pytest.mark.parametrize(
    "name,plain",
    [
        ("tanh", lambda w: anp.sum(numpy.tanh(w))),  # a ufunc
        ("sum", lambda w: numpy.sum(w * w)),  # a function (silently "works")
        ("dot", lambda w: numpy.dot(w, w)),
    ],
)
def test_guard_catches_plain_numpy(plain_numpy_refuses_boxes, name, plain):
    """The guard itself works: a function written with plain numpy is caught (so the tests below can fail)."""
    with pytest.raises(AssertionError, match=f"numpy.{name} "):
        grad(plain)(numpy.ones(3))


PATHS = [model.flat_loss, fast.flat_loss]  # the readable model, and the fast path's primitive graph


@pytest.mark.parametrize("flat_loss", PATHS)
def test_gradient_uses_no_plain_numpy(plain_numpy_refuses_boxes, flat_loss):
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(0, "init")))
    tokens, labels = _batch(cfg)
    assert numpy.isfinite(grad(flat_loss)(theta, tokens, labels, cfg)).all()


@pytest.mark.parametrize("flat_loss", PATHS)
def test_second_order_uses_no_plain_numpy(plain_numpy_refuses_boxes, flat_loss):
    """Hessian-vector products trace the hand-written VJPs too."""
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(0, "init")))
    tokens, labels = _batch(cfg)
    gfun = grad(flat_loss)
    hvp = grad(lambda t: anp.dot(gfun(t, tokens, labels, cfg), anp.ones(t.shape)))(theta)
    assert numpy.isfinite(hvp).all()
