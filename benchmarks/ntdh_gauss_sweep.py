"""Time NTDH's Gaussian γ sweep at the official settings (the 03_ntdh_gaussian full profile).

6 overlaps (γ) × 100 runs (seeds 0..99), x_a and x_b both 25-d, linear teacher / No-KD / KD,
full-batch SGD lr 0.1, 1000 epochs, KD = CE + KL_batchmean at T = 0.7 without T². By default the
binary sweep only (the official experiment; target ≤ 2 minutes on 2 CPU cores); ``--classes 2 4``
adds the K-class extension. Prints the wall time and the per-γ summary.

    python benchmarks/ntdh_gauss_sweep.py [--runs 100] [--epochs 1000] [--classes 2]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from cmkd_lab.studies.ntdh import common, gaussian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--classes", type=int, nargs="+", default=[2], help="2 = official binary; K >= 3 = extension")
    args = parser.parse_args()
    params = gaussian.GaussianParameters.create(profile="full", n_runs=args.runs, epochs=args.epochs)
    started = time.perf_counter()
    run = gaussian.run(params, class_counts=args.classes, progress=False)
    elapsed = time.perf_counter() - started
    n_models = sum(fit["n_models"] for fit in run.log.fits)
    print(
        f"NTDH Gaussian sweep: {args.runs} runs × {len(params.overlaps)} γ, classes {args.classes}, "
        f"{args.epochs} epochs, {n_models} models in {len(run.log.fits)} batched fits: {elapsed:.1f} s"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for n_classes in args.classes:
            print(f"\nn_classes = {n_classes} (accuracies and Δ in %):")
            print(common.setting_summary(run.table[run.table["n_classes"] == n_classes], ["gamma"]).round(3))


if __name__ == "__main__":
    main()
