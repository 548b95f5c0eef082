"""How long ``python -m cmkd_lab diagnose`` takes on a 10,000-sample user dataset (target: ≤ 2 min
on 2 cores at the quick settings).

A synthetic recording of ``--samples`` samples (4 classes; ``accel`` 16 features and ``gyro`` 10,
sharing part of a class latent) is added as a user dataset in a temporary folder, then diagnosed
from the command line against a benchmark run of 07_when_does_cmkd_help (``--benchmark``; by
default a quick run made here first, whose time is printed apart), once without and once with
``--measure``. Each is timed end to end as a user runs it (a fresh process: imports included),
and the ratio to the target is printed.

    python benchmarks/diagnose_user_dataset.py [--samples 10000] [--profile quick] [--benchmark DIR]

Run it on an otherwise idle machine: other work on the cores shows up as diagnosis time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SECONDS = 120.0


def recording(path: Path, n: int, seed: int = 0) -> Path:
    """Two views of one 4-class latent: accel sees its first six dimensions, gyro the last six."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    latent = rng.normal(size=(n, 8))
    latent[:, :4] += 2.0 * np.eye(4)[labels]
    accel = np.c_[latent[:, :6], rng.normal(size=(n, 10))].astype("float32")
    gyro = np.c_[latent[:, 2:], rng.normal(size=(n, 4))].astype("float32")
    np.savez(path, accel=accel, gyro=gyro, labels=labels)
    return path


def timed(command: list[str], environment: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--benchmark", help="a run folder of 07_when_does_cmkd_help (default: a quick run made here)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="diagnose_bench_"))
    environment = {**os.environ, "CMKD_LAB_USER_DATA": str(folder / "user"), "CMKD_LAB_QUIET": "1"}
    cli = [sys.executable, "-m", "cmkd_lab"]
    benchmark = args.benchmark
    if benchmark is None:
        seconds, _ = timed([*cli, "run", "07_when_does_cmkd_help", "--out", str(folder / "outputs")], environment)
        benchmark = str(folder / "outputs" / "07_when_does_cmkd_help")
        print(f"benchmark (07_when_does_cmkd_help, quick): {seconds:.1f} s, once, before any diagnosis")
    timed([*cli, "datasets", "add", "mine", str(recording(folder / "mine.npz", args.samples))], environment)

    diagnose = [*cli, "diagnose", "mine", "--pair", "accel>gyro", "--benchmark", benchmark, "--profile", args.profile]
    for extra in ([], ["--measure"]):
        seconds, printed = timed(diagnose + extra, environment)
        prediction = next(line for line in printed.splitlines() if line.startswith("prediction:"))
        what = " ".join(extra) or "(signals only)"
        print(f"diagnose {what}: {seconds:.1f} s = {seconds / TARGET_SECONDS:.2f} × target")
        print(f"  {prediction}")


if __name__ == "__main__":
    main()
