"""The paper's reference numbers: each stands beside a key the walkthrough really writes, and compares like with
like."""
import pytest

from tinygrok import paper


def test_growth_to_grok_90_and_over_the_whole_run_have_their_own_figures():
    to_grok, whole = paper.BY_KEY["defect_growth"], paper.BY_KEY["defect_growth_run"]
    assert "grok_step_90" in to_grok.measure and "whole run" in whole.measure
    assert to_grok.expected() != whole.expected() and whole.expected() == (513, 2141)


@pytest.mark.parametrize("key,op,value,inside", [("lead_steps", None, 1400, True), ("lead_steps", None, 1700, False),
                                                 ("grok_step_90", "add", 2933, True), ("grok_step_90", "add", 3300, False),
                                                 ("onset_step", "x2_y2", 600, True), ("onset_step", "add", 600, False),
                                                 ("onset_step", "add", None, None)])
def test_contains_uses_the_operations_own_figure_where_there_is_one(key, op, value, inside):
    assert paper.BY_KEY[key].contains(value, op) is inside
