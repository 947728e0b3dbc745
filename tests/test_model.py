"""The readable model: size, initialisation, an independent reference forward, finite differences, float32
gradients, second order."""

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special as sp
from autograd import grad
from conftest import tiny_config

from tinygrok.science.config import preset
from tinygrok.science.data import stream
from tinygrok.science.model import (
    BLOCK_PARAMS,
    flat_loss,
    flatten,
    forward,
    init_params,
    layout,
    loss_fn,
    param_count,
    unflatten,
)


def test_parameter_counts_match_the_paper():
    for name, count in (("paper", 290_401), ("slow", 422_881)):  # docs/paper.md §2
        cfg = preset(name)
        assert flatten(init_params(cfg, stream(0, "init"))).size == param_count(cfg) == count


def test_init_follows_pytorch_defaults_and_shares_blocks():
    cfg = preset("paper")
    p = init_params(cfg, stream(1, "init"))
    assert all(np.array_equal(p[f"blocks.0.{k}"], p[f"blocks.1.{k}"]) for k in BLOCK_PARAMS)
    assert np.abs(p["blocks.0.W_Q"]).max() <= np.sqrt(6 / (128 + 384))  # Xavier over the fused (384, 128)
    assert np.abs(p["blocks.0.W_Q"]).max() > 0.99 * np.sqrt(6 / (128 + 384))
    assert np.abs(p["blocks.0.W_out"]).max() <= 256**-0.5 and not p["blocks.0.b_Q"].any()
    assert p["W_E"].std() == pytest.approx(1.0, abs=0.02) and p["W_pos"].std() < 0.2
    unshared = init_params(cfg.replace(shared_init=False), stream(1, "init"))
    assert not np.array_equal(unshared["blocks.0.W_Q"], unshared["blocks.1.W_Q"])
    assert all(w.dtype == np.float32 for w in p.values())


def test_flatten_unflatten_roundtrip_in_layout_order():
    cfg = tiny_config()
    params = init_params(cfg, stream(2, "init"))
    theta = flatten(params)
    assert list(params) == list(layout(cfg))
    back = unflatten(theta, cfg)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    start, shape = layout(cfg)["blocks.1.W_V"]
    assert np.array_equal(theta[start : start + np.prod(shape)].reshape(shape), params["blocks.1.W_V"])


def reference_forward(p, tokens, n_heads, n_layers):
    """The architecture of docs/paper.md §2 written independently: (N, T, d) tensors and einsum."""

    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    x = p["W_E"][tokens] + p["W_pos"]  # (N, T, d)
    n, t, d = x.shape
    for i in range(n_layers):
        b = {k: p[f"blocks.{i}.{k}"] for k in BLOCK_PARAMS}
        h = ln(x, b["ln1.w"], b["ln1.b"])
        q, k, v = ((h @ b[f"W_{m}"] + b[f"b_{m}"]).reshape(n, t, n_heads, -1) for m in "QKV")
        scores = np.einsum("nthe,nuhe->nhtu", q, k) / np.sqrt(d // n_heads)
        attn = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
        x = x + np.einsum("nhtu,nuhe->nthe", attn, v).reshape(n, t, d) @ b["W_O"] + b["b_O"]
        u = ln(x, b["ln2.w"], b["ln2.b"]) @ b["W_in"] + b["b_in"]
        x = x + (0.5 * u * (1 + sp.erf(u / np.sqrt(2)))) @ b["W_out"] + b["b_out"]
    return ln(x[:, 0], p["ln_final.w"], p["ln_final.b"]) @ p["W_U"] + p["b_U"]


def test_forward_matches_independent_reference():
    cfg = tiny_config(shared_init=False, n_layers=3)
    params = init_params(cfg, stream(3, "init"))
    tokens = stream(3, "tokens").integers(0, cfg.p, size=(11, 2))
    np.testing.assert_allclose(
        forward(params, tokens, cfg.n_heads),
        reference_forward(params, tokens, cfg.n_heads, cfg.n_layers),
        rtol=1e-11,
        atol=1e-12,
    )


def test_model_gradient_matches_central_finite_differences():
    cfg = tiny_config(shared_init=False)
    theta = flatten(init_params(cfg, stream(4, "init")))
    rs = stream(4, "batch")
    tokens, labels = rs.integers(0, cfg.p, (9, 2)), rs.integers(0, cfg.p, 9)
    g = grad(flat_loss)(theta, tokens, labels, cfg)
    h = 1e-6
    fd = np.array(
        [
            (flat_loss(theta + h * e, tokens, labels, cfg) - flat_loss(theta - h * e, tokens, labels, cfg)) / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_every_float32_gradient_is_float32():
    cfg = tiny_config(dtype="float32")
    params = init_params(cfg, stream(5, "init"))
    tokens, labels = np.array([[1, 2], [3, 4], [6, 0]]), np.array([3, 0, 6])
    by_name = grad(loss_fn)(params, tokens, labels, cfg.n_heads)
    assert {k: g.dtype for k, g in by_name.items()} == {k: np.dtype(np.float32) for k in params}
    flat = grad(flat_loss)(flatten(params), tokens, labels, cfg)
    assert flat.dtype == np.float32
    np.testing.assert_allclose(flat, flatten(by_name), rtol=1e-5, atol=1e-7)


def test_hessian_vector_product_through_the_model():
    """Second-order autograd through every primitive: H v against a finite difference of gradients."""
    cfg = tiny_config()
    theta = flatten(init_params(cfg, stream(6, "init")))
    tokens, labels = np.array([[1, 2], [3, 4], [6, 0], [5, 5]]), np.array([3, 0, 6, 2])
    v = stream(6, "v").standard_normal(theta.size)
    gfun = grad(flat_loss)
    hvp = grad(lambda t: anp.dot(gfun(t, tokens, labels, cfg), v))(theta)
    fd = (gfun(theta + 1e-5 * v, tokens, labels, cfg) - gfun(theta - 1e-5 * v, tokens, labels, cfg)) / 2e-5
    np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-7)
