"""Batched vs one-model-at-a-time training on the MFH Fig. 2 sweep.

6 overlaps (γ) × 10 runs × teacher / No-KD / KD, linear models, full-batch SGD lr 0.1,
1000 epochs, KD = CE + KL (T = 1, reduction "mean", the official settings in papers.md).
Batched: every (γ, seed) task of a method trained as one stacked fit. Single: the same engine
called once per task. Prints both wall times, their ratio and the largest accuracy difference.

    python benchmarks/batched_vs_single.py [--epochs 1000] [--runs 10]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from cmkd_lab.engine import TrainConfig
from cmkd_lab.losses import make_loss
from cmkd_lab.studies.mfh import gaussian
from cmkd_lab.studies.runner import Task, run_teacher_student


def tasks(runs: int) -> list[Task]:
    return gaussian.fig2_tasks(gaussian.GaussianParameters.create(profile="full", n_runs=runs))


def study(task_list: list[Task], epochs: int):
    return run_teacher_student(
        task_list,
        study="mfh_fig2",
        teacher_modality="a",
        student_modality="b",
        teacher_config=TrainConfig(epochs=epochs, lr=0.1),
        losses={"kd": make_loss("kd", temperature=1.0, reduction="mean")},
        progress=False,
    ).table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    task_list = tasks(args.runs)
    study(task_list[:1], 5)  # warm-up: imports and first-call costs, for both sides alike

    started = time.perf_counter()
    batched = study(task_list, args.epochs)
    batched_time = time.perf_counter() - started

    started = time.perf_counter()
    single = pd.concat([study([task], args.epochs) for task in task_list], ignore_index=True)
    single_time = time.perf_counter() - started

    keys = ["method", "gamma", "seed"]
    merged = batched.merge(single, on=keys, suffixes=("_batched", "_single"))
    largest = (merged["value_batched"] - merged["value_single"]).abs().max()
    n_models = len(merged)
    print(
        f"MFH Fig. 2 sweep: {n_models} models ({len(merged) // (3 * args.runs)} γ × {args.runs} runs × 3 methods), "
        f"{args.epochs} full-batch epochs, {torch.get_num_threads()} threads"
    )
    print(f"batched:              {batched_time:8.2f} s")
    print(f"one model at a time:  {single_time:8.2f} s")
    print(f"speed ratio:          {single_time / batched_time:8.1f}x")
    print(
        f"largest test-accuracy difference, batched vs single: {largest:.4f} "
        f"({largest * 1000:.0f} of 1000 test samples)"
    )


if __name__ == "__main__":
    main()
