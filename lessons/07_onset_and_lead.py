# %% [markdown]
# # Lesson 7: Curvature onset, lead time, and predicting grokking
#
# **Duration:** 30 min in class; code: about 2 min on 2 cores, paper model (FAST: classroom model, 25 s)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** lessons 1 and 6.
#
# **FAST mode** (TINYGROK_FAST=1, the mode the test suite runs) trains the classroom model in place of the
# paper's. Every sentence and check holds in both modes; where the two models' numbers differ, the text gives both.
#
# **Reading:** docs/paper.md §7 (the onset and the lead); Nanda, Chan, Lieberum, Smith, Steinhardt, "Progress
# measures for grokking via mechanistic interpretability" (ICLR 2023), for another early signal (lesson 9).
#
# **Learning goals**
# - read a run's commutator defect, probed every 100 steps while it trains, beside its test accuracy;
# - apply the paper's onset rule yourself, and measure the lead time: how long before grokking curvature rises;
# - decide whether you could have predicted grokking from what you would have seen at the onset;
# - read D beside the losses and the gradient norm it divides by: what moved before it, and what its high values
#   after grokking measure;
# - watch a forecast of the grok step on a run it never saw, against the truth and against the learning rate
#   alone (a power law you fit yourself), and judge whether it earns its place.

# %% [markdown]
# ## A run with curvature probes
#
# `tinygrok grok` trains while it measures D (lesson 6) every 100 steps, with K = 5 pairs of batches (the median
# is kept), and goes on 1,000 steps past grokking. By default this lesson trains the paper's model on addition
# mod 97 (docs/paper.md §6.2's protocol); with TINYGROK_FAST=1, the classroom model.

# %%
import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from tinygrok.lab import lessons, recipes
from tinygrok.run import plots
from tinygrok.science import analysis, paper

spec = recipes.spec("walkthrough", lessons.pick("paper", "classroom"))
run = lessons.run(spec)
cfg, rows = run.config(), run.metrics()
probed = [r for r in rows if r.get("defect") is not None]
first_three = [r["defect"] for r in probed[:3]]
print(
    f"{spec.preset} model, {cfg.op} mod {cfg.p}: {len(probed)} probes; the first three D:",
    [round(d, 2) for d in first_three],
    f"(median {np.median(first_three):.2f})",
)
lessons.show(plots.defect(run), "lesson7_defect")

# %% [markdown]
# The defect (purple, log scale) starts at its early level and rises by an order of magnitude or more before test
# accuracy (red) moves; it stays high, or keeps rising, afterwards. The dotted line is the curvature onset (where
# the rule below fires), the dashed one the grok step. (The early level is mostly float32 rounding: runs train in
# float32, as the paper's did, and at initialisation a float32 D comes out several times larger than a float64 one,
# lesson 6's; `tinygrok grok --dtype float64` shows it. The onset rule measures the rise from it, as the paper's
# does.)
#
# ## The onset rule (docs/paper.md §7.1)
#
# baseline = max(median of D at the first three probes, 0.1); the onset is the first probe, from the third on,
# with D > 10 × baseline and D > 20 (an absolute floor, so that tiny early defects do not count).
#
# **Exercise 7a.** Write the rule as a function of `probed` (a list of rows with "step" and "defect", in order)
# that returns the onset step, e.g. `def my_onset(probed): ...` and then `answer_7a = my_onset`.

# %%
answer_7a = None  # your answer
onset = analysis.curvature_onset(rows, floor=cfg.onset_floor)["onset_step"]
lessons.check(
    "7a",
    None if answer_7a is None else answer_7a(probed),
    onset,
    hint="Baseline from the first three probes; then scan from the third probe on.",
)

# %% [markdown]
# **Exercise 7b.** The lead time is grok_step_90 - onset, where grok_step_90 is the first evaluation with test
# accuracy >= 0.9 (docs/paper.md §7.2). Compute it from `rows` and your onset.

# %%
answer_7b = None  # your answer
lead = run.summary()["lead_steps"]
lessons.check("7b", answer_7b, lead, hint="first_step(rows, 'test_acc', 0.9) minus the onset.")
reference = paper.BY_KEY["lead_steps"]
if answer_7b is None:
    pass  # the lead is printed once you have found it
elif spec.preset == "paper":
    print(
        f"lead {lead} steps; the paper: {reference.quoted} over 12 runs ({reference.section}); "
        f"{'inside' if reference.contains(lead) else 'outside'} its range"
    )
else:
    print(f"lead {lead} steps (the classroom model: its steps are not the paper's; compare its fraction below)")

# %% [markdown]
# ## Could you have predicted it?
#
# Stand at the onset step, knowing only the rows up to it. What did the accuracies say then?

# %%
at_onset = next(r for r in rows if r["step"] == onset)
print(
    f"at the onset (step {onset}): train accuracy {at_onset['train_acc']:.3f}, "
    f"test accuracy {at_onset['test_acc']:.3f}, D = {at_onset['defect']:.1f} "
    f"({at_onset['defect'] / analysis.curvature_onset(rows)['baseline_defect']:.0f}x its early level)"
)

# %% [markdown]
# The training set was learnt long before, and test accuracy was still low: nothing in the accuracies announced
# what was coming. The curvature had already risen tenfold. The accuracies are not all a run shows, though: the
# next section looks at the losses and the gradient.
#
# **Exercise 7c.** As a fraction of the grok step (grok_step_90), how early did the onset come? Give
# lead / grok_step_90. (The paper's learning-rate sweep reports a similar fraction, with the detection step in
# place of grok_step_90 (docs/paper.md §7.2), and finds it grows as training slows: 46% at lr 1e-3, 93% at 1e-4.)

# %%
answer_7c = None  # your answer
lessons.check(
    "7c",
    answer_7c,
    run.summary()["lead_steps"] / run.summary()["grok_step_90"],
    rel=1e-9,
    hint="Divide the lead by the grok step.",
)

# %% [markdown]
# ## What else moved, and what D divides by
#
# Two things the defect's rise should be read beside. The test *loss* (not the accuracy) can move before the
# accuracy does. And D = ||δ|| / (η² ||g_A|| ||g_B||) divides by the gradients' norms (lesson 6), so where
# gradients get small, D gets large whatever the commutator δ does. Each row holds the norm of the training step's
# gradient (`grad_norm`, before clipping); D × grad_norm² stands in, roughly, for the commutator's own size
# ||δ|| / η² (the probes' batches are not the training step's).

# %%
stepped = [r for r in probed if "grad_norm" in r]  # every probe after step 0
after = [r for r in stepped if r["step"] > run.summary()["grok_step_90"]]
fig = Figure(figsize=(8, 4), layout="constrained")
ax = fig.subplots()
for key, label in (
    ("defect", "D"),
    ("grad_norm", "gradient norm"),
    ("train_loss", "train loss"),
    ("test_loss", "test loss"),
):
    ax.plot([r["step"] for r in stepped], [r[key] for r in stepped], label=label)
ax.plot(
    [r["step"] for r in stepped], [r["defect"] * r["grad_norm"] ** 2 for r in stepped], ls="--", label="D × grad_norm²"
)
for step, label in ((onset, "onset"), (run.summary()["grok_step_90"], "grok_90")):
    ax.axvline(step, color="grey", ls=":")
    ax.text(step, 0.98, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
ax.set(yscale="log", xlabel="step", title="the defect beside the losses and the gradient")
ax.legend(fontsize=8)
lessons.show(fig, "lesson7_beside")

# %% [markdown]
# **Exercise 7d.** At which step does the test loss peak? Read it off `rows` (each has "step" and "test_loss").

# %%
answer_7d = None  # your answer
at_step = {r["step"]: r for r in rows}
lessons.check(
    "7d",
    answer_7d,
    max(rows, key=lambda r: r["test_loss"])["step"],
    rel=0,
    hint="The row with the largest test_loss; give its step.",
)

# %% [markdown]
# Measured, on both models (the assertions below hold the text to the run):
# - the **test loss peaks before the onset** (at step 500 on the classroom model, 1,300 on the paper's) and is
#   falling when the onset fires, by a few percent: an earlier, smaller sign than the defect's tenfold rise, and
#   one that nothing in the accuracies shows;
# - before grokking the gradient norm grows too, so the rise of D is not its normalisation's doing: D ×
#   grad_norm² rises more steeply still;
# - **after grokking, D is largest where the training loss is smallest**: their rank correlation after grok_90 is
#   -0.65 on the classroom model, -0.76 on the paper's. A small loss gives small gradients, and D divides by them;
#   D × grad_norm² does not rise as the loss falls (its rank correlation with the loss: 0.03 and 0.83). Those high
#   values of D measure small gradients more than a large commutator.

# %%
peak = max(rows, key=lambda r: r["test_loss"])
with_loss = {  # after grok_90: each one's rank correlation with the training loss
    name: spearmanr([f(r) for r in after], [r["train_loss"] for r in after])[0]
    for name, f in (("D", lambda r: r["defect"]), ("D × grad_norm²", lambda r: r["defect"] * r["grad_norm"] ** 2))
}
print(
    f"test loss: peak {peak['test_loss']:.2f} at step {peak['step']}, {at_step[onset]['test_loss']:.2f} at the onset; "
    f"after grok_90, rank correlation with the training loss: D {with_loss['D']:.2f}, "
    f"D × grad_norm² {with_loss['D × grad_norm²']:.2f}"
)
assert peak["step"] == lessons.pick(1300, 500) and peak["step"] < onset, (peak, onset)
assert at_step[onset]["test_loss"] < peak["test_loss"], (peak, onset)
said = lessons.pick({"D": -0.76, "D × grad_norm²": 0.83}, {"D": -0.65, "D × grad_norm²": 0.03})
assert {name: round(rho, 2) for name, rho in with_loss.items()} == said, with_loss
memorized = at_step[run.summary()["memorization_step"]]
growth = {
    key: f(at_step[onset]) / f(memorized)
    for key, f in (("D", lambda r: r["defect"]), ("D g²", lambda r: r["defect"] * r["grad_norm"] ** 2))
}
assert growth["D g²"] > growth["D"] > 1, growth

# %% [markdown]
# ## Forecasting the grok step
#
# The onset says that curvature has risen, not when the run will generalise: at lr 1e-3 onsets near 1,900 steps come
# before grok steps near 3,000, at lr 1e-4 onsets near 2,400 before grok steps near 34,000 (the paper's LR sweep,
# docs/paper.md §10 #16 and #19: at 1e-4 the onset comes within the first ~7% of the run). tinygrok's forecaster
# (`tinygrok/science/forecast.py`) reads what a run has shown up to step t (how far the defect has grown over its
# baseline, test accuracy, how far the test loss has fallen from its peak) with its learning rate and weight decay, in
# two linear models fitted on 36 stored runs of the paper's model: P(the run groks), and log10 of the steps still to
# go, with an 80% interval from the fitted runs' residuals. It reads the step on the run's own clock for the steps
# still to go: in units of the step where the run memorized its training set, which comes later at lower learning
# rates, as the grok step does (P(grok) reads the plain step).
#
# A forecast is only worth its score on runs it never saw. Here it is replayed on one: add at lr 1e-3 with seed 7
# (the fitted runs have seeds 42, 137 and 2024), one of the held-out runs that docs/forecast.md scores it on.
# Beside it, its simplest rival: the learning rate alone, grok step = C lr^β fitted on the 28 of the same 36 runs
# that grokked, which says the same thing at every step.

# %%
from tinygrok.lab import forecast_scoring
from tinygrok.run import grok_forecaster
from tinygrok.science import forecast

held, _, _ = forecast_scoring.held_out_records([grok_forecaster.HELD_OUT_RECORDS])
stored = next(r for r in held if (r.op, r.lr, r.seed) == ("add", 1e-3, 7))
made = grok_forecaster.replay_record(stored)
law = forecast.lr_law_predictor(grok_forecaster.shipped_records())(stored, 1)
print(f"the learning rate alone: {law.grok_step:,.0f}, 80%: {law.low:,.0f}-{law.high:,.0f}")
for label, f in forecast_scoring.at_points(stored, made).items():
    print(f"{label:>8} (step {f.step:>5}): {f.words()}")
print(f"the truth: grok_90 = {stored.grok_90}")
lessons.show(plots.forecast(stored, baseline=law), "lesson7_forecast")

# %% [markdown]
# **Exercise 7e.** Build the rival yourself. Over the stored runs that grokked (`grokked` below, each with `.lr` and
# `.grok_90`), fit log10 T = a + β log10 lr by least squares (`np.polyfit`, degree 1), and give its grok step for
# this run (`stored.lr`), 10^(a + β log10 lr).

# %%
grokked = [r for r in grok_forecaster.shipped_records() if r.grok_90 is not None]  # the fitted runs that grokked
answer_7e = None  # your answer
lessons.check("7e", answer_7e, law.grok_step, rel=1e-9, hint="np.polyfit(log10 lr, log10 grok_90, 1) gives (β, a).")
beta = np.polyfit(np.log10([r.lr for r in grokked]), np.log10([r.grok_90 for r in grokked]), 1)[0]
print(f"β = {beta:.2f} over {len(grokked)} runs")
assert -1.1 < beta < -0.9 and len(grokked) == 28, (beta, len(grokked))  # what the text says

# %% [markdown]
# β is close to -1: the grok step is about inversely proportional to the learning rate (ten times the rate, a
# tenth of the steps), as if grokking needed the weights to travel a fixed distance (with Adam, each step moves a
# weight by about lr).

# %% [markdown]
# Watch the forecast move as the run goes on (green line and band against the dashed truth; the blue line and band
# are the learning rate's guess, the same at every step): its interval narrows as the run shows more, and P(grok)
# (red) dips while test accuracy stalls, before the defect's rise brings it back.
#
# **Exercise 7f.** When could you have trusted it? Write a function of (before, T), where `before` lists
# (step, forecast grok step) at each probe before grok_90 (the forecast None where there is none) and T is grok_90,
# that returns the first probe step from which every forecast lies within 10% of T (None if the last one does
# not).

# %%
answer_7f = None  # your answer
shown = [(row["step"], f) for row, f in zip(stored.rows, made) if row["step"] < stored.grok_90]
before = [(step, None if f is None else f.grok_step) for step, f in shown]
settled = forecast_scoring.settled(stored, made)
lessons.check(
    "7f",
    None if answer_7f is None else answer_7f(before, stored.grok_90),
    settled,
    hint="Walk the probes backwards from the last one before grok_90, while the forecast stays within 10%.",
)
if answer_7f is not None and settled is not None:
    print(f"within 10% from step {settled}, {stored.grok_90 - settled} steps ahead of grok_90")

# %% [markdown]
# One run is one sample, and on this one the learning rate alone is close too. Over all the held-out runs
# (docs/forecast.md: new seeds, rates between the fitted ones, another weight decay and training fraction, and runs
# that never grok) the forecaster has to beat that rival's median error at most of the four points (the onset,
# 25%, 50% and 75% of grok_90), with 80% intervals that hold the truth 70-90% of the time, for `tinygrok train` to
# show it live. Does it?

# %%
live, wins, coverage = forecast_scoring.decision(
    forecast_scoring.held_out_score(grok_forecaster.shipped_records(), held)
)
print(f"below the learning rate alone at {wins} of 4 points; its intervals hold grok_90 in {coverage:.0%}")
print(f"so the live forecast is {'on' if live else 'off'}")
assert not live and wins <= 2, (wins, coverage)

# %% [markdown]
# It does not (the assertion above holds this sentence to the records): on runs it never saw, the forecaster is
# further off than the learning rate alone until late in a run (at 25% and 50% of grok_90: see docs/forecast.md),
# and its intervals hold the truth less often than they claim. So tinygrok does not show it while a run trains;
# `tinygrok forecast RUN` replays it, as here, for whoever wants to improve it.

# %% [markdown]
# ## Going further
# - One run is one sample: run other seeds (`recipes.spec("walkthrough", "paper", seed=137)`), and the other
#   operations. The paper's sign test: all of its 12 runs had a positive lead (docs/paper.md §7.3).
# - A control: an operation that never groks, `op="x2_xy_y2", max_steps=7500`. Does its defect rise, and how far?
#   Compare `run.summary()["defect_growth_run"]` with `paper.BY_KEY["defect_growth_run"]` and docs/paper.md §10 #13.
# - Change the rule: factor 5 or 20, floor 10 or 40. How robust is the lead?
