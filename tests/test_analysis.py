"""The rules of docs/paper.md §4 and §7 on hand-made metric rows."""

import pytest

from tinygrok.science import analysis
from tinygrok.science.analysis import curvature_onset, curvature_summary, detection_step, first_step, grok_summary


def rows(test_accs, defects=None, train_accs=None):
    n = len(test_accs)
    return [
        {
            "step": 100 * i,
            "test_acc": test_accs[i],
            "train_acc": (train_accs or [1.0] * n)[i],
            **({"defect": defects[i]} if defects else {}),
        }
        for i in range(n)
    ]


def test_grok_steps_and_memorization():
    r = rows([0.0, 0.1, 0.95, 0.99, 0.97, 0.98, 0.99, 0.99, 1.0], train_accs=[0.1, 0.96] + [1.0] * 7)
    assert first_step(r, "test_acc", 0.9) == 200
    assert detection_step(r, 0.98, 3) == 700  # 300 alone, then 500, 600, 700: the third in a row
    assert grok_summary(r) == {"grok_step_90": 200, "grok_step": 700, "memorization_step": 100}
    assert grok_summary(rows([0.1, 0.2]))["grok_step"] is None


def test_a_measure_moves_once_a_quarter_of_the_way_up_or_down():
    steps = [0, 200, 400, 600, 800, 1000]
    assert analysis.first_move(steps, [0, 1, 2, 4, 6, 10], 200, 1000) == 600  # 1 + (10 - 1) / 4 = 3.25
    assert analysis.first_move(steps, [9, 8, 8, 7.5, 6, 0], 200, 1000) == 800  # 8 - 8 / 4 = 6, reached exactly
    assert analysis.first_move(steps, [0, 1, 0, 0, 0, 5], 200, 1000, fraction=0.9) == 1000
    assert analysis.first_move(steps, [0, 1, 1, 1, 1, 1], 200, 1000) is None  # no way to go: it never moves
    assert analysis.first_move(steps, [0, 1, 0, 0, 0, 5], 200, 800) == 400  # from 1 down to 0, whatever comes after


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


def test_power_law_recovers_a_known_exponent_with_an_honest_standard_error():
    """lead = 0.05 grok^1.27 with 10% log-normal noise, 43 runs over a 300x range (the paper's v1 sweep)."""
    import math

    import numpy as np

    from tinygrok.science.analysis import power_law

    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(200):
        grok = np.exp(rng.uniform(math.log(500), math.log(150_000), 43))
        lead = 0.05 * grok**1.27 * np.exp(rng.normal(0, 0.1, 43))
        estimates.append(power_law(grok, lead))
    alphas = np.array([e["alpha"] for e in estimates])
    assert abs(alphas.mean() - 1.27) < 0.003  # unbiased
    ses = np.array([e["alpha_se"] for e in estimates])
    assert ses.mean() == pytest.approx(alphas.std(), rel=0.15)  # the SE is the spread of the estimate
    assert all(e["n"] == 43 and e["dropped"] == 0 and e["r2"] > 0.99 for e in estimates)


def test_power_law_drops_non_positive_leads_and_counts_them():
    from tinygrok.science.analysis import power_law

    fit = power_law([1000, 2000, 4000, 8000, 500, 300], [100, 200, 400, 800, -50, None])
    assert (
        fit["alpha"] == pytest.approx(1.0) and fit["C"] == pytest.approx(0.1) and (fit["n"], fit["dropped"]) == (4, 2)
    )
    with pytest.raises(ValueError, match="at least 3"):
        power_law([1000, 2000], [10, 20])


def test_sign_test_and_mean_sd():
    from tinygrok.science.analysis import mean_sd, sign_test

    assert sign_test([1300, 1400, 600] * 4) == {"n": 12, "positive": 12, "p": 2**-12}  # the paper's p
    assert sign_test([100, -100, 200, None, 0])["p"] == pytest.approx(4 / 8)  # P(X >= 2 | n = 3)
    assert mean_sd([2933, None, 3433]) == {"mean": 3183, "sd": pytest.approx(353.55, rel=1e-4), "n": 2}


def test_memorization_phase_and_defect_levels_on_hand_made_rows():
    from tinygrok.science.analysis import by_defect_level, memorization_phase

    r = rows([0.0, 0.01, 0.1, 0.2, 0.29, 0.31, 0.9], train_accs=[0.1, 0.5, 0.95, 0.99, 1.0, 1.0, 1.0])
    assert memorization_phase(r) == [200, 300, 400]  # train >= 0.95 and test < 0.3
    late = rows([0.94, 0.95, 0.96], train_accs=[1.0, 1.0, 0.5])
    assert [analysis.phase(row) for row in r + late] == ["early"] * 2 + ["memorization"] * 3 + ["pre-grok"] * 3 + [
        "post-grok"
    ] * 2  # test >= 0.95 is post-grok, whatever the training accuracy
    geometry = [
        {"step": 100 * i, "defect": d, "ratio": v}
        for i, (d, v) in enumerate(
            [
                (4.9, 9.0),
                (5.0, 3.0),
                (14.9, 2.0),
                (15.0, 1.5),
                (29.0, 1.0),
                (30.0, 0.8),
                (31.0, 0.6),
                (200.0, 0.5),
                (20.0, float("nan")),
            ]
        )
    ]
    assert by_defect_level(geometry, "ratio") == {"5-15": 2.5, "15-30": 1.25, ">=30": 0.6}  # 4.9 and NaN left out
    assert by_defect_level(geometry[:1], "ratio") == {"5-15": None, "15-30": None, ">=30": None}


@pytest.mark.parametrize(
    "delays, expected",
    [
        ((500, 200, 300), "differs"),  # +333 ± 153: the 95% interval [-46, +712] misses +800
        ((5500, 1300, 2200), "too few runs to tell"),  # +3000 ± 2211: [-2492, +8492] holds +800, 3000 is not near it
        ((700, 1100, 600), "replicates"),  # +800 ± 265: holds +800, the mean on it
        ((900,), "replicates"),
        ((1000,), "differs"),
    ],
)  # one run: within 20% or not
def test_one_verdict_rule_judges_a_point_value_by_the_interval_and_the_margin(delays, expected):
    """The dose-response's +800 (docs/paper.md §8.3) against delays measured on three seeds: the sibling protocol's
    +500 / +200 / +300 and the own protocol's +5500 / +1300 / +2200 (docs/differences.md), the reference code's
    +700 / +1100 / +600."""
    assert analysis.verdict(list(delays), 800, 800) == expected


def test_an_interval_is_never_narrower_than_what_the_values_are_measured_to():
    """Three seeds each +200 (grok steps counted every 100 steps): sd 0, yet known to within 100 only."""
    assert analysis.verdict([200, 200, 200], 300, 300) == "differs"  # as if measured exactly
    assert analysis.verdict([200, 200, 200], 300, 300, resolution=100) == "too few runs to tell"
    assert analysis.verdict([300, 300, 300], 300, 300, resolution=100) == "replicates"


def test_a_range_holds_the_mean_and_an_interval_meets_the_range():
    assert analysis.verdict([1700, 2200], 1800, 2100) == "replicates"  # the mean, 1950, inside
    assert analysis.verdict([1500, 1600], 1800, 2100) == "differs"
    assert analysis.verdict([1.2], 1.24, 1.30, interval=(1.1, 1.25)) == "replicates"
    assert analysis.verdict([1.2], 1.24, 1.30, interval=(1.1, 1.2)) == "differs"
