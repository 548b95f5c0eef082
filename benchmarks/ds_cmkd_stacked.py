"""Batched vs one-model-at-a-time training of DS-CMKD's stacked CNN students (05_ds_cmkd).

The quick profile's CE and DS students: 4 methods (ce, ds_ci, ds_ud, ds_both) × 3 severities ×
``--runs`` seeds of a 2-D CNN with BatchNorm on degraded 8×8 digits, Adam, mini-batches of 64.
Batched: all of them as one stacked fit, the DS weights set per model (as the study trains them).
Alone: the same engine called once per model. Prints both wall times, their ratio and how far the
two ends differ in test accuracy.

    python benchmarks/ds_cmkd_stacked.py [--epochs 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from cmkd_lab.analysis.metrics import accuracy
from cmkd_lab.engine import fit
from cmkd_lab.losses import make_loss
from cmkd_lab.studies.ds_cmkd import study
from cmkd_lab.systems import Distillation


def students(runs: int, epochs: int):
    """The data ``(M, N, ...)`` of every (method, severity, seed) model, the weights per model and the parameters."""
    p = study.DSParameters.create(n_runs=runs, epochs=epochs)
    pairs = study.degraded_pairs(p, "digits_degraded", p.severities)
    methods = ["ce", *study.DS_METHODS]
    k = len(methods)

    def stacked(part, key):
        return torch.stack([getattr(pair.task.splits, part)[key] for pair in pairs]).repeat(k, *[1] * 4)

    def labels(part):
        return torch.stack([getattr(pair.task.splits, part).labels for pair in pairs]).repeat(k, 1)

    train = {"x": stacked("train", "degraded"), "y": labels("train")}
    val = {"x": stacked("val", "degraded"), "y": labels("val")}
    test = (stacked("test", "degraded"), labels("test"))
    seeds = [pair.task.seed for pair in pairs] * k
    loss = p.ds_loss(methods, len(pairs))
    return p, train, val, test, seeds, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*ended at chance")
    p, train, val, test, seeds, loss = students(args.runs, args.epochs)
    spec = p.net().sized(tuple(train["x"].shape[2:]), 10)
    config = p.train_config(p.epochs)
    n_models = len(seeds)
    one = lambda i: {key: value[i : i + 1] for key, value in train.items()}  # noqa: E731
    fit(
        Distillation(spec, make_loss("ds")),
        {k: v[:2] for k, v in train.items()},
        seeds=seeds[:2],
        config=p.train_config(1),
        val={k: v[:2] for k, v in val.items()},
        progress=False,
    )  # warm-up: first-call costs, for both sides alike

    started = time.perf_counter()
    batched = fit(Distillation(spec, loss), train, seeds=seeds, config=config, val=val, progress=False)
    batched_time = time.perf_counter() - started
    batched_acc = accuracy(batched.predict({"x": test[0]})["student"], test[1])

    started = time.perf_counter()
    alone_acc = []
    for i in range(n_models):
        weights = {"independence_weight": loss.independence_weight[i], "uniformity_weight": loss.uniformity_weight[i]}
        result = fit(
            Distillation(spec, make_loss("ds", **weights, output_layer=p.output_layer, map_layer=p.map_layer)),
            one(i),
            seeds=[seeds[i]],
            config=config,
            val={k: v[i : i + 1] for k, v in val.items()},
            progress=False,
        )
        alone_acc.append(accuracy(result.predict({"x": test[0][i : i + 1]})["student"], test[1][i : i + 1])[0])
    alone_time = time.perf_counter() - started

    alone_acc = torch.stack(alone_acc)
    difference = (batched_acc - alone_acc).abs()
    largest = difference.max().item()
    n_test = test[1].shape[1]
    print(
        f"DS-CMKD stacked CNN students: {n_models} models (ce, ds_ci, ds_ud, ds_both × {len(p.severities)} "
        "severities × "
        f"{args.runs} runs), cnn2d {p.hidden} with BatchNorm, {len(train['y'][0])} degraded 8×8 digits each, "
        f"{args.epochs} epochs of batch {p.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"batched:              {batched_time:8.2f} s")
    print(f"one model at a time:  {alone_time:8.2f} s")
    print(f"speed ratio:          {alone_time / batched_time:8.1f}x")
    print(
        f"test accuracy, mean over models: batched {batched_acc.mean():.4f}, alone {alone_acc.mean():.4f}; "
        f"per model |difference|: mean {difference.mean():.4f}, largest {largest:.4f} ({largest * n_test:.0f} of "
        f"{n_test} "
        f"test images); {int((difference == 0).sum())} of {n_models} models identical"
    )
    print(
        "The copies agree to float precision after one epoch; over more epochs some drift apart. A likely cause: "
        "Adam divides each step by the gradient's running scale, so a gradient that is float noise (a dead ReLU "
        "channel) still takes a full-size step, and the two float orders steer it differently."
    )


if __name__ == "__main__":
    main()
