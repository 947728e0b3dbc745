"""Every primitive in ops.py: gradients (to second order) against finite differences, dtype, and values."""

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special as sp
from autograd import grad
from autograd.test_util import check_grads

from tinygrok.engine import ops

rng = np.random.default_rng(0)


def test_layer_norm_grads_to_second_order():
    x, w, b = rng.standard_normal((5, 6)), rng.standard_normal(6), rng.standard_normal(6)
    check_grads(ops.layer_norm, modes=["rev"], order=2)(x, w, b)


def test_layer_norm_values_match_definition():
    x, w, b = rng.standard_normal((4, 10)), rng.standard_normal(10), rng.standard_normal(10)
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(ops.layer_norm(x, w, b), expected, rtol=1e-12, atol=1e-12)


def test_normal_cdf_and_gelu_grads_to_second_order():
    x = rng.standard_normal((4, 5)) * 2
    check_grads(ops.normal_cdf, modes=["rev"], order=2)(x)
    check_grads(lambda t: t * ops.normal_cdf(t), modes=["rev"], order=2)(x)  # GELU, as the model composes it


def test_normal_cdf_float32_within_float32_resolution_of_exact():
    x = np.linspace(-12, 12, 200_001, dtype=np.float32)
    approx = ops.normal_cdf(x)
    assert approx.dtype == np.float32
    exact = 0.5 * (1 + sp.erf(x.astype(np.float64) / np.sqrt(2)))
    assert np.max(np.abs(approx - exact)) < 3e-7  # A&S: 0.75e-7, + float32 rounding (the old erf bound 6e-7, halved)


def test_gelu_is_exact_erf_gelu():
    x = rng.standard_normal(1000) * 3
    np.testing.assert_allclose(x * ops.normal_cdf(x), x * 0.5 * (1 + sp.erf(x / np.sqrt(2))), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_grads_to_second_order(axis):
    x = rng.standard_normal((3, 4, 2))
    check_grads(lambda a: ops.softmax(a, axis=axis), modes=["rev"], order=2)(x)
    np.testing.assert_allclose(np.sum(ops.softmax(x, axis=axis), axis=axis), 1.0, rtol=1e-14)


def test_cross_entropy_grads_and_value():
    logits, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    check_grads(lambda z: ops.cross_entropy(z, labels), modes=["rev"], order=2)(logits)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert ops.cross_entropy(logits, labels) == pytest.approx(-log_probs[np.arange(6), labels].mean(), rel=1e-13)


@pytest.mark.parametrize("margin", [10.0, 25.0])  # 1 - p(label) ~ 5e-3 and ~ 3e-9: a trained model's range
def test_cross_entropy_gradient_keeps_a_confident_labels_digits_in_float32(margin):
    draw = np.random.default_rng(int(margin))  # its own stream: the same numbers whatever ran before
    labels = draw.integers(0, 97, 64)
    logits = draw.standard_normal((64, 97))
    logits[np.arange(64), labels] += margin
    exact = ops.cross_entropy_backward(logits, labels)  # float64
    in_float32 = ops.cross_entropy_backward(logits.astype(np.float32), labels)
    assert in_float32.dtype == np.float32
    # p - 1 in float32 is off by a relative ~1e-5 at margin 10 and ~1 at margin 25; the sum, by ~3e-7
    assert np.linalg.norm(in_float32 - exact) / np.linalg.norm(exact) < 1e-6


def test_embed_grads_and_repeated_indices():
    table, idx = rng.standard_normal((5, 3)), np.array([0, 2, 2, 4, 0, 0])
    check_grads(lambda t: ops.embed(t, idx), modes=["rev"], order=2)(table)
    g = grad(lambda t: anp.sum(ops.embed(t, idx) * np.arange(18.0).reshape(6, 3)))(table)
    np.testing.assert_array_equal(g[0], [0 + 12 + 15, 1 + 13 + 16, 2 + 14 + 17])  # rows 0, 4, 5 of the seed


def test_linear_grads_to_second_order():
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    check_grads(ops.linear, modes=["rev"], order=2)(x, w, b)
    np.testing.assert_allclose(ops.linear(x, w, b), x @ w + b, rtol=1e-14)


@pytest.mark.parametrize("t_query", [1, 2])
def test_attention_grads_to_second_order(t_query):
    q, k, v = rng.standard_normal((t_query, 6, 4)), rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 4))
    check_grads(ops.attention, modes=["rev"], order=2)(q, k, v)
    scores = np.einsum("tbe,ube->btu", q, k) / 2.0  # sqrt(e) = 2
    probs = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(ops.attention(q, k, v), np.einsum("btu,ube->tbe", probs, v), rtol=1e-13)


def test_head_rows_and_pad_rows_grads_to_second_order():
    x, g = rng.standard_normal((6, 3)), rng.standard_normal((2, 3))
    check_grads(lambda a: ops.head_rows(a, 2), modes=["rev"], order=2)(x)
    check_grads(lambda a: ops.pad_rows(a, 5), modes=["rev"], order=2)(g)
    np.testing.assert_array_equal(ops.pad_rows(g, 5)[:2], g)
    assert not ops.pad_rows(g, 5)[2:].any()


def test_param_view_grads_to_second_order():
    theta = rng.standard_normal(20)

    def f(t):
        return anp.sum(ops.param_view(t, 2, (3, 2)) ** 3) + anp.sum(anp.sin(ops.param_view(t, 10, (5,))))

    check_grads(f, modes=["rev"], order=2)(theta)


@pytest.mark.parametrize(
    "name,fn,shapes",
    [
        ("layer_norm", lambda x, w, b: ops.layer_norm(x, w, b), [(4, 6), (6,), (6,)]),
        ("gelu", lambda x: x * ops.normal_cdf(x), [(4, 6)]),  # as the model composes it
        ("normal_cdf", ops.normal_cdf, [(4, 6)]),
        ("softmax", lambda x: ops.softmax(x, axis=1), [(4, 6)]),
        ("cross_entropy", lambda x: ops.cross_entropy(x, np.array([0, 1, 2, 5])), [(4, 6)]),
        ("embed", lambda t: ops.embed(t, np.array([1, 1, 3])), [(4, 6)]),
        ("param_view", lambda t: ops.param_view(t, 3, (2, 2)), [(9,)]),
        ("linear", ops.linear, [(4, 6), (6, 3), (3,)]),
        ("attention", ops.attention, [(2, 5, 4), (2, 5, 4), (2, 5, 4)]),
        ("head_rows", lambda x: ops.head_rows(x, 2), [(4, 6)]),
        ("pad_rows", lambda x: ops.pad_rows(x, 7), [(4, 6)]),
    ],
)
def test_float32_in_float32_out(name, fn, shapes):
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    assert np.asarray(fn(*args)).dtype == np.float32, name
    for i in range(len(args)):
        g = grad(lambda *a: anp.sum(fn(*a) ** 2), i)(*args)
        assert g.dtype == np.float32, f"{name}: gradient of argument {i} is {g.dtype}"


@pytest.mark.parametrize(
    "kernel,reference,shapes",
    [
        (ops.layer_norm_backward, ops._layer_norm_backward_reference, [(5, 6), (5, 6), (6,)]),
        (ops.linear_backward, ops._linear_backward_reference, [(5, 3), (5, 4), (4, 3)]),
        (ops.attention_backward, ops._attention_backward_reference, [(2, 6, 4), (2, 6, 4), (2, 6, 4), (2, 6, 4)]),
        (ops.attention_backward, ops._attention_backward_reference, [(1, 6, 4), (1, 6, 4), (2, 6, 4), (2, 6, 4)]),
        (ops.normal_cdf_backward, ops._normal_cdf_backward_reference, [(5, 6), (5, 6)]),
    ],
)
def test_backward_kernels_equal_their_differentiable_references(kernel, reference, shapes):
    """First-order gradients run the kernel, higher orders differentiate the reference: they must agree."""
    args = [rng.standard_normal(s) for s in shapes]
    as_tuple = lambda value: tuple(value) if isinstance(value, tuple) else (value,)  # noqa: E731
    fast, slow = as_tuple(kernel(*args)), as_tuple(reference(*args))
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
