"""The training engine: every fit in the kit, for any trainable system, as M stacked copies.

A :class:`System` names its trainable modules (built per seed), its frozen modules (teachers,
run in eval mode), and a ``step`` that turns one model's batch into named loss terms. ``fit``
trains M copies of the system together (seeds × settings): each module is a
:class:`~cmkd_lab.engine.Stack`, the step runs once under ``vmap``, the loss is the sum of the
M per-copy totals, so each copy's gradient is exactly its own and SGD/Adam update every element
independently. Copy i therefore ends where training it alone with the same seed would (within
float tolerance); ``tests/test_training.py`` checks that, also for BatchNorm CNNs and for a
two-encoder system with a discriminator behind gradient reversal.

Stages are arguments of the same loop: ``init`` starts modules from an earlier result,
``freeze`` keeps some of them fixed (a linear probe), a system whose step ignores labels trains
without them, ``augment`` edits each batch with per-copy generators, and ``feeds`` shuffles
groups of data keys with their own generators (unpaired modalities), and ``rows`` lets copies
with different numbers of samples share a fit: each slice is padded to the longest and the step
averages over each copy's own rows (``ROW_MASK``), for systems that say their terms honour it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import vmap

from ..analysis.metrics import VALIDATION_METRICS
from ..app.progress import progress_bar
from ..models import seeded
from .registry import Registry
from .schedules import Ramp
from .stack import Stack, call_copy

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
# each optimiser with the TrainConfig settings it takes (Adam's own momentum lives in its betas)
OPTIMIZERS.register("sgd", settings=("lr", "momentum", "weight_decay"))(torch.optim.SGD)
OPTIMIZERS.register("adam", settings=("lr", "weight_decay"))(torch.optim.Adam)
SELECTION_RULES = ("last", "best_val")
DEVICES = ("auto", "cpu", "cuda")
AUGMENT_STREAM = 7_919  # per-copy augmentation generators are seeded apart from shuffling
# Below this many rows per step (copies × batch) one CPU thread is fastest; above it, the caller's
# thread count. Measured on 2 cores (300 epochs): 600 rows 0.47 s at 1 thread vs 0.61 s at 2;
# 4,000 rows 0.92 vs 0.66 s; 24,000 rows (MLP) 4.9 vs 3.4 s.
SMALL_STEP_ROWS = 4_000
# The data key of the row mask of a fit whose copies hold different numbers of samples
# (``fit(..., rows=...)``): per copy, 1 on its samples and 0 on its padding rows; a mean over
# samples becomes Σ mask·ℓ / Σ mask (``losses.weighted_sample_mean``), whose gradient is the very
# g/n of the copy's plain mean over its own n samples.
ROW_MASK = "row_mask"


@contextlib.contextmanager
def thread_policy(threads: int):
    """Run with ``threads`` CPU threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit` trains: epochs, optimiser, batches, model selection, device and threads.

    Every setting is checked when the config is made; a bad one raises a ValueError naming the
    valid values.

    Parameters
    ----------
    epochs : int
        Passes over the training data (>= 1).
    lr : float
        Learning rate (> 0).
    optimizer : {"sgd", "adam"}
        A name in ``OPTIMIZERS``.
    momentum : float
        SGD's momentum; an optimiser that takes none (Adam, whose momentum lives in its betas)
        refuses a non-zero value.
    weight_decay : float
        The optimiser's L2 penalty.
    batch_size : int or None
        ``None``: full batch, one step per epoch. Otherwise each epoch passes once over the data
        in shuffled batches of ``batch_size`` rows; a one-row remainder joins the batch before it.
    select : {"last", "best_val"}
        ``"last"`` keeps the final epoch; ``"best_val"`` keeps, per head, the modules at the
        epoch with the best validation ``select_metric`` (needs ``val=``; never the test split).
    select_metric : str
        A name in :data:`~cmkd_lab.analysis.metrics.VALIDATION_METRICS` (default ``"accuracy"``).
    val_every : int
        Validate every ``val_every`` epochs, and always at the last one.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` takes CUDA when present.
    threads : int or None
        CPU threads during the fit. ``None`` is the engine's policy: one thread for small steps
        (fewer than ``SMALL_STEP_ROWS`` rows per step: copies × batch size), where extra
        threads only add start-up cost and contend with other work; the caller's
        ``torch.get_num_threads()`` (which honours ``OMP_NUM_THREADS``) for larger steps.
    """

    epochs: int = 200
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int | None = None
    select: str = "last"
    select_metric: str = "accuracy"
    val_every: int = 1
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self):
        settings = OPTIMIZERS.info(self.optimizer)["settings"]
        if self.momentum and "momentum" not in settings:
            raise ValueError(
                f"optimizer {self.optimizer!r} takes {', '.join(settings)}, not momentum; "
                "leave momentum at 0, or use optimizer='sgd'"
            )
        VALIDATION_METRICS.get(self.select_metric)
        if self.select not in SELECTION_RULES:
            raise ValueError(f"unknown select rule {self.select!r}; valid: {', '.join(SELECTION_RULES)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.epochs < 1 or self.val_every < 1:
            raise ValueError("epochs and val_every must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1 or None (full batch)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None (the engine's policy), got {self.threads}")

    def resolved_device(self) -> torch.device:
        """The device a fit runs on: :func:`resolve_device` of ``device``."""
        return resolve_device(self.device)


def resolve_device(device: str) -> torch.device:
    """The torch device for ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``;
    ``"cuda"`` without a CUDA device raises a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use device='auto' or 'cpu'")
    return torch.device(device)


# ----------------------------------------------------------------------------- the system contract
class Bound:
    """One copy of a stacked module inside :meth:`System.step`: call it as the module itself
    (one copy's batch ``(B, ...)`` in, the module's outputs out); ``params`` and ``buffers``
    are that copy's tensors."""

    def __init__(self, base: nn.Module, params: dict, buffers: dict):
        self.base, self.params, self.buffers = base, params, buffers

    def __call__(self, *args, **kwargs):
        return call_copy(self.base, self.params, self.buffers, args, kwargs)  # the fast path for linear/MLP nets


class StepResult(NamedTuple):
    """What :meth:`System.step` returns for one copy's batch.

    Parameters
    ----------
    outputs : dict of str to Tensor
        What the step computed that is worth keeping, e.g. ``{"logits": (B, C)}``; the engine
        does not read it.
    terms : dict of str to Tensor
        Named loss terms, each a scalar ``()``. The engine weighs them by
        :meth:`System.weights`, sums them into the copy's total and logs each by name.
    """

    outputs: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Head:
    """A deployed classifier of a system, scored by validation and kept by model selection.

    Parameters
    ----------
    labels : str
        The data key of its labels ``(N,)`` (per copy), e.g. ``"y"``.
    modules : tuple of str
        The trainable modules it uses; with ``select="best_val"`` they are kept at the head's
        best validation epoch. A module belongs to at most one head.
    """

    labels: str
    modules: tuple[str, ...]


class System:
    """A trainable system: what trains and how one batch becomes named loss terms.

    :func:`fit` owns the loop (optimiser, batches, logging, selection, devices); a subclass
    defines :meth:`build` and :meth:`step`, and, as it needs them, :meth:`weights`,
    :meth:`heads` with :meth:`predict`, :meth:`prepare` and :meth:`config`. Methods that take
    ``modules`` and ``batch`` are written for one copy (a batch ``{key: (B, ...)}``) and run for
    all M copies at once under ``vmap``: no ``.item()``, no branching on tensor values.

    Attributes
    ----------
    frozen : mapping of str to Stack
        Modules that do not train (teachers), each a :class:`~cmkd_lab.engine.Stack` with one
        copy per model; they run in eval mode and reach :meth:`step` beside the trainable ones.
    """

    frozen: Mapping[str, Stack] = {}
    # whether every term of ``step`` averages over the samples ``batch[ROW_MASK]`` marks when the
    # batch has it, and no module computes statistics over the batch (BatchNorm): then
    # copies with different numbers of samples may share a fit, padded (``fit(..., rows=...)``)
    weighs_rows: bool = False

    def build(self, seed: int) -> dict[str, nn.Module]:
        """The trainable modules of one copy.

        Parameters
        ----------
        seed : int
            The copy's seed; torch's CPU generator is seeded with it during the call and
            restored after (use :func:`build_seeded` to give modules streams of their own).

        Returns
        -------
        dict of str to torch.nn.Module
            The modules by name; :func:`fit` stacks each over the copies.
        """
        raise NotImplementedError

    def step(self, modules: Mapping[str, Bound], batch: Mapping[str, torch.Tensor]) -> StepResult:
        """One training step of one copy.

        Parameters
        ----------
        modules : mapping of str to Bound
            The copy's trainable and frozen modules, called as the modules themselves.
        batch : mapping of str to Tensor
            The copy's batch: each data key ``(B, ...)`` (after :meth:`prepare` and ``augment``).

        Returns
        -------
        StepResult
            Outputs and named scalar loss terms.
        """
        raise NotImplementedError

    def weights(self) -> Mapping[str, float | Sequence[float]]:
        """The weight of each loss term: a number, one per copy (a sequence of M), or a warm-up
        :class:`~cmkd_lab.engine.Ramp`. Terms not named weigh 1; none by default."""
        return {}

    def heads(self) -> Mapping[str, Head]:
        """The system's classifiers by name, which validation scores and selection keeps; none by
        default (a system without heads trains without validation)."""
        return {}

    def predict(self, modules: Mapping[str, Bound], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each head's logits ``(B, C)`` for one copy's batch (``{key: (B, ...)}``), run in eval
        mode; one entry per name in :meth:`heads`."""
        return {}

    def prepare(self, data: dict[str, torch.Tensor], frozen: Mapping[str, Stack]) -> dict[str, torch.Tensor]:
        """The training data as the steps will read it, called once before training.

        Parameters
        ----------
        data : dict of str to Tensor
            Every copy's data, ``(M, N, ...)`` per key, on the fit's device.
        frozen : mapping of str to Stack
            The frozen modules, on that device.

        Returns
        -------
        dict of str to Tensor
            ``data``, checked and possibly extended (e.g. a frozen teacher's outputs, computed
            once instead of at every step); unchanged by default.
        """
        return data

    def config(self) -> dict:
        """What the run record stores about the system (its name and settings)."""
        return {"system": type(self).__name__}


# ----------------------------------------------------------------------------- results
@dataclass
class FitResult:
    """What :func:`fit` returns: the trained modules, the log of every term, the run record.

    Parameters
    ----------
    modules : dict of str to Stack
        Every trainable module (loss-owned ones included), M copies each, at its selected epoch.
    history : dict of str to numpy.ndarray
        Per term (and ``"total"``): ``(epochs, M)``, the epoch's sample-weighted mean. Per
        validation metric (``"val_accuracy"``, ``"val_accuracy/<head>"`` with several heads):
        ``(evaluations, M)`` at the epochs ``record["val_epochs"]``.
    selected_epoch : dict of str to numpy.ndarray
        Per head: ``(M,)``, the 1-based epoch its modules were kept at.
    seeds : list of int
        The M copies' seeds, in order.
    record : dict
        The run record: system and train config, seeds, device, threads, wall time, warnings.
    system : System
        The trained system (its frozen modules serve :meth:`predict`).
    """

    modules: dict[str, Stack]
    history: dict[str, np.ndarray]  # name -> (epochs, M); validation metrics (evaluations, M)
    selected_epoch: dict[str, np.ndarray]  # head -> (M,), 1-based
    seeds: list[int]
    record: dict
    system: System = field(repr=False, default=None)

    def history_frame(self) -> pd.DataFrame:
        """The per-epoch log as a tidy table.

        Returns
        -------
        pandas.DataFrame
            Columns ``epoch`` (1-based), ``model`` (copy index), ``seed``, ``term``, ``value``:
            one row per term, epoch and copy; validation rows carry the epoch they were
            measured at.
        """
        frames = []
        val_epochs = np.asarray(self.record.get("val_epochs", []))
        for term, values in self.history.items():
            rows, n_models = values.shape
            epochs = val_epochs if term.startswith("val_") else np.arange(1, rows + 1)
            frames.append(
                pd.DataFrame(
                    {
                        "epoch": np.repeat(epochs, n_models),
                        "model": np.tile(np.arange(n_models), rows),
                        "seed": np.tile(self.seeds, rows),
                        "term": term,
                        "value": values.reshape(-1),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def subset(self, index: Sequence[int], **record) -> FitResult:
        """Some copies of this fit as a result of their own.

        Parameters
        ----------
        index : sequence of int
            The copies to keep, in the order given.
        **record
            Entries added to (or replacing those of) the run record.

        Returns
        -------
        FitResult
            Modules, log, selected epochs and seeds of those copies. A fit with frozen modules
            (an uncached teacher) cannot be split and raises a ValueError.
        """
        if self.system is not None and self.system.frozen:
            raise ValueError("a fit with frozen modules (an uncached teacher) cannot be split into parts")
        index = list(index)
        seeds = [self.seeds[i] for i in index]
        where = {copy: position for position, copy in enumerate(index)}
        chance = [
            (where[copy], message)
            for copy, message in zip(self.record.get("chance_copies", []), self.record.get("warnings", []))
            if copy in where
        ]  # the warnings about the copies kept, renumbered
        return FitResult(
            {name: stack.subset(index) for name, stack in self.modules.items()},
            {name: values[:, index] for name, values in self.history.items()},
            {head: epochs[index] for head, epochs in self.selected_epoch.items()},
            seeds,
            {
                **self.record,
                "seeds": seeds,
                "n_models": len(index),
                "warnings": [message for _, message in chance],
                "chance_copies": [copy for copy, _ in chance],
                **({"rows": [self.record["rows"][i] for i in index]} if "rows" in self.record else {}),
                **record,
            },
            self.system,
        )

    @torch.no_grad()
    def predict(self, data: Mapping[str, torch.Tensor], chunk: int = 8192) -> dict[str, torch.Tensor]:
        """Each head's logits on ``data``, in eval mode.

        Parameters
        ----------
        data : mapping of str to Tensor
            The keys the system's :meth:`~System.predict` reads, ``(M, N, ...)`` each (copy i
            sees slice i).
        chunk : int
            Samples per forward pass (bounds memory).

        Returns
        -------
        dict of str to Tensor
            Per head: logits ``(M, N, C)``, on the CPU.
        """
        stacks = {**_frozen_on(self.system, self.device), **self.modules}
        first = next(iter(data.values()))
        parts = []
        for start in range(0, first.shape[1], chunk):
            batch = {k: v[:, start : start + chunk].to(self.device) for k, v in data.items()}
            parts.append(_predict(self.system, stacks, batch))
        return {head: torch.cat([p[head] for p in parts], 1).cpu() for head in parts[0]}

    @property
    def device(self) -> torch.device:
        """The device the trained modules are on."""
        return next(iter(self.modules.values())).device


# ----------------------------------------------------------------------------- the loop
def fit(
    system: System,
    data: Mapping[str, torch.Tensor],
    *,
    seeds: Sequence[int],
    config: TrainConfig,
    val: Mapping[str, torch.Tensor] | None = None,
    init: Mapping[str, Stack] | None = None,
    freeze: Sequence[str] = (),
    feeds: Mapping[str, Sequence[str]] | None = None,
    augment: Callable[[dict, list[torch.Generator]], dict] | None = None,
    rows: Sequence[int] | None = None,
    progress: bool | None = None,
    description: str = "fit",
) -> FitResult:
    """Train ``len(seeds)`` = M copies of ``system`` together.

    Each copy's gradient is its own, so copy i ends where training it alone with seed
    ``seeds[i]`` would (within float tolerance). Copies whose head ends at chance are warned
    about and listed in ``record["warnings"]``.

    Parameters
    ----------
    system : System
        What trains and how a batch becomes loss terms.
    data : mapping of str to Tensor
        Training data, ``(M, N, ...)`` per key: copy i sees slice i (e.g. ``x`` ``(M, N, D)``
        or ``(M, N, C, H, W)``, ``y`` ``(M, N)``).
    seeds : sequence of int
        One seed per copy: it builds the copy's modules and drives its shuffling and
        augmentation.
    config : TrainConfig
        Epochs, optimiser, batches, selection, device, threads.
    val : mapping of str to Tensor, optional
        Validation data, ``(M, N_val, ...)`` per key; each head is scored on it (every
        ``config.val_every`` epochs) and ``select="best_val"`` selects on it.
    init : mapping of str to Stack, optional
        Start values of some modules, M copies each (e.g. an earlier stage's
        ``FitResult.modules``), instead of building them from the seeds.
    freeze : sequence of str
        Modules that keep their values and run in eval mode (e.g. the encoder of a linear probe).
    feeds : mapping of str to sequence of str, optional
        Groups of data keys shuffled independently (unpaired modalities): every key in exactly
        one group, the keys of a group holding the same number of samples. An epoch passes once
        over the largest group while smaller ones wrap around. Default: one group (paired
        samples).
    augment : callable, optional
        ``augment(batch, generators)`` returns an edited training batch (``(M, B, ...)`` per key),
        given one ``torch.Generator`` per copy.
    rows : sequence of int, optional
        Per copy, how many of its training rows are samples (the first ones; the rest of its
        slice pads it to the longest copy's). The steps see ``batch[ROW_MASK]`` and average over each
        copy's own rows, so copy i trains as it would on its n_i samples alone (within float
        tolerance). Full batch only, and only for a system with ``weighs_rows``; padding rows
        of ``val`` (and of any labelled split a metric reads) carry the label
        :data:`~cmkd_lab.analysis.metrics.PADDING_LABEL`, which the metrics leave out.
    progress : bool or None
        Show progress (``None``: the mode :func:`~cmkd_lab.app.progress.progress_mode` picks).
    description : str
        The fit's name in the progress bar and in warnings.

    Returns
    -------
    FitResult
        The trained modules (at their selected epochs), the per-epoch log, the selected epoch per
        head and the run record.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    n_models = len(seeds)
    device = config.resolved_device()
    data = _checked_data(data, n_models, "data")  # shapes first: the thread policy reads them
    val = _checked_data(val, n_models, "val") if val is not None else None
    threads = config.threads or _thread_policy(data, n_models, config.batch_size)
    row_mask = _row_mask(system, data, rows, config, feeds) if rows is not None else None
    init, freeze = dict(init or {}), tuple(freeze)
    with thread_policy(threads) if device.type == "cpu" else contextlib.nullcontext():
        data = _on_device(data, device)
        val = _on_device(val, device) if val is not None else None
        frozen = _frozen_on(system, device)
        data = system.prepare(dict(data), frozen)
        if row_mask is not None:
            data[ROW_MASK] = row_mask.to(device)
        trainable = _build(system, seeds, init, device)
        unknown = sorted(set(freeze) - set(trainable))
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: the system's modules are {sorted(trainable)}")
        heads = dict(system.heads())
        if config.select == "best_val" and (val is None or not heads):
            raise ValueError("select='best_val' needs a validation split (val=...) and a system with heads")
        weights = _weights(system, n_models, device)
        groups = _feed_groups(feeds, data)

        learning = {name: stack for name, stack in trainable.items() if name not in freeze}
        params = {
            name: {k: v.detach().clone().requires_grad_(True) for k, v in stack.params.items()}
            for name, stack in learning.items()
        }
        optimizer = _make_optimizer(config, [t for p in params.values() for t in p.values()])
        stacks = {
            **frozen,
            **{n: s for n, s in trainable.items() if n in freeze},
            **{n: Stack(s.base, params[n], s.buffers) for n, s in learning.items()},
        }
        shuffles = [[torch.Generator().manual_seed(s + 1_000_003 * g) for s in seeds] for g in range(len(groups))]
        augmenters = [torch.Generator().manual_seed(s + AUGMENT_STREAM) for s in seeds]
        selection = _Selection(heads, config, n_models, val is not None)
        log: dict[str, list[torch.Tensor]] = {}
        val_epochs = []
        started = time.perf_counter()
        for epoch in progress_bar(
            range(1, config.epochs + 1),
            f"{description} ({n_models} model{'s' * (n_models > 1)})",
            enabled=progress,
            unit="epoch",
        ):
            sums: dict[str, torch.Tensor] = {}
            weights_now = _weights_at(weights, epoch)
            for share, batch in _batches(data, groups, config.batch_size, shuffles):
                if augment is not None:
                    batch = augment(batch, augmenters)
                terms = _step(system, stacks, set(learning), batch)
                total = sum(weights_now.get(name, 1.0) * value for name, value in terms.items())
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()
                optimizer.step()
                with torch.no_grad():
                    for name, value in {**terms, "total": total}.items():
                        part = value.detach() if share == 1.0 else value.detach() * share  # full batch: no ops
                        sums[name] = sums[name] + part if name in sums else part
            for name, value in sums.items():
                log.setdefault(name, []).append(value)
            if val is not None and heads and (epoch % config.val_every == 0 or epoch == config.epochs):
                val_epochs.append(epoch)
                with torch.no_grad():
                    scores = _validation_scores(system, stacks, heads, val, config.select_metric)
                for name, value in scores.items():
                    log.setdefault(name, []).append(value)
                selection.update(epoch, scores, stacks)
        wall_time = time.perf_counter() - started
        with torch.no_grad():
            at_chance = _chance_warnings(system, stacks, heads, data, log, seeds, description)

    final = {
        name: Stack(stack.base, {k: v.detach() for k, v in stack.params.items()}, stack.buffers)
        for name, stack in stacks.items()
        if name in trainable
    }
    final = selection.apply(final)
    record = {
        "system": system.config(),
        "train_config": asdict(config),
        "seeds": seeds,
        "n_models": n_models,
        "n_samples": max(int(value.shape[1]) for value in data.values()),
        **({"rows": [int(n) for n in rows]} if rows is not None else {}),
        "modules": sorted(final),
        "frozen_modules": sorted(set(frozen) | set(freeze)),
        "device": str(device),
        "threads": threads if device.type == "cpu" else None,
        "val_epochs": val_epochs,
        "wall_time_s": wall_time,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "warnings": [message for _, message in at_chance],
        "chance_copies": [copy for copy, _ in at_chance],  # the copy each warning is about
    }
    history = {name: torch.stack(values).cpu().numpy() for name, values in log.items()}
    return FitResult(final, history, selection.epochs(), seeds, record, system)


def _step(system: System, stacks: Mapping[str, Stack], learning: set[str], batch: dict) -> dict[str, torch.Tensor]:
    names = list(stacks)
    for name in names:
        stacks[name].base.train(name in learning)

    def one(params, buffers, batch):
        modules = {n: Bound(stacks[n].base, p, b) for n, p, b in zip(names, params, buffers)}
        return system.step(modules, batch).terms

    return vmap(one, randomness="different")(
        [stacks[n].params for n in names], [stacks[n].buffers for n in names], batch
    )


def _predict(system: System, stacks: Mapping[str, Stack], batch: dict) -> dict[str, torch.Tensor]:
    names = list(stacks)
    for name in names:
        stacks[name].base.eval()

    def one(params, buffers, batch):
        modules = {n: Bound(stacks[n].base, p, b) for n, p, b in zip(names, params, buffers)}
        return system.predict(modules, batch)

    return vmap(one, randomness="different")(
        [stacks[n].params for n in names], [stacks[n].buffers for n in names], batch
    )


CHANCE_LOSS_MARGIN = 0.02  # a final cross-entropy within 2 % of ln K
CHANCE_ACCURACY_MARGIN = 0.05  # a train accuracy at most 1/K + 5 points
CHANCE_CHECK_ROWS = 2048  # the train accuracy is measured on at most this many evenly spaced rows


def _chance_warnings(system, stacks, heads, data, log, seeds, description) -> list[tuple[int, str]]:
    """Per head, the copies whose training ended at chance: train accuracy ≤ 1/K + 5 points, or
    (for a one-head system logging ``ce``) a final cross-entropy within 2 % of ln K. Each is
    warned about and returned (copy index, message) for the run record."""
    heads = {h: spec for h, spec in heads.items() if spec.labels in data}
    if not heads:
        return []
    n_rows = next(iter(data.values())).shape[1]
    rows = torch.linspace(0, n_rows - 1, min(n_rows, CHANCE_CHECK_ROWS)).long().to(next(iter(data.values())).device)
    data = {key: value[:, rows] for key, value in data.items()}
    logits = _predict(system, stacks, data)
    found = []
    for head, spec in heads.items():
        n_classes = logits[head].shape[-1]
        train_accuracy = VALIDATION_METRICS.get("accuracy")(logits[head], data[spec.labels]).cpu()
        at_chance = train_accuracy <= 1 / n_classes + CHANCE_ACCURACY_MARGIN
        if len(heads) == 1 and "ce" in log:
            at_chance |= log["ce"][-1].cpu() >= (1 - CHANCE_LOSS_MARGIN) * math.log(n_classes)
        for i in torch.nonzero(at_chance).flatten().tolist():
            message = (
                f"{description}: head {head!r} of seed {seeds[i]} ended at chance (train accuracy "
                f"{100 * float(train_accuracy[i]):.1f}% with {n_classes} classes): check the inputs' scale "
                "(standardise them), the learning rate and the number of epochs"
            )
            found.append((i, message))
            warnings.warn(message, stacklevel=3)
    return found


def _validation_scores(system, stacks, heads, val, metric) -> dict[str, torch.Tensor]:
    logits = _predict(system, stacks, val)
    score = VALIDATION_METRICS.get(metric)
    suffix = (lambda head: "") if len(heads) == 1 else (lambda head: f"/{head}")
    return {f"val_{metric}{suffix(head)}": score(logits[head], val[spec.labels]) for head, spec in heads.items()}


class _Selection:
    """Per head, the best validation epoch so far and copies of its modules' tensors then."""

    def __init__(self, heads: Mapping[str, Head], config: TrainConfig, n_models: int, has_val: bool):
        self.active = config.select == "best_val" and has_val
        self.heads = dict(heads)
        owners: dict[str, str] = {}
        for head, spec in self.heads.items():
            for module in spec.modules:
                if module in owners:
                    raise ValueError(
                        f"module {module!r} belongs to heads {owners[module]!r} and {head!r}; "
                        "per-head selection needs each module in one head"
                    )
                owners[module] = head
        self.metric = config.select_metric
        self.best = {head: torch.full((n_models,), -float("inf")) for head in self.heads}
        self.epoch = {head: torch.full((n_models,), config.epochs) for head in self.heads}
        self.saved: dict[str, dict[str, torch.Tensor]] = {}

    def update(self, epoch: int, scores: Mapping[str, torch.Tensor], stacks: Mapping[str, Stack]) -> None:
        if not self.active:
            return
        single = len(self.heads) == 1
        for head, spec in self.heads.items():
            score = scores[f"val_{self.metric}" if single else f"val_{self.metric}/{head}"].cpu()
            better = score > self.best[head]
            self.best[head] = torch.where(better, score, self.best[head])
            self.epoch[head] = torch.where(better, torch.tensor(epoch), self.epoch[head])
            for module in spec.modules:
                for key, value in stacks[module].state().items():
                    tag = f"{module}\0{key}"
                    mask = better.to(value.device).reshape(-1, *[1] * (value.dim() - 1))
                    previous = self.saved.get(tag)
                    self.saved[tag] = (
                        value.detach().clone() if previous is None else torch.where(mask, value.detach(), previous)
                    )

    def _picked(self, module: str, part) -> dict:
        """The saved values of ``part``'s keys of ``module``."""
        return {k: self.saved[f"{module}\0{k}"] for k in part}

    def apply(self, final: dict[str, Stack]) -> dict[str, Stack]:
        if not self.active:
            return final
        out = dict(final)
        for spec in self.heads.values():
            for module in spec.modules:
                stack = final[module]
                out[module] = Stack(stack.base, self._picked(module, stack.params), self._picked(module, stack.buffers))
        return out

    def epochs(self) -> dict[str, np.ndarray]:
        return {head: epoch.numpy() for head, epoch in self.epoch.items()}


# ----------------------------------------------------------------------------- helpers
def _thread_policy(data: Mapping[str, torch.Tensor], n_models: int, batch_size: int | None) -> int:
    samples = max(v.shape[1] for v in data.values())
    rows = n_models * min(batch_size or samples, samples)
    return 1 if rows < SMALL_STEP_ROWS else torch.get_num_threads()


def _row_mask(system: System, data: Mapping[str, torch.Tensor], rows: Sequence[int], config: TrainConfig, feeds):
    """The ``ROW_MASK`` entry ``(M, N)`` of a fit whose copies hold ``rows`` samples each."""
    n_models, n_rows = next(iter(data.values())).shape[:2]
    rows = torch.as_tensor([int(n) for n in rows])
    if rows.shape != (n_models,) or int(rows.min()) < 1 or int(rows.max()) > n_rows:
        raise ValueError(f"rows must give each of the {n_models} copies a count in 1..{n_rows}, got {rows.tolist()}")
    if not getattr(system, "weighs_rows", False):
        raise ValueError(
            f"{type(system).__name__} does not weigh rows (weighs_rows is False: a term or a module reads "
            "the whole batch), so its copies cannot hold different numbers of samples in one fit; "
            "train copies of each size in a fit of their own"
        )
    if feeds is not None or (config.batch_size is not None and config.batch_size < n_rows):
        raise ValueError(
            "rows= (copies of different sizes in one fit) needs full-batch training of paired data: "
            "set batch_size=None and no feeds, or train copies of each size in a fit of their own"
        )
    return (torch.arange(n_rows) < rows.unsqueeze(1)).float()


def _checked_data(data: Mapping[str, torch.Tensor], n_models: int, what: str) -> dict[str, torch.Tensor]:
    data = {k: torch.as_tensor(v) for k, v in data.items()}
    if not data:
        raise ValueError(f"{what} is empty")
    for key, value in data.items():
        if value.dim() < 2 or value.shape[0] != n_models:
            raise ValueError(
                f"{what}[{key!r}] has shape {tuple(value.shape)}; every entry needs (models={n_models}, samples, ...)"
            )
    return data


def _on_device(data: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in data.items()}


def _frozen_on(system: System, device: torch.device) -> dict[str, Stack]:
    return {name: stack.to(device) for name, stack in (system.frozen or {}).items()}


def _build(system: System, seeds: Sequence[int], init: Mapping[str, Stack], device: torch.device) -> dict[str, Stack]:
    # reproducible even if build draws unseeded
    copies = [seeded(functools.partial(system.build, seed), seed) for seed in seeds]
    names = list(copies[0])
    unknown = sorted(set(init) - set(names))
    if unknown:
        raise ValueError(f"init names {unknown} that the system does not have; its modules: {sorted(names)}")
    clash = sorted(set(names) & set(system.frozen or {}))
    if clash:
        raise ValueError(f"modules {clash} are both trainable and frozen")
    stacks = {}
    for name in names:
        if name in init:
            given = init[name]
            if given.n_models != len(seeds):
                raise ValueError(f"init[{name!r}] holds {given.n_models} copies but there are {len(seeds)} seeds")
            stacks[name] = given.detached().to(device)
        else:
            stacks[name] = Stack.from_modules([c[name] for c in copies]).to(device)
    return stacks


def _weights(system: System, n_models: int, device: torch.device) -> dict[str, tuple[torch.Tensor, int]]:
    """Each term's weight per copy and its warm-up length in epochs (0: none)."""
    weights = {}
    for term, w in system.weights().items():
        warmup = w.epochs if isinstance(w, Ramp) else 0
        value = torch.as_tensor(w.value if isinstance(w, Ramp) else w, dtype=torch.float32, device=device)
        if value.dim() and value.shape != (n_models,):
            raise ValueError(
                f"weight of term {term!r} must be a number or one per model ({n_models}), got {tuple(value.shape)}"
            )
        weights[term] = (value.expand(n_models), warmup)
    return weights


def _weights_at(weights: Mapping[str, tuple[torch.Tensor, int]], epoch: int) -> dict[str, torch.Tensor]:
    return {term: value * min(epoch / warmup, 1.0) if warmup else value for term, (value, warmup) in weights.items()}


def _feed_groups(feeds: Mapping[str, Sequence[str]] | None, data: Mapping[str, torch.Tensor]) -> list[list[str]]:
    if feeds is None:
        groups = [list(data)]
    else:
        groups = [list(keys) for keys in feeds.values()]
        listed = [k for g in groups for k in g]
        missing, unknown = sorted(set(data) - set(listed)), sorted(set(listed) - set(data))
        if missing or unknown or len(listed) != len(set(listed)):
            raise ValueError(
                f"feeds must split the data keys {sorted(data)} into disjoint groups; "
                f"missing {missing}, unknown {unknown}"
            )
    for group in groups:
        sizes = {data[k].shape[1] for k in group}
        if len(sizes) != 1:
            raise ValueError(f"the keys {group} are fed together but hold different numbers of samples {sorted(sizes)}")
    return groups


def _batches(data, groups, batch_size, shuffles):
    """(share of the epoch, batch) per step: full batch, or each group in its own shuffled order
    per copy. An epoch is one pass over the largest group; a smaller group wraps around so every
    step sees as many rows of each. A last batch of one row joins the batch before it (BatchNorm
    cannot train on one row), so no row is ever left out of an epoch."""
    epoch_rows = max(data[group[0]].shape[1] for group in groups)
    if batch_size is None or batch_size >= epoch_rows:
        yield 1.0, data
        return
    orders = []
    for group, generators in zip(groups, shuffles):
        n = data[group[0]].shape[1]
        orders.append(torch.stack([torch.randperm(n, generator=g) for g in generators]))
    starts = list(range(0, epoch_rows, batch_size))
    if epoch_rows - starts[-1] == 1:
        starts.pop()
    for start, stop in zip(starts, starts[1:] + [epoch_rows]):
        batch = {}
        for group, order in zip(groups, orders):
            positions = torch.arange(start, stop) % order.shape[1]
            index = order[:, positions]
            for key in group:
                batch[key] = take_rows(data[key], index)
        yield (stop - start) / epoch_rows, batch


def take_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` ``(M, B)`` of each copy's slice of ``values`` ``(M, N, ...)``: ``(M, B, ...)``."""
    index = index.to(values.device)
    rows = torch.arange(values.shape[0], device=values.device).unsqueeze(1)
    return values[rows, index]


def _make_optimizer(config: TrainConfig, tensors: list[torch.Tensor]) -> torch.optim.Optimizer:
    if not tensors:
        raise ValueError("nothing to train: every module is frozen")
    settings = OPTIMIZERS.info(config.optimizer)["settings"]
    return OPTIMIZERS.get(config.optimizer)(tensors, **{name: getattr(config, name) for name in settings})


def build_seeded(
    modules: Mapping[str, Callable[[], nn.Module]], seed: int, offsets: Mapping[str, int] | None = None
) -> dict[str, nn.Module]:
    """One copy's modules, each built with torch's generator seeded ``seed`` plus its own offset.

    Parameters
    ----------
    modules : mapping of str to callable
        A maker per module name (called with no arguments).
    seed : int
        The copy's seed.
    offsets : mapping of str to int, optional
        Per module, the offset added to ``seed`` (default 0): modules with different offsets
        draw from streams apart from each other.

    Returns
    -------
    dict of str to torch.nn.Module
    """
    offsets = dict(offsets or {})
    return {name: seeded(make, seed + offsets.get(name, 0)) for name, make in modules.items()}
