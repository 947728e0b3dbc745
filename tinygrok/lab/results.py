"""A reproduction's results page: DIR/results.md, one row per claim of paper.CLAIMS (PAPER.md §10, §8.3, §9), each
measured over the finished runs of its stage, beside the paper's number, with a verdict and its stage's figures.
Reads only files: reproduce.json, each stage's index.json and its runs' directories.

Verdicts: *replicates* when the mean lies in the paper's range, or a point value of the paper lies within the
mean ± 2 standard errors (within 20% of a single measured value; a fit's own ± its standard error); *differs*
otherwise (saying so when the measured range overlaps the paper's); *not measured* where this scale has no such
runs, or none of them defines the quantity, with the reason.
"""
from __future__ import annotations

import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from tinygrok.engine import backend, parallel
from tinygrok.lab import report
from tinygrok.lab.reproduce import STATE, Stage, wall_seconds
from tinygrok.lab.sweep import INDEX, summary
from tinygrok.run.runs import Run, read_json, write_text
from tinygrok.science import analysis, paper
from tinygrok.science.paper import GROKKING_OPS, NON_GROKKING_OPS, Claim

RESULTS = "results.md"
POINT_TOLERANCE = 0.2  # a single measured value "replicates" a point value of the paper within 20% of it


@dataclass(frozen=True)
class Measured:
    """What a measure found: the values it is judged by (one per run, or one fitted number), how to show them
    ("" for mean ± sd [range] (n)), and the interval a point value of the paper is judged against (default: the
    mean ± 2 standard errors)."""

    values: list
    shown: str = ""
    interval: Optional[tuple] = None


# ---------------------------------------------------------------------- which runs
def select(runs: list[dict], ops=None, weight_decay=None, lr=None, seed=None, dose=None, arm=None,
           **_) -> list[dict]:
    """The runs a claim is measured over. ops: an operation, a tuple of them, "grokking" (the grokking operations
    with weight decay), "non_grokking" (the operations that never grok) or "not_grokking" (those and the runs
    without weight decay). Without dose or arm: the runs without intervention; with dose (one or a tuple): the
    interventions at that dose; with arm: that arm's runs (or arms', "none": the runs without intervention)."""
    def op_matches(r):
        if ops == "grokking":
            return r["op"] in GROKKING_OPS and r["weight_decay"] > 0
        if ops == "non_grokking":
            return r["op"] in NON_GROKKING_OPS
        if ops == "not_grokking":
            return r["op"] in NON_GROKKING_OPS or r["weight_decay"] == 0
        return ops is None or r["op"] in ((ops,) if isinstance(ops, str) else ops)

    chosen = [r for r in runs if op_matches(r) and all(
        wanted is None or r[key] == wanted for key, wanted in (("weight_decay", weight_decay), ("lr", lr),
                                                                ("seed", seed)))]
    if arm is not None:  # the intervention runs of these arms ("none": the probed runs without one, §8.1 phase 2)
        arms = (arm,) if isinstance(arm, str) else arm
        return [r for r in chosen if r["recipe"] == "intervene" and _arm_of(r)[0] in arms]
    if dose is not None:
        doses = dose if isinstance(dose, tuple) else (dose,)
        return [r for r in chosen if r["recipe"] == "intervene" and _arm_of(r)[0] != "none"
                and _arm_of(r)[1] in doses]
    return report.plain(chosen)


def _arm_of(r: dict) -> tuple:
    """An intervention run's (arm, dose, basis); ("none", 0, "pca") for the runs without one."""
    return report.arm(r) if r["recipe"] == "intervene" else ("none", 0.0, "pca")


# ---------------------------------------------------------------------- the measures
def _mean(runs, key, **_) -> Measured:
    return Measured([r[key] for r in runs if r.get(key) is not None])


def _per_matrix(runs, key, layer=None, **_) -> Measured:
    """Every attention matrix's value (of the last layer only, given layer="last")."""
    def kept(r, name):
        return layer is None or name.startswith(f"blocks.{r['n_layers'] - 1}.")
    return Measured([v for r in runs for name, v in (r.get(key) or {}).items() if kept(r, name)])


def _grokked(runs, **_) -> Measured:
    return _share([r.get("grok_step") is not None for r in runs], "grok")


def _share(hits: list[bool], what: str) -> Measured:
    """How many of the runs do something: judged by the share itself, k/n exactly."""
    share = sum(hits) / len(hits) if hits else None
    return Measured([share] if hits else [], f"{sum(hits)}/{len(hits)} {what}", (share, share))


def _exec_proj(runs, **_) -> Measured:
    """Each run's median proj/full of the defect on the execution basis over its saved parameters."""
    medians = [statistics.median(v) for r in runs
               if (v := [g["exec_proj"] for g in Run(r["path"]).geometry() if g.get("exec_proj") is not None])]
    return Measured(medians)


def _growth_ratio(runs, **_) -> Measured:
    grow, flat = (_mean(select(runs, ops=ops), "defect_growth_run").values for ops in ("grokking", "not_grokking"))
    if not grow or not flat:
        return Measured([])
    ratio = statistics.mean(grow) / statistics.mean(flat)
    return Measured([ratio], f"{ratio:.3g} ({statistics.mean(grow):.0f}x over {statistics.mean(flat):.0f}x; "
                             f"n {len(grow)} and {len(flat)})")


def _sign_test(runs, **_) -> Measured:
    test = analysis.sign_test(r.get("lead_steps") for r in runs)
    if not test["n"]:
        return Measured([])
    return Measured([test["p"]], f"p = {test['p']:.2g} ({test['positive']} of {test['n']} positive)")


def _positive_leads(runs, **_) -> Measured:
    return _share([r["lead_steps"] > 0 for r in runs if r.get("lead_steps") is not None], "positive")


def _lead_50(runs, **_) -> Measured:
    leads = []
    for r in runs:
        grok_50 = analysis.first_step(Run(r["path"]).metrics(), "test_acc", 0.5)
        if grok_50 is not None and r.get("onset_step") is not None:
            leads.append(grok_50 - r["onset_step"])
    return Measured(leads)


def _max_defect(runs, **_) -> Measured:
    return Measured([max(d) for r in runs if (d := [row["defect"] for row in Run(r["path"]).metrics()
                                                     if row.get("defect") is not None])])


def _defect_at(runs, step, **_) -> Measured:
    return Measured([row["defect"] for r in runs for row in Run(r["path"]).metrics()
                     if row["step"] == step and row.get("defect") is not None])


def _lead_fraction(runs, **_) -> Measured:
    return Measured([(r["grok_step"] - r["onset_step"]) / r["grok_step"] for r in runs
                     if r.get("grok_step") and r.get("onset_step") is not None])


def _power_law(runs, **_) -> Measured:
    try:
        fit = report.power_law(runs)
    except ValueError:
        return Measured([])
    if fit is None:
        return Measured([])
    return Measured([fit["alpha"]], f"{fit['alpha']:.2f} ± {fit['alpha_se']:.2f} (R² {fit['r2']:.3f}, n "
                                    f"{fit['n']})", (fit["alpha"] - fit["alpha_se"], fit["alpha"] + fit["alpha_se"]))


def _arm_step(runs, **_) -> Measured:
    """The grok (detection) steps of the runs that grokked, and how many did."""
    steps = [r["grok_step"] for r in runs if r.get("grok_step") is not None]
    return Measured(steps, _mean_sd(steps) + f", {len(steps)}/{len(runs)} grok" if steps else
                    f"DNF, 0/{len(runs)} grok" if runs else "")


def _delay(runs, stage_runs, **_) -> Measured:
    """Each grokked intervention run's grok step minus the mean of its operation's runs without intervention on
    the same batches (report.untouched)."""
    delays, dnf = [], 0
    for r in runs:
        before = [u["grok_step"] for u in report.untouched(stage_runs, r["op"], r["batches"])
                  if u.get("grok_step") is not None]
        if r.get("grok_step") is None:
            dnf += 1
        elif before:
            delays.append(r["grok_step"] - statistics.mean(before))
    return Measured(delays, _signed(delays) + (f", {dnf} DNF" if dnf else "") if delays else "")


MEASURES: dict[str, Callable[..., Measured]] = {
    "mean": _mean, "per_matrix": _per_matrix, "grokked": _grokked, "exec_proj": _exec_proj,
    "growth_ratio": _growth_ratio, "sign_test": _sign_test, "positive_leads": _positive_leads, "lead_50": _lead_50,
    "max_defect": _max_defect, "defect_at": _defect_at, "lead_fraction": _lead_fraction, "power_law": _power_law,
    "arm_step": _arm_step, "delay": _delay}


def measure(claim: Claim, stages: dict[str, list[dict]], planned: dict[str, Stage]) -> tuple[str, str]:
    """(tinygrok's number, the verdict) of a claim over the finished runs of each planned stage."""
    if claim.measure == "unmeasured":
        return "", f"not measured: {claim.where['why']}"
    if claim.stage not in planned:
        return "", f"not measured at this scale: its grid ({claim.stage}) is not in the plan"
    stage_runs = stages.get(claim.stage, [])
    if not stage_runs:
        return "", "not measured yet: no run of its stage has finished"
    chosen = stage_runs if claim.measure == "growth_ratio" else select(stage_runs, **claim.where)
    if not chosen:
        return "", "not measured at this scale: none of its stage's runs has these settings"
    found = MEASURES[claim.measure](chosen, stage_runs=stage_runs, **claim.where)
    if not found.values:
        return "", f"not measured at this scale: none of its {len(chosen)} runs defines it"
    return found.shown or _summary(found.values, claim.digits), _verdict(claim, found) + _cut(planned[claim.stage])


def _verdict(claim: Claim, found: Measured) -> str:
    if claim.low is None:
        return "measured (the paper gives no number to judge by)"
    values, mean = found.values, statistics.mean(found.values)
    if claim.low <= mean <= claim.high:
        return "**replicates**"
    if claim.low == claim.high:
        if found.interval is None and len(values) == 1:
            within = abs(mean - claim.low) <= POINT_TOLERANCE * abs(claim.low)
            return "**replicates** (within 20%)" if within else _differs(claim, values)
        low, high = found.interval or (mean - 2 * _se(values), mean + 2 * _se(values))
        if low <= claim.low <= high:
            return "**replicates**"
    return _differs(claim, values)


def _differs(claim: Claim, values: list) -> str:
    overlap = " (the ranges overlap)" if min(values) <= claim.high and max(values) >= claim.low else ""
    return "differs" + overlap + (f": {claim.differs}" if claim.differs else "")


def _se(values: list) -> float:
    return statistics.stdev(values) / len(values) ** 0.5


def _cut(stage: Stage) -> str:
    return f"; at this scale: {stage.cut}" if stage.cut else ""


# ---------------------------------------------------------------------- the page
def write(out: Path, plan: tuple[Stage, ...]) -> Path:
    """DIR/results.md and its figures (each stage's, from report.FIGURES) over what has finished so far."""
    out = Path(out)
    planned = {stage.label: stage for stage in plan}
    stages = {label: report.collect(out / label) for label in planned if (out / label / INDEX).exists()}
    figures = {label: _figures(out, label, runs) for label, runs in stages.items()}
    rows, verdicts = [], []
    for claim in paper.CLAIMS:
        number, verdict = measure(claim, stages, planned)
        verdicts.append(verdict)
        rows.append([claim.number, claim.words, claim.quoted, number or "—", claim.stored or "—", verdict,
                     " ".join(figures.get(claim.stage, [])) or "—"])
    counts = {word: sum(v.startswith(word) or v.startswith(f"**{word}") for v in verdicts)
              for word in ("replicates", "differs", "not measured")}
    header = ["section", "claim", "paper", "tinygrok", "reference's stored data", "verdict", "figures"]
    lines = [*_header(out), "", "# tinygrok against the paper, claim by claim", "",
             f"{len(paper.CLAIMS)} claims (tinygrok/science/paper.py's CLAIMS): {counts['replicates']} replicate, "
             f"{counts['differs']} differ, {counts['not measured']} not measured. " + __doc__.split("\n\n")[1]
             .replace("\n", " "), "",
             report.table(header, rows),
             "", "## The stages", "", _stage_table(out, plan), ""]
    return write_text(out / RESULTS, "\n".join(lines) + "\n")


def _header(out: Path) -> list[str]:
    """The table at the top: the command, the commit, the machine, the wall time."""
    state = read_json(out / STATE) if (out / STATE).exists() else {"scale": "?", "parts": []}
    machine = f"{platform.machine()}, {parallel.available_cores()} cores, {platform.python_implementation()} " \
              f"{platform.python_version()}, {backend.NAME}"
    return ["| | |", "|---|---|", f"| command | `tinygrok reproduce --scale {state['scale']} --out {out}` |",
            f"| commit | {_commit()} |", f"| machine | {machine} |",
            f"| wall time | {wall_seconds(state) / 3600:.2f} h in {len(state['parts'])} part(s) |"]


def _commit() -> str:
    root = parallel.PACKAGE_ROOT
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (with uncommitted changes)" if dirty else "")


def _stage_table(out: Path, plan: tuple[Stage, ...]) -> str:
    rows = []
    for stage in plan:
        path = out / stage.label
        if not (path / INDEX).exists():
            rows.append([stage.label, stage.experiment, "not started", "", stage.cut or "nothing"])
            continue
        index = read_json(path / INDEX)
        done = [name for name, e in index["runs"].items() if e["state"] == "done"]
        seconds = sum(Run(path / name).environment().get("wall_seconds", 0.0) for name in done)
        counts = ", ".join(f"{n} {state}" for state, n in summary(index).items() if n)
        rows.append([stage.label, stage.experiment, counts, f"{seconds / 3600:.2f} h", stage.cut or "nothing"])
    return report.table(["stage", "experiment", "runs", "CPU time of its finished runs", "left out"], rows)


def _figures(out: Path, label: str, runs: list[dict]) -> list[str]:
    """Draw the stage's figures beside results.md; their links."""
    try:
        fit = report.power_law(report.grokking(runs))
    except ValueError:
        fit = None
    links = []
    for name, draw in report.FIGURES.items():
        fig = draw(runs, fit)
        if fig is not None:
            fig.savefig(out / f"{label}_{name}.png", dpi=110)
            links.append(f"[{name}]({label}_{name}.png)")
    return links


def _summary(values: list, digits: str = "") -> str:
    """mean ± sd [min, max] (n)."""
    spread = f" [{_number(min(values), digits)}, {_number(max(values), digits)}]" if len(values) > 1 else ""
    return _mean_sd(values, digits) + spread + f" (n {len(values)})"


def _mean_sd(values: list, digits: str = "") -> str:
    sd = f" ± {_number(statistics.stdev(values), digits)}" if len(values) > 1 else ""
    return _number(statistics.mean(values), digits) + sd


def _signed(values: list) -> str:
    return f"{statistics.mean(values):+.0f} ({_number(min(values))} to {_number(max(values))}, n {len(values)})"


def _number(value: float, digits: str = "") -> str:
    return format(value, digits) if digits else report.number(value, 3)
