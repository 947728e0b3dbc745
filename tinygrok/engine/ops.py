"""The fast path's autograd primitives: each pairs a plain-NumPy kernel (kernels.py) with a readable reference.

A primitive's forward pass, and its first-order backward pass, run the kernels on raw arrays: one call each, no
graph. Each backward kernel is itself a primitive whose derivatives come from differentiating its reference (the
same formula written with autograd.numpy and the device-safe reductions below), so gradients of gradients
(Hessian-vector products, the exact commutator) work through it. Every primitive carries its reference as
`.reference`; tests hold each kernel to it. Everything is backend-neutral and keeps the input dtype.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.builtins import tuple as ag_tuple
from autograd.extend import SparseObject, defvjp, defvjp_argnums, primitive, vspace

from tinygrok.engine import kernels
from tinygrok.engine.kernels import INV_SQRT2, INV_SQRT2PI
from tinygrok.science.model import LN_EPS
from tinygrok.science.special import erf

# ---------------------------------------------------------------- sums, broadcasts and matrix products
# autograd's own VJPs for sum, mean and dot build NumPy arrays (shape arrays, np.asarray), which a GPU array
# library refuses. These three pairs close under differentiation without leaving the arrays' device; the
# references below and every VJP in this module use them instead.
sum_axis = primitive(kernels.sum_axis)
spread = primitive(kernels.spread)  # its adjoint

defvjp(sum_axis, lambda ans, x, axis, keepdims=False: lambda g: spread(g, anp.shape(x), axis, keepdims))
defvjp(spread, lambda ans, g, shape, axis, keepdims=False: lambda gg: sum_axis(gg, axis, keepdims))


def _sum_vjp(ans, x, axis=None, keepdims=False, **kwargs):
    """autograd.numpy.sum's VJP, made device-safe: autograd calls sum itself (to undo broadcasting in its
    VJPs of +, -, *, /), so inside a Hessian-vector product its own version, which builds the target shape as a
    NumPy array, would meet device arrays. The same values, for every caller of anp.sum."""
    shape = anp.shape(x)
    axes = tuple(range(len(shape))) if axis is None else axis
    return lambda g: spread(g, shape, axes, keepdims)


defvjp(anp.sum, _sum_vjp)


def mean(x, axis):
    """The mean over one axis, keeping it: (M, d) -> (M, 1) for axis -1."""
    return sum_axis(x, axis, keepdims=True) * (1.0 / anp.shape(x)[axis])


@primitive
def matmul(a, b):
    """a @ b for 2-D a (M, K), b (K, N) -> (M, N)."""
    return np.dot(a, b)


defvjp(
    matmul,
    lambda ans, a, b: lambda g: matmul(g, anp.transpose(b)),  # (M, K)
    lambda ans, a, b: lambda g: matmul(anp.transpose(a), g),
)  # (K, N)


# ---------------------------------------------------------------- fast kernels, differentiable references
def paired(fast, reference):
    """The plain-NumPy function `fast` as an autograd primitive, its readable `reference` kept beside it."""
    fun = primitive(fast)
    fun.reference = reference
    return fun


def kernel(fast, reference):
    """`fast` as a primitive whose derivatives are those of `reference`, which computes the same values with
    autograd.numpy. A first-order gradient calls the kernel on raw arrays: one fused call, no graph. Only when
    that gradient is itself differentiated (Hessian-vector products, the exact commutator) does autograd trace
    `reference` to get the kernel's own derivatives. Kernels may return tuples; their references then return
    autograd.builtins.tuple.
    """
    fun = paired(fast, reference)
    defvjp_argnums(
        fun, lambda argnums, ans, args, kwargs: make_vjp(lambda *a: reference(*a, **kwargs), tuple(argnums))(*args)[0]
    )
    return fun


def backward_by(backward, n_args: int):
    """The VJP maker of a forward primitive whose gradients `backward(g, *its first n_args args)` computes for
    all its differentiable arguments at once: autograd gets the ones it asked for."""

    def vjp_maker(argnums, ans, args, kwargs):
        def vjp(g):
            grads = backward(g, *args[:n_args])
            return tuple(grads[i] for i in argnums)

        return vjp

    return vjp_maker


# ---------------------------------------------------------------- layer norm over the last axis
def _normalise(x):
    """(x - mean) / sqrt(var + eps) over the last axis, differentiably: x (M, d) -> (M, d), and rstd (M, 1)."""
    xc = x - mean(x, -1)  # (M, d)
    rstd = 1.0 / anp.sqrt(mean(xc * xc, -1) + LN_EPS)  # (M, 1)
    return xc * rstd, rstd


def _layer_norm_backward_reference(g, x, w):
    xhat, rstd = _normalise(x)
    gx = g * w  # (M, d)
    return ag_tuple((rstd * (gx - mean(gx, -1) - xhat * mean(gx * xhat, -1)), sum_axis(g * xhat, 0), sum_axis(g, 0)))


layer_norm = paired(kernels.layer_norm, lambda x, w, b: _normalise(x)[0] * w + b)  # (M, d)
layer_norm_backward = kernel(kernels.layer_norm_backward, _layer_norm_backward_reference)
defvjp_argnums(layer_norm, backward_by(layer_norm_backward, 2))  # from g, x, w


# ---------------------------------------------------------------- affine map
def _linear_backward_reference(g, x, w):
    return ag_tuple((matmul(g, anp.transpose(w)), matmul(anp.transpose(x), g), sum_axis(g, 0)))


linear = paired(kernels.linear, lambda x, w, b: matmul(x, w) + b)  # (M, d_out)
linear_backward = kernel(kernels.linear_backward, _linear_backward_reference)
defvjp_argnums(linear, backward_by(linear_backward, 2))  # from g, x, w


# ---------------------------------------------------------------- softmax over one axis
def _softmax_reference(x, axis=-1):
    e = anp.exp(x - anp.max(x, axis=axis, keepdims=True))
    return e / sum_axis(e, axis, keepdims=True)


softmax = paired(kernels.softmax, _softmax_reference)
defvjp(softmax, lambda y, x, axis=-1: lambda g: y * (g - sum_axis(g * y, axis, keepdims=True)))


# ---------------------------------------------------------------- attention over a few positions
def _attention_probs(q, k):
    """softmax_k(q . k / sqrt(e)) for q (Tq, B, e), k (Tk, B, e) -> (Tq, Tk, B), differentiably."""
    (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
    scores = sum_axis(anp.reshape(q, (tq, 1, b, e)) * anp.reshape(k, (1, tk, b, e)), 3) * e**-0.5
    return softmax(scores, axis=1)


def _attention_reference(q, k, v):
    (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
    probs = _attention_probs(q, k)  # (Tq, Tk, B)
    return sum_axis(anp.reshape(probs, (tq, tk, b, 1)) * anp.reshape(v, (1, tk, b, e)), 1)  # (Tq, B, e)


def _attention_backward_reference(g, q, k, v):
    (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
    probs = _attention_probs(q, k)  # (Tq, Tk, B)
    g4 = anp.reshape(g, (tq, 1, b, e))
    g_probs = sum_axis(g4 * anp.reshape(v, (1, tk, b, e)), 3)  # (Tq, Tk, B)
    g_scores = probs * (g_probs - sum_axis(g_probs * probs, 1, keepdims=True)) * e**-0.5  # (Tq, Tk, B)
    gs4 = anp.reshape(g_scores, (tq, tk, b, 1))
    return ag_tuple(
        (
            sum_axis(gs4 * anp.reshape(k, (1, tk, b, e)), 1),  # (Tq, B, e)
            sum_axis(gs4 * anp.reshape(q, (tq, 1, b, e)), 0),  # (Tk, B, e)
            sum_axis(anp.reshape(probs, (tq, tk, b, 1)) * g4, 0),
        )
    )  # (Tk, B, e)


attention = paired(kernels.attention, _attention_reference)  # (Tq, B, e)
attention_backward = kernel(kernels.attention_backward, _attention_backward_reference)
defvjp_argnums(attention, backward_by(attention_backward, 3))  # from g, q, k, v


# ---------------------------------------------------------------- Phi, the standard normal CDF (GELU(u) = u Phi(u))
def _normal_cdf_reference(x):
    return 0.5 * (1.0 + erf(x * INV_SQRT2))


def _normal_cdf_backward_reference(g, x):
    return g * INV_SQRT2PI * anp.exp(-0.5 * x * x)


normal_cdf = paired(kernels.normal_cdf, _normal_cdf_reference)
normal_cdf_backward = kernel(kernels.normal_cdf_backward, _normal_cdf_backward_reference)
defvjp(normal_cdf, lambda ans, x: lambda g: normal_cdf_backward(g, x))


# ---------------------------------------------------------------- mean cross-entropy with integer labels
def _cross_entropy_reference(logits, labels):
    n, vocab = anp.shape(logits)
    shifted = logits - anp.max(logits, axis=1, keepdims=True)  # (N, V)
    log_probs = shifted - anp.log(sum_axis(anp.exp(shifted), 1, keepdims=True))  # (N, V)
    return -sum_axis(log_probs * one_hot(labels, vocab, logits.dtype), (0, 1)) / n


def _cross_entropy_backward_reference(logits, labels):
    return (softmax(logits, 1) - one_hot(labels, anp.shape(logits)[1], logits.dtype)) / anp.shape(logits)[0]


one_hot = kernels.one_hot
cross_entropy = paired(kernels.cross_entropy, _cross_entropy_reference)
cross_entropy_backward = kernel(kernels.cross_entropy_backward, _cross_entropy_backward_reference)
defvjp(cross_entropy, lambda ans, logits, labels: lambda g: g * cross_entropy_backward(logits, labels), None)


# ---------------------------------------------------------------- embedding lookup
def _embed_backward_reference(g, idx, vocab):
    return matmul(anp.transpose(one_hot(idx, vocab, g.dtype)), g)  # (vocab, M) @ (M, d)


embed = paired(kernels.embed, lambda table, idx: matmul(one_hot(idx, anp.shape(table)[0], table.dtype), table))
embed_backward = kernel(kernels.embed_backward, _embed_backward_reference)
defvjp(embed, lambda ans, table, idx: lambda g: embed_backward(g, idx, anp.shape(table)[0]), None)


# ---------------------------------------------------------------- leading rows of a matrix
head_rows = primitive(kernels.head_rows)


@primitive
def pad_rows(g, m):
    """g (n, d) followed by m - n zero rows -> (m, d): the adjoint of head_rows."""
    out = np.zeros_like(g, shape=(m,) + g.shape[1:])  # (m, d), on g's device
    out[: len(g)] = g  # rows n.. stay zero
    return out


defvjp(head_rows, lambda ans, x, n: lambda g: pad_rows(g, anp.shape(x)[0]))
defvjp(pad_rows, lambda ans, g, m: lambda gg: head_rows(gg, anp.shape(g)[0]))


# ---------------------------------------------------------------- views into the flat parameter vector
param_view = primitive(kernels.param_view)


@primitive
def _scatter_into(g, start, vs):
    """The adjoint of param_view: g placed at `start` in a zero vector of space `vs`, as a sparse update.

    Summing the gradients of all views costs O(size of each view), not O(P) per view as a dense zero
    vector per view (or numpy's slow add.at on a slice, autograd's default) would.
    """

    def add_into(total):
        total[start : start + g.size] += g.ravel()
        return total

    return SparseObject(vs, add_into)


defvjp(param_view, lambda ans, theta, start, shape: lambda g: _scatter_into(g, start, vspace(theta)))
defvjp(_scatter_into, lambda ans, g, start, vs: lambda gg: param_view(gg, start, anp.shape(g)))
