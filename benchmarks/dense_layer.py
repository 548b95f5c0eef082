"""Stacked dense layers on the CPU, two measurements:

1. ``layers``: forward + backward of one stacked linear layer under ``vmap``: ``nn.Linear``
   (x Wᵀ + b) against the kit's :class:`~cmkd_lab.models.Dense` ((W xᵀ)ᵀ + b), on the layer
   shapes the studies train, at 1 and 2 CPU threads. Prints microseconds per call and the ratio.
2. ``fits``: whole fits through the engine with :class:`~cmkd_lab.engine.Stack`'s fast path
   (stacked ``bmm`` kernels for plain linear/MLP nets) against the generic ``vmap(functional_call)``
   path (``fast_path(False)``), measured in the same run, alternating, best of ``--repeats``:
   the NTDH Gaussian case (600 copies of a 25 → 2 linear model, 200 rows, 1000 full-batch SGD
   epochs), an MLP case and a small stack (an Explore slider's fit). Also checks that both paths
   end with the same weights. Prints seconds per fit and the ratio generic / fast; then the same
   ratio for ``Stack.predict`` (eval calls: cached teacher outputs, test-set predictions).

    python benchmarks/dense_layer.py [--part layers|fits|both] [--threads 2] [--repeats 2] [--epoch-scale 1]
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings

import pandas as pd
import torch
from torch.func import functional_call, vmap

from cmkd_lab.engine import Stack, TrainConfig
from cmkd_lab.engine.stack import fast_path
from cmkd_lab.models import Dense, ModelSpec
from cmkd_lab.systems import train_classifier

# (copies, rows, inputs, outputs): MFH/NTDH Gaussian heads, an MLP layer, an image MLP's first layer
SHAPES = [
    (10, 200, 25, 2),
    (60, 200, 25, 2),
    (180, 200, 50, 2),
    (600, 200, 25, 2),
    (20, 256, 128, 10),
    (30, 32, 64, 64),
    (5, 64, 784, 256),
]
CALLS = 200

# (case, spec, copies, rows, epochs, batch size): fits through the engine, full-batch SGD lr 0.1
FITS = [
    ("NTDH Gaussian teachers", ModelSpec("linear", (25,), 2), 600, 200, 1000, None),
    ("MLP 25 → 64 → 2", ModelSpec("mlp", (25,), 2, hidden=(64,)), 60, 200, 300, None),
    ("MLP 25 → 64 → 2, batches of 32", ModelSpec("mlp", (25,), 2, hidden=(64,)), 60, 200, 50, 32),
    ("small stack (a slider's fit)", ModelSpec("linear", (25,), 2), 10, 200, 1000, None),
]


def microseconds(layer: torch.nn.Module, copies: int, rows: int, inputs: int, outputs: int) -> float:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(copies, rows, inputs, generator=generator)
    params = {
        "weight": torch.randn(copies, outputs, inputs, generator=generator, requires_grad=True),
        "bias": torch.randn(copies, outputs, generator=generator, requires_grad=True),
    }
    grad = torch.randn(copies, rows, outputs, generator=generator)
    one = lambda p, x: functional_call(layer, p, (x,))  # noqa: E731

    def call():
        vmap(one)(params, x).backward(grad)
        for tensor in params.values():
            tensor.grad = None

    for _ in range(10):
        call()
    started = time.perf_counter()
    for _ in range(CALLS):
        call()
    return (time.perf_counter() - started) / CALLS * 1e6


def layer_table() -> pd.DataFrame:
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for shape in SHAPES:
            plain = microseconds(torch.nn.Linear(shape[2], shape[3]).to("meta"), *shape)
            dense = microseconds(Dense(shape[2], shape[3]).to("meta"), *shape)
            rows.append(
                {
                    "threads": threads,
                    "copies × rows × in → out": "{} × {} × {} → {}".format(*shape),
                    "nn.Linear µs": round(plain),
                    "Dense µs": round(dense),
                    "ratio": round(plain / dense, 2),
                }
            )
    return pd.DataFrame(rows)


def fit_table(threads: int, repeats: int, epoch_scale: float) -> pd.DataFrame:
    rows = []
    for case, spec, copies, n_rows, epochs, batch_size in FITS:
        epochs = max(1, round(epochs * epoch_scale))
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(copies, n_rows, *spec.input_shape, generator=generator)
        hyperplane = torch.randn(*spec.input_shape, generator=generator)
        y = ((x * hyperplane).flatten(2).sum(-1) > 0).long()
        config = TrainConfig(epochs=epochs, lr=0.1, batch_size=batch_size, threads=threads)

        one_fit = functools.partial(train_classifier, spec, x, y, seeds=range(copies), config=config, progress=False)
        with fast_path(True):
            one_fit()  # warm-up: first-call costs, for both paths alike
        best, final = {True: float("inf"), False: float("inf")}, {}
        for repeat in range(repeats):
            for fast in (True, False) if repeat % 2 == 0 else (False, True):  # neither always runs first
                with fast_path(fast):
                    started = time.perf_counter()
                    result = one_fit()
                    best[fast] = min(best[fast], time.perf_counter() - started)
                final[fast] = result.modules["student"].params
        largest = max((final[True][k] - final[False][k]).abs().max().item() for k in final[True])
        rows.append(
            {
                "case": case,
                "copies × rows": f"{copies} × {n_rows}",
                "epochs": epochs,
                "batch": batch_size or "full",
                "fast path s": round(best[True], 2),
                "vmap path s": round(best[False], 2),
                "ratio vmap / fast": round(best[False] / best[True], 2),
                "largest weight difference": f"{largest:.1e}",
            }
        )
    return pd.DataFrame(rows)


# (case, spec, copies, rows): eval calls of a stack (teacher outputs, test-set predictions)
CALLS_OF_STACKS = [
    ("NTDH test set, 600 linear copies", ModelSpec("linear", (25,), 2), 600, 1000),
    ("MLP 25 → 64 → 2, 60 copies", ModelSpec("mlp", (25,), 2, hidden=(64,)), 60, 1000),
    ("a slider's stack, 10 linear copies", ModelSpec("linear", (25,), 2), 10, 200),
]


def call_table(threads: int, repeats: int) -> pd.DataFrame:
    """``Stack.predict`` (eval mode, no gradients), fast path against the generic path."""
    torch.set_num_threads(threads)
    rows = []
    for case, spec, copies, n_rows in CALLS_OF_STACKS:
        stack = Stack.from_seeds(spec, range(copies))
        x = torch.randn(copies, n_rows, *spec.input_shape, generator=torch.Generator().manual_seed(0))
        calls, best = (20 if copies * n_rows > 10_000 else CALLS), {}
        for repeat in range(max(repeats, 3)):
            for fast in (True, False) if repeat % 2 == 0 else (False, True):
                with fast_path(fast):
                    for _ in range(5):
                        stack.predict(x)
                    started = time.perf_counter()
                    for _ in range(calls):
                        stack.predict(x)
                    elapsed = (time.perf_counter() - started) / calls * 1e6
                best[fast] = min(best.get(fast, float("inf")), elapsed)
        rows.append(
            {
                "case": case,
                "copies × rows": f"{copies} × {n_rows}",
                "fast path µs": round(best[True]),
                "vmap path µs": round(best[False]),
                "ratio vmap / fast": round(best[False] / best[True], 2),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("layers", "fits", "both"), default="both")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the fits")
    parser.add_argument("--repeats", type=int, default=2, help="timings per path and fit (the best is kept)")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="scale every fit's epochs (e.g. 0.1)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the small fits' at-chance warnings are not what is measured
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        if args.part in ("layers", "both"):
            print("One stacked linear layer under vmap, forward + backward:")
            print(layer_table().to_string(index=False))
        if args.part in ("fits", "both"):
            print(f"\nWhole fits, Stack fast path against the generic vmap path ({args.threads} threads):")
            print(fit_table(args.threads, args.repeats, args.epoch_scale).to_string(index=False))
            print(f"\nStack.predict (eval, no gradients), fast path against the vmap path ({args.threads} threads):")
            print(call_table(args.threads, args.repeats).to_string(index=False))


if __name__ == "__main__":
    main()
