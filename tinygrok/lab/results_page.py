"""A reproduction's results page: one row per claim of paper.CLAIMS (docs/paper.md §10, §8.3, §9), each measured over
the recorded runs of its stage, beside the paper's number, with a verdict and the figure it is seen in. A function
of a folder of run records (records.py) and its reproduce.json alone.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinygrok.lab import records, reproduction, sweep_report
from tinygrok.lab.reproduction import Stage
from tinygrok.run import geometry
from tinygrok.run.runs import write_text
from tinygrok.science import analysis, interventions, paper
from tinygrok.science.paper import GROKKING_OPS, NON_GROKKING_OPS, Claim

RESULTS = "results.md"
VERDICTS = ("replicates", "too few runs to tell", "differs", "not measured")
RULES = (
    analysis.VERDICT_RULE + " A claim on runs that all grokked in the paper (Table 1's steps and leads, the slow "
    "regime's) *differs* where one of tinygrok's never grokked in the paper's steps. *not measured*: this scale has "
    "no such runs, stopped them before the paper's steps, or none of them defines the quantity, with the reason."
)

LOG = logging.getLogger(__name__)  # a file of the records folder that is no readable record


@dataclass(frozen=True)
class Measured:
    """What a measure found: the values it is judged by (one per run, or one fitted number), how to show them
    ("" for mean ± sd [range] (n)), for a fit or a share the interval it is judged by instead of the mean's, and
    what a reader of the verdict must know of the values ("": nothing)."""

    values: list
    shown: str = ""
    interval: tuple | None = None
    resolution: float = 0.0  # how finely each value is measured (a step counted at evaluations: their interval)
    note: str = ""


# ---------------------------------------------------------------------- which runs
def select(
    runs: list[dict], ops=None, weight_decay=None, lr=None, seed=None, arm=None, dose=None, basis=None
) -> list[dict]:
    """The runs a claim is measured over. ops: an operation, a tuple of them, "grokking" (the grokking operations
    with weight decay), "non_grokking" (the operations that never grok) or "not_grokking" (those and the runs
    without weight decay). Without arm: the runs without intervention. arm (a name or a tuple; "none": the probed
    runs without intervention of §8.1's phase 2): those intervention runs, at `dose` (one, a tuple, or "primary":
    each arm's default, the paper's primary) with `basis`."""

    def op_matches(r):
        if ops == "grokking":
            return r["op"] in GROKKING_OPS and r["weight_decay"] > 0
        if ops == "non_grokking":
            return r["op"] in NON_GROKKING_OPS
        if ops == "not_grokking":
            return r["op"] in NON_GROKKING_OPS or r["weight_decay"] == 0
        return ops is None or r["op"] in ((ops,) if isinstance(ops, str) else ops)

    chosen = [
        r
        for r in runs
        if op_matches(r)
        and all(
            wanted is None or r[key] == wanted
            for key, wanted in (("weight_decay", weight_decay), ("lr", lr), ("seed", seed))
        )
    ]
    if arm is None:
        return sweep_report.plain(chosen)
    arms = (arm,) if isinstance(arm, str) else arm
    doses = (dose,) if isinstance(dose, (int, float)) else dose
    return [
        r
        for r in chosen
        if r["recipe"] == "intervene"
        and sweep_report.arm(r)[0] in arms
        and (doses is None or sweep_report.arm(r)[1] in (_primary(r) if doses == "primary" else doses))
        and (basis is None or sweep_report.arm(r)[2] == basis)
    ]


def _primary(r: dict) -> tuple:
    """The paper's primary dose of the run's arm (its default), as a one-element tuple."""
    hook = interventions.parse(r["hook"])
    return (getattr(type(hook)(), hook.DOSE),) if hook.DOSE else ()  # the arm with every setting its default


# ---------------------------------------------------------------------- the measures
def _finite(values) -> list:
    return [v for v in values if v is not None and math.isfinite(v)]


STEP_KEYS = ("grok_step", "grok_step_90", "memorization_step", "onset_step", "lead_steps")  # counted at evaluations


def _mean(runs, key, **_) -> Measured:
    return Measured(_finite(r.get(key) for r in runs), resolution=_resolution(runs) if key in STEP_KEYS else 0.0)


def _rho(runs, key, **_) -> Measured:
    """Each run's rho, and in how many float32 runs it is exactly 1 at every saved parameter probed because the
    defect's projection onto the execution subspace is exactly 0 there: rounding left no defect in its
    coordinates (docs/paper.md §6.6), so rho is 1 whatever the geometry."""

    def vacuous(r: dict) -> bool:
        probes = r.get("geometry") or []
        exact = all(g["exec_proj"] == 0 and g["exec_rho"] == 1 for g in probes)
        return bool(probes) and exact and r["dtype"] == "float32"

    n = sum(map(vacuous, runs))
    note = (
        f"in {n} of {len(runs)} runs float32 leaves the defect exactly 0 in the execution subspace's coordinates "
        "([paper](paper.md) §6.6): rho is exactly 1 there, whatever the geometry"
    )
    return Measured(_finite(r.get(key) for r in runs), note=note if n else "")


def _best(runs, key, **_) -> Measured:
    """The greatest value of `key` over the runs (a figure that shows the best of its seeds); none if no run has
    it."""
    values = _finite(r.get(key) for r in runs)
    return Measured([max(values)] if values else [], resolution=_resolution(runs))


def _resolution(runs: list[dict]) -> float:
    """The steps between the runs' measurements (evaluations, and probes where the onset is counted at them):
    what a grok step, an onset, a lead or a delay is known to within."""
    return float(max(max(r.get("eval_every", 0), r.get("probe_every", 0)) for r in runs))


def _per_matrix(runs, key, layer=None, **_) -> Measured:
    """Every attention matrix's value (of the last layer only, given layer="last")."""
    by_matrix = (_last_layer(r, key) if layer == "last" else (r.get(key) or {}) for r in runs)
    return Measured(_finite(v for values in by_matrix for v in values.values()))


def _last_layer(run: dict, key: str) -> dict[str, float]:
    """A run's per-matrix values of `key` in its last block, by matrix ("W_Q", ...)."""
    last = f"blocks.{run['n_layers'] - 1}."
    return {name.removeprefix(last): v for name, v in (run.get(key) or {}).items() if name.startswith(last)}


def _share(hits: list[bool], what: str) -> Measured:
    """How many of the runs do something: judged by the share itself, k/n exactly."""
    if not hits:
        return Measured([])
    share = sum(hits) / len(hits)
    return Measured([share], f"{sum(hits)}/{len(hits)} {what}", (share, share))


def _grokked(runs, **_) -> Measured:
    return _share([r.get("grok_step") is not None for r in runs], "grok")


def _positive_leads(runs, **_) -> Measured:
    return _share([r["lead_steps"] > 0 for r in runs if r.get("lead_steps") is not None], "positive")


def _sign_test(runs, **_) -> Measured:
    """The share of positive leads, judged; the one-sided sign test's p beside it (§7.3)."""
    found, test = _positive_leads(runs), analysis.sign_test(r.get("lead_steps") for r in runs)
    return Measured(found.values, f"{found.shown}, p = {test['p']:.2g}", found.interval) if found.values else found


def _geometry_median(runs, key, **_) -> Measured:
    """Each run's median of `key` over its saved parameters (geometry.jsonl)."""
    medians = [statistics.median(v) for r in runs if (v := _finite(g.get(key) for g in r["geometry"]))]
    return Measured(medians)


def _geometry_at(runs, key, end, **_) -> Measured:
    """Each run's `key` at its first saved parameters where it is defined (end="first"), or its last ones at or
    before its detection step (end="grok"; a run that never grokked has none)."""

    def defined(r: dict) -> list[float]:
        last = r.get("grok_step") if end == "grok" else math.inf
        return _finite(g.get(key) for g in r["geometry"] if last is not None and g["step"] <= last)

    return Measured([v[0] if end == "first" else v[-1] for r in runs if (v := defined(r))])


def _phase_median(runs, key, phase, **_) -> Measured:
    """Each run's median of `key` over its saved parameters whose evaluation is in `phase` (analysis.phase)."""
    medians = []
    for r in runs:
        phases = {m["step"]: analysis.phase(m) for m in r["metrics"] if m.get("test_acc") is not None}
        if values := _finite(g.get(key) for g in r["geometry"] if phases.get(g["step"]) == phase):
            medians.append(statistics.median(values))
    return Measured(medians)


def _probes(r: dict) -> list[dict]:
    return [row for row in r["metrics"] if row.get("defect") is not None]


def _final_defect_ratio(runs, **_) -> Measured:
    """The defect at the grokking runs' detection step over the last defect of the runs that never grok, at weight
    decay 1 (§6.7: the median D at each run's last checkpoint, grokking runs ending at their grokking point)."""

    def at_detection(r):
        return next((p["defect"] for p in _probes(r) if p["step"] >= r["grok_step"]), None)

    grok = _finite(at_detection(r) for r in select(runs, ops="grokking") if r.get("grok_step") is not None)
    ends = [_probes(r) for r in select(runs, ops="non_grokking", weight_decay=1.0)]
    flat = _finite(probes[-1]["defect"] for probes in ends if probes)
    if not grok or not flat or not statistics.mean(flat):
        return Measured([])
    ratio = statistics.mean(grok) / statistics.mean(flat)
    return Measured(
        [ratio],
        f"{ratio:.3g} (D {statistics.mean(grok):.0f} over {statistics.mean(flat):.0f}; n {len(grok)} and {len(flat)})",
    )


def _lead_50(runs, **_) -> Measured:
    leads = []
    for r in runs:
        grok_50 = analysis.first_step(r["metrics"], "test_acc", 0.5)
        if grok_50 is not None and r.get("onset_step") is not None:
            leads.append(grok_50 - r["onset_step"])
    return Measured(leads)


def _max_defect(runs, **_) -> Measured:
    return Measured([max(p["defect"] for p in probes) for r in runs if (probes := _probes(r))])


def _defect_at(runs, step, **_) -> Measured:
    """The defect probed at `step`, each beside its run's grok_90 (where the step falls in that run)."""
    probed = [(p["defect"], r.get("grok_step_90") or "never") for r in runs for p in _probes(r) if p["step"] == step]
    values = [defect for defect, _ in probed]
    if len(probed) == 1:
        return Measured(values, f"{_summary(values)}; its run's grok_90: {probed[0][1]}")
    by_run = ", ".join(f"{_number(defect)} (grok_90 {grok})" for defect, grok in probed)
    return Measured(values, f"{_summary(values)}: {by_run}" if values else "")


def _defect_before_grok(runs, **_) -> Measured:
    """The last probe's defect before grok_90 (Table 2's "at grok point")."""
    return Measured(
        _finite(
            next((p["defect"] for p in reversed(_probes(r)) if p["step"] < r["grok_step_90"]), None)
            for r in runs
            if r.get("grok_step_90") is not None
        )
    )


def _lead_fraction(runs, **_) -> Measured:
    """(detection - onset) / detection: the lead as a share of the training to grokking (§7.2, the LR sweep's)."""
    return Measured(
        [
            (r["grok_step"] - r["onset_step"]) / r["grok_step"]
            for r in runs
            if r.get("grok_step") and r.get("onset_step") is not None
        ]
    )


def _normalised_lead(runs, **_) -> Measured:
    """(grok_90 - onset) / detection (§7.2, figY)."""
    return Measured(
        [r["lead_steps"] / r["grok_step"] for r in runs if r.get("grok_step") and r.get("lead_steps") is not None]
    )


def _power_law(runs, **_) -> Measured:
    fit = _fit(runs)
    if fit is None:
        return Measured([])
    return Measured(
        [fit["alpha"]],
        f"{fit['alpha']:.2f} ± {fit['alpha_se']:.2f} (R² {fit['r2']:.3f}, n {fit['n']})",
        (fit["alpha"] - 2 * fit["alpha_se"], fit["alpha"] + 2 * fit["alpha_se"]),
    )


def _fit(runs: list[dict]) -> dict | None:
    """The lead-time power law over the runs (sweep_report.power_law), None where there is none to fit."""
    try:
        return sweep_report.power_law(runs)
    except ValueError:
        return None


def _grok_steps(runs, **_) -> Measured:
    """The grok (detection) steps of the runs that grokked, and how many did."""
    steps = [r["grok_step"] for r in runs if r.get("grok_step") is not None]
    return Measured(
        steps,
        f"{_mean_sd(steps)}, {len(steps)}/{len(runs)} grok" if steps else f"0/{len(runs)} grok",
        resolution=_resolution(runs),
    )


def _delay(runs, stage_runs, **_) -> Measured:
    """Each grokked intervention run's grok step minus that of its operation's run without intervention of the
    same seed on the same batches (sweep_report.paired_delays); the runs that did not grok are counted."""
    delays, dnf = [], 0
    for op, batches in sorted({(r["op"], r["batches"]) for r in runs}):
        these = [r for r in runs if (r["op"], r["batches"]) == (op, batches)]
        paired, missed = sweep_report.paired_delays(these, sweep_report.untouched(stage_runs, op, batches))
        delays, dnf = delays + paired, dnf + missed
    return Measured(delays, sweep_report.delays_text(delays, dnf, len(runs)), resolution=_resolution(runs))


MEASURES: dict[str, Callable[..., Measured]] = {
    "mean": _mean,
    "rho": _rho,
    "best": _best,
    "per_matrix": _per_matrix,
    "grokked": _grokked,
    "positive_leads": _positive_leads,
    "sign_test": _sign_test,
    "geometry_median": _geometry_median,
    "phase_median": _phase_median,
    "geometry_at": _geometry_at,
    "final_defect_ratio": _final_defect_ratio,
    "lead_50": _lead_50,
    "max_defect": _max_defect,
    "defect_at": _defect_at,
    "defect_before_grok": _defect_before_grok,
    "lead_fraction": _lead_fraction,
    "normalised_lead": _normalised_lead,
    "power_law": _power_law,
    "grok_steps": _grok_steps,
    "delay": _delay,
}


# ---------------------------------------------------------------------- a claim's row
def stage_of(claim: Claim, planned: dict[str, Stage]) -> str | None:
    """The first of the claim's stages that the plan has."""
    return next((label for label in claim.stages if label in planned), None)


def measure(claim: Claim, stages: dict[str, list[dict]], planned: dict[str, Stage]) -> tuple[str, str, str]:
    """(tinygrok's number, the verdict (one of VERDICTS), its words) of a claim, over the finished runs of its
    stage."""
    if claim.measure == "unmeasured":
        return "", "not measured", f"not measured: {claim.args['why']}"
    label = stage_of(claim, planned)
    if label is None:
        return "", "not measured", f"not measured at this scale: its grid ({claim.stages[0]}) is not in the plan"
    stage_runs = stages.get(label, [])
    if not stage_runs:
        return "", "not measured", "not measured yet: no run of its stage has finished"
    chosen = select(stage_runs, **claim.where)
    due = select([sweep_report.planned_entry(spec) for spec in planned[label].specs()], **claim.where)
    if not chosen and not due:
        return "", "not measured", "not measured: none of its stage's runs has these settings" + _cut(planned[label])
    if len(chosen) < len(due):  # judged once every run it is about has finished, not on a part of them
        verb = "has" if len(chosen) == 1 else "have"
        return "", "not measured", f"not measured yet: {len(chosen)} of its {len(due)} runs {verb} finished"
    found = MEASURES[claim.measure](chosen, stage_runs=stage_runs, **claim.args)
    shown = found.shown or (_summary(found.values, claim.digits) if found.values else "")
    missed = [r for r in chosen if r.get("grok_step") is None] if claim.paper_runs_all_grokked else []
    if missed and planned[label].filters.max_steps is not None:  # this scale stopped them early: no verdict
        return "", "not measured", f"not measured: {_never_grokked(missed, len(chosen))}" + _cut(planned[label])
    if missed:
        return (
            shown,
            "differs",
            f"differs: {_never_grokked(missed, len(chosen))}; the paper's all did" + _cut(planned[label]),
        )
    if not found.values:
        if found.shown:  # the runs are there, but none grokked: nothing to take a delay of
            return found.shown, "differs", "differs: none of its runs grokked" + _cut(planned[label])
        return (
            "",
            "not measured",
            f"not measured: none of its {len(chosen)} runs defines it" + _why_undefined(chosen, claim.args.get("key")),
        )
    kind, words = _verdict(claim, found)
    return shown, kind, words + (f"; {found.note}" if found.note else "") + _cut(planned[label])


def _why_undefined(runs: list[dict], key: str | None) -> str:
    """Why the runs' headline number `key` has no value, where their records say: the "undefined" tallies
    (undefined.py) of the quantity it is the median of (geometry.MEDIAN_OF), and in how many of the runs."""
    tallies = [(r.get("undefined") or {}).get(geometry.MEDIAN_OF.get(key)) for r in runs]
    why = collections.Counter(t["why"] for t in tallies if t)
    return "".join(f" (in {n} of them: {text})" for text, n in sorted(why.items()))


def _never_grokked(missed: list[dict], n: int) -> str:
    """Which of a claim's n runs never grokked, and within how many steps: "1 of its 2 runs (seed 42) never
    grokked in 650,000 steps"."""
    seeds = ("seeds " if len(missed) > 1 else "seed ") + ", ".join(str(r["seed"]) for r in missed)
    steps = " / ".join(f"{s:,}" for s in sorted({r["max_steps"] for r in missed}))
    share = "its run" if n == 1 else f"{len(missed)} of its {n} runs"
    return f"{share} ({seeds}) never grokked in {steps} steps"


def _verdict(claim: Claim, found: Measured) -> tuple[str, str]:
    """The verdict (analysis.verdict, the one rule) and its words: why it differs, where that is known."""
    kind = analysis.verdict(found.values, claim.low, claim.high, found.interval, found.resolution)
    if kind == "replicates":
        return kind, "**replicates**"
    values = found.values
    if kind == "too few runs to tell" and analysis.spread_half_width(values) < found.resolution:
        return kind, f"{kind} (here how finely each value is measured, {found.resolution:g}, sets the interval)"
    overlap = (
        " (the ranges overlap)" if kind == "differs" and min(values) <= claim.high and max(values) >= claim.low else ""
    )
    return kind, kind + overlap + (f": {claim.differs}" if claim.differs and kind == "differs" else "")


def _cut(stage: Stage) -> str:
    return f"; at this scale: {stage.cut}" if stage.cut else ""


# ---------------------------------------------------------------------- the page
def write(folder: Path, page: Path) -> Path:
    """The results page at `page` (its figures in a folder beside it, PAGE_figures): text(folder, page)."""
    page = Path(page)
    return write_text(page, text(folder, page, page.with_name(page.stem + "_figures")))


def text(folder: Path, page: Path, figures_dir: Path | None = None) -> str:
    """The results page meant for `page`, a function of the records folder alone (records.py; the scale and wall
    times in its reproduce.json): every claim measured over the recorded runs of its stage, what the records are
    and where and how long they ran; its figures drawn into `figures_dir` (None: drawn, not saved). A RunError if the
    folder is no reproduction's."""
    folder, page = Path(folder), Path(page)
    state = reproduction.read_state(folder)
    if figures_dir:
        figures_dir.mkdir(parents=True, exist_ok=True)
    plan = reproduction.stages(state["scale"])
    found, problems = records.load_all(folder)
    for line in problems:  # on the page too; said here, where whoever writes the page sees it
        LOG.warning(f"left out of the results page, no readable record: {line}")
    planned = {stage.label: stage for stage in plan}
    runs = {name: sweep_report.entry(record) for name, record in found.items()}
    stages = {stage.label: [runs[s.name] for s in stage.specs() if s.name in runs] for stage in plan}
    links = page.stem + "_figures"
    figures = {
        label: {
            name: f"{links}/{file}"
            for name, file in sweep_report.draw_figures(
                figures_dir, runs, _fit(sweep_report.grokking(runs)), f"{label}_"
            ).items()
        }
        for label, runs in stages.items()
        if runs
    }
    rows, kinds = [], []
    for claim in paper.CLAIMS:
        number, kind, words = measure(claim, stages, planned)
        kinds.append(kind)
        figure = figures.get(stage_of(claim, planned), {}).get(claim.figure)
        rows.append(
            [
                claim.number,
                claim.words,
                claim.quoted,
                number or "—",
                claim.stored or "—",
                words,
                f"[{claim.figure}]({figure})" if figure else "—",
            ]
        )
    counts = ", ".join(f"{kinds.count(kind)} {kind}" for kind in VERDICTS)
    header = ["section", "claim", "paper", "tinygrok", "reference's stored data", "verdict", "figure"]
    lines = [
        "# tinygrok against the paper, claim by claim",
        "",
        *_header(folder, page, state, found, sum(_cpu_seconds(r) for r in runs.values())),
        "",
        f"{len(paper.CLAIMS)} claims (tinygrok/science/paper.py's CLAIMS): {counts}. {RULES}",
        "",
        sweep_report.table(header, rows),
        "",
        "## The stages",
        "",
        _stage_table(plan, stages, state),
        "",
    ]
    lines += _slow_table(stages["slow"], planned["slow"]) if "slow" in planned else []
    lines += sweep_report.intervention_tables(list(runs.values()))
    lines += [f"Not records, left out: {'; '.join(problems)}.", ""] if problems else []
    return "\n".join(lines) + "\n"


def _header(folder: Path, page: Path, state: dict, found: dict, cpu: float) -> list[str]:
    """The table at the top: the command, the code and the machines the records come from, the time (cpu: the runs'
    CPU seconds)."""
    return [
        "| | |",
        "|---|---|",
        f"| command | `tinygrok results --records {folder} --out {page}` (the runs: `tinygrok reproduce --scale "
        f"{state['scale']} --out DIR --records {folder}`) |",
        f"| code | {counted([r['environment'].get('commit', 'unknown') for r in found.values()]) or 'no runs'} |",
        f"| machine | {counted([r['environment'].get('machine', 'unknown') for r in found.values()]) or 'no runs'} |",
        f"| time | {reproduction.wall_seconds(state) / 3600:.2f} h of wall time in {len(state['parts'])} part(s); "
        f"{cpu / 3600:.2f} h of CPU time (its runs' own, each on one core; a run recorded before CPU time was counted "
        "gives its wall time) |",
    ]


def _cpu_seconds(run: dict) -> float:
    """A run's CPU time, or its wall time where its record predates CPU time's count (one thread: an upper bound)."""
    return run["cpu_seconds"] if run["cpu_seconds"] is not None else run["wall_seconds"]


def counted(values: list[str]) -> str:
    """'a (3 runs), b (1 runs)': each value once, in order, with how many runs have it."""
    return ", ".join(f"{value} ({values.count(value)} runs)" for value in sorted(set(values)))


def _stage_table(plan: tuple[Stage, ...], stages: dict[str, list[dict]], state: dict) -> str:
    rows = []
    for stage in plan:
        runs = stages[stage.label]
        cpu = sum(_cpu_seconds(r) for r in runs)
        rows.append(
            [
                stage.label,
                stage.experiment,
                f"{len(runs)} of {len(stage.specs())}",
                f"{reproduction.wall_seconds(state, stage.label) / 3600:.2f} h",
                f"{cpu / 3600:.2f} h",
                stage.cut or "nothing",
            ]
        )
    return sweep_report.table(
        ["stage", "experiment", "runs recorded", "wall time", "CPU time of its runs", "left out"], rows
    )


def _slow_table(runs: list[dict], stage: Stage) -> list[str]:
    """§9.2 Table 2 seed by seed: each slow run's steps, its last layer's PC1 per matrix and on how many snapshots,
    rho and what it took to run, under the paper's steps for that seed; the paper's PC1s, snapshots and rho (for
    both seeds) in a last row."""
    steps = ("grok_step", "grok_step_90", "onset_step", "lead_steps")
    done = {r["seed"]: r for r in runs}
    specs = stage.specs()
    rows = []
    for seed in (spec.config.seed for spec in specs):
        reported = paper.TABLE2.get(seed, {})
        rows.append([str(seed), "paper", *(f"{reported[k]:,}" if k in reported else "—" for k in steps)])
        rows.append([str(seed), "tinygrok", *(_slow_row(done[seed], steps) if seed in done else ["not finished"])])
    rows.append(["both", "paper", "", "", "", "", paper.pc1_text(paper.SLOW_PC1_33), str(paper.SLOW_SNAPSHOTS),
                 paper.SLOW_RHO_TEXT])  # fmt: skip
    header = ["seed", "", "detection", "grok_90", "onset", "lead", "PC1 W_Q / W_K / W_V / W_O", "snapshots", "rho",
              "wall time", "CPU time", "resumptions"]  # fmt: skip
    rows = [row + [""] * (len(header) - len(row)) for row in rows]
    words = (
        f"The paper's PC1s are figH's seed means on {paper.SLOW_SNAPSHOTS} snapshots (on all ~290: "
        f"{paper.pc1_text(paper.SLOW_PC1_ALL)}); tinygrok's on the snapshots its runs keep, one every "
        f"{specs[0].config.snapshot_every:,} steps, to detection (all of them in a run that never grokked). "
        "lead = grok_90 - onset."
    )
    return ["## The slow regime seed by seed (§9.2 Table 2)", "", words, "", sweep_report.table(header, rows), ""]


def _slow_row(run: dict, steps: tuple) -> list[str]:
    """A finished slow run's cells: its steps (a step it never reached: "none"), its last layer's PC1s and on how
    many snapshots, rho, its wall and CPU time and how many times it was resumed ("—" where unknown)."""
    return [
        *(f"{run[k]:,}" if run.get(k) is not None else "none" for k in steps),
        paper.pc1_text(_last_layer(run, "pc1")),
        str(run["pca_snapshots"]),
        f"{run['rho']:.6f}" if run.get("rho") is not None else "—",
        f"{run['wall_seconds'] / 3600:.2f} h",
        f"{run['cpu_seconds'] / 3600:.2f} h" if run["cpu_seconds"] is not None else "—",
        str(run["resumes"]) if run["resumes"] is not None else "—",
    ]


def _summary(values: list, digits: str = "") -> str:
    """mean ± sd [min, max] (n)."""
    spread = f" [{_number(min(values), digits)}, {_number(max(values), digits)}]" if len(values) > 1 else ""
    return _mean_sd(values, digits) + spread + f" (n {len(values)})"


def _mean_sd(values: list, digits: str = "") -> str:
    sd = f" ± {_number(statistics.stdev(values), digits)}" if len(values) > 1 else ""
    return _number(statistics.mean(values), digits) + sd


def _number(value: float, digits: str = "") -> str:
    return format(value, digits) if digits else sweep_report.number(value, 3)
