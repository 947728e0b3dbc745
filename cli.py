"""`tinygrok`: thin commands that parse, validate, call the package and print with rich."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import time
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinygrok import backend, config, parallel
from tinygrok.config import Config, ConfigError
from tinygrok.runs import Run, RunError

Threads = Annotated[Optional[int], typer.Option(
    min=1, help="cores to use (BLAS threads, and worker processes for gradients and evaluation); changes speed "
                "only, never the numbers  [default: the cores available, at most --batch-shards]")]
ArrayBackend = Annotated[str, typer.Option("--backend", help="array library: numpy, cupy (a CUDA GPU), or auto")]

app = typer.Typer(help="tinygrok: watch a transformer grok, and measure why.", add_completion=False,
                  pretty_exceptions_enable=False, no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """A one-line error, exit code 2, no traceback."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def use_backend(array_backend: str) -> None:
    """Switch to the array backend; a one-line error where it (or its GPU) is missing."""
    try:
        backend.use(array_backend)
    except backend.BackendError as err:
        fail(str(err))


def with_config_options(command):
    """Give a command one --option per Config field (help from the field); they arrive as `overrides`."""
    fields = dataclasses.fields(Config)
    types = {"int": int, "float": float, "str": str, "bool": bool}
    hints = typing.get_type_hints(command, include_extras=True)  # the Annotated options, not their names as text
    sig = inspect.signature(command)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                                  for p in sig.parameters.values()])
    extra = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Optional[types[f.type]], typer.Option(
                              help=f"{f.metadata['help']} (paper: {f.default})", rich_help_panel="Config")])
        for f in fields
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        overrides = {f.name: kwargs.pop(f.name) for f in fields}
        try:
            return command(**kwargs, overrides=overrides)
        except (ConfigError, RunError) as err:
            fail(str(err))

    wrapper.__signature__ = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name != "overrides"] + extra)
    return wrapper


def resolve_run(preset: str, out: Optional[Path], resume: bool, force: bool, overrides: dict) -> tuple[Config, Run]:
    """The config and run directory a train command asks for; nothing on disk changes until all is valid."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if resume:
        if out is None:
            raise RunError("--resume needs --out RUN_DIR, the run to continue")
        if force:
            raise RunError("--resume and --force contradict each other: pick one")
        run = Run.open(out)
        cfg = run.config()
        differing = sorted(k for k, v in given.items() if getattr(cfg, k) != v)
        if differing:
            raise RunError(f"--resume continues {out} with its saved config; these options differ from it: "
                           + ", ".join("--" + k.replace("_", "-") for k in differing))
        return cfg, run
    cfg = config.preset(preset, **given)
    out = out or Path("runs") / f"{preset}_{cfg.op}_s{cfg.seed}"
    return cfg, Run.create(out, cfg, force=force)


@app.command()
@with_config_options
def train(
    preset: Annotated[str, typer.Option(help=f"starting settings: {', '.join(config.PRESETS)}")] = "paper",
    out: Annotated[Optional[Path], typer.Option(help="run directory [default: runs/PRESET_OP_sSEED]")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoint")] = False,
    force: Annotated[bool, typer.Option(help="clear an existing run directory and start again")] = False,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
    plot: Annotated[bool, typer.Option(help="also draw accuracy and loss against step")] = False,
    overrides: Optional[dict] = None,
):
    """Train a transformer on one operation mod p until it groks (or max steps), with a live view."""
    use_backend(array_backend)
    cfg, run = resolve_run(preset, out, resume, force, overrides)
    with parallel.cores(threads or parallel.default_cores(cfg)):
        summary = _train_live(cfg, run, resume)  # a RunError here (a mismatched checkpoint) is one line too
    _print_summary(summary)
    if plot:
        from tinygrok.plots import plot_training
        console.print(f"figure: {plot_training(run.path)}")
    console.print(f"run directory: [bold]{run.path}[/]  (redraw: tinygrok plot {run.path})")


def _train_live(cfg: Config, run: Run, resume: bool) -> dict:
    from tinygrok.train import train as train_run

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("{task.fields[metrics]}")]
    last = {"time": time.perf_counter(), "step": None}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{cfg.op} mod {cfg.p}", total=cfg.max_steps, rate="", metrics="")

        def on_step(step: int, row: Optional[dict]) -> None:
            progress.update(task, completed=step)
            if row is None:
                return
            now = time.perf_counter()
            if last["step"] is not None:
                rate = (step - last["step"]) / (now - last["time"])
                eta = (cfg.max_steps - step) / rate
                progress.update(task, rate=f"{rate:.1f} steps/s, max-steps ETA {eta / 60:.0f} min")
            last.update(time=now, step=step)
            progress.update(task, metrics=f"loss {row['train_loss']:.3f}  train {row['train_acc']:.3f}  "
                                          f"test {row['test_acc']:.3f}")
            if not console.is_terminal and step % (10 * cfg.eval_every) == 0:
                console.print(f"step {step}: train acc {row['train_acc']:.3f}, test acc {row['test_acc']:.3f}")

        return train_run(cfg, run, resume=resume, on_step=on_step)


def _print_summary(summary: dict) -> None:
    table = Table(title="summary", show_header=False)
    for key in ("grok_step_90", "grok_step", "memorization_step", "final_train_acc", "final_test_acc", "steps",
                "wall_seconds", "train_step_ms", "params", "threads"):
        value = summary.get(key)
        table.add_row(key, _fmt(value, missing="never"))
    console.print(table)


# The walkthrough's additions to the paper preset (PAPER.md §6.2, generalization dynamics): K = 5 commutator
# samples every 100 steps, training continued 1,000 steps past detection; all parameters saved every 200 steps.
GROK_SETTINGS = dict(probe_every=100, probe_samples=5, extra_steps=1000, theta_every=200)
GROK_PRESETS = ("paper", "classroom")  # evaluated every 100 steps, as the probe cadence needs

RunDir = Annotated[Path, typer.Argument(help="a run directory")]


@app.command()
def grok(
    op: Annotated[str, typer.Option(help="the operation: add, sub, mul, x2_y2 grok; x2_xy_y2, x3_xy do not")] = "add",
    seed: Annotated[int, typer.Option(help="seed of every random stream")] = 42,
    preset: Annotated[str, typer.Option(help="paper, or classroom for a one-minute version")] = "paper",
    max_steps: Annotated[Optional[int], typer.Option(help="stop here if it has not grokked")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory [default: runs/grok_PRESET_OP_sSEED]")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoint")] = False,
    force: Annotated[bool, typer.Option(help="clear an existing run directory and start again")] = False,
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
):
    """The walkthrough: train until grokking while probing curvature, then show the geometry of what happened."""
    from tinygrok import geometry
    from tinygrok.plots import plot_all

    use_backend(array_backend)
    try:
        if preset not in GROK_PRESETS:
            raise ConfigError(f"--preset={preset!r} is invalid for grok: must be one of {', '.join(GROK_PRESETS)}")
        overrides = dict(op=op, seed=seed, max_steps=max_steps, **GROK_SETTINGS)
        cfg, run = resolve_run(preset, out or Path("runs") / f"grok_{preset}_{op}_s{seed}", resume, force, overrides)
        with parallel.cores(threads or parallel.default_cores(cfg)):
            _train_live(cfg, run, resume)
            with console.status("analysing: trajectory PCA, execution basis, curvature projections ..."):
                summary, _ = geometry.analyse(run)
            figures = plot_all(run.path)
    except (ConfigError, RunError, ValueError) as err:
        fail(str(err))
    _explain(summary)
    console.print("figures: " + ", ".join(str(f) for f in figures))
    console.print(f"run directory: [bold]{run.path}[/]  (again: tinygrok pca / commutator / plot {run.path})")


EXPLANATIONS = [  # (summary key, label, the paper's value, what it means)
    ("memorization_step", "memorization step", "300-500", "train accuracy reaches 95%: the training set is learnt"),
    ("onset_step", "curvature onset", "1800-2100", "the commutator defect first exceeds 10x its early level (and 20)"),
    ("grok_step_90", "grok step (90%)", "~2900 (add)", "test accuracy reaches 90%: the model generalises"),
    ("lead_steps", "lead time", "600-1600", "grok step minus onset: how early curvature warns of grokking"),
    ("defect_growth", "defect growth", "500-2000x (whole run)", "max defect up to the grok step / early baseline"),
    ("defect_growth_run", "defect growth, whole run", "500-2000x", "max defect over the whole run / early baseline"),
    ("rho", "rho = resid/full", "~1.000", "share of the curvature vector outside the execution subspace"),
    ("exec_random_ratio", "exec/random (PCA basis)", "1.8-2.9", "curvature leaning into the execution subspace vs a "
                                                                   "random one, during memorization"),
    ("exec_random_ratio_weight_svd", "exec/random (weight SVD)", "1.8-2.9", "the same with the reference code's "
                                                                             "current-weight-SVD basis"),
]


def _explain(summary: dict) -> None:
    table = Table(title="what happened", show_lines=False)
    for column in ("quantity", "measured", "paper", "meaning"):
        table.add_column(column)
    for key, label, paper, meaning in EXPLANATIONS:
        table.add_row(label, _fmt(summary.get(key)), paper, meaning)
    console.print(table)
    pc1 = summary.get("pc1")
    if pc1:
        console.print(_pc1_table(pc1))


def _pc1_table(pc1: dict) -> Table:
    """PC1 share per layer (rows) and attention matrix (columns)."""
    from tinygrok.model import ATTENTION_MATRICES

    table = Table(title="PC1 share of each attention matrix's trajectory (paper: 68-83%): the fraction of its "
                        "motion along a single direction")
    table.add_column("layer")
    for m in ATTENTION_MATRICES:
        table.add_column(m)
    layers = sorted({int(name.split(".")[1]) for name in pc1})
    for layer in layers:
        table.add_row(str(layer), *(f"{100 * pc1[f'blocks.{layer}.{m}']:.1f}%" for m in ATTENTION_MATRICES))
    return table


def _fmt(value, missing: str = "none") -> str:
    """A table cell: `missing` for None, 4 significant digits for floats."""
    if value is None:
        return missing
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _open_run(run_dir: Path) -> Run:
    try:
        run = Run(run_dir)
        run.config()
        return run
    except RunError as err:
        fail(str(err))


@app.command()
def pca(run_dir: RunDir, threads: Threads = None):
    """PCA of a run's attention-weight trajectory: PC1 share and random-walk z-score per matrix."""
    from tinygrok.geometry import analyse_pca

    run = _open_run(run_dir)
    try:
        with parallel.cores(threads or parallel.default_cores(run.config())):
            result, basis = analyse_pca(run)
    except RunError as err:
        fail(str(err))
    table = Table(title=f"trajectory PCA ({basis.shape[1]}-dim execution basis)")
    for column in ("matrix", "PC1", "PC1..5", "z vs random walk"):
        table.add_column(column)
    for name, share in result["pc1"].items():
        table.add_row(name, f"{100 * share:.1f}%", " ".join(f"{100 * r:.0f}" for r in result["top_ratios"][name]),
                      f"{result['null_z'][name]:.1f}")
    console.print(table)


@app.command()
def commutator(run_dir: RunDir, samples: Annotated[int, typer.Option(min=1, help="defect samples per point")] = 5,
               threads: Threads = None, array_backend: ArrayBackend = "numpy"):
    """Curvature projections at a run's saved parameters: rho, exec/random, alignment."""
    from tinygrok import geometry

    use_backend(array_backend)
    run = _open_run(run_dir)
    if not (run.path / "thetas.npy").exists():
        fail(f"{run.path} saved no parameters to probe: train it with --theta-every (tinygrok grok does)")
    try:
        with parallel.cores(threads or parallel.default_cores(run.config())):
            summary, rows = geometry.analyse(run, samples)
    except RunError as err:
        fail(str(err))
    table = Table(title="commutator defect at saved parameters")
    for column in ("step", "D", "rho", "exec/random (PCA)", "exec/random (SVD)", "alignment"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["step"]), f"{r['defect']:.3g}", f"{r['exec_rho']:.6f}", f"{r['exec_random_ratio']:.2f}",
                      f"{r['weight_svd_random_ratio']:.2f}", _fmt(r.get("alignment_ratio")))
    console.print(table)
    _explain(summary)


@app.command()
def plot(run_dir: RunDir):
    """Redraw every figure a run's files allow."""
    from tinygrok.plots import plot_all

    try:
        for figure in plot_all(run_dir):
            console.print(f"figure: {figure}")
    except (RunError, ValueError) as err:
        fail(str(err))


@app.command()
def bench(
    threads: Threads = None,
    array_backend: ArrayBackend = "numpy",
    repeats: Annotated[int, typer.Option(min=1, help="timed repeats per workload (the median is reported)")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
):
    """Time tinygrok at the paper settings: a training step, a full evaluation, a commutator sample."""
    import json

    from tinygrok.bench import bench as run_bench

    use_backend(array_backend)
    cfg = config.preset("paper")
    result = run_bench(cfg, threads or parallel.default_cores(cfg), repeats)
    if json_out:
        print(json.dumps(result))
        return
    table = Table(title=f"tinygrok at the paper settings (median of {repeats})", show_header=False)
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def doctor():
    """Print versions, the BLAS library and its threads, and the array backend."""
    table = Table(title="tinygrok doctor", show_header=False)
    for key, value in backend.describe().items():
        table.add_row(key, str(value))
    table.add_row("default --threads", f"{parallel.default_cores(config.preset('paper'))} "
                                        f"({parallel.available_cores()} cores available)")
    try:
        backend.cupy_module()
        table.add_row("--backend cupy", "available")
    except backend.BackendError as err:
        table.add_row("--backend cupy", escape(str(err)))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        table.add_row(var, os.environ.get(var, "(unset)"))
    console.print(table)


def main():
    app()


if __name__ == "__main__":
    main()
