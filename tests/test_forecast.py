"""The grok forecaster: it never sees the future, its fit recovers a known law, the shipped data is what a refit
gives, its held-out runs are apart from its fitted ones, its score and decision rule count what they say, it is
replayed by `tinygrok forecast`, and bad input gets one line."""

import dataclasses
import json
import math

import numpy as np
import pytest
from test_cli import TINY, assert_refused, refused_here, tinygrok

from tinygrok.lab import forecast_scoring, grids, records
from tinygrok.run import grok_forecaster
from tinygrok.run.runs import Run, RunError
from tinygrok.science import forecast
from tinygrok.science.config import preset
from tinygrok.science.forecast import FEATURES, LOGISTIC, REGRESSION, Record, feature_matrix, fit


def synthetic_rows(rng, n: int, start: int = 0) -> list[dict]:
    """n probed rows, every 100 steps: a wandering defect, accuracies and losses (test accuracy below 0.9: not
    grokked yet)."""
    steps = start + 100 * np.arange(n)
    return [
        {
            "step": int(s),
            "defect": float(d),
            "train_acc": float(a),
            "test_acc": float(b),
            "train_loss": float(l1),
            "test_loss": float(l2),
        }
        for s, d, a, b, l1, l2 in zip(
            steps,
            np.exp(rng.normal(0, 1, n).cumsum()),
            rng.uniform(0.8, 1, n),  # train accuracy: memorized (0.95) at a quarter of the probes
            rng.uniform(0, 0.85, n),
            rng.uniform(0.01, 5, n),
            rng.uniform(0.01, 5, n),
        )
    ]


def test_a_forecast_at_step_t_is_unchanged_when_the_records_after_t_change():
    rng = np.random.default_rng(0)
    rows = synthetic_rows(rng, 40)
    changed = rows[:20] + synthetic_rows(rng, 20, start=2000)  # the same first 20 probes, another future
    assert feature_matrix(rows, 1e-3, 1.0)[:20].tobytes() == feature_matrix(changed, 1e-3, 1.0)[:20].tobytes()
    model, _ = grok_forecaster.shipped()
    before, after = model.forecasts(rows, 1e-3, 1.0), model.forecasts(changed, 1e-3, 1.0)
    assert before[:20] == after[:20] and before[20:] != after[20:]
    assert before[:2] == [None, None]  # the defect's baseline takes three probes


def test_the_fitter_recovers_a_known_law_from_synthetic_runs():
    """Runs of three probes each (one forecast apiece): T - t = 10^(x . b + e), e ~ N(0, 0.1), and 'groks' drawn
    with P = sigmoid(x . a); the fit finds b, the residual quantiles, and a."""
    rng = np.random.default_rng(1)
    b_true = np.array([1.0, -0.5, 0.3, -0.4, -0.8, -0.6])  # over REGRESSION
    a_true = np.array([1.5, 0.0, -0.2, 0.8, 2.0, 0.0, 0.0])  # over LOGISTIC
    records = []
    for i in range(3000):
        rows, lr = synthetic_rows(rng, 3, start=int(rng.integers(1, 10)) * 100), 10 ** rng.uniform(-4, -2)
        x = feature_matrix(rows, lr, 1.0)[2]
        groks = rng.random() < 1 / (1 + math.exp(-x[list(LOGISTIC)] @ a_true))
        T = rows[2]["step"] + 10 ** (x[list(REGRESSION)] @ b_true + rng.normal(0, 0.1))
        records.append(Record(f"run{i}", "add", i, lr, 1.0, math.ceil(T) if groks else None, tuple(rows)))
    model = fit(records)
    b_off = np.abs(np.array(model.b) - b_true)
    assert b_off.max() < 0.02, dict(zip((FEATURES[i] for i in REGRESSION), b_off))
    assert model.interval == pytest.approx((-0.128, 0.128), abs=0.015)  # N(0, 0.1)'s 10% and 90% quantiles
    a_fit = np.array(model.a)
    assert np.abs(a_fit[[2, 3, 4]] - a_true[[2, 3, 4]]).max() < 0.25, a_fit


def test_the_lr_law_baseline_recovers_its_power_law():
    rows = tuple(synthetic_rows(np.random.default_rng(2), 5))
    records = [
        Record(f"r{lr}", "add", 0, lr, 1.0, round(3000 * (lr / 1e-3) ** -0.9), rows)
        for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    ]
    predict = forecast.lr_law_predictor(records)
    steps = [r.grok_90 for r in records]  # rounded to whole steps: the law's 3000 x 10^0.9 to 1.5e-4
    fitted = 10 ** np.polyval(np.polyfit(np.log10([r.lr for r in records]), np.log10(steps), 1), -4)
    assert predict(records[0], 5).grok_step == pytest.approx(fitted, rel=1e-9)
    assert fitted == pytest.approx(3000 * 10**0.9, rel=3e-4)


def test_a_weighted_quantile_and_the_test_loss_peak_once_confirmed_and_the_delay_from_it():
    values, weights = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0])
    assert [forecast.weighted_quantile(values, weights, q) for q in (0.25, 0.5, 0.6)] == [1.0, 2.0, 3.0]
    rows = tuple({"step": 100 * i, "test_loss": v} for i, v in enumerate([1.0, 3.0, 2.0, 1.4]))
    assert [forecast.loss_peak(rows[:n]) for n in (0, 3, 4)] == [None, None, 100]  # confirmed once halved: 1.4
    records = [Record(f"r{t}", "add", 0, 1e-3, 1.0, t, rows) for t in (500, 700, 900)]  # delays 400, 600, 800
    made = forecast.loss_peak_predictor(records)(records[0], 4)
    low, high = (100 + float(np.quantile([400, 600, 800], q)) for q in forecast.INTERVAL)
    assert (made.step, made.grok_step, made.low, made.high) == (300, 700, low, high)
    assert forecast.loss_peak_predictor(records)(records[0], 3) is None  # no confirmed peak yet: no forecast


def test_a_refit_from_the_stored_run_list_reproduces_the_shipped_forecaster(tmp_path):
    records = grok_forecaster.shipped_records()
    model, shipped_model = grok_forecaster.shipped()
    refit = fit(records)
    assert refit.runs == model.runs == tuple(r.name for r in records)
    np.testing.assert_allclose(refit.b, model.b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(refit.interval, model.interval, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(refit.a, model.a, rtol=1e-6, atol=1e-8)
    assert shipped_model == grok_forecaster.model_of(preset("paper", probe_every=100))
    fitted, runs = grok_forecaster.write_shipped(refit, shipped_model, records, tmp_path)  # what forecast-fit writes
    assert (
        runs.read_bytes() == grok_forecaster.RECORDS.read_bytes() and grok_forecaster.shipped_records(runs) == records
    )
    assert json.loads(fitted.read_text())["runs"] == list(model.runs)


def test_the_score_holds_every_stored_run_once_per_scheme():
    records = grok_forecaster.shipped_records()
    for scheme in forecast_scoring.SCHEMES:
        cells = forecast_scoring.score(records, scheme)["forecaster"]
        assert len(cells["alarms"]) == sum(r.grok_90 is None for r in records)
        assert len(cells["first"]) == sum(r.grok_90 is not None for r in records)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The paper's model for 200 steps, probed every 100: a forecast at the third probe."""
    out = tmp_path_factory.mktemp("forecast") / "paper"
    result = tinygrok("train", "--max-steps", "200", "--probe-every", "100", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_decision_rule_on_the_shipped_held_out_runs_keeps_the_live_forecast_off():
    """The outcome the code applies (training shows no forecast): if new records turned it, this fails."""
    fitted = grok_forecaster.shipped_records()
    held, _, missing = forecast_scoring.held_out_records([grok_forecaster.HELD_OUT_RECORDS])
    assert (len(held), missing) == (34, [])
    live, wins, coverage = forecast_scoring.decision(forecast_scoring.held_out_score(fitted, held))
    assert (live, wins, round(coverage, 2)) == (False, 1, 0.58)


def test_tinygrok_forecast_replays_the_forecast_over_a_trained_run(paper_run):
    result = tinygrok("forecast", str(paper_run))
    assert result.returncode == 0, result.stderr
    assert "grok forecast of paper" in result.stdout and (paper_run / "forecast.png").stat().st_size > 10_000
    rec, made = grok_forecaster.replay(Run(paper_run))
    last = forecast.before_grok(rec, made)[-1]  # the run never groks in its 200 steps: its last forecast is shown
    assert rec.grok_90 is None and f"{last.grok_step:,.0f}" in result.stdout and f"{last.p_grok:.2f}" in result.stdout


def test_bad_input_to_the_forecast_gets_one_line(tmp_path):
    no_probes = tmp_path / "no_probes"
    assert tinygrok("train", "--max-steps", "1", "--out", str(no_probes)).returncode == 0
    assert_refused(refused_here("forecast", str(no_probes)), "no curvature probes")
    small = tmp_path / "small"
    assert tinygrok("train", *TINY, "--max-steps", "15", "--probe-every", "5", "--out", str(small)).returncode == 0
    assert_refused(refused_here("forecast", str(small)), "another model", "d_model 8 (fitted: 128)")
    assert_refused(refused_here("forecast", str(tmp_path / "missing")))
    assert_refused(refused_here("forecast-fit", str(tmp_path / "missing"), "--out", str(tmp_path)), "no trained runs")
    assert_refused(refused_here("forecast-fit", str(no_probes)), "--out")  # never into the installed package unasked


def test_no_method_reads_a_run_past_the_probes_it_is_given():
    records = grok_forecaster.shipped_records()
    rec = max((r for r in records if r.grok_90 is not None), key=lambda r: len(r.rows))
    n = len(rec.rows) // 2
    future = tuple({**r, "defect": 1e4 * r["defect"], "test_acc": 1.0, "test_loss": 1e-3} for r in rec.rows[n:])
    changed = dataclasses.replace(rec, rows=rec.rows[:n] + future)
    for name, make in forecast.METHODS.items():
        predict = make(records)
        assert all(predict(rec, k) == predict(changed, k) for k in range(1, n + 1)), name


def test_the_score_of_a_known_forecast(monkeypatch):
    """A stand-in method that always says 1,100 (900-1,300) for a run that groks at 1,000, and the same for one
    that never groks; it checks that it is never asked about a run it was fitted on."""
    defects = [1, 1, 1, 1, 1, 50, 60, 70, 80, 90]  # the onset (D > 10 x 1 and > 20) at step 500
    rows = tuple(
        {"step": 100 * i, "defect": d, "train_acc": 1.0, "test_acc": 0.1, "train_loss": 0.1, "test_loss": 5.0}
        for i, d in enumerate(defects)
    )
    groks = Record("groks", "add", 1, 1e-3, 1.0, 1000, rows)
    never = Record("never", "x3_xy", 2, 1e-3, 1.0, None, rows)

    def stand_in(train):
        names = {r.name for r in train}

        def predict(rec, n):
            assert rec.name not in names
            return forecast.Forecast(rec.rows[n - 1]["step"], 1.0, 1100.0, 900.0, 1300.0)

        return predict

    monkeypatch.setattr(forecast_scoring, "METHODS", {"stand-in": stand_in})
    cells = forecast_scoring.score([groks, never], "leave one seed out")["stand-in"]
    assert [forecast_scoring.point_cell(cells["points"][label]) for label, _ in forecast_scoring.POINTS] == [
        "err 10%, 1/1 in 80%, width 40%"
    ] * 4
    assert [
        f.step for f in forecast_scoring.at_points(groks, [stand_in([])(groks, n) for n in range(1, 11)]).values()
    ] == [
        500,
        200,
        500,
        700,
    ]
    assert forecast_scoring.first_cell(cells["first"]) == "1/1 runs, 100% of T ahead, 1/1 hold T"
    assert forecast_scoring.alarm_cell(cells["alarms"]) == "1/1 runs, 100% of probes"
    assert forecast_scoring.alarm_cell([(0, 10), (5, 10), None]) == "1/2 runs, 25% of probes, 1 no forecast"


def test_no_held_out_run_is_one_the_forecaster_was_fitted_on():
    """The held-out grid and the shipped forecaster's runs share no run (operation, seed, learning rate, weight
    decay and training fraction together)."""
    specs = grids.grid(forecast_scoring.HELD_OUT_GRID)
    fitted = forecast_scoring.fitted_keys()
    assert len(fitted) == 35  # of 36 runs: add at s = 1 is add, seed 42, lr 1e-3 with an intervention
    held = {
        forecast_scoring.run_key(s.config.op, s.config.seed, s.config.lr, s.config.weight_decay, s.config.train_frac)
        for s in specs
    }
    assert len(held) == len(specs) and not held & fitted
    assert not {s.name for s in specs} & set(grok_forecaster.shipped()[0].runs)


def test_a_fitted_run_recorded_as_held_out_is_refused(tmp_path):
    fitted = grok_forecaster.shipped_records()[0]
    cfg = preset("paper", op=fitted.op, seed=fitted.seed, lr=fitted.lr, weight_decay=fitted.weight_decay)
    name = grids.grid(forecast_scoring.HELD_OUT_GRID)[0].name
    record = dict.fromkeys(records.KEYS, [])
    records.save({**record, "name": name, "config": cfg.to_dict(), "metrics": list(fitted.rows)}, tmp_path)
    with pytest.raises(RunError, match="fitted on the same run"):
        forecast_scoring.held_out_records([tmp_path])


def _cells(forecaster: list[float], law: list[float], held: list[bool]) -> dict:
    """Score cells of the forecaster and the learning-rate law: at every point run i's errors forecaster[i] and
    law[i], and whether the forecaster's interval held T, held[i]."""

    def method(errors: list[float]) -> dict:
        runs = [(e, h, 0.5) for e, h in zip(errors, held, strict=True)]
        return {"points": {label: list(runs) for label, _ in forecast_scoring.POINTS}, "first": [], "alarms": []}

    return {"forecaster": method(forecaster), forecast_scoring.BASELINE: method(law)}


def test_the_decision_rule_counts_wins_on_the_same_runs_and_bounds_the_coverage():
    better, worse, law = [0.1] * 10, [0.3] * 10, [0.2] * 10
    for n_held, live in ((6, False), (7, True), (9, True), (10, False)):  # coverage 60%, 70%, 90%, 100%
        held = [True] * n_held + [False] * (10 - n_held)
        assert forecast_scoring.decision(_cells(better, law, held)) == (live, 4, pytest.approx(n_held / 10))
    assert forecast_scoring.decision(_cells(worse, law, [True] * 8 + [False] * 2))[:2] == (False, 0)
    cells = _cells(better, law, [True] * 8 + [False] * 2)
    cells["forecaster"]["points"]["at onset"] = [None] * 9 + [(0.3, True, 0.5)]  # compared on run 10 only
    assert forecast_scoring.decision(cells) == (True, 3, pytest.approx(25 / 31))


def test_the_runs_own_clock_counts_from_its_first_memorized_probe():
    rows = [{"step": s, "train_acc": a} for s, a in ((100, 0.5), (200, 0.96), (300, 0.9), (400, 0.99))]
    step = np.array([100, 200, 300, 400])
    assert forecast.memorization_steps(rows, step).tolist() == [100, 200, 200, 200]
    assert forecast.memorization_steps(rows[:1], step[:1]).tolist() == [100]


def test_a_forecast_settles_where_it_stays_within_ten_percent_until_grok_90():
    rows = tuple({"step": 100 * i} for i in range(12))  # grok_90 at 1,000: the probes at 1,000 and 1,100 are after
    rec = Record("r", "add", 1, 1e-3, 1.0, 1000, rows)
    guesses = [None, 2000, 1050, 1300, 1000, 950, 1099, 901, 1010, 1000, 5000, 5000]

    def made(guesses):
        return [None if g is None else forecast.Forecast(100 * i, 1.0, g, g, g) for i, g in enumerate(guesses)]

    assert forecast_scoring.settled(rec, made(guesses)) == 400
    assert forecast_scoring.settled(rec, made(guesses[:9] + [1200, 1000, 1000])) is None
    assert forecast_scoring.settled(rec, made([None] * 12)) is None
