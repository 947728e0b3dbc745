"""Forecasting the grok step while a run trains (docs/paper.md §7): will it grok, and when, with an 80% interval.

The forecaster reads a run's probed metric rows up to step t only (the defect D, accuracies, losses) and its
settings (learning rate, weight decay). Seven numbers describe the record at t (FEATURES), and two linear models,
fitted on stored runs, turn them into the forecast:

    P(the run groks) = sigmoid(x . a)                logistic regression, over the probes of every run
                                                     (a grokking run's before T), x = the LOGISTIC features;
    log10(T - t)     = x' . b + e                    least squares, over the grokking runs' probes before T,
                                                     x' = the REGRESSION features: the step on the run's own
                                                     clock, and no weight decay > 0 (always 1 there);

where T is grok_90 (the first evaluation with test accuracy >= 0.9). The 80% interval is t + 10^(x' . b + e10)
to t + 10^(x' . b + e90), e10 and e90 the 10% and 90% quantiles of the fitted residuals. Every run weighs the
same in both fits, however many probes it has (a run at lr 1e-4 has 35x those of one at 1e-2).

Why these features: the learning rate alone sets T roughly (~34k, ~3k, ~300 steps at 1e-4, 1e-3, 1e-2); the
memorization step (train accuracy 0.95) comes later at lower rates, as T does (not in proportion: T is ~12, ~7
and 1-2 memorization steps at 1e-4, 1e-3 and 1e-2), so the least squares reads the step in units of the run's own
memorization step; the defect's growth over its baseline says how far curvature has risen (§7.1); test accuracy
and the fall of the test loss from its peak say how far generalisation has gone; weight decay 0 never groks. The
own clock was chosen over the plain step on the fitted runs alone (leave one learning rate out, the median errors
at onset/25/50/75% of T fell from 42/26/41/25% to 7/12/11/7%); P(grok) keeps the plain step, as with the own
clock its false alarms, leaving one learning rate out, rose from 15% to 73% of the non-grokking runs' probes. The
onset alone cannot give T (lead = c T^alpha with alpha > 1 makes onset = T - lead non-monotone in T), so it is
not a feature.

"P(grok)" is the chance that the run groks at all, as the fitted runs did within their caps; "confident" is a
forecast with P(grok) >= 0.5 and an interval at most half as wide as its step (late in a long run that width is
easily met, so there P(grok) decides alone).

Baselines (scored beside it): the learning rate alone (T = C lr^beta), the curvature onset plus the median lead,
and the test loss's peak (once it has halved since) plus the median delay from it to grok_90.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinygrok.science.analysis import MEMORIZED, curvature_onset

FEATURES = (
    "1",
    "log10 lr",
    "log10 step",
    "log10 defect growth",
    "test accuracy",
    "log10 test-loss fall",
    "weight decay > 0",
    "log10 step / memorization step",
)
LOGISTIC = (0, 1, 2, 3, 4, 5, 6)  # P(grok)'s features (indices into FEATURES)
REGRESSION = (0, 1, 7, 3, 4, 5)  # log10(T - t)'s: the run's own clock for the step; weight decay > 0 is always 1
ROW_KEYS = ("step", "defect", "train_acc", "test_acc", "train_loss", "test_loss")  # what a record keeps of a row
INTERVAL = (0.10, 0.90)  # the central 80%
CONFIDENT_WIDTH = 0.5  # confident: P(grok) >= 0.5 and the interval at most half the forecast step wide
RIDGE = 1e-2  # the logistic fit's L2 penalty (not on the intercept): weight decay 0 separates perfectly
MAX_LOG_STEPS = 9.0  # log10 of the most steps to go a forecast says (beyond a billion it means "never")


@dataclass(frozen=True)
class Record:
    """What the forecaster knows of one run: its name and settings, its probed rows (ROW_KEYS, in step order)
    and its grok_90 (None if the run never reached test accuracy 0.9)."""

    name: str
    op: str
    seed: int
    lr: float
    weight_decay: float
    grok_90: int | None
    rows: tuple


@dataclass(frozen=True)
class Forecast:
    """At `step`: P(grok) and, if it groks, grok_90 at `grok_step`, 80% between `low` and `high`."""

    step: int
    p_grok: float
    grok_step: float
    low: float
    high: float

    @property
    def confident(self) -> bool:
        return self.p_grok >= 0.5 and self.high - self.low <= CONFIDENT_WIDTH * self.grok_step

    def words(self) -> str:
        return (
            f"grok forecast: step ~{self.grok_step:,.0f}, 80%: {self.low:,.0f}-{self.high:,.0f} "
            f"(P(grok) {self.p_grok:.2f})"
        )


def before_grok(rec: Record, forecasts: list[Forecast | None]) -> list[Forecast]:
    """The forecasts made before the run reached grok_90 (all, for one that never did): what a person watching
    it saw, and what is scored."""
    return [
        f for f, r in zip(forecasts, rec.rows) if f is not None and (rec.grok_90 is None or r["step"] < rec.grok_90)
    ]


def feature_matrix(rows, lr: float, weight_decay: float) -> np.ndarray:
    """(n, 8): row i describes the probed rows[:i + 1] only, so a forecast never sees the future; NaN for the
    first two rows (the defect's baseline takes three probes, as the onset rule's, §7.1)."""
    defect = np.array([r["defect"] for r in rows], dtype=float)  # (n,)
    test_loss = np.maximum([r["test_loss"] for r in rows], 1e-30)  # (n,); float32 can round a loss to 0
    step = np.maximum([r["step"] for r in rows], 1)  # (n,)
    n = len(rows)
    x = np.full((n, len(FEATURES)), np.nan)
    if n < 3:
        return x
    baseline = curvature_onset(list(rows[:3]))["baseline_defect"]  # the onset rule's baseline, max(median, 0.1)
    x[2:] = np.column_stack(
        [
            np.ones(n),
            np.full(n, math.log10(lr)),
            np.log10(step),
            np.log10(np.maximum.accumulate(defect) / baseline + 1e-12),
            [r["test_acc"] for r in rows],
            np.log10(np.maximum.accumulate(test_loss) / test_loss),
            np.full(n, float(weight_decay > 0)),
            np.log10(step / memorization_steps(rows, step)),
        ]
    )[2:]
    return x


def memorization_steps(rows, step: np.ndarray) -> np.ndarray:
    """(n,): at each probe, the memorization step if the run has reached it by then, else the probe's own step
    (so the own clock reads 0 until memorization)."""
    memorized = np.array([r["train_acc"] >= MEMORIZED for r in rows])
    first = int(np.argmax(memorized)) if memorized.any() else len(rows)
    return np.where(np.arange(len(rows)) >= first, step[min(first, len(rows) - 1)], step)


def _pairs(records, grokking_only: bool):
    """The fit's data: features, each probe's run (index), and the probe's step, over the probes before T."""
    xs, run, steps = [], [], []
    for i, rec in enumerate(records):
        if grokking_only and rec.grok_90 is None:
            continue
        x = feature_matrix(rec.rows, rec.lr, rec.weight_decay)
        keep = [j for j, r in enumerate(rec.rows) if j >= 2 and (rec.grok_90 is None or r["step"] < rec.grok_90)]
        xs.append(x[keep])
        run.extend([i] * len(keep))
        steps.extend(rec.rows[j]["step"] for j in keep)
    if not xs:
        raise ValueError("the forecaster needs runs with at least 3 probes before grok_90")
    return np.concatenate(xs), np.array(run), np.array(steps, dtype=float)


def _run_weights(run: np.ndarray) -> np.ndarray:
    """1 / (the run's number of probes): every run weighs the same."""
    counts = np.bincount(run)
    return 1.0 / counts[run]


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of values with weights (the smallest value whose cumulative weight reaches q)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][np.searchsorted(cumulative, q)])


@dataclass(frozen=True)
class Forecaster:
    """The fitted forecaster: logistic coefficients a (over the LOGISTIC features), least-squares coefficients b
    (over the REGRESSION ones), the residual quantiles e10, e90, and the names of the runs it was fitted on."""

    a: tuple
    b: tuple
    interval: tuple
    runs: tuple

    def at(self, x: np.ndarray, step: int) -> Forecast:
        """The forecast from one feature row at `step`."""
        p = 0.5 * (1.0 + math.tanh(0.5 * float(x[list(LOGISTIC)] @ np.array(self.a))))  # sigmoid, no overflow
        centre = min(float(x[list(REGRESSION)] @ np.array(self.b)), MAX_LOG_STEPS)
        low, high = (step + 10 ** (centre + e) for e in self.interval)
        return Forecast(step, p, step + 10**centre, low, high)

    def forecasts(self, rows, lr: float, weight_decay: float) -> list[Forecast | None]:
        """The forecast after each probed row (None for the first two, and where a record is not finite)."""
        x = feature_matrix(rows, lr, weight_decay)
        return [self.at(x[i], rows[i]["step"]) if np.isfinite(x[i]).all() else None for i in range(len(rows))]


def fit(records) -> Forecaster:
    """Fit both models on the records (see the module's docstring)."""
    records = list(records)
    x, run, steps = _pairs(records, grokking_only=True)
    x, w = x[:, list(REGRESSION)], _run_weights(run)
    y = np.log10(np.array([records[i].grok_90 for i in run]) - steps)  # (n,) log10 of the steps still to go
    _check_design(x, "the grokking runs' probes")
    b = np.linalg.solve(x.T @ (w[:, None] * x), x.T @ (w * y))
    residual = y - x @ b
    interval = tuple(weighted_quantile(residual, w, q) for q in INTERVAL)
    xa, run_a, _ = _pairs(records, grokking_only=False)
    label = np.array([records[i].grok_90 is not None for i in run_a], dtype=float)
    a = _logistic(xa[:, list(LOGISTIC)], label, _run_weights(run_a))
    return Forecaster(tuple(map(float, a)), tuple(map(float, b)), interval, tuple(r.name for r in records))


def _check_design(x: np.ndarray, what: str) -> None:
    """A ValueError where least squares on x has no unique answer (e.g. every run at one learning rate)."""
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError(f"{what} cannot separate the features' effects (one learning rate only?)")


def _logistic(x: np.ndarray, label: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted L2-penalised logistic regression by L-BFGS (the intercept not penalised)."""
    penalty = np.r_[0.0, np.full(x.shape[1] - 1, RIDGE)]
    sign = 2 * label - 1  # (n,) +1 groks, -1 does not

    def loss(a):
        margin = sign * (x @ a)
        value = w @ np.logaddexp(0.0, -margin) + 0.5 * penalty @ (a * a)
        grad = -x.T @ (w * sign / (1.0 + np.exp(margin))) + penalty * a
        return value, grad

    from scipy.optimize import minimize  # here: only a refit needs it, and importing it slows every start-up

    return minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10}).x


# ---------------------------------------------------------------------- baselines
Predictor = Callable[[Record, int], Forecast | None]  # (a run, how many of its rows are known) -> forecast


def forecaster_predictor(records) -> Predictor:
    """The forecaster fitted on the records, as a Predictor (what the score compares with the baselines). Its
    features are causal (row i reads rows[:i + 1] only), so the forecasts after every probe of the run last asked
    about are made once, and the one after probe n is the one made from rows[:n]."""
    model = fit(records)
    last: dict = {}

    def predict(rec: Record, n: int) -> Forecast | None:
        if last.get("rec") is not rec:
            last.update(rec=rec, made=model.forecasts(rec.rows, rec.lr, rec.weight_decay))
        return last["made"][n - 1]

    return predict


def lr_law_predictor(records) -> Predictor:
    """T = C lr^beta, by least squares of log10 T on log10 lr over the grokking runs; 80% from its residuals."""
    grokked = [r for r in records if r.grok_90 is not None]
    x = np.column_stack([np.ones(len(grokked)), np.log10([r.lr for r in grokked])])
    y = np.log10([r.grok_90 for r in grokked])
    _check_design(x, "the grokking runs")
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    e = tuple(float(np.quantile(y - x @ coef, q)) for q in INTERVAL)

    def predict(rec: Record, n: int) -> Forecast:
        centre = coef[0] + coef[1] * math.log10(rec.lr)
        return Forecast(rec.rows[n - 1]["step"], 1.0, 10**centre, 10 ** (centre + e[0]), 10 ** (centre + e[1]))

    return predict


def _delay_predictor(records, mark: Callable[[tuple], int | None]) -> Predictor:
    """T = mark + the median of (T - mark) over the grokking runs, each marked on its probes before T as a
    forecast would see them; 80% from the quantiles."""
    delays = [
        r.grok_90 - m
        for r in records
        if r.grok_90 is not None and (m := mark(tuple(q for q in r.rows if q["step"] < r.grok_90))) is not None
    ]
    if not delays:
        raise ValueError("no grokking run has the mark to measure a delay from")
    median, low, high = (float(np.quantile(delays, q)) for q in (0.5, *INTERVAL))

    def predict(rec: Record, n: int) -> Forecast | None:
        m = mark(rec.rows[:n])
        return None if m is None else Forecast(rec.rows[n - 1]["step"], 1.0, m + median, m + low, m + high)

    return predict


def onset_predictor(records) -> Predictor:
    """The curvature onset (§7.1) plus the median lead."""
    return _delay_predictor(records, lambda rows: curvature_onset(list(rows))["onset_step"])


def loss_peak(rows) -> int | None:
    """The step of the test loss's highest point so far, once the loss has fallen to half of it since (None
    before): memorization's peak, confirmed (a loss-only signal)."""
    if not rows:
        return None
    peak = max(range(len(rows)), key=lambda i: rows[i]["test_loss"])
    fallen = min(r["test_loss"] for r in rows[peak:]) <= 0.5 * rows[peak]["test_loss"]
    return rows[peak]["step"] if fallen else None


def loss_peak_predictor(records) -> Predictor:
    """The test loss's peak (loss_peak) plus the median delay from it to grok_90."""
    return _delay_predictor(records, loss_peak)


METHODS = {
    "forecaster": forecaster_predictor,
    "learning rate alone": lr_law_predictor,
    "onset + median lead": onset_predictor,
    "test-loss peak + median delay": loss_peak_predictor,
}
