# %% [markdown]
# # Lesson 3: The transformer's forward pass, line by line
#
# **Duration:** 25 min in class; code: about 2 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 1 and 2; softmax; array shapes and broadcasting.
#
# **Reading:** Vaswani et al., "Attention is all you need" (2017), section 3; docs/paper.md §2 (this model, line by
# line).
#
# **Learning goals**
# - follow two tokens [a, b] through embeddings, a pre-norm block (attention and MLP) and the read-out, with the
#   shape of every array;
# - see what multi-head attention computes over just two positions;
# - count the parameters, and check that the fast path training uses computes the same logits.
#
# The code is `tinygrok/science/model.py`: open it beside this lesson. Each line there is one formula with its shape.

# %% [markdown]
# ## A trained model to look into
#
# The classroom model of lesson 1 (p = 59, d = 64, 4 heads of 16, MLP width 128, 2 blocks), trained to grokking
# (reused from `runs/lessons/` if lesson 1 made it).

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.engine import fast
from tinygrok.lab import lessons, recipes
from tinygrok.science import config, model
from tinygrok.science.data import all_pairs

run = lessons.run(recipes.spec("train", "classroom"))
cfg = run.config()
params = run.load_checkpoint()[0]  # name -> array, e.g. "blocks.0.W_Q" (d, d)
for name in ("W_E", "W_pos", "blocks.0.W_Q", "blocks.0.W_in", "W_U"):
    print(f"{name:14s} {params[name].shape}")

# %% [markdown]
# ## Embeddings: x = W_E[tokens] + W_pos
#
# Each token picks its row of the embedding table W_E (p, d); each position adds its row of W_pos (2, d).

# %%
tokens = np.array([[3, 5], [10, 20], [58, 1]])  # N = 3 examples, T = 2 positions
x = params["W_E"][tokens] + params["W_pos"]
print("x", x.shape, "(N, T, d)")

# %% [markdown]
# ## Attention
#
# Layer norm first (each row to mean 0, variance 1, then scaled and shifted). Then queries, keys and values
# q = h W_Q + b_Q (and so on), cut into H heads of width d/H. Each head weighs the positions by
# softmax(q kᵀ / sqrt(d/H)) and averages the values; the heads side by side go through W_O.

# %%
p0 = model.block_params(params, 0)
h = model.layer_norm(x, p0["ln1.w"], p0["ln1.b"])
n, t, d = h.shape
dh = d // cfg.n_heads
q = np.transpose(np.reshape(h @ p0["W_Q"] + p0["b_Q"], (n, t, cfg.n_heads, dh)), (0, 2, 1, 3))
k = np.transpose(np.reshape(h @ p0["W_K"] + p0["b_K"], (n, t, cfg.n_heads, dh)), (0, 2, 1, 3))
weights = model.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(dh))
print("h", h.shape, "(N, T, d)  weights", weights.shape, "(N, H, T, T)")
print("how much position 0 attends to position 1, per head, for the first example:", weights[0, :, 0, 1].round(2))
x1 = x + model.attention(h, p0, cfg.n_heads)
print("x after attention", x1.shape)

# %% [markdown]
# **Exercise 3a.** For N = 3 examples, what is the shape of `q`? Give a tuple (N, H, T, dh) in numbers.

# %%
answer_3a = None  # your answer
lessons.check("3a", answer_3a, q.shape, hint="N examples, H = n_heads heads, T = 2 positions, dh = d / H.")

# %% [markdown]
# **Exercise 3b.** Write the whole attention layer as a function of (h, p), with p a block's parameters (like
# `p0`): queries, keys and values cut into heads as above, each head's softmax weights times its values, the heads
# put back side by side (N, T, d), then W_O and b_O. The check compares it with `model.attention` on `h`.

# %%
answer_3b = None  # your answer
h64, p64 = h.astype(np.float64), {name: w.astype(np.float64) for name, w in p0.items()}  # float64: exact to 1e-9
lessons.check(
    "3b",
    None if answer_3b is None else answer_3b(h64, p64),
    model.attention(h64, p64, cfg.n_heads),
    rel=1e-9,
    hint="weights @ v is (N, H, T, dh); transpose it to (N, T, H, dh), reshape to (N, T, d), then @ W_O + b_O.",
)

# %% [markdown]
# ## The MLP, the second block, the read-out
#
# x += GELU(LN2(x) W_in + b_in) W_out + b_out, with the exact GELU u Φ(u). After the last block, the final layer
# norm at position 0 only, and the unembedding W_U (d, p) gives one logit per possible answer.

# %%
x1 = x1 + model.mlp(model.layer_norm(x1, p0["ln2.w"], p0["ln2.b"]), p0)
x2 = model.block(x1, model.block_params(params, 1), cfg.n_heads)
logits = model.layer_norm(x2[:, 0], params["ln_final.w"], params["ln_final.b"]) @ params["W_U"] + params["b_U"]
print("logits", logits.shape, "(N, p); answers:", logits.argmax(1), "expected:", tokens.sum(1) % cfg.p)
print("the same as model.forward:", np.allclose(logits, model.forward(params, tokens, cfg.n_heads), atol=1e-5))

# %% [markdown]
# ## Every pair at once
#
# The model's answer for all p² pairs, as an image: row a, column b. For addition the right answer is constant
# along the anti-diagonals a + b = const, so a model that has grokked draws diagonal stripes.

# %%
pairs, labels = all_pairs(cfg.op, cfg.p)
answers = model.forward(params, pairs, cfg.n_heads).argmax(1)
print(f"correct on {np.mean(answers == labels):.1%} of all {len(pairs)} pairs")
fig = Figure(figsize=(4.5, 4), layout="constrained")
ax = fig.subplots()
image = ax.imshow(answers.reshape(cfg.p, cfg.p), cmap="twilight")
ax.set_xlabel("b")
ax.set_ylabel("a")
ax.set_title(f"the model's answer to {cfg.op}(a, b) mod {cfg.p}")
fig.colorbar(image, ax=ax)
lessons.show(fig, "lesson3_answers")

# %% [markdown]
# **Exercise 3c.** Count the parameters of the paper's model (p = 97, d = 128, 2 blocks, MLP width 256) from the
# shapes: embeddings, per block 4 attention matrices and their biases, 2 layer norms (weight and bias), the MLP's
# two matrices and biases; the final layer norm; the unembedding and its bias.

# %%
answer_3c = None  # your answer
lessons.check(
    "3c",
    answer_3c,
    model.param_count(config.preset("paper")),
    hint="Go through model.param_shapes: W_E (p, d), W_pos (2, d), per block ..., W_U (d, p), b_U (p,).",
)

# %% [markdown]
# ## The fast path computes the same
#
# Training does not run `model.forward` but `fast.forward`: the same model, with activations stored position by
# position as one 2-D array, fused kernels, and the last block computed at position 0 only (the only position
# read out). In float32 the two agree to within rounding.

# %%
difference = np.max(np.abs(fast.forward(params, pairs, cfg.n_heads) - model.forward(params, pairs, cfg.n_heads)))
print(f"largest difference over all pairs: {difference:.1e} (logits of size {np.abs(logits).max():.0f})")

# %% [markdown]
# ## Going further
# - Recompute `q`, `k` and `weights` for all the `pairs` (not just 3 examples) and draw `weights[:, head, 0, 1]`
#   as a p x p image for head = 0, 1, 2, 3: do the heads attend differently for different a and b?
# - Run the image for `op="sub"` or `op="x2_y2"` (train it with `lessons.run(recipes.spec("train",
#   "classroom", op="sub"))`): what pattern does the right answer make?
# - Read `tinygrok/engine/fast.py`: where does it skip position 1 in the last block, and why is that allowed?
