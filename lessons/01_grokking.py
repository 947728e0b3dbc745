# %% [markdown]
# # Lesson 1: Modular arithmetic and grokking
#
# **Duration:** 20 min in class; code: about 15 s on 2 cores (FAST: the same)
#
# **The paper:** [arXiv 2602.16746](https://arxiv.org/abs/2602.16746); `docs/paper.md` summarises its formulas,
# protocols and numbers.
#
# **Before this lesson:** Python and NumPy; the integers mod p (3 - 5 mod 97 = 95).
#
# **Reading:** Power, Burda, Edwards, Babuschkin, Misra, "Grokking: generalization beyond overfitting on small
# algorithmic datasets" (2022), the phenomenon; docs/paper.md §1 (the task and its split).
#
# **Learning goals**
# - the task: six binary operations mod a prime p, on token pairs [a, b], split in half into train and test;
# - grokking: a transformer first memorizes its training pairs, then, much later, generalises to the test pairs;
# - reading a run's metrics: the memorization step and the grok step.
#
# **Exercises** are lines `answer_X = None  # your answer`: replace `None` with your answer and run the cell; the
# check under it says right, or not right with a hint. (Teachers: `tinygrok lesson 1 --solutions`.)

# %% [markdown]
# ## The task
#
# For a prime p, every pair (a, b) of numbers below p gets the label c = f(a, b) mod p. The input is just the two
# tokens [a, b]; the answer is one of p classes. The paper (and tinygrok) use six operations:
#
# | name | f(a, b) |
# |---|---|
# | add | a + b |
# | sub | a - b |
# | mul | a b (with a, b from 1: zero left out) |
# | x2_y2 | a² + b² |
# | x2_xy_y2 | a² + ab + b² |
# | x3_xy | a³ + ab |
#
# All p² pairs are shuffled with the run's seed, and half of them are the training set: the model never sees the
# other half, and test accuracy says whether it has found the rule rather than a lookup table.

# %%
import numpy as np

from tinygrok.lab import lessons, recipes
from tinygrok.run import plots
from tinygrok.science import analysis
from tinygrok.science.data import OPERATIONS, all_pairs, make_dataset

for op in OPERATIONS:
    x, y = all_pairs(op, 97)
    print(f"{op:9s} {len(x):5d} pairs, e.g. {op}({x[300][0]}, {x[300][1]}) = {y[300]} mod 97")
data = make_dataset("add", 97, 0.5, seed=42)
print(f"add mod 97: {len(data.train_x)} training pairs, {len(data.test_x)} test pairs")

# %% [markdown]
# **Exercise 1a.** How many training pairs does `mul` mod 97 have, with a 50% split? (Zero is left out of mul.)

# %%
answer_1a = None  # your answer
lessons.check(
    "1a",
    answer_1a,
    len(make_dataset("mul", 97, 0.5, seed=42).train_x),
    hint="How many pairs (a, b) are there with 1 <= a, b <= 96? Half of them train.",
)

# %% [markdown]
# **Exercise 1b.** What is `sub` for a = 3, b = 5 mod 97? (Python's `%` never gives a negative result.)

# %%
answer_1b = None  # your answer
lessons.check(
    "1b",
    answer_1b,
    OPERATIONS["sub"][0](np.array(3), np.array(5)) % 97,
    hint="3 - 5 = -2; which number in 0..96 is -2 mod 97?",
)

# %% [markdown]
# ## Watching a model grok
#
# The `classroom` preset is the paper's model made smaller (p = 59, width 64, batch 256) and trained with three
# times the paper's learning rate (3e-3) so that it groks in seconds on a laptop. `lessons.run` trains it
# until test accuracy stays at 98% or more for three evaluations (every 100 steps), with AdamW and weight decay
# (lesson 4), and keeps the run in `runs/lessons/`.
#
# Two steps mark grokking, and the lessons name them apart: the *grok step* `grok_step_90`, the first evaluation
# with test accuracy >= 90% (the paper's grok_90, what onsets and leads are measured against), and the *detection
# step* `grok_step`, where the 98%-three-times rule stops training (the paper's detection step; lesson 8 reads it).

# %%
run = lessons.run(recipes.spec("train", "classroom"))
rows = run.metrics()
steps = analysis.grok_summary(rows)
print(f"memorized (train accuracy >= 95%) at step {steps['memorization_step']}")
print(
    f"generalised (test accuracy >= 90%) at step {steps['grok_step_90']}, "
    f"{steps['grok_step_90'] / steps['memorization_step']:.1f}x later"
)
lessons.show(plots.training(run), "lesson1_training")

# %% [markdown]
# Left: training accuracy (blue) passes 95% at the memorization step, while test accuracy (red) stays near chance
# (1/59), creeps up, and then jumps within a few hundred steps. Right: the training loss falls early; the test loss
# first rises (the model grows confident on pairs it has seen and wrong on the others), then falls when
# it generalises. The x axis is logarithmic: the jump comes long after memorization.

# %% [markdown]
# **Exercise 1c.** From `rows` (one dict per evaluation, with `step`, `train_acc`, `test_acc`, ...), find the first
# step at which test accuracy is at least 0.5.

# %%
answer_1c = None  # your answer
lessons.check(
    "1c",
    answer_1c,
    analysis.first_step(rows, "test_acc", 0.5),
    hint="Walk through rows in order and stop at the first one with test_acc >= 0.5.",
)

# %% [markdown]
# ## Going further
# - Train an operation that never groks: `recipes.spec("train", "classroom", op="x2_xy_y2", max_steps=3000)`.
#   What do its training and test accuracies do?
# - Give the model less data: `train_frac=0.3`. Does it still grok, and later or sooner?
# - The paper's own model: `tinygrok train --op add` (p = 97, width 128), or lesson 7.
