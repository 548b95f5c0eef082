"""How the cost of ``python -m cmkd_lab sweep`` grows with grid points and workers.

The same sweep of 00_quickstart (tiny parameters: 1 seed, 2 epochs, 40 training and 100 test
samples; the grid varies ``kd_weight``) with 1, 2, 4 and 8 points on local Dask clusters of 1
and 2 workers, against the same notebook run directly (``run_notebook`` in this process, one run
after another). For each worker count W it fits

    T(N) = fixed + per_wave × ceil(N / W)

by least squares (T: the sweep's wall time once the cluster is up; a wave is W points running
side by side), and prints

- seconds per point (T / N) for each N, and the mean time of a point inside its task;
- the overhead per task, two ways: per_wave − direct (W = 1: what a Dask task adds to one
  notebook run; W > 1: that plus the points' contention for the cores), and the time outside
  the tasks per wave, (T − the tasks' own seconds / min(N, W)) / ceil(N / W): scheduling, files,
  merging and the workers' first imports, measured in the same sweep and so hardly skewed by
  other load on the machine;
- a rerun of each finished sweep (every point skipped): the bookkeeping that grows with N;
- the prediction for a larger grid: startup(W) + fixed + per_wave × ceil(N / W).

    python benchmarks/sweep_cost.py [--points 1 2 4 8] [--workers 1 2] [--direct 3] [--predict 10000]

Run it on an otherwise idle machine: other work on the cores shows up as per-point time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cmkd_lab.app.notebook import run_notebook
from cmkd_lab.app.sweep import run_grid

NOTEBOOK = "00_quickstart"
TINY = {"n_runs": 1, "epochs": 2, "n_train": 40, "n_test": 100}


def grid(points: int) -> dict[str, list]:
    return {**{name: [value] for name, value in TINY.items()}, "kd_weight": [1.0 + i / 10 for i in range(points)]}


def direct_seconds(runs: int, root: Path) -> list[float]:
    run_notebook(NOTEBOOK, "quick", TINY, root / "warm-up")  # first-call costs (imports, page cache)
    seconds = []
    for i in range(runs):
        started = time.perf_counter()
        run_notebook(NOTEBOOK, "quick", TINY, root / f"direct-{i}")
        seconds.append(time.perf_counter() - started)
    return seconds


def sweep_seconds(
    workers: int, point_counts: list[int], root: Path
) -> tuple[float, dict[int, tuple[float, float, float]]]:
    """Cluster start-up, and per point count: (sweep wall time, rerun wall time, the tasks' seconds in all)."""
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        startup = time.perf_counter() - started
        timings = {}
        for points in point_counts:
            out = root / f"w{workers}-n{points}"
            started = time.perf_counter()
            result = run_grid(NOTEBOOK, grid(points), out=out, scheduler=cluster.scheduler_address, progress=False)
            wall = time.perf_counter() - started
            if not result.ok:
                raise RuntimeError(f"the sweep failed:\n{result.failed[['point', 'error']].to_string()}")
            started = time.perf_counter()
            run_grid(NOTEBOOK, grid(points), out=out, scheduler=cluster.scheduler_address, progress=False)
            timings[points] = (wall, time.perf_counter() - started, float(result.points["seconds"].sum()))
    return startup, timings


def fit(workers: int, timings: dict[int, tuple[float, float, float]]) -> tuple[float, float]:
    """``fixed, per_wave`` of T(N) = fixed + per_wave × ceil(N / W)."""
    waves = np.array([math.ceil(n / workers) for n in timings], dtype=float)
    walls = np.array([wall for wall, *_ in timings.values()])
    per_wave, fixed = np.polyfit(waves, walls, 1)
    return float(fixed), float(per_wave)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--direct", type=int, default=3, help="direct runs to average")
    parser.add_argument("--predict", type=int, default=10_000, help="grid size to predict")
    args = parser.parse_args()
    os.environ.setdefault("CMKD_LAB_PROGRESS", "off")  # the kernels' progress lines would drown the table

    with tempfile.TemporaryDirectory(prefix="sweep_cost_") as folder:
        root = Path(folder)
        direct = direct_seconds(args.direct, root)
        direct_mean = statistics.mean(direct)
        print(f"\n{NOTEBOOK} {TINY}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        print(f"direct run_notebook: {direct_mean:.2f} s per run (runs: {', '.join(f'{s:.2f}' for s in direct)})")
        for workers in args.workers:
            startup, timings = sweep_seconds(workers, args.points, root)
            fixed, per_wave = fit(workers, timings)
            print(f"\n{workers} worker(s): cluster start-up {startup:.2f} s")
            print("  points   sweep s   s/point   task s/point   outside tasks s/wave   rerun s (all skipped)")
            for points, (wall, rerun, tasks) in timings.items():
                outside = (wall - tasks / min(points, workers)) / math.ceil(points / workers)
                print(
                    f"  {points:6d}  {wall:8.2f}  {wall / points:8.2f}  {tasks / points:12.2f}  {outside:21.2f}  "
                    f"{rerun:8.2f}"
                )
            print(
                f"  fit: T(N) = {fixed:.2f} + {per_wave:.2f} × ceil(N / {workers}) s; "
                f"overhead per task {per_wave - direct_mean:+.2f} s vs direct ({direct_mean:.2f} s)"
            )
            predicted = startup + fixed + per_wave * math.ceil(args.predict / workers)
            print(f"  {args.predict} points on {workers} worker(s): ≈ {predicted / 3600:.1f} h")


if __name__ == "__main__":
    main()
