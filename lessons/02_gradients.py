# %% [markdown]
# # Lesson 2: Gradients by hand, by autograd, by finite differences
#
# **Duration:** 20 min in class; code: about 3 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lesson 1; derivatives and the chain rule; matrix products.
#
# **Reading:** the autograd tutorial (github.com/HIPS/autograd, docs/tutorial.md); Baydin, Pearlmutter, Radul,
# Siskind, "Automatic differentiation in machine learning: a survey" (JMLR 2018), sections 2 and 3.
#
# **Learning goals**
# - derive the gradient of a small function by hand (the chain rule), as micrograd does for one neuron;
# - check it two independent ways: reverse-mode autodiff (HIPS autograd's `grad`) and central finite differences;
# - see why finite differences have a best step size h, and use them to test the gradient of the whole model.

# %% [markdown]
# ## One linear layer and a softmax
#
# Take inputs x (N, d), weights W (d, V), labels y, logits z = x W, probabilities p = softmax(z) and the mean
# cross-entropy L(W) = -(1/N) sum_n log p[n, y_n]. The chain rule gives
#
# dL/dz = (p - onehot(y)) / N,  and since z = x W,  dL/dW = x^T (p - onehot(y)) / N.
#
# tinygrok's readable model (`tinygrok/science/model.py`) defines `softmax` and `cross_entropy` exactly like this.

# %%
import autograd.numpy as anp
import numpy as np
from autograd import grad

from tinygrok.engine import fast
from tinygrok.lab import lessons
from tinygrok.science import model
from tinygrok.science.config import Config
from tinygrok.science.data import stream

rng = stream(0, "lesson2")
x, W = rng.standard_normal((8, 5)), rng.standard_normal((5, 4))
y = rng.integers(0, 4, 8)


def loss(W):
    return model.cross_entropy(x @ W, y)


by_hand = x.T @ (model.softmax(x @ W) - np.eye(4)[y]) / len(y)  # the formula above
by_autograd = grad(loss)(W)
h = 1e-6
by_differences = np.zeros_like(W)
for i in range(W.shape[0]):
    for j in range(W.shape[1]):
        step = np.zeros_like(W)
        step[i, j] = h
        by_differences[i, j] = (loss(W + step) - loss(W - step)) / (2 * h)
print("hand vs autograd:           ", np.max(np.abs(by_hand - by_autograd)))
print("hand vs finite differences: ", np.max(np.abs(by_hand - by_differences)))

# %% [markdown]
# Autograd agrees with the formula to float64 rounding; finite differences only to a far larger error (both are
# printed above), for a reason the figure below shows.
#
# **Exercise 2a.** By hand: the derivative of tanh at u = 0.5. (d tanh(u)/du = 1 - tanh(u)².)

# %%
answer_2a = None  # your answer
lessons.check("2a", answer_2a, grad(anp.tanh)(0.5), rel=1e-12, hint="Use the formula, with np.tanh(0.5).")

# %% [markdown]
# **Exercise 2b.** Write the gradient of the cross-entropy of *one* example with respect to its logits z (V,),
# for label c: a function of (z, c) returning a (V,) array, e.g. `answer_2b = lambda z, c: ...`.

# %%
answer_2b = None  # your answer
z = rng.standard_normal(6)
lessons.check(
    "2b",
    None if answer_2b is None else answer_2b(z, 2),
    grad(lambda v: model.cross_entropy(v[None, :], np.array([2])))(z),
    rel=1e-12,
    hint="softmax(z) minus the one-hot vector of c (N = 1 here).",
)

# %% [markdown]
# ## The best step for finite differences
#
# A central difference (f(w + h v) - f(w - h v)) / 2h makes two errors: truncation, about h² f'''/6, which shrinks
# with h, and rounding, about eps |f| / h (eps = 2.2e-16 in float64), which grows as h shrinks. Their sum is
# smallest near h ~ eps^(1/3) for a function whose derivatives are of order one. Below, the directional derivative
# of tinygrok's whole model (a tiny one, in float64) along a random unit direction v, against the exact value
# g . v, where g is its gradient by backpropagation written out (`fast.flat_grad`, what training uses).

# %%
cfg = Config(p=7, d_model=8, n_heads=2, d_ff=12, dtype="float64")
theta = model.flatten(model.init_params(cfg, stream(1, "init")))
tokens, labels = rng.integers(0, 7, (16, 2)), rng.integers(0, 7, 16)
v = rng.standard_normal(theta.size)
v /= np.linalg.norm(v)
exact = fast.flat_grad(theta, tokens, labels, cfg) @ v
steps = np.logspace(-12, -1, 23)
errors = [
    abs(
        (model.flat_loss(theta + s * v, tokens, labels, cfg) - model.flat_loss(theta - s * v, tokens, labels, cfg))
        / (2 * s)
        - exact
    )
    for s in steps
]
best = steps[int(np.argmin(errors))]
print(
    f"exact g.v = {exact:.12f}; the smallest error, {min(errors):.1e}, at h = {best:.0e} "
    f"(eps^(1/3) = {np.finfo(float).eps ** (1 / 3):.0e})"
)

from matplotlib.figure import Figure

fig = Figure(figsize=(6, 3.5), layout="constrained")
ax = fig.subplots()
ax.loglog(steps, errors, "o-")
ax.axvline(best, color="grey", ls=":", label=f"best h = {best:.0e}")
ax.set_xlabel("finite-difference step h")
ax.set_ylabel("|difference - exact|")
ax.set_title("Rounding (left) against truncation (right)")
ax.legend()
lessons.show(fig, "lesson2_finite_differences")

# %% [markdown]
# Right of the minimum the error should fall as h² (slope 2 on the log-log plot), left of it grow as 1/h (slope
# -1): the V the formulas predict.
#
# **Exercise 2c.** Measure the slope right of the minimum: fit a line to log10(error) against log10(h) for the
# steps from 100 x best to 1e-1 (`np.polyfit` with degree 1). Is it the 2 that truncation predicts?

# %%
right = steps >= 100 * best  # use steps[right] and np.array(errors)[right]
answer_2c = None  # your answer
slope = np.polyfit(np.log10(steps[right]), np.log10(np.array(errors)[right]), 1)[0]  # the measured slope
lessons.check("2c", answer_2c, slope, rel=1e-6, hint="np.polyfit(log10 h, log10 error, 1)[0] is the slope.")
assert abs(slope - 2) < 0.1, slope  # the h² the text predicts

# %% [markdown]
# ## Going further
# - Repeat the finite-difference figure in float32: `dtype="float32"` in `cfg`, and `v` and each step `s` cast to
#   `theta.dtype` (else NumPy computes in float64). Where is the best h now, and why?
# - `tests/test_model.py` checks every partial derivative of a tiny model this way; `tests/test_ops.py`
#   checks each primitive's gradient *of its gradient* with `autograd.test_util.check_grads`.
# - micrograd builds the same machinery for scalars in 100 lines: compare its `backward()` with autograd's tracing.
