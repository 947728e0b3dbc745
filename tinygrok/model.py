"""The paper's transformer (PAPER.md §2) as pure functions over a flat dict of named parameters.

Pre-norm blocks x += attn(LN1(x)); x += mlp(LN2(x)), exact GELU, learned positions, final LayerNorm, untied
unembedding read out at position 0, no mask, no dropout. Activations multiply on the left (`x @ W`, W is
(d_in, d_out)) and are kept as one 2-D (T*N, d) array, position-major: row t*N + n is token t of example n.

The gradient that training and the commutator use, flat_grad, is backpropagation written out over the same
blocks (each block returns its activations); autograd's gradient through forward() is its tested reference and
what second derivatives differentiate.
"""
from __future__ import annotations

import functools
import math

import autograd.numpy as np
from autograd import grad

from tinygrok.config import Config
from tinygrok.ops import (attention, attention_backward, cross_entropy, cross_entropy_backward, embed,
                          embed_backward, head_rows, kernel, layer_norm, layer_norm_backward, linear, linear_backward,
                          normal_cdf, normal_cdf_backward, param_view, spread, sum_axis)

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


def block(x, p: dict, n_heads: int, n_out: int) -> dict:
    """One pre-norm transformer block, computed for the first n_out rows: x (T*N, d) -> its activations, the
    output "out" (n_out, d) among them (the backward pass written out below reads the others).

        x1 = x + W_O attention(LN1(x));   out = x1 + W_out GELU(W_in LN2(x1)),   GELU(u) = u Phi(u)
    """
    tn, d = x.shape
    n, dh = tn // SEQ_LEN, d // n_heads
    h = layer_norm(x, p["ln1.w"], p["ln1.b"])  # (T*N, d)
    q = linear(_first_rows(h, n_out), p["W_Q"], p["b_Q"]).reshape(n_out // n, n * n_heads, dh)  # (Tq, N*H, dh)
    k = linear(h, p["W_K"], p["b_K"]).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    v = linear(h, p["W_V"], p["b_V"]).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    a = attention(q, k, v).reshape(n_out, d)  # (n_out, d)
    x1 = _first_rows(x, n_out) + linear(a, p["W_O"], p["b_O"])  # (n_out, d)
    h2 = layer_norm(x1, p["ln2.w"], p["ln2.b"])  # (n_out, d)
    u = linear(h2, p["W_in"], p["b_in"])  # (n_out, d_ff)
    phi = normal_cdf(u)  # (n_out, d_ff), kept: GELU's derivative Phi + u phi needs it
    m = u * phi  # (n_out, d_ff): exact GELU
    return dict(x=x, h=h, q=q, k=k, v=v, a=a, x1=x1, h2=h2, u=u, phi=phi, m=m,
                out=x1 + linear(m, p["W_out"], p["b_out"]))


def _first_rows(x, n: int):
    """x (M, d) -> (n, d), without a copy or a graph node when n == M."""
    return x if n == x.shape[0] else head_rows(x, n)


def trunk(params: dict, tokens, n_heads: int, keep_activations: bool = False) -> tuple:
    """Embedding and blocks: the last block's output (N, d), at position 0 only, and (if asked: they cost memory)
    every block's activations.

    Only position 0 is read out, so the last block computes position 0 alone (its keys and values still come
    from every position): the same logits as the full computation, for about 20% less work.
    """
    n = tokens.shape[0]
    d = params["W_pos"].shape[1]
    x = embed(params["W_E"], tokens.T.ravel()).reshape(SEQ_LEN, n, d)  # (T, N, d)
    positions = spread(params["W_pos"].reshape(SEQ_LEN, 1, d), (SEQ_LEN, n, d), 1, keepdims=True)  # (T, N, d)
    x = (x + positions).reshape(SEQ_LEN * n, d)  # (T*N, d)
    n_layers, blocks = count_layers(params), []
    for layer in range(n_layers):
        prefix = f"blocks.{layer}."
        n_out = n if layer == n_layers - 1 else SEQ_LEN * n  # rows this block must produce
        blocks.append(block(x, {k: params[prefix + k] for k in BLOCK_PARAMS}, n_heads, n_out))
        x = blocks[-1]["out"]  # (n_out, d)
        if not keep_activations:
            blocks.pop()  # freed before the next block runs
    return x, blocks


def forward(params: dict, tokens, n_heads: int):
    """Logits for each example: tokens (N, 2) int -> (N, vocab), read out at position 0."""
    x0 = layer_norm(trunk(params, tokens, n_heads)[0], params["ln_final.w"], params["ln_final.b"])  # (N, d)
    return linear(x0, params["W_U"], params["b_U"])  # (N, vocab)


def loss_fn(params: dict, tokens, labels, n_heads: int):
    """Mean cross-entropy of the model on (tokens, labels): the training objective, no weight-decay term."""
    return cross_entropy(forward(params, tokens, n_heads), labels)


def flat_loss(theta, tokens, labels, cfg: Config):
    """loss_fn as a function of the flat parameter vector theta (P,): the objective whose gradient flat_grad is."""
    return loss_fn(unflatten(theta, cfg), tokens, labels, cfg.n_heads)


def _autograd_flat_grad(theta, tokens, labels, cfg: Config):
    """flat_grad by autograd, through the graph of flat_loss: the reference the hand-written one is tested against,
    and what autograd differentiates when a gradient is itself differentiated (Hessian-vector products)."""
    return grad(flat_loss)(theta, tokens, labels, cfg)


def flat_grad(theta, tokens, labels, cfg: Config):
    """d loss / d theta: theta (P,), tokens (N, 2), labels (N,) -> (P,). Differentiable (a Hessian-vector product
    differentiates it); a def, so that worker processes can import it by its name."""
    return _backprop(theta, tokens, labels, cfg)


@kernel(_autograd_flat_grad)
def _backprop(theta, tokens, labels, cfg: Config):
    """flat_grad by backpropagation written out: the forward pass keeps its activations, then each primitive's
    backward kernel runs in reverse order. The same numbers as autograd's gradient, bit for bit in float32
    (tested), without building a graph of ~80 nodes per call: about 3 ms less per gradient. (Differentiating it
    runs it once for its value, then traces the reference: a Hessian-vector product costs one gradient more.)"""
    params, n = unflatten(theta, cfg), tokens.shape[0]
    x, blocks = trunk(params, tokens, cfg.n_heads, keep_activations=True)  # (N, d)
    x0 = layer_norm(x, params["ln_final.w"], params["ln_final.b"])  # (N, d)
    logits = linear(x0, params["W_U"], params["b_U"])  # (N, vocab)

    grads = {}
    g = cross_entropy_backward(logits, labels)  # (N, vocab)
    g, grads["W_U"], grads["b_U"] = linear_backward(g, x0, params["W_U"])  # (N, d)
    g, grads["ln_final.w"], grads["ln_final.b"] = layer_norm_backward(g, x, params["ln_final.w"])
    for layer in reversed(range(cfg.n_layers)):
        prefix = f"blocks.{layer}."
        g, block_grads = _block_backward(g, blocks[layer], {k: params[prefix + k] for k in BLOCK_PARAMS})
        grads.update({prefix + k: v for k, v in block_grads.items()})  # g: (T*N, d)
    grads["W_pos"] = sum_axis(g.reshape(SEQ_LEN, n, cfg.d_model), 1)  # (T, d)
    grads["W_E"] = embed_backward(g, tokens.T.ravel(), cfg.p)  # (vocab, d)
    out = np.zeros_like(theta)  # (P,)
    for name, (start, shape) in layout(cfg).items():
        out[start:start + math.prod(shape)] = grads[name].ravel()
    return out


def _block_backward(g, s: dict, p: dict):
    """The gradients of a block's input x (T*N, d) and of its parameters, from its output's gradient g (n_out, d)
    and its activations s."""
    n_out, d = g.shape
    grads = {}
    g_m, grads["W_out"], grads["b_out"] = linear_backward(g, s["m"], p["W_out"])  # (n_out, d_ff)
    g_u = g_m * s["phi"] + normal_cdf_backward(g_m * s["u"], s["u"])  # (n_out, d_ff): d(u Phi) = Phi + u phi
    g_h2, grads["W_in"], grads["b_in"] = linear_backward(g_u, s["h2"], p["W_in"])  # (n_out, d)
    g_x1, grads["ln2.w"], grads["ln2.b"] = layer_norm_backward(g_h2, s["x1"], p["ln2.w"])  # (n_out, d)
    g_x1 += g  # the residual
    g_a, grads["W_O"], grads["b_O"] = linear_backward(g_x1, s["a"], p["W_O"])  # (n_out, d)
    g_q, g_k, g_v = attention_backward(g_a.reshape(s["q"].shape), s["q"], s["k"], s["v"])
    g_hq, grads["W_Q"], grads["b_Q"] = linear_backward(g_q.reshape(n_out, d), s["h"][:n_out], p["W_Q"])
    g_hk, grads["W_K"], grads["b_K"] = linear_backward(g_k.reshape(-1, d), s["h"], p["W_K"])  # (T*N, d)
    g_h, grads["W_V"], grads["b_V"] = linear_backward(g_v.reshape(-1, d), s["h"], p["W_V"])  # (T*N, d)
    g_h += g_hk  # in the order autograd sums them, so that float32 results are bit for bit the same
    g_h[:n_out] += g_hq
    g_x, grads["ln1.w"], grads["ln1.b"] = layer_norm_backward(g_h, s["x"], p["ln1.w"])  # (T*N, d)
    g_x[:n_out] += g_x1  # the residual
    return g_x, grads
