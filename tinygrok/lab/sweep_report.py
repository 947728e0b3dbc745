"""A sweep's report: report.md in the sweep directory, every run and the statistics over them beside the paper's
numbers (paper.py), measured like with like. Reads only files: index.json and the runs' directories."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tinygrok.lab import recipes, records
from tinygrok.lab.sweep import INDEX, outcome, read_index, summary
from tinygrok.run.runs import RunError, write_text
from tinygrok.science import analysis, config, interventions, paper, undefined
from tinygrok.science.config import Config

REPORT = "report.md"


def sweep_runs(out: Path) -> list[dict]:
    """One dict per finished run of the sweep in `out` (entry), from its record."""
    index = read_index(out)
    return [
        entry(records.of_run(Path(out) / name, run["recipe"]))
        for name, run in index["runs"].items()
        if run["state"] == "done"
    ]


def recorded_runs(folder: Path) -> tuple[list[dict], list[str]]:
    """One dict per run recorded in `folder` (entry), and a line for each file there that is not a record."""
    found, problems = records.load_all(folder)
    return [entry(record) for record in found.values()], problems


def planned_entry(spec: recipes.RunSpec) -> dict:
    """A run not (yet) recorded, as far as its spec tells: what results_page.select and the reports group runs by."""
    cfg = spec.config
    return {
        "name": spec.name,
        "op": cfg.op,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "recipe": spec.recipe,
        "hook": cfg.hook,
        "batches": cfg.batches,
    }


def entry(record: dict) -> dict:
    """A run as reports read it: its name, its config's op, seed, lr, weight decay, hook, max_steps, layers, dtype,
    batches, its preset, whether it ran at its preset's learning rate (where the paper's numbers but the power
    law were measured), its recipe, an intervention's baseline (its name), its results, its metric and geometry
    rows, its wall and CPU time and its resumptions (None where the record predates their count), and its whole
    config."""
    cfg = Config.from_dict(record["config"])
    spec = recipes.RunSpec(cfg, record["recipe"], record["preset"])
    return {
        "name": record["name"],
        "op": cfg.op,
        "seed": cfg.seed,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "preset": spec.preset,
        "preset_lr": cfg.lr == config.preset(spec.preset).lr,
        "recipe": spec.recipe,
        "hook": cfg.hook,
        "max_steps": cfg.max_steps,
        "n_layers": cfg.n_layers,
        "dtype": cfg.dtype,
        "batches": cfg.batches,
        "baseline": recipes.baseline(spec).name if spec.recipe == "intervene" else None,
        "eval_every": cfg.eval_every,
        "probe_every": cfg.probe_every,
        "config": cfg,
        **record["results"],
        "metrics": record["metrics"],
        "geometry": record["geometry"],
        "wall_seconds": record["environment"].get("wall_seconds", 0.0),
        "cpu_seconds": record["environment"].get("cpu_seconds"),  # None in a record from before it was counted
        "resumes": record["environment"].get("resumes"),
    }


def plain(runs: list[dict]) -> list[dict]:
    """The runs without an intervention (an intervention sweep's probed no-hook arm left out: it is its baseline
    again, with probes that change no number)."""
    return [r for r in runs if r["hook"] == "none" and r["recipe"] != "intervene"]


def grokking(runs: list[dict]) -> list[dict]:
    """The runs of grokking operations with weight decay and no intervention: those the paper's statistics are
    over."""
    return [r for r in plain(runs) if r["op"] in paper.GROKKING_OPS and r["weight_decay"] > 0]


def write(sources: list[Path], into: Path | None = None) -> Path:
    """Write report.md and its figures over the runs of one or more sweep directories or folders of run records
    into `into` (default: the first of them) and return the report's path. A run found in several (a baseline
    copied beside its interventions) counts once."""
    into, runs, lines = Path(into or sources[0]), {}, []
    for source in map(Path, sources):
        found, head = _sweep(source) if (source / INDEX).exists() else _records(source)
        for r in found:
            runs.setdefault(r["name"], r)
        lines += head + ([f"Directory: {source}.", ""] if len(sources) > 1 else [])
    runs = list(runs.values())
    into.mkdir(parents=True, exist_ok=True)  # once every source has been read
    grokked = grokking(runs)
    fit, power_law_lines = _power_law(grokked)
    presets = sorted({r["preset"] for r in runs} - {"paper"})
    lines += (
        [
            f"These runs use the {', '.join(presets)} preset (config.py), not the paper's model: expect its "
            "numbers to differ from the paper's.",
            "",
        ]
        if presets
        else []
    )
    lines += _pooled(runs) + _measured_vs_paper(runs, fit) + _runs(runs) + _undefined(runs) + _per_op(grokked)
    lines += _sign_test(grokked) + _growth(runs)
    lines += _controls(runs) + _precision(runs)
    lines += power_law_lines + intervention_tables(runs) + _figures(into, runs, fit)
    return write_text(into / REPORT, "\n".join(lines) + "\n")


GROUPED = ("op", "seed", "lr", "weight_decay", "hook", "batches")  # what the tables below split runs by
RECORDING = (  # settings that change what a run records or when it stops, not how it trains
    "max_steps", "eval_every", "stop_acc", "stop_patience", "extra_steps", "snapshot_every",
    "snapshot_layers", "snapshot_dtype", "theta_every", "probe_every", "probe_samples", "onset_floor",
)  # fmt: skip


def _pooled(runs: list[dict]) -> list[str]:
    """A line naming the settings besides GROUPED and RECORDING in which the runs without an intervention differ,
    with their values: the tables below do not split runs by them."""
    configs = [r["config"] for r in plain(runs)]
    varied = {
        name: sorted({getattr(cfg, name) for cfg in configs}, key=str)
        for name in (f.name for f in dataclasses.fields(Config))
        if name not in GROUPED + RECORDING
    }
    shown = [f"{name} ({', '.join(map(str, values))})" for name, values in varied.items() if len(values) > 1]
    if not shown:
        return []
    paired = (
        " (but the precision section, which pairs float32 runs with float64 ones)" if len(varied["dtype"]) > 1 else ""
    )
    return [
        f"Besides operation, seed, learning rate, weight decay and intervention, these runs differ in "
        f"{'; '.join(shown)}: no table below{paired} splits them by {'it' if len(shown) == 1 else 'those'}.",
        "",
    ]


def _sweep(out: Path) -> tuple[list[dict], list[str]]:
    """A sweep directory's finished runs, and its heading: the experiment, how its runs ended, its filters."""
    index = read_index(out)
    unfinished = [
        f"- {entry['state']}: {name}: {entry['error']}"
        for name, entry in index["runs"].items()
        if entry["state"] in ("diverged", "failed")
    ]
    return sweep_runs(out), [
        f"# {index['experiment']}: {outcome(summary(index))}",
        "",
        f"Filters: {index['filters']}.",
        "",
    ] + unfinished + ([""] if unfinished else [])


def _records(folder: Path) -> tuple[list[dict], list[str]]:
    """A folder's run records, and its heading: how many, and each file that is not a record."""
    if not folder.is_dir():
        raise RunError(f"{folder} is neither a sweep directory (it has no {INDEX}) nor a folder of run records")
    found, problems = recorded_runs(folder)
    if not found:
        raise RunError(f"{folder} holds no run records (tinygrok record writes them)" + "; ".join(["", *problems]))
    return found, [f"# {len(found)} run records", ""] + [f"- skipped: {line}" for line in problems] + (
        [""] if problems else []
    )


def _runs(runs: list[dict]) -> list[str]:
    header = [
        "run",
        "op",
        "seed",
        "lr",
        "wd",
        "grok_90",
        "detection",
        "onset",
        "lead",
        "growth to grok_90",
        "growth, run",
        "PC1",
    ]
    keys = ("grok_step_90", "grok_step", "onset_step", "lead_steps", "defect_growth", "defect_growth_run")
    rows = [
        [
            r["name"],
            r["op"],
            r["seed"],
            f"{r['lr']:g}",
            f"{r['weight_decay']:g}",
            *(_cell(r.get(k)) for k in keys),
            _pc1_range(r),
        ]
        for r in runs
    ]
    return ["## Runs", "", table(header, rows), ""]


def _undefined(runs: list[dict]) -> list[str]:
    """Each run's values that do not exist (a defect of exactly 0, tinygrok/science/undefined.py): how many, and why."""
    rows = [
        [r["name"], keys, f"{c['records']} of {c['of']}", c["why"]]
        for r in runs
        for keys, c in undefined.grouped(r.get("undefined") or {})
    ]
    if not rows:
        return []
    return [
        "## Undefined values",
        "",
        "Records whose value does not exist, left out of every median, table and fit "
        "above and below (float32 can make the defect exactly 0, docs/paper.md §6.6).",
        "",
        table(["run", "quantities", "records", "why"], rows),
        "",
    ]


def _per_op(runs: list[dict]) -> list[str]:
    """grok_90, onset and lead per operation and learning rate; Table 1's figures beside those at the preset's rate."""
    rows = []
    for op, lr in sorted({(r["op"], r["lr"]) for r in runs}):
        at_op_lr = [r for r in runs if (r["op"], r["lr"]) == (op, lr)]
        stats = [analysis.mean_sd(r.get(key) for r in at_op_lr) for key in ("grok_step_90", "onset_step", "lead_steps")]
        at_preset_lr = all(r["preset_lr"] for r in at_op_lr)
        rows.append(
            [
                op,
                f"{lr:g}",
                len(at_op_lr),
                *map(_mean_sd, stats),
                paper.BY_KEY["grok_step_90"].describe(op) if at_preset_lr else "",
                paper.BY_KEY["lead_steps"].describe() if at_preset_lr else "",
            ]
        )
    return [
        "## Per operation (grokking runs, mean ± sd)",
        "",
        table(["op", "lr", "runs", "grok_90", "onset", "lead", "paper grok_90 (Table 1)", "paper lead"], rows),
        "",
    ]


def _sign_test(runs: list[dict]) -> list[str]:
    """Over the runs at their preset's learning rate, as the paper's 12 (docs/paper.md §7.3)."""
    test = analysis.sign_test(r.get("lead_steps") for r in runs if r["preset_lr"])
    if not test["n"]:
        return []
    return [
        "## Onset before grok_90 (docs/paper.md §7.3)",
        "",
        f"{test['positive']} of {test['n']} leads positive at the preset's learning rate; one-sided sign test "
        f"p = {test['p']:.2e} "
        f"(the paper: 12 of 12, p = 2^-12 = {2**-12:.2e}).",
        "",
    ]


def _growth(runs: list[dict]) -> list[str]:
    grokked = grokking(runs)
    others = [r for r in plain(runs) if r not in grokked]
    if not others or not grokked:
        return []
    ref = paper.BY_KEY["defect_growth_run"]
    rows = [["grokking runs", _mean_sd(analysis.mean_sd(r.get("defect_growth_run") for r in grokked)), ref.quoted]]
    rows += [
        [
            f"{r['op']} (wd {r['weight_decay']:g}, seed {r['seed']})",
            _cell(r.get("defect_growth_run")),
            paper.GROWTH_WITHOUT_GROKKING.describe(r["op"]),
        ]
        for r in others
    ]
    return [
        "## Defect growth over the whole run, grokking vs not (max D / early baseline)",
        "",
        table(["runs", "measured", "paper"], rows),
        "",
    ]


def _controls(runs: list[dict]) -> list[str]:
    """exec/random per run, both bases: the memorization-phase median and the same per defect level
    (analysis.DEFECT_LEVELS; §6.4)."""
    probed = sorted((r for r in plain(runs) if r.get("exec_random_by_defect")), key=lambda r: (r["op"], r["seed"]))
    if not probed:
        return []
    svd, pca = paper.BY_KEY["exec_random_ratio_weight_svd"], paper.BY_KEY["exec_random_ratio"]
    levels = " / ".join(probed[0]["exec_random_by_defect"])
    rows = [
        [
            r["op"],
            r["seed"],
            r["memorization_phase_probes"],
            _cell(r["exec_random_ratio_weight_svd"]),
            " / ".join(map(_cell, r["exec_random_by_defect_weight_svd"].values())),
            svd.describe(r["op"]),
            _cell(r["exec_random_ratio"]),
            " / ".join(map(_cell, r["exec_random_by_defect"].values())),
            pca.describe(r["op"]),
        ]
        for r in probed
    ]
    for op in _ops(probed):
        of_op = [r for r in probed if r["op"] == op]
        rows.append(
            [
                f"**{op}**",
                "mean ± sd",
                "",
                _mean_sd(analysis.mean_sd(r["exec_random_ratio_weight_svd"] for r in of_op)),
                "",
                "",
                _mean_sd(analysis.mean_sd(r["exec_random_ratio"] for r in of_op)),
                "",
                "",
            ]
        )
    return [
        "## exec/random: is the curvature enriched in the execution subspace? (docs/paper.md §6.4)",
        "",
        "proj/full of the defect onto each basis over the same for random bases of its size, median over the "
        f"memorization phase (train acc >= 0.95, test acc < 0.3), and per defect level D ({levels}), where the "
        "ratio falls as D rises. Weight SVD: the reference control's basis (K = 24); trajectory PCA: the "
        "paper's execution basis (K = 16).",
        "",
        table(
            [
                "op",
                "seed",
                "records",
                "weight SVD",
                "weight SVD by D",
                "paper",
                "trajectory PCA",
                "trajectory PCA by D",
                "paper",
            ],
            rows,
        ),
        "",
    ]


def precision_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """(float32 run, float64 run) of the same probed settings otherwise: the float64 check's pairs."""
    probed = [r for r in plain(runs) if r.get("baseline_defect") is not None]
    return [
        (a, b)
        for a in probed
        for b in probed
        if (a["dtype"], b["dtype"]) == ("float32", "float64")
        and all(a[key] == b[key] for key in ("op", "seed", "lr", "weight_decay", "n_layers", "max_steps"))
    ]


def _precision(runs: list[dict]) -> list[str]:
    """The same run in float32 and float64, feature by feature (§6.6): what survives without float32 rounding."""
    lines = []
    for single, double in precision_pairs(runs):
        features = [analysis.defect_features(r["metrics"]) for r in (single, double)]
        rows = [
            [label, *(_cell(r.get(key)) for r in (single, double))]
            for key, label in (
                ("grok_step_90", "grok_90"),
                ("onset_step", "onset"),
                ("lead_steps", "lead"),
                ("baseline_defect", "early D (baseline)"),
                ("defect_growth", "growth to grok_90 (pre-grokking rise)"),
                ("defect_growth_run", "growth over the run"),
            )
        ]
        rows += [
            [label, *(_cell(f[key]) for f in features)]
            for key, label in (
                ("max_defect_before_grok", "max D up to grok_90"),
                ("max_defect_after_grok", "max D after grok_90"),
                ("zero_defects", "probes with D exactly 0"),
                ("probes", "probes"),
            )
        ]
        lines += [
            f"## float32 against float64: {single['op']}, seed {single['seed']} (docs/paper.md §6.6)",
            "",
            table(["feature", "float32", "float64"], rows),
            "",
        ]
    return lines


def power_law(runs: list[dict]) -> dict | None:
    """Over several learning rates, the fit of lead = detection - onset against the detection step, as the paper
    fits it (docs/paper.md §7.4); None over one rate; a ValueError where the runs cannot be fitted."""
    if len({r["lr"] for r in runs}) < 2:
        return None
    leads = [
        r["grok_step"] - r["onset_step"] if r.get("grok_step") and r.get("onset_step") is not None else None
        for r in runs
    ]
    return analysis.power_law([r.get("grok_step") for r in runs], leads)


def _power_law(runs: list[dict]) -> tuple[dict | None, list[str]]:
    """The fit, and its section (none over one rate)."""
    rates = ", ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in runs}))
    head = ["## Lead against grok step over learning rates (docs/paper.md §7.4)", ""]
    try:
        fit = power_law(runs)
    except ValueError as err:
        return None, head + [f"No fit over the rates {rates}: {err}.", ""]
    if fit is None:
        return None, []
    return fit, head + [
        f"alpha = {fit['alpha']:.2f} ± {fit['alpha_se']:.2f} (R² {fit['r2']:.3f}, n {fit['n']}, "
        f"{fit['dropped']} runs dropped with no positive lead) over the rates {rates}; the paper: "
        f"{paper.POWER_LAW.quoted}.",
        "",
    ]


def arm(run: dict) -> tuple[str, float, str]:
    """(hook name, dose, basis) of an intervention run; the identity arms (no hook, project at s = 0) are
    ("none", 0.0, "pca")."""
    hook = interventions.parse(run["hook"])
    if hook.is_identity:
        return "none", 0.0, "pca"
    return hook.NAME, getattr(hook, hook.DOSE) if hook.DOSE else 0.0, getattr(hook, "basis", "pca")


def untouched(runs: list[dict], op: str, batches: str) -> list[dict]:
    """The runs of `op` without an intervention that its interventions on `batches` are measured against: the
    identity arms (no hook, project at s = 0) on the same batches; on "own" batches, else the interventions'
    baselines (§8.1 phase 1: the same training, as probes change no number)."""
    intervened = [r for r in runs if r["op"] == op and r["recipe"] == "intervene" and r["batches"] == batches]
    probed = list({r["seed"]: r for r in intervened if arm(r)[0] == "none"}.values())  # one a seed: none and s = 0 are
    #                                                                              the same training
    if probed or batches != "own":
        return probed
    return [r for r in runs if r["name"] in {r["baseline"] for r in intervened}]


def paired_delays(runs: list[dict], reference: list[dict]) -> tuple[list[int], int]:
    """Each grokked run's grok step minus that of the run without intervention of the same seed in `reference`
    (its operation's, on its batches), and how many of `runs` did not grok (DNF). Pairing by seed keeps the
    seeds' own spread out of the delays; a run whose seed has no grokked reference has none."""
    before = {r["seed"]: r["grok_step"] for r in reference if r.get("grok_step") is not None}
    delays = [
        r["grok_step"] - before[r["seed"]] for r in runs if r.get("grok_step") is not None and r["seed"] in before
    ]
    return delays, sum(r.get("grok_step") is None for r in runs)


def delays_text(delays: list[int], dnf: int, runs: int) -> str:
    """Paired delays as every table shows them: mean ± sd [min to max] (n), and how many of the runs did not grok."""
    stats = analysis.mean_sd(delays)
    shown = (
        ""
        if not delays
        else f"{stats['mean']:+.0f}"
        + (f" ± {stats['sd']:.0f}" if stats["sd"] is not None else "")
        + f" [{min(delays):+d} to {max(delays):+d}] (n {len(delays)})"
    )
    return ", ".join(filter(None, [shown, f"{dnf}/{runs} DNF" if dnf else ""]))


def _arm_groups(runs: list[dict]) -> list[tuple[str, str, list[dict], list[tuple[tuple, list[dict]]]]]:
    """(op, batches, its runs without intervention, [(arm key, its runs)]) for every operation and protocol of
    the intervention runs."""
    runs = [r for r in runs if r["recipe"] == "intervene" or r["hook"] == "none"]
    groups = []
    for op, batches in sorted({(r["op"], r["batches"]) for r in runs if r["recipe"] == "intervene"}):
        arms = [
            r
            for r in runs
            if r["op"] == op and r["recipe"] == "intervene" and r["batches"] == batches and arm(r)[0] != "none"
        ]
        groups.append(
            (
                op,
                batches,
                untouched(runs, op, batches),
                [(key, [r for r in arms if arm(r) == key]) for key in sorted({arm(r) for r in arms})],
            )
        )
    return groups


def intervention_tables(runs: list[dict]) -> list[str]:
    """Grok step (detection) per operation, protocol (the runs' batches) and arm, its range over seeds, the delay
    paired by seed over the runs without intervention on the same batches, DNF counted, beside the paper's (§8.3);
    then each seed's grok steps and delays."""
    rows = []
    for op, batches, reference, arms in _arm_groups(runs):
        for key, these in [(("none", 0.0, "pca"), reference)] + arms:
            steps = [r["grok_step"] for r in these if r.get("grok_step") is not None]
            delay = "" if key[0] == "none" else delays_text(*paired_delays(these, reference), len(these))
            rows.append(
                [
                    op,
                    batches,
                    key[0],
                    f"{key[1]:g}",
                    key[2],
                    f"{len(steps)}/{len(these)}",
                    _mean_sd(analysis.mean_sd(steps)) if steps else ("DNF" if these else "not run"),
                    f"{min(steps)}-{max(steps)}" if steps else "",
                    delay,
                    paper.intervention(op, *key),
                ]
            )
    if not rows:
        return []
    return [
        "## Interventions (docs/paper.md §8): grok step = detection (98% x 3); DNF = not grokked by the cap",
        "",
        "*batches* is the protocol (docs/differences.md): shifted (the reference code's: the run trains on its "
        "baseline's batches, moved on by those its probes take), own (the basis is the run's own future path) "
        "or sibling (an independent run's path). A delay is a run's grok step minus that of the run without "
        "intervention (none: the probed no-hook and s = 0 arms; on own batches, else the baselines) of the same "
        "seed and batches: mean ± sd [range] over seeds. The paper's numbers are the reference code's.",
        "",
        table(
            ["op", "batches", "arm", "dose", "basis", "grokked", "grok step", "range", "delay, paired", "paper"], rows
        ),
        "",
    ] + seed_tables(runs)


def seed_tables(runs: list[dict]) -> list[str]:
    """Per operation and protocol of the intervention runs: each seed's grok step without intervention, then under
    each arm with its delay."""
    return [line for group in _arm_groups(runs) for line in _per_seed(*group)]


def _per_seed(op: str, batches: str, reference: list[dict], arms: list[tuple[tuple, list[dict]]]) -> list[str]:
    """One row per seed: its grok step without intervention, then under each arm with its delay (DNF: none)."""
    seeds = sorted({r["seed"] for r in reference} | {r["seed"] for _, these in arms for r in these})
    before = {r["seed"]: r.get("grok_step") for r in reference}

    def cell(runs: list[dict], seed: int, paired: bool = True) -> str:
        run = next((r for r in runs if r["seed"] == seed), None)
        if run is None:
            return ""
        if run.get("grok_step") is None:
            return "DNF"
        base = before.get(seed) if paired else None
        return f"{run['grok_step']}" + (f" ({run['grok_step'] - base:+d})" if base is not None else "")

    rows = [[seed, cell(reference, seed, paired=False)] + [cell(these, seed) for _, these in arms] for seed in seeds]
    header = ["seed", "none"] + [
        f"{name} {dose:g}" + (f" ({basis})" if basis != "pca" else "") for (name, dose, basis), _ in arms
    ]
    return [f"### {op}, {batches} batches: grok step per seed (delay)", "", table(header, rows), ""]


def _measured_vs_paper(runs: list[dict], fit: dict | None) -> list[str]:
    """Every paper.py figure this sweep measures, beside it: at the paper's learning rate, per operation where
    the paper gives one, the grokking runs against the walkthrough's figures; PC1 per operation and weight decay;
    growth in the runs that do not grok; and the power law."""
    at_lr = [r for r in plain(runs) if r["preset_lr"]]
    grokked = grokking(at_lr)
    rows = []
    for ref in paper.WALKTHROUGH:
        groups = (
            [(op, [r for r in grokked if r["op"] == op]) for op in _ops(grokked)] if ref.by_op else [(None, grokked)]
        )
        rows += [_compare(ref, [r.get(ref.key) for r in group], op) for op, group in groups]
    rows += [
        _compare(
            paper.GROWTH_WITHOUT_GROKKING,
            [r.get("defect_growth_run") for r in group],
            op,
            f"{op}, wd {wd:g}, {_steps(group)} steps",
        )
        for (op, wd), group in _groups([r for r in at_lr if r not in grokked])
    ]
    rows += [
        _compare(
            paper.pc1_reference(op, wd, group[0]["n_layers"]),
            [v for r in group for v in (r.get("pc1") or {}).values()],
            op,
            f"{op}, wd {wd:g}, {_steps(group)} steps, every matrix",
        )
        for (op, wd), group in _groups(at_lr)
    ]
    rows += [
        _compare(
            paper.PC1_NULL_Z,
            [v for r in group for v in (r.get("pc1_null_z") or {}).values()],
            op,
            f"{op}, wd {wd:g}, every matrix",
        )
        for (op, wd), group in _groups(at_lr)
        if wd == 1
    ]
    if fit:
        ref = paper.POWER_LAW
        interval = (fit["alpha"] - 2 * fit["alpha_se"], fit["alpha"] + 2 * fit["alpha_se"])
        rows.append(
            [
                ref.label,
                f"{fit['alpha']:.2f} ± {fit['alpha_se']:.2f} (SE, n {fit['n']})",
                ref.quoted,
                ref.measure,
                analysis.verdict([fit["alpha"]], ref.low, ref.high, interval),
            ]
        )
    rows = [row for row in rows if row]
    for row, above in reversed(list(zip(rows[1:], rows))):  # each measure written once, on its first row
        row[3] = "" if row[3] == above[3] else row[3]
    return [
        "## Measured vs paper",
        "",
        "Over this sweep's runs at their preset's learning rate (the power law: over all rates): mean ± sd "
        "[min-max] (n), beside "
        "the paper's figure for the same measure (tinygrok/science/paper.py), and the verdict: "
        f"{analysis.VERDICT_RULE}",
        "",
        table(["quantity", "measured", "paper", "measure", "verdict"], rows),
        "",
    ]


def _compare(ref: paper.Reference | None, values: list, op: str | None, label: str | None = None) -> list:
    """A row of the measured-vs-paper table; empty when no run measured it, or the paper has no such figure."""
    kept = [v for v in values if v is not None]
    if not kept or ref is None:
        return []
    stats, low, high = analysis.mean_sd(kept), *ref.expected(op)
    measured = (
        f"{ref.show(stats['mean'])}"
        + (f" ± {ref.show(stats['sd'])}" if stats["sd"] is not None else "")
        + (f" [{ref.show(min(kept))}-{ref.show(max(kept))}]" if len(kept) > 1 else "")
        + f" (n {len(kept)})"
    )
    judged = "" if low is None else analysis.verdict(kept, low, high)
    return [f"{ref.label} ({label or op or 'all'})", measured, ref.describe(op), ref.measure, judged]


def _ops(runs: list[dict]) -> list[str]:
    return sorted({r["op"] for r in runs})


def _groups(runs: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """The runs by (op, weight decay)."""
    keys = sorted({(r["op"], r["weight_decay"]) for r in runs}, key=lambda k: (k[0], -k[1]))
    return [(key, [r for r in runs if (r["op"], r["weight_decay"]) == key]) for key in keys]


def _steps(runs: list[dict]) -> str:
    steps = sorted({r["steps"] for r in runs})
    return f"{steps[0]}-{steps[-1]}" if len(steps) > 1 else str(steps[0])


# ---------------------------------------------------------------------- figures over the sweep's runs
def defect_curves(runs: list[dict]) -> Figure | None:
    """The commutator defect of every probed run against step, one panel per operation, each run's onset (dot)
    and grok_90 (dotted line, its colour) marked: curvature rises before accuracy does, run after run."""
    probed = [r for r in plain(runs) if r.get("baseline_defect") is not None]
    if not probed:
        return None
    ops, rates = _ops(probed), sorted({r["lr"] for r in probed})
    fig = Figure(figsize=(max(8.0, 4.5 * min(len(ops), 3)), 3.6 * math.ceil(len(ops) / 3) + 0.4), layout="constrained")
    axes = fig.subplots(math.ceil(len(ops) / 3), min(len(ops), 3), squeeze=False).ravel()
    for ax, op in zip(axes, ops):
        defects = []
        for i, r in enumerate(sorted((r for r in probed if r["op"] == op), key=lambda r: (r["lr"], r["seed"]))):
            rows = [row for row in r["metrics"] if row.get("defect") is not None]
            defects += [row["defect"] for row in rows]
            colour = f"C{rates.index(r['lr'])}" if len(rates) > 1 else f"C{i}"  # several rates: one colour each
            (line,) = ax.plot(
                [row["step"] for row in rows],
                [row["defect"] for row in rows],
                lw=1,
                color=colour,
                label=f"s{r['seed']}"
                + (f" lr {r['lr']:g}" if len(rates) > 1 else "")
                + (f" wd {r['weight_decay']:g}" if r["weight_decay"] != 1 else ""),
            )
            if r.get("onset_step") is not None:
                ax.plot(
                    r["onset_step"],
                    next(row["defect"] for row in rows if row["step"] == r["onset_step"]),
                    "o",
                    color=line.get_color(),
                )
            if r.get("grok_step_90") is not None:
                ax.axvline(r["grok_step_90"], color=line.get_color(), ls=":", lw=1)
        ax.set(xscale="log" if len(rates) > 1 else "linear", xlabel="step", title=op)
        _defect_scale(ax, defects)
        ax.legend(fontsize=7, ncol=1 + len(rates) // 3)
    for ax in axes[len(ops) :]:
        ax.set_visible(False)
    fig.suptitle("Commutator defect per run: its onset (dot) and grok_90 (dotted line)")
    return fig


def _defect_scale(ax, defects: list[float]) -> None:
    """The defect axis: logarithmic, or where a median is exactly 0 (float32 rounding, docs/paper.md §6.6,
    as in the slow regime's long stretches) linear from 0 to the decade below the least nonzero one and
    logarithmic above it, so that 0 shows without hiding the small values."""
    if 0 not in defects:
        ax.set(yscale="log", ylabel="defect D (median)")
        return
    nonzero = [d for d in defects if d > 0]
    floor = 10.0 ** math.floor(math.log10(min(nonzero))) if nonzero else 1.0
    ax.set_yscale("symlog", linthresh=floor)
    ax.set(ylim=(0, None), ylabel=f"defect D (median; linear below {floor:g}, so 0 shows)")


def lead_vs_grok(runs: list[dict], fit: dict | None) -> Figure | None:
    """Lead (detection - onset) against the detection step on log-log axes, each learning rate its colour, with
    the fitted power law, and the paper's exponent through the same centre, over the fitted runs."""
    if fit is None:
        return None
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    fitted = [
        r for r in runs if r.get("grok_step") and r.get("onset_step") is not None and r["grok_step"] > r["onset_step"]
    ]
    for i, lr in enumerate(sorted({r["lr"] for r in runs})):
        points = [(r["grok_step"], r["grok_step"] - r["onset_step"]) for r in fitted if r["lr"] == lr]
        if points:
            ax.plot(*zip(*points), "o", color=f"C{i}", label=f"lr {lr:g}")
    grok = np.geomspace(min(r["grok_step"] for r in fitted), max(r["grok_step"] for r in fitted), 50)
    centre = math.exp(statistics.mean(math.log(r["grok_step"]) for r in fitted))
    paper_alpha = (paper.POWER_LAW.low + paper.POWER_LAW.high) / 2
    ax.plot(grok, fit["C"] * grok ** fit["alpha"], "k-", label=f"fit: alpha {fit['alpha']:.2f} ± {fit['alpha_se']:.2f}")
    ax.plot(
        grok,
        fit["C"] * centre ** (fit["alpha"] - paper_alpha) * grok**paper_alpha,
        "k--",
        lw=1,
        label=f"paper: alpha {paper_alpha:.2f}",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="grok step (detection)",
        ylabel="lead = detection - onset",
        title=f"Lead time against grok time (R² {fit['r2']:.3f}, n {fit['n']})",
    )
    ax.legend(fontsize=8)
    return fig


def pc1_by_op(runs: list[dict]) -> Figure | None:
    """PC1 share of every attention matrix, per operation and weight decay (one dot per matrix and run), beside
    the paper's range for the same operation and weight decay (grey bar)."""
    groups = [(key, group) for key, group in _groups(plain(runs)) if any(r.get("pc1") for r in group)]
    if not groups:
        return None
    fig = Figure(figsize=(1.3 * len(groups) + 2, 4.5), layout="constrained")
    ax = fig.subplots()
    referenced = False  # the paper's bar is labelled once, at the first group that has one
    for x, ((op, wd), group) in enumerate(groups):
        ref = paper.pc1_reference(op, wd, group[0]["n_layers"])
        if ref:
            low, high = ref.expected(op)
            label = None if referenced else "paper (seed means per matrix)"
            ax.bar(x, 100 * (high - low), bottom=100 * low, width=0.6, color="lightgrey", label=label)
            referenced = True
        values = [100 * v for r in group for v in (r.get("pc1") or {}).values()]
        label = "tinygrok (each run's matrices)" if x == 0 else None
        ax.plot(x + np.linspace(-0.2, 0.2, len(values)), values, "o", ms=4, color="C0" if wd else "C1", label=label)
    ax.set_xticks(
        range(len(groups)), [f"{op}\nwd {wd:g}\n{_steps(group)} steps" for (op, wd), group in groups], fontsize=8
    )
    ax.set(ylabel="PC1 share (%)", title="How one-dimensional the attention trajectories are, by operation")
    ax.legend(fontsize=8)
    return fig


def dose_response(runs: list[dict]) -> Figure | None:
    """Grok step (detection) against project's dose s, one panel per operation: every run (x at the cap: DNF), the
    mean of those that grokked, and the paper's means (figI10, hollow); the random basis dashed, each protocol
    (batches) in its colours, where run."""
    projected = [r for r in runs if r["recipe"] == "intervene" and arm(r)[0] == "project"]
    ops = _ops(projected)
    if not ops:
        return None
    fig = Figure(figsize=(max(7.5, 4 * len(ops)), 3.8), layout="constrained")  # room for the title
    lines = [
        ("C0", "pca", "shifted"),
        ("C3", "random", "shifted"),
        ("C2", "pca", "own"),
        ("C1", "random", "own"),
        ("C4", "pca", "sibling"),
        ("C5", "random", "sibling"),
    ]
    for ax, op in zip(fig.subplots(1, len(ops), squeeze=False).ravel(), ops):
        for colour, basis, batches in lines:
            arms = [r for r in projected if r["op"] == op and arm(r)[2] == basis and r["batches"] == batches]
            if not arms:
                continue
            curve = untouched(runs, op, batches) + arms
            for r in curve:
                ax.plot(
                    arm(r)[1],
                    r["grok_step"] or r["max_steps"],
                    "o" if r.get("grok_step") else "x",
                    color=colour,
                    alpha=0.5,
                    ms=5,
                )
            doses = sorted({arm(r)[1] for r in curve})
            means = [(d, analysis.mean_sd(r.get("grok_step") for r in curve if arm(r)[1] == d)["mean"]) for d in doses]
            ax.plot(
                *zip(*[m for m in means if m[1] is not None]),
                "-" if basis == "pca" else "--",
                color=colour,
                label=f"{basis} basis, {batches} batches: mean of those that grokked",
            )
        keys = [(op, "none", 0.0, "pca")] + [(op, "project", s, "pca") for s in (0.25, 0.5, 0.75)]
        known = [(key[2], paper.INTERVENTIONS[key][0]) for key in keys if key in paper.INTERVENTIONS]
        if known:
            ax.plot(*zip(*known), "s", mfc="none", color="k", label="paper (§8.3)")
        ax.set(
            xlabel="dose s (share of the orthogonal gradient removed)",
            ylabel="grok step (detection)",
            title=f"{op}: x = not grokked by the cap",
        )
        ax.legend(fontsize=7)
    fig.suptitle("Removing the orthogonal gradient delays grokking; at s = 1 it prevents it")
    return fig


def exec_random_by_step(runs: list[dict]) -> Figure | None:
    """exec/random against step for every controls run, one panel per operation, both bases (weight SVD solid,
    trajectory PCA dashed), each seed's memorization phase shaded in its colour and its grok_90 dotted."""
    probed = [r for r in plain(runs) if r.get("exec_random_by_defect")]
    if not probed:
        return None
    ops = _ops(probed)
    fig = Figure(figsize=(4.5 * len(ops), 3.8), layout="constrained")
    for ax, op in zip(fig.subplots(1, len(ops), squeeze=False).ravel(), ops):
        for i, r in enumerate(sorted((r for r in probed if r["op"] == op), key=lambda r: r["seed"])):
            rows, colour = r["geometry"], f"C{i}"
            steps = [row["step"] for row in rows]
            ax.plot(
                steps,
                [row["weight_svd_random_ratio"] for row in rows],
                color=colour,
                lw=1,
                label=f"s{r['seed']} weight SVD",
            )
            ax.plot(
                steps,
                [row["exec_random_ratio"] for row in rows],
                color=colour,
                lw=1,
                ls="--",
                label=f"s{r['seed']} trajectory PCA",
            )
            phase = analysis.memorization_phase(r["metrics"])
            if phase:
                ax.axvspan(min(phase), max(phase), color=colour, alpha=0.08)
            if r.get("grok_step_90") is not None:
                ax.axvline(r["grok_step_90"], color=colour, ls=":", lw=1)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(yscale="log", xlabel="step", ylabel="exec/random (proj/full over random bases')", title=op)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Curvature in the execution subspace vs random subspaces (1 = no enrichment); shaded: memorization")
    return fig


def precision_overlay(runs: list[dict]) -> Figure | None:
    """The defect of each float32/float64 pair against step, overlaid, with test accuracy (right axis)."""
    pairs = precision_pairs(runs)
    if not pairs:
        return None
    fig = Figure(figsize=(7 * len(pairs), 4.2), layout="constrained")
    for ax, pair in zip(fig.subplots(1, len(pairs), squeeze=False).ravel(), pairs):
        accuracy, defects = ax.twinx(), []
        for r, colour in zip(pair, ("C0", "C3")):
            rows = r["metrics"]
            probed = [row for row in rows if row.get("defect") is not None]
            defects += [row["defect"] for row in probed]
            ax.plot(
                [row["step"] for row in probed],
                [row["defect"] for row in probed],
                color=colour,
                lw=1,
                label=f"{r['dtype']}: defect D",
            )
            accuracy.plot(
                [row["step"] for row in rows],
                [row["test_acc"] for row in rows],
                color=colour,
                lw=0.8,
                ls=":",
                label=f"{r['dtype']}: test accuracy",
            )
        ax.set(xlabel="step", title=f"{pair[0]['op']}, seed {pair[0]['seed']}")
        _defect_scale(ax, defects)
        accuracy.set_ylabel("test accuracy (dotted)")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("The same run in float32 and float64: which features of the defect are rounding")
    return fig


FIGURES = {
    "defect_by_op": lambda runs, fit: defect_curves(runs),
    "lead_vs_grok": lambda runs, fit: lead_vs_grok(grokking(runs), fit),
    "pc1_by_op": lambda runs, fit: pc1_by_op(runs),
    "dose_response": lambda runs, fit: dose_response(runs),
    "exec_random_by_step": lambda runs, fit: exec_random_by_step(runs),
    "precision_overlay": lambda runs, fit: precision_overlay(runs),
}


def draw_figures(out: Path | None, runs: list[dict], fit: dict | None, prefix: str = "") -> dict[str, str]:
    """Draw every figure the runs allow into `out` (None: draw, save nothing), as PREFIXNAME.png: FIGURES' name ->
    its file's name."""
    files = {}
    for name, draw in FIGURES.items():
        fig = draw(runs, fit)
        if fig is not None:
            files[name] = f"{prefix}{name}.png"
            if out is not None:
                fig.savefig(out / files[name], dpi=110)
    return files


def _figures(out: Path, runs: list[dict], fit: dict | None) -> list[str]:
    """The report's figures, drawn into its directory, and the lines that show them."""
    lines = [line for name, file in draw_figures(out, runs, fit).items() for line in (f"![{name}]({file})", "")]
    return ["## Figures", "", *lines] if lines else []


def _pc1_range(r: dict) -> str:
    pc1 = r.get("pc1") or {}
    return f"{100 * min(pc1.values()):.1f}-{100 * max(pc1.values()):.1f}%" if pc1 else ""


def _mean_sd(stats: dict) -> str:
    if stats["mean"] is None:
        return "none"
    return (
        number(stats["mean"], 4)
        + (f" ± {number(stats['sd'], 3)}" if stats["sd"] is not None else "")
        + (f" (n {stats['n']})" if stats["n"] else "")
    )


def _cell(value) -> str:
    return "none" if value is None else number(value, 3) if isinstance(value, float) else str(value)


def number(value: float, digits: int) -> str:
    """`digits` significant digits, but whole numbers of steps written out (33933, not 3.393e+04)."""
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
