"""The fast path's plain-NumPy kernels: each one fused call on raw arrays, no autograd, no graph.

They compute the same formulas as the readable definitions (model.py's forward, optim.py's AdamW) and as the
references ops.py pairs them with, and are tested equal to them. Written for speed: in-place passes, einsum
contractions, a polynomial erf in float32. Everything is backend-neutral (NumPy's dispatch sends device arrays to
their own library) and keeps the input dtype: float32 in, float32 out. Nothing here imports autograd.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse

from tinygrok.engine import backend
from tinygrok.science.model import LN_EPS

INV_SQRT2 = 0.7071067811865476
INV_SQRT2PI = 0.3989422804014327


def rowdot(a, b):
    """sum_j a_ij b_ij for a, b (M, d) -> (M, 1), without a temporary (M, d) array."""
    return np.einsum("md,md->m", a, b)[:, None]


# ---------------------------------------------------------------- sums, broadcasts, rows and views
def sum_axis(x, axis, keepdims=False):
    """x summed over `axis` (an int or a tuple of ints)."""
    return np.sum(x, axis=axis, keepdims=keepdims)


def spread(g, shape, axis, keepdims=False):
    """The adjoint of sum_axis: g repeated along `axis` to `shape` (a read-only broadcast view)."""
    return np.broadcast_to(g if keepdims else np.expand_dims(g, axis), shape)


def head_rows(x, n):
    """x[:n] for x (M, d) -> (n, d) (the position-0 rows of the position-major activations)."""
    return x[:n]


def embed(table, idx):
    """The rows of table (V, d) at idx (M,) -> (M, d)."""
    return np.take(table, idx, axis=0)


def param_view(theta, start, shape):
    """The block theta[start : start + prod(shape)] of a flat vector, reshaped to `shape` (no copy)."""
    return theta[start : start + math.prod(shape)].reshape(shape)


def views(theta, layout: dict) -> dict:
    """model.unflatten without autograd: name -> param_view of theta (P,), for each (start, shape) of `layout`."""
    return {name: param_view(theta, start, shape) for name, (start, shape) in layout.items()}


def joined(arrays) -> object:
    """The arrays flattened and joined end to end into one vector, on their device (model.flatten without
    autograd, whose concatenate returns a NumPy array whatever it was given)."""
    return np.concatenate([np.ravel(a) for a in arrays])


# ---------------------------------------------------------------- layer norm over the last axis
def standardise(x):
    """(x - mean) / sqrt(var + eps) over the last axis in three passes: x (M, d) -> (M, d), and rstd (M, 1)."""
    xc = x - np.mean(x, axis=-1, keepdims=True)  # (M, d)
    rstd = rowdot(xc, xc)  # (M, 1)
    rstd *= 1.0 / x.shape[-1]
    rstd += LN_EPS
    rstd **= -0.5
    xc *= rstd
    return xc, rstd


def layer_norm(x, w, b):
    """standardise(x) * w + b: x (M, d), w (d,), b (d,) -> (M, d)."""
    out, _ = standardise(x)  # (M, d)
    out *= w
    out += b
    return out


def layer_norm_backward(g, x, w):
    """The gradients (of x (M, d), w (d,), b (d,)) of layer_norm's output gradient g (M, d)."""
    return layer_norm_backward_from(g, *standardise(x), w)


def layer_norm_backward_from(g, xhat, rstd, w):
    """layer_norm_backward from x's standardise(x) = xhat (M, d), rstd (M, 1), kept from the forward pass."""
    g_w, g_b = np.sum(g * xhat, axis=0), np.sum(g, axis=0)  # (d,), (d,)
    gx = g * w  # (M, d)
    along_xhat = rowdot(gx, xhat)  # (M, 1)
    gx -= np.mean(gx, axis=-1, keepdims=True)
    gx -= xhat * (along_xhat / xhat.shape[-1])
    gx *= rstd
    return gx, g_w, g_b


# ---------------------------------------------------------------- affine map
def linear(x, w, b):
    """x @ w + b: x (M, d_in), w (d_in, d_out), b (d_out,) -> (M, d_out)."""
    out = np.dot(x, w)  # (M, d_out)
    out += b
    return out


def linear_backward(g, x, w):
    """The gradients (of x (M, d_in), w (d_in, d_out), b (d_out,)) of linear's output gradient g (M, d_out)."""
    return np.dot(g, w.T), np.dot(x.T, g), np.sum(g, axis=0)


# ---------------------------------------------------------------- attention over a few positions
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def attention_probs(q, k):
    """softmax_k(q . k / sqrt(e)) for q (Tq, B, e), k (Tk, B, e) -> (Tq, Tk, B), contracted with einsum (faster than
    the broadcast product: docs/speed.md)."""
    scores = np.einsum("tbe,ube->tub", q, k)  # (Tq, Tk, B)
    scores *= q.shape[-1] ** -0.5
    return softmax(scores, axis=1)


def attention(q, k, v):
    """Unmasked softmax(q k^T / sqrt(e)) v for every b: q (Tq, B, e), k and v (Tk, B, e) -> (Tq, B, e).

    The paper's sequences have two positions, so B = N * heads independent 2 x 2 problems: contracted over the
    position pairs with einsum, not as batched matmuls of 2 x 2 blocks.
    """
    return attention_from(attention_probs(q, k), v)


def attention_from(probs, v):
    """attention from its probabilities (Tq, Tk, B) = attention_probs(q, k): probs v -> (Tq, B, e)."""
    return np.einsum("tub,ube->tbe", probs, v)


def attention_backward(g, q, k, v):
    """The gradients (of q (Tq, B, e), k and v (Tk, B, e)) of attention's output gradient g (Tq, B, e)."""
    return attention_backward_from(g, q, k, v, attention_probs(q, k))


def attention_backward_from(g, q, k, v, probs):
    """attention_backward from probs = attention_probs(q, k) (Tq, Tk, B), kept from the forward pass."""
    g_scores = np.einsum("tbe,ube->tub", g, v)  # (Tq, Tk, B), the gradient of probs for now
    g_scores -= np.sum(g_scores * probs, axis=1, keepdims=True)
    g_scores *= probs
    g_scores *= q.shape[-1] ** -0.5
    return (
        np.einsum("tub,ube->tbe", g_scores, k),
        np.einsum("tub,tbe->ube", g_scores, q),
        np.einsum("tub,tbe->ube", probs, g),
    )


# ---------------------------------------------------------------- exact (erf) GELU's Phi
_AS_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erf(z) = 1 - t(a1 + a2 t + ... + a5 t^4) exp(-z^2), t = 1/(1+pz)
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 .. a1


def _normal_cdf_float32(x):
    """Phi(x) = 1/2 + sign(x) (1/2 - tail(|x|)) with A&S 7.1.26 for erf(|x| / sqrt 2), in twenty in-place passes:
    tail = t (a1 + ... + a5 t^4) exp(-x^2 / 2) / 2, t = 1 / (1 + p |x| / sqrt 2). |error| <= 1e-7 before
    float32 rounding; faster than SciPy's erf, which computes in float64 element by element. Returns
    Phi(x) and the exp(-x^2 / 2) it computed on the way (GELU's backward pass needs it)."""
    t = np.abs(x)
    t *= _AS_P * INV_SQRT2
    t += 1.0
    np.reciprocal(t, out=t)
    tail = t * (0.5 * _AS_A[0])
    for a in _AS_A[1:]:
        tail += 0.5 * a
        tail *= t
    gauss = gaussian(x)
    tail *= gauss
    np.subtract(0.5, tail, out=tail)
    np.copysign(tail, x, out=tail)
    tail += 0.5
    return tail, gauss


def gaussian(x):
    """exp(-x^2 / 2), elementwise: the standard normal density times sqrt(2 pi)."""
    out = np.square(x)
    out *= -0.5
    return np.exp(out, out=out)


def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2: the polynomial above in float32, the exact erf (on x's device) in
    float64."""
    return _normal_cdf_float32(x)[0] if x.dtype == np.float32 else 0.5 * (1.0 + backend.erf(x * INV_SQRT2))


def normal_cdf_and_gaussian(x):
    """Phi(x), and gaussian(x) for its derivative: x (M, d) -> two (M, d) arrays."""
    return _normal_cdf_float32(x) if x.dtype == np.float32 else (normal_cdf(x), gaussian(x))


def normal_cdf_backward(g, x):
    """g * phi(x), the gradient of normal_cdf: g and x (M, d) -> (M, d)."""
    return normal_cdf_backward_from(g, gaussian(x))


def normal_cdf_backward_from(g, gauss):
    """normal_cdf_backward from gauss = gaussian(x) (M, d), kept from the forward pass: g * gauss / sqrt(2 pi)."""
    out = gauss * g
    out *= INV_SQRT2PI
    return out


# ---------------------------------------------------------------- mean cross-entropy with integer labels
def check_indices(idx, n: int) -> None:
    """An IndexError unless every entry of idx (M,) int lies in [0, n)."""
    if len(idx) and not (0 <= int(idx.min()) and int(idx.max()) < n):
        raise IndexError(f"indices must lie in [0, {n}): found {int(idx.min())}..{int(idx.max())}")


def one_hot(labels, n, dtype):
    """(N,) int in [0, n) -> (N, n) float of `dtype` (an IndexError for other labels, which would be all zeros)."""
    check_indices(labels, n)
    return (labels[:, None] == backend.array_module(labels).arange(n)).astype(dtype)


def cross_entropy(logits, labels):
    """mean_i [logsumexp(logits_i) - logits_i[label_i]]: logits (N, V), labels (N,) int -> scalar."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)  # (N, V)
    log_z = np.log(np.sum(np.exp(shifted), axis=1))  # (N,)
    picked = np.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]  # (N,)
    return np.mean(log_z - picked)


def cross_entropy_backward(logits, labels):
    """The gradient of cross_entropy with respect to its logits (N, V): (softmax(logits) - onehot(labels)) / N,
    the label's entry p - 1 written as minus the other entries' sum. A trained model gives its label p near 1, and
    p rounded near 1 keeps few digits of 1 - p (in float32 at p = 0.9995, a relative 1e-4); the sum keeps them."""
    check_indices(labels, logits.shape[1])
    g = softmax(logits, 1)  # (N, V)
    label_entries = (backend.array_module(labels).arange(len(labels)), labels)
    g[label_entries] = 0.0
    g[label_entries] = -np.sum(g, axis=1)
    g /= logits.shape[0]
    return g


# ---------------------------------------------------------------- embedding lookup
def embed_backward(g, idx, vocab: int):
    """The gradient of an embedding table (vocab, d) from its output's gradient g (M, d): each row sums the
    gradients of its occurrences in idx (M,). On the host as the transposed one-hot matrix, stored sparse (column
    i holds a one in row idx[i]), times g: M d additions, in the order of idx. On a device as the dense product."""
    if not isinstance(g, np.ndarray):
        return np.dot(one_hot(idx, vocab, g.dtype).T, g)  # (vocab, M) @ (M, d)
    check_indices(idx, vocab)
    m = len(idx)
    return scipy.sparse.csc_array((np.ones(m, g.dtype), idx, np.arange(m + 1)), shape=(vocab, m)) @ g  # (vocab, d)


# ---------------------------------------------------------------- AdamW
def adamw_step(
    theta, grad, m, v, t: int, *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> tuple:
    """optim.adamw_step's update (m, v, theta at step t) with the bias corrections folded into two scalars, in
    nine passes over fresh arrays: (theta, m, v) (P,) -> new (theta, m, v). The inputs are never modified."""
    m = m * beta1
    m += (1 - beta1) * grad
    v = v * beta2
    v += (1 - beta2) * (grad * grad)
    denom = np.sqrt(v)  # sqrt(v_hat) + eps = sqrt(v) / sqrt(1 - beta2^t) + eps
    denom *= 1.0 / math.sqrt(1 - beta2**t)
    denom += eps
    update = m * (lr / (1 - beta1**t))  # lr * m_hat
    update /= denom
    new_theta = theta * (1 - lr * weight_decay)  # decoupled decay
    new_theta -= update
    return new_theta, m, v
