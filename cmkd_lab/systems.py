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

- DisCoM-KD: :class:`DisCoM` (every single-modality classifier at once, from unpaired batches,
  with invariant / informative / irrelevant features and a modality discriminator behind
  gradient reversal) and :class:`SumFusion` (a multimodal teacher, features summed).

Data keys: ``x`` (student input), ``y`` (labels), ``x_teacher`` (the teacher's input),
``teacher.logits`` and ``teacher.<layer>`` (its cached outputs); ``x_a``, ``x_b`` for the joint fit;
``teacher.embedding`` for embedding distillation; ``x.view1``, ``x.view2`` from :func:`two_views`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .losses import Distiller, EmbeddingLoss, StepOutputs, cmc_loss, cross_entropy, log_softmax
from .models import Dense, ModelSpec, Net, Stack, build_model, broadcast_models
from .training import FitResult, Head, Ramp, StepResult, System, TrainConfig, build_seeded, fit, gradient_reversal

TEACHER_PREFIX = "teacher."


@dataclass
class Distillation(System):
    """A student of ``spec`` trained with ``loss`` (default: plain cross-entropy).

    ``ce_only`` (one flag per copy, or empty) marks copies that train on cross-entropy alone,
    weight 1, every other term of the loss weighted 0: No-KD students in the same fit as the
    loss's students (one fit instead of two; the loss must have ``hosts_baseline``)."""

    spec: ModelSpec
    loss: Distiller = field(default_factory=Distiller)
    teacher: Stack | None = None
    cache_teacher: bool = True
    ce_only: Sequence[bool] = ()

    def __post_init__(self):
        self.frozen = {"teacher": self.teacher} if (self.teacher is not None and not self.cache_teacher) else {}
        if any(self.ce_only) and not self.loss.hosts_baseline:
            raise ValueError(f"loss {self.loss.name!r} cannot host cross-entropy-only copies (its terms are not known "
                             "to be finite for any inputs); train the No-KD students in a fit of their own")

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
        return {"system": "distillation", "spec": _spec_record(self.spec), "loss": self.loss.config(),
                "teacher": _spec_record(self.teacher.spec) if self.teacher is not None else None,
                **({"ce_only_copies": int(sum(self.ce_only))} if any(self.ce_only) else {})}


def _where_ce_only(only: torch.Tensor, weight: float | Sequence[float] | Ramp, value: float) -> torch.Tensor | Ramp:
    """A term weight per copy: ``value`` where ``only``; elsewhere ``weight`` (a number, or one per
    copy that is not ``only``, in order); a warm-up keeps its ramp."""
    if isinstance(weight, Ramp):
        if value:
            raise ValueError("a warmed-up cross-entropy cannot host cross-entropy-only copies")
        return Ramp(_where_ce_only(only, weight.value, value), weight.epochs)
    own = torch.as_tensor(weight, dtype=torch.float32)
    if own.dim() and own.shape != (int((~only).sum()),):
        raise ValueError(f"a per-copy weight needs one value per copy that is not cross-entropy-only "
                         f"({int((~only).sum())}), got {tuple(own.shape)}")
    per_copy = torch.full((len(only),), value)
    per_copy[~only] = own
    return per_copy


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
    init: Stack | None = None,
    progress: bool | None = None,
    description: str = "fit",
) -> FitResult:
    """The common case in one call: ``len(seeds)`` students of ``spec`` on ``x`` ``(M, N, ...)``
    or shared ``(N, ...)``, labels ``y``, trained with ``loss`` from ``teacher`` run on
    ``x_teacher`` (or from given ``teacher_logits``); ``init`` gives the students' initial nets
    (one copy per seed) instead of building them from the seeds."""
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
    return fit(system, data, seeds=seeds, config=config, val=val_data, init=None if init is None else {"student": init},
               progress=progress, description=description)


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
        return build_seeded({"encoder": lambda: Net(self.encoder), "projector": lambda: Dense(width, width)},
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
                             "head": lambda: Dense(self.encoder.n_classes, self.n_classes)}, seed, {"head": 2_000_003})

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


# ----------------------------------------------------------------------------- DisCoM-KD
MODALITY_TARGETS = ("class_index", "as_released")
DISCOM_TERMS = ("cl", "aux", "mod", "adv", "orth")


def modality_loss(logits: torch.Tensor, modality: int, targets: str = "class_index") -> torch.Tensor:
    """Cross-entropy of modality logits ``(..., N, K)`` whose rows all come from modality index
    ``modality``, averaged over rows.

    ``targets="class_index"``: the paper's K-way loss, target ``modality`` for every row.
    ``"as_released"``: the official code's float targets shaped like the logits (all ones for
    the first modality, all zeros for the others), which PyTorch's cross-entropy reads as class
    probabilities: ``−Σ_c t_c log p_c``, i.e. ``−Σ_c log p_c`` for the first modality (smallest at
    uniform predictions) and 0 for every other one, so neither the discriminator nor the
    modality classifiers learn to tell the modalities apart."""
    if targets not in MODALITY_TARGETS:
        raise ValueError(f"unknown modality_targets {targets!r}; valid: {', '.join(MODALITY_TARGETS)}")
    log_probs = log_softmax(logits)
    if targets == "class_index":
        return -log_probs[..., modality].mean(-1)
    fill = 1.0 if modality == 0 else 0.0
    return -(fill * log_probs).sum(-1).mean(-1)


class FeatureEncoder(nn.Module):
    """A :class:`~cmkd_lab.models.Net` whose output layer gives ``spec.n_classes`` features; with
    ``project``, followed by BatchNorm and ReLU (DisCoM-KD's Linear→BN→ReLU projection)."""

    def __init__(self, spec: ModelSpec, project: bool = False):
        super().__init__()
        self.net = Net(spec)
        self.norm = nn.BatchNorm1d(spec.n_classes) if project else None

    def forward(self, x):
        features = self.net(x)[0]
        return torch.relu(self.norm(features)) if self.norm is not None else features


def _with_outputs(spec: ModelSpec, width: int) -> ModelSpec:
    return dataclasses.replace(spec, n_classes=width)


@dataclass
class DisCoM(System):
    """DisCoM-KD (Ienco & Dantas, BMVC 2024): every single-modality classifier learnt at once,
    from unpaired batches of each modality, with disentangled features.

    Per modality m (``specs[m]``: its backbone, ``n_classes`` the task's classes): an invariant
    encoder gives s (``width`` features, Linear→BN→ReLU); a second encoder gives 2·``width``
    features whose halves are the informative d and the irrelevant u. Modules: ``invariant_m``,
    ``specific_m``, ``classifier_m`` (on [s; d], the deployed model of m), and shared by all
    modalities ``auxiliary`` (classes, on s and on d), ``discriminator`` (modalities, on s behind
    gradient reversal of scale ``grl_scale``), ``modality_d`` and ``modality_u`` (modalities, on d
    and on u). Terms, each averaged over the modalities: ``cl`` (CE of each classifier),
    ``aux`` (CE of the auxiliary classifier on s plus on d), ``mod`` (modality CE on d and on u,
    their mean), ``adv`` (modality CE of the discriminator), ``orth`` (mean cosine of (d, u) plus
    of (d, s)). Each weight is a number or one per copy (an ablation drops a term with 0).
    ``modality_targets`` picks the paper's class-index targets or the released code's
    (:func:`modality_loss`).

    Data keys: ``x.<m>`` and ``y.<m>`` per modality; train with ``feeds={m: ["x.<m>", "y.<m>"]}``
    so each modality is shuffled on its own (no pairing is used)."""

    specs: dict[str, ModelSpec]
    width: int = 32
    cl_weight: float | Sequence[float] = 1.0
    aux_weight: float | Sequence[float] = 1.0
    mod_weight: float | Sequence[float] = 1.0
    adv_weight: float | Sequence[float] = 1.0
    orth_weight: float | Sequence[float] = 1.0
    grl_scale: float = 1.0
    modality_targets: str = "class_index"

    def __post_init__(self):
        if len(self.specs) < 2:
            raise ValueError(f"DisCoM needs at least two modalities, got {list(self.specs)}")
        classes = {spec.n_classes for spec in self.specs.values()}
        if len(classes) != 1:
            raise ValueError(f"every modality's spec must have the same n_classes, got {sorted(classes)}")
        if self.modality_targets not in MODALITY_TARGETS:
            raise ValueError(f"unknown modality_targets {self.modality_targets!r}; valid: {', '.join(MODALITY_TARGETS)}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    @property
    def modalities(self) -> list[str]:
        return list(self.specs)

    @property
    def n_classes(self) -> int:
        return next(iter(self.specs.values())).n_classes

    def build(self, seed):
        width, k = self.width, len(self.specs)
        makers = {}
        for m, spec in self.specs.items():
            makers[f"invariant_{m}"] = lambda spec=spec: FeatureEncoder(_with_outputs(spec, width), project=True)
            makers[f"specific_{m}"] = lambda spec=spec: FeatureEncoder(_with_outputs(spec, 2 * width))
            makers[f"classifier_{m}"] = lambda: Dense(2 * width, self.n_classes)
        makers.update({"auxiliary": lambda: Dense(width, self.n_classes), "discriminator": lambda: Dense(width, k),
                       "modality_d": lambda: Dense(width, k), "modality_u": lambda: Dense(width, k)})
        return build_seeded(makers, seed, {name: 1_000_003 * i for i, name in enumerate(makers)})

    def features(self, modules, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s, d, u) of modality ``modality``'s inputs ``x``."""
        s = modules[f"invariant_{modality}"](x)
        d, u = modules[f"specific_{modality}"](x).chunk(2, dim=-1)
        return s, d, u

    def step(self, modules, batch):
        sums = dict.fromkeys(DISCOM_TERMS, 0.0)
        outputs = {}
        for i, m in enumerate(self.modalities):
            s, d, u = self.features(modules, m, batch[f"x.{m}"])
            y = batch[f"y.{m}"]
            logits = modules[f"classifier_{m}"](torch.cat([s, d], dim=-1))
            outputs[m] = logits
            sums["cl"] = sums["cl"] + cross_entropy(logits, y)
            sums["aux"] = sums["aux"] + cross_entropy(modules["auxiliary"](s), y) + cross_entropy(modules["auxiliary"](d), y)
            sums["mod"] = sums["mod"] + 0.5 * (modality_loss(modules["modality_d"](d), i, self.modality_targets)
                                               + modality_loss(modules["modality_u"](u), i, self.modality_targets))
            sums["adv"] = sums["adv"] + modality_loss(modules["discriminator"](gradient_reversal(s, self.grl_scale)), i,
                                                      self.modality_targets)
            sums["orth"] = sums["orth"] + F.cosine_similarity(d, u, dim=-1).mean(-1) + F.cosine_similarity(d, s, dim=-1).mean(-1)
        k = len(self.modalities)
        return StepResult(outputs, {term: value / k for term, value in sums.items()})

    def weights(self):
        return {"cl": self.cl_weight, "aux": self.aux_weight, "mod": self.mod_weight, "adv": self.adv_weight,
                "orth": self.orth_weight}

    def heads(self):
        return {m: Head(f"y.{m}", (f"invariant_{m}", f"specific_{m}", f"classifier_{m}")) for m in self.modalities}

    def predict(self, modules, batch):
        out = {}
        for m in self.modalities:
            s, d, _ = self.features(modules, m, batch[f"x.{m}"])
            out[m] = modules[f"classifier_{m}"](torch.cat([s, d], dim=-1))
        return out

    def config(self):
        return {"system": "discom", "specs": {m: _spec_record(s) for m, s in self.specs.items()}, "width": self.width,
                **{f"{term}_weight": getattr(self, f"{term}_weight") for term in DISCOM_TERMS},
                "grl_scale": self.grl_scale, "modality_targets": self.modality_targets}


@dataclass
class SumFusion(System):
    """A multimodal teacher on paired samples: one encoder per modality (``specs[m]``, its output
    layer giving ``width`` features), the features summed, one linear classifier (the official
    code's SUM fusion). Data keys ``x.<m>`` per modality and ``y``."""

    specs: dict[str, ModelSpec]
    width: int = 64

    def build(self, seed):
        n_classes = next(iter(self.specs.values())).n_classes
        makers = {f"encoder_{m}": lambda spec=spec: FeatureEncoder(_with_outputs(spec, self.width))
                  for m, spec in self.specs.items()}
        makers["classifier"] = lambda: Dense(self.width, n_classes)
        return build_seeded(makers, seed, {name: 1_000_003 * i for i, name in enumerate(makers)})

    def _logits(self, modules, batch):
        fused = sum(modules[f"encoder_{m}"](batch[f"x.{m}"]) for m in self.specs)
        return modules["classifier"](fused)

    def step(self, modules, batch):
        logits = self._logits(modules, batch)
        return StepResult({"logits": logits}, {"ce": cross_entropy(logits, batch["y"])})

    def heads(self):
        return {"fusion": Head("y", (*[f"encoder_{m}" for m in self.specs], "classifier"))}

    def predict(self, modules, batch):
        return {"fusion": self._logits(modules, batch)}

    def config(self):
        return {"system": "sum_fusion", "specs": {m: _spec_record(s) for m, s in self.specs.items()}, "width": self.width}
