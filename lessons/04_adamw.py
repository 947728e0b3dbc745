# %% [markdown]
# # Lesson 4: AdamW, weight decay and clipping
#
# **Duration:** 35 min in class; code: about 2 min on 2 cores (FAST: about 30 s)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 2 and 3; gradient descent.
#
# **FAST mode** (TINYGROK_FAST=1, the mode the test suite runs) trains shorter: the L2 and no-decay runs 1,000
# steps instead of 4,000, your loop 400 instead of 2,000, the ReLU run 100 instead of 600. Two sentences hold in
# the default mode only: the L2 run's jump (it comes after step 1,000), and your loop's grokking (near step
# 1,600); everything else, and every check, holds in both.
#
# **Reading:** Loshchilov and Hutter, "Decoupled weight decay regularization" (ICLR 2019); Liu, Michaud, Tegmark,
# "Omnigrok: grokking beyond algorithmic data" (ICLR 2023), on weight norm and grokking; docs/paper.md §3 (the
# optimiser).
#
# **Learning goals**
# - read one optimizer step as tinygrok takes it: clip the gradient, then AdamW (`tinygrok/science/optim.py`);
# - write the training loop yourself, with autograd's gradient of `model.py`, and watch it grok;
# - tell decoupled weight decay from an L2 penalty in the loss, and see why they differ under Adam;
# - see that grokking needs regularisation: without decay (or an L2 penalty) the model memorizes and stays there.

# %% [markdown]
# ## One step
#
# Clipping: g <- g min(1, c / (||g|| + 1e-6)), so no step's gradient is longer than c (= 1 here).
#
# AdamW (Loshchilov & Hutter), at step t with learning rate η and decay λ:
#
# - m <- β1 m + (1 - β1) g, v <- β2 v + (1 - β2) g² (running means of the gradient and of its square)
# - m̂ = m / (1 - β1^t), v̂ = v / (1 - β2^t) (m and v start at zero: the early means are corrected up)
# - θ <- θ (1 - ηλ) (decay: shrink every weight, whatever its gradient)
# - θ <- θ - η m̂ / (sqrt(v̂) + ε) (each coordinate moves about η, whatever the scale of its gradient)

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.lab import lessons, recipes
from tinygrok.science.optim import AdamWState, adamw_step, clip_by_global_norm

theta = np.array([1.0, -2.0])
g = np.array([0.5, -0.1])
hp = dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1.0)
new_theta, state = adamw_step(theta, g, AdamWState.zeros_like(theta), **hp)
print("theta after one step:", new_theta, " m:", state.m, " v:", state.v)

# %% [markdown]
# **Exercise 4a.** Take that first step by hand. At t = 1 the bias corrections make m̂ = g and v̂ = g², so the
# Adam part is η g / (|g| + ε): almost η times the sign of g. Write θ after the step.

# %%
answer_4a = None  # your answer
lessons.check("4a", answer_4a, new_theta, rel=1e-6, hint="First the decay θ (1 - ηλ), then minus η sign(g).")

# %% [markdown]
# **Exercise 4b.** Clip g = [3, 4] to norm 1. (tinygrok divides by ||g|| + 1e-6, as PyTorch does.)

# %%
answer_4b = None  # your answer
lessons.check(
    "4b",
    answer_4b,
    clip_by_global_norm(np.array([3.0, 4.0]), 1.0)[0],
    rel=1e-12,
    hint="||[3, 4]|| = 5; multiply by 1 / (5 + 1e-6).",
)

# %% [markdown]
# ## Decoupled decay, an L2 penalty, or nothing
#
# An L2 penalty adds (λ'/2) ||θ||² to the loss, so λ'θ to the gradient, *before* Adam divides each coordinate by
# sqrt(v̂): weights with large gradients are then barely decayed. (tinygrok's `l2` hook adds λ'θ to the gradient
# after clipping, so the penalty itself is never clipped.) AdamW decays outside Adam, at the same rate for
# every weight. See it on the first step of exercise 4a, where Adam moves each coordinate by η sign(gradient):

# %%
no_decay = {**hp, "weight_decay": 0.0}
plain_theta = adamw_step(theta, g, AdamWState.zeros_like(theta), **no_decay)[0]
l2_theta = adamw_step(theta, g + 1.0 * theta, AdamWState.zeros_like(theta), **no_decay)[0]  # λ' = 1
print("one step from theta = [1, -2], g = [0.5, -0.1]")
print("  no decay:     ", plain_theta)
print("  L2, λ' = 1:   ", l2_theta)
print("  AdamW, λ = 1: ", new_theta)
assert np.allclose(l2_theta, plain_theta)  # the penalty changed no sign, so Adam divided it away

# %% [markdown]
# The L2 step is the plain one: g + λ'θ = [1.5, -2.1] has g's signs, and Adam's division by its size leaves only
# the signs. AdamW shrinks both weights by 1 - ηλ = 0.9 before its Adam step. Later in training the same division
# makes an L2 penalty act on each weight as λ'θ / sqrt(v̂), weakest where the gradients are largest. Three runs of
# the classroom model: AdamW with λ = 1 (the paper's), Adam with an L2 penalty λ' = 0.001 (tinygrok's `l2` hook,
# with λ = 0; one value that groks here within the 4,000 steps, a starting point rather than a tuned one), and Adam
# with no decay at all.

# %%
steps = lessons.pick(4000, 1000)
variants = {
    "AdamW, decay 1": dict(),  # lesson 1's run: it stops at grokking anyway
    "Adam + L2 0.001": dict(weight_decay=0.0, hook="l2:lam=0.001", max_steps=steps),
    "no decay": dict(weight_decay=0.0, max_steps=steps),
}
runs = {name: lessons.run(recipes.spec("train", "classroom", **settings)) for name, settings in variants.items()}
for name, run in runs.items():
    result = run.summary()
    print(
        f"{name:16s} memorized at {result['memorization_step']}, test acc >= 90% at {result['grok_step_90']}, "
        f"final test acc {result['final_test_acc']:.2f}"
    )

fig = Figure(figsize=(7, 4), layout="constrained")
ax = fig.subplots()
for name, run in runs.items():
    rows = run.metrics()
    ax.plot([r["step"] for r in rows], [r["test_acc"] for r in rows], label=name)
ax.set_xlabel("step")
ax.set_ylabel("test accuracy")
ax.set_title("Grokking needs regularisation: decay, or L2")
ax.legend()
lessons.show(fig, "lesson4_decay")

# %% [markdown]
# All three memorize the training set within a few hundred steps (the memorization steps above). With AdamW's
# decay, test accuracy jumps; with the L2 penalty it jumps too, later; with no decay it stays near chance for as
# long as we train. (FAST mode stops the other two at 1,000 steps, before the L2 run's jump.) Try λ' = 0.01 and
# 0.0001: does the L2 run still grok within the 4,000 steps, and sooner or later?
#
# **Exercise 4c.** Which of the three reached 90% test accuracy first? Give its name as a string.

# %%
answer_4c = None  # your answer
grokked = {name: run.summary()["grok_step_90"] for name, run in runs.items() if run.summary()["grok_step_90"]}
lessons.check("4c", answer_4c, min(grokked, key=grokked.get), hint="Read the printed grok steps above.")
said = ["AdamW, decay 1"] if lessons.fast() else ["AdamW, decay 1", "Adam + L2 0.001"]  # the text above, in order
assert sorted(grokked, key=grokked.get) == said, grokked

# %% [markdown]
# ## Write the training loop
#
# Nothing more happens in a training step than what you have read: draw a batch, take the gradient of the loss,
# clip it, take an AdamW step. You write the step; the loop below draws the batches and runs it.
#
# **Exercise 4d.** Write the gradient as a function of (theta, x, y): the gradient of `model.flat_loss(theta, x,
# y, cfg)` (the mean cross-entropy of the model with the flat parameters theta on the batch) with respect to
# theta, by autograd's `grad`.

# %%
from autograd import grad  # noqa: F401 - for your answer to 4d

from tinygrok.engine import engines, parallel
from tinygrok.run.runs import Run
from tinygrok.science import config, model
from tinygrok.science.data import make_dataset, sample_batch, stream

cfg = config.preset("classroom")
data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
theta0 = model.flatten(model.init_params(cfg, stream(cfg.seed, "init")))  # (P,): the flat parameters
x, y = sample_batch(data, cfg.batch_size, stream(cfg.seed, "a batch"))
hyper = cfg.adamw()  # {"lr": ..., "beta1": ..., "beta2": ..., "eps": ..., "weight_decay": ...}, as adamw_step takes

answer_4d = None  # your answer
lessons.check(
    "4d",
    None if answer_4d is None else answer_4d(theta0, x, y),
    engines.readable_grad(theta0, x, y, cfg),
    rel=1e-5,
    hint="grad(f) is the function theta -> the gradient of f at theta; f takes x, y, cfg too.",
)

# %% [markdown]
# **Exercise 4e.** Write one training step as a function of (theta, state, x, y) that returns the new (theta,
# state): your gradient from 4d, clipped to norm `cfg.clip_norm` (`clip_by_global_norm` returns the clipped
# gradient and the norm before clipping), then `adamw_step` with the settings in `hyper`.

# %%
answer_4e = None  # your answer


def two_steps(step) -> np.ndarray:
    """theta after two steps on the same batch, from the initial parameters: the state must carry over."""
    theta, state = step(theta0, AdamWState.zeros_like(theta0), x, y)
    return step(theta, state, x, y)[0]


lessons.check(
    "4e",
    None if answer_4e is None else two_steps(answer_4e),
    two_steps(lessons.training_step(cfg)),
    rel=1e-5,
    hint="adamw_step(theta, g, state, **hyper) takes the clipped g, clip_by_global_norm(...)[0], and "
    "returns (theta, state).",
)


# %%
def train_loop(step, steps: int) -> list[tuple[int, float]]:
    """Train the classroom model from its initial parameters with `step`; test accuracy every 100 steps."""
    theta, state, batches, curve = theta0, AdamWState.zeros_like(theta0), stream(cfg.seed, "batches"), []
    with parallel.recorded_arithmetic():  # BLAS on one thread, as training runs
        for number in range(1, steps + 1):
            x, y = sample_batch(data, cfg.batch_size, batches)  # a batch, drawn with replacement
            theta, state = step(theta, state, x, y)
            if number % 100 == 0:
                logits = model.forward(model.unflatten(theta, cfg), data.test_x, cfg.n_heads)  # (N_test, p)
                curve.append((number, float(np.mean(logits.argmax(1) == data.test_y))))
    return curve


if answer_4e is None:
    print("write exercises 4d and 4e first: this loop trains with your step")
else:
    curve = train_loop(answer_4e, lessons.pick(2000, 400))
    print("test accuracy every 100 steps:", " ".join(f"{acc:.2f}" for _, acc in curve))
    if not lessons.fast():  # FAST mode stops at 400 steps: memorized, not yet grokked (that comes near 1,600)
        assert curve[-1][1] >= 0.9, "the loop has not grokked: test accuracy is below 90% at its end"
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(*zip(*curve))
    ax.set(xlabel="step", ylabel="test accuracy", title="Your loop: model.py and optim.py")
    lessons.show(fig, "lesson4_your_loop")

# %% [markdown]
# That is the model that trains in tinygrok too. `tinygrok train` runs these same lines, or (by default) a faster
# engine written for speed, but only once a check at the start of the run has found it equal to `model.py` and
# `optim.py` at the run's parameters. Change the model, and tinygrok trains on your code and says so. Here GELU
# becomes a ReLU, in this process's memory, so the run stays on this one core (an edit of `model.py` itself
# reaches every core).
#
# **Exercise 4f.** Before you run the cell after the next: which engine will train the ReLU model, "fast" or
# "readable"? Give its name as a string, then run it and see.

# %%
answer_4f = None  # your answer

# %%
gelu = model.gelu
model.gelu = lambda u: np.maximum(u, 0)  # the change: ReLU in place of GELU
try:
    relu_spec = recipes.spec("train", "classroom", max_steps=lessons.pick(600, 100))
    recipes.execute(relu_spec, path=lessons.runs_dir() / "lesson4_relu", existing="restart", cores=1)
finally:
    model.gelu = gelu  # the model as it was
relu_run = Run(lessons.runs_dir() / "lesson4_relu")
print("the engine that trained it:", relu_run.environment()["engine"], "-", relu_run.environment()["engine_check"])
lessons.check(
    "4f",
    answer_4f,
    relu_run.environment()["engine"],
    hint="The fast engine trains only once the check finds it equal to model.py: does fast.py compute a ReLU?",
)

# %% [markdown]
# ## Going further
# - Change the L2 strength: `hook="l2:lam=0.01"` and `"l2:lam=0.0001"`. What happens to grokking?
# - Turn clipping off (`clip_norm=0.0`) in the AdamW run. Does anything change?
# - Your step without clipping, or with plain Adam (weight_decay=0 in `hyper`): does the loop still grok?
# - Weight decay shrinks the weights: plot `np.linalg.norm` of the parameters in `run.load_checkpoint()` for the
#   runs with and without decay.
