"""A sweep's report: report.md in the sweep directory, every run and the statistics over them beside the paper's
numbers (paper.py), measured like with like. Reads only files: index.json and the runs' directories."""
from __future__ import annotations

from pathlib import Path

from tinygrok import analysis, paper
from tinygrok.experiments import GROKKING_OPS
from tinygrok.runs import Run, read_json, write_text
from tinygrok.sweep import INDEX, summary

REPORT = "report.md"


def collect(out: Path) -> list[dict]:
    """One dict per finished run of the sweep: its config's op, seed, lr, weight decay, and its results."""
    runs = []
    for name, entry in read_json(Path(out) / INDEX)["runs"].items():
        if entry["state"] == "done":
            cfg = Run(Path(out) / name).config()
            runs.append({"name": name, "op": cfg.op, "seed": cfg.seed, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                         **entry["results"]})
    return runs


def grokking(runs: list[dict]) -> list[dict]:
    """The runs of grokking operations with weight decay: those the paper's statistics are over."""
    return [r for r in runs if r["op"] in GROKKING_OPS and r["weight_decay"] > 0]


def write(out: Path) -> Path:
    """Write report.md into the sweep directory and return its path."""
    index, runs = read_json(Path(out) / INDEX), collect(out)
    counts = summary(index)
    lines = [f"# {index['experiment']}: {counts['done']} runs done, {counts['failed']} failed",
             "", f"Filters: {index['filters']}.", ""]
    lines += [f"- failed: {name}: {entry['error']}" for name, entry in index["runs"].items()
              if entry["state"] == "failed"]
    lines += ["## Runs", "", _table(["run", "op", "seed", "lr", "wd", "grok_90", "detection", "onset", "lead",
                                     "growth to grok_90", "growth, run", "PC1"],
                                    [[r["name"], r["op"], r["seed"], f"{r['lr']:g}", f"{r['weight_decay']:g}",
                                      *(_cell(r.get(k)) for k in ("grok_step_90", "grok_step", "onset_step",
                                                                  "lead_steps", "defect_growth", "defect_growth_run")),
                                      _pc1_range(r)] for r in runs]), ""]
    lines += _per_op(grokking(runs)) + _sign_test(grokking(runs)) + _growth(runs) + _power_law(grokking(runs))
    return write_text(Path(out) / REPORT, "\n".join(lines) + "\n")


def _per_op(runs: list[dict]) -> list[str]:
    rows = []
    for op in sorted({r["op"] for r in runs}):
        mine = [r for r in runs if r["op"] == op]
        stats = {key: analysis.mean_sd(r.get(key) for r in mine) for key in ("grok_step_90", "onset_step", "lead_steps")}
        rows.append([op, len(mine), *(_mean_sd(stats[k]) for k in stats),
                     paper.BY_KEY["grok_step_90"].describe(op), paper.BY_KEY["lead_steps"].describe()])
    return ["## Per operation (grokking runs, mean ± sd)", "",
            _table(["op", "runs", "grok_90", "onset", "lead", "paper grok_90 (Table 1)", "paper lead"], rows), ""]


def _sign_test(runs: list[dict]) -> list[str]:
    test = analysis.sign_test(r.get("lead_steps") for r in runs)
    if not test["n"]:
        return []
    return ["## Onset before grok_90 (PAPER.md §7.3)", "",
            f"{test['positive']} of {test['n']} leads positive; one-sided sign test p = {test['p']:.2e} "
            f"(the paper: 12 of 12, p = 2^-12 = {2**-12:.2e}).", ""]


def _growth(runs: list[dict]) -> list[str]:
    grokked = grokking(runs)
    others = [r for r in runs if r not in grokked]
    if not others or not grokked:
        return []
    ref = paper.BY_KEY["defect_growth_run"]
    rows = [["grokking runs", _mean_sd(analysis.mean_sd(r.get("defect_growth_run") for r in grokked)), ref.quoted]]
    rows += [[f"{r['op']} (wd {r['weight_decay']:g}, seed {r['seed']})", _cell(r.get("defect_growth_run")),
              paper.GROWTH_WITHOUT_GROKKING.describe(r["op"])] for r in others]
    return ["## Defect growth over the whole run, grokking vs not (max D / early baseline)", "",
            _table(["runs", "measured", "paper"], rows), ""]


def _power_law(runs: list[dict]) -> list[str]:
    """Over several learning rates: lead = detection - onset against the detection step, as the paper fits it."""
    rates = sorted({r["lr"] for r in runs})
    if len(rates) < 2:
        return []
    leads = [r["grok_step"] - r["onset_step"] if r.get("grok_step") and r.get("onset_step") is not None else None
             for r in runs]
    head = ["## Lead against grok step over learning rates (PAPER.md §7.4)", ""]
    try:
        fit = analysis.power_law([r.get("grok_step") for r in runs], leads)
    except ValueError as err:
        return head + [f"No fit over the rates {', '.join(f'{lr:g}' for lr in rates)}: {err}.", ""]
    return head + [f"alpha = {fit['alpha']:.2f} ± {fit['alpha_se']:.2f} (R² {fit['r2']:.3f}, n {fit['n']}, "
                   f"{fit['dropped']} runs dropped with no positive lead) over the rates "
                   f"{', '.join(f'{lr:g}' for lr in rates)}; the paper: {paper.POWER_LAW.quoted}.", ""]


def _pc1_range(r: dict) -> str:
    pc1 = r.get("pc1") or {}
    return f"{100 * min(pc1.values()):.1f}-{100 * max(pc1.values()):.1f}%" if pc1 else ""


def _mean_sd(stats: dict) -> str:
    if stats["mean"] is None:
        return "none"
    return f"{stats['mean']:.4g}" + (f" ± {stats['sd']:.3g}" if stats["sd"] is not None else "") + \
        (f" (n {stats['n']})" if stats["n"] else "")


def _cell(value) -> str:
    return "none" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
