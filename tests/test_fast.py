"""The fast path equals the readable one: fast.py against model.py, each ops.py primitive against its reference,
the fast AdamW against optim.py's (that the layers stay one-way is tests/test_layers.py's)."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from conftest import tiny_config

from tinygrok.engine import fast, kernels, ops
from tinygrok.science import model
from tinygrok.science.config import preset
from tinygrok.science.data import make_dataset, sample_batch, stream
from tinygrok.science.optim import AdamWState, adamw_step

SHAPES = [{}, {"n_layers": 1}, {"n_layers": 3, "shared_init": False}, {"n_heads": 4}]
# float32: the readable path uses SciPy's erf, the fast one a polynomial within 1e-7 of it, and the two sum in
# different orders (heads, positions, 2-D vs 4-D matmuls). Measured at the paper's size (d = 128, batch 512):
# logits differ by 3.4e-7 of their largest value (3 float32 ulps), gradients by 4.0e-7 in relative norm. The
# bound allows 16 ulps (2e-6), a margin for other seeds and shapes, far below any effect on training.
FLOAT32_REL = 2e-6


def batch_for(cfg, seed=3, n=None):
    rs = stream(seed, "batch")
    n = n or cfg.batch_size
    return rs.integers(0, cfg.p, (n, 2)), rs.integers(0, cfg.p, n)


@pytest.mark.parametrize("overrides", SHAPES)
def test_fast_forward_equals_the_readable_forward(overrides):
    cfg = tiny_config(d_model=16, d_ff=24, **overrides)
    params = model.init_params(cfg, stream(3, "init"))
    tokens, _ = batch_for(cfg)
    np.testing.assert_allclose(
        fast.forward(params, tokens, cfg.n_heads), model.forward(params, tokens, cfg.n_heads), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("overrides", SHAPES + [{"batch_size": 1, "batch_shards": 1}])
def test_written_out_backprop_equals_the_readable_models_gradient(overrides):
    """flat_grad (backpropagation written out) against autograd through model.py, float64: to 1e-12."""
    cfg = tiny_config(d_model=16, d_ff=24, **overrides)
    theta = model.flatten(model.init_params(cfg, stream(3, "init")))
    tokens, labels = batch_for(cfg)
    np.testing.assert_allclose(
        fast.flat_grad(theta, tokens, labels, cfg),
        grad(model.flat_loss)(theta, tokens, labels, cfg),
        rtol=1e-12,
        atol=1e-15,
    )


@pytest.mark.parametrize("overrides", SHAPES + [{"batch_size": 1, "batch_shards": 1}])
def test_written_out_backprop_is_autograds_gradient_bit_for_bit_in_float32(overrides):
    """The same kernels, summed in the same order as autograd through fast.py's primitives: training is unchanged."""
    cfg = tiny_config(dtype="float32", d_model=16, d_ff=24, **overrides)
    theta = model.flatten(model.init_params(cfg, stream(3, "init")))
    tokens, labels = batch_for(cfg)
    ours, theirs = fast.flat_grad(theta, tokens, labels, cfg), fast._autograd_flat_grad(theta, tokens, labels, cfg)
    assert ours.dtype == theirs.dtype == np.float32 and np.array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_first_block_on_the_embedding_table_is_the_block_on_every_row(dtype):
    """The first block computed on the (position, token) table and gathered equals it computed on every example's
    rows: its activations, and the gradients of its parameters and of its input (summed per table row). float64
    to 1e-12; float32 within FLOAT32_REL of the largest gradient entry (measured at the paper's size: 6e-7 in
    relative norm, the table summing up to ~10 rows' gradients before a product instead of inside it)."""
    cfg = preset("paper", dtype=dtype)
    params = kernels.views(model.flatten(model.init_params(cfg, stream(0, "init"))), model.layout(cfg))
    tokens, _ = sample_batch(make_dataset("add", 97, 0.5, 0), 256, stream(0, "b"))
    table, rows = fast.embedding_table(params, kernels), fast.table_rows(tokens, cfg.p)  # (194, d), (512,)
    np.testing.assert_array_equal(table[rows].reshape(2, 256, -1), params["W_E"][tokens.T] + params["W_pos"][:, None])
    p = model.block_params(params, 0)
    on_table = fast.block(table, p, cfg.n_heads, 512, raw=True, rows=rows)
    on_rows = fast.block(table[rows], p, cfg.n_heads, 512, raw=True)
    tol = 1e-12 if dtype == "float64" else FLOAT32_REL
    np.testing.assert_allclose(on_table["out"], on_rows["out"], rtol=tol, atol=tol)
    g = np.random.default_rng(0).standard_normal((512, cfg.d_model)).astype(dtype)
    (g_table, table_grads), (g_rows, row_grads) = (fast._block_backward(g, s, p) for s in (on_table, on_rows))
    joined = [kernels.joined(grads[k] for k in p) for grads in (table_grads, row_grads)]  # b_K's is 0 up to rounding
    for ours, per_row in [(g_table, kernels.embed_backward(g_rows, rows, 2 * cfg.p)), joined]:
        assert ours.dtype == np.dtype(dtype)
        np.testing.assert_allclose(ours, per_row, rtol=0, atol=tol * np.abs(per_row).max())


def test_float32_paths_agree_at_the_paper_size():
    cfg = preset("paper")
    params = model.init_params(cfg, stream(0, "init"))
    theta = model.flatten(params)
    tokens, labels = sample_batch(make_dataset("add", 97, 0.5, 0), 512, stream(0, "b"))
    readable, quick = model.forward(params, tokens, 4), fast.forward(params, tokens, 4)
    assert readable.dtype == quick.dtype == np.float32
    np.testing.assert_allclose(quick, readable, rtol=0, atol=FLOAT32_REL * np.abs(readable).max())
    g_readable, g_fast = grad(model.flat_loss)(theta, tokens, labels, cfg), fast.flat_grad(theta, tokens, labels, cfg)
    assert np.linalg.norm(g_fast - g_readable) <= FLOAT32_REL * np.linalg.norm(g_readable)


def test_hessian_vector_products_of_both_paths_agree():
    cfg = tiny_config(d_model=16, d_ff=24)
    theta = model.flatten(model.init_params(cfg, stream(6, "init")))
    tokens, labels = batch_for(cfg, 6, 5)
    v = stream(6, "v").standard_normal(theta.size)
    readable = grad(lambda t: anp.dot(grad(model.flat_loss)(t, tokens, labels, cfg), v))(theta)
    fast_graph = grad(lambda t: anp.dot(grad(fast.flat_loss)(t, tokens, labels, cfg), v))(theta)
    through_flat_grad = grad(lambda t: anp.dot(fast.flat_grad(t, tokens, labels, cfg), v))(theta)  # the kernel's
    np.testing.assert_allclose(through_flat_grad, fast_graph, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(through_flat_grad, readable, rtol=1e-12, atol=1e-15)


def primitive_cases():
    rng = np.random.default_rng(0)
    r = rng.standard_normal
    return [
        (ops.layer_norm, (r((5, 6)), r(6), r(6))),
        (ops.linear, (r((5, 4)), r((4, 3)), r(3))),
        (ops.softmax, (r((3, 4)),)),
        (ops.attention, (r((1, 6, 4)), r((2, 6, 4)), r((2, 6, 4)))),
        (ops.normal_cdf, (3 * r((4, 5)),)),
        (ops.cross_entropy, (r((6, 5)), rng.integers(0, 5, 6))),
        (ops.embed, (r((5, 3)), np.array([0, 2, 2, 4]))),
        (ops.layer_norm_backward, (r((5, 6)), r((5, 6)), r(6))),
        (ops.linear_backward, (r((5, 3)), r((5, 4)), r((4, 3)))),
        (ops.attention_backward, (r((2, 6, 4)), r((2, 6, 4)), r((2, 6, 4)), r((2, 6, 4)))),
        (ops.normal_cdf_backward, (r((5, 6)), r((5, 6)))),
        (ops.cross_entropy_backward, (r((6, 5)), rng.integers(0, 5, 6))),
        (ops.embed_backward, (r((4, 3)), np.array([0, 2, 2, 4]), 5)),
    ]


def test_every_primitive_is_paired_with_a_reference_it_equals():
    cases = primitive_cases()
    paired = {name for name, fn in vars(ops).items() if hasattr(fn, "reference")}
    assert paired == {name for name, fn in vars(ops).items() if any(fn is case for case, _ in cases)}  # all of them
    for fn, args in cases:
        fast_out, readable = fn(*args), fn.reference(*args)
        for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (fast_out, readable))):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_what_the_forward_pass_keeps_is_what_the_backward_kernels_would_compute(dtype):
    """The written-out backprop's forward pass keeps the layer norms' x-hat and rstd, the attention probabilities
    and GELU's Gaussian: what it computes on the way is kernels.layer_norm and kernels.attention bit for bit, and
    what it keeps is what the backward kernels would compute from their inputs."""
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((6, 8)).astype(dtype) * 3, *rng.standard_normal((2, 8)).astype(dtype)
    out, kept = fast._layer_norm(x, w, b, raw=True)
    assert np.array_equal(out, kernels.layer_norm(x, w, b)) and out.dtype == np.dtype(dtype)
    assert all(np.array_equal(a, b) for a, b in zip(kept, kernels.standardise(x)))
    assert fast._layer_norm(x, w, b, raw=False)[1] is None
    q, k, v = rng.standard_normal((3, 2, 6, 4)).astype(dtype)  # (T, B, e) each
    a, probs = fast._attention(q, k, v, raw=True)
    assert np.array_equal(a, kernels.attention(q, k, v)) and np.array_equal(probs, kernels.attention_probs(q, k))
    phi, gauss = fast._normal_cdf(x, raw=True)
    assert np.array_equal(phi, kernels.normal_cdf(x)) and gauss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(gauss, np.exp(-0.5 * x.astype(float) ** 2), rtol=1e-6 if dtype == "float32" else 1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_adamw_equals_the_readable_adamw(dtype):
    rng = np.random.default_rng(1)
    hp = dict(lr=3e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=1.0)
    theta = rng.standard_normal(1000).astype(dtype)
    state, fast_state = AdamWState.zeros_like(theta), (theta, np.zeros_like(theta), np.zeros_like(theta))
    for t in range(1, 21):
        g = (rng.standard_normal(1000) * 10.0 ** rng.integers(-4, 1)).astype(dtype)
        theta, state = adamw_step(theta, g, state, **hp)
        fast_state = kernels.adamw_step(fast_state[0], g, fast_state[1], fast_state[2], t, **hp)
    for fast_value, readable in zip(fast_state, (theta, state.m, state.v)):
        assert fast_value.dtype == np.dtype(dtype)
        if dtype == "float64":
            np.testing.assert_allclose(fast_value, readable, rtol=1e-12, atol=1e-15)
        else:  # a few roundings in another order, 20 times over: within 8 ulps of the largest value
            np.testing.assert_allclose(fast_value, readable, rtol=0, atol=8 * 1.2e-7 * np.abs(readable).max())
