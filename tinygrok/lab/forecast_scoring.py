"""The grok-step forecaster over many runs: refitting it from run directories, and scoring it honestly.

Scored leave-one-seed-out (every run forecast by a forecaster, and each baseline, fitted without the runs of its
seed) and leave-one-learning-rate-out (fitted without those of its learning rate), and on held-out runs. For a run
that groks: at its curvature onset and at 25%, 50% and 75% of its grok_90 T, the absolute error |T_hat - T| / T,
whether the 80% interval holds T, and the interval's width / T; and how far ahead of T the first confident
forecast came. For a run that never groks: whether any forecast over the whole run was a confident "it groks" (a
false alarm), and at what share of its probes. The held-out runs' page ends in the decision rule for a live
forecast (`decision`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from tinygrok.lab import grids, records, results_page
from tinygrok.run import grok_forecaster
from tinygrok.run.runs import Run, RunError
from tinygrok.science.analysis import curvature_onset
from tinygrok.science.config import Config
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
    model = grok_forecaster.model_of(runs[0].config())
    for run in runs:
        if why := grok_forecaster.mismatch(run.config(), model):
            raise RunError(f"{run.path}: {why}")
    return [grok_forecaster.record_of(run) for run in runs], model


def score(records: list[Record], scheme: str) -> dict[str, dict]:
    """Method -> its score cells under the scheme (see the module's docstring)."""
    group = SCHEMES[scheme]
    cells = _empty_cells()
    for held in sorted({group(r) for r in records}):
        train = [r for r in records if group(r) != held]
        _score_runs(fitted_methods(train), [r for r in records if group(r) == held], cells)
    return cells


def held_out_score(fitted: list[Record], held: list[Record]) -> dict[str, dict]:
    """Method -> its score cells over the held-out runs, every method fitted once on the fitted runs."""
    cells = _empty_cells()
    _score_runs(fitted_methods(fitted), held, cells)
    return cells


def fitted_methods(train: list[Record]) -> dict[str, Predictor | None]:
    """Each method fitted on `train` (None where nothing could be fitted)."""
    return {name: _fitted(make, train) for name, make in METHODS.items()}


def _empty_cells() -> dict[str, dict]:
    return {name: {"points": {label: [] for label, _ in POINTS}, "first": [], "alarms": []} for name in METHODS}


def _score_runs(methods: dict[str, Predictor | None], test: list[Record], cells: dict[str, dict]) -> None:
    """Every fitted method scores each run of `test` into its cells (in test's order)."""
    for name, predict in methods.items():
        for rec in test:
            _score_run(predict, rec, cells[name])


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


def settled(rec: Record, forecasts: list[Forecast | None], within: float = 0.1) -> int | None:
    """The first probe step of a grokking run from which every forecast before grok_90 lies within `within` x
    grok_90 of it (None where the last one does not)."""
    step = None
    for row, f in reversed([(r, f) for r, f in zip(rec.rows, forecasts) if r["step"] < rec.grok_90]):
        if f is None or abs(f.grok_step - rec.grok_90) > within * rec.grok_90:
            break
        step = row["step"]
    return step


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
        parts.append(f"**{scheme}**\n\n" + "\n".join(score_table(score(records, scheme))) + "\n")
    return "\n".join(parts)


def score_table(cells: dict[str, dict]) -> list[str]:
    """One row per method: its cell at each of POINTS, its first confident forecasts, its false alarms."""
    header = ["method", *(label for label, _ in POINTS), "first confident forecast", "false alarms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, cell in cells.items():
        row = [
            name,
            *(point_cell(cell["points"][label]) for label, _ in POINTS),
            first_cell(cell["first"]),
            alarm_cell(cell["alarms"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


# ---------------------------------------------------------------------- the held-out score
HELD_OUT_GRID = "forecast-held-out"  # the grid (grids.py) of the runs the shipped forecaster is never fitted on
BASELINE = "learning rate alone"
WINS_NEEDED = 3  # of the 4 POINTS: the live forecast must beat the baseline's median error at most of them
COVERAGE = (0.70, 0.90)  # and its 80% intervals must hold grok_90 this often


def run_key(op: str, seed: int, lr: float, weight_decay: float, train_frac: float) -> tuple:
    """What makes two runs of one model the same run: a held-out run shares it with no fitted run."""
    return op, seed, lr, weight_decay, train_frac


def fitted_keys() -> set[tuple]:
    """The keys of the runs the shipped forecaster was fitted on."""
    train_frac = grok_forecaster.shipped()[1]["train_frac"]
    return {run_key(r.op, r.seed, r.lr, r.weight_decay, train_frac) for r in grok_forecaster.shipped_records()}


def held_out_records(folders: list[Path]) -> tuple[list[Record], list[dict], list[str]]:
    """The held-out grid's runs recorded in the folders (records.py), in the grid's order: the forecaster's
    records of them, the run records themselves, and the names of the grid's runs not recorded yet. A RunError,
    in one line, where one of them is a run the shipped forecaster was fitted on."""
    found = {}
    for folder in folders:
        found.update(records.load_all(folder)[0])
    fitted = fitted_keys()
    held, saved, missing = [], [], []
    for spec in grids.grid(HELD_OUT_GRID):
        if spec.name not in found:
            missing.append(spec.name)
            continue
        cfg = Config.from_dict(found[spec.name]["config"])
        if run_key(cfg.op, cfg.seed, cfg.lr, cfg.weight_decay, cfg.train_frac) in fitted:
            raise RunError(f"{spec.name} is held out, yet the shipped forecaster was fitted on the same run")
        model = {**grok_forecaster.shipped()[1], "train_frac": cfg.train_frac}  # another fraction: held out on purpose
        if why := grok_forecaster.mismatch(cfg, model):
            raise RunError(f"{spec.name}: {why}")
        held.append(grok_forecaster.from_rows(spec.name, cfg, found[spec.name]["metrics"], spec.name))
        saved.append(found[spec.name])
    return held, saved, missing


def decision(cells: dict[str, dict]) -> tuple[bool, int, float]:
    """The decision rule over the held-out cells: (whether the live forecast earns its place, at how many POINTS
    the forecaster's median error is below the learning-rate law's on the same runs, the share of its 80%
    intervals that held grok_90 over all POINTS)."""
    wins = 0
    for label, _ in POINTS:
        pairs = [
            (f[0], b[0])
            for f, b in zip(cells["forecaster"]["points"][label], cells[BASELINE]["points"][label])
            if f is not None and b is not None
        ]
        wins += bool(pairs) and statistics.median(f for f, _ in pairs) < statistics.median(b for _, b in pairs)
    made = [s for label, _ in POINTS for s in cells["forecaster"]["points"][label] if s is not None]
    coverage = sum(s[1] for s in made) / len(made) if made else 0.0
    return wins >= WINS_NEEDED and COVERAGE[0] <= coverage <= COVERAGE[1], wins, coverage


def _signed(f: Forecast | None, T: int) -> str:
    """'+12%' (the forecast's error, as a share of T), marked 'out' where its 80% interval misses T."""
    return "—" if f is None else f"{(f.grok_step - T) / T:+.0%}" + ("" if f.low <= T <= f.high else " out")


def run_table(methods: dict[str, Predictor | None], held: list[Record]) -> list[str]:
    """One row per held-out run: grok_90, the forecaster's signed error at each of POINTS, from when it stayed
    within 10% of grok_90, the learning-rate law's error; for a run that never groks, its probes with a confident
    forecast that it would."""
    forecaster, law = methods["forecaster"], methods[BASELINE]
    header = ["run", "grok_90", *(f"forecaster {label}" for label, _ in POINTS), "within 10% from", BASELINE]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in held:
        made = [forecaster(rec, n) for n in range(1, len(rec.rows) + 1)]
        if rec.grok_90 is None:
            alarms = sum(f is not None and f.confident for f in made)
            cells = [f"never; false alarms at {alarms} of {len(made)} probes", *[""] * (len(header) - 2)]
        else:
            T, points, since = rec.grok_90, at_points(rec, made).values(), settled(rec, made)
            cells = [
                f"{T:,}",
                *(_signed(f, T) for f in points),
                "—" if since is None else f"{since:,} ({(T - since) / T:.0%} of T ahead)",
                _signed(law(rec, 1), T),
            ]
        lines.append(f"| {rec.name} | " + " | ".join(cells) + " |")
    return lines


LEGEND = (
    "Each cell: the median of |forecast - grok_90| / grok_90 over the runs, how many of the 80% intervals held "
    "grok_90, their median width / grok_90, and how many runs had no forecast at that point yet ('none': the "
    "forecaster needs 3 probes; an onset at or after grok_90 warns of nothing). The first confident forecast: "
    "P(grok) >= 0.5 and an interval at most half as wide as its step, how far ahead of grok_90 it came (median share "
    "of grok_90) and how many held it. False alarms: runs that never grok with a confident forecast that they "
    "would, at any probe, and the share of their probes with one."
)


def page(folders: list[Path], out: Path | None) -> str:
    """The forecast's score page (markdown): the command (writing to `out`, or printing), code and machine at its
    top; the forecaster and its baselines on the held-out runs in the folders, the decision rule's outcome and one
    row per run; then the score on the fitted runs, each left out."""
    fitted = grok_forecaster.shipped_records()
    held, saved, missing = held_out_records(folders)
    if not held:
        raise RunError(f"no run of the {HELD_OUT_GRID} grid is recorded in {', '.join(map(str, folders))}")
    env = [r["environment"] for r in saved]
    command = " ".join(
        ["tinygrok forecast-score", *(f"--held-out {f}" for f in folders), *([f"--out {out}"] * bool(out))]
    )
    return "\n".join(
        [
            "# The grok forecast, scored",
            "",
            "| | |",
            "|---|---|",
            f"| command | `{command}` (the runs: `tinygrok sweep {HELD_OUT_GRID} --out DIR`, then `tinygrok record DIR "
            f"--into {folders[0]}`) |",
            f"| code | {results_page.counted([e.get('commit', 'unknown') for e in env])} |",
            f"| machine | {results_page.counted([e.get('machine', 'unknown') for e in env])} |",
            "",
            *_held_out_section(fitted, held, missing),
            "## On the runs it was fitted on, each left out",
            "",
            "Every run forecast by a forecaster (and each baseline) fitted without the runs of its seed (leave one "
            "seed out), or, in the second table, without those of its learning rate (leave one learning rate out: "
            "extrapolation by construction).",
            "",
            markdown(fitted),
        ]
    )


def _held_out_section(fitted: list[Record], held: list[Record], missing: list[str]) -> list[str]:
    """The page's lines on the held-out runs: what they are, the score table, the decision, one row per run."""
    methods = fitted_methods(fitted)
    cells = _empty_cells()
    _score_runs(methods, held, cells)
    live, wins, coverage = decision(cells)
    grokking = sum(r.grok_90 is not None for r in held)
    return [
        "## On runs it never saw",
        "",
        f"The shipped forecaster (tinygrok/run/forecaster.json) and each baseline, fitted once on the {len(fitted)} "
        f"runs the forecaster was fitted on, forecast {len(held)} runs of which none has the same operation, seed, "
        f"learning rate, weight decay and training fraction as a fitted run ({HELD_OUT_GRID} in "
        f"tinygrok/lab/grids.py): {grokking} grok, {len(held) - grokking} never do"
        + (f"; {len(missing)} of its runs are not recorded yet." if missing else "."),
        "",
        *score_table(cells),
        "",
        LEGEND,
        "",
        f"**By the decision rule, the live forecast is {'on' if live else 'off'}.** Training may show a forecast "
        f"live only if its median error is below the learning rate alone's, on the same runs, at {WINS_NEEDED} or "
        f"more of the {len(POINTS)} points, and its 80% intervals hold grok_90 {COVERAGE[0]:.0%}-{COVERAGE[1]:.0%} "
        f"of the time. Here it is below at {wins} of {len(POINTS)}, and its intervals hold grok_90 in "
        f"{coverage:.0%} of its forecasts"
        + (". `tinygrok train` and `tinygrok grok` do not show it." if not live else "."),
        "",
        "Each run: the error of the forecast made at each point, (forecast - grok_90) / grok_90, 'out' where its "
        "80% interval misses grok_90.",
        "",
        *run_table(methods, held),
        "",
    ]
