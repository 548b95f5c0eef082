"""Stacks: M copies of any module, run as one computation.

The papers' sweeps train hundreds of small models of one shape. :class:`Stack` holds M copies
of *any* module (a :class:`~cmkd_lab.models.Net`, a projector, a discriminator…) with their
parameters and buffers stacked along a first axis (``torch.func.stack_module_state``) and runs
them as one computation (``vmap`` over ``functional_call``): linear layers become batched
matmuls, convolutions grouped convolutions, and BatchNorm keeps running statistics per copy.
``Stack.module(i)`` gives copy i back as an ordinary module; :class:`Edit` replaces a layer's
output per copy.

**The fast path.** A :class:`~cmkd_lab.models.Net` made only of layers with a stacked kernel
(``nn.Flatten`` first, then :class:`~cmkd_lab.models.Dense` and ``nn.ReLU``: what
``ModelSpec("linear")`` and ``ModelSpec("mlp", hidden=...)`` build without ``batch_norm`` or
``dropout``) skips ``vmap(functional_call)``, whose Python dispatch per call, layer and op
dominates small stacks: each dense layer is one ``torch.bmm`` on the stacked weights ``(M, out,
in)`` plus the bias. The kernels follow the net's own layer plan and read the stack's own
parameter tensors (there is no second model); they are the ops ``vmap`` makes of
``Dense.forward``, so outputs and gradients are the same bits, on the same tensors (for
inputs with the copy axis, as the engine's; inputs ``vmap`` does not batch: equal to float
rounding).
(``torch.baddbmm`` fuses the bias into the GEMM, but rounds differently by an ulp and measured
no faster.) Inside the engine's vmapped step, :func:`call_copy` runs the kernels on the stacked
tensors behind a copy's, as a batching rule does. Everything else (CNNs, BatchNorm, dropout,
edits, any other module) takes the generic path; ``with fast_path(False):`` forces it everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..models import ModelSpec, Net, seeded
from ..models.layers import Dense, _check_layer_names

FAST_PATH = True
"""Whether stacks of plain linear/MLP nets run the batched kernel; :func:`fast_path` sets it."""


@contextlib.contextmanager
def fast_path(enabled: bool = True) -> Iterator[None]:
    """Turn the batched linear/MLP kernel on or off inside a ``with`` block.

    Parameters
    ----------
    enabled : bool
        ``False`` sends every stack through the generic ``vmap(functional_call)`` path, in
        :meth:`Stack.__call__` and in the engine's steps alike (:func:`call_copy`).

    Examples
    --------
    >>> with fast_path(False):  # doctest: +SKIP
    ...     result = fit(system, data, seeds=seeds, config=config)
    """
    global FAST_PATH
    previous, FAST_PATH = FAST_PATH, bool(enabled)
    try:
        yield
    finally:
        FAST_PATH = previous


@dataclass(frozen=True)
class Edit:
    """A per-copy edit for :meth:`Stack.__call__`: ``function(output, *args)`` replaces a layer's
    output; ``args`` are tensors with the copy axis first, so each copy sees its own slice.

    Parameters
    ----------
    function : callable
        ``function(output, *args)`` for one copy: ``output`` ``(N, ...)`` is the layer's output,
        each of ``args`` that copy's slice; returns the replacement, shaped like ``output``.
    args : tuple of Tensor
        Per-copy arguments, ``(M, ...)`` each.
    """

    function: Callable[..., torch.Tensor]
    args: tuple[torch.Tensor, ...] = ()


class Stack:
    """M copies of one module, run together.

    Calling the stack runs every copy on its own slice of the inputs in eval mode; the training
    engine runs the same copies in train mode. Plain linear/MLP nets take the batched fast path
    (see the module's note), everything else ``vmap(functional_call)``.

    Parameters
    ----------
    base : torch.nn.Module
        The module's structure (usually on the ``meta`` device); its own tensors are not used.
    params : dict of str to Tensor
        Each of the module's parameter names → its M copies, ``(M, *shape)``.
    buffers : dict of str to Tensor, optional
        Each buffer name (BatchNorm statistics, queues) → ``(M, *shape)``.
    """

    def __init__(
        self, base: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None = None
    ):
        self.base = base
        self.params = params
        self.buffers = dict(buffers or {})

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module]) -> Stack:
        """Stack ordinary modules of one structure.

        Parameters
        ----------
        modules : sequence of torch.nn.Module
            M modules with the same parameter and buffer names and shapes.

        Returns
        -------
        Stack
            Their tensors stacked, ``(M, *shape)`` each, detached from the modules.
        """
        if len(modules) == 0:
            raise ValueError("need at least one module to stack")
        params, buffers = stack_module_state(list(modules))
        base = copy.deepcopy(modules[0]).to("meta")
        return cls(base, {k: v.detach() for k, v in params.items()}, {k: v.detach() for k, v in buffers.items()})

    @classmethod
    def from_seeds(cls, make: ModelSpec | Callable[[], nn.Module], seeds: Sequence[int]) -> Stack:
        """One copy per seed.

        Parameters
        ----------
        make : ModelSpec or callable
            A sized :class:`~cmkd_lab.models.ModelSpec` (each copy a :class:`~cmkd_lab.models.Net`)
            or a factory returning a module.
        seeds : sequence of int
            M seeds; copy i is built with torch's generator seeded ``seeds[i]`` (the global
            generator is left as it was).

        Returns
        -------
        Stack
            M copies, in the order of ``seeds``.
        """
        if len(seeds) == 0:
            raise ValueError("need at least one seed")
        factory = (lambda: Net(make)) if isinstance(make, ModelSpec) else make
        return cls.from_modules([seeded(factory, s) for s in seeds])

    @property
    def n_models(self) -> int:
        """M, the number of copies."""
        return self._first_tensor().shape[0]

    def _first_tensor(self) -> torch.Tensor:
        """A tensor with the copy axis: a parameter, or a buffer of a parameter-free module (a queue)."""
        return next(iter({**self.params, **self.buffers}.values()))

    @property
    def spec(self) -> ModelSpec | None:
        """The :class:`~cmkd_lab.models.ModelSpec` of a stacked :class:`~cmkd_lab.models.Net`, else ``None``."""
        return getattr(self.base, "spec", None)

    @property
    def device(self) -> torch.device:
        """The device the stacked tensors are on."""
        return self._first_tensor().device

    @property
    def has_fast_path(self) -> bool:
        """Whether plain calls (inputs and ``features=``, no edits) run the batched kernel: the
        module is a linear/MLP :class:`~cmkd_lab.models.Net` the kernel knows and the switch
        (:func:`fast_path`) is on."""
        return FAST_PATH and not self.buffers and _fast_plan(self.base) is not None

    def state(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers together.

        Returns
        -------
        dict of str to Tensor
            Every parameter and buffer name → its stacked tensor ``(M, *shape)``.
        """
        return {**self.params, **self.buffers}

    def module(self, i: int) -> nn.Module:
        """Copy ``i`` as an ordinary module.

        Parameters
        ----------
        i : int
            The copy's index, ``0 <= i < M``.

        Returns
        -------
        torch.nn.Module
            A module on the CPU with its own (cloned) tensors, in eval mode.
        """
        module = copy.deepcopy(self.base).to_empty(device="cpu")
        module.load_state_dict({name: value[i].detach().cpu().clone() for name, value in self.state().items()})
        return module.eval()

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Stack:
        """The same module with ``function`` applied to every stacked tensor.

        Parameters
        ----------
        function : callable
            Maps one stacked tensor ``(M, *shape)`` to another with the copy axis first,
            ``(M', *shape)``.

        Returns
        -------
        Stack
            A new stack on the same ``base``.
        """
        return Stack(
            self.base,
            {k: function(v) for k, v in self.params.items()},
            {k: function(v) for k, v in self.buffers.items()},
        )

    def subset(self, index: Sequence[int] | torch.Tensor) -> Stack:
        """Some of the copies.

        Parameters
        ----------
        index : sequence of int or Tensor
            K copy indices, in the order wanted (repeats allowed).

        Returns
        -------
        Stack
            ``(K, *shape)`` per tensor.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        return self.map(lambda v: v[index.to(v.device)])

    def repeat(self, copies: int) -> Stack:
        """All M copies, several times over.

        Parameters
        ----------
        copies : int
            How many times.

        Returns
        -------
        Stack
            ``(copies·M, *shape)`` per tensor, block after block (copy i is at i, M + i, ...).
        """
        return self.map(lambda v: v.repeat(copies, *[1] * (v.dim() - 1)))

    def detached(self) -> Stack:
        """The same copies without autograd history or shared storage.

        Returns
        -------
        Stack
            Detached clones, ``(M, *shape)`` per tensor.
        """
        return self.map(lambda v: v.detach().clone())

    def to(self, device: torch.device | str) -> Stack:
        """The same copies on another device.

        Parameters
        ----------
        device : torch.device or str
            E.g. ``"cpu"`` or ``"cuda"``.

        Returns
        -------
        Stack
            Every tensor moved, ``(M, *shape)`` each.
        """
        return self.map(lambda v: v.to(device))

    @staticmethod
    def concat(stacks: Sequence[Stack]) -> Stack:
        """Stacks of one module type joined along the copy axis.

        Parameters
        ----------
        stacks : sequence of Stack
            Stacks of M_1, ..., M_k copies with the same tensor names and per-copy shapes.

        Returns
        -------
        Stack
            ``(M_1 + ... + M_k, *shape)`` per tensor, on the first stack's ``base``.
        """
        first = stacks[0]
        join = lambda key, part: torch.cat([getattr(s, part)[key] for s in stacks])  # noqa: E731
        return Stack(
            first.base, {k: join(k, "params") for k in first.params}, {k: join(k, "buffers") for k in first.buffers}
        )

    def __call__(self, *inputs: torch.Tensor, edits: Mapping[str, Edit] | None = None, **options: Any):
        """Run every copy on its own slice of the inputs, in eval mode.

        Parameters
        ----------
        *inputs : Tensor
            The module's positional inputs with the copy axis first, ``(M, N, ...)`` each (copy i
            reads slice i; :meth:`broadcast` adds the axis to shared inputs).
        edits : mapping of str to Edit, optional
            Per-copy replacements of a layer's output (a :class:`~cmkd_lab.models.Net` layer name
            or ``"embedding"``).
        **options
            Passed to every copy's forward unchanged, e.g. ``features=["embedding"]``.

        Returns
        -------
        Any
            The module's outputs with the copy axis first. For a :class:`~cmkd_lab.models.Net`:
            ``(logits, features)``, logits ``(M, N, C)`` and ``features`` mapping each requested
            layer name to ``(M, N, ...)`` (``"embedding"`` ``(M, N, D)``, ``"logits"``
            ``(M, N, C)``), the same from the fast path and the generic one. Gradients reach
            :attr:`params` either way.
        """
        m = inputs[0].shape[0] if inputs else self.n_models
        if m != self.n_models:
            raise ValueError(f"inputs hold {m} model slices but there are {self.n_models} models")
        edits = dict(edits or {})
        names = list(edits)
        plain = [n for n in names if not isinstance(edits[n], Edit)]
        if plain:
            raise TypeError(f"edits of a stack must be Edit(function, per-copy args), got plain functions for {plain}")
        self.base.eval()
        if not names and self.has_fast_path and _fast_call(self.base, inputs, options, sample_dims=2):
            return _fast_forward(self.base, self.params, inputs[0], options, level=None)

        def one(params, buffers, inputs, edit_args):
            bound = {name: _bind_edit(edits[name].function, args) for name, args in zip(names, edit_args)}
            extra = {"edits": bound} if names else {}
            return functional_call(self.base, (params, buffers), inputs, {**options, **extra})

        return vmap(one, randomness="different")(self.params, self.buffers, inputs, [edits[n].args for n in names])

    forward = __call__

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits of a stacked :class:`~cmkd_lab.models.Net`, in eval mode, without gradients.

        Parameters
        ----------
        x : Tensor
            Inputs ``(M, N, ...)`` (copy i reads slice i) or shared ``(N, ...)``.
        chunk : int
            Samples per forward pass (bounds memory).

        Returns
        -------
        Tensor
            Logits ``(M, N, C)``.
        """
        x = self.broadcast(x)
        return torch.cat([self(x[:, i : i + chunk])[0] for i in range(0, x.shape[1], chunk)], dim=1)

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Give a :class:`~cmkd_lab.models.Net` stack's shared inputs a copy axis.

        Parameters
        ----------
        x : Tensor
            Shared inputs ``(N, *input_shape)``, or inputs that already have the copy axis.

        Returns
        -------
        Tensor
            ``(M, N, *input_shape)``: shared inputs expanded (a view), others unchanged.
        """
        if self.spec is not None and x.dim() == len(self.spec.input_shape) + 1:
            return x.unsqueeze(0).expand(self.n_models, *x.shape)
        return x


def call_copy(
    base: nn.Module, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor], args: tuple, kwargs: dict
):
    """One copy's call of a stacked module inside ``vmap`` (the engine's step and predict).

    Parameters
    ----------
    base : torch.nn.Module
        The module's structure.
    params, buffers : mapping of str to Tensor
        One copy's tensors (under ``vmap``: slices of the stacked ``(M, *shape)`` tensors).
    args : tuple
        Positional inputs of one copy, e.g. ``x`` ``(B, ...)``.
    kwargs : dict
        Keyword options of the module's forward (``features=``, ``edits=``).

    Returns
    -------
    Any
        What ``base`` returns for one copy (for a :class:`~cmkd_lab.models.Net`,
        ``(logits (B, C), {layer: (B, ...)})``). A plain linear/MLP net called under ``vmap``
        runs the stacked kernels on the whole stack at once (see the module's note); anything
        else is ``functional_call(base, (params, buffers), args, kwargs)``.
    """
    if FAST_PATH and not buffers and _fast_plan(base) is not None and _fast_call(base, args, kwargs, sample_dims=1):
        level = _vmap_level([args[0], *params.values()])
        if level is not None:
            return _fast_forward(base, params, args[0], kwargs, level)
    return functional_call(base, (params, buffers), args, kwargs)


# ----------------------------------------------------------------------------- the fast path
def _stacked_dense(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:class:`~cmkd_lab.models.Dense` on a stack: ``h`` ``(M, N, in)``, ``weight`` ``(M, out,
    in)``, ``bias`` ``(M, out)`` → ``(M, N, out)``, (W hᵀ)ᵀ + b per copy: the bmm and the add that
    ``vmap`` makes of ``Dense.forward``, so the values are the same bits."""
    return (torch.bmm(weight, h.transpose(1, 2)) + bias.unsqueeze(-1)).transpose(1, 2)


# Layer type → its stacked kernel and the parameters the kernel takes, by exact type (a subclass
# may compute something else). nn.Flatten is handled by the plan: it must come first.
_STACKED_KERNELS: dict[type[nn.Module], tuple[Callable[..., torch.Tensor], tuple[str, ...]]] = {
    Dense: (_stacked_dense, ("weight", "bias")),
    nn.ReLU: (torch.relu, ()),
}


class _FastPlan(NamedTuple):
    """A Net the kernels run: its encoder's layer names (the flatten first), then one step per
    layer after the flatten and for the head: the kernel and its parameters' names in the stack."""

    names: tuple[str, ...]
    steps: tuple[tuple[Callable[..., torch.Tensor], tuple[str, ...]], ...]


_PLANS: weakref.WeakKeyDictionary[nn.Module, _FastPlan | None] = weakref.WeakKeyDictionary()


def _fast_plan(base: nn.Module) -> _FastPlan | None:
    """The plan of a Net the kernels can run, else ``None`` (cached per base module)."""
    if base not in _PLANS:
        _PLANS[base] = _plan_of(base)
    return _PLANS[base]


def _plan_of(base: nn.Module) -> _FastPlan | None:
    if type(base) is not Net:  # a subclass may have its own forward
        return None
    children = list(base.encoder.named_children())
    flatten = children[0][1] if children else None
    if type(flatten) is not nn.Flatten or (flatten.start_dim, flatten.end_dim) != (1, -1):
        return None
    steps = []
    for prefix, layer in [*((f"encoder.{name}", layer) for name, layer in children[1:]), ("head", base.head)]:
        kernel = _STACKED_KERNELS.get(type(layer))
        if kernel is None or getattr(layer, "inplace", False) or any(getattr(layer, p) is None for p in kernel[1]):
            return None
        steps.append((kernel[0], tuple(f"{prefix}.{name}" for name in kernel[1])))
    return _FastPlan(tuple(name for name, _ in children), tuple(steps))


def _fast_call(base: Net, inputs: tuple, options: Mapping[str, Any], sample_dims: int) -> bool:
    """Whether a call is one the kernels serve: one input ``(..., N, *input_shape)`` with
    ``sample_dims`` leading axes, no options but ``features`` (and empty ``edits``)."""
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor) or set(options) - {"features", "edits"}:
        return False
    x, input_shape = inputs[0], tuple(base.spec.input_shape)
    shaped = x.dim() == sample_dims + len(input_shape) and tuple(x.shape[sample_dims:]) == input_shape
    return shaped and not options.get("edits")


def _vmap_level(tensors: Sequence[torch.Tensor]) -> int | None:
    """The innermost ``vmap`` level that batches any of ``tensors``; ``None`` outside ``vmap``.

    torch.func has no public call for this or for :func:`_unbatched`: ``torch._C._functorch`` is
    what its own vmap is built on (the torch version is pinned in pyproject.toml, and
    ``tests/test_stack_fast_path.py`` fails if these calls change)."""
    functorch = torch._C._functorch
    levels = [functorch.maybe_get_level(t) for t in tensors if functorch.is_batchedtensor(t)]
    return max(levels) if levels else None


def _unbatched(tensors: Sequence[torch.Tensor], level: int) -> list[torch.Tensor]:
    """The stacked tensors behind one copy's ``tensors`` inside ``vmap`` at ``level``: copy axis
    first; a tensor that level does not batch is expanded (a view) over the copies."""
    unwrapped = [torch._C._functorch._unwrap_batched(t, level) for t in tensors]
    size = next(value.shape[dim] for value, dim in unwrapped if dim is not None)
    return [value.movedim(dim, 0) if dim is not None else value.expand(size, *value.shape) for value, dim in unwrapped]


def _fast_forward(base: Net, params: Mapping[str, torch.Tensor], x: torch.Tensor, options, level: int | None):
    """``Net.forward`` (the same outputs by layer name, the same name checks) with every layer
    after the flatten run by its stacked kernel.

    ``x`` is the stack's ``(M, N, ...)`` (``level=None``), or one copy's ``(N, ...)`` inside
    ``vmap`` at ``level``: then the kernels run on the stacked tensors behind the copy's, as a
    batching rule does, and the outputs go back batched at that level. Autograd records the
    stacked ops either way, so gradients reach the stacked parameters."""
    plan = _fast_plan(base)
    wanted = _check_layer_names(base.spec, options.get("features", ()))
    flat = x.flatten(x.dim() - len(base.spec.input_shape))
    keys = [key for _, step_keys in plan.steps for key in step_keys]
    h, *tensors = [flat, *(params[key] for key in keys)]
    if level is not None:
        h, *tensors = _unbatched([h, *tensors], level)
    stacked = dict(zip(keys, tensors))
    outputs = []
    for kernel, step_keys in plan.steps:
        h = kernel(h, *(stacked[key] for key in step_keys))
        outputs.append(h)
    if level is not None:
        outputs = [torch._C._functorch._add_batch_dim(output, 0, level) for output in outputs]
    values = dict(zip(plan.names, [flat, *outputs[:-1]]))
    logits = outputs[-1]
    captured = {name: values[name] for name in plan.names if name in wanted}
    if "embedding" in wanted:
        captured["embedding"] = values[plan.names[-1]]
    if "logits" in wanted:
        captured["logits"] = logits
    return logits, captured


def _bind_edit(
    function: Callable[..., torch.Tensor], args: Sequence[torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda output: function(output, *args)


def broadcast_models(x: torch.Tensor, n_models: int, sample_rank: int) -> torch.Tensor:
    """``x`` with a model axis.

    Parameters
    ----------
    x : Tensor
        ``(N, ...)`` shared by every copy, or ``(M, N, ...)`` already.
    n_models : int
        M.
    sample_rank : int
        Dimensions of one sample (``len(input_shape)``; 0 for labels).

    Returns
    -------
    Tensor
        ``(M, N, ...)``: unchanged if it has the model axis (``sample_rank + 2`` dims), else
        expanded (a view). Other ranks raise a ValueError.
    """
    if x.dim() == sample_rank + 1:
        return x.unsqueeze(0).expand(n_models, *x.shape)
    if x.dim() != sample_rank + 2:
        raise ValueError(
            f"expected (N, ...) or (models, N, ...) with {sample_rank} sample dims, got shape {tuple(x.shape)}"
        )
    return x
