"""The README stays true: its set-up commands are what CI runs, and its tables match the code."""
import re
from pathlib import Path

from tinygrok.science.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def setup_commands() -> list[str]:
    block = README.split("## Set-up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    run_it, test_it = setup_commands()
    install = run_it.rsplit(" && ", 1)[0]  # the README's first command, minus the training job itself
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and test_it in ci


def test_presets_table_lists_every_preset_with_its_values():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|$", README, re.M)}
    assert set(PRESETS) <= set(rows)
    for name, overrides in PRESETS.items():
        for key, value in overrides.items():
            if key in ("d_model", "d_ff", "p", "lr", "batch_size", "beta2", "weight_decay", "n_layers"):
                shown = f"{value:g}".replace("e-0", "e-") if isinstance(value, float) else str(value)
                assert shown in rows[name], f"README's {name} row lacks {key}={value}"
