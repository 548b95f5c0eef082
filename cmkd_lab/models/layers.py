"""The layers of a model, each type once, as an ordinary ``nn.Module``, and :class:`Net`: the
encoder + classifier a :class:`~cmkd_lab.models.ModelSpec` describes, with named layers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .specs import ModelSpec


class Dense(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) computed as (W xᵀ)ᵀ + b.

    The values are those of ``x Wᵀ + b`` up to float rounding, but on the CPU the GEMM with
    the output features as rows is faster, most for few outputs: a forward + backward under
    ``vmap`` of 180 stacked 2-class heads on (200, 50) inputs takes 1.3 ms instead of 3.6 ms, and
    an MLP's (64 → 64) layer 0.70 ms instead of 0.94 ms (2 cores; ``benchmarks/dense_layer.py``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            return super().forward(x)
        out = (self.weight @ x.transpose(-1, -2)).transpose(-1, -2)
        return out if self.bias is None else out + self.bias


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.flatten(2).mean(-1)


def _conv(dims: int, channels_in: int, channels_out: int, k: int, stride: int = 1, bias: bool = True) -> nn.Module:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    return conv(channels_in, channels_out, k, stride=stride, padding=k // 2, bias=bias)


def _batch_norm(dims: int, width: int) -> nn.Module:
    return nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width)


class ResidualBlock(nn.Module):
    """conv → [BN] → ReLU → conv → [BN], plus the input (through a 1×1 conv when the channels or
    the stride change); the ReLU after the sum is the next layer of the plan."""

    def __init__(self, channels_in: int, channels_out: int, k: int, stride: int, dims: int, batch_norm: bool):
        super().__init__()
        norm = (lambda: _batch_norm(dims, channels_out)) if batch_norm else nn.Identity
        bias = not batch_norm
        self.body = nn.Sequential(
            _conv(dims, channels_in, channels_out, k, stride, bias),
            norm(),
            nn.ReLU(),
            _conv(dims, channels_out, channels_out, k, bias=bias),
            norm(),
        )
        reshape = channels_in != channels_out or stride != 1
        self.skip = (
            nn.Sequential(_conv(dims, channels_in, channels_out, 1, stride, bias), norm()) if reshape else nn.Identity()
        )

    def forward(self, x):
        return self.body(x) + self.skip(x)


def _module_for(op: str, options: dict) -> nn.Module:
    """The one implementation of each layer op."""
    builders = {
        "flatten": lambda: nn.Flatten(),
        "linear": lambda: Dense(options["in"], options["out"], bias=options["bias"]),
        "relu": lambda: nn.ReLU(),
        "conv": lambda: _conv(
            options["dims"], options["in"], options["out"], options["k"], options["stride"], options["bias"]
        ),
        "residual": lambda: ResidualBlock(
            options["in"], options["out"], options["k"], options["stride"], options["dims"], not options["bias"]
        ),
        "batchnorm": lambda: _batch_norm(options["dims"], options["width"]),
        "dropout": lambda: nn.Dropout(options["p"]),
        "maxpool": lambda: (nn.MaxPool2d if options["dims"] == 2 else nn.MaxPool1d)(2, ceil_mode=True),
        "global_avg_pool": lambda: GlobalAvgPool(),
    }
    return builders[op]()


Edits = Mapping[str, Callable[[torch.Tensor], torch.Tensor]]


class Net(nn.Module):
    """Encoder + classifier head with named layers; ``forward(x, features=..., edits=...)``
    returns ``(logits, {name: output})``. ``edits`` maps an encoder layer (or ``"embedding"``)
    to a function that replaces its output before the rest of the network sees it."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.encoder = nn.Sequential(OrderedDict((name, _module_for(op, opt)) for name, op, opt in spec.layers()))
        self.head = Dense(spec.embedding_dim, spec.n_classes)

    def forward(self, x: torch.Tensor, features: Iterable[str] = (), edits: Edits | None = None):
        wanted = _check_layer_names(self.spec, features)
        edits = dict(edits or {})
        if "logits" in _check_layer_names(self.spec, edits):
            raise ValueError("edits apply to encoder layers or 'embedding'; edit logits after forward()")
        captured = {}
        for name, layer in self.encoder.named_children():
            x = layer(x)
            if name in edits:
                x = edits[name](x)
            if name in wanted:
                captured[name] = x
        if "embedding" in edits:
            x = edits["embedding"](x)
        if "embedding" in wanted:
            captured["embedding"] = x
        logits = self.head(x)
        if "logits" in wanted:
            captured["logits"] = logits
        return logits, captured


def _check_layer_names(spec: ModelSpec, names: Iterable[str]) -> set[str]:
    names = set(names)
    unknown = names - set(spec.layer_names())
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)} for a {spec.kind} model; layers: {spec.layer_names()}")
    return names
