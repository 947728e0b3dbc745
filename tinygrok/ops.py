"""The few autograd primitives the model needs, each with a hand-written VJP.

Forward passes, and first-order backward passes, run as plain NumPy kernels on raw arrays: one call per
primitive, no graph. Each backward kernel is itself a primitive whose derivatives come from a readable reference
of the same formula, written with autograd.numpy and the device-safe reductions below, so gradients of gradients
(Hessian-vector products, the exact commutator) work through it. Everything is backend-neutral (NumPy's
dispatch sends device arrays to their own library) and keeps the input dtype: float32 in, float32 out.
"""
from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.builtins import tuple as ag_tuple
from autograd.extend import SparseObject, defvjp, defvjp_argnums, primitive, vspace

from tinygrok import backend

LN_EPS = 1e-5  # torch.nn.LayerNorm default (PAPER.md §2)
INV_SQRT2 = 0.7071067811865476
INV_SQRT2PI = 0.3989422804014327


# ---------------------------------------------------------------- sums, broadcasts and matrix products
# autograd's own VJPs for sum, mean and dot build NumPy arrays (shape arrays, np.asarray), which a GPU array
# library refuses. These three pairs close under differentiation without leaving the arrays' device; the
# references below and every VJP in this module use them instead.
@primitive
def sum_axis(x, axis, keepdims=False):
    """x summed over `axis` (an int or a tuple of ints)."""
    return np.sum(x, axis=axis, keepdims=keepdims)


@primitive
def spread(g, shape, axis, keepdims=False):
    """The adjoint of sum_axis: g repeated along `axis` to `shape` (a read-only broadcast view)."""
    return np.broadcast_to(g if keepdims else np.expand_dims(g, axis), shape)


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


defvjp(matmul, lambda ans, a, b: lambda g: matmul(g, anp.transpose(b)),  # (M, K)
       lambda ans, a, b: lambda g: matmul(anp.transpose(a), g))  # (K, N)


# ---------------------------------------------------------------- fast kernels, differentiable references
def kernel(reference):
    """Make the decorated plain-NumPy function a primitive whose derivatives are those of `reference`.

    `reference` computes the same values with autograd.numpy. A first-order gradient calls the kernel on raw
    arrays: one fused call, no graph. Only when that gradient is itself differentiated (Hessian-vector
    products, the exact commutator) does autograd trace `reference` to get the kernel's own derivatives.
    Kernels may return tuples; their references then return autograd.builtins.tuple.
    """
    def decorate(fast):
        fun = primitive(fast)
        defvjp_argnums(fun, lambda argnums, ans, args, kwargs:
                       make_vjp(lambda *a: reference(*a, **kwargs), tuple(argnums))(*args)[0])
        return fun

    return decorate


def backward_by(backward, n_args: int):
    """The VJP maker of a forward primitive whose gradients `backward(g, *its first n_args args)` computes for
    all its differentiable arguments at once: autograd gets the ones it asked for."""
    def vjp_maker(argnums, ans, args, kwargs):
        def vjp(g):
            grads = backward(g, *args[:n_args])
            return tuple(grads[i] for i in argnums)

        return vjp

    return vjp_maker


def _rowdot(a, b):
    """sum_j a_ij b_ij for a, b (M, d) -> (M, 1), without a temporary (M, d) array."""
    return np.einsum("md,md->m", a, b)[:, None]


# ---------------------------------------------------------------- layer norm over the last axis
def _normalise(x):
    """(x - mean) / sqrt(var + eps) over the last axis, differentiably (the references' version)."""
    xc = x - mean(x, -1)  # (M, d)
    rstd = 1.0 / anp.sqrt(mean(xc * xc, -1) + LN_EPS)  # (M, 1)
    return xc * rstd, rstd


def _standardise(x):
    """_normalise(x) in plain NumPy, three passes over x: (M, d) -> (M, d), (M, 1)."""
    xc = x - np.mean(x, axis=-1, keepdims=True)  # (M, d)
    rstd = _rowdot(xc, xc)  # (M, 1)
    rstd *= 1.0 / x.shape[-1]
    rstd += LN_EPS
    rstd **= -0.5
    xc *= rstd
    return xc, rstd


@primitive
def layer_norm(x, w, b):
    """LayerNorm with affine weight and bias: x (M, d), w (d,), b (d,) -> (M, d)."""
    out, _ = _standardise(x)  # (M, d)
    out *= w
    out += b
    return out


def _layer_norm_backward_reference(g, x, w):
    xhat, rstd = _normalise(x)
    gx = g * w  # (M, d)
    return ag_tuple((rstd * (gx - mean(gx, -1) - xhat * mean(gx * xhat, -1)),
                     sum_axis(g * xhat, 0), sum_axis(g, 0)))


@kernel(_layer_norm_backward_reference)
def layer_norm_backward(g, x, w):
    """The gradients (of x (M, d), w (d,), b (d,)) of layer_norm's output gradient g (M, d)."""
    xhat, rstd = _standardise(x)  # (M, d), (M, 1)
    g_w, g_b = np.sum(g * xhat, axis=0), np.sum(g, axis=0)  # (d,), (d,)
    gx = g * w  # (M, d)
    along_xhat = _rowdot(gx, xhat)  # (M, 1)
    gx -= np.mean(gx, axis=-1, keepdims=True)
    xhat *= along_xhat / x.shape[-1]
    gx -= xhat
    gx *= rstd
    return gx, g_w, g_b


defvjp_argnums(layer_norm, backward_by(layer_norm_backward, 2))  # from g, x, w


# ---------------------------------------------------------------- affine map
@primitive
def linear(x, w, b):
    """x @ w + b: x (M, d_in), w (d_in, d_out), b (d_out,) -> (M, d_out)."""
    out = np.dot(x, w)  # (M, d_out)
    out += b
    return out


def _linear_backward_reference(g, x, w):
    return ag_tuple((matmul(g, anp.transpose(w)), matmul(anp.transpose(x), g), sum_axis(g, 0)))


@kernel(_linear_backward_reference)
def linear_backward(g, x, w):
    """The gradients (of x (M, d_in), w (d_in, d_out), b (d_out,)) of linear's output gradient g (M, d_out)."""
    return np.dot(g, w.T), np.dot(x.T, g), np.sum(g, axis=0)


defvjp_argnums(linear, backward_by(linear_backward, 2))  # from g, x, w


# ---------------------------------------------------------------- attention over a few positions
def _attention_probs(q, k):
    """softmax_k(q . k / sqrt(e)) for q (Tq, B, e), k (Tk, B, e) -> (Tq, Tk, B), differentiably."""
    (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
    scores = sum_axis(anp.reshape(q, (tq, 1, b, e)) * anp.reshape(k, (1, tk, b, e)), 3) * e**-0.5
    return softmax(scores, axis=1)


def _probs(q, k):
    """_attention_probs(q, k) in plain NumPy, contracted with einsum (3x faster than the broadcast product)."""
    scores = np.einsum("tbe,ube->tub", q, k)  # (Tq, Tk, B)
    scores *= q.shape[-1] ** -0.5
    return softmax(scores, axis=1)


@primitive
def attention(q, k, v):
    """Unmasked softmax(q k^T / sqrt(e)) v for every b: q (Tq, B, e), k and v (Tk, B, e) -> (Tq, B, e).

    The paper's sequences have two positions, so B = N * heads independent 2 x 2 problems: contracted over the
    position pairs with einsum, not as batched matmuls of 2 x 2 blocks.
    """
    return np.einsum("tub,ube->tbe", _probs(q, k), v)


def _attention_backward_reference(g, q, k, v):
    (tq, b, e), tk = anp.shape(q), anp.shape(k)[0]
    probs = _attention_probs(q, k)  # (Tq, Tk, B)
    g4 = anp.reshape(g, (tq, 1, b, e))
    g_probs = sum_axis(g4 * anp.reshape(v, (1, tk, b, e)), 3)  # (Tq, Tk, B)
    g_scores = probs * (g_probs - sum_axis(g_probs * probs, 1, keepdims=True)) * e**-0.5  # (Tq, Tk, B)
    gs4 = anp.reshape(g_scores, (tq, tk, b, 1))
    return ag_tuple((sum_axis(gs4 * anp.reshape(k, (1, tk, b, e)), 1),  # (Tq, B, e)
                     sum_axis(gs4 * anp.reshape(q, (tq, 1, b, e)), 0),  # (Tk, B, e)
                     sum_axis(anp.reshape(probs, (tq, tk, b, 1)) * g4, 0)))  # (Tk, B, e)


@kernel(_attention_backward_reference)
def attention_backward(g, q, k, v):
    """The gradients (of q (Tq, B, e), k and v (Tk, B, e)) of attention's output gradient g (Tq, B, e)."""
    probs = _probs(q, k)  # (Tq, Tk, B)
    g_scores = np.einsum("tbe,ube->tub", g, v)  # (Tq, Tk, B), the gradient of probs for now
    g_scores -= np.sum(g_scores * probs, axis=1, keepdims=True)
    g_scores *= probs
    g_scores *= q.shape[-1] ** -0.5
    return (np.einsum("tub,ube->tbe", g_scores, k), np.einsum("tub,tbe->ube", g_scores, q),
            np.einsum("tub,tbe->ube", probs, g))


defvjp_argnums(attention, backward_by(attention_backward, 3))  # from g, q, k, v


# ---------------------------------------------------------------- leading rows of a matrix
@primitive
def head_rows(x, n):
    """x[:n] for x (M, d) -> (n, d) (the position-0 rows of the position-major activations)."""
    return x[:n]


@primitive
def pad_rows(g, m):
    """g (n, d) followed by m - n zero rows -> (m, d): the adjoint of head_rows."""
    out = np.zeros_like(g, shape=(m,) + g.shape[1:])  # (m, d), on g's device
    out[:len(g)] = g  # rows n.. stay zero
    return out


defvjp(head_rows, lambda ans, x, n: lambda g: pad_rows(g, anp.shape(x)[0]))
defvjp(pad_rows, lambda ans, g, m: lambda gg: head_rows(gg, anp.shape(g)[0]))


# ---------------------------------------------------------------- exact (erf) GELU
_AS_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erf(z) = 1 - t(a1 + a2 t + ... + a5 t^4) exp(-z^2), t = 1/(1+pz)
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 .. a1


def _normal_cdf_float32(x):
    """Phi(x) = 1/2 + sign(x) (1/2 - tail(|x|)) with A&S 7.1.26 for erf(|x| / sqrt 2), in twenty in-place passes:
    tail = t (a1 + ... + a5 t^4) exp(-x^2 / 2) / 2, t = 1 / (1 + p |x| / sqrt 2). |error| <= 1e-7 before
    float32 rounding; about 6x faster than SciPy's erf, which computes in float64 element by element."""
    t = np.abs(x)
    t *= _AS_P * INV_SQRT2
    t += 1.0
    np.reciprocal(t, out=t)
    tail = t * (0.5 * _AS_A[0])
    for a in _AS_A[1:]:
        tail += 0.5 * a
        tail *= t
    gauss = np.square(x)
    gauss *= -0.5
    tail *= np.exp(gauss, out=gauss)
    np.subtract(0.5, tail, out=tail)
    np.copysign(tail, x, out=tail)
    tail += 0.5
    return tail


@primitive
def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF: SciPy's exact erf in float64, the
    polynomial above in float32."""
    return _normal_cdf_float32(x) if x.dtype == np.float32 else 0.5 * (1.0 + backend.erf(x * INV_SQRT2))


def _normal_cdf_backward_reference(g, x):
    return g * INV_SQRT2PI * anp.exp(-0.5 * x * x)


@kernel(_normal_cdf_backward_reference)
def normal_cdf_backward(g, x):
    """g * phi(x), the gradient of normal_cdf: g and x (M, d) -> (M, d)."""
    out = np.square(x)
    out *= -0.5
    np.exp(out, out=out)
    out *= g
    out *= INV_SQRT2PI
    return out


defvjp(normal_cdf, lambda ans, x: lambda g: normal_cdf_backward(g, x))


# ---------------------------------------------------------------- softmax over one axis
@primitive
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


defvjp(softmax, lambda y, x, axis=-1: lambda g: y * (g - sum_axis(g * y, axis, keepdims=True)))


# ---------------------------------------------------------------- mean cross-entropy with integer labels
def one_hot(labels, n, dtype):
    """(N,) int in [0, n) -> (N, n) float of `dtype` (an IndexError for other labels, which would be all zeros)."""
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n):
        raise IndexError(f"labels must lie in [0, {n}): found {int(labels.min())}..{int(labels.max())}")
    return (labels[:, None] == backend.array_module(labels).arange(n)).astype(dtype)


@primitive
def cross_entropy(logits, labels):
    """mean_i [logsumexp(logits_i) - logits_i[label_i]]: logits (N, V), labels (N,) int -> scalar."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)  # (N, V)
    log_z = np.log(np.sum(np.exp(shifted), axis=1))  # (N,)
    picked = np.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]  # (N,)
    return np.mean(log_z - picked)


def cross_entropy_backward(logits, labels):
    """The gradient of cross_entropy with respect to its logits (N, V): (softmax(logits) - onehot(labels)) / N."""
    return (softmax(logits, 1) - one_hot(labels, logits.shape[1], logits.dtype)) / logits.shape[0]


defvjp(cross_entropy, lambda ans, logits, labels: lambda g: g * cross_entropy_backward(logits, labels), None)


# ---------------------------------------------------------------- embedding lookup
@primitive
def embed(table, idx):
    """Rows of `table` (V, d) picked by integer `idx` (M,) -> (M, d)."""
    return table[idx]


def embed_backward(g, idx, vocab: int):
    """The gradient of embed's table (vocab, d) from its output's gradient g (M, d): each row sums the gradients
    of its occurrences in idx (M,)."""
    return matmul(one_hot(idx, vocab, g.dtype).T, g)  # (vocab, M) @ (M, d)


defvjp(embed, lambda ans, table, idx: lambda g: embed_backward(g, idx, table.shape[0]), None)


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
