"""How time per training step grows with batch, width and depth, for tinygrok and the PyTorch reference, and how
far both are from the hardware floor: the full model's matmul FLOPs per step / this machine's measured NumPy
matmul peak (tinygrok's last block skips position 1, so it does ~20% less than that work).

    python benchmarks/scaling.py      # prints tables, writes benchmarks/scaling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import run_worker

from tinygrok.engine import parallel

SWEEPS = {  # name -> (config field, values); the rest stays at the paper settings (d_ff = 2 d_model)
    "batch_size": [256, 512, 1024, 2048, 4096],
    "d_model": [64, 128, 256],
    "n_layers": [1, 2, 3],
}


def overrides(field: str, value: int) -> dict:
    return {field: value, "d_ff": 2 * value} if field == "d_model" else {field: value}


def step_flops(batch: int, d: int, d_ff: int, layers: int, vocab: int = 97, seq: int = 2) -> float:
    """Matmul FLOPs of one training step of the full model (forward x 3: backward costs two forwards)."""
    per_token = layers * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * d_ff)  # QKV, O, the two MLP matrices
    return 3 * batch * (seq * per_token + 2 * d * vocab)


def matmul_peak_gflops(threads: int, repeats: int = 20) -> float:
    """Best GFLOP/s of a float32 (1024 x 128) @ (128 x 256) product, the model's typical shape."""
    a, b = np.ones((1024, 128), np.float32), np.ones((128, 256), np.float32)
    with parallel.cores(threads):
        best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * 1024 * 128 * 256 / best / 1e9


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("scaling.json"))
    args = parser.parse_args()
    peak = matmul_peak_gflops(args.threads)
    base = {"batch_size": 512, "d_model": 128, "d_ff": 256, "n_layers": 2}
    result = {"threads": args.threads, "matmul_peak_gflops": round(peak, 1), "sweeps": {}}
    print(f"NumPy float32 matmul peak, {args.threads} threads: {peak:.1f} GFLOP/s")
    for field, values in SWEEPS.items():
        rows = []
        for value in values:
            cfg = {**base, **overrides(field, value)}
            ms = {
                lib: statistics.median(
                    run_worker(lib, args.threads, args.repeats, overrides(field, value), ["train_step"])["train_step"]
                )
                for lib in ("tinygrok", "torch")
            }
            floor = step_flops(cfg["batch_size"], cfg["d_model"], cfg["d_ff"], cfg["n_layers"]) / peak / 1e6
            rows.append(
                {
                    field: value,
                    **{f"{k}_ms": round(v, 2) for k, v in ms.items()},
                    "floor_ms": round(floor, 2),
                    **{f"{k}_of_floor": round(floor / v, 3) for k, v in ms.items()},
                }
            )
        exponents = {
            lib: round(float(np.polyfit(np.log(values), np.log([r[f"{lib}_ms"] for r in rows]), 1)[0]), 2)
            for lib in ("tinygrok", "torch")
        }
        result["sweeps"][field] = {"rows": rows, "growth_exponent": exponents}
        print(f"\n{field}: growth exponent tinygrok {exponents['tinygrok']}, torch {exponents['torch']}")
        print(f"{field:>10} {'tinygrok ms':>11} {'torch ms':>9} {'floor ms':>8} {'tg/floor':>8} {'torch/floor':>11}")
        for r in rows:
            print(
                f"{r[field]:>10} {r['tinygrok_ms']:>11} {r['torch_ms']:>9} {r['floor_ms']:>8} "
                f"{r['tinygrok_of_floor']:>8} {r['torch_of_floor']:>11}"
            )
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
