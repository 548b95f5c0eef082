"""Models built from a small spec, as ordinary torch modules and as stacks of many models.

A model is an encoder (a chain of named layers) and a linear classifier ``head``. Every layer's
output can be read by name; ``"embedding"`` is the encoder's output and ``"logits"`` the head's.

The papers' sweeps train hundreds of tiny models of one shape. :class:`StackedModels` holds M
models' parameters stacked along a first axis and runs them together with batched matmuls and
grouped convolutions; ``StackedModels.module(i)`` gives model i back as an ordinary module.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

MODEL_KINDS: Registry[str] = Registry("model kind")
for _kind, _about in {
    "linear": "flatten + linear classifier (the MFH/NTDH Gaussian studies)",
    "mlp": "flatten + fully connected ReLU layers (widths = hidden)",
    "cnn1d": "1-D convolutions for (channels, time) inputs (channels = hidden)",
    "cnn2d": "2-D convolutions for (channels, height, width) images (channels = hidden)",
}.items():
    MODEL_KINDS.register(_kind, about=_about)(_kind)


@dataclass(frozen=True)
class ModelSpec:
    """What to build: ``kind`` ∈ linear | mlp | cnn1d | cnn2d, the input shape of one sample,
    the number of classes and the hidden widths (MLP) or channels (CNN)."""

    kind: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: tuple[int, ...] = field(default=())
    kernel_size: int = 3

    def __post_init__(self):
        MODEL_KINDS.get(self.kind)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        expected_rank = {"linear": None, "mlp": None, "cnn1d": 2, "cnn2d": 3}[self.kind]
        if expected_rank and len(self.input_shape) != expected_rank:
            raise ValueError(
                f"a {self.kind} model needs input_shape of {expected_rank} dims "
                f"({'channels, time' if expected_rank == 2 else 'channels, height, width'}), got {self.input_shape}"
            )
        if self.kind == "linear" and self.hidden:
            raise ValueError("a linear model has no hidden layers; use kind='mlp' for hidden widths")
        if self.kind.startswith("cnn") and not self.hidden:
            raise ValueError(f"a {self.kind} model needs its conv channels in hidden, e.g. hidden=(16, 32)")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")

    def layers(self) -> list[tuple[str, str, dict]]:
        """The encoder as (name, op, options) triples; the head comes after it."""
        if self.kind in ("linear", "mlp"):
            plan = [("flatten", "flatten", {})]
            width = math.prod(self.input_shape)
            for i, out in enumerate(self.hidden, start=1):
                plan += [(f"fc{i}", "linear", {"in": width, "out": out}), (f"relu{i}", "relu", {})]
                width = out
            return plan
        spatial = self.kind == "cnn2d"
        plan, channels = [], self.input_shape[0]
        for i, out in enumerate(self.hidden, start=1):
            plan += [
                (f"conv{i}", "conv2d" if spatial else "conv1d", {"in": channels, "out": out, "k": self.kernel_size}),
                (f"relu{i}", "relu", {}),
            ]
            if i < len(self.hidden):
                plan.append((f"pool{i}", "maxpool2d" if spatial else "maxpool1d", {}))
            channels = out
        plan.append(("gap", "global_avg_pool", {}))
        return plan

    @property
    def embedding_dim(self) -> int:
        if self.kind == "linear":
            return math.prod(self.input_shape)
        return self.hidden[-1]

    def layer_names(self) -> list[str]:
        return [name for name, _, _ in self.layers()] + ["embedding", "logits"]


class _GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.flatten(2).mean(-1)


def _module_for(op: str, options: dict) -> nn.Module:
    k = options.get("k", 3)
    return {
        "flatten": lambda: nn.Flatten(),
        "linear": lambda: nn.Linear(options.get("in", 1), options.get("out", 1)),
        "relu": lambda: nn.ReLU(),
        "conv1d": lambda: nn.Conv1d(options.get("in", 1), options.get("out", 1), k, padding=k // 2),
        "conv2d": lambda: nn.Conv2d(options.get("in", 1), options.get("out", 1), k, padding=k // 2),
        "maxpool1d": lambda: nn.MaxPool1d(2, ceil_mode=True),
        "maxpool2d": lambda: nn.MaxPool2d(2, ceil_mode=True),
        "global_avg_pool": lambda: _GlobalAvgPool(),
    }[op]()


class Net(nn.Module):
    """Encoder + classifier head with named layers; ``forward(x, features=...)`` returns
    ``(logits, {name: output})``."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.encoder = nn.Sequential(OrderedDict((name, _module_for(op, opt)) for name, op, opt in spec.layers()))
        self.head = nn.Linear(spec.embedding_dim, spec.n_classes)

    def forward(self, x: torch.Tensor, features: Iterable[str] = ()):
        wanted = _check_layer_names(self.spec, features)
        captured = {}
        for name, layer in self.encoder.named_children():
            x = layer(x)
            if name in wanted:
                captured[name] = x
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


def build_model(spec: ModelSpec, seed: int) -> Net:
    """One model with PyTorch's default initialisation, drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Net(spec)


class StackedModels:
    """M models of one spec trained and evaluated together.

    ``params`` maps each parameter name of :class:`Net` to a tensor with the model axis first.
    Inputs are ``(M, N, *input_shape)``; outputs ``(M, N, n_classes)``.
    """

    def __init__(self, spec: ModelSpec, params: dict[str, torch.Tensor]):
        self.spec = spec
        self.params = params
        self._plan = spec.layers()

    @classmethod
    def from_seeds(cls, spec: ModelSpec, seeds: Sequence[int]) -> "StackedModels":
        if len(seeds) == 0:
            raise ValueError("need at least one seed")
        nets = [build_model(spec, int(s)) for s in seeds]
        names = [n for n, _ in nets[0].named_parameters()]
        params = {n: torch.stack([dict(net.named_parameters())[n].detach() for net in nets]) for n in names}
        return cls(spec, params)

    @classmethod
    def from_modules(cls, nets: Sequence[Net]) -> "StackedModels":
        names = [n for n, _ in nets[0].named_parameters()]
        params = {n: torch.stack([dict(net.named_parameters())[n].detach() for net in nets]) for n in names}
        return cls(nets[0].spec, params)

    @property
    def n_models(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def module(self, i: int) -> Net:
        """Model ``i`` as an ordinary :class:`Net` (a copy of its parameters)."""
        net = Net(self.spec)
        net.load_state_dict({name: value[i].detach().clone() for name, value in self.params.items()})
        return net

    def subset(self, index: Sequence[int]) -> "StackedModels":
        index = torch.as_tensor(list(index), dtype=torch.long)
        return StackedModels(self.spec, {n: v[index] for n, v in self.params.items()})

    def detached(self) -> "StackedModels":
        return StackedModels(self.spec, {n: v.detach().clone() for n, v in self.params.items()})

    def forward(
        self, x: torch.Tensor, features: Iterable[str] = (), params: dict | None = None,
        edits: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ):
        """Run all models: ``x`` is ``(M, N, ...)``; returns ``(logits (M, N, C), {layer: (M, N, ...)})``.

        ``edits`` maps an encoder layer name (or ``"embedding"``) to a function that replaces
        that layer's output before the rest of the network sees it (e.g. permuting or
        mean-replacing channels, for saliency and modified teachers).
        """
        params = self.params if params is None else params
        wanted = _check_layer_names(self.spec, features)
        edits = dict(edits or {})
        if "logits" in _check_layer_names(self.spec, edits):
            raise ValueError("edits apply to encoder layers or 'embedding'; edit logits after forward()")
        m, n = x.shape[:2]
        if m != self.n_models:
            raise ValueError(f"inputs hold {m} model slices but there are {self.n_models} models")
        captured = {}
        for name, op, _ in self._plan:
            x = _stacked_op(op, x, params, f"encoder.{name}", m, n)
            if name in edits:
                x = edits[name](x)
            if name in wanted:
                captured[name] = x
        if "embedding" in edits:
            x = edits["embedding"](x)
        if "embedding" in wanted:
            captured["embedding"] = x
        logits = torch.baddbmm(params["head.bias"].unsqueeze(1), x, params["head.weight"].transpose(1, 2))
        if "logits" in wanted:
            captured["logits"] = logits
        return logits, captured

    __call__ = forward

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits for ``x`` of shape ``(M, N, ...)`` or ``(N, ...)`` (shared by all models)."""
        x = self.broadcast(x)
        return torch.cat([self.forward(x[:, i : i + chunk])[0] for i in range(0, x.shape[1], chunk)], dim=1)

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Give shared inputs ``(N, ...)`` a model axis: ``(M, N, ...)``."""
        if x.dim() == len(self.spec.input_shape) + 1:
            return x.unsqueeze(0).expand(self.n_models, *x.shape)
        return x


def _stacked_op(op: str, x: torch.Tensor, params: dict, prefix: str, m: int, n: int) -> torch.Tensor:
    if op == "flatten":
        return x.reshape(m, n, -1)
    if op == "linear":
        return torch.baddbmm(params[f"{prefix}.bias"].unsqueeze(1), x, params[f"{prefix}.weight"].transpose(1, 2))
    if op == "relu":
        return F.relu(x)
    if op in ("conv1d", "conv2d"):
        # Models become groups of one grouped convolution: (M, N, C, *S) -> (N, M*C, *S).
        weight, bias = params[f"{prefix}.weight"], params[f"{prefix}.bias"]
        spatial = x.shape[3:]
        merged = x.transpose(0, 1).reshape(n, m * x.shape[2], *spatial)
        conv = F.conv1d if op == "conv1d" else F.conv2d
        out = conv(merged, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), padding=weight.shape[-1] // 2, groups=m)
        return out.reshape(n, m, weight.shape[1], *out.shape[2:]).transpose(0, 1)
    if op in ("maxpool1d", "maxpool2d"):
        pool = F.max_pool1d if op == "maxpool1d" else F.max_pool2d
        out = pool(x.reshape(m * n, *x.shape[2:]), 2, ceil_mode=True)
        return out.reshape(m, n, *out.shape[1:])
    if op == "global_avg_pool":
        return x.flatten(3).mean(-1)
    raise ValueError(f"no stacked implementation for layer op {op!r}")
