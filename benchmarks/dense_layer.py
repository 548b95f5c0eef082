"""Forward + backward of one stacked linear layer under ``vmap``: ``nn.Linear`` (x Wᵀ + b)
against the kit's :class:`~cmkd_lab.models.Dense` ((W xᵀ)ᵀ + b), on the layer shapes the
studies train, at 1 and 2 CPU threads. Prints microseconds per call and the ratio.

    python benchmarks/dense_layer.py
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch.func import functional_call, vmap

from cmkd_lab.models import Dense

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


def main() -> None:
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
    with pd.option_context("display.width", 160):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
