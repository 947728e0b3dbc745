"""The paper's transformer (PAPER.md §2) as pure functions over a flat dict of named parameters.

Pre-norm blocks x += attn(LN1(x)); x += mlp(LN2(x)), exact GELU, learned positions, final LayerNorm, untied
unembedding read out at position 0, no mask, no dropout. Activations multiply on the left (`x @ W`, W is
(d_in, d_out)) and are kept as one 2-D (T*N, d) array, position-major: row t*N + n is token t of example n.
"""
from __future__ import annotations

import functools
import math

import autograd.numpy as np
from autograd import grad

from tinygrok.config import Config
from tinygrok.ops import (attention, cross_entropy, embed, gelu, head_rows, layer_norm, linear, param_view,
                          spread)

SEQ_LEN = 2  # the input is just [a, b] (PAPER.md §1.2)
BLOCK_PARAMS = ("ln1.w", "ln1.b", "W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O",
                "ln2.w", "ln2.b", "W_in", "b_in", "W_out", "b_out")
ATTENTION_MATRICES = ("W_Q", "W_K", "W_V", "W_O")


def param_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in THE canonical order (flattening and checkpoints follow it)."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.p
    block = {"ln1.w": (d,), "ln1.b": (d,), "W_Q": (d, d), "b_Q": (d,), "W_K": (d, d), "b_K": (d,),
             "W_V": (d, d), "b_V": (d,), "W_O": (d, d), "b_O": (d,), "ln2.w": (d,), "ln2.b": (d,),
             "W_in": (d, f), "b_in": (f,), "W_out": (f, d), "b_out": (d,)}
    shapes = {"W_E": (v, d), "W_pos": (SEQ_LEN, d)}
    for layer in range(cfg.n_layers):
        shapes.update({f"blocks.{layer}.{name}": block[name] for name in BLOCK_PARAMS})
    shapes.update({"ln_final.w": (d,), "ln_final.b": (d,), "W_U": (d, v), "b_U": (v,)})
    return shapes


def _init_block(cfg: Config, rng) -> dict:
    """One block, initialised as torch.nn.TransformerEncoderLayer does (PAPER.md §2, 'Init details')."""
    d, f = cfg.d_model, cfg.d_ff
    uniform = lambda bound, shape: rng.uniform(-bound, bound, size=shape)  # noqa: E731
    qkv_bound = (6.0 / (d + 3 * d)) ** 0.5  # Xavier-uniform over the fused (3d, d) in_proj matrix
    return {
        "ln1.w": np.ones(d), "ln1.b": np.zeros(d),
        "W_Q": uniform(qkv_bound, (d, d)), "b_Q": np.zeros(d),
        "W_K": uniform(qkv_bound, (d, d)), "b_K": np.zeros(d),
        "W_V": uniform(qkv_bound, (d, d)), "b_V": np.zeros(d),
        "W_O": uniform(d**-0.5, (d, d)), "b_O": np.zeros(d),
        "ln2.w": np.ones(d), "ln2.b": np.zeros(d),
        "W_in": uniform(d**-0.5, (d, f)), "b_in": uniform(d**-0.5, (f,)),
        "W_out": uniform(f**-0.5, (f, d)), "b_out": uniform(f**-0.5, (d,)),
    }


def init_params(cfg: Config, rng) -> dict:
    """Fresh parameters drawn from `rng`; with cfg.shared_init every block starts as a copy of block 0."""
    d, v = cfg.d_model, cfg.p
    params = {"W_E": rng.standard_normal((v, d)), "W_pos": rng.standard_normal((SEQ_LEN, d)) * d**-0.5}
    first = _init_block(cfg, rng)
    for layer in range(cfg.n_layers):
        block = first if cfg.shared_init or layer == 0 else _init_block(cfg, rng)
        params.update({f"blocks.{layer}.{k}": block[k] for k in BLOCK_PARAMS})
    params.update({"ln_final.w": np.ones(d), "ln_final.b": np.zeros(d),
                   "W_U": rng.uniform(-(d**-0.5), d**-0.5, (d, v)), "b_U": rng.uniform(-(d**-0.5), d**-0.5, v)})
    order = param_shapes(cfg)
    return {name: np.array(params[name], dtype=cfg.dtype) for name in order}


@functools.lru_cache(maxsize=None)
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


def attention_vector(theta, cfg: Config):
    """Those matrices of theta (P,), flattened and concatenated in layout order: one snapshot row (8 d^2,)."""
    return np.concatenate([theta[start:start + math.prod(shape)] for start, shape in attention_layout(cfg).values()])


def flatten(params: dict):
    """The flat parameter vector theta (P,), blocks in canonical order (init_params builds the dict in it)."""
    return np.concatenate([np.ravel(w) for w in params.values()])


def unflatten(theta, cfg: Config) -> dict:
    """Named views into theta (P,); differentiable, and the gradient of all views comes back as one (P,)."""
    return {name: param_view(theta, start, shape) for name, (start, shape) in layout(cfg).items()}


def count_layers(params: dict) -> int:
    return sum(name.endswith(".W_Q") for name in params)


def self_attention(x, p: dict, n_heads: int, n_out: int):
    """Unmasked multi-head self-attention over the SEQ_LEN positions, for the first n_out rows (the first
    n_out // N positions) only: x (T*N, d) -> (n_out, d)."""
    tn, d = x.shape
    n, dh = tn // SEQ_LEN, d // n_heads
    q = linear(_first_rows(x, n_out), p["W_Q"], p["b_Q"]).reshape(n_out // n, n * n_heads, dh)  # (Tq, N*H, dh)
    k = linear(x, p["W_K"], p["b_K"]).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    v = linear(x, p["W_V"], p["b_V"]).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    return linear(attention(q, k, v).reshape(n_out, d), p["W_O"], p["b_O"])  # (n_out, d)


def block(x, p: dict, n_heads: int, n_out: int):
    """One pre-norm transformer block, computed for the first n_out rows: x (T*N, d) -> (n_out, d)."""
    x = _first_rows(x, n_out) + self_attention(layer_norm(x, p["ln1.w"], p["ln1.b"]), p, n_heads, n_out)
    hidden = gelu(linear(layer_norm(x, p["ln2.w"], p["ln2.b"]), p["W_in"], p["b_in"]))  # (n_out, d_ff)
    return x + linear(hidden, p["W_out"], p["b_out"])  # (n_out, d)


def _first_rows(x, n: int):
    """x (M, d) -> (n, d), without a copy or a graph node when n == M."""
    return x if n == x.shape[0] else head_rows(x, n)


def forward(params: dict, tokens, n_heads: int):
    """Logits for each example: tokens (N, 2) int -> (N, vocab), read out at position 0.

    Only position 0 is read out, so the last block computes position 0 alone (its keys and values still come
    from every position): the same logits as the full computation, for about 20% less work.
    """
    n = tokens.shape[0]
    d = params["W_pos"].shape[1]
    x = embed(params["W_E"], tokens.T.ravel()).reshape(SEQ_LEN, n, d)  # (T, N, d)
    positions = spread(params["W_pos"].reshape(SEQ_LEN, 1, d), (SEQ_LEN, n, d), 1, keepdims=True)  # (T, N, d)
    x = (x + positions).reshape(SEQ_LEN * n, d)  # (T*N, d)
    n_layers = count_layers(params)
    for layer in range(n_layers):
        prefix = f"blocks.{layer}."
        n_out = n if layer == n_layers - 1 else SEQ_LEN * n  # rows this block must produce
        x = block(x, {k: params[prefix + k] for k in BLOCK_PARAMS}, n_heads, n_out)  # (n_out, d)
    x0 = layer_norm(x, params["ln_final.w"], params["ln_final.b"])  # (N, d): position 0
    return linear(x0, params["W_U"], params["b_U"])  # (N, vocab)


def loss_fn(params: dict, tokens, labels, n_heads: int):
    """Mean cross-entropy of the model on (tokens, labels): the training objective, no weight-decay term."""
    return cross_entropy(forward(params, tokens, n_heads), labels)


def flat_loss(theta, tokens, labels, cfg: Config):
    """loss_fn as a function of the flat parameter vector theta (P,): what training and probes differentiate."""
    return loss_fn(unflatten(theta, cfg), tokens, labels, cfg.n_heads)


_grad_of_flat_loss = grad(flat_loss)


def flat_grad(theta, tokens, labels, cfg: Config):
    """d loss / d theta: theta (P,), tokens (N, 2), labels (N,) -> (P,). (A def, not `grad(flat_loss)` itself,
    so that worker processes can import it by its name.)"""
    return _grad_of_flat_loss(theta, tokens, labels, cfg)
