"""The few autograd primitives the model needs, each with a hand-written VJP.

Forward passes run plain NumPy on raw arrays. Every VJP is written with `autograd.numpy`, so it is itself
differentiable: gradients of gradients (Hessian-vector products, the exact commutator) work through it.
All of them keep the input dtype: float32 in, float32 out.
"""
from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd.extend import SparseObject, defvjp, defvjp_argnums, primitive, vspace
from scipy import special as sp

LN_EPS = 1e-5  # torch.nn.LayerNorm default (PAPER.md §2)
INV_SQRT2 = 0.7071067811865476
INV_SQRT2PI = 0.3989422804014327


# ---------------------------------------------------------------- layer norm over the last axis
def _normalise(x, xp):
    """(x - mean) / sqrt(var + eps) over the last axis, with the array module `xp` (numpy or autograd.numpy)."""
    xc = x - xp.mean(x, axis=-1, keepdims=True)  # (M, d)
    rstd = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + LN_EPS)  # (M, 1)
    return xc * rstd, rstd


@primitive
def layer_norm(x, w, b):
    """LayerNorm with affine weight and bias: x (M, d), w (d,), b (d,) -> (M, d)."""
    xhat, _ = _normalise(x, np)  # (M, d)
    return xhat * w + b  # (M, d)


def _layer_norm_vjp(argnums, ans, args, kwargs):
    x, w, _ = args

    def vjp(g):  # (M, d) -> the gradients of the requested arguments among x (M, d), w (d,), b (d,)
        xhat, rstd = _normalise(x, anp)  # recomputed with anp so this VJP is differentiable
        gx = g * w  # (M, d)
        grads = {
            0: lambda: rstd * (gx - anp.mean(gx, -1, keepdims=True) - xhat * anp.mean(gx * xhat, -1, keepdims=True)),
            1: lambda: anp.sum(g * xhat, axis=0),
            2: lambda: anp.sum(g, axis=0),
        }
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(layer_norm, _layer_norm_vjp)


# ---------------------------------------------------------------- affine map
@primitive
def linear(x, w, b):
    """x @ w + b: x (M, d_in), w (d_in, d_out), b (d_out,) -> (M, d_out)."""
    out = np.dot(x, w)  # (M, d_out)
    out += b
    return out


defvjp(
    linear,
    lambda ans, x, w, b: lambda g: anp.dot(g, anp.transpose(w)),  # (M, d_in)
    lambda ans, x, w, b: lambda g: anp.dot(anp.transpose(x), g),  # (d_in, d_out)
    lambda ans, x, w, b: lambda g: anp.sum(g, axis=0),  # (d_out,)
)


# ---------------------------------------------------------------- attention over a few positions
def _attention_probs(q, k, xp):
    """softmax_k(q . k / sqrt(e)) for q (Tq, B, e), k (Tk, B, e) with the array module xp -> (Tq, Tk, B)."""
    tq, b, e = xp.shape(q)
    tk = xp.shape(k)[0]
    scores = xp.sum(xp.reshape(q, (tq, 1, b, e)) * xp.reshape(k, (1, tk, b, e)), axis=3) * e**-0.5
    return softmax(scores, axis=1)


@primitive
def attention(q, k, v):
    """Unmasked softmax(q k^T / sqrt(e)) v for every b: q (Tq, B, e), k and v (Tk, B, e) -> (Tq, B, e).

    Written as broadcast products over the Tq x Tk position pairs: for the paper's two positions this beats
    batched matmuls of 2 x 2 blocks, and its VJP is a handful of array passes.
    """
    tq, b, e = q.shape
    probs = _attention_probs(q, k, np)  # (Tq, Tk, B)
    return np.sum(probs.reshape(tq, -1, b, 1) * v.reshape(1, -1, b, e), axis=1)  # (Tq, B, e)


def _attention_vjp(argnums, ans, args, kwargs):
    q, k, v = args

    def vjp(g):  # (Tq, B, e) -> gradients of the requested arguments among q (Tq, B, e), k and v (Tk, B, e)
        (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
        probs = _attention_probs(q, k, anp)  # (Tq, Tk, B), recomputed with anp: differentiable
        g4 = anp.reshape(g, (tq, 1, b, e))
        g_probs = anp.sum(g4 * anp.reshape(v, (1, tk, b, e)), axis=3)  # (Tq, Tk, B)
        g_scores = probs * (g_probs - anp.sum(g_probs * probs, axis=1, keepdims=True)) * e**-0.5  # (Tq, Tk, B)
        gs4 = anp.reshape(g_scores, (tq, tk, b, 1))
        grads = {
            0: lambda: anp.sum(gs4 * anp.reshape(k, (1, tk, b, e)), axis=1),  # (Tq, B, e)
            1: lambda: anp.sum(gs4 * anp.reshape(q, (tq, 1, b, e)), axis=0),  # (Tk, B, e)
            2: lambda: anp.sum(anp.reshape(probs, (tq, tk, b, 1)) * g4, axis=0),  # (Tk, B, e)
        }
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(attention, _attention_vjp)


# ---------------------------------------------------------------- leading rows of a matrix
@primitive
def head_rows(x, n):
    """x[:n] for x (M, d) -> (n, d) (the position-0 rows of the position-major activations)."""
    return x[:n]


@primitive
def pad_rows(g, m):
    """g (n, d) followed by m - n zero rows -> (m, d): the adjoint of head_rows."""
    out = np.zeros((m,) + g.shape[1:], dtype=g.dtype)  # (m, d)
    out[:len(g)] = g  # rows n.. stay zero
    return out


defvjp(head_rows, lambda ans, x, n: lambda g: pad_rows(g, anp.shape(x)[0]))
defvjp(pad_rows, lambda ans, g, m: lambda gg: head_rows(gg, anp.shape(g)[0]))


# ---------------------------------------------------------------- the error function
_AS_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erf(x) = 1 - t(a1 + a2 t + ... + a5 t^4) exp(-x^2), t = 1/(1+px)
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 .. a1


def _erf_float32(x):
    """erf to |error| <= 1.5e-7 (5e-7 after float32 rounding): ~6x faster than scipy's erf, in place."""
    ax = np.abs(x)
    t = ax * _AS_P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _AS_A[0]
    for a in _AS_A[1:]:
        poly += a
        poly *= t
    np.square(ax, out=ax)
    np.negative(ax, out=ax)
    poly *= np.exp(ax, out=ax)
    np.subtract(1.0, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def erf(x):
    """The error function: scipy's (exact) in float64, a float32-accurate polynomial in float32."""
    return _erf_float32(x) if x.dtype == np.float32 else sp.erf(x)


# ---------------------------------------------------------------- exact (erf) GELU
@primitive
def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF."""
    cdf = erf(x * INV_SQRT2)
    cdf += 1.0
    cdf *= 0.5
    return cdf


defvjp(normal_cdf, lambda ans, x: lambda g: g * INV_SQRT2PI * anp.exp(-0.5 * x * x))  # g * phi(x)


def gelu(x):
    """x * Phi(x): torch's default (exact, non-tanh) GELU.

    Composed rather than fused: autograd keeps Phi(x) from the forward pass for the product rule, so the
    backward pass needs only phi(x), not a second evaluation of erf.
    """
    return x * normal_cdf(x)


# ---------------------------------------------------------------- softmax over one axis
@primitive
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


defvjp(softmax, lambda y, x, axis=-1: lambda g: y * (g - anp.sum(g * y, axis=axis, keepdims=True)))


# ---------------------------------------------------------------- mean cross-entropy with integer labels
def one_hot(labels, n, dtype):
    """(N,) int -> (N, n) float of `dtype`."""
    return (labels[:, None] == np.arange(n)).astype(dtype)


@primitive
def cross_entropy(logits, labels):
    """mean_i [logsumexp(logits_i) - logits_i[label_i]]: logits (N, V), labels (N,) int -> scalar."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)  # (N, V)
    log_z = np.log(np.sum(np.exp(shifted), axis=1))  # (N,)
    picked = np.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]  # (N,)
    return np.mean(log_z - picked)


def _cross_entropy_vjp(ans, logits, labels):
    onehot = one_hot(labels, logits.shape[1], logits.dtype)  # (N, V), a constant

    def vjp(g):  # scalar -> (N, V)
        return g * (softmax(logits, 1) - onehot) / logits.shape[0]

    return vjp


defvjp(cross_entropy, _cross_entropy_vjp, None)


# ---------------------------------------------------------------- embedding lookup
@primitive
def embed(table, idx):
    """Rows of `table` (V, d) picked by integer `idx` (M,) -> (M, d)."""
    return table[idx]


def _embed_vjp(ans, table, idx):
    onehot_t = one_hot(idx, table.shape[0], table.dtype).T  # (V, M), a constant
    return lambda g: anp.dot(onehot_t, g)  # (V, d): each row sums the gradients of its occurrences


defvjp(embed, _embed_vjp, None)


# ---------------------------------------------------------------- views into the flat parameter vector
@primitive
def param_view(theta, start, shape):
    """The block theta[start : start + prod(shape)] of a flat vector, reshaped to `shape` (no copy)."""
    return theta[start:start + math.prod(shape)].reshape(shape)


@primitive
def _scatter_into(g, start, vs):
    """The adjoint of param_view: g placed at `start` in a zero vector of space `vs`, as a sparse update.

    Summing the gradients of all views costs O(size of each view), not O(P) per view as a dense zero
    vector per view (or numpy's slow add.at on a slice, autograd's default) would.
    """
    def add_into(total):
        total[start:start + g.size] += g.ravel()
        return total

    return SparseObject(vs, add_into)


defvjp(param_view, lambda ans, theta, start, shape: lambda g: _scatter_into(g, start, vspace(theta)))
defvjp(_scatter_into, lambda ans, g, start, vs: lambda gg: param_view(gg, start, anp.shape(g)))
