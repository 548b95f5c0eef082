"""Weights and gradients that change how a term trains: a warm-up :class:`Ramp` for a term's
weight, and :func:`gradient_reversal` (the DANN layer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Ramp:
    """A term weight that a system's ``weights()`` may give instead of a number: it grows
    linearly to ``value`` (a number or one per copy) over the first ``epochs`` epochs, reaching
    it at epoch ``epochs`` (DKD's warm-up: weight × min(epoch / epochs, 1))."""

    value: float | Sequence[float]
    epochs: int

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"a warm-up ramp needs epochs >= 1, got {self.epochs}")


def gradient_reversal(x: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity forward, gradient times −``scale`` backward (the DANN layer). Written as
    ``x̄ + (−scale)(x − x̄)`` with x̄ = x detached, so it is exact in the forward pass and works
    under ``vmap`` without a custom autograd function."""
    frozen = x.detach()
    return frozen - scale * (x - frozen)
