# %% [markdown]
# # Lesson 8: Interventions: take the orthogonal gradient away, kick along the curvature
#
# **Duration:** 30 min in class; code: about 2.5 min on 2 cores, classroom model (FAST: under 2 minutes)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 5, 6 and 7.
#
# **FAST mode** (TINYGROK_FAST=1, the mode the test suite runs) caps every run at 2,000 steps instead of 6,000,
# with no steps past grokking. Every sentence and check holds in both modes.
#
# **Reading:** docs/paper.md §8 (the interventions, and the reference code's batch protocols); docs/differences.md.
#
# **Learning goals**
# - read a causal intervention as a few lines around the optimizer step (`tinygrok/science/interventions.py`);
# - remove the gradient outside the execution subspace and see grokking fail, then see a random subspace fail
#   the same way: what the control says about the claim;
# - compute a curvature kick's direction yourself, from commutator samples and B;
# - see that pushing the weights along the curvature directions does not bring grokking sooner: curvature is a
#   warning sign, not the lever.

# %% [markdown]
# ## The execution subspace, and the gradient's two parts
#
# The attention weights move along a few directions while the model trains (lesson 5). Take the top two principal
# directions of each attention matrix's trajectory, up to grokking, in a first *baseline* run: 2 x 4 matrices x 2
# layers = 16 directions, the columns of an orthonormal B (P x 16). Any gradient splits in two:
#
# g = g_par + g_perp, with g_par = B Bᵀ g (inside the subspace) and g_perp = g - B Bᵀ g (outside it).
#
# The *project* intervention (docs/paper.md §8.2) replaces the clipped gradient, on every step from step 500, by
#
# g <- g - s g_perp = g_par + (1 - s) g_perp,
#
# and lets AdamW take it from there. At s = 0 nothing changes. At s = 1 no gradient is left outside the 16
# directions: every parameter outside the attention matrices' weights (embeddings, MLPs, layer norms, the
# attention biases, the unembedding), where B has no component, gets none, and once Adam's momentum has died out
# only shrinks by weight decay; the attention matrices get B Bᵀ g, which AdamW then divides coordinate by
# coordinate by its running gradient size, so even their steps leave the subspace.
#
# **Exercise 8a.** In R³ take B with columns e1 and e2 (the x-y plane) and g = (1, 2, 3). Write g after the
# projection with s = 0.5, as a list of three numbers.

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.lab import lessons, recipes
from tinygrok.science import interventions

answer_8a = None  # your answer
B = np.eye(3)[:, :2]
g = np.array([1.0, 2.0, 3.0])
lessons.check(
    "8a",
    answer_8a,
    g - 0.5 * interventions.orthogonal_part(g, B),
    hint="Keep the x and y parts; halve the part outside the plane.",
)

# %% [markdown]
# ## Phase 1: the baseline, and its basis
#
# A run trained to grokking (detection: test accuracy >= 98% three evaluations in a row), then its trajectory PCA:
# the execution basis B is saved in the run as basis.npy. Phase 2 starts again from the same seed with a hook.
#
# Phase 2 starts from the baseline's initial weights and train/test split; which batches it trains on decides what B
# is to it (`batches=`, docs/differences.md):
# - *shifted* (the default, the reference code's): the baseline's batches, moved on by the two batches each
#   curvature probe sample takes, so B is the PCA of a closely related path.
# - *own*: exactly the baseline's batches, so B is the PCA of the run's own future path.
# - *sibling*: another random stream's batches, so B is the PCA of an independent run's path.
#
# The runs below probe no curvature (`probe_every=0`), so on the default shifted batches nothing is skipped: here
# they are the own batches. On the paper's model that protocol gave the largest delays (docs/paper.md §8.1: add at
# s = 0.75, +5,500 / +1,300 / +2,200 steps for seeds 42 / 137 / 2024, against +700 / +1,100 / +600 shifted).

# %%
CAP = lessons.pick(6000, 2000)  # steps: a run not grokked by then did not finish (DNF)
settings = dict(max_steps=CAP, probe_every=0, extra_steps=lessons.pick(500, 0))  # no curvature probes needed here


def intervention(arm: str, dose: float, basis: str = "pca"):
    return lessons.run(recipes.intervention(arm, dose, basis, preset="classroom", **settings))


def outcome(run) -> str:
    step = run.summary()["grok_step"]
    return f"grokking detected at step {step}" if step else f"not detected within {CAP} steps (DNF)"


baseline = lessons.run(recipes.baseline(recipes.intervention("project", 0.0, preset="classroom", **settings)))
print(f"baseline: grokked at step {baseline.summary()['grok_step']}; execution basis {baseline.basis().shape}")

# %% [markdown]
# ## Phase 2: the dose, and its control
#
# Three runs from the same seed: s = 0 (the gradient as it is), s = 1 (no gradient outside the subspace), and the
# control the claim needs: s = 1 with a *random* 16-dimensional subspace in place of B. If grokking needed B's
# directions in particular, the random subspace would fail where B does not, or the other way round.

# %%
runs = {
    "s = 0": intervention("project", 0.0),
    "s = 1": intervention("project", 1.0),
    "s = 1, random basis": intervention("project", 1.0, "random"),
}
for label, run in runs.items():
    print(f"{label}: {outcome(run)}; training accuracy at the end {run.summary()['final_train_acc']:.2f}")

# %% [markdown]
# **Exercise 8b.** In which of the three runs was grokking detected within the cap (lesson 1's detection step,
# `grok_step`)? Give their labels as a set, e.g. `{"s = 1"}`.

# %%
answer_8b = None  # your answer
lessons.check(
    "8b",
    answer_8b,
    {label for label, run in runs.items() if run.summary()["grok_step"] is not None},
    hint="Read each run's summary()['grok_step']: None means grokking was never detected.",
)

# %% [markdown]
# Measured here (the assertion below holds the text to the runs): at s = 1 the model does not only fail to grok, it
# loses the training set too, with B and with the random subspace alike: training accuracy falls from its memorized
# ~98% to near chance within a few hundred steps of the projection's start (the figure below). With the gradient of
# everything outside 16 directions taken away, weight decay shrinks the embeddings, the MLPs and the rest of the
# attention weights unopposed. So "s = 1 never groks" says that the model needs its gradient outside *any* small
# subspace; it says nothing about B's directions.

# %%
assert all(runs[label].summary()["grok_step"] is None for label in ("s = 1", "s = 1, random basis"))
assert all(runs[label].summary()["final_train_acc"] < 0.5 for label in ("s = 1", "s = 1, random basis")), runs

# %% [markdown]
# ## On the paper's model, seed by seed
#
# The same projection on the paper's model (add mod 97, the reference code's batches), from
# `tinygrok reproduce --scale machine`'s records (docs/records): each seed's grok step (detection), and in brackets
# its delay over its own s = 0 run. Seeds 42, 137 and 2024 are the paper's; 1, 2 and 3 are the reproduction's own, for
# `project` alone, to see how far the seeds spread. `project_attention` is a control the paper lacks: the projection
# inside the attention matrices only, every other parameter keeping its whole gradient, with B or with a random
# subspace of the same size inside the same matrices. The paper's other arms at their primary strengths (docs/paper.md
# §8.2): `kick` (once, at step 500, the weights pushed along the curvature outside B, alpha 10), `noise` (every 50
# steps from step 500, random noise of norm 0.1 outside B) and `penalty` (the projection at s = 0.5, on every tenth
# step from step 500).
#
# | seed | none | kick 10 | noise 0.1 | penalty 0.5 | project 0.25 | project 0.25 (random) | project 0.5 | project 0.5 (random) | project 0.75 | project 0.75 (random) | project 1 | project 1 (random) | project_attention 0.75 | project_attention 0.75 (random) | project_attention 1 | project_attention 1 (random) | random_kick 100 | sustained_kick 100 |
# |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
# | 1 | 3100 |  |  |  | 3200 (+100) |  | 3300 (+200) |  | 3700 (+600) |  | DNF |  |  |  |  |  |  |  |
# | 2 | 3000 |  |  |  | 3100 (+100) |  | 3300 (+300) |  | 3800 (+800) |  | DNF |  |  |  |  |  |  |  |
# | 3 | 3400 |  |  |  | 3500 (+100) |  | 3700 (+300) |  | 4500 (+1100) |  | DNF |  |  |  |  |  |  |  |
# | 42 | 3300 | 3600 (+300) | 3300 (+0) | 3400 (+100) | 3400 (+100) | 3400 (+100) | 3500 (+200) | 3300 (+0) | 3700 (+400) | 3300 (+0) | DNF | DNF | 3700 (+400) | 3300 (+0) | 5200 (+1900) | 2400 (-900) | 3300 (+0) | 3200 (-100) |
# | 137 | 3200 | 3200 (+0) | 3200 (+0) | 3300 (+100) | 3300 (+100) | 3300 (+100) | 3400 (+200) | 3200 (+0) | 3900 (+700) | 3200 (+0) | DNF | DNF | 3800 (+600) | 3200 (+0) | 5500 (+2300) | 2300 (-900) | 3200 (+0) | 3300 (+100) |
# | 2024 | 2900 | 2900 (+0) | 2900 (+0) | 3000 (+100) | 3000 (+100) | 2900 (+0) | 3100 (+200) | 2900 (+0) | 3500 (+600) | 2900 (+0) | DNF | DNF | 3400 (+500) | 2900 (+0) | 4600 (+1700) | 2200 (-700) | 2900 (+0) | 3000 (+100) |
#
# What the table shows: at s = 1 (`project`) no seed groks within 15,000 steps, but then every parameter outside
# the attention matrices (embeddings, MLPs, layer norms) gets no gradient at all, and a random basis fails there
# too. Held to B inside the attention matrices only (`project_attention` at s = 1), every seed groks, later than
# without the projection; held to a random subspace of the same size inside the same matrices, every seed groks
# sooner. So what stops grokking at s = 1 is taking the gradient from everything else; what B itself does is slow
# it. (The random subspace spreads its 16 directions over all eight matrices, where B has two in each.)
#
# With every parameter projected (`project`), a random subspace of B's size delays grokking by at most 100 steps
# at s up to 0.75, where B delays it by 100 to 1,100: a random 16-dimensional subspace holds almost none of the
# gradient, so its projection scales nearly the whole gradient by 1 - s, which Adam's division by the gradient's
# size undoes; B's changes the gradient's direction. The kick, the noise and the penalty at the paper's strengths
# move the grok step by 0 to 300 steps (the paper: no effect).

# %% [markdown]
# ## Kicking along the curvature
#
# If curvature (the commutator defect, lesson 6) rises before grokking, would pushing the weights along the curvature
# directions make grokking come sooner? The *sustained kick* (docs/paper.md §8.2): every 50 steps from step 500, after
# the optimizer step, take the commutator defect vector δ of the sample whose D is the median of 5, keep its part
# outside the subspace, u = (I - B Bᵀ) δ / ||(I - B Bᵀ) δ||, and move θ <- θ + α ||η g_A|| u, ||η g_A|| from one more
# sample (α = 100: a hundred probe steps). Its control, the *random kick*, moves θ every 50 steps in a random
# direction outside the subspace by α x 1.5e-3: the reference code's fixed guess at a typical ||η g_A||, made for the
# paper's model. Are the two as long here? η is the probe's step, 1e-3 (lesson 6), and g_A a batch gradient, as large
# as a training step's, whose norm (before clipping) every evaluation row records.
#
# **Exercise 8c.** The kick's direction, by hand. `samples` below holds 5 commutator samples at the baseline's last
# parameters, each a dict with its "defect" D and its "delta" δ (P,). Write a function of (samples, basis) that
# returns u: the δ of the sample whose D is the median, its part outside the subspace kept, scaled to length 1.
# (Never build I - B Bᵀ itself: at P = 75,000 it would take 45 GB. Compute Bᵀ δ first, as in exercise 8a.)

# %%
from tinygrok.engine.parallel import Derivatives
from tinygrok.science import model
from tinygrok.science.commutator import defect_samples
from tinygrok.science.data import make_dataset, stream

base = baseline.config()
last = model.flatten(baseline.load_checkpoint()[0])  # (P,): the baseline's last parameters
data = make_dataset(base.op, base.p, base.train_frac, base.seed)
samples = defect_samples(last, data, base, stream(0, "lesson8"), 5, Derivatives(base))
median_delta = sorted(samples, key=lambda s: s["defect"])[len(samples) // 2]["delta"]  # (P,)
exec_basis = baseline.basis()  # B (P, 16)
answer_8c = None  # your answer
lessons.check(
    "8c",
    None if answer_8c is None else answer_8c(samples, exec_basis),
    interventions.direction(interventions.orthogonal_part(median_delta, exec_basis)),
    rel=1e-6,
    hint="Sort the samples by their defect and take the middle one's delta; take away B (Bᵀ δ) as in 8a; divide "
    "by the norm.",
)
inside = np.linalg.norm(exec_basis.T @ median_delta) / np.linalg.norm(median_delta)
print(f"the share of the median δ's norm inside B: {inside:.4f}: u is almost δ's own direction")
assert inside < 0.1, inside  # what the line above says

# %%
from tinygrok.science.commutator import ETA

norms = [r["grad_norm"] for r in runs["s = 0"].metrics() if r.get("grad_norm") and 500 <= r["step"] <= 1500]
curvature_kick = 100 * ETA * float(np.median(norms))  # α η ||g_A||, its median over steps 500 to 1,500
random_kick = 100 * interventions.RANDOM_KICK_STEP  # α 1.5e-3
print(f"at alpha 100 a curvature kick moves θ by about {curvature_kick:.2f}, a random one by {random_kick:.2f}")
assert curvature_kick > 3 * random_kick, (curvature_kick, random_kick)

# %% [markdown]
# On this small model the curvature kicks are several times longer than the random ones (on the paper's model, whose
# gradients are smaller, about as long: the reference's 1.5e-3 fits it). So the two runs below differ in the kicks'
# size as well as in their direction, and in their batches too: on the reference's shifted batches each curvature
# kick's six commutator samples move the training stream on by twelve batches, as the reference's probes do, while
# a random kick takes none.

# %%
runs["curvature kicks, alpha 100"] = intervention("sustained_kick", 100.0)
runs["random kicks, alpha 100"] = intervention("random_kick", 100.0)
fig = Figure(figsize=(11, 4), layout="constrained")
test_axis, train_axis = fig.subplots(1, 2, sharey=True)
for label, run in runs.items():
    rows = run.metrics()
    for axis, key in ((test_axis, "test_acc"), (train_axis, "train_acc")):
        axis.plot([r["step"] for r in rows], [r[key] for r in rows], label=label)
for axis, title in ((test_axis, "test accuracy"), (train_axis, "training accuracy")):
    axis.axvline(500, color="grey", ls=":", label="interventions start")
    axis.set(xlabel="step", title=title)
test_axis.legend(fontsize=8)
lessons.show(fig, "lesson8_interventions")
for label in ("curvature kicks, alpha 100", "random kicks, alpha 100"):
    print(f"{label}: {outcome(runs[label])}")
kicked = {kind: runs[f"{kind} kicks, alpha 100"].summary() for kind in ("curvature", "random")}
assert kicked["random"]["grok_step"] and not kicked["curvature"]["grok_step"], kicked  # what the text below says
assert kicked["curvature"]["grok_step_90"] == runs["s = 0"].summary()["grok_step_90"], kicked

# %% [markdown]
# **Exercise 8d.** Give the detection steps (`grok_step`) of the two kicked runs as a tuple (curvature kicks,
# random kicks), with None for a run not detected within the cap.

# %%
answer_8d = None  # your answer
lessons.check(
    "8d",
    answer_8d,
    tuple(runs[f"{kind} kicks, alpha 100"].summary()["grok_step"] for kind in ("curvature", "random")),
    hint="Read each run's summary()['grok_step'].",
)

# %% [markdown]
# ## Write an intervention
#
# Every arm above is a small class (`tinygrok/science/interventions.py`): a `Hook` whose `before_update(theta,
# grad, step, ctx)` may change the clipped gradient before AdamW sees it (and `after_update(theta, step, ctx)`
# the parameters after), where `step` counts the updates made so far and `ctx.basis` is B.
#
# **Exercise 8e.** Write the opposite of `project` at s = 1: a `Hook` subclass that removes the part of the
# gradient *inside* the subspace, g <- g - B Bᵀ g, on every update from update 500 on, and leaves the gradient
# alone before. `before_update` returns the pair (theta, grad). Set `answer_8e` to the class. The check calls it
# with the R³ plane of exercise 8a as B.

# %%
answer_8e = None  # your answer
context = interventions.Context(rng=np.random.default_rng(0), basis=B)
lessons.check(
    "8e",
    None
    if answer_8e is None
    else np.concatenate([answer_8e().before_update(None, g, step, context)[1] for step in (99, 499, 999)]),
    np.concatenate([g, interventions.orthogonal_part(g, B), interventions.orthogonal_part(g, B)]),
    rel=1e-12,
    hint="class Outside(interventions.Hook): def before_update(self, theta, grad, step, ctx): ...; update number "
    "step + 1 is the one being made.",
)

# %% [markdown]
# In the paper's model neither kind of kick moved grokking: all 27 runs (24 kicked, 3 baselines) grokked at about the
# baseline's step, ~3,200 (docs/paper.md §8.3). On this small model the random kicks leave grokking where it was. The
# curvature kicks do not keep the model from the solution either (its test accuracy passes 90% at the baseline's step,
# `summary()["grok_step_90"]`), but knock it off again and again (the test accuracy reaches 1 and falls back), so it
# is not detected as grokked (98% three evaluations in a row) within the cap. Whether their direction or their size
# does that (or their batches), these two runs cannot tell: the curvature kicks are the longer ones. Either way,
# moving along the curvature does not bring grokking sooner: the curvature is where the landscape bends, a warning
# sign, not a shortcut.
#
# ## Going further
# - Random kicks as long as the curvature kicks: `intervention("random_kick", curvature_kick /
#   interventions.RANDOM_KICK_STEP)`. Does the model still keep grokking?
# - The dose-response: s = 0.25, 0.5, 0.75 (`intervention("project", 0.5)`). The paper: on add, +34, +300 and
#   +800 steps, and no grokking at s = 1 (docs/paper.md §8.3). `tinygrok sweep dose-response --ops add` runs the
#   paper's grid (`--batches own` for the other protocol), and `tinygrok report` draws it.
# - The control at smaller doses: `intervention("project", 0.75, "random")` beside `intervention("project",
#   0.75)`. Does B delay grokking more than a random subspace does? (The table above makes that comparison with
#   `project_attention`, inside the attention matrices.)
# - Other seeds: `recipes.intervention("sustained_kick", 100.0, preset="classroom", seed=137, **settings)`,
#   and the same for random kicks and s = 0, and smaller kicks (alpha = 20). Do curvature kicks hold grokking
#   back for every seed, and at every size? On the paper's model: `tinygrok sweep kicks` (27 runs; hours on a CPU).
# - Noise outside the subspace (`"noise"`, eps = 0.1) and a single large kick at step 500 (`"kick"`, alpha = 10):
#   the paper's other arms.
