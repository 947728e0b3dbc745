"""The rules of PAPER.md §4 and §7 on hand-made metric rows."""
import pytest

from tinygrok.analysis import curvature_onset, curvature_summary, detection_step, first_step, grok_summary


def rows(test_accs, defects=None, train_accs=None):
    n = len(test_accs)
    return [{"step": 100 * i, "test_acc": test_accs[i], "train_acc": (train_accs or [1.0] * n)[i],
             **({"defect": defects[i]} if defects else {})} for i in range(n)]


def test_grok_steps_and_memorization():
    r = rows([0.0, 0.1, 0.95, 0.99, 0.97, 0.98, 0.99, 0.99, 1.0], train_accs=[0.1, 0.96] + [1.0] * 7)
    assert first_step(r, "test_acc", 0.9) == 200
    assert detection_step(r, 0.98, 3) == 700  # 300 alone, then 500, 600, 700: the third in a row
    assert grok_summary(r) == {"grok_step_90": 200, "grok_step": 700, "memorization_step": 100}
    assert grok_summary(rows([0.1, 0.2]))["grok_step"] is None


def test_onset_rule_of_section_7_1():
    # baseline = max(median(1, 2, 3), 0.1) = 2; needs D > 20 and D > 10 x 2; index >= 2 is eligible
    assert curvature_onset(rows([0] * 6, [1, 2, 3, 20, 20.5, 50])) == {"baseline_defect": 2, "onset_step": 400}
    assert curvature_onset(rows([0] * 4, [1, 2, 30, 40]))["onset_step"] == 200  # the third baseline row counts
    assert curvature_onset(rows([0] * 4, [0.01, 0.01, 0.01, 15]))["baseline_defect"] == 0.1
    assert curvature_onset(rows([0] * 4, [0.01, 0.01, 0.01, 15]))["onset_step"] is None  # 15 < floor 20
    assert curvature_onset(rows([0] * 4, [0.01, 0.01, 0.01, 15]), floor=5)["onset_step"] == 300  # slow regime


def test_lead_and_growth():
    r = rows([0, 0, 0, 0.5, 0.95, 1.0, 1.0], [2, 2, 2, 30, 60, 400, 1000])
    s = curvature_summary(r)
    assert s["onset_step"] == 300 and s["lead_steps"] == 400 - 300
    assert s["defect_growth"] == pytest.approx(60 / 2) and s["defect_growth_run"] == pytest.approx(1000 / 2)
    assert curvature_summary(rows([0, 0], [1, 1]))["onset_step"] is None
