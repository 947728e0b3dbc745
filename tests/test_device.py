"""The GPU code path, run on the strict CPU stand-in for CuPy (tinygrok/engine/standin.py), registered with autograd
through the same backend.use() as CuPy. Training, evaluation, probes, Hessian-vector products, PCA and the
optimizer run on device arrays without touching the host, and match NumPy."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special
from autograd import grad
from autograd.test_util import check_grads
from conftest import tiny_config

from tinygrok.engine import backend, kernels, ops, standin
from tinygrok.engine.fast import flat_grad
from tinygrok.engine.parallel import Derivatives
from tinygrok.engine.standin import HostMixingError
from tinygrok.run import geometry
from tinygrok.run.runs import METRICS, SNAPSHOTS, THETAS, Run
from tinygrok.run.train import evaluate, fresh_state, train
from tinygrok.science.commutator import defect_samples, lie_bracket
from tinygrok.science.config import Config
from tinygrok.science.data import make_dataset, sample_batch, stream
from tinygrok.science.optim import AdamWState, adamw_step, clip_by_global_norm
from tinygrok.science.pca import trajectory_pca

RUN = Config(
    p=11,
    d_model=16,
    n_heads=2,
    d_ff=32,
    batch_size=32,
    eval_every=20,
    max_steps=60,
    snapshot_every=20,
    theta_every=20,
    probe_every=20,
    probe_samples=2,
)
rng = np.random.default_rng(0)


@pytest.fixture
def device():
    """The stand-in as the active backend for one test; NumPy again afterwards."""
    backend.use("standin")
    yield standin
    backend.use("numpy")


def on_device(*arrays):
    return tuple(backend.to_device(a) for a in arrays)


def test_standin_refuses_host_arrays_and_implicit_conversion(device):
    a = device.asarray(np.arange(3.0))
    for mixes in (
        lambda: a + np.ones(3),
        lambda: np.dot(a, np.ones(3)),
        lambda: np.concatenate([a, np.ones(1)]),
        lambda: np.asarray(a),
        lambda: a[np.array([0, 1])],
    ):
        with pytest.raises(HostMixingError):
            mixes()
    with pytest.raises(TypeError):  # another library's ufunc: the device need not have it (ops uses backend.erf)
        scipy.special.erf(a)
    np.testing.assert_allclose(backend.erf(a).get(), scipy.special.erf([0.0, 1.0, 2.0]), rtol=1e-15)
    assert isinstance(np.sum(a), standin.DeviceArray) and float(np.sum(a)) == 3.0  # 0-d on the device, as CuPy
    np.testing.assert_array_equal(a.get(), [0.0, 1.0, 2.0])


def test_standin_catches_autograds_host_allocating_vjps(device):
    """What the stand-in is for: autograd's own dot VJP calls np.asarray, which CuPy refuses; ours does not."""
    x = device.asarray(rng.standard_normal((3, 3)))
    with pytest.raises(HostMixingError):
        grad(lambda m: anp.sum(anp.dot(m, m)))(x)
    g = grad(lambda m: ops.sum_axis(ops.sum_axis(ops.matmul(m, m), 0), 0))(x)
    np.testing.assert_allclose(g.get(), grad(lambda m: np.sum(m @ m))(x.get()), rtol=1e-12)


@pytest.mark.parametrize(
    "name,fn,shapes",
    [
        ("layer_norm", ops.layer_norm, [(4, 6), (6,), (6,)]),
        ("linear", ops.linear, [(4, 6), (6, 3), (3,)]),
        ("attention", ops.attention, [(2, 5, 4), (2, 5, 4), (2, 5, 4)]),
        ("gelu", lambda x: x * ops.normal_cdf(x), [(4, 6)]),  # as the model composes it
        ("softmax", lambda x: ops.softmax(x, axis=1), [(4, 6)]),
        ("cross_entropy", lambda z: ops.cross_entropy(z, backend.to_device(np.array([0, 1, 2, 5]))), [(4, 6)]),
        ("embed", lambda t: ops.embed(t, backend.to_device(np.array([1, 1, 3]))), [(4, 6)]),
        ("param_view", lambda t: ops.param_view(t, 3, (2, 2)), [(9,)]),
        ("head_rows", lambda x: ops.head_rows(x, 2), [(4, 6)]),
        ("spread", lambda x: ops.spread(x, (3, 4, 6), 1, keepdims=True), [(3, 1, 6)]),
        ("matmul", ops.matmul, [(4, 6), (6, 3)]),
    ],
)
def test_every_primitive_differentiates_on_the_device_to_second_order(device, name, fn, shapes):
    check_grads(fn, modes=["rev"], order=2)(*on_device(*(rng.standard_normal(s) for s in shapes)))


def test_gradient_evaluation_and_exact_bracket_match_numpy(device):
    cfg = tiny_config()
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    backend.use("numpy")
    theta = fresh_state(cfg).theta
    batch_a, batch_b = (sample_batch(data, cfg.batch_size, stream(0, s)) for s in "ab")
    expected = (
        flat_grad(theta, *batch_a, cfg),
        evaluate(theta, data, cfg),
        lie_bracket(theta, batch_a, batch_b, Derivatives(cfg)),
    )
    backend.use("standin")
    got = (
        flat_grad(backend.to_device(theta), *on_device(*batch_a), cfg),
        evaluate(backend.to_device(theta), data, cfg),
        lie_bracket(backend.to_device(theta), on_device(*batch_a), on_device(*batch_b), Derivatives(cfg)),
    )
    assert isinstance(got[0], standin.DeviceArray) and isinstance(got[2], standin.DeviceArray)
    np.testing.assert_allclose(got[0].get(), expected[0], rtol=1e-12, atol=1e-15)
    assert got[1] == pytest.approx(expected[1], rel=1e-12)
    np.testing.assert_allclose(got[2].get(), expected[2], rtol=1e-10, atol=1e-13)


def test_exact_bracket_on_the_device_with_axes_of_size_one(device):
    """A batch of one makes autograd undo broadcasting over axes of size 1 inside the HVP (autograd's own sum)."""
    cfg = tiny_config(batch_size=1, batch_shards=1)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    backend.use("numpy")
    theta = fresh_state(cfg).theta
    batch_a, batch_b = (sample_batch(data, 1, stream(0, s)) for s in "ab")
    expected = lie_bracket(theta, batch_a, batch_b, Derivatives(cfg))
    backend.use("standin")
    got = lie_bracket(backend.to_device(theta), on_device(*batch_a), on_device(*batch_b), Derivatives(cfg))
    np.testing.assert_allclose(got.get(), expected, rtol=1e-10, atol=1e-13)


def test_training_with_probes_on_the_device_matches_numpy_and_resumes_on_the_cpu(device, tmp_path):
    """A float32 run with evaluations, probes, snapshots and checkpoints; its files open on a CPU: a run started
    on the device and resumed with NumPy equals a NumPy run."""
    train(RUN, Run.create(tmp_path / "device", RUN))
    assert Run(tmp_path / "device").environment()["backend"] == "standin"
    first_half = RUN.replace(max_steps=40)
    train(first_half, Run.create(tmp_path / "moved", first_half))
    backend.use("numpy")
    train(RUN, Run.create(tmp_path / "host", RUN))
    (tmp_path / "moved" / "config.json").write_text((tmp_path / "host" / "config.json").read_text())
    train(RUN, Run(tmp_path / "moved"), resume=True)
    for name in (METRICS, SNAPSHOTS, THETAS):
        host = (tmp_path / "host" / name).read_bytes()
        assert (tmp_path / "device" / name).read_bytes() == host and (tmp_path / "moved" / name).read_bytes() == host
    backend.use("standin")  # the post-hoc geometry: probes on the device, projections on the host
    on_device = geometry.analyse(Run(tmp_path / "device"))[1]
    backend.use("numpy")
    on_host = geometry.analyse(Run(tmp_path / "host"))[1]
    assert len(on_host) == 1 + 60 // 20
    for got, expected in zip(on_device, on_host):
        assert got.pop("engine") == expected.pop("engine") == "fast"  # the fast engine, checked on the device too
        assert got == pytest.approx(expected, rel=1e-9, nan_ok=True)


def test_probes_optimizer_and_clipping_on_the_device(device):
    cfg = tiny_config(dtype="float32")
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    theta = fresh_state(cfg).theta
    samples = defect_samples(theta, data, cfg, stream(0, "probe"), 2, Derivatives(cfg))
    assert all(isinstance(s["delta"], standin.DeviceArray) and s["defect"] > 0 for s in samples)
    g = flat_grad(theta, *map(backend.to_device, sample_batch(data, cfg.batch_size, stream(0, "b"))), cfg)
    clipped, norm = clip_by_global_norm(g * 100, 1.0)
    hp = dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=1.0)
    new_theta, adam = adamw_step(theta, clipped, AdamWState.zeros_like(theta), **hp)
    fast_theta, fast_m, _ = kernels.adamw_step(theta, clipped, adam.m * 0, adam.v * 0, 1, **hp)
    for a in (clipped, new_theta, adam.m, fast_theta, fast_m):
        assert isinstance(a, standin.DeviceArray) and a.dtype == np.float32
    assert float(np.linalg.norm(clipped)) == pytest.approx(1.0, rel=1e-5) and norm > 1
    host = adamw_step(theta.get(), clipped.get(), AdamWState.zeros_like(theta.get()), **hp)[0]
    np.testing.assert_array_equal(new_theta.get(), host)


def test_trajectory_pca_on_the_device_matches_numpy(device):
    traj = np.cumsum(rng.standard_normal((30, 40)), axis=0)
    on_host, on_dev = trajectory_pca(traj, k=3), trajectory_pca(backend.to_device(traj), k=3)
    np.testing.assert_allclose(on_dev.ratios.get(), on_host.ratios, rtol=1e-10)
    np.testing.assert_allclose(np.abs(on_dev.components.get()), np.abs(on_host.components), rtol=1e-8, atol=1e-12)


def test_backend_choice_and_its_errors():
    with pytest.raises(backend.BackendError, match="numpy, cupy, auto"):
        backend.use("gpu")
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(backend.BackendError, match=r"pip install 'tinygrok\[cupy\]'"):
            backend.use("cupy")
        assert backend.use("auto") == "numpy" and backend.xp is np


def test_gpu_check_script_runs_on_the_standin():
    """benchmarks/gpu_check.py stays ready to run on a GPU: its every step runs here on the stand-in."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    result = subprocess.run([sys.executable, str(script), "--standin"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("PASS"), result.stdout + result.stderr
    assert re.search(r"reflected c \* x reaches the box\s+True", result.stdout)
    assert re.search(r"reflected c @ x reaches the box\s+TypeError", result.stdout)  # reported, as CuPy would
