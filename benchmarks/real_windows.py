"""Time MFH's real-data protocol (02_mfh_real, quick profile) on a large set of sensor windows:
10,000 paired windows, accel and gyro of shape (3, 128), 6 classes, 20 subjects (group splits),
so the study builds 1-D CNNs. The set is registered as a user dataset in a temporary folder, as
``python -m cmkd_lab datasets add`` would. Target: ≤ 2 minutes on 2 CPU cores.

It times the default feeding (mini-batches above 2048 training samples) over the whole quick
profile, then full-batch training of the same seeds for ``--full-batch-epochs`` epochs, and
prints the full-batch time per epoch and the quick profile's full-batch time that it implies
(extrapolated from those epochs; running it whole takes tens of minutes).

    .venv/bin/python benchmarks/real_windows.py [--runs 5] [--full-batch-epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CMKD_LAB_QUIET", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-batch-epochs", type=int, default=3, help="0 skips the full-batch comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CMKD_LAB_USER_DATA"] = folder
        from cmkd_lab.datasets import load, synthetic, user
        from cmkd_lab.studies.mfh import real

        arrays = Path(folder) / "windows.npz"
        np.savez(arrays, **synthetic.sensor_windows())
        user.add("windows", arrays, labels="labels", groups="subjects")
        print(load("windows").summary())
        quick = real.RealParameters.create(datasets=("windows",), n_runs=args.runs)
        started = time.perf_counter()
        run = real.run(quick, progress=False)
        elapsed = time.perf_counter() - started
        configs = [
            (fit["method"], fit["train_config"]["batch_size"], fit["train_config"]["epochs"]) for fit in run.log.fits
        ]
        print(
            f"\nquick profile, default feeding: {elapsed:.1f} s for {args.runs} seeds "
            f"({len(run.log.fits)} fits; method, batch size, epochs: {sorted(set(configs))})"
        )
        with pd.option_context("display.width", 200):
            print(real.summary_table(run.table))
        if args.full_batch_epochs:
            full_batch = real.RealParameters.create(
                datasets=("windows",), n_runs=args.runs, epochs=args.full_batch_epochs, batch_size=100_000
            )
            started = time.perf_counter()
            real.run(full_batch, progress=False)
            per_epoch = (time.perf_counter() - started) / args.full_batch_epochs
            implied = per_epoch * quick.epochs
            print(
                f"\nfull batch: {per_epoch:.1f} s per epoch (over {args.full_batch_epochs} epochs); the quick "
                "profile's "
                f"{quick.epochs} epochs would take about {implied:.0f} s, {implied / elapsed:.0f}x the default feeding"
            )


if __name__ == "__main__":
    main()
