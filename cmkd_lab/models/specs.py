"""Models built from a small spec.

A model is an encoder (a chain of named layers) and a linear classifier ``head``. Every layer's
output can be read by name; ``"embedding"`` is the encoder's output and ``"logits"`` the head's.
:class:`ModelSpec` says what to build (the layer plan), :func:`build_model` builds one seeded
copy (the layers themselves are in :mod:`.layers`). Many copies run together as a
:class:`~cmkd_lab.engine.Stack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..engine.registry import Registry
from .layers import Net

MODEL_KINDS: Registry[str] = Registry("model kind")
for _kind, _about in {
    "linear": "flatten + linear classifier (the MFH/NTDH Gaussian studies)",
    "mlp": "flatten + fully connected ReLU layers (widths = hidden)",
    "cnn1d": "1-D convolutions for (channels, time) inputs (channels = hidden)",
    "cnn2d": "2-D convolutions for (channels, height, width) images (channels = hidden)",
}.items():
    MODEL_KINDS.register(_kind, about=_about)(_kind)
DOWNSAMPLING = ("pool", "stride")


@dataclass(frozen=True)
class ModelSpec:
    """What to build: ``kind`` ∈ linear | mlp | cnn1d | cnn2d, the input shape of one sample,
    the number of classes and the hidden widths (MLP) or channels (CNN).

    A spec without ``input_shape`` and ``n_classes`` is a template (what a study's parameters
    say); :meth:`sized` fills them in from the data, e.g. ``ModelSpec("mlp", hidden=(64,))``.

    Options: ``batch_norm`` after each hidden linear/conv layer; ``dropout`` after each hidden
    activation; for CNNs, an odd ``kernel_size`` (convolutions keep the length), ``residual``
    stages (two convolutions and a skip connection) and ``downsample`` between stages by
    max-pooling (``"pool"``) or a stride-2 convolution."""

    kind: str
    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None
    hidden: tuple[int, ...] = field(default=())
    kernel_size: int = 3
    batch_norm: bool = False
    dropout: float = 0.0
    residual: bool = False
    downsample: str = "pool"

    def __post_init__(self):
        MODEL_KINDS.get(self.kind)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        expected_rank = {"linear": None, "mlp": None, "cnn1d": 2, "cnn2d": 3}[self.kind]
        if expected_rank and self.input_shape is not None and len(self.input_shape) != expected_rank:
            raise ValueError(
                f"a {self.kind} model needs input_shape of {expected_rank} dims "
                f"({'channels, time' if expected_rank == 2 else 'channels, height, width'}), got {self.input_shape}"
            )
        if self.kind == "linear" and (self.hidden or self.batch_norm or self.dropout):
            raise ValueError("a linear model has no hidden layers; use kind='mlp' for hidden widths, norms or dropout")
        if self.kind.startswith("cnn") and not self.hidden:
            raise ValueError(f"a {self.kind} model needs its conv channels in hidden, e.g. hidden=(16, 32)")
        if not self.kind.startswith("cnn") and (self.residual or self.downsample != "pool"):
            raise ValueError("residual stages and downsampling apply to cnn1d/cnn2d models only")
        if self.kind.startswith("cnn") and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(
                f"kernel_size must be odd (padding k // 2 keeps the length only then, and a residual "
                f"stage adds its input to its output), got {self.kernel_size}"
            )
        if self.downsample not in DOWNSAMPLING:
            raise ValueError(f"unknown downsample {self.downsample!r}; valid: {', '.join(DOWNSAMPLING)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")

    def sized(self, input_shape: tuple[int, ...], n_classes: int) -> ModelSpec:
        """This spec for inputs of ``input_shape`` (one sample) and ``n_classes`` classes."""
        return replace(self, input_shape=tuple(input_shape), n_classes=int(n_classes))

    def layers(self) -> list[tuple[str, str, dict]]:
        """The encoder as (name, op, options) triples; the head comes after it."""
        if self.input_shape is None or self.n_classes is None:
            raise ValueError(f"{self} is a template: give input_shape and n_classes (ModelSpec.sized) to build it")
        if self.kind in ("linear", "mlp"):
            plan = [("flatten", "flatten", {})]
            width = math.prod(self.input_shape)
            for i, out in enumerate(self.hidden, start=1):
                plan.append((f"fc{i}", "linear", {"in": width, "out": out, "bias": not self.batch_norm}))
                plan += self._after_hidden(i, out, dims=1)
                width = out
            return plan
        dims = 2 if self.kind == "cnn2d" else 1
        plan, channels = [], self.input_shape[0]
        for i, out in enumerate(self.hidden, start=1):
            stride = 2 if (i > 1 and self.downsample == "stride") else 1
            conv = {
                "in": channels,
                "out": out,
                "k": self.kernel_size,
                "stride": stride,
                "dims": dims,
                "bias": not self.batch_norm,
            }  # BatchNorm's shift replaces the bias
            if self.residual:
                plan.append((f"block{i}", "residual", conv))
                plan += self._after_hidden(i, out, dims, norm=False)
            else:
                plan.append((f"conv{i}", "conv", conv))
                plan += self._after_hidden(i, out, dims)
            if i < len(self.hidden) and self.downsample == "pool":
                plan.append((f"pool{i}", "maxpool", {"dims": dims}))
            channels = out
        plan.append(("gap", "global_avg_pool", {}))
        return plan

    def _after_hidden(self, i: int, width: int, dims: int, norm: bool = True) -> list[tuple[str, str, dict]]:
        after = [(f"bn{i}", "batchnorm", {"width": width, "dims": dims})] if (self.batch_norm and norm) else []
        after.append((f"relu{i}", "relu", {}))
        if self.dropout:
            after.append((f"drop{i}", "dropout", {"p": self.dropout}))
        return after

    @property
    def embedding_dim(self) -> int:
        if self.kind == "linear":
            return math.prod(self.input_shape)
        return self.hidden[-1]

    def layer_names(self) -> list[str]:
        return [name for name, _, _ in self.layers()] + ["embedding", "logits"]


def seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make()`` with torch's generator seeded ``seed``, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed also queues a seed for every accelerator
        # backend, with a stack trace each (5 ms a call, most of the time of building 1000 models)
        torch.default_generator.manual_seed(int(seed))
        return make()


def build_model(spec: ModelSpec, seed: int) -> Net:
    """One model with PyTorch's default initialisation, drawn from ``seed`` (global RNG untouched)."""
    return seeded(lambda: Net(spec), seed)
