"""The CuPy backend on a real GPU: what the CPU stand-in (tests/test_device.py) cannot show.

    pip install -e ".[cupy]"            # CuPy for CUDA 12 (CUDA 13: pip install cupy-cuda13x)
    python benchmarks/gpu_check.py      # prints a table; exits 1 if a check fails
    python benchmarks/gpu_check.py --standin   # the same on the CPU stand-in: checks the script, not a GPU

1. the device: name, memory, CUDA runtime, CuPy version;
2. reflected operators: `device_array * box`, `float - box`, ... reach autograd's box (CuPy must defer to it
   rather than try to convert it), checked by differentiating through each; `device_array @ box` is reported
   but not required (CuPy's @ is not expected to defer, and tinygrok never applies @ to a box);
3. gradients on the GPU against NumPy (float64, then the float32 paper model);
4. 200 training steps of the classroom preset (loss within 5% of NumPy's) and a commutator sample;
5. ms per training step at the paper settings (batch 512): NumPy on the CPU, CuPy on the GPU, and the PyTorch
   reference on the same GPU if torch sees it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from autograd import grad

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinygrok.engine import backend, parallel
from tinygrok.engine.fast import flat_grad
from tinygrok.engine.ops import sum_axis
from tinygrok.engine.parallel import Derivatives
from tinygrok.lab.benchmark import median_ms, workloads
from tinygrok.run.runs import Run
from tinygrok.run.train import fresh_state, train
from tinygrok.science.commutator import defect_sample
from tinygrok.science.config import Config, preset
from tinygrok.science.data import make_dataset, sample_batch, stream

REFLECTED = {  # f(device constant c, boxed x): operators whose left operand is not autograd's box
    "c * x": lambda c, x: c * x,
    "c + x": lambda c, x: c + x,
    "c - x": lambda c, x: c - x,
    "c / x": lambda c, x: c / (x * x + 1.0),
    "2.0 - x": lambda c, x: 2.0 - x,
    "c @ x": lambda c, x: c @ x,  # reported only: tinygrok multiplies matrices through ops.matmul and linear
}
NEEDED = [name for name in REFLECTED if "@" not in name]  # cross_entropy's VJP, for one, computes g * (box)


def check_reflected() -> dict:
    """d/dx sum(f(c, x)) with c a device constant equals the NumPy gradient, for every reflected operator."""
    rng = np.random.default_rng(0)
    c, x = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    total = lambda a: sum_axis(a, (0, 1))  # noqa: E731 - autograd's np.sum VJP would allocate on the host
    results = {}
    for name, f in REFLECTED.items():
        try:
            on_device = grad(lambda v: total(f(backend.to_device(c), v)))(backend.to_device(x))  # noqa: B023 - called here
            on_cpu = grad(lambda v: np.sum(f(c, v)))(x)  # noqa: B023 - called here
            results[name] = bool(np.allclose(backend.to_host(on_device), on_cpu, rtol=1e-12))
        except Exception as err:  # report every failure, not just the first
            results[name] = f"{type(err).__name__}: {err}"
    return results


def gradient_error(cfg: Config, device: str) -> float:
    """max |g_device - g_cpu| / max |g_cpu| for one batch."""
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    backend.use("numpy")
    theta, batch = fresh_state(cfg).theta, sample_batch(data, cfg.batch_size, stream(0, "check"))
    on_cpu = flat_grad(theta, *batch, cfg)
    backend.use(device)
    on_device = backend.to_host(flat_grad(backend.to_device(theta), *map(backend.to_device, batch), cfg))
    return float(np.max(np.abs(on_device - on_cpu)) / np.max(np.abs(on_cpu)))


def train_loss_after(steps: int, device: str) -> float:
    """The classroom preset's training loss after `steps` steps on `device`."""
    backend.use(device)
    cfg = preset("classroom", max_steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Run.create(Path(tmp) / device, cfg))
        return Run(Path(tmp) / device).metrics()[-1]["train_loss"]


def step_ms(name: str, cfg: Config, sync) -> float:
    backend.use(name)
    return median_ms(workloads(cfg)["train_step"], 20, warmup=3, sync=sync)


def torch_step_ms(cfg: Config) -> float | str:
    try:
        import torch
        import torch_reference as ref
    except ImportError:
        return "torch not installed"
    if not torch.cuda.is_available():
        return "torch sees no GPU"
    model, opt, loss_fn = ref.make(cfg, device="cuda")
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    tx, ty = torch.from_numpy(data.train_x).cuda(), torch.from_numpy(data.train_y).cuda()

    def step():
        idx = torch.randint(0, len(tx), (cfg.batch_size,), device="cuda")
        ref.train_step(model, opt, loss_fn, tx[idx], ty[idx])

    return median_ms(step, 20, warmup=3, sync=torch.cuda.synchronize)


def device_rows(device: str) -> tuple[list, callable]:
    """What the device is, and a function that waits for its queued work."""
    if device == "standin":
        return [
            ("device", "the CPU stand-in (a smoke test of this script; the answers below prove nothing)")
        ], lambda: None
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    return [
        ("device", props["name"].decode()),
        ("memory GiB", f"{props['totalGlobalMem'] / 2**30:.0f}"),
        ("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion()),
        ("CuPy", cupy.__version__),
    ], cupy.cuda.Device(0).synchronize


def main(device: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        backend.use(device)
    except backend.BackendError as err:
        print(f"no GPU check here: {err}")
        return 1
    rows, sync = device_rows(device)
    reflected = check_reflected()
    rows += [(f"reflected {name} reaches the box", ok) for name, ok in reflected.items()]
    errors = {dtype: gradient_error(Config(dtype=dtype), device) for dtype in ("float64", "float32")}
    rows += [(f"gradient vs NumPy, {dtype} (max rel)", f"{e:.2e}") for dtype, e in errors.items()]
    losses = {where: train_loss_after(200, where) for where in ("numpy", device)}
    rows += [(f"classroom train loss after 200 steps, {where}", f"{loss:.4f}") for where, loss in losses.items()]

    backend.use(device)
    paper = Config()
    data = make_dataset(paper.op, paper.p, paper.train_frac, paper.seed)
    rng = stream(0, "gpu-check")
    sample = defect_sample(
        fresh_state(paper).theta, sample_batch(data, 512, rng), sample_batch(data, 512, rng), Derivatives(paper)
    )
    rows.append(("commutator sample at init: D", f"{sample['defect']:.3f}"))
    with parallel.cores(2):
        rows.append(("train step ms, NumPy on the CPU (2 cores)", f"{step_ms('numpy', paper, lambda: None):.1f}"))
    rows.append((f"train step ms, {device}", f"{step_ms(device, paper, sync):.1f}"))
    torch_ms = torch_step_ms(paper) if device == "cupy" else "not timed on the stand-in"
    rows.append(
        ("train step ms, PyTorch reference on the GPU", torch_ms if isinstance(torch_ms, str) else f"{torch_ms:.1f}")
    )
    backend.use("numpy")

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    passed = (
        all(reflected[name] is True for name in NEEDED)
        and errors["float64"] < 1e-10
        and errors["float32"] < 1e-3
        and abs(losses[device] - losses["numpy"]) < 0.05 * losses["numpy"]
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main("standin" if "--standin" in sys.argv[1:] else "cupy"))
