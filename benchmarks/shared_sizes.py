"""Seeds of grouped data in one fit (``fit(rows=...)``) against one fit per seed.

Grouped data put whole subjects in one part, so a seed's train, validation and test parts differ
in size from another seed's. The diagnosis's outcome (teacher, No-KD, KD, FitNet and DS on every
ordered pair, full-profile settings: 2000 samples, 150 full-batch Adam epochs of MLPs) then either
trains each seed's tasks in fits of their own, or every seed's tasks in one fit per method, padded
to the longest split, each copy weighing its own rows. The data: ``watch``'s accelerometer and
gyroscope windows (20 subjects) flattened to vectors, so the nets are MLPs trained full batch, where
rows can be weighed (its windows as maps train 1-D CNNs on mini-batches, each size apart). Both
ways are run here, alternating, best of ``--repeats``; the script prints the wall time of each, the
ratio, the number of fits, and the largest difference between the two ways' test accuracies (the
same models, so float rounding only).

    python benchmarks/shared_sizes.py [--dataset watch] [--seeds 5] [--epochs 150] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from cmkd_lab.datasets import from_arrays, load
from cmkd_lab.studies.diagnosis import benchmark


def timed_outcome(tasks, p) -> tuple[float, pd.DataFrame, int]:
    started = time.perf_counter()
    run = benchmark.measure(tasks, p, progress=False)
    fits = sum(1 for record in run.log.fits if "in_fit_of" not in record)
    return time.perf_counter() - started, run.table, fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="watch", help="a grouped dataset, its views flattened (default: watch)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*ended at chance")
    p = benchmark.DiagnosisParameters.create(
        profile="full", datasets=(args.dataset,), n_runs=args.seeds, epochs=args.epochs
    )
    data = benchmark.subsample(load(args.dataset), p.max_samples)
    flat = from_arrays({m: data[m].flatten(1) for m in data.modality_names}, data.labels, data.groups)
    tasks = benchmark.view_tasks(args.dataset, flat, benchmark.ordered_pairs(flat), p.seeds)
    sizes = sorted({len(t.splits.train) for t in tasks})
    print(f"{args.dataset}: {len(tasks)} tasks, {args.seeds} seeds, training sizes {sizes}")
    by_seed = [[t for t in tasks if t.seed == seed] for seed in p.seeds]
    shared, separate = [], []
    for _ in range(args.repeats):
        shared.append(timed_outcome(tasks, p))
        parts = [timed_outcome(of_seed, p) for of_seed in by_seed]
        separate.append((sum(s for s, _, _ in parts), pd.concat([t for _, t, _ in parts]), sum(f for _, _, f in parts)))
    (shared_s, shared_table, shared_fits), (separate_s, separate_table, separate_fits) = (
        min(shared, key=lambda r: r[0]),
        min(separate, key=lambda r: r[0]),
    )
    key = ["pair", "method", "seed"]
    a = shared_table.set_index(key)["value"].sort_index()
    b = separate_table.set_index(key)["value"].sort_index()
    print(f"one fit per seed:        {separate_s:6.1f} s ({separate_fits} fits)")
    print(f"seeds in one fit (rows): {shared_s:6.1f} s ({shared_fits} fits)")
    print(f"ratio separate / shared: {separate_s / shared_s:.2f}x")
    print(f"largest test-accuracy difference: {100 * (a - b).abs().max():.4f} points over {len(a)} rows")


if __name__ == "__main__":
    main()
