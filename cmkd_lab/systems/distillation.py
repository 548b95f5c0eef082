"""Distillation: a student :class:`~cmkd_lab.models.Net` trained with any registered loss.

With ``loss="ce"`` it is the No-KD student (and the teacher's own training). A frozen teacher is
run once on the training data (``cache_teacher``, the default) or per batch, or its outputs come
with the data (``teacher.logits``, ``teacher.<layer>``). Loss-owned modules (FitNet's projector,
CRD's heads) train with the student and stay in the result. :func:`train_classifier` is the
common case in one call.

Data keys: ``x`` (student input), ``y`` (labels), ``x_teacher`` (the teacher's input),
``teacher.logits`` and ``teacher.<layer>`` (its cached outputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..engine.schedules import Ramp
from ..engine.stack import Stack, broadcast_models
from ..engine.trainer import FitResult, Head, StepResult, System, TrainConfig, fit
from ..losses import Distiller, StepOutputs, Vanilla
from ..models import ModelSpec, Net, build_model

TEACHER_PREFIX = "teacher."


@dataclass
class Distillation(System):
    """A student of ``spec`` trained with ``loss`` (default: :class:`~cmkd_lab.losses.Vanilla`, plain
    cross-entropy).

    ``ce_only`` (one flag per copy, or empty) marks copies that train on cross-entropy alone,
    weight 1, every other term of the loss weighted 0: No-KD students in the same fit as the
    loss's students (one fit instead of two; the loss must have ``hosts_baseline``)."""

    spec: ModelSpec
    loss: Distiller = field(default_factory=Vanilla)
    teacher: Stack | None = None
    cache_teacher: bool = True
    ce_only: Sequence[bool] = ()

    def __post_init__(self):
        self.frozen = {"teacher": self.teacher} if (self.teacher is not None and not self.cache_teacher) else {}
        if any(self.ce_only) and not self.loss.hosts_baseline:
            raise ValueError(
                f"loss {self.loss.name!r} cannot host cross-entropy-only copies (its terms are not known "
                "to be finite for any inputs); train the No-KD students in a fit of their own"
            )

    def build(self, seed):
        student = build_model(self.spec, seed)
        student_dims = _layer_widths(student, self.spec.input_shape, self.loss.student_layers)
        teacher_dims = self._teacher_widths()
        return {"student": student, **self.loss.modules(student_dims, teacher_dims, seed)}

    def _teacher_widths(self) -> dict[str, int]:
        if not self.loss.teacher_layers:
            return {}
        if self.teacher is None:
            raise ValueError(f"loss {self.loss.name!r} reads teacher layers {self.loss.teacher_layers}: pass teacher=")
        spec = self.teacher.spec
        return _layer_widths(Net(spec), spec.input_shape, self.loss.teacher_layers)

    def prepare(self, data, frozen):
        if self.loss.needs_teacher and f"{TEACHER_PREFIX}logits" not in data:
            if self.teacher is None or "x_teacher" not in data:
                raise ValueError(
                    f"loss {self.loss.name!r} distils from a teacher: pass teacher= and data['x_teacher'] "
                    "(or the teacher's outputs as data['teacher.logits'])"
                )
            if self.cache_teacher:
                data.update(
                    teacher_outputs(
                        self.teacher.to(data["x_teacher"].device), data["x_teacher"], self.loss.teacher_layers
                    )
                )
        if "y" in data and int(data["y"].max()) >= self.spec.n_classes:
            raise ValueError(f"labels must lie in 0..{self.spec.n_classes - 1} for a {self.spec.n_classes}-class model")
        if tuple(data["x"].shape[2:]) != self.spec.input_shape:
            raise ValueError(
                f"inputs have sample shape {tuple(data['x'].shape[2:])} but the model expects {self.spec.input_shape}"
            )
        return data

    def step(self, modules, batch):
        logits, features = modules["student"](batch["x"], features=self.loss.student_layers)
        if self.loss.needs_teacher:
            if f"{TEACHER_PREFIX}logits" in batch:
                teacher_logits = batch[f"{TEACHER_PREFIX}logits"]
                teacher_features = {layer: batch[TEACHER_PREFIX + layer] for layer in self.loss.teacher_layers}
            else:
                with torch.no_grad():
                    teacher_logits, teacher_features = modules["teacher"](
                        batch["x_teacher"], features=self.loss.teacher_layers
                    )
        else:
            teacher_logits, teacher_features = None, {}
        out = StepOutputs(logits, features, teacher_logits, teacher_features, batch.get("y"))
        return StepResult({"logits": logits}, self.loss.terms(out, modules))

    def weights(self):
        weights = self.loss.weights()
        if not any(self.ce_only):
            return weights
        only = torch.tensor(self.ce_only)
        return {term: _where_ce_only(only, weight, 1.0 if term == "ce" else 0.0) for term, weight in weights.items()}

    def heads(self):
        return {"student": Head("y", ("student",))}

    def predict(self, modules, batch):
        return {"student": modules["student"](batch["x"])[0]}

    def config(self):
        return {
            "system": "distillation",
            "spec": _spec_record(self.spec),
            "loss": self.loss.config(),
            "teacher": _spec_record(self.teacher.spec) if self.teacher is not None else None,
            **({"ce_only_copies": int(sum(self.ce_only))} if any(self.ce_only) else {}),
        }


def _where_ce_only(only: torch.Tensor, weight: float | Sequence[float] | Ramp, value: float) -> torch.Tensor | Ramp:
    """A term weight per copy: ``value`` where ``only``; elsewhere ``weight`` (a number, or one per
    copy that is not ``only``, in order); a warm-up keeps its ramp."""
    if isinstance(weight, Ramp):
        if value:
            raise ValueError("a warmed-up cross-entropy cannot host cross-entropy-only copies")
        return Ramp(_where_ce_only(only, weight.value, value), weight.epochs)
    own = torch.as_tensor(weight, dtype=torch.float32)
    if own.dim() and own.shape != (int((~only).sum()),):
        raise ValueError(
            f"a per-copy weight needs one value per copy that is not cross-entropy-only "
            f"({int((~only).sum())}), got {tuple(own.shape)}"
        )
    per_copy = torch.full((len(only),), value)
    per_copy[~only] = own
    return per_copy


@torch.no_grad()
def teacher_outputs(teacher: Stack, x: torch.Tensor, layers: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """A frozen teacher's logits and ``layers`` on ``x`` ``(M, N, ...)``, as data keys."""
    logits, features = teacher(teacher.broadcast(x), features=tuple(layers))
    return {f"{TEACHER_PREFIX}logits": logits, **{TEACHER_PREFIX + k: v for k, v in features.items()}}


def train_classifier(
    spec: ModelSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    config: TrainConfig,
    loss: Distiller | None = None,
    teacher: Stack | None = None,
    x_teacher: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    init: Stack | None = None,
    progress: bool | None = None,
    description: str = "fit",
) -> FitResult:
    """The common case in one call: ``len(seeds)`` students of ``spec`` on ``x`` ``(M, N, ...)``
    or shared ``(N, ...)``, labels ``y``, trained with ``loss`` from ``teacher`` run on
    ``x_teacher`` (or from given ``teacher_logits``); ``init`` gives the students' initial nets
    (one copy per seed) instead of building them from the seeds."""
    loss = loss or Vanilla()
    n_models, rank = len(seeds), len(spec.input_shape)
    data = {"x": broadcast_models(x, n_models, rank), "y": _labels(y, n_models)}
    if x_teacher is not None:
        if teacher is None:
            raise ValueError("x_teacher needs the teacher that reads it: pass teacher=")
        data["x_teacher"] = broadcast_models(x_teacher, n_models, len(teacher.spec.input_shape))
    if teacher_logits is not None:
        data[f"{TEACHER_PREFIX}logits"] = teacher_logits
    val_data = None
    if val is not None:
        val_data = {"x": broadcast_models(val[0], n_models, rank), "y": _labels(val[1], n_models)}
    system = Distillation(spec, loss, teacher)
    return fit(
        system,
        data,
        seeds=seeds,
        config=config,
        val=val_data,
        init=None if init is None else {"student": init},
        progress=progress,
        description=description,
    )


def _labels(y: torch.Tensor, n_models: int) -> torch.Tensor:
    y = torch.as_tensor(y, dtype=torch.long)
    return y.unsqueeze(0).expand(n_models, -1) if y.dim() == 1 else y


def _layer_widths(net: Net, input_shape: tuple[int, ...], layers: Sequence[str]) -> dict[str, int]:
    if not layers:
        return {}
    with torch.no_grad():
        _, features = net.eval()(torch.zeros(2, *input_shape), features=layers)
    return {k: math.prod(v.shape[1:]) for k, v in features.items()}


def _spec_record(spec: ModelSpec | None) -> dict | None:
    return asdict(spec) if spec is not None else None
