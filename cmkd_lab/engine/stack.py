"""Stacks: M copies of any module, run as one computation.

The papers' sweeps train hundreds of small models of one shape. :class:`Stack` holds M copies
of *any* module (a :class:`~cmkd_lab.models.Net`, a projector, a discriminator…) with their
parameters and buffers stacked along a first axis (``torch.func.stack_module_state``) and runs
them as one computation (``vmap`` over ``functional_call``): linear layers become batched
matmuls, convolutions grouped convolutions, and BatchNorm keeps running statistics per copy.
``Stack.module(i)`` gives copy i back as an ordinary module; :class:`Edit` replaces a layer's
output per copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..models import ModelSpec, Net, seeded


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

    def __init__(
        self, base: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None = None
    ):
        self.base = base
        self.params = params
        self.buffers = dict(buffers or {})

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module]) -> Stack:
        if len(modules) == 0:
            raise ValueError("need at least one module to stack")
        params, buffers = stack_module_state(list(modules))
        base = copy.deepcopy(modules[0]).to("meta")
        return cls(base, {k: v.detach() for k, v in params.items()}, {k: v.detach() for k, v in buffers.items()})

    @classmethod
    def from_seeds(cls, make: ModelSpec | Callable[[], nn.Module], seeds: Sequence[int]) -> Stack:
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

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Stack:
        """The same module with ``function`` applied to every stacked tensor."""
        return Stack(
            self.base,
            {k: function(v) for k, v in self.params.items()},
            {k: function(v) for k, v in self.buffers.items()},
        )

    def subset(self, index: Sequence[int] | torch.Tensor) -> Stack:
        index = torch.as_tensor(index, dtype=torch.long)
        return self.map(lambda v: v[index.to(v.device)])

    def repeat(self, copies: int) -> Stack:
        """All M copies ``copies`` times over, block after block: ``(copies·M, ...)``."""
        return self.map(lambda v: v.repeat(copies, *[1] * (v.dim() - 1)))

    def detached(self) -> Stack:
        return self.map(lambda v: v.detach().clone())

    def to(self, device: torch.device | str) -> Stack:
        return self.map(lambda v: v.to(device))

    @staticmethod
    def concat(stacks: Sequence[Stack]) -> Stack:
        """Stacks of one module type joined along the copy axis."""
        first = stacks[0]
        join = lambda key, part: torch.cat([getattr(s, part)[key] for s in stacks])  # noqa: E731
        return Stack(
            first.base, {k: join(k, "params") for k in first.params}, {k: join(k, "buffers") for k in first.buffers}
        )

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


def _bind_edit(
    function: Callable[..., torch.Tensor], args: Sequence[torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda output: function(output, *args)


def broadcast_models(x: torch.Tensor, n_models: int, sample_rank: int) -> torch.Tensor:
    """``x`` with a model axis: unchanged if it has one (``sample_rank + 2`` dims), else expanded."""
    if x.dim() == sample_rank + 1:
        return x.unsqueeze(0).expand(n_models, *x.shape)
    if x.dim() != sample_rank + 2:
        raise ValueError(
            f"expected (N, ...) or (models, N, ...) with {sample_rank} sample dims, got shape {tuple(x.shape)}"
        )
    return x
