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
from ..engine.trainer import ROW_MASK, FitResult, Head, StepResult, System, TrainConfig, fit
from ..losses import Distiller, StepOutputs, Vanilla
from ..models import ModelSpec, Net, build_model

TEACHER_PREFIX = "teacher."


@dataclass
class Distillation(System):
    """A student of ``spec`` trained with ``loss`` (default: :class:`~cmkd_lab.losses.Vanilla`, plain
    cross-entropy), from a frozen teacher when the loss needs one.

    - Modules: ``"student"`` (a :class:`~cmkd_lab.models.Net`) and the loss's own (FitNet's
      ``"projector"``, CRD's heads); with ``cache_teacher=False`` the frozen ``"teacher"``.
    - Data keys (per copy, B samples): ``x`` ``(B, *spec.input_shape)``, ``y`` ``(B,)``; for a
      loss that needs a teacher, ``x_teacher`` ``(B, *teacher input shape)`` or the teacher's
      outputs ``teacher.logits`` ``(B, C)`` and ``teacher.<layer>`` for its ``teacher_layers``.
      With ``cache_teacher`` the teacher runs once on ``x_teacher`` before training and adds those
      keys.
    - Terms: the loss's (``"ce"``, and ``"kd"``, ``"tckd"``/``"nckd"``, ``"hint"``…), weighted
      by its ``weights()``.
    - Heads: ``"student"`` (labels ``y``, module ``"student"``).

    Parameters
    ----------
    spec : ModelSpec
        The student's architecture, sized (input shape and classes).
    loss : Distiller
        A registered loss (:func:`~cmkd_lab.losses.make_loss`).
    teacher : Stack, optional
        The frozen teacher, M copies.
    cache_teacher : bool
        Run the teacher once on the training data (default) rather than at every step.
    ce_only : sequence of bool
        One flag per copy, or empty: flagged copies train on cross-entropy alone, weight 1,
        every other term weighted 0, so No-KD students share the loss's fit (the loss must
        have ``hosts_baseline``).
    """

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

    @property
    def weighs_rows(self) -> bool:
        """Copies of different sizes may share a fit when the loss weighs rows and the student has
        no BatchNorm (its batch statistics would count the padding rows)."""
        return self.loss.weighs_rows and not self.spec.batch_norm

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
        out = StepOutputs(logits, features, teacher_logits, teacher_features, batch.get("y"), batch.get(ROW_MASK))
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
    """A frozen teacher's outputs on ``x``, as data keys for :class:`Distillation`.

    Parameters
    ----------
    teacher : Stack
        M copies of a :class:`~cmkd_lab.models.Net`.
    x : Tensor, shape (M, N, ...) or (N, ...)
        The teacher's inputs (shared inputs are broadcast to every copy).
    layers : sequence of str
        Layers to return beside the logits.

    Returns
    -------
    dict of str to Tensor
        ``teacher.logits`` ``(M, N, C)`` and ``teacher.<layer>`` ``(M, N, ...)`` per layer.
    """
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
    """The common case in one call: ``len(seeds)`` = M students of ``spec`` trained with ``loss``
    by :func:`~cmkd_lab.engine.fit` (a :class:`Distillation`).

    Parameters
    ----------
    spec : ModelSpec
        The students' architecture, sized.
    x : Tensor, shape (M, N, ...) or (N, ...)
        Inputs per copy, or shared by all copies.
    y : Tensor of int, shape (M, N) or (N,)
        Labels.
    seeds : sequence of int
        One per student.
    config : TrainConfig
    loss : Distiller, optional
        Default: :class:`~cmkd_lab.losses.Vanilla` (cross-entropy only).
    teacher : Stack, optional
        The frozen teacher, M copies, for a loss that needs one.
    x_teacher : Tensor, shape (M, N, ...) or (N, ...), optional
        The teacher's inputs (needs ``teacher``).
    teacher_logits : Tensor, shape (M, N, C), optional
        The teacher's logits, given instead of ``teacher`` and ``x_teacher``.
    val : tuple of Tensor, optional
        Validation ``(x, y)``, shaped as ``x`` and ``y``.
    init : Stack, optional
        The students' initial nets (M copies) instead of building them from the seeds.
    progress : bool or None
    description : str
        As in :func:`~cmkd_lab.engine.fit`.

    Returns
    -------
    FitResult
        Module ``"student"`` (and the loss's own), head ``"student"``.
    """
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
