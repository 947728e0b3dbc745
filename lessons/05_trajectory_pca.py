# %% [markdown]
# # Lesson 5: The trajectory PCA, the random-walk null, and weight decay
#
# **Duration:** 30 min in class; code: about 15 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 1 and 4; the singular value decomposition.
#
# **Reading:** docs/paper.md §5 (the trajectory PCA and its null); Liu, Michaud, Tegmark, "Omnigrok" (ICLR 2023), on
# how weight decay moves the weights.
#
# **Learning goals**
# - turn a run's saved attention weights into a trajectory and find its principal components;
# - read the PC1 share: the fraction of the motion along a single direction;
# - build random walks of the same step sizes, compare, and see what "PC1 ~ 70%" can mean;
# - build the null the random walks lack, weight decay's, and test the claim against a run that never groks;
# - build the execution subspace B from the principal directions (lessons 6 and 8 use it).

# %% [markdown]
# ## From snapshots to a PCA
#
# Every 100 steps a run saves its attention matrices W_Q, W_K, W_V, W_O of every block. For one matrix, stack the
# snapshots as rows X_t = vec(W_t - W_0), centre each column, and take the singular values σ_i of X. The share of
# the variance along the i-th principal direction is σ_i² / Σ_j σ_j²; PC1 is the first (docs/paper.md §5.1). The
# paper's range is printed first below (`tinygrok/science/paper.py` holds it).

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.lab import lessons, recipes
from tinygrok.run import geometry, plots
from tinygrok.science import paper
from tinygrok.science.data import stream
from tinygrok.science.pca import decay_walk, decay_walk_null, pc1_share, random_walk_null

run = lessons.run(recipes.spec("train", "classroom"))
pca, basis = geometry.analyse_pca(run)  # writes pca.json and basis.npy into the run
print(f"the paper: PC1 {paper.PC1.quoted}. This run: {pca['snapshots']} snapshots, up to step {pca['last_step']}")
for name, share in pca["pc1"].items():
    print(f"{name:14s} PC1 {share:.1%}, the next four: {[round(r, 3) for r in pca['top_ratios'][name][1:]]}")
lessons.show(plots.explained_variance(run), "lesson5_explained_variance")

# %% [markdown]
# Read the table: some matrices spend most of their motion along one direction, others split it between two.
# `plots.trajectory` draws each last-block matrix on its own first two principal directions, coloured by step.
# The paths are smooth arcs, like a horseshoe: that is what PCA makes of almost any path that drifts steadily,
# random walks included. So the shape alone proves little; the next section asks how far a share is above chance.

# %%
lessons.show(plots.trajectory(run), "lesson5_trajectory")

# %% [markdown]
# **Exercise 5a.** What is the PC1 share of a trajectory that moves along a straight line at constant speed?
# (Predict it, then the check computes it.)

# %%
answer_5a = None  # your answer
line = np.outer(np.arange(20), stream(0, "line").standard_normal(500))  # 20 snapshots on one line
lessons.check("5a", answer_5a, pc1_share(line), hint="All the motion is along one direction.")

# %% [markdown]
# **Exercise 5b.** Write the PC1 share yourself, as a function of a trajectory traj (S, D): subtract the first
# snapshot, centre each column, take the singular values (`np.linalg.svd(..., compute_uv=False)`), and return
# σ_1² / Σ σ_i². The check gives it the first ten snapshots of `blocks.1.W_Q`.

# %%
answer_5b = None  # your answer
first_ten = geometry.run_trajectories(run, run.config(), n=10)["blocks.1.W_Q"]  # (10, D)
lessons.check(
    "5b",
    None if answer_5b is None else answer_5b(first_ten),
    pc1_share(first_ten),
    rel=1e-9,
    hint="X = traj - traj[0]; X - X.mean(axis=0); then the squared singular values, the first over their sum.",
)

# %% [markdown]
# ## Is 70% a lot? The random-walk null
#
# A random walk in many dimensions is not isotropic in its PCA: a long one puts about 6/π² of its variance on PC1 (a
# classic result on Brownian motion; exercise 5c builds such walks and measures it). So the fair comparison keeps each
# step's length and randomises its direction: 10 such walks per matrix, and the z-score (PC1 - mean of the walks) /
# their spread.

# %%
null = {
    name: random_walk_null(traj, stream(0, "lesson5")) for name, traj in geometry.trajectories_to_detection(run).items()
}
for name, result in null.items():
    print(
        f"{name:14s} PC1 {result['pc1']:.1%}   random walks {result['null_mean']:.1%} ± {result['null_std']:.1%}"
        f"   z = {result['z']:.1f}"
    )

fig = Figure(figsize=(8, 3.5), layout="constrained")
ax = fig.subplots()
names = list(null)
ax.bar(np.arange(len(names)) - 0.2, [100 * null[n]["pc1"] for n in names], 0.4, label="the run")
ax.bar(
    np.arange(len(names)) + 0.2,
    [100 * null[n]["null_mean"] for n in names],
    0.4,
    yerr=[100 * null[n]["null_std"] for n in names],
    label="random walks, same step sizes",
)
ax.set_xticks(range(len(names)), [n.replace("blocks.", "") for n in names])
ax.set_ylabel("PC1 share (%)")
ax.legend()
lessons.show(fig, "lesson5_null")

# %% [markdown]
# The bars answer the question per matrix. In this small model W_V and W_O are far more concentrated than random
# walks with the same step sizes (the large positive z above), while W_Q and W_K are not (z near zero or below).
# In the paper's model all eight are well above their null: run `tinygrok grok`, then `tinygrok pca
# runs/grok_paper_add_s42` prints each z. Above the null, though, is not yet evidence of grokking: see below.
#
# **Exercise 5c.** Build the null's walk yourself: a function of (step_norms, dim, rng) that returns a walk (S, dim),
# S = len(step_norms) + 1, that starts at 0 and whose t-th step has length step_norms[t] in a random direction (a
# standard normal vector of R^dim, `rng.standard_normal`, scaled to that length). The check takes 12 of your walks
# of 399 steps that shrink, as a training run's do, in 2,000 dimensions, and compares their mean PC1 share with
# that of `random_walk_null`'s walks: within 2% (12 walks of another draw land within about 1%; walks whose steps
# all have one length, 6% lower).

# %%
answer_5c = None  # your answer
step_norms = np.linspace(2.0, 0.05, 399)  # steps that shrink, as a training run's do
path = np.outer(np.concatenate([[0.0], np.cumsum(step_norms)]), np.ones(2000) / np.sqrt(2000))  # (400, 2000)
walk_rng = stream(1, "walks")
walks = None if answer_5c is None else [answer_5c(step_norms, 2000, walk_rng) for _ in range(12)]
lessons.check(
    "5c",
    None if walks is None else np.mean([pc1_share(walk) for walk in walks]),
    random_walk_null(path, stream(1, "walks"), n_walks=12)["null_mean"],  # only the path's step lengths matter
    rel=0.02,
    hint="Draw all the steps at once, (len(step_norms), dim); scale each row to its length; np.cumsum over the rows, "
    "with a row of zeros on top.",
)
equal = random_walk_null(np.outer(np.arange(400), np.ones(2000)), stream(1, "walks"), n_walks=12)["null_mean"]
print(f"walks of equal steps: PC1 {equal:.3f}, against 6/π² = {6 / np.pi**2:.3f}")

# %% [markdown]
# ## A control the random-walk null lacks: weight decay
#
# AdamW shrinks every weight by (1 - ηλ) at every step (lesson 4): over the 100 steps between two snapshots, by
# r = (1 - ηλ)^100. Decay alone moves a matrix along a straight line to 0, and PCA counts that as one-dimensional
# motion. The random walks above start at 0 and never decay, so they cannot tell this apart from anything else. A
# fairer null keeps the decay: a walk from the run's W_0 that shrinks by r between snapshots and otherwise moves as
# far as the run does, in a random direction u_t:
#
# y_0 = W_0,   y_t = r y_{t-1} + ||W_t - r W_{t-1}|| u_t.
#
# **Exercise 5d.** Write that walk: a function of (traj, r, directions) that returns the (S, D) array of the y_t,
# where traj is (S, D) and the rows of directions (S-1, D) give the u_t once divided by their norms.

# %%
answer_5d = None  # your answer
r = (1 - run.config().lr * run.config().weight_decay) ** run.config().snapshot_every
window = run.summary()["grok_step"] // run.config().snapshot_every + 1  # snapshots up to detection, as above
w_v = geometry.run_trajectories(run, run.config(), n=window)["blocks.0.W_V"]  # (S, D)
directions = stream(2, "directions").standard_normal((len(w_v) - 1, w_v.shape[1]))
lessons.check(
    "5d",
    None if answer_5d is None else answer_5d(w_v, r, directions),
    decay_walk(w_v, r, directions),
    hint="Build the walk row by row from y_0 = traj[0]: each step's size comes from traj, its direction from a "
    "row of directions.",
)

# %% [markdown]
# Now the comparison that matters: the same classroom model trained on x² + xy + y² mod 59, which never groks
# (lesson 1), over the same window of steps. For each matrix: the run's PC1, the random-walk null's mean, and the
# decay null's mean (10 walks each).

# %%
other = lessons.run(recipes.spec("train", "classroom", op="x2_xy_y2", max_steps=run.summary()["grok_step"]))
shares = {}
for label, each in {"add": run, "x2_xy_y2": other}.items():
    for name, traj in geometry.run_trajectories(each, each.config(), n=window).items():
        walks, decays = random_walk_null(traj, stream(0, name)), decay_walk_null(traj, r, stream(1, name))
        shares[label, name] = (walks["pc1"], walks["null_mean"], decays["null_mean"])
print(f"r = {r:.3f}; PC1 over steps 0 to {run.summary()['grok_step']}: the run / random walks / decaying walks")
for name in pca["pc1"]:
    print(
        f"{name:14s}",
        "   ".join(f"{label} {'/'.join(f'{v:.0%}' for v in shares[label, name])}" for label in ("add", "x2_xy_y2")),
    )

# %% [markdown]
# Measured here (the assertions below hold the text to the numbers):
# - **W_V and W_O** are as concentrated as a decaying random walk: within 3 points of the decay null, in both
#   runs. Their large z against the random-walk null is what decay gives, with no learning needed to explain it
#   (the decay null shrinks more than the run does, though: its steps never push back against the decay).
# - **W_Q and W_K** of add are at the random-walk null (about 50%); those of x2_xy_y2, which never groks, are
#   higher (65% to 73%).
#
# What this shows: in this model a high PC1 share is not a sign of grokking, and a z-score against the random-walk
# null overstates it. What it does not show: that the same holds for the paper's model. The paper reports lower
# PC1 for runs that never grok, over 200,000 steps (docs/paper.md §10 #2). tinygrok's records of the paper's model
# ran those for at most 10,000 steps, and a shorter trajectory is more one-dimensional, so they cannot settle it
# (docs/results.md, §10 #2, has their numbers and verdict); and the paper's nulls lack the decay too.

# %%
decay_gap = max(abs(v[0] - v[2]) for (label, name), v in shares.items() if name[-1] in "VO")
qk = {
    label: [v[0] for (lab, name), v in shares.items() if lab == label and name[-1] in "QK"]
    for label in ("add", "x2_xy_y2")
}
walk_gap = max(abs(v[0] - v[1]) for (label, name), v in shares.items() if label == "add" and name[-1] in "QK")
assert decay_gap < 0.03 and walk_gap < 0.05, (decay_gap, walk_gap)
assert 0.645 <= min(qk["x2_xy_y2"]) <= max(qk["x2_xy_y2"]) < 0.735, qk  # "65% to 73%", to the percent

# %% [markdown]
# **Exercise 5e.** Which matrix has the largest PC1 share in this run? Give its name, e.g. "blocks.0.W_Q".

# %%
answer_5e = None  # your answer
lessons.check("5e", answer_5e, max(pca["pc1"], key=pca["pc1"].get), hint="Look at the first table above.")

# %% [markdown]
# ## The execution subspace
#
# Lessons 6 and 8 use the directions the attention weights moved along: the *execution subspace*. Each of the 8
# matrices gives its trajectory's top two principal directions (up to detection), rows of length D; placed at that
# matrix's position in the flat parameter vector θ (P numbers, zeros elsewhere), they are 16 columns of a P x 16
# matrix B (docs/paper.md §5.5). The principal directions of one matrix are orthonormal, and two matrices occupy
# different coordinates, so B's columns are orthonormal: BᵀB = I.
#
# **Exercise 5f.** Build B: a (P, 16) array, two columns per matrix in the order of `trajectories`, each
# matrix's `trajectory_pca(traj).components[:2]` (2, D) at its offset `layout[name][0]`. The check compares it with
# the basis `analyse_pca` saved, column by column, up to each column's sign.

# %%
from tinygrok.science.model import param_count, snapshot_layout
from tinygrok.science.pca import trajectory_pca  # noqa: F401 - for your answer to 5f

trajectories = geometry.trajectories_to_detection(run)  # name -> (S, D)
layout, n_params = snapshot_layout(run.config()), param_count(run.config())  # name -> (offset, shape); P
answer_5f = None  # your answer
lessons.check(
    "5f",
    None if answer_5f is None else np.abs(answer_5f.T @ basis),  # (16, 16): |cos| of each pair of columns
    np.eye(basis.shape[1]),
    rel=1e-6,
    hint="B = np.zeros((n_params, 16)); for each name, its two rows go in as columns at rows offset:offset + D.",
)

# %% [markdown]
# ## Going further
# - The paper's W_V is always the most concentrated. Is it here? Try other seeds: `recipes.spec("train",
#   "classroom", seed=137)`.
# - `tinygrok.science.pca.expanding_window_pc1` gives PC1 for the first t snapshots: how does it change as the run
#   groks?
# - Give the decay null to the paper's model: `tinygrok grok` trains it (r = (1 - 1e-3)^100 there), and
#   `geometry.trajectories_to_detection(run)` gives its trajectories. Is any matrix above it?
