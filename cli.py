"""`tinygrok`: thin commands that parse, validate, call the package and print with rich."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from threadpoolctl import threadpool_limits

from tinygrok import backend, config
from tinygrok.config import Config, ConfigError
from tinygrok.runs import Run, RunError

# Measured (README, "Speed"): on these 2-core machines 2 BLAS threads gave 62-64 ms per paper step, 1 gave 70-74.
DEFAULT_THREADS = min(2, os.cpu_count() or 1)

app = typer.Typer(help="tinygrok: watch a transformer grok, and measure why.", add_completion=False,
                  pretty_exceptions_enable=False, no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """A one-line error, exit code 2, no traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def with_config_options(command):
    """Give a command one --option per Config field (help from the field); they arrive as `overrides`."""
    fields = dataclasses.fields(Config)
    types = {"int": int, "float": float, "str": str, "bool": bool}
    sig = inspect.signature(command)
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
    threads: Annotated[int, typer.Option(min=1, help="BLAS threads")] = DEFAULT_THREADS,
    plot: Annotated[bool, typer.Option(help="also draw accuracy and loss against step")] = False,
    overrides: Optional[dict] = None,
):
    """Train a transformer on one operation mod p until it groks (or max steps), with a live view."""
    cfg, run = resolve_run(preset, out, resume, force, overrides)
    with threadpool_limits(threads, user_api="blas"):
        summary = _train_live(cfg, run, resume)
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
        table.add_row(key, "never" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="a run directory")]):
    """Draw a run's accuracy and loss against step."""
    from tinygrok.plots import plot_training

    try:
        console.print(f"figure: {plot_training(run_dir)}")
    except (RunError, ValueError) as err:
        fail(str(err))


@app.command()
def doctor():
    """Print versions, the BLAS library and its threads, and the array backend."""
    table = Table(title="tinygrok doctor", show_header=False)
    for key, value in backend.describe().items():
        table.add_row(key, str(value))
    table.add_row("default train --threads", str(DEFAULT_THREADS))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        table.add_row(var, os.environ.get(var, "(unset)"))
    console.print(table)


def main():
    app()


if __name__ == "__main__":
    main()
