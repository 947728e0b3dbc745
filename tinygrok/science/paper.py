"""The paper's reference numbers as data: each is what the paper (or its code's stored results) reports for the
same measure tinygrok computes under one summary key, with the docs/paper.md section it comes from.

Where the paper's text and its own data part, the row says so and carries the number that measures the same
thing as tinygrok's key (like with like); the text's figure stays in `quoted`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from tinygrok.science import interventions

GROKKING_OPS = ("add", "sub", "mul", "x2_y2")  # grok at weight decay 1 (§4)
NON_GROKKING_OPS = ("x2_xy_y2", "x3_xy")  # never do, in 200,000 steps
TABLE1 = {"add": 2933, "sub": 3433, "mul": 2633, "x2_y2": 1867}  # §10 #4: mean grok_90 of seeds 42/137/2024
# §9.2 Table 2, the slow regime (add, weight decay 0.1), seed by seed: the reference's stored steps, the onset by its
# released rule (floor 5), lead = grok_90 - onset
TABLE2 = {
    42: {"grok_step": 612_000, "grok_step_90": 585_000, "onset_step": 10_000, "lead_steps": 575_000},
    137: {"grok_step": 572_000, "grok_step_90": 550_000, "onset_step": 10_000, "lead_steps": 540_000},
}
SLOW_RHO = (0.999997, 1.0)  # §9.2: rho at the final checkpoint, both seeds
SLOW_RHO_TEXT = "{:.6f}-{:.6f}".format(*SLOW_RHO)
# §9.1 figH: the slow regime's last-layer PC1 per matrix, seed means, on its trajectory subsampled to
# SLOW_SNAPSHOTS snapshots and on all ~290 (every 2,000 steps)
SLOW_SNAPSHOTS = 33
SLOW_PC1_33 = {"W_Q": 0.805, "W_K": 0.801, "W_V": 0.897, "W_O": 0.781}
SLOW_PC1_ALL = {"W_Q": 0.855, "W_K": 0.846, "W_V": 0.943, "W_O": 0.877}


@dataclass(frozen=True)
class Reference:
    """One reference number.

    key: the summary key of tinygrok's measure; low, high: the paper's range (low == high for one value; both
    None where it gives no number); by_op: op -> (low, high) where the paper gives per-operation numbers; quoted: as the
    paper states it; measure: exactly what is measured; section: where in docs/paper.md; meaning: what it tells.
    """

    key: str
    label: str
    low: float | None
    high: float | None
    quoted: str
    measure: str
    section: str
    meaning: str
    by_op: dict[str, tuple] = field(default_factory=dict)
    digits: str = ".4g"  # how a value is best shown (rho needs six decimals to differ from 1; shares are %)

    def expected(self, op: str | None = None) -> tuple[float | None, float | None]:
        """(low, high) for `op`: its own where the paper gives one, else the range over all operations."""
        return self.by_op.get(op, (self.low, self.high))

    def describe(self, op: str | None = None) -> str:
        """The paper's figure as a table shows it: the operation's own value where there is one, else as quoted."""
        if op in self.by_op:
            low, high = self.by_op[op]
            between = " to " if low < 0 else "-"  # -75 to -30, not -75--30
            return f"{self.show(low)} ({op})" if low == high else f"{self.show(low)}{between}{self.show(high)} ({op})"
        return self.quoted

    def per_op(self) -> str:
        """The paper's value for each operation, e.g. "add 2.04, sub 1.81" (its point values only)."""
        return ", ".join(f"{op} {self.show(low)}" for op, (low, high) in self.by_op.items() if low == high)

    def show(self, value) -> str:
        """A measured value of this quantity, formatted."""
        return "none" if value is None else format(value, self.digits) if isinstance(value, float) else str(value)

    def contains(self, value: float | None, op: str | None = None) -> bool | None:
        """Whether `value` lies in the paper's range (None where either has no number)."""
        low, high = self.expected(op)
        if value is None or low is None:
            return None
        return low <= value <= high


WALKTHROUGH = (
    Reference(
        "memorization_step",
        "memorization step",
        300,
        500,
        "300-500 steps at lr 1e-3",
        "first evaluation with train accuracy >= 0.95",
        "§4",
        "train accuracy reaches 95%: the training set is learnt",
    ),
    Reference(
        "onset_step",
        "curvature onset",
        1800,
        2100,
        "1800-2100",
        "first probe (from the third) with median D > 10 x the first three probes' median and D > 20, K = 5 "
        "samples every 100 steps",
        "§7.1, §10 #10",
        "the commutator defect first exceeds 10x its early level (and 20)",
        by_op={"x2_y2": (500, 700)},
    ),
    Reference(
        "grok_step_90",
        "grok step (90%)",
        1867,
        3433,
        "~1900-3400 (Table 1)",
        "first evaluation with test accuracy >= 0.90, mean of seeds 42/137/2024",
        "§4, §10 #4",
        "test accuracy reaches 90%: the model generalises",
        by_op={op: (v, v) for op, v in TABLE1.items()},
    ),
    Reference(
        "lead_steps",
        "lead time",
        600,
        1600,
        "600-1600 (mean 1117)",
        "grok_step_90 - onset_step",
        "§7.2, §10 #10",
        "grok step minus onset: how early curvature warns of grokking",
    ),
    Reference(
        "defect_growth",
        "defect growth to grok_90",
        30,
        30,
        "~30x (D: 2 -> 20 -> 60, so 60 / 2: the paper states no ratio)",
        "max D up to and including grok_step_90 / the early baseline",
        "§6.6",
        "how much the curvature has grown by the time the model generalises",
    ),
    Reference(
        "defect_growth_run",
        "defect growth, whole run",
        513,
        2141,
        "513-2141x",
        "max D over the whole run (1,000 steps past detection) / the early baseline",
        "§10 #13",
        "how much it grows in all, grokking and after",
    ),
    Reference(
        "rho",
        "rho = resid/full",
        0.99994,
        0.99999,
        "~1.000",
        "median ||delta - B B^T delta|| / ||delta|| (B: trajectory PCA, K = 16) at the probed parameters",
        "§6.3, §10 #5",
        "share of the curvature vector outside the execution subspace (near 1 for any "
        "16-dim subspace of 290,401 dimensions)",
        digits=".6f",
    ),
    Reference(
        "exec_random_ratio",
        "exec/random (trajectory PCA)",
        0.86,
        1.09,
        "0.86-1.09 (its data; its text: 1.8-2.9)",
        "memorization-phase median of proj/full for B (trajectory PCA, K = 16) over random 16-dim bases",
        "§6.4",
        "curvature leaning into the execution subspace vs a random one, during memorization: "
        "about 1 (none) in tinygrok's controls, 0.81-1.13, as in the reference's data",
        by_op={op: (v, v) for op, v in {"add": 0.86, "sub": 1.03, "mul": 1.09}.items()},
    ),
    Reference(
        "exec_random_ratio_weight_svd",
        "exec/random (weight SVD)",
        1.81,
        2.91,
        "1.8-2.9",
        "the same with the current-weight-SVD basis (top-3 singular pairs per matrix, K = 24), the basis the "
        "reference's control used (every 100 steps, 7 samples, as tinygrok's controls grid; tinygrok grok: every "
        "200 steps, 5 samples)",
        "§6.4, §10 #7",
        "the same with the reference code's basis: ~2 at low defect (1.83-2.46 for D in "
        "5-15 in tinygrok's controls), falling as D rises",
        by_op={op: (v, v) for op, v in {"add": 2.04, "sub": 1.81, "mul": 2.18, "x2_y2": 2.91}.items()},
    ),
    Reference(
        "alignment_ratio",
        "alignment with curvature",
        0.81,
        1.91,
        "0.81-1.91 (seed 42)",
        "median over the saved thetas of mean |cos(step since the previous one, delta_k)| over 12 defects, "
        "over sqrt(2 / (pi P)) (two random directions' mean |cos|)",
        "§6.5, §10 #24",
        "whether the weights move along the curvature directions (1: no more than a random direction)",
        by_op={op: (v, v) for op, v in {"add": 0.81, "sub": 0.89, "mul": 1.04, "x2_y2": 1.91}.items()},
    ),
)

PC1_MEASURE = "sigma_1^2 / sum sigma^2 of each attention matrix's centred trajectory up to detection, per matrix"
PC1 = Reference(
    "pc1",
    "PC1 share",
    0.628,
    0.831,
    "68-83%; per matrix 62.8-83.1%",
    PC1_MEASURE,
    "§5.1, §5.4, §10 #1",
    "the fraction of a matrix's motion along a single direction",
    by_op={"add": (0.638, 0.815), "sub": (0.663, 0.798), "mul": (0.635, 0.808), "x2_y2": (0.667, 0.824)},
    digits=".1%",
)
PC1_NO_GROKKING = Reference(
    "pc1",
    "PC1 share, no grokking",
    0.378,
    0.532,
    "42-49% (per matrix, seed means: 37.8-53.2%)",
    PC1_MEASURE + ", over all 200,000 steps",
    "§5.4",
    "a trajectory that never generalises is far less one-dimensional",
    by_op={"x2_xy_y2": (0.378, 0.485), "x3_xy": (0.439, 0.532)},
    digits=".1%",
)
PC1_NO_DECAY = Reference(
    "pc1",
    "PC1 share, no weight decay",
    0.49,
    0.75,
    "49-75%",
    PC1_MEASURE + ", over 50,000 steps",
    "§5.4",
    "without weight decay the trajectory is still low-dimensional, but no more than a grokking one",
    by_op={"add": (0.619, 0.691)},
    digits=".1%",
)

PC1_NULL_Z = Reference(
    "pc1_null_z",
    "PC1 z-score vs random walks",
    40,
    110,
    "5-20 sigma (text); figE: +40 to +110 (grokking ops), -30 to -75 (x2_xy_y2, x3_xy)",
    "(PC1 - mean PC1 of 10 random walks with the run's step norms) / their sd, per "
    "matrix (figE: the last layer's, seed means)",
    "§5.3, §10 #3",
    "how far the trajectory is from a random walk of the same step sizes: far more one-dimensional",
    by_op={op: (-75, -30) for op in NON_GROKKING_OPS},
    digits=".1f",
)


def pc1_reference(op: str, weight_decay: float, n_layers: int = 2) -> Reference | None:
    """The paper's PC1 range for runs of `op` at this weight decay (§5.4: the seed means of each matrix), for the
    2-layer model at weight decay 1 or 0; None otherwise (the slow regime's differ, §9.1)."""
    if n_layers != 2 or weight_decay not in (0.0, 1.0):
        return None
    if weight_decay == 0:
        return PC1_NO_DECAY
    return PC1 if op in GROKKING_OPS else PC1_NO_GROKKING


GROWTH_WITHOUT_GROKKING = Reference(
    "defect_growth_run",
    "defect growth, no grokking",
    29,
    47,
    "x2_xy_y2 47x, x3_xy 31x, add without decay 29x",
    "max D over the run / the early baseline, for runs that do not grok",
    "§10 #13",
    "curvature grows far less where the model never generalises",
    by_op={"x2_xy_y2": (47, 47), "x3_xy": (31, 31), "add": (29, 29)},
)

POWER_LAW = Reference(
    "alpha",
    "lead-time power law",
    1.24,
    1.30,
    "alpha = 1.27 ± 0.03, R² 0.97, n 43 (v1, 6 learning rates)",
    "OLS slope of log(detection - onset) on log(detection step) over runs with a positive lead",
    "§7.4, §10 #20",
    "lead grows faster than the grok time: slower training gives proportionally earlier warning",
)

BY_KEY = {ref.key: ref for ref in (*WALKTHROUGH, PC1)}


# ---------------------------------------------------------------------- the interventions (§8.3)
# Each arm declares what the paper reports for it (interventions.py: PAPER); here they are gathered, keyed by
# (op, hook name, dose, basis), the identity arms (no hook, project at s = 0) under ("none", 0.0).
INTERVENTIONS: dict[tuple, interventions.Reported] = {
    (op, name, dose, basis): reported
    for name, hook in interventions.HOOKS.items()
    for (op, dose, basis), reported in hook.PAPER.items()
}


def intervention(op: str, arm: str, dose: float, basis: str) -> str:
    """What the paper reports for this arm, as a table shows it ("" where it reports nothing)."""
    if (op, arm, dose, basis) not in INTERVENTIONS:
        return ""
    step, source, delay, text, figi4 = INTERVENTIONS[op, arm, dose, basis]
    return (
        (text or ("DNF (0/3)" if step is None else f"~{step}"))
        + (f", +{delay}" if delay else "")
        + f" ({source}"
        + (f"; figI4: {figi4}" if figi4 else "")
        + ")"
    )


def primary_step(arm: str) -> int:
    """figI4's grok step for add under `arm` at its primary strength (its default; "none": no intervention)."""
    hook = interventions.parse(arm)
    reported = INTERVENTIONS["add", hook.NAME, getattr(hook, hook.DOSE) if hook.DOSE else 0.0, "pca"]
    return reported.figi4 or reported.step


def _step_range(arms: tuple) -> tuple[int, int]:
    """The lowest and highest grok step the paper reports for add under these arms, at any dose."""
    steps = [r.step for (op, arm, _, _), r in INTERVENTIONS.items() if op == "add" and arm in arms and r.step]
    return min(steps), max(steps)


# ---------------------------------------------------------------------- the claims, one by one (tinygrok reproduce)
@dataclass(frozen=True)
class Claim:
    """One claim of the paper as the results page of `tinygrok reproduce` shows it (docs/paper.md §10's rows, and
    §8.3's and §9's claims): where it is, what it says, the paper's figure as quoted and the reference's stored data
    where docs/paper.md gives them; and how tinygrok measures it: `measure` (a measure of lab/results_page.py, given
    `args`) over the runs `where` selects (lab/results_page.py's select) in the first of `stages` that the scale's
    plan has, judged against the paper's [low, high] (None: no number to judge by). `differs`: why tinygrok's number
    is expected to differ, where it is known (shown when it does); `digits`: how its values are shown; `figure`: the
    report figure (lab/sweep_report.py's FIGURES) it is seen in. `paper_runs_all_grokked`: every run behind the
    paper's number grokked and the number is of runs through grokking, so a run of tinygrok's that never grokked in
    the paper's steps makes the claim differ, instead of leaving the others to judge it."""

    number: str
    words: str
    quoted: str
    measure: str
    stages: tuple = ()
    where: dict = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    stored: str = ""
    differs: str = ""
    digits: str = ""
    figure: str = ""
    args: dict = field(default_factory=dict)
    paper_runs_all_grokked: bool = False


_LR_GROK = {1e-4: (29433, 36767), 1e-3: (2600, 3667), 1e-2: (567, 4000)}  # §10 #16: the op means' range
_LR_DEFECT = {1e-4: (9332, 11148), 1e-3: (1447, 3545), 1e-2: (18, 64)}  # §10 #17
_LR_LEAD = {1e-4: (23033, 32900), 1e-3: (733, 1400), 1e-2: (-1550, -633)}  # §10 #18
_LR_DEFECT_NO_GROKKING = {1e-4: (21010, 33056), 1e-3: (54, 104), 1e-2: (16, 18)}  # §10 #17: x2_xy_y2, x3_xy
_LR_HERO = {1e-4: 33000, 1e-3: 1400}  # §10 #21: figPD2's best-lead seed of add (its "~0" at 1e-2 is no point value
# that a relative margin can judge, so it is not a claim here)
_LR_CHECKPOINTS = {  # §10 #23: add's defect at the LR-alignment study's checkpoints (figPD4), seed 42
    (1e-4, 3000): ("memorization", 32), (1e-4, 28000): ("spike", 5589), (1e-4, 33000): ("post-grok", 1268),
    (1e-3, 400): ("memorization", 5.9), (1e-3, 2600): ("spike", 44), (1e-3, 3300): ("post-grok", 155),
}  # fmt: skip
_PHASES = {"early": (1.2, 2.1), "pre-grok": (0.8, 1.3), "post-grok": (0.63, 0.82)}  # §10 #7: stored phase medians
_FLOAT32 = "float32 rounding dominates late defects ([differences](differences.md), [paper](paper.md) §6.6)"
_WITHOUT_GROKKING = {  # §10 #13: GROWTH_WITHOUT_GROKKING's runs by its by_op key: their words, runs, known difference
    "x2_xy_y2": ("x2_xy_y2", dict(ops="x2_xy_y2"), ""),
    "x3_xy": ("x3_xy", dict(ops="x3_xy"), ""),
    "add": ("add without weight decay", dict(ops="add", weight_decay=0.0), _FLOAT32),
}
_PCA, _TABLE, _LR = ("pca",), ("table1",), ("lr-sweep",)
_FIGI4 = ("interventions-primary", "interventions-add")  # the primary arms: their own grid, or in the whole one
_FIGI6 = ("random-basis", "interventions-add")
_PROJECT = dict(arm="project", basis="pca")
_GROKKED = dict(paper_runs_all_grokked=True)  # every run behind the paper's number grokked (Claim)


def _table2(number: str, words: str, quoted: str, key: str) -> Claim:
    """A claim on Table 2's values of `key`, judged by their range; `quoted` shows them ({seeds}) and their mean."""
    values = [row[key] for row in TABLE2.values()]
    shown = quoted.format(seeds=" / ".join(f"{v:,}" for v in values), mean=f"{statistics.mean(values):,.0f}")
    grokked = key != "onset_step"  # an onset comes in a run that never groks too
    return Claim(number, words, shown, "mean", ("slow",), {}, min(values), max(values), figure="defect_by_op",
                 args=dict(key=key), paper_runs_all_grokked=grokked)  # fmt: skip


def pc1_text(pc1: dict[str, float]) -> str:
    """PC1 per attention matrix, as "80.5% / 80.1% / ..." in W_Q, W_K, W_V, W_O order."""
    return " / ".join(f"{pc1[m]:.1%}" if m in pc1 else "—" for m in ("W_Q", "W_K", "W_V", "W_O"))


# fmt: off
CLAIMS: tuple[Claim, ...] = (
    Claim("§10 #1", "grokking runs' attention trajectories are nearly one-dimensional",
          "PC1 68-83% (v1); per matrix 62.8-83.1% (stored)", "per_matrix", _PCA,
          dict(ops="grokking", weight_decay=1.0), PC1.low, PC1.high, "per matrix 62.8-83.1%, per-run mean 68.2-76.8%",
          digits=".1%", figure="pc1_by_op", args=dict(key="pc1")),
    Claim("§10 #2", "runs that never grok are far less one-dimensional", "PC1 42-49% (200,000 steps)",
          "per_matrix", _PCA, dict(ops="non_grokking", weight_decay=1.0), PC1_NO_GROKKING.low, PC1_NO_GROKKING.high,
          "per matrix, seed means 37.8-53.2%", "a shorter trajectory is more one-dimensional", digits=".1%",
          figure="pc1_by_op", args=dict(key="pc1")),
    Claim("§10 #2", "without weight decay the trajectory is low-dimensional too", "PC1 49-75% (50,000 steps)",
          "per_matrix", _PCA, dict(weight_decay=0.0), PC1_NO_DECAY.low, PC1_NO_DECAY.high, "add 61.9-69.1%",
          digits=".1%",
          figure="pc1_by_op", args=dict(key="pc1")),
    Claim("§10 #3", "PC1 is far above a random walk with the same step sizes (the last layer)",
          "5-20 sigma (text); figE +40 to +110", "per_matrix", _PCA, dict(ops="grokking", weight_decay=1.0),
          PC1_NULL_Z.low, PC1_NULL_Z.high,
          digits=".1f", args=dict(key="pc1_null_z", layer="last")),
    Claim("§10 #3", "the non-grokking operations' PC1 is below a random walk's (the last layer)",
          "figE -75 to -30", "per_matrix", _PCA, dict(ops="non_grokking", weight_decay=1.0),
          *PC1_NULL_Z.expected(NON_GROKKING_OPS[0]),
          digits=".1f", args=dict(key="pc1_null_z", layer="last")),
    *(Claim("§10 #4", f"{op} groks (Table 1)", f"grok_90 ~{step} (mean of 3 seeds)", "mean", _TABLE,
            dict(ops=op, weight_decay=1.0),
            step, step, figure="defect_by_op", args=dict(key="grok_step_90"), **_GROKKED)
      for op, step in TABLE1.items()),
    Claim("§10 #4", "x2_xy_y2 and x3_xy never grok", "never", "grokked", _TABLE,
          dict(ops="non_grokking", weight_decay=1.0), 0, 0),
    Claim("§10 #5", "the curvature lies outside the execution subspace", "rho ≈ 1.000", "rho", _TABLE,
          dict(ops="grokking"), *BY_KEY["rho"].expected(), "0.99994-0.99999 over 36 conditions", digits=".6f",
          args=dict(key="rho")),
    Claim("§10 #6", "the defect's share in the reference's execution basis (weight SVD) is small",
          "proj/full 0.005-0.03 (figC1)", "geometry_median", ("controls",), dict(ops="grokking"), 0.005, 0.03,
          figure="exec_random_by_step", args=dict(key="weight_svd_proj")),
    Claim("§10 #7", "curvature is enriched in the execution subspace over random ones (the reference's basis)",
          "exec/random 1.8-2.9 (weight SVD, memorization phase)", "mean", ("controls",), dict(ops="grokking"),
          *BY_KEY["exec_random_ratio_weight_svd"].expected(), BY_KEY["exec_random_ratio_weight_svd"].per_op(),
          figure="exec_random_by_step",
          args=dict(key="exec_random_ratio_weight_svd")),
    Claim("§10 #7", "the same with the trajectory-PCA execution basis", "0.86-1.09 (the reference's data)",
          "mean", ("controls",), dict(ops="grokking"), *BY_KEY["exec_random_ratio"].expected(),
          BY_KEY["exec_random_ratio"].per_op(),
          figure="exec_random_by_step", args=dict(key="exec_random_ratio")),
    *(Claim("§10 #7", f"exec/random (weight SVD) in the {phase} phase", f"{low}-{high} (the reference's data, "
            "seed 42)" + (": below 1, though the text says 'consistently above 1.0'" if phase == "post-grok" else ""),
            "phase_median", ("controls",), dict(ops="grokking", seed=42), low, high, figure="exec_random_by_step",
            args=dict(key="weight_svd_random_ratio", phase=phase)) for phase, (low, high) in _PHASES.items()),
    Claim("§10 #8", "exec/random at K = 16 / 32", "2.46/2.09 (add) ... 2.52/2.65 (x2_y2)", "unmeasured",
          args=dict(why="the dimension sweep (`tinygrok dimensions RUN`) is not one of the grids")),
    Claim("§10 #9", "the defect ends far higher in grokking runs than in runs that never grok",
          "10-1000x (the stored data: 6-50x)", "final_defect_ratio", _TABLE, {}, 6, 50,
          "last-checkpoint medians: add 1920/955/1206 ... x2_xy_y2 66/67/56, x3_xy 36/43/37", _FLOAT32),
    Claim("§10 #10", "the curvature onset precedes grok_90", "leads 600-1600 steps, mean 1117 (12/12)", "mean",
          _TABLE, dict(ops="grokking"), *BY_KEY["lead_steps"].expected(),
          "1300,1400,600 / 1100,1600,1500 / 600,900,700 / 1400,1200,1100",
          figure="defect_by_op", args=dict(key="lead_steps"), **_GROKKED),
    Claim("§10 #10", "the onset comes at 1800-2100 steps", "onset 1800-2100 (add, sub, mul)", "mean", _TABLE,
          dict(ops=("add", "sub", "mul"), weight_decay=1.0), *BY_KEY["onset_step"].expected(), figure="defect_by_op",
          args=dict(key="onset_step")),
    Claim("§10 #10", "x2_y2's onset comes early", "onset 500-700", "mean", _TABLE, dict(ops="x2_y2"),
          *BY_KEY["onset_step"].expected("x2_y2"),
          figure="defect_by_op", args=dict(key="onset_step")),
    Claim("§10 #11", "all leads are positive: a sign test", "12 of 12, p = 2^-12 ≈ 2.4e-4", "sign_test", _TABLE,
          dict(ops="grokking"), 1, 1, **_GROKKED),
    Claim("§10 #12", "the hero run: sub, seed 137", "onset 2000, grok_90 3600, lead 1600", "mean", _TABLE,
          dict(ops="sub", seed=137), 1600, 1600, args=dict(key="lead_steps"), **_GROKKED),
    Claim("§10 #13", "grokking runs' defect grows 500-2000x", "513-2141x (max D / early baseline)", "mean", _TABLE,
          dict(ops="grokking"), *BY_KEY["defect_growth_run"].expected(), args=dict(key="defect_growth_run")),
    *(Claim("§10 #13", f"runs that do not grok grow their defect 30-50x: {words}",
            f"{GROWTH_WITHOUT_GROKKING.by_op[op][0]}x", "mean", _TABLE, where, *GROWTH_WITHOUT_GROKKING.expected(op),
            differs=differs, args=dict(key="defect_growth_run"))
      for op, (words, where, differs) in _WITHOUT_GROKKING.items()),
    Claim("§10 #14", "the onset precedes grok_50 too", "lead to grok_50: mean 708", "lead_50", _TABLE,
          dict(ops="grokking"), 708, 708),
    Claim("§10 #15", "the four grokking operations grok at every learning rate", "3/3 at every rate",
          "grokked", _LR, dict(ops="grokking"), 1, 1),
    Claim("§10 #15", "x2_xy_y2 and x3_xy grok at none", "0/3 at every rate", "grokked",
          ("lr-sweep-non-grokking", "lr-sweep"), dict(ops="non_grokking"), 0, 0),
    *(Claim("§10 #16", f"grok (detection) step at lr {lr:g}", f"{low}-{high} (op means)", "mean", _LR,
            dict(ops="grokking", lr=lr), low, high, figure="lead_vs_grok", args=dict(key="grok_step"))
      for lr, (low, high) in _LR_GROK.items()),
    *(Claim("§10 #17", f"max defect at lr {lr:g}", f"{low}-{high} (op means)", "max_defect", _LR,
            dict(ops="grokking", lr=lr), low, high) for lr, (low, high) in _LR_DEFECT.items()),
    *(Claim("§10 #17", f"max defect of the operations that never grok at lr {lr:g}", f"{low}-{high} (op means)",
            "max_defect", ("lr-sweep-non-grokking", "lr-sweep"), dict(ops="non_grokking", lr=lr), low, high,
            differs="runs stopped before the reference's 50,000 steps (the machine scale: 10,000) miss the defect's "
            "rise, which the grokking operations reach near 28,000 at this rate" if lr == 1e-4 else "")
      for lr, (low, high) in _LR_DEFECT_NO_GROKKING.items()),
    *(Claim("§10 #18", f"lead (grok_90 - onset) at lr {lr:g}", f"{low} to {high} (op means)", "mean", _LR,
            dict(ops="grokking", lr=lr), low, high, figure="lead_vs_grok", args=dict(key="lead_steps"))
      for lr, (low, high) in _LR_LEAD.items()),
    Claim("§10 #19", "the lead is most of the run at lr 1e-4", "(detection - onset) / detection ≈ 0.93",
          "lead_fraction", _LR, dict(ops="grokking", lr=1e-4), 0.93, 0.93),
    Claim("§10 #19", "about half of it at lr 1e-3", "(detection - onset) / detection 0.46-0.49", "lead_fraction",
          _LR, dict(ops="grokking", lr=1e-3), 0.46, 0.49),
    Claim("§10 #19", "v1: 95% of the run at lr 3e-5", "(detection - onset) / detection 0.95", "lead_fraction", _LR,
          dict(ops="grokking", lr=3e-5), 0.95, 0.95),
    Claim("§10 #20", "the lead follows a power law in the grok step", "alpha = 1.27 ± 0.03 (v1, R² 0.97, n 43)",
          "power_law", _LR, dict(ops="grokking"), POWER_LAW.low, POWER_LAW.high,
          "3 rates: 1.26 ± 0.04, R² 0.977, n 29",
          figure="lead_vs_grok"),
    *(Claim("§10 #21", f"the hero LR figure: add's best lead over its seeds at lr {lr:g}", f"≈ {lead:,}", "best",
            _LR, dict(ops="add", lr=lr), lead, lead, args=dict(key="lead_steps")) for lr, lead in _LR_HERO.items()),
    Claim("§10 #22", "alignment of the step with curvature in the LR study", "0.18-0.86 (1e-4), 1.4-1.8 (1e-2)",
          "unmeasured", args=dict(why="the LR sweep saves no parameters, which the alignment is measured at")),
    *(Claim("§10 #23", f"add's defect at the LR study's {phase} checkpoint, lr {lr:g} (step {step:,}, seed 42)",
            f"{defect:g}", "defect_at", _LR, dict(ops="add", lr=lr, seed=42), defect, defect, args=dict(step=step),
            differs="one probe of one run (the paper's: the LR-alignment study's own run, 12 samples; here the LR "
            "sweep's run, 5)") for (lr, step), (phase, defect) in _LR_CHECKPOINTS.items()),
    Claim("§10 #24", "the weights move along curvature directions no more than at random", "0.81-1.91 (seed 42)",
          "mean", _TABLE, dict(ops="grokking", seed=42), *BY_KEY["alignment_ratio"].expected(),
          BY_KEY["alignment_ratio"].per_op(),
          args=dict(key="alignment_ratio")),
    Claim("§10 #24", "the alignment at the first checkpoint (seed 42)", "1.9-2.5", "geometry_at", _TABLE,
          dict(ops="grokking", seed=42), 1.9, 2.5, args=dict(key="alignment_ratio", end="first")),
    Claim("§10 #24", "the alignment at the last checkpoint up to detection", "0.84-2.5 (the multiseed runs, 3 seeds, "
          "which stop at detection)", "geometry_at", _TABLE, dict(ops="grokking"), 0.84, 2.5,
          args=dict(key="alignment_ratio", end="grok")),
    Claim("§10 #27", "the training set is learnt first", "train acc >= 95% at 300-500 steps", "mean", _TABLE,
          dict(ops="grokking"), *BY_KEY["memorization_step"].expected(), args=dict(key="memorization_step")),
    *(Claim("§10 #26, §8.3 figI4", f"add with {arm} at its primary strength groks on time" if arm != "none" else
            "add without intervention (the interventions' baseline)", f"grok step ~{step} (3/3)", "grok_steps",
            _FIGI4, dict(arm=arm, dose=None if arm == "none" else "primary"), step, step)
      for arm, step in ((arm, primary_step(arm)) for arm in ("none", "kick", "noise", "penalty", "project"))),
    Claim("§8.3 figI4", "the baseline's onset", "mean onset 1900", "mean", _FIGI4, dict(arm="none"), 1900, 1900,
          args=dict(key="onset_step")),
    Claim("§8.3 figI4", "the baseline's lead (grok_90 - onset)", "mean lead 1033", "mean", _FIGI4, dict(arm="none"),
          1033, 1033, args=dict(key="lead_steps")),
    Claim("§8.3 figI5", "kicks, noise and the penalty change nothing at any strength", "3167-3333 at every dose",
          "grok_steps", ("interventions-add",), dict(arm=("kick", "noise", "penalty")),
          *_step_range(("kick", "noise", "penalty"))),
    *(Claim("§8.3", f"removing a share s = {s:g} of the orthogonal gradient delays grokking (add)",
            f"+{delay} steps", "delay", ("dose-response",), dict(ops="add", dose=s, **_PROJECT), delay, delay,
            figure="dose_response") for s, delay in ((s, INTERVENTIONS["add", "project", s, "pca"].delay)
                                                      for s in (0.25, 0.5, 0.75))),
    Claim("§8.3 figI10", "at s = 0.75 every operation is delayed", "+600-800 (the plot: +500 to +870)", "delay",
          ("dose-response",), dict(ops="grokking", dose=0.75, **_PROJECT), 500, 870, figure="dose_response"),
    Claim("§8.3 figI10", "removing all of it (s = 1) prevents grokking", "0/12 (every operation)", "grokked",
          ("dose-response",), dict(ops="grokking", dose=1.0, **_PROJECT), 0, 0, figure="dose_response"),
    Claim("§8.3 figI6", "a random basis in place of the execution basis changes little at s <= 0.75",
          "< 50 steps from the baseline", "delay", _FIGI6, dict(ops="add", dose=(0.25, 0.5, 0.75), arm="project",
                                                                  basis="random"), -50, 50),
    Claim("§8.3 figI6", "a random basis at s = 1 prevents grokking too", "0/3", "grokked", _FIGI6,
          dict(ops="add", dose=1.0, arm="project", basis="random"), 0, 0),
    Claim("§8.3 figI8", "sustained kicks along curvature or at random change nothing", "~3200 (3167-3300)",
          "grok_steps", ("kicks",), dict(arm=("sustained_kick", "random_kick")),
          *_step_range(("sustained_kick", "random_kick"))),
    Claim("§8.3 figI8", "every kicked run groks", "27/27 (9 conditions x 3 seeds, the baseline among them)",
          "grokked", ("kicks",),
          dict(arm=("sustained_kick", "random_kick")), 1, 1),
    _table2("§10 #25, §9.2 Table 2", "the slow regime groks late", "detection {seeds} (seeds 42 / 137)", "grok_step"),
    _table2("§10 #25, §9.2 Table 2", "its grok_90", "{seeds}", "grok_step_90"),
    _table2("§9.2", "its onset by the released rule (floor 5)", "{seeds} (seeds 42 / 137)", "onset_step"),
    _table2("§10 #25, §9.2 Table 2", "its lead", "{seeds} (mean {mean})", "lead_steps"),
    Claim("§9.2", "its normalised lead (grok_90 - onset) / detection", "≈ 0.94 by the released rule (0.55, "
          "smoothed, unreleased)", "normalised_lead", ("slow",), {}, 0.94, 0.94, figure="defect_by_op", **_GROKKED),
    Claim("§9.2 Table 2", "its defect at the grok point (the probe before grok_90)", "≈ 100 (fast regime ≈ 1300)",
          "defect_before_grok", ("slow",), {}, 100, 100, differs=_FLOAT32, figure="defect_by_op", **_GROKKED),
    Claim("§10 #25, §9.2", "its curvature lies outside the execution subspace",
          f"rho {SLOW_RHO_TEXT}", "rho",
          ("slow",), {}, *SLOW_RHO, digits=".6f", args=dict(key="rho"), **_GROKKED,
          differs="B spans the last layer's 8 directions here (the reference: 24, every layer's), so rho can only "
          "be as high or higher ([differences](differences.md))"),
    Claim("§9.1 figH", "its last layer's trajectories are more one-dimensional (on its snapshots to detection)",
          f"PC1 (W_Q / W_K / W_V / W_O) {pc1_text(SLOW_PC1_33)} on {SLOW_SNAPSHOTS} snapshots; "
          f"{pc1_text(SLOW_PC1_ALL)} on all ~290", "per_matrix", ("slow",), {}, min(SLOW_PC1_33.values()),
          max(SLOW_PC1_33.values()), digits=".1%", figure="pc1_by_op", args=dict(key="pc1", layer="last"), **_GROKKED),
    Claim("§9.3", "the onset precedes grokking in the slow regime", "2/2 runs", "positive_leads", ("slow",), {},
          1, 1, figure="defect_by_op", **_GROKKED),
    Claim("§9.3", "the slow regime's steps align with curvature at or below a random direction's",
          "alignment ratio <= 1 (fast: above, then decaying)", "unmeasured",
          args=dict(why="the slow runs keep only their final parameters, what a carried state can hold; the "
                    "alignment needs two saved 200 steps apart")),
)
# fmt: on
