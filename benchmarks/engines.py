"""The readable engine against the fast one: ms per training step at the paper's preset, 1 and 2 cores.

Medians of `--repeats` steps each, the two engines alternating `--rounds` times in one process (BLAS on one thread
per process, as training keeps it); the ratio is readable / fast within each round.

    python benchmarks/engines.py [--repeats 10] [--rounds 3] [--cores 1 2]
"""

from __future__ import annotations

import argparse

from tinygrok.engine import parallel
from tinygrok.lab.benchmark import median_ms, workloads
from tinygrok.science.config import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    print("| cores | round | readable ms/step | fast ms/step | readable / fast |")
    print("|---|---|---|---|---|")
    for cores in args.cores:
        with parallel.cores(cores), parallel.recorded_arithmetic():
            steps = {name: workloads(preset("paper", engine=name))["train_step"] for name in ("readable", "fast")}
            for round_ in range(1, args.rounds + 1):
                ms = {name: median_ms(step, args.repeats) for name, step in steps.items()}
                print(
                    f"| {cores} | {round_} | {ms['readable']:.1f} | {ms['fast']:.1f} | "
                    f"{ms['readable'] / ms['fast']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
