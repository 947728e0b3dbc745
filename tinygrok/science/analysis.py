"""Reading a run's metric rows: grok steps and memorization (docs/paper.md §4), curvature onset and lead (§7); and the
statistics over many runs: mean and sd, the sign test, the power law of lead against grok step (§7.3, §7.4)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import scipy.special

from tinygrok.science import undefined

MEMORIZED = 0.95  # the train accuracy that marks the memorization step (§4)


def first_step(rows: Iterable[dict], key: str, threshold: float) -> int | None:
    """The first evaluated step whose `key` is at least `threshold` (grok_90: key test_acc, threshold 0.9)."""
    return next((r["step"] for r in rows if r.get(key) is not None and r[key] >= threshold), None)


def first_move(steps, values, start: int, end: int, fraction: float = 0.25) -> int | None:
    """The first step after `start` at which `values` have gone `fraction` of their way from their value at
    `start` to their value at `end` (in either direction): when a measure starts to move, read on one run. start
    and end must be among the steps; None if no later step gets there, or if the values at start and end are
    equal (no way to go)."""
    at = dict(zip(steps, values))
    if at[end] == at[start]:
        return None
    target = at[start] + fraction * (at[end] - at[start])
    sign = 1 if at[end] >= at[start] else -1
    return next((step for step, value in zip(steps, values) if step > start and sign * (value - target) >= 0), None)


def detection_step(rows: Iterable[dict], threshold: float = 0.98, patience: int = 3) -> int | None:
    """The step of the `patience`-th consecutive evaluation with test accuracy >= threshold (the early stop)."""
    streak = 0
    for r in rows:
        streak = streak + 1 if r["test_acc"] >= threshold else 0
        if streak == patience:
            return r["step"]
    return None


def grok_summary(rows: list[dict], threshold: float = 0.98, patience: int = 3) -> dict:
    """The grok and memorization steps of §4 (None where never reached).

    grok_step_90: first evaluation with test accuracy >= 0.90 (the paper's Table 1 "grok step");
    grok_step: the detection step, test accuracy >= threshold on `patience` consecutive evaluations;
    memorization_step: first evaluation with train accuracy >= MEMORIZED (0.95).
    """
    return {
        "grok_step_90": first_step(rows, "test_acc", 0.90),
        "grok_step": detection_step(rows, threshold, patience),
        "memorization_step": first_step(rows, "train_acc", MEMORIZED),
    }


def curvature_onset(rows: list[dict], factor: float = 10.0, floor: float = 20.0) -> dict:
    """The curvature onset rule of §7.1 on the probed rows (step 0, 100, 200, ...).

    baseline = max(median D of the first 3 probed rows, 0.1); onset = the first probed row with index >= 2
    whose D > factor * baseline and D > floor (fast regime: 10x and 20; slow regime: floor 5).
    """
    probed = [r for r in rows if r.get("defect") is not None]
    if len(probed) < 3:
        return {"baseline_defect": None, "onset_step": None}
    baseline = max(statistics.median(r["defect"] for r in probed[:3]), 0.1)
    onset = next((r["step"] for r in probed[2:] if r["defect"] > factor * baseline and r["defect"] > floor), None)
    return {"baseline_defect": baseline, "onset_step": onset}


def curvature_summary(rows: list[dict], factor: float = 10.0, floor: float = 20.0) -> dict:
    """Onset, lead = grok_90 - onset (§7.2), and defect growth = max D / baseline, over the rows up to and
    including grok_90 ("before grokking") and over the whole run (the paper's 500-2000x, docs/paper.md §10 #13)."""
    onset = curvature_onset(rows, factor, floor)
    grok_90 = first_step(rows, "test_acc", 0.90)
    probed = [r for r in rows if r.get("defect") is not None]
    if onset["baseline_defect"] is None:
        return {**onset, "lead_steps": None, "defect_growth": None, "defect_growth_run": None}
    before = [r["defect"] for r in probed if grok_90 is None or r["step"] <= grok_90]
    return {
        **onset,
        "lead_steps": None if onset["onset_step"] is None or grok_90 is None else grok_90 - onset["onset_step"],
        "defect_growth": max(before) / onset["baseline_defect"],
        "defect_growth_run": max(r["defect"] for r in probed) / onset["baseline_defect"],
    }


def defect_features(rows: list[dict]) -> dict:
    """What float32 rounding may make of the defect record (§6.6): probes whose median D is exactly 0, and the
    largest D up to and including grok_90 (the pre-grokking rise) and after it (the post-grokking spikes)."""
    grok_90 = first_step(rows, "test_acc", 0.90)
    probed = [r for r in rows if r.get("defect") is not None]
    before = [r["defect"] for r in probed if grok_90 is None or r["step"] <= grok_90]
    after = [r["defect"] for r in probed if grok_90 is not None and r["step"] > grok_90]
    return {
        "zero_defects": sum(r["defect"] == 0 for r in probed),
        "probes": len(probed),
        "max_defect_before_grok": max(before, default=None),
        "max_defect_after_grok": max(after, default=None),
    }


def phase(row: dict) -> str:
    """The controls' phase of an evaluation row (§4, figC4): post-grok once test acc >= 0.95; memorization while
    train acc >= 0.95 and test acc < 0.3; pre-grok for the rest of train acc >= 0.95; early before it."""
    if row["test_acc"] >= 0.95:
        return "post-grok"
    if row["train_acc"] < MEMORIZED:
        return "early"
    return "memorization" if row["test_acc"] < 0.3 else "pre-grok"


def memorization_phase(rows: list[dict]) -> list[int]:
    """Steps in the memorization phase of the controls (§4): train acc >= 0.95 and test acc < 0.3."""
    return [r["step"] for r in rows if phase(r) == "memorization"]


# tinygrok's bins of the defect D (§6.4: the ratio falls as D rises)
DEFECT_LEVELS = (
    (5.0, 15.0),
    (15.0, 30.0),
    (30.0, math.inf),
)


def by_defect_level(rows: list[dict], key: str, levels=DEFECT_LEVELS) -> dict[str, float | None]:
    """The median of rows' `key` within each level [low, high) of their defect D (rows with an undefined value or
    no D left out): inside the memorization phase exec/random falls as D rises (§6.4), so a median over a window
    depends on how many high-D rows it holds; per level it does not. Label ("5-15", ">=30") -> median or None."""
    out = {}
    for low, high in levels:
        values = [r.get(key) for r in rows if r.get("defect") is not None and low <= r["defect"] < high]
        out[f">={low:g}" if high == math.inf else f"{low:g}-{high:g}"] = undefined.median(values)
    return out


# ---------------------------------------------------------------------- over many runs (docs/paper.md §7.3, §7.4)
def mean_sd(values: Iterable[float | None]) -> dict:
    """Mean, sample standard deviation and count of the values that are not None (sd None below two)."""
    kept = [v for v in values if v is not None]
    return {
        "mean": statistics.mean(kept) if kept else None,
        "sd": statistics.stdev(kept) if len(kept) > 1 else None,
        "n": len(kept),
    }


POINT_MARGIN = 0.2  # a point value of the paper replicates only if tinygrok's mean is within 20% of it
VERDICT_RULE = (
    "*replicates*: a range of the paper holds tinygrok's mean (a fit's ± 2 standard errors, or a share of runs "
    "itself, meets it); a point value of the paper lies inside the 95% interval of tinygrok's mean (Student's t; "
    "one run: no interval, so the 20% alone decides; never narrower than the values' resolution, e.g. 100 steps "
    "for a step counted at evaluations every 100) and the mean is within 20% of it. *too few runs to tell*: the "
    "point lies inside the interval but the mean is not within 20% of it (the interval is wider than the effect). "
    "*differs*: otherwise."
)


def verdict(
    values: list[float], low: float, high: float, interval: tuple | None = None, resolution: float = 0.0
) -> str:
    """The one rule that judges tinygrok's values against the paper's [low, high] (low == high: a point value);
    VERDICT_RULE says it in words. `resolution`: how finely each value is measured (a step counted at evaluations
    every 100 steps is known to within 100), the least half-width of the mean's interval. Returns "replicates",
    "too few runs to tell" or "differs"."""
    mean = statistics.mean(values)
    if interval is not None:
        return "replicates" if interval[0] <= high and interval[1] >= low else "differs"
    if low < high:
        return "replicates" if low <= mean <= high else "differs"
    close = abs(mean - low) <= POINT_MARGIN * abs(low)
    if len(values) == 1:
        return "replicates" if close else "differs"
    half = max(spread_half_width(values), resolution)
    if abs(mean - low) > half:
        return "differs"
    return "replicates" if close else "too few runs to tell"


def spread_half_width(values: list[float]) -> float:
    """The half-width of the 95% interval of the values' mean from their spread (Student's t; two values or more)."""
    return scipy.special.stdtrit(len(values) - 1, 0.975) * statistics.stdev(values) / math.sqrt(len(values))


def sign_test(leads: Iterable[float | None]) -> dict:
    """One-sided sign test that leads are positive: of n leads (None dropped, ties at 0 dropped), k positive;
    p = P(X >= k) for X ~ Binomial(n, 1/2). All 12 positive: p = 2^-12 (the paper's 2.4e-4)."""
    signs = [v > 0 for v in leads if v is not None and v != 0]
    n, k = len(signs), sum(signs)
    p = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else None
    return {"n": n, "positive": k, "p": p}


def power_law(grok_steps: Iterable[float], leads: Iterable[float | None]) -> dict:
    """lead = C grok^alpha, fitted by OLS of log(lead) on log(grok) over the runs with lead > 0 (§7.4): alpha, its
    standard error, C, R^2, n, and how many runs were dropped (lead <= 0 or missing)."""
    pairs = list(zip(grok_steps, leads))
    kept = [(math.log(grok), math.log(lead)) for grok, lead in pairs if grok and lead is not None and lead > 0]
    n = len(kept)
    if n < 3:
        raise ValueError(f"a power-law fit needs at least 3 runs with a positive lead, got {n}")
    x, y = (list(v) for v in zip(*kept))
    mx, my = statistics.mean(x), statistics.mean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        raise ValueError("a power-law fit needs runs with different grok steps")
    alpha = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    residuals = [b - my - alpha * (a - mx) for a, b in zip(x, y)]
    ss_res, ss_tot = sum(r * r for r in residuals), sum((b - my) ** 2 for b in y)
    return {
        "alpha": alpha,
        "alpha_se": math.sqrt(ss_res / (n - 2) / sxx),
        "C": math.exp(my - alpha * mx),
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
        "n": n,
        "dropped": len(pairs) - n,
    }
