"""The fast path: model.py's transformer computed for speed, and its gradient by backpropagation written out.

- Activations are one 2-D (T*N, d) array, position-major (row t*N + n is token t of example n), so every
  product is one 2-D matmul, and every step is a kernel of kernels.py, which autograd traces as a primitive of
  ops.py (no einsum or fancy indexing for it to trace).
- Only position 0 is read out, so the last block computes position 0 alone (its keys and values still come from
  every position): the same logits as model.forward, for about 20% less work.
- The first block's input W_E[token] + W_pos[position] takes one of 2 x p values per row, so its layer norm and its
  Q, K, V projections are computed once per (position, token) on that table (194 rows at the paper's p) and
  gathered, instead of once per example and position (512 rows a shard); their backward sums the gathered rows'
  gradients per table row first. The same numbers in real arithmetic.
- flat_grad, the gradient training and the commutator use, is backpropagation written out: the forward pass
  calls the kernels directly and keeps every block's activations, then the backward kernels run in reverse.
  Autograd's gradient through this module's primitive graph is its tested reference, and what a Hessian-vector
  product differentiates.

Tested equal to model.py's readable definitions (tests/test_fast.py). model.py never imports this module.
"""

from __future__ import annotations

from autograd import grad

from tinygrok.engine import backend, kernels, ops
from tinygrok.engine.ops import cross_entropy, kernel, layer_norm, linear
from tinygrok.science.config import Config
from tinygrok.science.model import SEQ_LEN, block_params, count_layers, layout


def block(x, p: dict, n_heads: int, n_out: int, raw: bool = False, rows=None) -> dict:
    """One pre-norm transformer block, computed for the first n_out rows: x (T*N, d) -> its activations, the
    output "out" (n_out, d) among them (the backward pass written out below reads the others). Given `rows` (T*N,)
    (the first block), x is the table of the input's distinct rows (T*V, d), and activation row i is x[rows[i]]:
    LN1 and the Q, K, V projections run on the table, then are gathered. `raw`: for that backward pass, on arrays
    nothing traces: the kernels are called directly, and what the backward kernels would otherwise compute again is
    kept too (the layer norms' standardised inputs, the attention probabilities, GELU's Gaussian).

        x1 = x + W_O attention(LN1(x));   out = x1 + W_out GELU(W_in LN2(x1)),   GELU(u) = u Phi(u)
    """
    f = _functions(raw)
    n, d = (x.shape[0] if rows is None else len(rows)) // SEQ_LEN, x.shape[1]
    dh = d // n_heads
    h, ln1 = _layer_norm(x, p["ln1.w"], p["ln1.b"], raw)  # (T*N, d), or the table's (T*V, d)
    q = _projected(h, p["W_Q"], p["b_Q"], rows, n_out, f).reshape(n_out // n, n * n_heads, dh)  # (Tq, N*H, dh)
    k = _projected(h, p["W_K"], p["b_K"], rows, SEQ_LEN * n, f).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    v = _projected(h, p["W_V"], p["b_V"], rows, SEQ_LEN * n, f).reshape(SEQ_LEN, n * n_heads, dh)  # (T, N*H, dh)
    a, probs = _attention(q, k, v, raw)
    a = a.reshape(n_out, d)  # (n_out, d)
    x1 = _gathered(x, rows, n_out, f) + f.linear(a, p["W_O"], p["b_O"])  # (n_out, d)
    h2, ln2 = _layer_norm(x1, p["ln2.w"], p["ln2.b"], raw)  # (n_out, d)
    u = f.linear(h2, p["W_in"], p["b_in"])  # (n_out, d_ff)
    phi, gauss = _normal_cdf(u, raw)  # (n_out, d_ff) each
    m = u * phi  # (n_out, d_ff): exact GELU
    return dict(
        x=x,
        rows=rows,
        h=h,
        ln1=ln1,
        q=q,
        k=k,
        v=v,
        probs=probs,
        a=a,
        x1=x1,
        h2=h2,
        ln2=ln2,
        u=u,
        phi=phi,
        gauss=gauss,
        m=m,
        out=x1 + f.linear(m, p["W_out"], p["b_out"]),
    )


def _projected(h, w, b, rows, n: int, f):
    """The first n activation rows of h @ w + b -> (n, e): computed on those rows, or given `rows`, on the table h
    (T*V, d) and then gathered."""
    if rows is None:
        return f.linear(_first_rows(h, n, f), w, b)
    return _gathered(f.linear(h, w, b), rows, n, f)


def _gathered(x, rows, n: int, f):
    """The first n activation rows of x -> (n, d): x's own, or given `rows`, gathered from the table x (T*V, d)."""
    return _first_rows(x, n, f) if rows is None else f.embed(x, rows[:n])


def _functions(raw: bool):
    """Where the forward pass takes its functions from: the plain kernels on raw arrays, else the primitives
    (the same kernels, wrapped for autograd: a few microseconds more per call)."""
    return kernels if raw else ops


def _layer_norm(x, w, b, raw: bool) -> tuple:
    """LN(x) (M, d); and if `raw`, x's standardised (x-hat (M, d), rstd (M, 1)), kept for the backward pass."""
    if not raw:
        return layer_norm(x, w, b), None
    xhat, rstd = kernels.standardise(x)
    out = xhat * w  # as kernels.layer_norm computes it in place
    out += b
    return out, (xhat, rstd)


def _attention(q, k, v, raw: bool) -> tuple:
    """attention(q, k, v) (Tq, N*H, dh); and if `raw`, its probabilities (Tq, T, N*H), kept for the backward
    pass, else None."""
    if not raw:
        return ops.attention(q, k, v), None
    probs = kernels.attention_probs(q, k)
    return kernels.attention_from(probs, v), probs


def _normal_cdf(u, raw: bool) -> tuple:
    """Phi(u) (M, d_ff); and if `raw`, exp(-u^2 / 2), kept for the backward pass, else None."""
    return kernels.normal_cdf_and_gaussian(u) if raw else (ops.normal_cdf(u), None)


def _first_rows(x, n: int, f):
    """x (M, d) -> (n, d), without a copy or a graph node when n == M."""
    return x if n == x.shape[0] else f.head_rows(x, n)


def trunk(params: dict, tokens, n_heads: int, raw: bool = False) -> tuple:
    """Embedding and blocks: the last block's output (N, d), at position 0 only, and if `raw` (the written-out
    backprop's forward pass, see block) every block's activations.

    Only position 0 is read out, so the last block computes position 0 alone (its keys and values still come
    from every position): the same logits as the full computation, for about 20% less work.
    """
    f = _functions(raw)
    n, vocab = tokens.shape[0], params["W_E"].shape[0]
    x, rows = embedding_table(params, f), table_rows(tokens, vocab)  # (T*V, d), (T*N,)
    n_layers, blocks = count_layers(params), []
    for layer in range(n_layers):
        n_out = n if layer == n_layers - 1 else SEQ_LEN * n  # rows this block must produce
        blocks.append(block(x, block_params(params, layer), n_heads, n_out, raw, rows if layer == 0 else None))
        x = blocks[-1]["out"]  # (n_out, d)
        if not raw:
            blocks.pop()  # freed before the next block runs
    return x, blocks


def embedding_table(params: dict, f):
    """Every value the first block's input row can take, W_E[token] + W_pos[t]: (T*V, d), row t*V + token."""
    vocab, d = params["W_E"].shape
    tokens = f.spread(params["W_E"].reshape(1, vocab, d), (SEQ_LEN, vocab, d), 0, keepdims=True)  # (T, V, d)
    positions = f.spread(params["W_pos"].reshape(SEQ_LEN, 1, d), (SEQ_LEN, vocab, d), 1, keepdims=True)  # (T, V, d)
    return (tokens + positions).reshape(SEQ_LEN * vocab, d)


def table_rows(tokens, vocab: int):
    """Each activation row's row of the embedding table, position-major: tokens (N, T) int -> (T*N,), row t*N + n
    holding t*V + tokens[n, t]."""
    offsets = backend.array_module(tokens).arange(SEQ_LEN)[:, None] * vocab  # (T, 1)
    return (tokens.T + offsets).ravel()


def forward(params: dict, tokens, n_heads: int):
    """model.forward's logits, fast: tokens (N, 2) int -> (N, vocab)."""
    x0 = layer_norm(trunk(params, tokens, n_heads)[0], params["ln_final.w"], params["ln_final.b"])  # (N, d)
    return linear(x0, params["W_U"], params["b_U"])  # (N, vocab)


def flat_loss(theta, tokens, labels, cfg: Config):
    """model.flat_loss, fast: the mean cross-entropy as a function of theta (P,), through the primitives' graph."""
    return cross_entropy(forward(traced_views(theta, cfg), tokens, cfg.n_heads), labels)


def traced_views(theta, cfg: Config) -> dict:
    """model.unflatten through ops.param_view: each view's gradient is scattered into one (P,) vector on theta's
    device, instead of a dense zero vector per view."""
    return {name: ops.param_view(theta, start, shape) for name, (start, shape) in layout(cfg).items()}


def _autograd_flat_grad(theta, tokens, labels, cfg: Config):
    """flat_grad by autograd, through the graph of flat_loss: the reference the hand-written one is tested against,
    and what autograd differentiates when a gradient is itself differentiated (Hessian-vector products: the
    primitives' graph keeps every derivative on the arrays' device)."""
    return grad(flat_loss)(theta, tokens, labels, cfg)


def flat_grad(theta, tokens, labels, cfg: Config):
    """d loss / d theta: theta (P,), tokens (N, 2), labels (N,) -> (P,). Differentiable (a Hessian-vector product
    differentiates it); a def, so that worker processes can import it by its name."""
    return _backprop(theta, tokens, labels, cfg)


def _written_out_backprop(theta, tokens, labels, cfg: Config):
    """flat_grad by backpropagation written out: the forward pass keeps its activations, then each primitive's
    backward kernel runs in reverse order, all on raw arrays. The same numbers as autograd's gradient, bit for bit
    in float32 (tested), without building a graph of ~80 nodes per call or calling the kernels through their autograd
    wrappers (docs/speed.md says how much that saves). (Differentiating it runs it once for its value, then traces the
    reference: a Hessian-vector product costs one gradient more.)"""
    params = kernels.views(theta, layout(cfg))
    x, blocks = trunk(params, tokens, cfg.n_heads, raw=True)  # (N, d)
    x0, ln_final = _layer_norm(x, params["ln_final.w"], params["ln_final.b"], raw=True)  # (N, d)
    logits = kernels.linear(x0, params["W_U"], params["b_U"])  # (N, vocab)

    grads = {}
    g = kernels.cross_entropy_backward(logits, labels)  # (N, vocab)
    g, grads["W_U"], grads["b_U"] = kernels.linear_backward(g, x0, params["W_U"])  # (N, d)
    g, grads["ln_final.w"], grads["ln_final.b"] = kernels.layer_norm_backward_from(g, *ln_final, params["ln_final.w"])
    for layer in reversed(range(cfg.n_layers)):
        g, block_grads = _block_backward(g, blocks[layer], block_params(params, layer))
        grads.update({f"blocks.{layer}.{k}": v for k, v in block_grads.items()})  # g: (T*N, d) or (T*V, d)
    g = g.reshape(SEQ_LEN, cfg.p, cfg.d_model)  # the embedding table's gradient, (T, V, d)
    grads["W_E"], grads["W_pos"] = kernels.sum_axis(g, 0), kernels.sum_axis(g, 1)  # (V, d), (T, d)
    return kernels.joined(grads[name] for name in layout(cfg))  # (P,), in theta's order


_backprop = kernel(_written_out_backprop, _autograd_flat_grad)


def _block_backward(g, s: dict, p: dict):
    """The gradients of a block's input x (T*N, d), or of its table (T*V, d), and of its parameters, from its
    output's gradient g (n_out, d) and its activations s."""
    n_out, d = g.shape
    grads = {}
    g_m, grads["W_out"], grads["b_out"] = kernels.linear_backward(g, s["m"], p["W_out"])  # (n_out, d_ff)
    g_u = g_m * s["phi"] + kernels.normal_cdf_backward_from(g_m * s["u"], s["gauss"])  # (n_out, d_ff): Phi + u phi
    g_h2, grads["W_in"], grads["b_in"] = kernels.linear_backward(g_u, s["h2"], p["W_in"])  # (n_out, d)
    g_x1, grads["ln2.w"], grads["ln2.b"] = kernels.layer_norm_backward_from(g_h2, *s["ln2"], p["ln2.w"])  # (n_out, d)
    g_x1 += g  # the residual
    g_a, grads["W_O"], grads["b_O"] = kernels.linear_backward(g_x1, s["a"], p["W_O"])  # (n_out, d)
    g_q, g_k, g_v = kernels.attention_backward_from(g_a.reshape(s["q"].shape), s["q"], s["k"], s["v"], s["probs"])
    g_q = _by_source_row(g_q.reshape(n_out, d), s)  # (n_out, d), or (T*V, d)
    g_hq, grads["W_Q"], grads["b_Q"] = kernels.linear_backward(g_q, s["h"][: len(g_q)], p["W_Q"])
    g_hk, grads["W_K"], grads["b_K"] = kernels.linear_backward(_by_source_row(g_k.reshape(-1, d), s), s["h"], p["W_K"])
    g_h, grads["W_V"], grads["b_V"] = kernels.linear_backward(_by_source_row(g_v.reshape(-1, d), s), s["h"], p["W_V"])
    g_h += g_hk  # in the order autograd sums them, so that float32 results are bit for bit the same
    g_h[: len(g_hq)] += g_hq
    g_x, grads["ln1.w"], grads["ln1.b"] = kernels.layer_norm_backward_from(g_h, *s["ln1"], p["ln1.w"])  # like x
    g_x1 = _by_source_row(g_x1, s)
    g_x[: len(g_x1)] += g_x1  # the residual
    return g_x, grads


def _by_source_row(g, s: dict):
    """The gradient g (n, e) of a block's first n activation rows, as the gradient of the rows they came from:
    themselves, or in the first block, the table's (T*V, e), each row summing the gradients gathered from it."""
    return g if s["rows"] is None else kernels.embed_backward(g, s["rows"][: len(g)], len(s["x"]))
