"""The package's layers import one way (pyproject.toml's import-linter contracts), with no circle anywhere and no
import of the package hidden inside a function."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": ""},
    )


def test_the_layer_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_them(tmp_path):
    """The contract can fail: the readable model importing the engine (or anything above it) is refused."""
    shutil.copytree(ROOT / "tinygrok", tmp_path / "tinygrok", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "tinygrok" / "science" / "model.py"
    model.write_text(model.read_text() + "\nfrom tinygrok.engine import kernels  # upward, on purpose\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "tinygrok.science.model -> tinygrok.engine.kernels" in result.stdout


def test_no_module_imports_itself_in_a_circle():
    graph = grimp.build_graph("tinygrok")
    circles = [
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if b != a and graph.chain_exists(importer=b, imported=a)
    ]
    assert not circles


def test_no_import_of_the_package_inside_a_function():
    """Imports of tinygrok sit at the top of each module (only optional dependencies, cupy or jupytext, and
    scipy.optimize, which only a forecaster's refit needs, are imported where they are used)."""
    late = []
    for path in sorted((ROOT / "tinygrok").rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late += [
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                    for node in ast.walk(function)
                    if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("tinygrok")
                    or isinstance(node, ast.Import)
                    and any(a.name.startswith("tinygrok") for a in node.names)
                ]
    assert not late
