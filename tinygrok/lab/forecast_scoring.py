"""The grok-step forecaster over many runs: refitting it from run directories, and scoring it honestly.

Scored leave-one-seed-out and leave-one-learning-rate-out: every run is forecast by a forecaster (and each
baseline) fitted on the runs that share neither its seed, or its learning rate. For a run that groks: at its
curvature onset and at 25%, 50% and 75% of its grok_90 T, the absolute error |T_hat - T| / T, whether the 80%
interval holds T, and the interval's width / T; and how far ahead of T the first confident forecast came. For a
run that never groks: whether any forecast over the whole run was a confident "it groks" (a false alarm), and at
what share of its probes.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from tinygrok.run.grok_forecaster import mismatch, model_of, record_of
from tinygrok.run.runs import Run, RunError
from tinygrok.science.analysis import curvature_onset
from tinygrok.science.forecast import METHODS, Forecast, Predictor, Record, before_grok

POINTS = (("at onset", None), ("at 25%", 0.25), ("at 50%", 0.50), ("at 75%", 0.75))
SCHEMES: dict[str, Callable[[Record], object]] = {
    "leave one seed out": lambda r: r.seed,
    "leave one learning rate out": lambda r: r.lr,
}


def records_under(paths: list[Path]) -> tuple[list[Record], dict]:
    """The records of every trained run under the paths (run directories, or sweep directories holding them),
    in name order, and the model they share; a RunError in one line if they differ or hold none."""
    dirs = sorted(
        {
            d
            for path in paths
            for d in ([path] if (path / "config.json").exists() else (c.parent for c in path.glob("*/config.json")))
        },
        key=lambda d: d.name,
    )
    runs = [run for run in map(Run, dirs) if "train" in run.stages()]
    if not runs:
        raise RunError(f"no trained runs under {', '.join(map(str, paths))}")
    model = model_of(runs[0].config())
    for run in runs:
        if why := mismatch(run.config(), model):
            raise RunError(f"{run.path}: {why}")
    return [record_of(run) for run in runs], model


def score(records: list[Record], scheme: str) -> dict[str, dict]:
    """Method -> its score cells under the scheme (see the module's docstring)."""
    group = SCHEMES[scheme]
    cells = {name: {"points": {label: [] for label, _ in POINTS}, "first": [], "alarms": []} for name in METHODS}
    for held in sorted({group(r) for r in records}):
        train = [r for r in records if group(r) != held]
        for name, make in METHODS.items():
            predict = _fitted(make, train)
            for rec in (r for r in records if group(r) == held):
                _score_run(predict, rec, cells[name])
    return cells


def _fitted(make, train: list[Record]) -> Predictor | None:
    try:
        return make(train)
    except (ValueError, IndexError):  # nothing left to fit on (e.g. no other run groks): no forecasts
        return None


def _score_run(predict: Predictor | None, rec: Record, cells: dict) -> None:
    forecasts = [predict(rec, n) if predict else None for n in range(1, len(rec.rows) + 1)]
    if rec.grok_90 is None:  # (alarms, probes); None where nothing could be fitted without the run
        cells["alarms"].append(
            (sum(f is not None and f.confident for f in forecasts), len(forecasts)) if predict else None
        )
        return
    T = rec.grok_90
    for label, f in at_points(rec, forecasts).items():
        cells["points"][label].append(
            None if f is None else (abs(f.grok_step - T) / T, f.low <= T <= f.high, (f.high - f.low) / T)
        )
    first = first_confident(rec, forecasts)
    cells["first"].append(None if first is None else ((T - first.step) / T, first.low <= T <= first.high))


def at_points(rec: Record, forecasts: list[Forecast | None]) -> dict[str, Forecast | None]:
    """A grokking run's forecast at each of POINTS: the one after the last probe at or before it; None where
    there is none yet, or where the point is not before grok_90 (an onset at or after it warns of nothing)."""
    onset = curvature_onset(list(rec.rows))["onset_step"]  # the fast regime's rule, the forecaster's model's
    chosen = {}
    for label, fraction in POINTS:
        at = onset if fraction is None else fraction * rec.grok_90
        known = [] if at is None or at >= rec.grok_90 else [i for i, r in enumerate(rec.rows) if r["step"] <= at]
        chosen[label] = forecasts[known[-1]] if known else None
    return chosen


def first_confident(rec: Record, forecasts: list[Forecast | None]) -> Forecast | None:
    """The first confident forecast before grok_90 (or over the whole run, for one that never groks)."""
    return next((f for f in before_grok(rec, forecasts) if f.confident), None)


def point_cell(scored: list) -> str:
    """'err 12%, 80%: 7/10 hold T, width 35% (n 10)' over a point's forecasts; missing ones counted apart."""
    made = [s for s in scored if s is not None]
    if not made:
        return f"no forecast (n {len(scored)})"
    error = statistics.median(s[0] for s in made)
    width = statistics.median(s[2] for s in made)
    missing = f", {len(scored) - len(made)} none" if len(made) < len(scored) else ""
    return f"err {error:.0%}, {sum(s[1] for s in made)}/{len(made)} in 80%, width {width:.0%}{missing}"


def first_cell(first: list) -> str:
    """'20/24 runs, 45% of T ahead, 15/20 hold T': the first confident forecasts, their median lead as a share
    of the grok step, and how many of their intervals held it."""
    made = [f for f in first if f is not None]
    if not made:
        return f"none (n {len(first)})"
    return (
        f"{len(made)}/{len(first)} runs, {statistics.median(f[0] for f in made):.0%} of T ahead, "
        f"{sum(f[1] for f in made)}/{len(made)} hold T"
    )


def alarm_cell(alarms: list) -> str:
    """'1/7 runs, 4% of probes': the runs that never grok with a confident forecast that they would, at any
    probe, and the share of all their probes with one; runs with no forecast apart."""
    made = [a for a in alarms if a is not None]
    missing = f", {len(alarms) - len(made)} no forecast" if len(made) < len(alarms) else ""
    if not made:
        return f"no runs{missing}"
    share = sum(k for k, _ in made) / sum(n for _, n in made)
    return f"{sum(k > 0 for k, _ in made)}/{len(made)} runs, {share:.0%} of probes{missing}"


def markdown(records: list[Record]) -> str:
    """The score tables, one per scheme, as markdown."""
    grokking = sum(r.grok_90 is not None for r in records)
    parts = [f"{len(records)} runs: {grokking} grok, {len(records) - grokking} never do.\n"]
    for scheme in SCHEMES:
        header = ["method", *(label for label, _ in POINTS), "first confident forecast", "false alarms"]
        lines = [f"**{scheme}**\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, cells in score(records, scheme).items():
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        *(point_cell(cells["points"][label]) for label, _ in POINTS),
                        first_cell(cells["first"]),
                        alarm_cell(cells["alarms"]),
                    ]
                )
                + " |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
