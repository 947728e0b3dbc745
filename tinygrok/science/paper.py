"""The paper's reference numbers as data: each is what the paper (or its code's stored results) reports for the
same measure tinygrok computes under one summary key, with the PAPER.md section it comes from.

Where the paper's text and its own data part, the row says so and carries the number that measures the same
thing as tinygrok's key (like with like); the text's figure stays in `quoted`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from tinygrok.science import interventions

GROKKING_OPS = ("add", "sub", "mul", "x2_y2")  # grok at weight decay 1 (§4)
NON_GROKKING_OPS = ("x2_xy_y2", "x3_xy")  # never do, in 200,000 steps


@dataclass(frozen=True)
class Reference:
    """One reference number.

    key: the summary key of tinygrok's measure; low, high: the paper's range (low == high for one value; both
    None where it gives no number); by_op: op -> (low, high) where the paper gives per-operation numbers; quoted: as the
    paper states it; measure: exactly what is measured; section: where in PAPER.md; meaning: what it tells.
    """

    key: str
    label: str
    low: Optional[float]
    high: Optional[float]
    quoted: str
    measure: str
    section: str
    meaning: str
    by_op: dict[str, tuple] = field(default_factory=dict)
    digits: str = ".4g"  # how a value is best shown (rho needs six decimals to differ from 1; shares are %)

    def expected(self, op: Optional[str] = None) -> tuple[Optional[float], Optional[float]]:
        """(low, high) for `op`: its own where the paper gives one, else the range over all operations."""
        return self.by_op.get(op, (self.low, self.high))

    def describe(self, op: Optional[str] = None) -> str:
        """The paper's figure as a table shows it: the operation's own value where there is one, else as quoted."""
        if op in self.by_op:
            low, high = self.by_op[op]
            between = " to " if low < 0 else "-"  # -75 to -30, not -75--30
            return f"{self.show(low)} ({op})" if low == high else f"{self.show(low)}{between}{self.show(high)} ({op})"
        return self.quoted

    def show(self, value) -> str:
        """A measured value of this quantity, formatted."""
        return "none" if value is None else format(value, self.digits) if isinstance(value, float) else str(value)

    def contains(self, value: Optional[float], op: Optional[str] = None) -> Optional[bool]:
        """Whether `value` lies in the paper's range (None where either has no number)."""
        low, high = self.expected(op)
        if value is None or low is None:
            return None
        return low <= value <= high


WALKTHROUGH = (
    Reference("memorization_step", "memorization step", 300, 500, "300-500 steps at lr 1e-3",
              "first evaluation with train accuracy >= 0.95", "§4",
              "train accuracy reaches 95%: the training set is learnt"),
    Reference("onset_step", "curvature onset", 1800, 2100, "1800-2100",
              "first probe (from the third) with median D > 10 x the first three probes' median and D > 20, K = 5 "
              "samples every 100 steps", "§7.1, §10 #10",
              "the commutator defect first exceeds 10x its early level (and 20)",
              by_op={"x2_y2": (500, 700)}),
    Reference("grok_step_90", "grok step (90%)", 1867, 3433, "~1900-3400 (Table 1)",
              "first evaluation with test accuracy >= 0.90, mean of seeds 42/137/2024", "§4, §10 #4",
              "test accuracy reaches 90%: the model generalises",
              by_op={op: (v, v) for op, v in {"add": 2933, "sub": 3433, "mul": 2633, "x2_y2": 1867}.items()}),
    Reference("lead_steps", "lead time", 600, 1600, "600-1600 (mean 1117)",
              "grok_step_90 - onset_step", "§7.2, §10 #10",
              "grok step minus onset: how early curvature warns of grokking"),
    Reference("defect_growth", "defect growth to grok_90", 30, 30, "~30x (D: 2 -> 20 -> 60)",
              "max D up to and including grok_step_90 / the early baseline", "§6.6",
              "how much the curvature has grown by the time the model generalises"),
    Reference("defect_growth_run", "defect growth, whole run", 513, 2141, "513-2141x",
              "max D over the whole run (1,000 steps past detection) / the early baseline", "§6.6, §10 #13",
              "how much it grows in all, grokking and after"),
    Reference("rho", "rho = resid/full", 0.99994, 0.99999, "~1.000",
              "median ||delta - B B^T delta|| / ||delta|| (B: trajectory PCA, K = 16) at the probed parameters",
              "§6.3, §10 #5", "share of the curvature vector outside the execution subspace (near 1 for any "
                              "16-dim subspace of 290,401 dimensions)", digits=".6f"),
    Reference("exec_random_ratio", "exec/random (trajectory PCA)", 0.86, 1.09,
              "0.86-1.09 (its data; its text: 1.8-2.9)",
              "memorization-phase median of proj/full for B (trajectory PCA, K = 16) over random 16-dim bases",
              "§6.4", "curvature leaning into the execution subspace vs a random one, during memorization: "
                      "about 1 (none) in tinygrok's controls, 0.81-1.13, as in the reference's data",
              by_op={op: (v, v) for op, v in {"add": 0.86, "sub": 1.03, "mul": 1.09}.items()}),
    Reference("exec_random_ratio_weight_svd", "exec/random (weight SVD)", 1.81, 2.91, "1.8-2.9",
              "the same with the current-weight-SVD basis (top-3 singular pairs per matrix, K = 24), the basis the "
              "reference's control used (every 100 steps, 7 samples; tinygrok: every 200 steps, 5 samples)",
              "§6.4, §10 #7", "the same with the reference code's basis: ~2 at low defect (1.83-2.46 for D in "
                              "5-15 in tinygrok's controls), falling as D rises",
              by_op={op: (v, v) for op, v in {"add": 2.04, "sub": 1.81, "mul": 2.18, "x2_y2": 2.91}.items()}),
    Reference("alignment_ratio", "alignment with curvature", 0.81, 1.91, "0.81-1.91 (seed 42)",
              "median over the saved thetas of mean |cos(step since the previous one, delta_k)| over 12 defects, "
              "over sqrt(2 / (pi P)) (two random directions' mean |cos|)", "§6.5, §10 #24",
              "whether the weights move along the curvature directions (1: no more than a random direction)",
              by_op={op: (v, v) for op, v in {"add": 0.81, "sub": 0.89, "mul": 1.04, "x2_y2": 1.91}.items()}),
)

PC1_MEASURE = "sigma_1^2 / sum sigma^2 of each attention matrix's centred trajectory up to detection, per matrix"
PC1 = Reference("pc1", "PC1 share", 0.628, 0.831, "68-83%; per matrix 62.8-83.1%", PC1_MEASURE,
                "§5.1, §5.4, §10 #1", "the fraction of a matrix's motion along a single direction",
                by_op={"add": (0.638, 0.815), "sub": (0.663, 0.798), "mul": (0.635, 0.808), "x2_y2": (0.667, 0.824)},
                digits=".1%")
PC1_NO_GROKKING = Reference(
    "pc1", "PC1 share, no grokking", 0.378, 0.532, "42-49% (per matrix, seed means: 37.8-53.2%)",
    PC1_MEASURE + ", over all 200,000 steps", "§5.4",
    "a trajectory that never generalises is far less one-dimensional",
    by_op={"x2_xy_y2": (0.378, 0.485), "x3_xy": (0.439, 0.532)}, digits=".1%")
PC1_NO_DECAY = Reference(
    "pc1", "PC1 share, no weight decay", 0.49, 0.75, "49-75%", PC1_MEASURE + ", over 50,000 steps", "§5.4",
    "without weight decay the trajectory is still low-dimensional, but no more than a grokking one",
    by_op={"add": (0.619, 0.691)}, digits=".1%")

PC1_NULL_Z = Reference(
    "pc1_null_z", "PC1 z-score vs random walks", 40, 110, "5-20 sigma (text); figE: +40 to +110 (grokking ops), "
    "-30 to -75 (x2_xy_y2, x3_xy)", "(PC1 - mean PC1 of 10 random walks with the run's step norms) / their sd, per "
    "matrix (figE: the last layer's, seed means)", "§5.3, §10 #3",
    "how far the trajectory is from a random walk of the same step sizes: far more one-dimensional",
    by_op={op: (-75, -30) for op in NON_GROKKING_OPS}, digits=".1f")


def pc1_reference(op: str, weight_decay: float, n_layers: int = 2) -> Optional[Reference]:
    """The paper's PC1 range for runs of `op` at this weight decay (§5.4: the seed means of each matrix), for the
    2-layer model at weight decay 1 or 0; None otherwise (the slow regime's differ, §9.1)."""
    if n_layers != 2 or weight_decay not in (0.0, 1.0):
        return None
    if weight_decay == 0:
        return PC1_NO_DECAY
    return PC1 if op in GROKKING_OPS else PC1_NO_GROKKING

GROWTH_WITHOUT_GROKKING = Reference(
    "defect_growth_run", "defect growth, no grokking", 29, 47, "x2_xy_y2 47x, x3_xy 31x, add without decay 29x",
    "max D over the run / the early baseline, for runs that do not grok", "§6.7, §10 #13",
    "curvature grows far less where the model never generalises",
    by_op={"x2_xy_y2": (47, 47), "x3_xy": (31, 31), "add": (29, 29)})

POWER_LAW = Reference(
    "alpha", "lead-time power law", 1.24, 1.30, "alpha = 1.27 ± 0.03, R² 0.97, n 43 (v1, 6 learning rates)",
    "OLS slope of log(detection - onset) on log(detection step) over runs with a positive lead", "§7.4, §10 #20",
    "lead grows faster than the grok time: slower training gives proportionally earlier warning")

BY_KEY = {ref.key: ref for ref in (*WALKTHROUGH, PC1)}


# ---------------------------------------------------------------------- the interventions (§8.3)
# Each arm declares what the paper reports for it (interventions.py: PAPER); here they are gathered, keyed by
# (op, hook name, dose, basis), the identity arms (no hook, project at s = 0) under ("none", 0.0).
INTERVENTIONS: dict[tuple, interventions.Reported] = {
    (op, name, dose, basis): reported for name, hook in interventions.HOOKS.items()
    for (op, dose, basis), reported in hook.PAPER.items()}


def intervention(op: str, arm: str, dose: float, basis: str) -> str:
    """What the paper reports for this arm, as a table shows it ("" where it reports nothing)."""
    if (op, arm, dose, basis) not in INTERVENTIONS:
        return ""
    step, source, delay, text = INTERVENTIONS[op, arm, dose, basis]
    return (text or ("DNF (0/3)" if step is None else f"~{step}")) + (f", +{delay}" if delay else "") + f" ({source})"
