# %% [markdown]
# # Lesson 9: Inside the model: Fourier features and progress measures
#
# **Duration:** 30 min in class; code: about 25 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 1 (grokking), 5 (the trajectory PCA), 6 (the commutator defect D) and 7 (its run,
# its onset and its probes).
#
# **Reading:** Nanda, Chan, Lieberum, Smith, Steinhardt, "Progress measures for grokking via mechanistic
# interpretability" (ICLR 2023), sections 4 and 5; Power et al., "Grokking" (2022), for the phenomenon.
#
# **Learning goals**
# - find the waves a trained model uses to add mod p: the Fourier spectrum of its embedding;
# - cut its logits down to those waves (the restricted loss) or take them out (the excluded loss);
# - put the mechanism (these two losses) and the geometry (D, PC1) on one step axis, and measure which moves first.

# %% [markdown]
# ## Waves on Z_p
#
# A function f(n) on the numbers 0, ..., p-1 is a sum of a constant and of waves cos(w_k n), sin(w_k n), with
# w_k = 2πk/p, for the frequencies k = 1, ..., (p-1)/2. `fourier.basis(p)` holds them as the orthonormal rows of a
# p x p matrix. The embedding W_E (p x d) gives each number a row; `basis(p) @ W_E` rewrites its d columns as sums
# of waves. The *energy* of frequency k is the sum of squares of its cos and sin rows: how much of the embedding
# varies with n at that frequency.
#
# The run: the classroom model (addition mod 59), trained until it has grokked and 1,000 steps beyond, with all its
# parameters saved every 200 steps (lesson 7's run in FAST mode, which this lesson reuses where it is there; in
# the normal mode lesson 7 trains the paper's model, so this lesson trains its own).

# %%
import numpy as np
from matplotlib.figure import Figure

from tinygrok.lab import lessons, recipes
from tinygrok.run.geometry import run_trajectories
from tinygrok.run.runs import THETAS
from tinygrok.science import analysis, fourier, model
from tinygrok.science.data import all_pairs, make_dataset
from tinygrok.science.pca import pc1_share

run = lessons.run(recipes.spec("walkthrough", "classroom"))
cfg, rows = run.config(), run.metrics()
thetas = run.rows(THETAS)  # (S, P): the parameters every cfg.theta_every steps, from step 0
saved_steps = [i * cfg.theta_every for i in range(len(thetas))]
first, last = (model.unflatten(np.asarray(thetas[i], dtype=np.float64), cfg) for i in (0, -1))
print(f"p = {cfg.p}; W_E is {first['W_E'].shape}; {len(thetas)} saved parameter vectors, steps 0 to {saved_steps[-1]}")

# %% [markdown]
# **Exercise 9a.** Write the energy of every frequency: a function of w (p x d) that returns the array of the
# energies of k = 1, ..., (p-1)/2, in order. Row 0 of `fourier.basis(p) @ w` is the constant; then come cos 1,
# sin 1, cos 2, sin 2, ...

# %%
answer_9a = None  # your answer
lessons.check(
    "9a",
    None if answer_9a is None else answer_9a(last["W_E"]),
    fourier.frequency_energy(last["W_E"]),
    rel=1e-9,
    hint="Square, sum over the d columns, drop row 0, then add each cos row to the sin row after it.",
)

# %% [markdown]
# ## The spectrum, before and after
#
# At initialisation the embedding is random, so every frequency holds about an even share of its energy. After
# grokking, a few frequencies hold most of it.

# %%
energy = {
    "W_E at step 0": fourier.frequency_energy(first["W_E"]),
    "W_E at the end": fourier.frequency_energy(last["W_E"]),
}
embedded = fourier.key_frequencies(energy["W_E at the end"])
print(f"the embedding's main frequencies: {embedded}")

# %% [markdown]
# ## How waves add
#
# cos(w(a + b - c)) = cos(w(a + b)) cos(wc) + sin(w(a + b)) sin(wc) is largest, 1, exactly at c = a + b mod p. A
# model that embeds a and b as waves can form waves of a + b from products (the identities for cos(x + y) and
# sin(x + y)), and read out c by the identity above. Products of waves make waves of sums and differences of their
# frequencies, so the logits' frequencies need not be the embedding's. Read them off the logits: for each k, the
# energy of the logits' part along cos and sin of w_k(a + b - c) (`fourier.logit_energy`); the *key frequencies*
# hold more than twice their even share of it.
#
# Nanda et al. found this algorithm by reverse engineering; here we only measure how much of the logits it
# explains, with two of their progress measures, adapted (`tinygrok/science/fourier.py` says how, and how this is
# cruder than theirs):
#
# - the **restricted loss**: the logits cut down to their parts along the key waves (`fourier.key_logits`), on
#   every pair: how well those waves alone answer;
# - the **excluded loss**: the logits with those parts taken out, on the training pairs: how well the rest alone
#   still fits the training set.

# %%
data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
pairs, labels = all_pairs(cfg.op, cfg.p)  # every (a, b), row a p + b, and a + b mod p
train, test = (x[:, 0] * cfg.p + x[:, 1] for x in (data.train_x, data.test_x))  # their rows among the pairs
logits = model.forward(last, pairs, cfg.n_heads)  # (p*p, p): the end of the run
energy["logits at the end"] = fourier.logit_energy(logits)
keys = fourier.key_frequencies(energy["logits at the end"])
share = energy["logits at the end"][np.array(keys) - 1].sum() / energy["logits at the end"].sum()
print(f"the logits' key frequencies {keys}: {share:.0%} of the logits' energy in such waves")
measures = {"test loss": [], "restricted loss": [], "excluded loss": [], "train loss": []}
for theta in thetas:
    logits = model.forward(model.unflatten(np.asarray(theta, dtype=np.float64), cfg), pairs, cfg.n_heads)  # (p*p, p)
    key_part = fourier.key_logits(logits, keys)
    for name, rows_of, these in (
        ("test loss", test, logits),
        ("train loss", train, logits),
        ("excluded loss", train, logits - key_part),
    ):
        measures[name].append(float(model.cross_entropy(these[rows_of], labels[rows_of])))
    measures["restricted loss"].append(float(model.cross_entropy(key_part, labels)))
print("at the end:", ", ".join(f"{name} {values[-1]:.2f}" for name, values in measures.items()))

# %% [markdown]
# **Exercise 9b.** The restricted loss keeps the key waves' parts of the logits. Write the loss on every pair with
# everything *but* the key waves kept: the logits minus their key part (`logits` and `key_part` hold the last
# saved step's, for every pair). Is it lower or higher than the restricted loss at the end?

# %%
answer_9b = None  # your answer
lessons.check(
    "9b",
    answer_9b,
    float(model.cross_entropy(logits - key_part, labels)),
    rel=1e-9,
    hint="The same cross-entropy as the restricted loss, of the other part of the logits.",
)

# %% [markdown]
# ## Mechanism and geometry on one step axis
#
# Beside the losses (the training loss too), the geometry of lessons 5 and 6: D, the commutator defect probed
# every 100 steps, and the PC1 share of the attention trajectory *so far* (the mean over the attention matrices of
# the PCA of their snapshots from step 0 to t). Each curve is scaled to run from its lowest value (0) to its
# highest (1); the values themselves are printed above.

# %%
at_step = {r["step"]: r for r in rows}
measures["D"] = [at_step[s]["defect"] for s in saved_steps]
trajectories = run_trajectories(run, cfg)  # name -> (S, d*d): a snapshot every cfg.snapshot_every steps
measures["PC1 so far"] = [
    float(np.mean([pc1_share(t[: s // cfg.snapshot_every + 1]) for t in trajectories.values()])) if s else np.nan
    for s in saved_steps
]
summary = run.summary()
events = {"memorized": summary["memorization_step"], "onset": summary["onset_step"], "grok_90": summary["grok_step_90"]}

fig = Figure(figsize=(12, 4.2), layout="constrained")
spectrum, axis = fig.subplots(1, 2, width_ratios=(1, 1.6))
frequencies = np.arange(1, len(energy["W_E at the end"]) + 1)
for offset, (label, values) in zip((-0.27, 0, 0.27), energy.items()):
    spectrum.bar(frequencies + offset, values / values.sum(), width=0.27, label=label)
spectrum.set(xlabel="frequency k", ylabel="share of the energy", title=f"Fourier spectra (the logits' keys: {keys})")
spectrum.legend()
for name, values in measures.items():
    v = np.array(values, dtype=float)
    axis.plot(saved_steps, (v - np.nanmin(v)) / (np.nanmax(v) - np.nanmin(v)), marker=".", label=name)
for name, step in events.items():
    axis.axvline(step, color="grey", ls=":")
    axis.text(step, 1.02, name, ha="center", fontsize=8)
axis.set(xlabel="step", ylabel="scaled: lowest 0, highest 1", title="progress measures, D and PC1 on one step axis")
axis.legend(fontsize=8)
lessons.show(fig, "lesson9_inside")

# %% [markdown]
# ## Which moves first?
#
# A rule to read it by: a measure *moves* at the first saved step after memorization where it has gone a quarter
# of its way from its value there to its value at grok_90. (Both are read at the first saved step at or after the
# event.)
#
# **Exercise 9c.** Write that rule as a function of (steps, values, start, end) that returns the step (None if no
# step gets there, or if its values at start and end are equal). It must work for measures that rise and for
# measures that fall.

# %%
answer_9c = None  # your answer
start, end = (next(s for s in saved_steps if s >= events[e]) for e in ("memorized", "grok_90"))
moves = {name: analysis.first_move(saved_steps, values, start, end) for name, values in measures.items()}
lessons.check(
    "9c",
    None
    if answer_9c is None
    else {name: answer_9c(saved_steps, values, start, end) for name, values in measures.items()},
    moves,
    hint="Find the value a quarter of the way from start to end first; then ask which way the measure must cross it.",
)
order = ("D", "excluded loss", "test loss", "restricted loss")  # the PC1 share and the train loss: see below
tenth = {name: analysis.first_move(saved_steps, measures[name], start, end, fraction=0.1) for name in order}
print(f"from step {start} to step {end}, a quarter of the way:", {name: moves[name] for name in order})
print("a tenth of the way:", tenth)

# %% [markdown]
# Measured on this run (the assertions below hold this paragraph and the next to the numbers): **D moves first**,
# at step 600; then the excluded loss (1000), the test loss (1200) and the restricted loss (1400). A tenth of the
# way instead of a quarter moves the test and restricted losses earlier (600, 1000, 1000, 1200): the excluded and
# test losses tie, and the order holds.
#
# What this shows: on this run the curvature probe moves before the mechanism's measures and the test loss. What it
# does not show:
# - the PC1 share of the path so far falls from the start (each stretch of path adds directions until the path
#   turns at grokking), so it has no place in the order;
# - the excluded loss rises partly because the training loss itself rises then (from 0.27 at step 400 to 0.40 at
#   step 1000), not only because the fit comes to rest on the waves;
# - the restricted loss never gets low here (about 0.7 at the end, against a test loss near 0.03): the key waves of
#   the logits answer only in part, and this adaptation is cruder than Nanda et al.'s;
# - it is one seed of the classroom model, read every 200 steps, and the key frequencies are read off the end of
#   the run.

# %%
at = dict(zip(saved_steps, measures["train loss"]))
for rule in (moves, tenth):
    assert [rule[name] for name in order] == sorted(rule[name] for name in order) and len(set(rule.values())) >= 3, rule
assert moves["D"] == 600 and (round(at[400], 2), round(at[1000], 2)) == (0.27, 0.40), (moves, at)
ends = {name: round(float(measures[name][-1]), 2) for name in ("restricted loss", "test loss")}
assert 0.6 <= ends["restricted loss"] <= 0.8 and ends["test loss"] <= 0.05, ends
assert tenth == {"D": 600, "excluded loss": 1000, "test loss": 1000, "restricted loss": 1200}, tenth

# %% [markdown]
# ## Going further
# - Nanda et al. also measure a "Gini coefficient" of the spectrum: how concentrated it is. Plot the key
#   frequencies' share of the energy at every saved step: when does the spectrum become sparse?
# - Read the spectrum of W_U (d x p: transpose it) and of the first block's MLP input: the same key frequencies?
# - Train another seed (`recipes.spec("walkthrough", "classroom", seed=137)`): the same key frequencies? The same
#   order of moves?
