"""The kit's trainable systems (see :class:`cmkd_lab.training.System`).

- :class:`Distillation`: a student :class:`~cmkd_lab.models.Net` trained with any registered
  loss; with ``loss="ce"`` it is the No-KD student (and the teacher's own training). A frozen
  teacher is run once on the training data (``cache_teacher``, the default) or per batch, or
  its outputs come with the data (``teacher.logits``, ``teacher.<layer>``). Loss-owned modules
  (FitNet's projector, CRD's heads) train with the student and stay in the result.
- :class:`JointAgreement`: MFH Algorithm 1's joint fit, a teacher net on x_a and a student net
  on x_b trained together with ``CE_a + CE_b + w·MSE(logits_a, logits_b)``.
- Label-free representation learning (CMCD's three stages): :class:`ContrastiveSSL` (an encoder
  from two augmented views, :func:`two_views`), :class:`EmbeddingDistillation` (a target encoder
  from a frozen teacher's embeddings, any registered embedding loss) and
  :class:`EncoderClassifier` (a linear head on an encoder: a probe when the encoder is frozen,
  fine-tuning when it trains). An encoder is a :class:`~cmkd_lab.models.Net` whose output layer
  gives the embedding (``n_classes`` = embedding width).

Data keys: ``x`` (student input), ``y`` (labels), ``x_teacher`` (the teacher's input),
``teacher.logits`` and ``teacher.<layer>`` (its cached outputs); ``x_a``, ``x_b`` for the joint fit;
``teacher.embedding`` for embedding distillation; ``x.view1``, ``x.view2`` from :func:`two_views`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from .losses import Distiller, EmbeddingLoss, StepOutputs, cmc_loss, cross_entropy
from .models import ModelSpec, Net, Stack, build_model, broadcast_models
from .training import FitResult, Head, StepResult, System, TrainConfig, build_seeded, fit

TEACHER_PREFIX = "teacher."


@dataclass
class Distillation(System):
    """A student of ``spec`` trained with ``loss`` (default: plain cross-entropy)."""

    spec: ModelSpec
    loss: Distiller = field(default_factory=Distiller)
    teacher: Stack | None = None
    cache_teacher: bool = True

    def __post_init__(self):
        self.frozen = {"teacher": self.teacher} if (self.teacher is not None and not self.cache_teacher) else {}

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
                raise ValueError(f"loss {self.loss.name!r} distils from a teacher: pass teacher= and data['x_teacher'] "
                                 "(or the teacher's outputs as data['teacher.logits'])")
            if self.cache_teacher:
                data.update(teacher_outputs(self.teacher.to(data["x_teacher"].device), data["x_teacher"],
                                            self.loss.teacher_layers))
        if "y" in data and int(data["y"].max()) >= self.spec.n_classes:
            raise ValueError(f"labels must lie in 0..{self.spec.n_classes - 1} for a {self.spec.n_classes}-class model")
        if tuple(data["x"].shape[2:]) != self.spec.input_shape:
            raise ValueError(f"inputs have sample shape {tuple(data['x'].shape[2:])} but the model expects {self.spec.input_shape}")
        return data

    def step(self, modules, batch):
        logits, features = modules["student"](batch["x"], features=self.loss.student_layers)
        if self.loss.needs_teacher:
            if f"{TEACHER_PREFIX}logits" in batch:
                teacher_logits = batch[f"{TEACHER_PREFIX}logits"]
                teacher_features = {layer: batch[TEACHER_PREFIX + layer] for layer in self.loss.teacher_layers}
            else:
                with torch.no_grad():
                    teacher_logits, teacher_features = modules["teacher"](batch["x_teacher"], features=self.loss.teacher_layers)
        else:
            teacher_logits, teacher_features = None, {}
        out = StepOutputs(logits, features, teacher_logits, teacher_features, batch.get("y"))
        return StepResult({"logits": logits}, self.loss.terms(out, modules))

    def weights(self):
        return self.loss.weights()

    def heads(self):
        return {"student": Head("y", ("student",))}

    def predict(self, modules, batch):
        return {"student": modules["student"](batch["x"])[0]}

    def config(self):
        return {"system": "distillation", "spec": _spec_record(self.spec), "loss": self.loss.config(),
                "teacher": _spec_record(self.teacher.spec) if self.teacher is not None else None}


@dataclass
class JointAgreement(System):
    """MFH Algorithm 1's joint fit: teacher net on ``x_a`` (seed s), student net on ``x_b``
    (seed s + 1, so the two differ), ``CE_a + CE_b + agreement_weight · MSE(logits_a, logits_b)``."""

    teacher_spec: ModelSpec
    student_spec: ModelSpec
    agreement_weight: float = 1.0

    def build(self, seed):
        return {"teacher": build_model(self.teacher_spec, seed), "student": build_model(self.student_spec, seed + 1)}

    def step(self, modules, batch):
        logits_a, _ = modules["teacher"](batch["x_a"])
        logits_b, _ = modules["student"](batch["x_b"])
        terms = {"ce_a": cross_entropy(logits_a, batch["y"]), "ce_b": cross_entropy(logits_b, batch["y"]),
                 "mse": ((logits_a - logits_b) ** 2).mean()}
        return StepResult({"logits_a": logits_a, "logits_b": logits_b}, terms)

    def weights(self):
        return {"ce_a": 1.0, "ce_b": 1.0, "mse": self.agreement_weight}

    def heads(self):
        return {"teacher": Head("y", ("teacher",)), "student": Head("y", ("student",))}

    def predict(self, modules, batch):
        return {"teacher": modules["teacher"](batch["x_a"])[0], "student": modules["student"](batch["x_b"])[0]}

    def config(self):
        return {"system": "joint_agreement", "teacher": _spec_record(self.teacher_spec),
                "student": _spec_record(self.student_spec), "agreement_weight": self.agreement_weight}


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
    progress: bool | None = None,
    description: str = "fit",
) -> FitResult:
    """The common case in one call: ``len(seeds)`` students of ``spec`` on ``x`` ``(M, N, ...)``
    or shared ``(N, ...)``, labels ``y``, trained with ``loss`` from ``teacher`` run on
    ``x_teacher`` (or from given ``teacher_logits``)."""
    loss = loss or Distiller()
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
    return fit(system, data, seeds=seeds, config=config, val=val_data, progress=progress, description=description)


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


# ----------------------------------------------------------------------------- label-free stages
def two_views(noise: float = 0.1, drop: float = 0.2):
    """An ``augment`` for :func:`~cmkd_lab.training.fit`: two views of each sample of ``x``, each
    with its own Gaussian noise (std ``noise``) and a random ``drop`` share of its values set to
    zero, drawn per copy from the engine's generators. Our reading of "augmented views" for
    vectors and sensor windows, where image crops do not apply."""

    def augment(batch, generators):
        x = batch["x"]

        def view():
            draws = [(torch.randn(x.shape[1:], generator=g), torch.rand(x.shape[1:], generator=g)) for g in generators]
            gaussian, uniform = (torch.stack(part).to(x.device) for part in zip(*draws))
            return torch.where(uniform < drop, torch.zeros_like(x), x + noise * gaussian)

        return {**batch, "x.view1": view(), "x.view2": view()}

    return augment


@dataclass
class ContrastiveSSL(System):
    """Stage 1: an encoder trained without labels, symmetric InfoNCE between the projections of
    two augmented views of each sample (SimCLR-like, in-batch negatives). Train it with
    ``augment=two_views()``; ``encoder`` gives the representation, ``projector`` is dropped after."""

    encoder: ModelSpec
    temperature: float = 0.1

    def build(self, seed):
        width = self.encoder.n_classes
        return build_seeded({"encoder": lambda: Net(self.encoder), "projector": lambda: nn.Linear(width, width)},
                            seed, {"projector": 1_000_003})

    def step(self, modules, batch):
        project = lambda x: modules["projector"](modules["encoder"](x)[0])  # noqa: E731
        return StepResult({}, {"infonce": cmc_loss(project(batch["x.view1"]), project(batch["x.view2"]), self.temperature)})

    def config(self):
        return {"system": "contrastive_ssl", "encoder": _spec_record(self.encoder), "temperature": self.temperature}


@dataclass
class EmbeddingDistillation(System):
    """Stage 2: a target ``encoder`` learns from a frozen teacher's embeddings of the paired source
    samples (``teacher.embedding``, given with the data), without labels, by ``loss``."""

    encoder: ModelSpec
    loss: EmbeddingLoss
    teacher_dim: int

    def build(self, seed):
        return {"encoder": build_model(self.encoder, seed), **self.loss.modules(self.encoder.n_classes, self.teacher_dim, seed)}

    def step(self, modules, batch):
        student = modules["encoder"](batch["x"])[0]
        return StepResult({}, self.loss.terms(student, batch[f"{TEACHER_PREFIX}embedding"], modules))

    def weights(self):
        return self.loss.weights()

    def config(self):
        return {"system": "embedding_distillation", "encoder": _spec_record(self.encoder), "loss": self.loss.config()}


@dataclass
class EncoderClassifier(System):
    """Stage 3: a linear head on an encoder, trained on labels. Start the encoder from an earlier
    stage (``init``); freeze it for a linear probe, train it too to fine-tune."""

    encoder: ModelSpec
    n_classes: int

    def build(self, seed):
        return build_seeded({"encoder": lambda: Net(self.encoder),
                             "head": lambda: nn.Linear(self.encoder.n_classes, self.n_classes)}, seed, {"head": 2_000_003})

    def step(self, modules, batch):
        logits = self._logits(modules, batch)
        return StepResult({"logits": logits}, {"ce": cross_entropy(logits, batch["y"])})

    def _logits(self, modules, batch):
        return modules["head"](modules["encoder"](batch["x"])[0])

    def heads(self):
        return {"classifier": Head("y", ("encoder", "head"))}

    def predict(self, modules, batch):
        return {"classifier": self._logits(modules, batch)}

    def config(self):
        return {"system": "encoder_classifier", "encoder": _spec_record(self.encoder), "n_classes": self.n_classes}
