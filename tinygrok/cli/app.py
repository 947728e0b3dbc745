"""`tinygrok`: thin commands that parse and validate their options, call the package, and hand what it computed
to views.py to print."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Annotated

import matplotlib

matplotlib.use("Agg")  # the CLI writes figures to files; the library leaves the backend alone
import typer
from rich.live import Live
from rich.markup import escape

from tinygrok.cli import views
from tinygrok.cli.views import console, err_console
from tinygrok.engine import backend, parallel
from tinygrok.lab import (
    benchmark,
    extracts,
    forecast_scoring,
    grids,
    lessons,
    recipes,
    records,
    reproduction,
    results_page,
    sweep,
    sweep_report,
)
from tinygrok.run import geometry, grok_forecaster, plots
from tinygrok.run.runs import THETAS, Run, RunError, WriteError, write_text
from tinygrok.run.train import Diverged
from tinygrok.science import config, interventions, undefined
from tinygrok.science.config import Config, ConfigError
from tinygrok.science.forecast import before_grok
from tinygrok.science.forecast import fit as fit_forecaster

Threads = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="cores to use (BLAS threads, and worker processes for gradients and evaluation); changes speed "
        "only, never the numbers  (default: the cores available, at most --batch-shards)",
    ),
]
ArrayBackend = Annotated[str, typer.Option("--backend", help="array library: numpy, cupy (a CUDA GPU), or auto")]
Preset = Annotated[str, typer.Option(help=f"starting settings: {', '.join(config.PRESETS)}")]
Resume = Annotated[bool, typer.Option(help="continue the run in --out from its checkpoint, with its saved settings")]
Force = Annotated[bool, typer.Option(help="clear an existing run directory and start again")]

EXIT_DIVERGED = 3  # exit code of a run stopped by a non-finite number (2: bad input; 1: a failed write)


def fail(message: str, code: int = 2) -> None:
    """A one-line error, exit code `code`, no traceback."""
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class OneLineErrors(typer.core.TyperGroup):
    """Every command's errors as one line on stderr: typer's own (a value out of range, a missing argument) and
    tinygrok's (exit 2), a failed write or a path the system refuses (exit 1), a run that diverged (exit 3)."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            try:
                code = super().main(*args, standalone_mode=False, **kwargs)
            except typer.TyperException as err:  # typer's (its click's) usage errors: a bad value, a missing argument
                if not err.format_message():  # no arguments at all: the help was shown
                    raise typer.Exit(err.exit_code) from None
                fail(err.format_message(), err.exit_code)
            except WriteError as err:
                fail(str(err), 1)
            except (ConfigError, RunError) as err:
                fail(str(err))
            except Diverged as err:
                fail(str(err), EXIT_DIVERGED)
            except OSError as err:  # a path that cannot be made or read: under a file, a full disk, no permission
                fail(f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err), 1)
            except typer.Abort:
                fail("aborted", 1)
        except typer.Exit as exit_:
            code = exit_.exit_code
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    help="tinygrok: watch a transformer grok, and measure why.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    cls=OneLineErrors,
)


def use_backend(array_backend: str) -> None:
    """Switch to the array backend; a one-line error where it (or its GPU) is missing."""
    try:
        backend.use(array_backend)
    except backend.BackendError as err:
        fail(str(err))


def with_config_options(recipe: str):
    """Give a command one --option per Config field (help from the field, default from the paper preset and
    the recipe's own settings); they arrive as `overrides`."""
    defaults = recipes.spec(recipe).config

    def decorate(command):
        fields = dataclasses.fields(Config)
        types = {"int": int, "float": float, "str": str, "bool": bool}
        hints = typing.get_type_hints(command, include_extras=True)  # the Annotated options, not names as text
        sig = inspect.signature(command)
        sig = sig.replace(
            parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
        )
        extra = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    types[f.type] | None,
                    typer.Option(
                        help=f"{f.metadata['help']} (default: {getattr(defaults, f.name)})", rich_help_panel="Config"
                    ),
                ],
            )
            for f in fields
        ]

        @functools.wraps(command)
        def wrapper(**kwargs):
            overrides = {f.name: kwargs.pop(f.name) for f in fields}
            return command(**kwargs, overrides=overrides)

        wrapper.__signature__ = sig.replace(
            parameters=[p for p in sig.parameters.values() if p.name != "overrides"] + extra
        )
        return wrapper

    return decorate


def _existing(resume: bool, force: bool) -> str:
    """What to do with an existing run directory, as recipes.execute says it."""
    if resume and force:
        raise RunError("--resume and --force contradict each other: pick one")
    return "resume" if resume else "restart" if force else "refuse"


def _execute(spec: recipes.RunSpec, path: Path, existing: str, threads: int | None) -> dict:
    """Run the spec in `path` with a live view of training and a line per later stage; its results."""
    with views.live_training(spec.config) as (view, on_step):

        def on_stage(stage: str) -> None:  # the view starts with training, once the run directory is checked
            if stage == "train":
                view.start()
            else:
                view.stop()
                console.print(views.STAGE_LINES[stage])

        results = recipes.execute(
            spec,
            path=path,
            existing=existing,
            cores=threads or parallel.default_cores(spec.config),
            on_step=on_step,
            on_stage=on_stage,
        )
    return results


@app.command()
@with_config_options("train")
def train(
    preset: Annotated[
        str | None, typer.Option(help=f"starting settings (default paper): {', '.join(config.PRESETS)}")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="run directory (default: runs/ and a name from the settings "
            "that differ from the preset, e.g. runs/paper_add_s42)"
        ),
    ] = None,
    resume: Resume = False,
    force: Force = False,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
    plot: Annotated[bool, typer.Option(help="also draw accuracy and loss against step")] = False,
    overrides: dict | None = None,
):
    """Train a transformer on one operation mod p until it groks (or max steps), with a live view."""
    use_backend(array_backend)
    if resume and out is None:
        raise RunError("--resume needs --out RUN_DIR, the run to continue")
    if resume and preset is not None:
        raise RunError(f"--resume continues {out} with its saved settings: leave out --preset")
    spec = (
        recipes.saved_spec(out, "train", **overrides)
        if resume
        else recipes.spec("train", "paper" if preset is None else preset, **overrides)
    )
    path = out or recipes.run_path(spec)
    _execute(spec, path, _existing(resume, force), threads)
    views.print_summary(Run(path))
    if plot:
        console.print(f"figure: {plots.save(path, 'training')}")
    console.print(f"run directory: [bold]{path}[/]  (redraw: tinygrok plot {path})")


ARMS = [name.replace("_", "-") for name in interventions.ARMS]  # as --arm takes them
DOSES = "; ".join(
    f"{name.replace('_', '-')}'s {interventions.HOOKS[name].explain(interventions.HOOKS[name].DOSE)}"
    for name in interventions.ARMS
)


@app.command()
@with_config_options("intervene")
def intervene(
    arm: Annotated[
        str, typer.Option(help=f"one of {', '.join(ARMS)} (docs/paper.md §8.2; tinygrok/science/interventions.py)")
    ],
    dose: Annotated[float | None, typer.Option(help=f"its strength: {DOSES}  (default: the paper's primary)")] = None,
    basis: Annotated[
        str,
        typer.Option(
            help="pca: the baseline run's execution basis; random: a random one of the same size (the ablation)"
        ),
    ] = "pca",
    preset: Preset = "paper",
    out: Annotated[
        Path | None,
        typer.Option(
            help="run directory (default: runs/intervene_BATCHES_PRESET_OP_sSEED_hook...); its baseline goes beside it"
        ),
    ] = None,
    resume: Resume = False,
    force: Force = False,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
    overrides: dict | None = None,
):
    """One causal intervention (§8.1): a baseline run to detection gives the execution basis (built once, then
    reused), and a probed run from the same seed trains with the intervention, to 1,000 steps past detection or
    the 15,000-step cap (not grokked: DNF); on the reference code's batches (shifted: the seed's own, moved on by
    the batches its probes take) unless --batches own (the basis is the run's own future path) or sibling (another
    stream's)."""
    use_backend(array_backend)
    if overrides.pop("hook") is not None:
        raise RunError("--hook is set by --arm, --dose and --basis here")
    spec = recipes.intervention(arm, dose, basis, preset, **overrides)
    path, existing = out or recipes.run_path(spec), _existing(resume, force)
    recipes.check_destination(path, existing)  # now, not after its baseline has trained
    if recipes.needs_baseline(spec):
        base = recipes.baseline(spec)
        console.print(f"baseline (phase 1): {path.parent / base.name}")
        _execute(base, path.parent / base.name, "continue", threads)
        console.print(f"intervention (phase 2): {spec.config.hook}")
    results = _execute(spec, path, existing, threads)
    grok = results.get("grok_step")
    console.print(
        f"grok step (detection): {grok}"
        if grok is not None
        else f"DNF: not grokked within {spec.config.max_steps} steps"
    )
    console.print(f"run directory: [bold]{path}[/]")


RunDir = Annotated[Path, typer.Argument(help="a run directory")]


@app.command()
def grok(
    op: Annotated[
        str | None,
        typer.Option(help="the operation: add, sub, mul, x2_y2 grok; x2_xy_y2, x3_xy do not  (default: add)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of every random stream  (default: 42)")] = None,
    preset: Annotated[str, typer.Option(help="paper, or classroom for a version of seconds")] = "paper",
    max_steps: Annotated[int | None, typer.Option(help="stop here if it has not grokked")] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            help="AdamW's decoupled weight decay; 0 is the paper's control, which memorizes and never groks  "
            "(default: the preset's)"
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="float32 (as the paper) or float64 (its rounding artefacts "
            "gone, docs/paper.md §6.6)  (default: float32)"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="run directory (default: runs/grok_PRESET_OP_sSEED, and any "
            "other setting that differs, e.g. _max_steps3000)"
        ),
    ] = None,
    resume: Resume = False,
    force: Force = False,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
):
    """The walkthrough: train until grokking while probing curvature, then show the geometry of what happened."""
    use_backend(array_backend)
    given = dict(op=op, seed=seed, max_steps=max_steps, weight_decay=weight_decay, dtype=dtype)  # None: the preset's
    spec = recipes.spec("walkthrough", preset, **given)
    path = out or recipes.run_path(spec)
    if resume:  # the run as it was started: only the options given here are checked against it
        spec = recipes.saved_spec(path, "walkthrough", **given)
    results = _execute(spec, path, _existing(resume, force), threads)
    views.explain(results, spec.config.op)
    console.print("figures: " + ", ".join(str(Run(path).figure(name)) for name in plots.available(path)))
    console.print(f"run directory: [bold]{path}[/]  (again: tinygrok pca / commutator / plot {path})")


def _open_run(run_dir: Path) -> Run:
    """The run in `run_dir`, its config.json checked (a RunError names what is wrong)."""
    run = Run(run_dir)
    run.config()
    return run


@app.command()
def pca(run_dir: RunDir, threads: Threads = None):
    """PCA of a run's attention-weight trajectory: PC1 share and random-walk z-score per matrix."""
    run = _open_run(run_dir)
    with parallel.cores(threads or parallel.default_cores(run.config())):
        result, basis = geometry.analyse_pca(run)
    console.print(views.pca_table(result, basis.shape[1]))


@app.command()
def commutator(
    run_dir: RunDir,
    samples: Annotated[
        int | None, typer.Option(min=1, help="defect samples per point (default: the run's --probe-samples)")
    ] = None,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
):
    """Curvature projections at a run's saved parameters: rho, exec/random, alignment."""
    use_backend(array_backend)
    run = _open_run(run_dir)
    if not run.has(THETAS):
        fail(f"{run.path} saved no parameters to probe: train it with --theta-every (tinygrok grok does)")
    with parallel.cores(threads or parallel.default_cores(run.config())):
        summary, rows = geometry.analyse(run, samples)
    console.print(views.commutator_table(rows))
    views.explain(summary, run.config().op)


@app.command()
def dimensions(
    run_dir: RunDir,
    samples: Annotated[int, typer.Option(min=1, help="defect samples per phase")] = 5,
    threads: Threads = None,
):
    """The dimension sweep (figC3): proj/full of the curvature against the subspace size K at step 200,
    memorization, detection and detection + 500, for the weight-SVD, trajectory-PCA and random bases."""
    run = _open_run(run_dir)
    with parallel.cores(threads or parallel.default_cores(run.config())):
        rows = geometry.dimension_sweep(run, k_samples=samples)
    console.print(views.dimensions_table(rows))
    views.print_undefined(undefined.tally(rows), "left out of the figure")
    console.print(f"figure: {plots.save(run, 'dimensions')}")


@app.command()
def plot(run_dir: RunDir):
    """Redraw every figure a run's files allow."""
    for figure in plots.save_all(_open_run(run_dir)):
        console.print(f"figure: {figure}")


@app.command("forecast")
def forecast_(run_dir: RunDir):
    """Replay the grok forecast over a run as someone watching it would have seen it: at its curvature onset and
    at 25/50/75% of its grok step, against the truth, and the figure (forecast.png)."""
    run = _open_run(run_dir)
    rec, made = grok_forecaster.replay(run)
    points = forecast_scoring.at_points(rec, made) if rec.grok_90 is not None else {}
    shown = before_grok(rec, made)
    last = shown[-1] if shown else None
    console.print(views.forecast_table(rec, points, forecast_scoring.first_confident(rec, made), last))
    console.print(f"figure: {plots.save(run, 'forecast')}")


@app.command("forecast-fit")
def forecast_fit(
    paths: Annotated[list[Path], typer.Argument(help="run directories, or sweep directories holding them")],
    out: Annotated[
        Path,
        typer.Option(
            help="the folder forecaster.json and forecast_runs.jsonl.gz go to (to ship a refit: "
            "tinygrok/run/ of a checkout)"
        ),
    ],
):
    """Refit the grok forecaster on trained runs (with probes, all of one model) and write it with their records."""
    records, model = forecast_scoring.records_under(paths)
    try:
        fitted = fit_forecaster(records)
    except ValueError as err:
        fail(f"cannot fit the forecaster on these {len(records)} runs: {err}")
    for path in grok_forecaster.write_shipped(fitted, model, records, out):
        console.print(f"wrote {path}")
    console.print(views.forecaster_table(fitted, records))


@app.command("forecast-score")
def forecast_score(
    records: Annotated[
        Path | None,
        typer.Option(help="a forecast_runs.jsonl.gz (default: the runs the shipped forecaster was fitted on)"),
    ] = None,
    held_out: Annotated[
        list[Path] | None,
        typer.Option(
            help=f"a folder of run records holding runs of the {forecast_scoring.HELD_OUT_GRID} grid (tinygrok "
            "record), e.g. tinygrok/run/forecast_held_out: the score page, on those runs and on the fitted ones "
            "left out"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="the file the score page goes to (default: printed)")] = None,
):
    """Score the forecaster and its baselines, leave-one-seed-out and leave-one-learning-rate-out; with --held-out,
    the score page: on runs it never saw too, and the decision rule for the live forecast (markdown)."""
    if held_out and records:
        raise RunError("--records scores the fitted runs left out; --held-out scores the shipped forecaster: pick one")
    if held_out:
        text = forecast_scoring.page(held_out, out)
    elif out:
        raise RunError("--out writes the score page: give --held-out too")
    else:
        text = forecast_scoring.markdown(grok_forecaster.shipped_records(records or grok_forecaster.RECORDS))
    if out:
        console.print(f"score page {write_text(out, text)}")
        return
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def bench(
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
    repeats: Annotated[int, typer.Option(min=1, help="timed repeats per workload (the median is reported)")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
):
    """Time tinygrok at the paper settings: a training step, a full evaluation, a commutator sample."""
    use_backend(array_backend)
    cfg = config.preset("paper")
    result = benchmark.bench(cfg, threads or parallel.default_cores(cfg), repeats)
    if json_out:
        print(json.dumps(result))
        return
    console.print(views.facts(f"tinygrok at the paper settings (median of {repeats})", result))


@app.command("experiments")
def experiments_(
    repeats: Annotated[int, typer.Option(min=1, help="timed repeats of the bench behind the estimates")] = 3,
):
    """The paper's experiments: each grid's runs and an estimate of its CPU time, from a quick bench on one core."""
    costs = benchmark.bench(config.preset("paper"), 1, repeats)
    rows = []
    for name, grid in grids.EXPERIMENTS.items():
        specs = grids.grid(name)
        hours = sum(grids.estimate_cpu_seconds(s, costs) for s in specs) / 3600
        rows.append((name, grid.__doc__.splitlines()[0], str(len(specs)), f"{hours:.1f} h"))
    console.print(
        views.make_table(
            "the paper's experiments (tinygrok/lab/grids.py); filters: --ops --seeds "
            "--lrs --max-steps --preset classroom",
            ("experiment", "what", "runs", "CPU time (one core)"),
            rows,
        )
    )
    console.print(
        f"estimated from a step of {costs['train_step_ms']:.1f} ms, an evaluation of {costs['eval_ms']:.0f} ms "
        f"and a commutator sample of {costs['commutator_sample_ms']:.0f} ms on one core, with grok steps "
        "guessed as 3,000 x (1e-3 / lr) (grids.expected_steps)"
    )


def _listed(text: str | None, kind, option: str) -> tuple | None:
    """A comma-separated option as a tuple of `kind`, or None; a one-line error naming the option otherwise."""
    if text is None:
        return None
    try:
        return tuple(kind(item) for item in text.split(",") if item.strip())
    except ValueError:
        fail(f"{option}={text!r} is invalid: must be a comma-separated list of {kind.__name__}s")


def _arms(text: str | None) -> tuple | None:
    """--arms as hook names (random-kick is random_kick), or None; a one-line error for an unknown one."""
    names = _listed(text, str, "--arms")
    if names is None:
        return None
    names = tuple(name.strip().replace("-", "_") for name in names)
    if unknown := [name for name in names if name not in ("none", *interventions.ARMS)]:
        fail(
            f"--arms={text!r} is invalid: {', '.join(unknown)} is not an arm; they are none, "
            + ", ".join(name.replace("_", "-") for name in interventions.ARMS)
        )
    return names


@app.command("sweep")
def sweep_(
    experiment: Annotated[str, typer.Argument(help=f"one of: {', '.join(grids.EXPERIMENTS)}")],
    out: Annotated[Path, typer.Option(help="the sweep directory: one run directory per spec, and index.json")],
    workers: Annotated[int, typer.Option(min=1, help="local worker processes, one core each")] = 2,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="a Dask scheduler, tcp://HOST:PORT, whose workers run the grid instead (pip install -e '.\\[cluster]')"
        ),
    ] = None,
    ops: Annotated[str | None, typer.Option(help="only these operations, e.g. add,sub")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="these seeds in place of the paper's 42,137,2024, e.g. 42,137 or 1,2,3")
    ] = None,
    lrs: Annotated[str | None, typer.Option(help="only these learning rates, e.g. 1e-3,1e-2")] = None,
    arms: Annotated[str | None, typer.Option(help="only these intervention arms, e.g. project,none")] = None,
    doses: Annotated[
        str | None,
        typer.Option(help="only the interventions at these doses, e.g. 0.75,1 (the runs without intervention stay)"),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="cap every run at this many steps")] = None,
    preset: Annotated[str | None, typer.Option(help="classroom: the CPU-sized model instead of the paper's")] = None,
    batches: Annotated[
        str | None,
        typer.Option(
            help="the intervention runs' batches: shifted (the reference code's: the seed's own, moved on by the "
            "batches its probes take), own (the basis is the run's own future path) or sibling (another stream's) "
            " (default: shifted)"
        ),
    ] = None,
):
    """Run one of the paper's experiments: its grid of runs, side by side, skipping what is done."""
    filters = grids.Filters(
        _listed(ops, str, "--ops"),
        _listed(seeds, int, "--seeds"),
        _listed(lrs, float, "--lrs"),
        _arms(arms),
        _listed(doses, float, "--doses"),
        max_steps,
        preset,
        batches,
    )
    specs = grids.grid(experiment, filters)
    index = sweep.load_index(out, experiment, filters.describe(), specs)
    executors = sweep.dask_executor(scheduler) if scheduler else sweep.local_executor(workers)
    start = time.perf_counter()
    expected = {spec.name: grids.expected_steps(spec.config) for spec in specs}
    bar, task = views.sweep_bar(sum(expected.values()))
    log = views.LogProgress()
    with Live(console=console, auto_refresh=False) as live:

        def show(index: dict) -> None:
            live.update(views.sweep_state(index, out, expected, bar, task), refresh=True)
            log(sweep.summary(index), lambda: views.stage_state(experiment, index, out))

        show(index)
        index = sweep.run_grid(specs, out, index, executors, on_change=show)
    console.print()
    counts = sweep.summary(index)
    console.print(
        f"{experiment}: {sweep.outcome(counts)}, in {time.perf_counter() - start:.0f} s; sweep directory {out}"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
def reproduce(
    out: Annotated[
        Path,
        typer.Option(
            help="where the runs train: a sweep directory per grid (needed only until their records are written)"
        ),
    ],
    scale: Annotated[
        str,
        typer.Option(
            help=f"one of: {', '.join(reproduction.SCALES)} (classroom: every claim's "
            "machinery in ~15 min; machine: the paper's model, ~11 h on 2 cores "
            "by --estimate; full: every grid as the paper ran it, for a cluster)"
        ),
    ] = "machine",
    records_dir: Annotated[
        Path | None,
        typer.Option(
            "--records",
            help="the folder of the runs' records, the reproduction's state: a run recorded there is not "
            "run again  (default: OUT/records)",
        ),
    ] = None,
    page: Annotated[Path | None, typer.Option(help="the results page  (default: OUT/results.md)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="local worker processes, one core each")] = 2,
    scheduler: Annotated[
        str | None, typer.Option(help="a Dask scheduler, tcp://HOST:PORT, whose workers run the grids instead")
    ] = None,
    estimate: Annotated[
        bool, typer.Option(help="print the plan (every grid, its runs without a record and their CPU time) and stop")
    ] = False,
):
    """Reproduce the paper claim by claim: every grid of the scale, resumably (the same command again continues),
    each finished run's record kept, then the results page beside the paper's numbers."""
    plan = reproduction.stages(scale)
    records_dir, page = records_dir or out / "records", page or out / "results.md"
    for path, what in ((out, "--out"), (records_dir, "--records")):
        if path.exists() and not path.is_dir():
            fail(f"{what} {path} is a file: a reproduction needs a directory")
    _check_page(page, "--page")
    if estimate:
        costs = benchmark.bench(config.preset("paper"), 1, 3)
        rows = reproduction.estimate(plan, costs, frozenset(records.load_all(records_dir)[0]), out, records_dir)
        console.print(views.reproduction_plan(scale, rows, costs, workers))
        return
    executors = sweep.dask_executor(scheduler) if scheduler else sweep.local_executor(workers)
    log = views.LogProgress()
    with Live(console=console, auto_refresh=False) as live:

        def show(stage: reproduction.Stage, index: dict) -> None:
            text = f"stage {plan.index(stage) + 1} of {len(plan)}, " + views.stage_state(
                stage.label, index, out / stage.label
            )
            live.update(escape(text), refresh=True)
            log((stage.label, sweep.summary(index)), lambda: text)

        state = reproduction.run(scale, plan, out, records_dir, executors, on_change=show)
    results_page.write(records_dir, page)
    console.print(
        f"{scale} reproduction: {reproduction.wall_seconds(state):.0f} s of wall time in "
        f"{len(state['parts'])} part(s); records in {records_dir}; results page {page}"
    )


def _check_page(page: Path, option: str) -> None:
    """Refuse a results page path that is a directory, or lies under a file or a folder this user cannot write,
    before any work."""
    folder = next(p for p in page.parents if p.exists())
    if page.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        fail(f"{option} {page} cannot be written: it is a directory, or lies under a file or an unwritable folder")


@app.command("merge-records")
def merge_records(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="folders of one scale's run records (tinygrok reproduce --records), from other machines or days"
        ),
    ],
    into: Annotated[Path, typer.Option(help="the folder they merge into (it may hold records already)")],
):
    """Merge folders of a reproduction's run records into one: each run's record once, the wall times added."""
    state, skipped = reproduction.merge(sources, into)
    console.print(f"{into}: the {state['scale']} reproduction's records, {len(state['parts'])} part(s)")
    for line in skipped:
        err_console.print(f"left behind, no readable record: {line}", highlight=False, soft_wrap=True)


@app.command("carry")
def carry_(
    out: Annotated[Path, typer.Option(help="the reproduction's run directory (tinygrok reproduce --out)")],
    records_dir: Annotated[
        Path, typer.Option("--records", help="its folder of run records (tinygrok reproduce --records), to commit")
    ],
):
    """Copy the exact resume state of every unfinished run of a reproduction into its records folder (resume/NAME,
    at most 10 MiB a run), to commit before a working period ends: the next `tinygrok reproduce`, on any machine,
    resumes those runs where they were. Run it with the reproduction stopped (SIGSTOP) or ended. Exit 1 if a run
    is left behind: its progress goes with this machine."""
    if not out.is_dir() or not (records_dir / reproduction.STATE).exists():
        raise RunError(f"--out {out} and --records {records_dir} must be a reproduction's run directory and records")
    carried, left = reproduction.carry(out, records_dir)
    for name, size in carried.items():
        console.print(f"carried {name}: {size / 2**20:.1f} MiB")
    for name, why in left.items():
        console.print(f"not carried {name}: {why}")
    console.print(f"{len(carried)} run(s) carried into {records_dir / reproduction.RESUME}")
    if left:
        raise typer.Exit(1)


@app.command("results")
def results(
    records_dir: Annotated[Path, typer.Option("--records", help="a reproduction's folder of run records")],
    out: Annotated[
        Path, typer.Option(help="the results page to write, e.g. docs/results.md (its figures go beside it)")
    ],
    checkout: Annotated[
        Path | None,
        typer.Option(
            help="a tinygrok checkout's root: also rewrite, from the page, its README.md's claim-by-claim table "
            "(the claims README names) and lesson 8's seed-by-seed table"
        ),
    ] = None,
):
    """Write a reproduction's results page from its records alone: every claim of the paper, measured, judged."""
    _check_page(out, "--out")
    if checkout:
        extracts.check(checkout)
    page = results_page.write(records_dir, out)
    console.print(f"results page {page}")
    for path in extracts.write(checkout, page, records_dir) if checkout else []:
        console.print(f"its extract in {path}")


@app.command()
def report(
    sweep_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="one or more sweep directories (tinygrok sweep --out) or folders of run records (tinygrok record)"
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="where report.md and its figures go (default: the first sweep directory)")
    ] = None,
):
    """Write report.md and its figures: every run of the sweeps or records, and the statistics over them beside
    the paper's."""
    if out and out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: the report needs a directory for report.md and its figures")
    if out is None and not (sweep_dirs[0] / sweep.INDEX).exists():
        fail(
            f"{sweep_dirs[0]} has no {sweep.INDEX}, so it is no sweep directory: give --out, where report.md "
            "and its figures go, to report on a folder of records"
        )
    path = sweep_report.write(sweep_dirs, out)
    console.print(f"report: {path}")


@app.command()
def record(
    sweep_dirs: Annotated[list[Path], typer.Argument(help="one or more sweep directories (tinygrok sweep --out)")],
    into: Annotated[Path, typer.Option(help="the folder of run records, e.g. docs/records")],
):
    """Write the record of every finished run of the sweeps into a folder (records.py): what reports and the
    results page read of a run, a few KB, without its checkpoints or snapshots. A run recorded there already
    keeps its record."""
    written = 0
    for out in sweep_dirs:
        for name, entry in sweep.read_index(out)["runs"].items():
            if entry["state"] == "done" and not (into / (name + records.SUFFIX)).exists():
                records.save(records.of_run(out / name, entry["recipe"]), into)
                written += 1
    console.print(f"{written} new run records in {into}")


@app.command()
def lesson(
    number: Annotated[int | None, typer.Argument(help="the lesson to run; none: list them")] = None,
    notebook: Annotated[
        bool,
        typer.Option(
            help="write the lesson as a notebook (.ipynb) into the current "
            "directory, to open in Jupyter, instead of running it"
        ),
    ] = False,
    solutions: Annotated[bool, typer.Option(help="with the exercises' solutions filled in (for teachers)")] = False,
):
    """The classroom lessons: list them, run one as a script (its figures are saved), or write it as a notebook."""
    catalogue = {lesson.number: lesson for lesson in lessons.catalogue()}
    if number is None:
        console.print(
            views.make_table(
                f"lessons in {lessons.LESSONS_DIR} (TINYGROK_FAST=1: every training under 2 minutes)",
                ("lesson", "title", "duration"),
                [(str(item.number), item.title, item.duration) for item in catalogue.values()],
            )
        )
        console.print("run one: tinygrok lesson N; open one in Jupyter: tinygrok lesson N --notebook")
        return
    if number not in catalogue:
        fail(f"there is no lesson {number}: the lessons are {', '.join(map(str, catalogue))}")
    path = catalogue[number].path
    source = lessons.with_solutions(path.read_text()) if solutions else path.read_text()
    if notebook:
        try:
            import jupytext
        except ImportError:
            fail("--notebook needs jupytext: pip install -e '.[lessons]'")
        target = Path(path.with_suffix(".ipynb").name)
        jupytext.write(jupytext.reads(source, fmt="py:percent"), target)
        console.print(f"notebook: {target}  (open it in Jupyter or VS Code)")
        return
    figures = Path(os.environ.get("TINYGROK_FIGURES", lessons.runs_dir() / "figures"))
    result = subprocess.run([sys.executable, "-c", source], env={**os.environ, "TINYGROK_FIGURES": str(figures)})
    if result.returncode:
        raise typer.Exit(result.returncode)
    console.print(f"lesson {number} done; its figures are in {figures}")


@app.command()
def doctor():
    """Print versions, the BLAS library and its threads, and the array backend."""
    facts = {
        **backend.describe(),
        "default --threads": f"{parallel.default_cores(config.preset('paper'))} "
        f"({parallel.available_cores()} cores available)",
    }
    try:
        backend.cupy_module()
        facts["--backend cupy"] = "available"
    except backend.BackendError as err:
        facts["--backend cupy"] = escape(str(err))
    facts.update(
        {
            var: os.environ.get(var, "(unset)")
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        }
    )
    console.print(views.facts("tinygrok doctor", facts))


def main():
    app()
