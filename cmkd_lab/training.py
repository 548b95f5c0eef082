"""The training engine: many independent models of one shape, trained as one computation.

``fit`` trains M models (seeds × settings) together: their parameters are stacked (see
:class:`~cmkd_lab.models.StackedModels`), the loss is the sum of the M per-model losses, so each
model's gradient is exactly its own, and SGD/Adam update every element independently. Each
model therefore ends where training it alone with the same seed would (within float
tolerance); ``tests/test_training.py`` checks that against a plain PyTorch loop.

Teachers are frozen: a student fit receives the teacher's outputs (logits and any feature
layers) computed once in eval mode on the student's training samples.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .losses import Distiller, StepOutputs
from .models import ModelSpec, StackedModels
from .progress import progress_bar
from .registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("sgd")(torch.optim.SGD)
OPTIMIZERS.register("adam")(torch.optim.Adam)
SELECTION_RULES = ("last", "best_val")


@contextlib.contextmanager
def single_thread():
    """Run tiny models on one thread: per-op thread start-up dominates them, and on a busy
    2-core machine extra threads only contend (measured 2-5x faster per step)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``batch_size=None`` is full-batch. ``select``: "last" keeps the final
    epoch, "best_val" the epoch with the best validation accuracy (never the test split)."""

    epochs: int = 200
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int | None = None
    select: str = "last"
    val_every: int = 1

    def __post_init__(self):
        OPTIMIZERS.get(self.optimizer)
        if self.select not in SELECTION_RULES:
            raise ValueError(f"unknown select rule {self.select!r}; valid: {', '.join(SELECTION_RULES)}")
        if self.epochs < 1 or self.val_every < 1:
            raise ValueError("epochs and val_every must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1 or None (full batch)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class TeacherOutputs:
    """A frozen teacher's outputs on the student's training samples, model axis first."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, teacher: StackedModels, x: torch.Tensor, layers: Sequence[str] = ()) -> "TeacherOutputs":
        with torch.no_grad():
            logits, features = teacher.forward(teacher.broadcast(x), features=layers)
        return cls(logits.detach(), {k: v.detach() for k, v in features.items()})

    def rows(self, index: torch.Tensor | None) -> "TeacherOutputs":
        if index is None:
            return self
        return TeacherOutputs(_take_rows(self.logits, index), {k: _take_rows(v, index) for k, v in self.features.items()})


@dataclass
class FitResult:
    """Trained models (after ``select``), the per-epoch log of every loss term, and the run record."""

    models: StackedModels
    history: dict[str, np.ndarray]  # term -> (epochs, M)
    selected_epoch: np.ndarray  # (M,), 1-based
    seeds: list[int]
    record: dict

    def history_frame(self) -> pd.DataFrame:
        """The per-epoch log as a tidy table: epoch, model, seed, term, value."""
        frames = []
        for term, values in self.history.items():
            epochs, n_models = values.shape
            frames.append(
                pd.DataFrame(
                    {
                        "epoch": np.repeat(np.arange(1, epochs + 1), n_models),
                        "model": np.tile(np.arange(n_models), epochs),
                        "seed": np.tile(self.seeds, epochs),
                        "term": term,
                        "value": values.reshape(-1),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return accuracy(self.models, x, y)


def accuracy(models: StackedModels, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Accuracy of each model, as a fraction: ``x`` ``(M, N, ...)`` or shared ``(N, ...)``."""
    predictions = models.predict(x).argmax(-1)
    y = y if y.dim() == 2 else y.unsqueeze(0)
    return (predictions == y).double().mean(-1).numpy()


def fit(
    spec: ModelSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    config: TrainConfig,
    loss: Distiller | None = None,
    teacher: TeacherOutputs | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool | None = None,
    description: str = "fit",
) -> FitResult:
    """Train ``len(seeds)`` models of ``spec`` together.

    ``x`` is ``(M, N, *input_shape)`` (each model its own data) or ``(N, *input_shape)`` (shared);
    ``y`` is ``(M, N)`` or ``(N,)``. Model i is initialised from ``seeds[i]`` and, in mini-batch
    mode, shuffles with its own generator seeded ``seeds[i]``. ``teacher`` holds a frozen
    teacher's outputs on the same samples (needed by distillation losses).
    """
    loss = loss or Distiller()
    seeds = [int(s) for s in seeds]
    models = StackedModels.from_seeds(spec, seeds)
    n_models = models.n_models
    x, y = models.broadcast(x), _broadcast_labels(y, n_models)
    _check_shapes(spec, x, y, n_models)
    if loss.needs_teacher and teacher is None:
        raise ValueError(f"loss {loss.name!r} distils from a teacher: pass teacher=TeacherOutputs.of(teacher_models, x_teacher)")
    if config.select == "best_val" and val is None:
        raise ValueError("select='best_val' needs a validation split: pass val=(x_val, y_val)")
    if teacher is not None and teacher.logits.shape[:2] != y.shape:
        raise ValueError(f"teacher outputs cover {tuple(teacher.logits.shape[:2])} (models, samples) but the data has {tuple(y.shape)}")

    student_dims = _feature_dims(models, x, loss.student_layers)
    teacher_dims = {k: int(np.prod(v.shape[2:])) for k, v in (teacher.features if teacher else {}).items()}
    params = {f"model.{k}": v for k, v in models.params.items()}
    params.update({f"loss.{k}": v for k, v in loss.init_params(student_dims, teacher_dims, seeds).items()})
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizer = _make_optimizer(config, list(params.values()))
    weights = {term: torch.as_tensor(w, dtype=torch.float32).expand(n_models) for term, w in loss.weights().items()}
    for term, w in weights.items():
        if w.shape != (n_models,):
            raise ValueError(f"weight of term {term!r} must be a number or one per model ({n_models}), got {tuple(w.shape)}")

    if val is not None:
        x_val, y_val = models.broadcast(val[0]), _broadcast_labels(val[1], n_models)
    best_acc = torch.full((n_models,), -1.0)
    best_params = None
    selected_epoch = torch.full((n_models,), config.epochs)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    n_samples = x.shape[1]
    log: dict[str, list[torch.Tensor]] = {}
    started = time.perf_counter()

    def model_params():
        return {k[len("model."):]: v for k, v in params.items() if k.startswith("model.")}

    loss_params = {k[len("loss."):]: v for k, v in params.items() if k.startswith("loss.")}
    for epoch in progress_bar(range(1, config.epochs + 1), description, enabled=progress):
        sums: dict[str, torch.Tensor] = {}
        for index in _batches(n_samples, config.batch_size, generators):
            xb, yb = _take_rows(x, index), _take_rows(y, index)
            logits, features = models.forward(xb, features=loss.student_layers, params=model_params())
            t = teacher.rows(index) if teacher is not None else None
            step = StepOutputs(logits, features, t.logits if t else None, t.features if t else {}, yb)
            terms = loss.terms(step, loss_params)
            total = sum(weights[name] * value for name, value in terms.items())
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            optimizer.step()
            batch_share = yb.shape[1] / n_samples
            with torch.no_grad():
                for name, value in {**terms, "total": total}.items():
                    sums[name] = sums.get(name, 0) + value.detach() * batch_share
        for name, value in sums.items():
            log.setdefault(name, []).append(value)
        if val is not None and (epoch % config.val_every == 0 or epoch == config.epochs):
            with torch.no_grad():
                val_acc = torch.from_numpy(accuracy(StackedModels(spec, model_params()), x_val, y_val))
            log.setdefault("val_acc", []).append(val_acc)
            if config.select == "best_val":
                better = val_acc > best_acc
                best_acc = torch.where(better, val_acc, best_acc)
                selected_epoch = torch.where(better, torch.tensor(epoch), selected_epoch)
                best_params = {
                    k: v.detach().clone() if best_params is None else torch.where(_expand(better, v), v.detach(), best_params[k])
                    for k, v in model_params().items()
                }

    final = best_params if config.select == "best_val" else {k: v.detach() for k, v in model_params().items()}
    wall_time = time.perf_counter() - started
    history = {name: torch.stack(values).numpy() for name, values in log.items()}
    record = {
        "spec": asdict(spec),
        "train_config": asdict(config),
        "loss": loss.config(),
        "seeds": seeds,
        "n_models": n_models,
        "wall_time_s": wall_time,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return FitResult(StackedModels(spec, final), history, selected_epoch.numpy(), seeds, record)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


def _broadcast_labels(y: torch.Tensor, n_models: int) -> torch.Tensor:
    y = torch.as_tensor(y, dtype=torch.long)
    return y.unsqueeze(0).expand(n_models, -1) if y.dim() == 1 else y


def _check_shapes(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, n_models: int) -> None:
    if tuple(x.shape[2:]) != spec.input_shape:
        raise ValueError(f"inputs have sample shape {tuple(x.shape[2:])} but the model expects {spec.input_shape}")
    if x.shape[0] != n_models or y.shape[0] != n_models or x.shape[1] != y.shape[1]:
        raise ValueError(f"inputs {tuple(x.shape[:2])} and labels {tuple(y.shape)} must be (models={n_models}, samples)")
    if int(y.max()) >= spec.n_classes or int(y.min()) < 0:
        raise ValueError(f"labels must lie in 0..{spec.n_classes - 1} for a {spec.n_classes}-class model")


def _feature_dims(models: StackedModels, x: torch.Tensor, layers: Sequence[str]) -> dict[str, int]:
    if not layers:
        return {}
    with torch.no_grad():
        _, features = models.forward(x[:, :1], features=layers)
    return {k: int(np.prod(v.shape[2:])) for k, v in features.items()}


def _make_optimizer(config: TrainConfig, tensors: list[torch.Tensor]) -> torch.optim.Optimizer:
    optimizer_class = OPTIMIZERS.get(config.optimizer)
    if config.optimizer == "sgd":
        return optimizer_class(tensors, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return optimizer_class(tensors, lr=config.lr, weight_decay=config.weight_decay)


def _batches(n_samples: int, batch_size: int | None, generators: list[torch.Generator]):
    """Row indices per step: None for full batch, else (M, B) from each model's own shuffle."""
    if batch_size is None or batch_size >= n_samples:
        yield None
        return
    order = torch.stack([torch.randperm(n_samples, generator=g) for g in generators])
    for start in range(0, n_samples, batch_size):
        yield order[:, start : start + batch_size]


def _take_rows(values: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    if index is None:
        return values
    rows = torch.arange(values.shape[0]).unsqueeze(1)
    return values[rows, index]
