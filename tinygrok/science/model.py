"""The paper's transformer (docs/paper.md §2), written to be read: its parameters, and the forward pass one formula a
line.

A 2-token input [a, b] -> token + position embeddings -> pre-norm blocks (x += attention(LN1(x)); x += mlp(LN2(x)),
exact GELU, unmasked) -> final LayerNorm at position 0 -> untied unembedding -> logits over the p answers.
Parameters are a flat dict of named arrays; activations multiply on the left (`x @ W`, W is (d_in, d_out)).

This is the model that trains, itself or through the fast engine, checked against it. With `--engine readable` every
step runs this forward pass and its gradient by autograd; by default (`auto`) a run trains on the fast engine
(fast.py: kernels, the last block at position 0 only, backpropagation written out) only once it has checked it equal
to this model at the run's parameters (engine/engines.py): change a line here and the next run trains on this code,
and says so.
"""

from __future__ import annotations

import functools
import math

import autograd.numpy as np

from tinygrok.science.config import Config
from tinygrok.science.special import erf

SEQ_LEN = 2  # the input is just [a, b] (docs/paper.md §1.2)
LN_EPS = 1e-5  # torch.nn.LayerNorm's default (docs/paper.md §2)
ATTENTION_MATRICES = ("W_Q", "W_K", "W_V", "W_O")


def block_shapes(d: int, f: int) -> dict[str, tuple[int, ...]]:
    """One block's parameters, in order, and their shapes (d: d_model, f: d_ff)."""
    return {
        "ln1.w": (d,),
        "ln1.b": (d,),
        "W_Q": (d, d),
        "b_Q": (d,),
        "W_K": (d, d),
        "b_K": (d,),
        "W_V": (d, d),
        "b_V": (d,),
        "W_O": (d, d),
        "b_O": (d,),
        "ln2.w": (d,),
        "ln2.b": (d,),
        "W_in": (d, f),
        "b_in": (f,),
        "W_out": (f, d),
        "b_out": (d,),
    }


BLOCK_PARAMS = tuple(block_shapes(1, 1))  # a block's parameter names, in order


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in THE canonical order (flattening and checkpoints follow it)."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.p
    shapes = {"W_E": (v, d), "W_pos": (SEQ_LEN, d)}
    for layer in range(cfg.n_layers):
        shapes.update({f"blocks.{layer}.{name}": shape for name, shape in block_shapes(d, f).items()})
    shapes.update({"ln_final.w": (d,), "ln_final.b": (d,), "W_U": (d, v), "b_U": (v,)})
    return shapes


def _init_block(cfg: Config, rng) -> dict:
    """One block, initialised as torch.nn.TransformerEncoderLayer does (docs/paper.md §2, 'Init details')."""
    d, f = cfg.d_model, cfg.d_ff
    uniform = lambda bound, shape: rng.uniform(-bound, bound, size=shape)  # noqa: E731
    qkv_bound = (6.0 / (d + 3 * d)) ** 0.5  # Xavier-uniform over the fused (3d, d) in_proj matrix
    return {
        "ln1.w": np.ones(d),
        "ln1.b": np.zeros(d),
        "W_Q": uniform(qkv_bound, (d, d)),
        "b_Q": np.zeros(d),
        "W_K": uniform(qkv_bound, (d, d)),
        "b_K": np.zeros(d),
        "W_V": uniform(qkv_bound, (d, d)),
        "b_V": np.zeros(d),
        "W_O": uniform(d**-0.5, (d, d)),
        "b_O": np.zeros(d),
        "ln2.w": np.ones(d),
        "ln2.b": np.zeros(d),
        "W_in": uniform(d**-0.5, (d, f)),
        "b_in": uniform(d**-0.5, (f,)),
        "W_out": uniform(f**-0.5, (f, d)),
        "b_out": uniform(f**-0.5, (d,)),
    }


def init_params(cfg: Config, rng) -> dict:
    """Fresh parameters drawn from `rng`; with cfg.shared_init every block starts as a copy of block 0."""
    d, v = cfg.d_model, cfg.p
    params = {"W_E": rng.standard_normal((v, d)), "W_pos": rng.standard_normal((SEQ_LEN, d)) * d**-0.5}
    first = _init_block(cfg, rng)
    for layer in range(cfg.n_layers):
        block = first if cfg.shared_init or layer == 0 else _init_block(cfg, rng)
        params.update({f"blocks.{layer}.{k}": block[k] for k in BLOCK_PARAMS})
    params.update(
        {
            "ln_final.w": np.ones(d),
            "ln_final.b": np.zeros(d),
            "W_U": rng.uniform(-(d**-0.5), d**-0.5, (d, v)),
            "b_U": rng.uniform(-(d**-0.5), d**-0.5, v),
        }
    )
    order = param_shapes(cfg)
    return {name: np.array(params[name], dtype=cfg.dtype) for name in order}


@functools.cache
def layout(cfg: Config) -> dict[str, tuple[int, tuple[int, ...]]]:
    """name -> (offset, shape) of each parameter inside the flat vector theta (P,), in canonical order.

    Cached per config (computed once, read on every forward pass): do not modify the returned dict."""
    offsets, start = {}, 0
    for name, shape in param_shapes(cfg).items():
        offsets[name] = (start, shape)
        start += math.prod(shape)
    return offsets


def param_count(cfg: Config) -> int:
    """P, the length of theta."""
    return sum(math.prod(shape) for _, shape in layout(cfg).values())


def attention_layout(cfg: Config) -> dict[str, tuple[int, tuple[int, ...]]]:
    """The W_Q, W_K, W_V, W_O of every layer: the part of `layout` whose trajectory PCA studies (§5.1)."""
    return {name: spec for name, spec in layout(cfg).items() if name.split(".")[-1] in ATTENTION_MATRICES}


def attention_indices(cfg: Config) -> np.ndarray:
    """Where those matrices lie in theta: their coordinates, in layout order (8 d^2,) for 2 layers."""
    return np.concatenate(
        [np.arange(start, start + math.prod(shape)) for start, shape in attention_layout(cfg).values()]
    )


def snapshot_layout(cfg: Config) -> dict[str, tuple[int, tuple[int, ...]]]:
    """The attention matrices a snapshot holds: every layer's, or the last cfg.snapshot_layers layers' (the slow
    regime's runs keep the last layer's, to carry them between machines)."""
    first = cfg.n_layers - cfg.snapshot_layers if cfg.snapshot_layers else 0
    return {name: spec for name, spec in attention_layout(cfg).items() if int(name.split(".")[1]) >= first}


def snapshot_vector(theta, cfg: Config) -> np.ndarray:
    """Those matrices of theta (P,), flattened and concatenated in layout order, in the snapshots' dtype: one
    snapshot row (8 d^2,) for 2 layers, all kept."""
    matrices = [theta[start : start + math.prod(shape)] for start, shape in snapshot_layout(cfg).values()]
    return np.concatenate(matrices).astype(snapshot_dtype(cfg))


def snapshot_dtype(cfg: Config) -> np.dtype:
    """The snapshots' numbers: the run's dtype, or float16 where asked (PC1 moves by ~1e-6)."""
    return np.dtype(cfg.dtype if cfg.snapshot_dtype == "same" else cfg.snapshot_dtype)


def flatten(params: dict):
    """The flat parameter vector theta (P,), blocks in canonical order (init_params builds the dict in it)."""
    return np.concatenate([np.ravel(w) for w in params.values()])


def unflatten(theta, cfg: Config) -> dict:
    """Named views into theta (P,), each its block of theta reshaped; differentiable (the gradients of all the
    views come back as one (P,))."""
    return {
        name: np.reshape(theta[start : start + math.prod(shape)], shape) for name, (start, shape) in layout(cfg).items()
    }


def count_layers(params: dict) -> int:
    return sum(name.endswith(".W_Q") for name in params)


def block_params(params: dict, layer: int) -> dict:
    """The parameters of one block, by their short names ("W_Q", "ln1.w", ...)."""
    return {k: params[f"blocks.{layer}.{k}"] for k in BLOCK_PARAMS}


# ---------------------------------------------------------------------- the forward pass
def linear(x, w, b):
    """x w + b on the last axis: (..., d_in) -> (..., d_out), one 2-D product over every row at once (so that its
    gradient is a 2-D product too, not one product per example summed afterwards)."""
    rows = np.reshape(x, (-1, x.shape[-1]))  # (M, d_in)
    return np.reshape(rows @ w + b, x.shape[:-1] + (w.shape[1],))  # (..., d_out)


def one_hot(indices, n: int, dtype):
    """1 where the last axis equals the index, else 0: (...) int -> (..., n). Picking rows by a product with it
    is indexing whose gradient is a product too."""
    return (np.asarray(indices)[..., None] == np.arange(n)).astype(dtype)  # (..., n)


def layer_norm(x, w, b):
    """Normalise each row to mean 0 and variance 1, then scale and shift: x (..., d) -> (..., d)."""
    mu = np.mean(x, axis=-1, keepdims=True)  # (..., 1)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)  # (..., 1)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b  # (..., d)


def gelu(u):
    """The exact GELU, u Phi(u), with Phi the standard normal CDF: elementwise, (...) -> (...)."""
    return u * 0.5 * (1 + erf(u / math.sqrt(2)))  # (...)


def softmax(s):
    """exp(s) / sum(exp(s)) over the last axis (shifted by the max: the same value, no overflow)."""
    e = np.exp(s - np.max(s, axis=-1, keepdims=True))  # (..., T)
    return e / np.sum(e, axis=-1, keepdims=True)  # (..., T), each row sums to 1


def attention(x, p: dict, n_heads: int):
    """Multi-head self-attention over both positions, unmasked: x (N, T, d) -> (N, T, d)."""
    n, t, d = x.shape
    dh = d // n_heads

    def heads(y):  # (N, T, d) -> (N, H, T, dh): head h owns columns h*dh .. (h+1)*dh - 1
        return np.transpose(np.reshape(y, (n, t, n_heads, dh)), (0, 2, 1, 3))

    q = heads(linear(x, p["W_Q"], p["b_Q"]))  # (N, H, T, dh)
    k = heads(linear(x, p["W_K"], p["b_K"]))  # (N, H, T, dh)
    v = heads(linear(x, p["W_V"], p["b_V"]))  # (N, H, T, dh)
    weights = softmax(q @ np.swapaxes(k, -1, -2) / math.sqrt(dh))  # (N, H, T, T): who attends to whom
    a = np.reshape(np.transpose(weights @ v, (0, 2, 1, 3)), (n, t, d))  # (N, T, d): heads side by side
    return linear(a, p["W_O"], p["b_O"])  # (N, T, d)


def mlp(x, p: dict):
    """Two affine maps with a GELU between: x (N, T, d) -> (N, T, d)."""
    u = linear(x, p["W_in"], p["b_in"])  # (N, T, d_ff)
    return linear(gelu(u), p["W_out"], p["b_out"])  # (N, T, d)


def block(x, p: dict, n_heads: int):
    """One pre-norm transformer block: x (N, T, d) -> (N, T, d)."""
    x = x + attention(layer_norm(x, p["ln1.w"], p["ln1.b"]), p, n_heads)  # (N, T, d)
    return x + mlp(layer_norm(x, p["ln2.w"], p["ln2.b"]), p)  # (N, T, d)


def forward(params: dict, tokens, n_heads: int):
    """Logits for each example: tokens (N, 2) int -> (N, vocab), read out at position 0."""
    w_e = params["W_E"]  # (p, d): row i embeds the number i
    x = linear(one_hot(tokens, len(w_e), w_e.dtype), w_e, 0) + params["W_pos"]  # (N, T, d): W_E[tokens] + W_pos
    for layer in range(count_layers(params)):
        x = block(x, block_params(params, layer), n_heads)  # (N, T, d)
    x0 = layer_norm(x[:, 0], params["ln_final.w"], params["ln_final.b"])  # (N, d): position 0 only
    return x0 @ params["W_U"] + params["b_U"]  # (N, vocab)


def cross_entropy(logits, labels):
    """Mean over examples of -log softmax(logits)[label]: logits (N, V), labels (N,) int -> scalar."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)  # (N, V)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))  # (N, V)
    picked = np.sum(log_probs * one_hot(labels, logits.shape[1], logits.dtype), axis=1)  # (N,): log p of the label
    return -np.mean(picked)  # ()


def loss_fn(params: dict, tokens, labels, n_heads: int):
    """The training objective: mean cross-entropy of the model on (tokens, labels), no weight-decay term."""
    return cross_entropy(forward(params, tokens, n_heads), labels)


def flat_loss(theta, tokens, labels, cfg: Config):
    """loss_fn as a function of the flat parameter vector theta (P,)."""
    return loss_fn(unflatten(theta, cfg), tokens, labels, cfg.n_heads)
