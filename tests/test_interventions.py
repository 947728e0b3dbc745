"""The causal interventions of docs/paper.md §8: each hook's algebra, when it acts, where its randomness comes from,
and that a run with it resumes bit for bit."""

import dataclasses
import re

import numpy as np
import pytest
from test_cli import assert_refused, refused_here, tinygrok

from tinygrok.engine.parallel import Derivatives
from tinygrok.lab import grids, recipes, sweep_report
from tinygrok.run.runs import METRICS, Run, RunError
from tinygrok.run.train import fresh_state, train
from tinygrok.science import interventions
from tinygrok.science.commutator import defect_samples
from tinygrok.science.config import preset
from tinygrok.science.data import make_dataset
from tinygrok.science.interventions import Context, orthogonal_part, parse
from tinygrok.science.model import attention_indices, param_count
from tinygrok.science.pca import random_basis

CFG = preset("classroom", batch_size=64)
DATA = make_dataset(CFG.op, CFG.p, CFG.train_frac, CFG.seed)
P = param_count(CFG)
BASIS = random_basis(P, 16, np.random.default_rng(0)).astype(np.float32)  # (P, 16), orthonormal columns


def context(rng_seed: int = 1) -> Context:
    rng = np.random.default_rng(rng_seed)
    return Context(rng, BASIS, lambda theta, k: defect_samples(theta, DATA, CFG, rng, k, Derivatives(CFG)))


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(P).astype(np.float32)


def parallel_part(x):
    return BASIS.T @ x  # (16,): coordinates in the execution subspace


def test_project_keeps_the_parallel_part_and_scales_the_orthogonal_part_by_one_minus_s():
    g, theta = vector(1), vector(2)
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, out = parse(f"project:s={s}").before_update(theta, g, 500, context())
        np.testing.assert_allclose(parallel_part(out), parallel_part(g), atol=1e-4)
        np.testing.assert_allclose(orthogonal_part(out, BASIS), (1 - s) * orthogonal_part(g, BASIS), atol=1e-5)
    assert np.array_equal(parse("project:s=0.0").before_update(theta, g, 900, context())[1], g)  # dose 0: identity
    once = parse("project:s=1.0").before_update(theta, g, 500, context())[1]
    twice = parse("project:s=1.0").before_update(theta, once, 501, context())[1]
    np.testing.assert_allclose(twice, once, atol=1e-6)  # idempotent: a projection
    assert np.linalg.norm(orthogonal_part(once, BASIS)) < 1e-5 * np.linalg.norm(g)  # nothing orthogonal left
    assert np.array_equal(parse("project:s=1.0").before_update(theta, g, 498, context())[1], g)  # update 499: not yet
    assert not np.array_equal(parse("project:s=1.0").before_update(theta, g, 499, context())[1], g)  # update 500


def test_project_attention_acts_inside_the_attention_matrices_only():
    """Outside the attention matrices' weights the gradient is untouched; inside them it keeps its part in B and
    (1 - s) of the rest; the random basis it is given lies inside the same matrices."""
    inside = attention_indices(CFG)
    mask = np.zeros(P, np.float32)
    mask[inside] = 1
    basis = recipes.intervention_basis(
        recipes.intervention("project_attention", 1.0, "random", preset="classroom"), beside=None
    )  # (P, 16): a random one needs no baseline
    np.testing.assert_allclose(basis.T @ basis, np.eye(16), atol=1e-5)
    assert not np.any(basis[mask == 0])  # nothing outside the attention matrices
    ctx = dataclasses.replace(context(), basis=basis, attention=mask)
    g, theta = vector(1), vector(2)
    for s in (0.75, 1.0):
        out = parse(f"project_attention:s={s}").before_update(theta, g, 500, ctx)[1]
        assert np.array_equal(out[mask == 0], g[mask == 0])
        np.testing.assert_allclose(basis.T @ out, basis.T @ g, atol=1e-4)
        inside_rest = mask * g - basis @ (basis.T @ g)  # the attention gradient outside B
        np.testing.assert_allclose(mask * out - basis @ (basis.T @ out), (1 - s) * inside_rest, atol=1e-5)


def test_penalty_acts_on_every_10th_update_from_the_start_only():
    """Updates count from 1, as in the reference's loop: before_update(step) acts on update step + 1."""
    g, theta, hook = vector(1), vector(2), parse("penalty:s=0.5,start=500")
    acted = [
        step + 1 for step in range(480, 560) if not np.array_equal(hook.before_update(theta, g, step, context())[1], g)
    ]
    assert acted == [500, 510, 520, 530, 540, 550, 560]


@pytest.mark.parametrize(
    "spec,steps,norm",
    [
        ("noise:eps=0.1", (499, 549, 599), 0.1),  # before updates 500, 550, 600
        ("random_kick:alpha=50.0", (500, 550, 600), 50 * 1.5e-3),
    ],
)  # after them
def test_noise_and_random_kicks_are_orthogonal_to_the_basis_with_the_requested_norm(spec, steps, norm):
    hook, theta, ctx = parse(spec), vector(2), context()
    for step in range(495, 610):
        moved = hook.after_update(theta, step, ctx) if "kick" in spec else hook.before_update(theta, None, step, ctx)[0]
        if step not in steps:
            assert np.array_equal(moved, theta), step
            continue
        kick = (moved - theta).astype(np.float64)
        assert np.linalg.norm(kick) == pytest.approx(norm, rel=1e-3)
        assert np.linalg.norm(parallel_part(kick)) < 1e-4 * norm


def test_noise_draws_from_the_hook_stream_only():
    a, b, c = (parse("noise:eps=0.1").before_update(vector(2), None, 549, context(seed))[0] for seed in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("spec,step", [("kick:alpha=10.0,start=500", 499), ("sustained_kick:alpha=50.0", 550)])
def test_commutator_kicks_follow_the_median_sample_outside_the_basis(spec, step):
    hook = parse(spec)
    theta = fresh_state(CFG).theta
    ctx, rng = context(), np.random.default_rng(1)  # the same draws as the hook's stream
    probes = defect_samples(theta, DATA, CFG, rng, hook.samples, Derivatives(CFG))
    median = sorted(probes, key=lambda p: p["defect"])[hook.samples // 2]
    size = defect_samples(theta, DATA, CFG, rng, 1, Derivatives(CFG))[0]["step_norm"]
    moved = hook.after_update(theta, step, ctx) if "sustained" in spec else hook.before_update(theta, 0, step, ctx)[0]
    kick = (moved - theta).astype(np.float64)
    assert np.linalg.norm(kick) == pytest.approx(hook.alpha * size, rel=1e-3)
    assert np.linalg.norm(parallel_part(kick)) < 1e-4 * np.linalg.norm(kick)
    direction = orthogonal_part(median["delta"], BASIS)
    assert kick @ direction / np.linalg.norm(kick) / np.linalg.norm(direction) == pytest.approx(1, abs=1e-4)
    quiet = [
        s
        for s in (step - 1, step + 1, step + 10)
        if not np.array_equal(
            hook.after_update(theta, s, ctx) if "sustained" in spec else hook.before_update(theta, 0, s, ctx)[0], theta
        )
    ]
    assert quiet == []


class Crash(Exception):
    pass


@pytest.mark.parametrize(
    "spec, batches",
    [
        ("project:s=0.75,start=50", "own"),
        ("project:s=0.75,start=50", "sibling"),
        ("penalty:s=0.5,start=50", "own"),
        ("noise:eps=0.1,start=50", "own"),
        ("kick:alpha=10.0,start=120,samples=3", "own"),
        ("random_kick:alpha=50.0,start=50", "own"),
        ("sustained_kick:alpha=50.0,start=50,samples=2", "own"),
    ],
)
def test_a_run_with_each_hook_resumes_bit_for_bit(spec, batches, tmp_path):
    cfg = CFG.replace(max_steps=200, hook=spec, batches=batches)

    def run_in(path):
        run = Run.create(path, cfg)
        run.write_hook_basis(BASIS)
        return run

    whole = run_in(tmp_path / "whole")
    train(cfg, whole)
    crashed = run_in(tmp_path / "crashed")

    def crash_after_the_checkpoint(step, row, end):
        if step == 150:  # past the checkpoint at 100 (and the kick at update 120: the resume does it again)
            raise Crash

    with pytest.raises(Crash):
        train(cfg, crashed, on_step=crash_after_the_checkpoint)
    train(cfg, crashed, resume=True)
    assert (crashed.path / METRICS).read_bytes() == (whole.path / METRICS).read_bytes()
    plain = Run.create(tmp_path / "plain", cfg.replace(hook="none"))
    train(plain.config(), plain)
    assert (plain.path / METRICS).read_bytes() != (whole.path / METRICS).read_bytes()  # the hook did something


def test_a_run_without_its_basis_is_refused(tmp_path):
    cfg = CFG.replace(max_steps=100, hook="project:s=0.5,start=50")
    with pytest.raises(Exception, match="hook_basis.npy"):
        train(cfg, Run.create(tmp_path / "run", cfg))


def test_bad_intervention_parameters_are_refused():
    for spec, words in (
        ("project:s=1.5", "project: s=1.5 is not allowed: s is in [0, 1]"),
        ("noise:basis=svd", "basis is one of pca, random"),
        ("kick:samples=0", "samples=0 is not"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            parse(spec)
    assert parse("project:s=0.5").spec == "project:s=0.5,basis=pca,start=500"  # every parameter written out


def test_intervention_grids_put_each_baseline_first_and_name_every_arm():
    by_name = {name: grids.grid(name) for name in ("dose-response", "interventions-add", "kicks")}
    assert {name: len(specs) for name, specs in by_name.items()} == {
        "dose-response": 12 + 60,
        "interventions-add": 3 + 63,
        "kicks": 3 + 27,
    }
    waves = recipes.waves(by_name["dose-response"])
    assert [len(w) for w in waves] == [12, 60] and all(s.recipe == "pca" for s in waves[0])
    for s in waves[1]:
        base = recipes.baseline(s)
        assert base.name in {b.name for b in waves[0]} and base.config.hook == "none" and not base.config.probe_every
        assert (base.config.op, base.config.seed, base.config.lr) == (s.config.op, s.config.seed, s.config.lr)
        assert s.config.probe_every == 100 and s.config.extra_steps == 1000 and s.config.max_steps == 15_000
    hooks = sorted(
        s.config.hook for s in by_name["interventions-add"] if s.config.seed == 42 and s.recipe == "intervene"
    )
    assert (
        len(hooks) == len(set(hooks)) == 1 + 4 * 4 + 4
        and "none" in hooks
        and "project:s=1.0,basis=random,start=500" in hooks
    )


def test_the_primary_and_random_basis_grids_are_the_paper_figures_subsets():
    whole = {s.name for s in grids.grid("interventions-add")}
    primary, random = grids.grid("interventions-primary"), grids.grid("random-basis")
    assert {s.name for s in primary} <= whole and {s.name for s in random} <= whole
    hooks = {s.config.hook for s in primary if s.config.seed == 42 and s.recipe == "intervene"}
    assert hooks == {
        "none",
        "kick:alpha=10.0,basis=pca,start=500,samples=9",  # figI4
        "noise:eps=0.1,basis=pca,start=500,every=50",
        "penalty:s=0.5,basis=pca,start=500",
        "project:s=0.5,basis=pca,start=500",
    }
    assert {s.config.hook for s in random if s.recipe == "intervene" and s.config.seed == 42} == {
        "none",
        *(f"project:s={d},basis=random,start=500" for d in (0.25, 0.5, 0.75, 1.0)),
    }  # figI6
    assert all(s.recipe == "intervene" for s in random)  # a random basis needs no baseline run


def test_intervene_builds_the_baseline_once_and_gives_the_run_its_basis(tmp_path):
    result = tinygrok(
        "intervene",
        "--arm",
        "project",
        "--dose",
        "1.0",
        "--preset",
        "classroom",
        "--max-steps",
        "600",
        "--out",
        str(tmp_path / "project"),
    )
    assert result.returncode == 0, result.stderr
    assert "DNF: not grokked within 600 steps" in result.stdout
    baseline, run = Run(tmp_path / "classroom_add_s42_max_steps600"), Run(tmp_path / "project")
    assert baseline.stages() == ["train", "pca"] and run.summary()["steps"] == 600
    assert np.array_equal(run.hook_basis(), baseline.basis().astype(np.float32))  # B from the baseline's PCA
    assert run.config().hook == "project:s=1.0,basis=pca,start=500" and run.config().probe_every == 100
    assert run.config().batches == "shifted" and baseline.config().batches == "own"  # the reference code's protocol
    built = (baseline.path / METRICS).stat().st_mtime_ns
    again = tinygrok(
        "intervene",
        "--arm",
        "project",
        "--dose",
        "0.5",
        "--preset",
        "classroom",
        "--max-steps",
        "600",
        "--out",
        str(tmp_path / "half"),
    )
    assert again.returncode == 0 and (baseline.path / METRICS).stat().st_mtime_ns == built  # reused, not retrained

    random = tinygrok(
        "intervene",
        "--arm",
        "random-kick",
        "--basis",
        "random",
        "--preset",
        "classroom",
        "--max-steps",
        "700",
        "--out",
        str(tmp_path / "random"),
    )
    assert random.returncode == 0, random.stderr
    basis = Run(tmp_path / "random").hook_basis().astype(np.float64)
    assert basis.shape == (P, 16) and np.allclose(basis.T @ basis, np.eye(16), atol=1e-5)  # orthonormal
    assert not (tmp_path / "classroom_add_s42_max_steps700").exists()  # a random basis needs no baseline
    assert Run(tmp_path / "random").config().hook == "random_kick:alpha=100.0,basis=random,start=500,every=50"


def test_an_intervention_without_its_baseline_is_refused_before_its_directory_is_made(tmp_path):
    for spec in (
        recipes.intervention("project", 0.5, preset="classroom", max_steps=600),
        recipes.spec("train", "classroom", hook="project", max_steps=600),  # tinygrok train --hook project
    ):
        with pytest.raises(RunError, match="needs its baseline run"):
            recipes.execute(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a-file").write_text("")
    common = ["intervene", "--arm", "project", "--preset", "classroom", "--max-steps", "600"]
    for out, words in (
        (["--out", str(tmp_path / "a-file")], "is not a directory"),
        (["--resume", "--out", str(tmp_path / "none")], "config.json"),
    ):
        assert_refused(refused_here(*common, *out), words)  # before its baseline trains
    assert [path.name for path in tmp_path.iterdir()] == ["a-file"]


def test_the_report_gives_grok_step_delays_paired_by_seed_and_dnf_per_arm_beside_the_paper():
    """Seed 1's s = 0.5 run groks 100 steps after its own s = 0 run, seed 2's 500 after its own: +300 ± 283,
    though the unpaired means differ by 300 too; s = 1 does not grok."""
    half, whole = "project:s=0.5,basis=pca,start=500", "project:s=1.0,basis=pca,start=500"
    runs = [
        {
            "op": "add",
            "recipe": "intervene",
            "batches": "shifted",
            "hook": hook,
            "seed": seed,
            "grok_step": step,
            "max_steps": 15000,
        }
        for hook, seed, step in (
            ("none", 1, 3000),
            ("none", 2, 3400),
            (half, 1, 3100),
            (half, 2, 3900),
            (whole, 1, None),
            ("project:s=0.0,basis=pca,start=500", 3, 3200),
        )
    ]
    text = "\n".join(sweep_report.intervention_tables(runs))
    assert (
        "| add | shifted | none | 0 | pca | 3/3 | 3200 ± 200 (n 3) | 3000-3400 |  | ~3233 (figI4; figI10 ~3200) |"
    ) in text
    assert (
        "| add | shifted | project | 0.5 | pca | 2/2 | 3500 ± 566 (n 2) | 3100-3900 | +300 ± 283 [+100 to +500] "
        "(n 2) | ~3470, +300 (figI10; figI4: 3533) |"
    ) in text
    assert "| add | shifted | project | 1 | pca | 0/1 | DNF |  | 1/1 DNF | DNF (0/3) (figI10, figI5) |" in text
    assert "| seed | none | project 0.5 | project 1 |" in text
    assert "| 1 | 3000 | 3100 (+100) | DNF |" in text and "| 2 | 3400 | 3900 (+500) |  |" in text
    assert "| 3 | 3200 |  |  |" in text
    assert sweep_report.dose_response(runs).axes[0].get_title().startswith("add")


def test_each_protocol_is_measured_against_its_own_runs_without_intervention():
    """Sibling-batch arms against the sibling s = 0 run, own-batch arms against the own one: never across. A
    sibling arm without a sibling s = 0 run has no delay (its baseline is on other batches)."""
    runs = [
        {
            "name": f"{batches}{hook[:9]}",
            "op": "add",
            "recipe": "intervene",
            "batches": batches,
            "hook": hook,
            "seed": 42,
            "grok_step": step,
            "max_steps": 15000,
            "baseline": "base",
        }
        for batches, hook, step in (
            ("own", "project:s=0.0,basis=pca,start=500", 3000),
            ("own", "project:s=0.5,basis=pca,start=500", 4000),
            ("sibling", "project:s=0.0,basis=pca,start=500", 3400),
            ("sibling", "project:s=0.5,basis=pca,start=500", 3600),
        )
    ]
    text = "\n".join(sweep_report.intervention_tables(runs))
    assert "| add | own | project | 0.5 | pca | 1/1 | 4000 (n 1) | 4000-4000 | +1000 [+1000 to +1000] (n 1) |" in text
    assert "| add | sibling | project | 0.5 | pca | 1/1 | 3600 (n 1) | 3600-3600 | +200 [+200 to +200] (n 1) |" in text
    base = {
        "name": "base",
        "op": "add",
        "recipe": "pca",
        "batches": "own",
        "hook": "none",
        "seed": 42,
        "grok_step": 3000,
        "max_steps": 15000,
    }
    alone = "\n".join(sweep_report.intervention_tables([base, runs[3]]))
    assert "| add | sibling | none | 0 | pca | 0/0 | not run |" in alone
    assert "| add | sibling | project | 0.5 | pca | 1/1 | 3600 (n 1) | 3600-3600 |  |" in alone


def test_without_a_probed_arm_the_interventions_are_measured_against_their_baselines():
    """A sweep of arms alone (no probed no-hook arm) on own batches measures them against the baselines it ran
    first."""
    base = [
        {
            "name": f"base{seed}",
            "op": "mul",
            "recipe": "pca",
            "batches": "own",
            "hook": "none",
            "seed": seed,
            "grok_step": step,
            "max_steps": 15000,
        }
        for seed, step in ((1, 2800), (2, 3000))
    ]
    arms = [
        {
            "name": f"kick{seed}",
            "op": "mul",
            "recipe": "intervene",
            "batches": "own",
            "hook": "kick:alpha=10.0",
            "seed": seed,
            "baseline": f"base{seed}",
            "grok_step": step,
            "max_steps": 15000,
        }
        for seed, step in ((1, 2900), (2, 3100))
    ]
    assert sweep_report.untouched(base + arms, "mul", "own") == base
    text = "\n".join(sweep_report.intervention_tables(base + arms))
    assert "| mul | own | none | 0 | pca | 2/2 | 2900 ± 141 (n 2) | 2800-3000 |" in text
    assert (
        "| mul | own | kick | 10 | pca | 2/2 | 3000 ± 141 (n 2) | 2900-3100 | +100 ± 0 [+100 to +100] (n 2) |" in text
    )


def test_a_zero_direction_gives_no_kick():
    """The reference skips a kick whose direction vanishes (a float32 defect can be exactly 0, docs/paper.md §6.6)."""
    assert not np.any(interventions.direction(np.zeros(5, np.float32)))
    assert np.linalg.norm(interventions.direction(vector(3))) == pytest.approx(1, rel=1e-6)


@pytest.mark.parametrize(
    "args,words",
    [
        (["--arm", "bogus"], "the arms are project, project-attention, penalty"),
        (["--arm", "project", "--dose", "2"], "s=2.0 is not allowed"),
        (["--arm", "project", "--resume", "--force"], "contradict"),
    ],
)
def test_bad_interventions_are_refused_in_one_line_before_any_training(args, words, tmp_path):
    assert_refused(refused_here("intervene", *args, "--preset", "classroom", "--out", str(tmp_path / "run")), words)
    assert not any(tmp_path.iterdir())  # no baseline was trained


def test_a_hook_is_one_declaration_that_the_rest_reads():
    """Validation, the text form, --arm and the grids all come from the hook classes' declarations."""
    assert interventions.ARMS == [name for name, cls in interventions.HOOKS.items() if cls.DOSE]
    assert {"project", "penalty", "kick", "noise", "sustained_kick", "random_kick"} <= set(interventions.ARMS)
    assert interventions.HOOKS["penalty"].DOSE == "s" and interventions.HOOKS["l2"].PAPER == {}  # not inherited
    add = {s.config.hook for s in grids.grid("interventions-add", grids.Filters(seeds=(42,)))}
    for arm in ("kick", "noise", "penalty", "project"):
        assert {parse(h).with_dose(None).spec for h in add if h.startswith(arm + ":")} >= {
            parse(arm).with_dose(dose).spec for dose in interventions.HOOKS[arm].SWEEP
        }
    help_text = tinygrok("intervene", "--help").stdout
    assert all(arm.replace("_", "-") in help_text for arm in interventions.ARMS)
    assert sweep_report.arm({"hook": "project:s=0.0,basis=random,start=500"}) == ("none", 0.0, "pca")  # the identity
    assert sweep_report.arm({"hook": "kick:alpha=5.0,basis=pca,start=500,samples=9"}) == ("kick", 5.0, "pca")


@pytest.fixture
def toggle_hook():
    """A hook with a boolean, an integer and a free-text parameter, registered for one test."""

    class Toggle(interventions.Hook, name="toggle"):
        DOSE = "k"
        flip: bool = interventions.param(False, "whether to negate the gradient")
        k: int = interventions.param(2, "a whole-number strength", low=1, high=5)
        tag: str = interventions.param("a", "any text, no choices")

        def before_update(self, theta, grad, step, ctx):
            return theta, -grad if self.flip else grad

    toggle = dataclasses.dataclass(frozen=True)(Toggle)
    yield toggle
    del interventions.HOOKS["toggle"]


def test_parameters_parse_by_their_declared_type(toggle_hook):
    assert parse("toggle:flip=false").flip is False and parse("toggle:flip=true").flip is True  # not bool("false")
    assert parse("toggle:flip=true").spec == "toggle:flip=true,k=2,tag=a"
    assert parse("toggle:tag=b").tag == "b"
    for text, words in (
        ("toggle:flip=1", "flip is true or false"),
        ("toggle:k=6", "k is in [1, 5]"),
        ("toggle:k=2.5", "k is in [1, 5]"),
        ("toggle:k=2,k=3", "k is given twice"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            parse(text)
    with pytest.raises(ValueError, match="flip=0 is not allowed"):
        toggle_hook(flip=0)  # a number is not a bool, even in Python
    with pytest.raises(ValueError, match="tag=1 is not allowed: tag is text"):
        toggle_hook(tag=1)
    assert parse("toggle").with_dose(3.0).k == 3  # --dose is a float on the command line
    with pytest.raises(ValueError, match="k=2.5 is not allowed"):
        parse("toggle").with_dose(2.5)
    g = vector(1)
    assert np.array_equal(parse("toggle:flip=true").before_update(None, g, 0, context())[1], -g)
