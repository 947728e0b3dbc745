"""How the commands print: rich tables of a run's numbers beside the paper's, the live view of training, the
sweep's state. Each takes what a command computed and only shows it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tinygrok.lab import reproduction, sweep
from tinygrok.run.runs import Run
from tinygrok.science import paper, undefined
from tinygrok.science.config import Config
from tinygrok.science.forecast import FEATURES, LOGISTIC, REGRESSION, Forecast, Forecaster, Record
from tinygrok.science.model import ATTENTION_MATRICES

console = Console()
err_console = Console(stderr=True)


def make_table(title: str, columns, rows, **options) -> Table:
    """A rich table with these columns and rows (each row a sequence of strings)."""
    shown = Table(title=title, **options)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*row)
    return shown


STAGE_LINES = {
    "pca": "the trajectory PCA and the execution basis ...",
    "geometry": "analysing: trajectory PCA, execution basis, curvature projections ...",
    "figures": "drawing the figures ...",
}


@contextlib.contextmanager
def live_training(cfg: Config):
    """A progress view of training, not yet shown: yields it (to start) and the on_step callback that drives it.
    It shows the step, elapsed time, steps/s and the accuracies; a bar and an ETA only once the end is known (a
    run ends 'extra_steps' after grokking is detected: before that, max_steps is only a cap)."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[metrics]}"),
    ]
    last = {"time": time.perf_counter(), "step": None}
    progress = Progress(*columns, console=console, transient=False)
    try:
        task = progress.add_task(f"{cfg.op} mod {cfg.p}", total=None, rate="", metrics="")

        def on_step(step: int, row: dict | None, end: int | None) -> None:
            progress.update(task, completed=step, total=end)
            if row is None:
                return
            now = time.perf_counter()
            if last["step"] is not None and now > last["time"]:
                rate = (step - last["step"]) / (now - last["time"])
                eta = f", ends at step {end} in ~{(end - step) / rate / 60:.1f} min" if end else ""
                progress.update(task, rate=f"{rate:.1f} steps/s{eta}")
            last.update(time=now, step=step)
            progress.update(
                task,
                metrics=f"loss {row['train_loss']:.3f}  train {row['train_acc']:.3f}  test {row['test_acc']:.3f}",
            )
            if not console.is_terminal and step % (10 * cfg.eval_every) == 0:
                console.print(
                    f"step {step}: train acc {row['train_acc']:.3f}, test acc {row['test_acc']:.3f}", soft_wrap=True
                )

        yield progress, on_step
    finally:
        if progress.live.is_started:
            progress.stop()


def print_summary(run: Run) -> None:
    table = Table(title="summary", show_header=False)
    results, environment = run.summary(), run.environment()
    for key in (
        "grok_step_90",
        "grok_step",
        "memorization_step",
        "final_train_acc",
        "final_test_acc",
        "steps",
        "params",
    ):
        table.add_row(key, cell(results.get(key), missing="never"))
    for key in ("wall_seconds", "train_step_ms", "threads"):
        table.add_row(key, cell(environment.get(key)))
    console.print(table)


def explain(results: dict, op: str | None = None) -> None:
    """Each headline number beside the paper's figure for the same measure (tinygrok/science/paper.py)."""
    table = Table(title="what happened", show_lines=False)
    for column in ("quantity", "measured", "paper", "meaning"):
        table.add_column(column)
    for ref in paper.WALKTHROUGH:
        table.add_row(ref.label, ref.show(results.get(ref.key)), ref.describe(op), ref.meaning)
    console.print(table)
    print_undefined(results.get("undefined") or {}, "the medians above leave them out")
    if results.get("pc1"):
        console.print(pc1_table(results["pc1"]))


def print_undefined(counts: dict, consequence: str) -> None:
    """Which values had no value, how often and why (undefined.py), where there are any."""
    for line in undefined.describe(counts):
        console.print(f"[yellow]{escape(line)}[/]: {consequence}")


def pc1_table(pc1: dict) -> Table:
    """PC1 share per layer (rows) and attention matrix (columns)."""
    table = Table(
        title=f"PC1 share of each attention matrix's trajectory (paper: {paper.PC1.quoted}): {paper.PC1.meaning}"
    )
    table.add_column("layer")
    for m in ATTENTION_MATRICES:
        table.add_column(m)
    layers = sorted({int(name.split(".")[1]) for name in pc1})
    for layer in layers:
        table.add_row(str(layer), *(f"{100 * pc1[f'blocks.{layer}.{m}']:.1f}%" for m in ATTENTION_MATRICES))
    return table


def cell(value, digits: str = ".4g", missing: str = "none") -> str:
    """A table cell: `missing` for None, floats formatted by `digits`."""
    if value is None:
        return missing
    return format(value, digits) if isinstance(value, float) else str(value)


def forecast_table(
    rec: Record, points: dict[str, Forecast | None], first: Forecast | None, last: Forecast | None
) -> Table:
    """A run's grok forecasts at the scored points, its first confident one and its last, against the truth."""

    def row(label: str, f: Forecast | None) -> tuple:
        if f is None:
            return (label, "", "no forecast yet", "", "", "")
        error = "" if rec.grok_90 is None else f"{(f.grok_step - rec.grok_90) / rec.grok_90:+.0%}"
        return (label, f"{f.step:,}", f"{f.grok_step:,.0f}", f"{f.low:,.0f}-{f.high:,.0f}", f"{f.p_grok:.2f}", error)

    rows = [row(label, f) for label, f in points.items()]
    rows += [row("first confident", first), row("last before grok_90" if rec.grok_90 else "last", last)]
    truth = "never reached test accuracy 0.9" if rec.grok_90 is None else f"grok_90 = {rec.grok_90:,}"
    return make_table(
        f"grok forecast of {rec.name} ({truth})",
        ("when", "step", "forecast grok_90", "80% interval", "P(grok)", "error"),
        rows,
    )


def forecaster_table(forecaster: Forecaster, records: list[Record]) -> Table:
    """The fitted coefficients, feature by feature, and what they were fitted on."""
    a, b = (dict(zip(columns, fitted)) for columns, fitted in ((LOGISTIC, forecaster.a), (REGRESSION, forecaster.b)))
    rows = [
        (name, f"{a[i]:+.3f}" if i in a else "", f"{b[i]:+.3f}" if i in b else "") for i, name in enumerate(FEATURES)
    ]
    grokking = sum(r.grok_90 is not None for r in records)
    e10, e90 = forecaster.interval
    return make_table(
        f"forecaster fitted on {len(records)} runs ({grokking} grok); log10 residual 80%: {e10:+.3f} to {e90:+.3f}",
        ("feature", "P(grok): logistic", "log10(T - t): least squares"),
        rows,
    )


def sweep_bar(total_steps: int) -> tuple[Progress, TaskID]:
    """A bar over a whole sweep's expected steps, with its ETA."""
    bar = Progress(
        TextColumn("all runs"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of the expected steps"),
        TimeElapsedColumn(),
        TextColumn("ETA at the expected steps"),
        TimeRemainingColumn(),
        console=console,
    )
    return bar, bar.add_task("sweep", total=total_steps)


def sweep_state(index: dict, out: Path, expected: dict[str, int], bar: Progress, task) -> Group:
    """Each run's state (running ones with their step and test accuracy), and a bar over the whole sweep's
    expected steps (grids.expected_steps: a finished run counts in full) with its ETA."""
    counts = sweep.summary(index)
    table = Table(title=f"{index['experiment']}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    for column in ("run", "state", "step", "test acc"):
        table.add_column(column)
    steps = 0
    for name, entry in index["runs"].items():
        row = sweep.progress(out, name) if entry["state"] == "running" else None
        finished = entry["state"] in (*sweep.FINISHED, "failed")
        steps += expected[name] if finished else min(row["step"], expected[name]) if row else 0
        state = entry["state"] + (f": {entry['error']}" if entry["state"] in ("diverged", "failed") else "")
        table.add_row(name, escape(state), str(row["step"]) if row else "", f"{row['test_acc']:.3f}" if row else "")
    bar.update(task, completed=steps)
    return Group(table, bar)


def pca_table(result: dict, basis_size: int) -> Table:
    return make_table(
        f"trajectory PCA ({basis_size}-dim execution basis)",
        ("matrix", "PC1", "PC1..5", "z vs random walk"),
        [
            (
                name,
                f"{100 * share:.1f}%",
                " ".join(f"{100 * r:.0f}" for r in result["top_ratios"][name]),
                f"{result['null_z'][name]:.1f}",
            )
            for name, share in result["pc1"].items()
        ],
    )


def commutator_table(rows: list[dict]) -> Table:
    """The geometry at each saved theta; "undefined" where a quantity has no value (undefined.py)."""

    def cells(r):
        defined = [
            cell(r[key], digits, "undefined")
            for key, digits in (("exec_rho", ".6f"), ("exec_random_ratio", ".2f"), ("weight_svd_random_ratio", ".2f"))
        ]
        aligned = cell(r["alignment_ratio"], missing="undefined") if "alignment_ratio" in r else "none"
        return (str(r["step"]), f"{r['defect']:.3g}", *defined, aligned)

    return make_table(
        "commutator defect at saved parameters",
        ("step", "D", "rho", "exec/random (PCA)", "exec/random (SVD)", "alignment"),
        map(cells, rows),
    )


def dimensions_table(rows: list[dict]) -> Table:
    return make_table(
        "proj/full of the defect by subspace size (enriched: above sqrt(K/P))",
        ("phase", "step", "K", "weight SVD", "trajectory PCA", "random", "sqrt(K/P)"),
        [
            (
                r["phase"],
                str(r["step"]),
                str(r["K"]),
                *(cell(r[key], ".4f", "undefined") for key in ("weight_svd", "pca", "random", "theory")),
            )
            for r in rows
        ],
    )


def facts(title: str, items: dict) -> Table:
    """Key-value pairs, one a row (bench, doctor)."""
    return make_table(title, ("", ""), [(key, str(value)) for key, value in items.items()], show_header=False)


def reproduction_plan(scale: str, rows: list[dict], costs: dict, workers: int) -> Group:
    """`tinygrok reproduce --estimate`: every stage's grid, its runs without a record, their CPU time and what the
    stage leaves out of the paper's; the totals."""
    table = make_table(
        f"tinygrok reproduce --scale {scale}: the plan (tinygrok/lab/reproduction.py)",
        ("stage", "experiment", "runs left", "their CPU time (one core)", "longest run", "left out"),
        [
            (
                r["stage"].label,
                r["stage"].experiment,
                f"{r['left']} of {r['runs']}",
                _hours(r["cpu_seconds"]),
                _hours(r["longest"]),
                r["stage"].cut or "nothing",
            )
            for r in rows
        ],
    )
    total = sum(r["cpu_seconds"] for r in rows)
    return Group(
        table,
        f"{_runs_left(rows)}, {_hours(total)} of CPU time: about "
        f"{_hours(reproduction.wall_estimate(rows, workers))} on {workers} cores (each stage its CPU "
        "time shared out, or its longest run; a run that resumes counted from its checkpoint); from a step of "
        f"{costs['train_step_ms']:.1f} ms, an evaluation of {costs['eval_ms']:.0f} ms and a commutator sample of "
        f"{costs['commutator_sample_ms']:.0f} ms on one core, grok steps guessed by "
        "grids.expected_steps",
    )


def _runs_left(rows: list[dict]) -> str:
    left, runs = sum(r["left"] for r in rows), sum(r["runs"] for r in rows)
    return f"{runs} runs" if left == runs else f"{left} runs left of {runs} (the others recorded)"


def stage_state(label: str, index: dict, grid_dir: Path) -> str:
    """One line of a grid's progress (a sweep, a reproduction's stage): its label, its runs' states, the running
    ones' steps (read in grid_dir)."""
    counts = sweep.summary(index)
    running = [
        f"{name} at {row['step']}"
        for name, entry in index["runs"].items()
        if entry["state"] == "running" and (row := sweep.progress(grid_dir, name))
    ]
    return (
        f"{label}: "
        + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        + ("; " + ", ".join(running) if running else "")
    )


class LogProgress:
    """Progress where a live display shows none: on a console that is no terminal (a log file, a CI job) or a dumb
    one, where rich's Live prints only its last state, a dated line when the runs' states change, and one every
    `seconds` between; nothing on a terminal, whose live display shows it all. `line()` makes the line, only when
    it is printed."""

    def __init__(self, seconds: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock, self.states, self.at = seconds, clock, None, -float("inf")

    def __call__(self, states: object, line: Callable[[], str]) -> None:
        now = self.clock()
        live = console.is_terminal and not console.is_dumb_terminal
        if live or (states == self.states and now - self.at < self.seconds):
            return
        self.states, self.at = states, now
        console.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line()}", highlight=False, soft_wrap=True, markup=False)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.0f} min"
