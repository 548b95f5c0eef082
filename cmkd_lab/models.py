"""Models built from a small spec, and stacks of many copies of any module.

A model is an encoder (a chain of named layers) and a linear classifier ``head``. Every layer's
output can be read by name; ``"embedding"`` is the encoder's output and ``"logits"`` the head's.
Each layer type exists once, as an ordinary ``nn.Module``.

The papers' sweeps train hundreds of small models of one shape. :class:`Stack` holds M copies
of *any* module (a :class:`Net`, a projector, a discriminator…) with their parameters and
buffers stacked along a first axis (``torch.func.stack_module_state``) and runs them as one
computation (``vmap`` over ``functional_call``): linear layers become batched matmuls,
convolutions grouped convolutions, and BatchNorm keeps running statistics per copy.
``Stack.module(i)`` gives copy i back as an ordinary module.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .registry import Registry

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

    Options: ``batch_norm`` after each hidden linear/conv layer; ``dropout`` after each hidden
    activation; for CNNs, ``residual`` stages (two convolutions and a skip connection) and
    ``downsample`` between stages by max-pooling (``"pool"``) or a stride-2 convolution."""

    kind: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: tuple[int, ...] = field(default=())
    kernel_size: int = 3
    batch_norm: bool = False
    dropout: float = 0.0
    residual: bool = False
    downsample: str = "pool"

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
        if self.kind == "linear" and (self.hidden or self.batch_norm or self.dropout):
            raise ValueError("a linear model has no hidden layers; use kind='mlp' for hidden widths, norms or dropout")
        if self.kind.startswith("cnn") and not self.hidden:
            raise ValueError(f"a {self.kind} model needs its conv channels in hidden, e.g. hidden=(16, 32)")
        if not self.kind.startswith("cnn") and (self.residual or self.downsample != "pool"):
            raise ValueError("residual stages and downsampling apply to cnn1d/cnn2d models only")
        if self.downsample not in DOWNSAMPLING:
            raise ValueError(f"unknown downsample {self.downsample!r}; valid: {', '.join(DOWNSAMPLING)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")

    def layers(self) -> list[tuple[str, str, dict]]:
        """The encoder as (name, op, options) triples; the head comes after it."""
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
            conv = {"in": channels, "out": out, "k": self.kernel_size, "stride": stride, "dims": dims,
                    "bias": not self.batch_norm}  # BatchNorm's shift replaces the bias
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
        self.body = nn.Sequential(_conv(dims, channels_in, channels_out, k, stride, bias), norm(), nn.ReLU(),
                                  _conv(dims, channels_out, channels_out, k, bias=bias), norm())
        reshape = channels_in != channels_out or stride != 1
        self.skip = nn.Sequential(_conv(dims, channels_in, channels_out, 1, stride, bias), norm()) if reshape else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


def _module_for(op: str, options: dict) -> nn.Module:
    """The one implementation of each layer op."""
    builders = {
        "flatten": lambda: nn.Flatten(),
        "linear": lambda: Dense(options["in"], options["out"], bias=options["bias"]),
        "relu": lambda: nn.ReLU(),
        "conv": lambda: _conv(options["dims"], options["in"], options["out"], options["k"], options["stride"], options["bias"]),
        "residual": lambda: ResidualBlock(options["in"], options["out"], options["k"], options["stride"], options["dims"],
                                          not options["bias"]),
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


@dataclass(frozen=True)
class Edit:
    """A per-copy edit for :meth:`Stack.__call__`: ``function(output, *args)`` replaces a layer's
    output; ``args`` are tensors with the copy axis first, so each copy sees its own slice."""

    function: Callable[..., torch.Tensor]
    args: tuple[torch.Tensor, ...] = ()


class Stack:
    """M copies of one module, run together.

    ``params`` and ``buffers`` map each of the module's parameter and buffer names to a tensor
    with the copy axis first. Calling the stack runs every copy on its own slice of the inputs
    (``(M, N, ...)`` each) in eval mode; the training engine runs the same copies in train mode.
    """

    def __init__(self, base: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None = None):
        self.base = base
        self.params = params
        self.buffers = dict(buffers or {})

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module]) -> "Stack":
        if len(modules) == 0:
            raise ValueError("need at least one module to stack")
        params, buffers = stack_module_state(list(modules))
        base = copy.deepcopy(modules[0]).to("meta")
        return cls(base, {k: v.detach() for k, v in params.items()}, {k: v.detach() for k, v in buffers.items()})

    @classmethod
    def from_seeds(cls, make: ModelSpec | Callable[[], nn.Module], seeds: Sequence[int]) -> "Stack":
        """One copy per seed: ``make`` is a :class:`ModelSpec` or a module factory."""
        if len(seeds) == 0:
            raise ValueError("need at least one seed")
        factory = (lambda: Net(make)) if isinstance(make, ModelSpec) else make
        return cls.from_modules([seeded(factory, s) for s in seeds])

    @property
    def n_models(self) -> int:
        return self._first_tensor().shape[0]

    def _first_tensor(self) -> torch.Tensor:
        """A tensor with the copy axis: a parameter, or a buffer of a parameter-free module (a queue)."""
        return next(iter({**self.params, **self.buffers}.values()))

    @property
    def spec(self) -> ModelSpec | None:
        return getattr(self.base, "spec", None)

    @property
    def device(self) -> torch.device:
        return self._first_tensor().device

    def state(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def module(self, i: int) -> nn.Module:
        """Copy ``i`` as an ordinary module (its own tensors)."""
        module = copy.deepcopy(self.base).to_empty(device="cpu")
        module.load_state_dict({name: value[i].detach().cpu().clone() for name, value in self.state().items()})
        return module.eval()

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> "Stack":
        """The same module with ``function`` applied to every stacked tensor."""
        return Stack(self.base, {k: function(v) for k, v in self.params.items()},
                     {k: function(v) for k, v in self.buffers.items()})

    def subset(self, index: Sequence[int] | torch.Tensor) -> "Stack":
        index = torch.as_tensor(index, dtype=torch.long)
        return self.map(lambda v: v[index.to(v.device)])

    def repeat(self, copies: int) -> "Stack":
        """All M copies ``copies`` times over, block after block: ``(copies·M, ...)``."""
        return self.map(lambda v: v.repeat(copies, *[1] * (v.dim() - 1)))

    def detached(self) -> "Stack":
        return self.map(lambda v: v.detach().clone())

    def to(self, device: torch.device | str) -> "Stack":
        return self.map(lambda v: v.to(device))

    @staticmethod
    def concat(stacks: Sequence["Stack"]) -> "Stack":
        """Stacks of one module type joined along the copy axis."""
        first = stacks[0]
        join = lambda key, part: torch.cat([getattr(s, part)[key] for s in stacks])  # noqa: E731
        return Stack(first.base, {k: join(k, "params") for k in first.params}, {k: join(k, "buffers") for k in first.buffers})

    def __call__(self, *inputs: torch.Tensor, edits: Mapping[str, Edit] | None = None, **options: Any):
        """Run every copy in eval mode: ``inputs`` ``(M, N, ...)``; outputs gain the copy axis.
        ``options`` (e.g. ``features=[...]``) go to every copy's forward unchanged."""
        m = inputs[0].shape[0] if inputs else self.n_models
        if m != self.n_models:
            raise ValueError(f"inputs hold {m} model slices but there are {self.n_models} models")
        edits = dict(edits or {})
        names = list(edits)
        plain = [n for n in names if not isinstance(edits[n], Edit)]
        if plain:
            raise TypeError(f"edits of a stack must be Edit(function, per-copy args), got plain functions for {plain}")

        def one(params, buffers, inputs, edit_args):
            bound = {name: _bind_edit(edits[name].function, args) for name, args in zip(names, edit_args)}
            extra = {"edits": bound} if names else {}
            return functional_call(self.base, (params, buffers), inputs, {**options, **extra})

        self.base.eval()
        return vmap(one, randomness="different")(self.params, self.buffers, inputs, [edits[n].args for n in names])

    forward = __call__

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits of a stacked :class:`Net` for ``x`` ``(M, N, ...)`` or ``(N, ...)`` (shared)."""
        x = self.broadcast(x)
        return torch.cat([self(x[:, i : i + chunk])[0] for i in range(0, x.shape[1], chunk)], dim=1)

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Give a :class:`Net` stack's shared inputs ``(N, ...)`` a model axis: ``(M, N, ...)``."""
        if self.spec is not None and x.dim() == len(self.spec.input_shape) + 1:
            return x.unsqueeze(0).expand(self.n_models, *x.shape)
        return x


def _bind_edit(function: Callable[..., torch.Tensor], args: Sequence[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda output: function(output, *args)


def broadcast_models(x: torch.Tensor, n_models: int, sample_rank: int) -> torch.Tensor:
    """``x`` with a model axis: unchanged if it has one (``sample_rank + 2`` dims), else expanded."""
    if x.dim() == sample_rank + 1:
        return x.unsqueeze(0).expand(n_models, *x.shape)
    if x.dim() != sample_rank + 2:
        raise ValueError(f"expected (N, ...) or (models, N, ...) with {sample_rank} sample dims, got shape {tuple(x.shape)}")
    return x
