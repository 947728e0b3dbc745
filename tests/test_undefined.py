"""Exactly-zero defects (float32 makes them, docs/paper.md §6.6): every quantity derived from one is undefined there
(None, null in JSON), counted, and left out of medians; nothing crashes and nothing becomes 0, inf or NaN."""

import math

import numpy as np
import pytest

from tinygrok.science import analysis, undefined
from tinygrok.science.commutator import alignment, projection_fractions, subspace_ratios
from tinygrok.science.pca import random_basis

P, K = 400, 4
RNG = np.random.default_rng(0)
BASIS = random_basis(P, K, RNG)
RANDOMS = {K: [random_basis(P, K, RNG) for _ in range(3)]}


def samples(*deltas):
    """Commutator samples with the given defect vectors (normaliser 1, so D = ||delta||)."""
    return [{"delta": d, "scale": 1.0, "defect": float(np.linalg.norm(d))} for d in deltas]


def test_the_helpers_define_zero_denominators_and_skip_undefined_values():
    assert undefined.ratio(3.0, 0.0) is None and undefined.ratio(None, 2.0) is None
    assert undefined.ratio(0.0, 2.0) == 0.0 and undefined.ratio(3.0, 2.0) == 1.5
    assert undefined.median([None, 3.0, math.nan, 1.0, 2.0]) == 2.0  # NaN: what older run directories hold
    assert undefined.median([None, None]) is None and undefined.median([]) is None
    rows = [{"exec_rho": None, "alignment_ratio": 1.2}, {"exec_rho": 0.99}, {"exec_rho": None}]
    assert undefined.tally(rows) == {"exec_rho": {"records": 2, "of": 3, "why": undefined.WHY["_rho"]}}
    assert undefined.tally([{"exec_rho": 0.99}]) == {}
    assert undefined.reason("exec_rho") == undefined.WHY["_rho"]
    assert "no rule" in undefined.reason("train_acc")  # an unforeseen key is reported, never a crash


def test_a_zero_defect_vector_has_no_projection_fractions():
    assert projection_fractions(np.zeros(P), BASIS) == (None, None)
    inside = BASIS @ np.ones(K)
    assert projection_fractions(inside, BASIS) == pytest.approx((1.0, 0.0), abs=1e-7)


def test_subspace_ratios_are_undefined_where_the_median_defect_is_zero():
    zero, some = np.zeros(P), RNG.standard_normal(P)
    out = subspace_ratios(samples(zero, zero, zero), {"exec": BASIS}, RANDOMS)
    assert out == {"exec_proj": None, "exec_random_proj": None, "exec_random_ratio": None, "exec_rho": None}
    # three of five zero: the median defect is 0, so proj/full is undefined; rho is the median of the two others
    two = [RNG.standard_normal(P), BASIS @ np.ones(K) + 0.1 * some]
    out = subspace_ratios(samples(zero, zero, zero, *two), {"exec": BASIS}, RANDOMS)
    assert out["exec_proj"] is None and out["exec_random_ratio"] is None
    assert out["exec_rho"] == pytest.approx(np.mean([projection_fractions(d, BASIS)[1] for d in two]))
    # two of five zero: everything is defined, and rho skips the zero samples
    three = [*two, RNG.standard_normal(P)]
    out = subspace_ratios(samples(zero, zero, *three), {"exec": BASIS}, RANDOMS)
    assert all(v is not None and math.isfinite(v) for v in out.values())
    assert out["exec_rho"] == pytest.approx(np.median([projection_fractions(d, BASIS)[1] for d in three]))


def test_alignment_leaves_zero_defects_out_and_is_undefined_without_a_direction():
    step, some = RNG.standard_normal(P), RNG.standard_normal(P)
    assert alignment(step, [np.zeros(P)] * 3) == {"mean_abs_cos": None, "ratio": None, "zero_deltas": 3}
    assert alignment(np.zeros(P), [some])["ratio"] is None
    mixed = alignment(step, [np.zeros(P), 2 * step, some])
    want = (1 + abs(step @ some) / np.linalg.norm(step) / np.linalg.norm(some)) / 2
    assert mixed["mean_abs_cos"] == pytest.approx(want) and mixed["zero_deltas"] == 1
    tiny = np.zeros(P, np.float32)
    tiny[:3] = 1e-45  # float32 subnormals: not zero, but their norm underflows to 0
    assert np.any(tiny) and np.linalg.norm(tiny) == 0
    with np.errstate(divide="raise", invalid="raise"):  # no division by that zero norm
        underflow = alignment(step.astype(np.float32), [tiny, 2 * step.astype(np.float32)])
    assert underflow["mean_abs_cos"] == pytest.approx(1, rel=1e-6) and underflow["zero_deltas"] == 1


def test_defect_levels_skip_undefined_values():
    rows = [{"defect": 6.0, "r": None}, {"defect": 7.0, "r": 2.0}, {"defect": 20.0, "r": None}]
    assert analysis.by_defect_level(rows, "r") == {"5-15": 2.0, "15-30": None, ">=30": None}


def test_a_zero_baseline_is_floored_by_the_onset_rule_so_growth_stays_defined():
    """The paper defines this one itself (§7.1): baseline = max(median of the first three D, 0.1)."""
    rows = [{"step": 100 * i, "defect": d, "test_acc": 0.0} for i, d in enumerate([0.0, 0.0, 0.0, 5.0, 30.0])]
    summary = analysis.curvature_summary(rows)
    assert summary["baseline_defect"] == 0.1 and summary["onset_step"] == 400
    assert summary["defect_growth_run"] == pytest.approx(300.0)


def test_the_report_lists_each_runs_undefined_values():
    from tinygrok.lab import sweep_report

    counts = undefined.tally([{"exec_rho": None, "weight_svd_rho": None}, {"exec_rho": 0.9, "weight_svd_rho": 0.9}])
    lines = sweep_report._undefined([{"name": "r1", "undefined": counts}, {"name": "r2", "undefined": {}}])
    assert f"| r1 | exec_rho, weight_svd_rho | 1 of 2 | {undefined.WHY['_rho']} |" in lines[-2]
    assert "r2" not in "".join(lines) and sweep_report._undefined([{"name": "r2", "undefined": {}}]) == []
