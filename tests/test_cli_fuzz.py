"""Every command and option driven with generated values (out of range, NaN, inf, huge, negative, wrong types, paths
that are files, missing or not runs): each exits 0, or 2 with one line on stderr, and never with a traceback.

The long work behind the commands (training, the sweep's runs, the bench, a lesson's subprocess) is replaced by
stubs that check what they are given: the other tests run it for real. The analyses run for real, on a tiny run.
Hypothesis runs derandomized (a fixed seed) and a bounded number of examples.
"""

import re
import subprocess
import sys

import pytest
import typer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tinygrok.cli import app as cli
from tinygrok.lab import recipes, sweep
from tinygrok.science.config import Config

TINY = [
    "--p",
    "7",
    "--d-model",
    "8",
    "--n-heads",
    "2",
    "--d-ff",
    "8",
    "--batch-size",
    "8",
    "--eval-every",
    "5",
    "--theta-every",
    "5",
    "--snapshot-every",
    "5",
    "--max-steps",
    "15",
]
COMMANDS = typer.main.get_command(cli.app).commands  # name -> click command, with its options and arguments
WORDS = [
    "0",
    "1",
    "-1",
    "2",
    "97",
    "1e-3",
    "0.5",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-0",
    "",
    " ",
    "x",
    "add",
    "paper",
    "classroom",
    "float64",
    "pca",
    "project",
    "controls",
    "add,sub",
    "42,,137",
    "none",
    "--out",
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Paths of every kind: a file, nothing, an empty directory, a tiny finished run, a sweep directory."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "sweep" / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tinygrok", "train", *TINY, "--out", str(run)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    (root / "sweep" / sweep.INDEX).write_text('{"experiment": "table1", "filters": "", "runs": {}}')
    (root / "a-file").write_text("not a run")
    (root / "empty").mkdir()
    return {
        "file": str(root / "a-file"),
        "missing": str(root / "missing" / "x"),
        "empty": str(root / "empty"),
        "run": str(run),
        "sweep": str(root / "sweep"),
        "root": str(root),
    }


@pytest.fixture(scope="module")
def stubbed(places):
    def execute(spec, *args, **kwargs):
        assert isinstance(spec.config, Config)
        return {}

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(places["root"])  # default run directories land here, not in the repository
        mp.setattr(recipes, "execute", execute)
        mp.setattr(sweep, "run_grid", lambda specs, out, index, *a, **k: index)
        mp.setattr(sweep, "dask_executor", lambda address: None)
        mp.setattr(
            "tinygrok.lab.benchmark.bench",
            lambda cfg, threads, repeats: {"train_step_ms": 1.0, "eval_ms": 1.0, "commutator_sample_ms": 1.0},
        )
        mp.setattr("tinygrok.lab.forecast_scoring.markdown", lambda records: "a score")  # 3 s a call otherwise
        mp.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))  # as with text=True
        mp.setattr("jupytext.write", lambda *a, **k: None)
        yield


def value(places):
    return st.one_of(
        st.sampled_from(WORDS),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["file", "missing", "empty", "run", "sweep"]).map(places.get),
    )


def plausible(param, places):
    """A value the option or argument could well be given, so that examples get past the first check."""
    kind = str(param.type_descriptor.annotation)  # typer's record of the parameter's Python type
    if "int" in kind:
        return st.sampled_from(["1", "2", "3", "5", "42"])
    if "float" in kind:
        return st.sampled_from(["0.5", "1e-3", "0.1", "1"])
    if "Path" in kind:
        return st.sampled_from(["run", "sweep", "empty", "missing"]).map(places.get)
    return st.sampled_from(["add", "paper", "classroom", "controls", "pca", "project", "numpy", "float64", "42"])


@st.composite
def command_lines(draw, places):
    """A command with some of its options and all its arguments, each value plausible or wild."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    args = [name]
    for param in COMMANDS[name].params:
        pick = st.one_of(plausible(param, places), value(places))
        if param.param_type_name == "argument":
            args += [draw(pick) for _ in range(draw(st.integers(1, 2)) if param.nargs == -1 else 1)]
        elif draw(st.integers(0, 4)) == 0:
            args += [param.opts[0]] if param.is_flag else [param.opts[0], draw(pick)]
    return args


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_exits_0_or_2_with_one_line_and_no_traceback(places, stubbed, data):
    args = data.draw(command_lines(places))
    result = CliRunner().invoke(cli.app, args)
    event(f"{args[0]}: exit {result.exit_code}")  # pytest --hypothesis-show-statistics shows what was reached
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 2), (args, result.output)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.output, args


def test_typer_s_own_errors_read_as_tinygrok_s(places):
    for args in (["commutator", places["run"], "--samples", "0"], ["train", "--p", "x"], ["pca"], ["nosuchcommand"]):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    bare = CliRunner().invoke(cli.app, [])  # no command: the help, and no error line
    assert "Usage: " in bare.stdout and "COMMAND" in bare.stdout and bare.stderr == ""


def test_no_help_text_is_lost_to_rich_markup():
    """Rich reads "[word ...]" in a help text as a style tag and drops it: defaults are written "(default: ...)"."""
    command = typer.main.get_command(cli.app)
    helps = [
        (name, param.name, param.help or "")
        for name, sub in command.commands.items()
        for param in sub.params
        if isinstance(param, typer.core.TyperOption)
    ]
    assert len(helps) > 100
    swallowed = [(name, option) for name, option, text in helps if re.search(r"(?<!\\)\[[a-z#/@]", text)]
    assert swallowed == []
    shown = re.sub(r"[\s│]+", " ", CliRunner().invoke(cli.app, ["intervene", "--help"], env={"COLUMNS": "200"}).stdout)
    assert "run directory (default: runs/intervene_BATCHES_PRESET_OP_sSEED_hook...); its baseline" in shown
