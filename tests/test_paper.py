"""The paper's reference numbers: each stands beside a key the walkthrough really writes, and compares like with
like."""

import pytest

from tinygrok.science import paper


def test_growth_to_grok_90_and_over_the_whole_run_have_their_own_figures():
    to_grok, whole = paper.BY_KEY["defect_growth"], paper.BY_KEY["defect_growth_run"]
    assert "grok_step_90" in to_grok.measure and "whole run" in whole.measure
    assert to_grok.expected() != whole.expected() and whole.expected() == (513, 2141)


@pytest.mark.parametrize(
    "key,op,value,inside",
    [
        ("lead_steps", None, 1400, True),
        ("lead_steps", None, 1700, False),
        ("grok_step_90", "add", 2933, True),
        ("grok_step_90", "add", 3300, False),
        ("onset_step", "x2_y2", 600, True),
        ("onset_step", "add", 600, False),
        ("onset_step", "add", None, None),
    ],
)
def test_contains_uses_the_operations_own_figure_where_there_is_one(key, op, value, inside):
    assert paper.BY_KEY[key].contains(value, op) is inside


@pytest.mark.parametrize(
    "op,wd,share,inside",
    [
        ("add", 1.0, 0.70, True),
        ("x3_xy", 1.0, 0.70, False),
        ("x3_xy", 1.0, 0.50, True),
        ("add", 0.0, 0.65, True),
        ("add", 0.0, 0.75, False),
        ("mul", 0.0, 0.74, True),
    ],
)
def test_pc1_is_compared_with_the_same_operation_and_weight_decay(op, wd, share, inside):
    """§5.4: grokking runs 62.8-83.1% per matrix, non-grokking ones far lower, no-decay runs in between."""
    assert paper.pc1_reference(op, wd).contains(share, op) is inside
