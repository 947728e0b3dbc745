"""The run recipe: callable from a process pool with the library alone, skipping finished runs, resuming killed
ones; numbers that do not depend on the cores; hooks that resume bit for bit; run names that never collide."""

import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_cli import CLI, SMALL, SMALL_ARGS, assert_refused, refused_here, tinygrok

from tinygrok.lab import grids, recipes
from tinygrok.run.runs import CHECKPOINT, METRICS, SUMMARY, Run, RunError
from tinygrok.run.train import fresh_state, train_step
from tinygrok.science import interventions, paper
from tinygrok.science.config import Config, ConfigError, preset
from tinygrok.science.data import make_dataset, stream

ROOT = Path(__file__).resolve().parents[1]
NOISE = "weight_noise:sigma=0.003,every=50"


def classroom(**settings):
    return recipes.spec("train", "classroom", **{"max_steps": 400, **settings})


def start_killable(args: list[str], cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)


def kill_after(process: subprocess.Popen, run_dir: Path, rows: int) -> None:
    """SIGKILL the process once the run has written `rows` metric rows (so a checkpoint exists) and before it ends."""
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        metrics = run_dir / METRICS
        if metrics.exists() and metrics.read_text().count("\n") >= rows:
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert not (run_dir / SUMMARY).exists(), "the run finished before it could be killed"
            return
        time.sleep(0.02)
    raise AssertionError(f"the run never reached {rows} rows: {process.stderr.read()}")


def test_names_derive_from_every_setting_that_differs_from_the_preset():
    grid = [classroom(lr=lr) for lr in (1e-3, 3e-3, 1e-2)]
    assert [s.name for s in grid] == [
        "classroom_add_s42_lr0.001_max_steps400",
        "classroom_add_s42_max_steps400",
        "classroom_add_s42_lr0.01_max_steps400",
    ]  # 3e-3 is the preset's own lr
    assert recipes.spec("walkthrough").name == "grok_paper_add_s42"
    assert (
        recipes.spec("train", op="mul", seed=7, hook=NOISE).name == "paper_mul_s7_hookweight_noise-sigma0.003-every50"
    )
    with pytest.raises(ConfigError, match="walkthrough"):
        recipes.spec("walkthrough", "slow")


def test_a_process_pool_runs_specs_skips_them_when_done_and_resumes_a_killed_one(tmp_path):
    """Acceptance a: the library function alone, in worker processes."""
    specs = [classroom(lr=3e-3, **SMALL), classroom(lr=1e-3, **SMALL)]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(recipes.execute, specs, [tmp_path] * 2))
    runs = [Run(tmp_path / s.name) for s in specs]
    assert [r["steps"] for r in results] == [400, 400] and [run.summary() for run in runs] == results
    before = (
        [(run.path / METRICS).read_bytes() for run in runs],
        [(run.path / SUMMARY).stat().st_mtime_ns for run in runs],
    )
    with ProcessPoolExecutor(2) as pool:
        again = list(pool.map(recipes.execute, specs, [tmp_path] * 2))
    assert again == results  # skipped: nothing rewritten
    assert before == (
        [(run.path / METRICS).read_bytes() for run in runs],
        [(run.path / SUMMARY).stat().st_mtime_ns for run in runs],
    )

    killed = classroom(max_steps=600, **SMALL)
    script = (
        "from tinygrok.lab import recipes as x; "
        f"x.execute(x.spec('train', 'classroom', max_steps=600, **{SMALL}), {str(tmp_path / 'killed')!r})"
    )
    kill_after(start_killable(["-c", script]), tmp_path / "killed" / killed.name, 3)
    recipes.execute(killed, tmp_path / "killed")
    recipes.execute(killed, tmp_path / "whole")
    assert (tmp_path / "killed" / killed.name / METRICS).read_bytes() == (
        tmp_path / "whole" / killed.name / METRICS
    ).read_bytes()


def test_a_directory_holding_other_settings_is_refused_unchanged(tmp_path):
    spec = classroom(max_steps=100)
    recipes.execute(spec, tmp_path)
    before = (tmp_path / spec.name / "config.json").read_text()
    other = recipes.RunSpec(spec.config.replace(lr=1e-2), "train", "classroom")
    with pytest.raises(RunError, match="other settings.*lr"):
        recipes.execute(other, path=tmp_path / spec.name)
    assert (tmp_path / spec.name / "config.json").read_text() == before


def test_threads_change_speed_only_and_a_run_resumes_on_other_cores(tmp_path):
    """Acceptance b (CI-sized): --threads 1 and 2 give the same bytes; killed on 2 cores, resumed on 1, the same."""
    common = ["train", "--preset", "classroom", "--max-steps", "300", *SMALL_ARGS]
    for threads in ("1", "2"):
        result = tinygrok(*common, "--threads", threads, "--out", str(tmp_path / threads))
        assert result.returncode == 0, result.stderr
    one = (tmp_path / "1" / METRICS).read_bytes()
    assert one == (tmp_path / "2" / METRICS).read_bytes() and one.count(b"\n") == 4
    kill_after(start_killable([CLI, *common, "--threads", "2", "--out", str(tmp_path / "k")]), tmp_path / "k", 2)
    result = tinygrok("train", "--resume", "--out", str(tmp_path / "k"), "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k" / METRICS).read_bytes() == one


def test_a_stochastic_hook_resumes_bit_for_bit_and_another_hook_is_refused(tmp_path):
    """Acceptance d: Gaussian noise on theta every 50 steps, from the hook's own stream, survives kill -9."""
    common = ["train", "--preset", "classroom", "--max-steps", "300", *SMALL_ARGS, "--hook", NOISE]
    assert tinygrok(*common, "--out", str(tmp_path / "whole")).returncode == 0
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["hook"] == NOISE
    kill_after(start_killable([CLI, *common, "--out", str(tmp_path / "k")]), tmp_path / "k", 2)
    assert_refused(refused_here("train", "--resume", "--out", str(tmp_path / "k"), "--hook", "none"), "--hook")
    assert tinygrok("train", "--resume", "--out", str(tmp_path / "k")).returncode == 0
    whole, resumed = (Run(tmp_path / n) for n in ("whole", "k"))
    assert (resumed.path / METRICS).read_bytes() == (whole.path / METRICS).read_bytes()
    assert np.array_equal(resumed.load_checkpoint()[0]["W_E"], whole.load_checkpoint()[0]["W_E"])
    plain = tmp_path / "plain"
    assert tinygrok(*common[:-2], "--out", str(plain)).returncode == 0
    assert (plain / METRICS).read_bytes() != (whole.path / METRICS).read_bytes()  # the noise did something


def test_weight_noise_adds_sigma_z_after_every_50th_step_from_its_own_stream():
    cfg = preset("classroom", batch_size=32, hook=NOISE)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    hook, plain_hook = interventions.parse(cfg.hook), interventions.parse("none")
    noisy, plain = fresh_state(cfg), fresh_state(cfg)
    z = stream(cfg.seed, "hook")  # the same draws as the run's hook stream
    for step in range(1, 51):
        noisy, _ = train_step(noisy, data, cfg, hook if step < 50 else plain_hook)
        plain, _ = train_step(plain, data, cfg, plain_hook)
    assert np.array_equal(noisy.theta, plain.theta)  # nothing before the 50th step, batches untouched
    noisy_50 = hook.after_update(plain.theta, 50, interventions.Context(noisy.hook_rng))
    expected = plain.theta + 0.003 * z.standard_normal(plain.theta.size).astype(np.float32)
    assert np.array_equal(noisy_50, expected)


def test_a_gradient_hook_sees_the_clipped_gradient_before_adamw():
    class ZeroGradient(interventions.Hook):
        def before_update(self, theta, grad, step, ctx):
            assert np.linalg.norm(grad) <= 1.0 + 1e-6  # after clipping
            return theta, grad * 0

    cfg = preset("classroom", batch_size=32)
    state = fresh_state(cfg)
    new, _ = train_step(state, make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed), cfg, ZeroGradient())
    np.testing.assert_allclose(new.theta, state.theta * (1 - cfg.lr * cfg.weight_decay), rtol=1e-6)  # decay only


@pytest.mark.parametrize(
    "spec,words",
    [
        ("shove", "unknown hook"),
        ("weight_noise:scale=1", "no parameter 'scale'"),
        ("weight_noise:every=x", "every is a whole number >= 1"),
        ("weight_noise:every=0", "every=0 is not allowed"),
    ],
)
def test_bad_hooks_are_refused_naming_the_option(spec, words):
    with pytest.raises(ConfigError, match="--hook") as err:
        Config(hook=spec)
    assert words in str(err.value)


def test_importing_the_plots_leaves_the_backend_alone_and_every_figure_draws_in_memory(tmp_path):
    """Acceptance e."""
    check = (
        "import matplotlib; matplotlib.use('svg'); import tinygrok.run.plots; assert matplotlib.get_backend() == 'svg'"
    )
    assert subprocess.run([sys.executable, "-c", check], cwd=ROOT).returncode == 0
    from matplotlib.figure import Figure

    from tinygrok.run import plots

    spec = recipes.spec("walkthrough", "classroom", max_steps=600, probe_samples=2, **SMALL)
    run = Run(tmp_path / spec.name)
    recipes.execute(spec, tmp_path)
    assert plots.available(run) == [
        name
        for name in plots.FIGURES  # tinygrok dimensions', tinygrok forecast's
        if name not in ("dimensions", "forecast")
    ]
    assert run.stages() == ["train", "geometry", "figures"]
    assert {ref.key for ref in (*paper.WALKTHROUGH, paper.PC1)} <= set(run.summary())  # each beside its measure
    for name in plots.available(run):
        figure = plots.FIGURES[name](run)
        assert isinstance(figure, Figure) and figure.axes and all(ax.has_data() for ax in figure.axes[:1]), name
    given = Figure().subplots(1, 2)
    assert plots.training(run, axes=given) is given[0].figure and given[1].get_yscale() == "log"
    assert (run.path / CHECKPOINT).exists() and (run.path / "defect.png").stat().st_size > 10_000


def test_an_analysis_of_an_unfinished_walkthrough_is_redone_when_training_ends(tmp_path):
    """Training is the first stage: recording it drops what an analysis of the half-trained run had recorded."""
    from tinygrok.run import geometry

    spec = recipes.spec("walkthrough", "classroom", max_steps=600, probe_samples=2, **SMALL)
    script = (
        "from tinygrok.lab import recipes as x; x.execute(x.spec('walkthrough', 'classroom', max_steps=600, "
        f"probe_samples=2, **{SMALL}), {str(tmp_path)!r})"
    )
    run = Run(tmp_path / spec.name)
    kill_after(start_killable(["-c", script]), run.path, 4)
    early = geometry.analyse(run)[0]  # a look at the run so far (tinygrok pca / commutator do this)
    assert run.stages() == ["geometry"]
    final = recipes.execute(spec, tmp_path)
    assert run.stages() == ["train", "geometry", "figures"] and final["steps"] == 600
    assert run.pca()["last_step"] == 600 and final["pc1"] != early["pc1"]


def test_the_walkthrough_runs_end_to_end_in_float64(tmp_path):
    """tinygrok grok --dtype float64: training, probes, the analysis and the figures, all in float64."""
    from tinygrok.run import plots

    result = tinygrok(
        "grok", "--preset", "classroom", "--dtype", "float64", "--max-steps", "200", "--out", str(tmp_path / "f64")
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = Run(tmp_path / "f64")
    assert run.config().dtype == "float64" and run.rows("thetas.npy").dtype == np.float64
    assert run.stages() == ["train", "geometry", "figures"] and run.summary()["rho"] > 0.99
    assert plots.available(run) == ["training", "defect", "explained_variance", "trajectory", "projections"]


def test_the_pca_recipe_trains_then_records_the_trajectory_pca(tmp_path):
    from tinygrok.run.geometry import run_trajectories
    from tinygrok.science.pca import pc1_share

    spec = recipes.spec("pca", "classroom", max_steps=300, **SMALL)
    results = recipes.execute(spec, tmp_path)
    run = Run(tmp_path / spec.name)
    assert run.stages() == ["train", "pca"] and results["steps"] == 300 and run.has("basis.npy")
    trajectories = run_trajectories(run, spec.config)  # snapshots at steps 0, 100, 200, 300
    assert len(trajectories) == 8 and all(len(t) == 4 for t in trajectories.values())
    assert results["pca_snapshots"] == 4
    assert results["pc1"] == {name: pytest.approx(pc1_share(t), rel=1e-9) for name, t in trajectories.items()}


def test_settings_that_name_the_same_run_give_the_same_name():
    assert classroom(lr=1.0000001e-3).name != classroom(lr=1e-3).name
    assert classroom(hook="weight_noise").name == classroom(hook="weight_noise:sigma=0.001,every=50").name
    assert Config(hook="weight_noise:every=50,sigma=1e-3").hook == "weight_noise:sigma=0.001,every=50"


def test_a_saved_spec_continues_the_run_under_its_preset_and_name(tmp_path):
    spec = classroom(max_steps=200)
    recipes.execute(spec, tmp_path)
    again = recipes.saved_spec(tmp_path / spec.name)
    assert again == spec and again.name == spec.name
    with pytest.raises(RunError, match="--lr"):
        recipes.saved_spec(tmp_path / spec.name, lr=0.5)


def test_the_l2_hook_adds_lam_theta_to_the_clipped_gradient():
    """Adam's first step is theta - lr u / (|u| + eps), about lr against the sign of u = g + lam theta here."""
    from tinygrok.engine import parallel
    from tinygrok.science.data import sample_batch
    from tinygrok.science.optim import clip_by_global_norm

    cfg = preset("classroom", batch_size=32, weight_decay=0.0, hook="l2:lam=0.5")
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    state = fresh_state(cfg)
    g, _ = clip_by_global_norm(
        parallel.batch_gradient(state.theta, *sample_batch(data, 32, stream(cfg.seed, "batches")), cfg), cfg.clip_norm
    )
    new, _ = train_step(state, data, cfg, interventions.parse(cfg.hook))
    u = g + np.float32(0.5) * state.theta
    np.testing.assert_allclose(new.theta, state.theta - cfg.lr * u / (np.abs(u) + cfg.eps), rtol=1e-6, atol=1e-9)


def test_the_paper_grids_and_their_filters():
    by_name = {
        name: grids.grid(name) for name in ("table1", "pca", "lr-sweep", "slow", "controls", "float64-check")
    }  # interventions: their own test
    assert {name: len(specs) for name, specs in by_name.items()} == {
        "table1": 15,
        "pca": 36,
        "lr-sweep": 108,
        "slow": 2,
        "controls": 12,
        "float64-check": 2,
    }
    assert len({s.name for specs in by_name.values() for s in specs}) == 175 - 1  # float32's add s42 is table1's
    assert all(
        s.recipe == "walkthrough"
        and (s.config.probe_every, s.config.probe_samples, s.config.theta_every, s.config.extra_steps)
        == (100, 7, 100, 1500)
        for s in by_name["controls"]
    )
    assert [(s.config.op, s.config.seed, s.config.dtype) for s in by_name["float64-check"]] == [
        ("add", 42, "float32"),
        ("add", 42, "float64"),
    ]
    table1 = by_name["table1"]
    assert all(
        s.recipe == "walkthrough"
        and s.config.probe_every == 100
        and s.config.probe_samples == 5
        and s.config.extra_steps == 1000
        for s in table1
    )
    assert sorted(
        (s.config.op, s.config.max_steps, s.config.weight_decay)
        for s in table1
        if s.config.seed == 42 and (s.config.op not in grids.GROKKING_OPS or s.config.weight_decay == 0)
    ) == [("add", 5000, 0.0), ("x2_xy_y2", 7500, 1.0), ("x3_xy", 7500, 1.0)]
    assert {s.config.lr for s in by_name["lr-sweep"]} == set(grids.LEARNING_RATES)
    assert {s.config.op: s.config.max_steps for s in by_name["lr-sweep"]} == {  # the reference's LR sweep's cap
        **{op: 200_000 for op in grids.GROKKING_OPS},
        "x2_xy_y2": 50_000,
        "x3_xy": 50_000,
    }
    assert all(
        s.recipe == "probed"
        and (s.config.n_layers, s.config.probe_every, s.config.theta_every, s.config.extra_steps)
        == (3, 5000, 0, 20_000)
        and (s.config.snapshot_every, s.config.snapshot_layers, s.config.snapshot_dtype) == (20_000, 1, "float16")
        for s in by_name["slow"]
    )
    assert all(
        s.recipe == "pca" and s.config.snapshot_every == (100 if s.config.weight_decay else 500) for s in by_name["pca"]
    )
    small = grids.grid(
        "lr-sweep", grids.Filters(ops=("add",), seeds=(42, 137), lrs=(1e-3, 1e-2), max_steps=3000, preset="classroom")
    )
    assert len(small) == 4 and all(
        s.preset == "classroom" and s.config.max_steps == 3000 and s.config.p == 59 for s in small
    )
    with pytest.raises(ConfigError, match="leave no run"):
        grids.grid("pca", grids.Filters(lrs=(0.5,)))
    with pytest.raises(ConfigError, match="unknown experiment 'table2'"):
        grids.grid("table2")
    with pytest.raises(ConfigError, match="--preset"):
        grids.grid("slow", grids.Filters(preset="classroom"))


def test_cpu_estimates_follow_the_bench_and_the_expected_steps():
    costs = {"train_step_ms": 30.0, "eval_ms": 200.0, "commutator_sample_ms": 100.0}
    add = recipes.spec("walkthrough", op="add")
    assert grids.expected_steps(add.config) == 3000 + 1000
    assert grids.estimate_cpu_seconds(add, costs) == pytest.approx(4000 * (30 + 2 + 5) / 1e3)
    slow_lr = recipes.spec("train", op="add", lr=1e-4)
    assert grids.expected_steps(slow_lr.config) == 30_000  # ~34k in the paper
    assert grids.expected_steps(recipes.spec("train", op="x3_xy").config) == 200_000  # never groks
    assert grids.expected_steps(recipes.intervention("project", 1.0).config) == 15_000  # DNF: the cap
    assert grids.expected_steps(recipes.intervention("project", 0.5).config) == 4000


def test_the_experiments_command_lists_each_grid_with_an_estimate():
    result = tinygrok("experiments", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    for name, runs in (("table1", "15"), ("pca", "36"), ("lr-sweep", "108"), ("slow", "2")):
        assert re.search(rf"{name}\s.*\s{runs}\s.*\d+\.\d h", result.stdout), result.stdout
