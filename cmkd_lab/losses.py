"""Losses: pure functions, and the distillation losses the trainer looks up by name.

Shapes: logits are ``(..., N, C)`` and labels ``(..., N)``; every function reduces over the
sample axis and returns one value per leading index, so the same code serves one model
(``(N, C)`` → scalar) and a stack of M models (``(M, N, C)`` → ``(M,)``). Reductions are
explicit: KD's ``reduction`` must be named ("batchmean" sums over classes and averages over
samples, the KL definition; "mean" also averages over classes, PyTorch's old default, as in
the official MFH code) and the T² factor is an option.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import CORRELATION_EPS, channel_correlation, log_softmax, off_diagonal_mean, spatial_log_probs
from .models import Dense, seeded
from .training import Ramp
from .registry import Registry, check_options

KD_REDUCTIONS = ("batchmean", "mean")
PSSM_COSINE_THRESHOLD = 0.996  # NTDH's masking: a wrong teacher still counts if its logits align this well


# ----------------------------------------------------------------------------- pure functions
def _per_model(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-model tensor ``(M,)`` shaped to broadcast against ``like`` ``(M, N, C)``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim())) if value.dim() else value


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples: ``(..., N, C)``, ``(..., N)`` → ``(...)``."""
    log_probs = log_softmax(logits)
    return -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(-1)


def kl_divergence(target_log_probs: torch.Tensor, input_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ input) per sample, summed over the class axis: ``(..., N, C)`` → ``(..., N)``."""
    return (target_log_probs.exp() * (target_log_probs - input_log_probs)).sum(-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float | torch.Tensor,
    reduction: str,
    t2_scale: bool = False,
) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) ‖ softmax(s/T)), reduced as ``reduction`` says, times T² if asked."""
    if reduction not in KD_REDUCTIONS:
        raise ValueError(f"unknown KD reduction {reduction!r}; valid: {', '.join(KD_REDUCTIONS)}")
    t = _per_model(temperature, student_logits)
    per_sample = kl_divergence(log_softmax(teacher_logits / t), log_softmax(student_logits / t))
    loss = per_sample.mean(-1)
    if reduction == "mean":
        loss = loss / student_logits.shape[-1]
    if t2_scale:
        loss = loss * torch.as_tensor(temperature, dtype=loss.dtype) ** 2
    return loss


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float | torch.Tensor,
    t2_scale: bool = True,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al. 2022): returns (TCKD, NCKD), each averaged over samples.

    TCKD is the KL between the binary (target, rest) distributions; NCKD the KL between the
    distributions over the non-target classes (target logit masked out). ``sample_weights``
    ``(..., N)`` (e.g. :func:`pssm_weights`) weigh each sample's terms before the average.
    """
    t = _per_model(temperature, student_logits)
    target = F.one_hot(labels, student_logits.shape[-1]).bool()
    p_student = F.softmax(student_logits / t, -1)
    p_teacher = F.softmax(teacher_logits / t, -1)

    def binary(p):
        p_target = (p * target).sum(-1, keepdim=True)
        return torch.cat([p_target, 1 - p_target], -1).clamp_min(1e-12).log()

    tckd = weighted_sample_mean(kl_divergence(binary(p_teacher), binary(p_student)), sample_weights)
    masked_student = log_softmax(student_logits.masked_fill(target, float("-inf")) / t)
    masked_teacher = log_softmax(teacher_logits.masked_fill(target, float("-inf")) / t)
    non_target = ~target
    nckd = weighted_sample_mean(
        (masked_teacher.exp() * (masked_teacher - masked_student)).where(non_target, 0.0).sum(-1), sample_weights
    )
    if t2_scale:
        scale = torch.as_tensor(temperature, dtype=tckd.dtype) ** 2
        tckd, nckd = tckd * scale, nckd * scale
    return tckd, nckd


def weighted_sample_mean(per_sample: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the sample axis of ``per_sample`` ``(..., N)``, each sample weighted if weights are given.

    Weighted: Σ ω_i ℓ_i / N (not / Σ ω_i), so ω = 0 removes a sample as masking intends and
    ω = 1 everywhere gives the plain mean.
    """
    if sample_weights is None:
        return per_sample.mean(-1)
    return (sample_weights * per_sample).mean(-1)


def feature_regression_loss(
    projected_student: torch.Tensor,
    teacher_features: torch.Tensor,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """FitNet-style hint: MSE between (already projected) student features and teacher features,
    ``(..., N, D)`` each, averaged over D and then over samples (optionally weighted)."""
    return weighted_sample_mean(((projected_student - teacher_features) ** 2).mean(-1), sample_weights)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class StepOutputs:
    """What a distillation loss sees at one step (model axis first when stacked)."""

    student_logits: torch.Tensor
    student_features: dict[str, torch.Tensor]
    teacher_logits: torch.Tensor | None
    teacher_features: dict[str, torch.Tensor]
    labels: torch.Tensor


@dataclass(frozen=True)
class Distiller:
    """Base of every registered loss: ``terms()`` returns named loss terms.

    ``ce_weight`` weighs the student's cross-entropy; subclasses add their own weighted terms.
    Weights may be one number or one per model (a sequence), so one stacked fit can sweep them.
    A loss that owns trainable parts (a projector, embedding heads) builds them in ``modules()``;
    the system trains them with the student and keeps them in the result.
    """

    ce_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "ce"
    needs_teacher: ClassVar[bool] = False
    @property
    def hosts_baseline(self) -> bool:
        """Whether a No-KD student may train in the same fit as this loss's students, with every
        term but "ce" weighted 0 (``Distillation.ce_only``). Only for losses whose terms are
        finite for any inputs: a zero weight then adds exact zeros to its gradient."""
        return False

    @property
    def student_layers(self) -> tuple[str, ...]:
        return ()

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return ()

    def modules(self, student_dims: dict[str, int], teacher_dims: dict[str, int], seed: int) -> dict[str, nn.Module]:
        """The loss's own trainable modules for the copy of ``seed``, by name; none by default.
        ``*_dims`` give the flattened width of each student/teacher layer the loss reads."""
        return {}

    def terms(self, out: StepOutputs, modules: Mapping[str, Callable]) -> dict[str, torch.Tensor]:
        return {"ce": cross_entropy(out.student_logits, out.labels)}

    def weights(self) -> dict[str, float | Sequence[float]]:
        """The weight of each term that ``terms()`` returns."""
        return {"ce": self.ce_weight}

    def config(self) -> dict:
        return {"loss": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


LOSSES: Registry[type[Distiller]] = Registry("loss")
LOSSES.register("ce", about="cross-entropy only: the student without distillation")(Distiller)


def make_loss(name: str, **options) -> Distiller:
    """Build a registered loss by name; unknown names or options raise a ValueError listing the valid ones."""
    cls = LOSSES.get(name)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss {name!r}; valid options: {', '.join(sorted(valid))}")
    required = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in options
    ]
    if required:
        raise ValueError(f"loss {name!r} needs explicit option(s): {', '.join(required)}")
    return cls(**options)


@LOSSES.register("kd", about="CE + Hinton KD (temperature; reduction batchmean|mean; optional T²)")
@dataclass(frozen=True, kw_only=True)
class KD(Distiller):
    temperature: float
    reduction: str
    t2_scale: bool = False
    kd_weight: float | Sequence[float] = 1.0
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "kd"
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self):
        if self.reduction not in KD_REDUCTIONS:
            raise ValueError(f"unknown KD reduction {self.reduction!r}; valid: {', '.join(KD_REDUCTIONS)}")

    def terms(self, out, modules):
        if self.masking:
            weights = pssm_weights(out.teacher_logits, out.student_logits, out.labels, self.mask_threshold)
            kd = masked_kd_loss(out.student_logits, out.teacher_logits, weights, self.temperature, self.reduction, self.t2_scale)
        else:
            kd = kd_loss(out.student_logits, out.teacher_logits, self.temperature, self.reduction, self.t2_scale)
        return {**super().terms(out, modules), "kd": kd}

    def weights(self):
        return {**super().weights(), "kd": self.kd_weight}

    @property
    def hosts_baseline(self) -> bool:
        return not self.masking  # a KL divergence of two softmaxes is finite; masking's cosine weights are not vetted


@LOSSES.register("dkd", about="CE + decoupled KD: alpha·TCKD + beta·NCKD, logged as separate terms")
@dataclass(frozen=True, kw_only=True)
class DKD(Distiller):
    alpha: float | Sequence[float] = 1.0
    beta: float | Sequence[float] = 8.0
    temperature: float = 4.0
    t2_scale: bool = True
    warmup_epochs: int = 0  # the DKD paper's linear warm-up of both terms (0: none)
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "dkd"
    needs_teacher: ClassVar[bool] = True

    def terms(self, out, modules):
        weights = _mask(self, out)
        tckd, nckd = dkd_loss(out.student_logits, out.teacher_logits, out.labels, self.temperature, self.t2_scale, weights)
        return {**super().terms(out, modules), "tckd": tckd, "nckd": nckd}

    def weights(self):
        if self.warmup_epochs:
            return {**super().weights(), "tckd": Ramp(self.alpha, self.warmup_epochs), "nckd": Ramp(self.beta, self.warmup_epochs)}
        return {**super().weights(), "tckd": self.alpha, "nckd": self.beta}


@LOSSES.register("fitnet", about="CE + feature regression through a learned linear projector (FitNet hint)")
@dataclass(frozen=True, kw_only=True)
class FitNet(Distiller):
    student_layer: str = "embedding"
    teacher_layer: str = "embedding"
    hint_weight: float | Sequence[float] = 1.0
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "fitnet"
    needs_teacher: ClassVar[bool] = True

    @property
    def student_layers(self):
        return (self.student_layer,)

    @property
    def teacher_layers(self):
        return (self.teacher_layer,)

    def modules(self, student_dims, teacher_dims, seed):
        # its own stream, apart from the model's initialisation
        make = lambda: Dense(student_dims[self.student_layer], teacher_dims[self.teacher_layer])  # noqa: E731
        return {"projector": seeded(make, seed + 1_000_003)}

    def terms(self, out, modules):
        start = out.student_logits.dim() - 1  # the first axis after the samples
        hint = feature_regression_loss(
            modules["projector"](out.student_features[self.student_layer].flatten(start)),
            out.teacher_features[self.teacher_layer].flatten(start),
            _mask(self, out),
        )
        return {**super().terms(out, modules), "hint": hint}

    def weights(self):
        return {**super().weights(), "hint": self.hint_weight}


# ----------------------------------------------------------------------------- NTDH: masking
def pssm_weights(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    threshold: float = PSSM_COSINE_THRESHOLD,
) -> torch.Tensor:
    """NTDH's per-sample masking weight ω ``(..., N)`` (papers.md §2, "PSSM").

    ω = 1 where the teacher predicts the label; where it is wrong, ω = (cos(z_t, z_s) + 1)/2 if
    the cosine similarity of the two logit vectors is at least ``threshold``, else 0. The
    weights are constants for the gradient (detached): they choose samples, they are not learned.
    """
    with torch.no_grad():
        correct = teacher_logits.argmax(-1) == labels
        cosine = F.cosine_similarity(teacher_logits, student_logits, dim=-1)
        aligned = torch.where(cosine >= threshold, (cosine + 1) / 2, torch.zeros_like(cosine))
        return torch.where(correct, torch.ones_like(cosine), aligned)


def masked_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    sample_weights: torch.Tensor,
    temperature: float | torch.Tensor,
    reduction: str,
    t2_scale: bool = False,
) -> torch.Tensor:
    """KD with NTDH masking: both logit vectors of sample i are scaled by ω_i inside the KL,
    so ω = 0 makes both distributions uniform (the sample drops out) and ω = 1 leaves KD as is."""
    scale = sample_weights.unsqueeze(-1)
    return kd_loss(scale * student_logits, scale * teacher_logits, temperature, reduction, t2_scale)


def _mask(distiller, out: StepOutputs) -> torch.Tensor | None:
    """The PSSM weights when ``distiller.masking`` is on, else None (no weighting)."""
    if not distiller.masking:
        return None
    return pssm_weights(out.teacher_logits, out.student_logits, out.labels, distiller.mask_threshold)


# ----------------------------------------------------------------------------- relational losses
# Features are (..., N, D). Each loss is a mean over "anchor" samples of a per-anchor term, so
# the NTDH masking weights (one per sample) weigh anchors; with no weights each loss is exactly
# its usual definition (RepDistiller's implementations are the reference).
def _pairwise_distances(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances ``(..., N, N)`` with a zero diagonal (RKD's ``pdist``)."""
    squared = features.pow(2).sum(-1)
    gram = features @ features.transpose(-1, -2)
    distances = (squared.unsqueeze(-1) + squared.unsqueeze(-2) - 2 * gram).clamp_min(eps).sqrt()
    eye = torch.eye(features.shape[-2], dtype=torch.bool, device=features.device)
    return distances.masked_fill(eye, 0.0)


def rkd_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relational KD (Park et al. 2019): returns (distance term, angle term), each a Huber loss.

    Distance: pairwise distances, each set divided by its mean off-diagonal distance. Angle:
    for anchor a, the cosine between (f_i − f_a) and (f_k − f_a) for all i, k. Memory is
    O(N³) per model for the angle term: use mini-batches.
    """
    n = student_features.shape[-2]

    def normalised(features):
        d = _pairwise_distances(features)
        return d / (d.sum((-1, -2), keepdim=True) / max(n * (n - 1), 1)).clamp_min(1e-12)

    with torch.no_grad():
        t_distance = normalised(teacher_features)
    s_distance = normalised(student_features)
    distance = weighted_sample_mean(F.smooth_l1_loss(s_distance, t_distance, reduction="none").mean(-1), sample_weights)

    def angles(features):
        directions = F.normalize(features.unsqueeze(-3) - features.unsqueeze(-2), p=2, dim=-1)  # [a, i] = f_i − f_a
        return directions @ directions.transpose(-1, -2)  # [a, i, k]

    with torch.no_grad():
        t_angle = angles(teacher_features)
    angle = weighted_sample_mean(F.smooth_l1_loss(angles(student_features), t_angle, reduction="none").mean((-1, -2)),
                                 sample_weights)
    return distance, angle


def pkt_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, sample_weights: torch.Tensor | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas 2018): KL between the teacher's and the
    student's conditional distributions over neighbours, from cosine similarities mapped to [0, 1]."""

    def conditional(features):
        unit = features / (features.norm(dim=-1, keepdim=True) + eps)
        similarity = (unit @ unit.transpose(-1, -2) + 1.0) / 2.0
        return similarity / similarity.sum(-1, keepdim=True)

    p_teacher, p_student = conditional(teacher_features), conditional(student_features)
    per_anchor = (p_teacher * torch.log((p_teacher + eps) / (p_student + eps))).mean(-1)
    return weighted_sample_mean(per_anchor, sample_weights)


def sp_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori 2019): squared difference of the row-normalised
    Gram matrices, ‖G_t − G_s‖²_F / N²."""

    def gram(features):
        return F.normalize(features @ features.transpose(-1, -2), p=2, dim=-1)

    n = student_features.shape[-2]
    per_anchor = (gram(teacher_features) - gram(student_features)).pow(2).sum(-1) / n
    return weighted_sample_mean(per_anchor, sample_weights)


def crd_loss(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    temperature: float,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contrastive representation distillation with in-batch negatives (CRD without its memory bank).

    Embeddings ``(..., N, d)`` are L2-normalised; similarity / ``temperature`` logits between
    every student and teacher sample; sample i's positive is its own pair, the other N − 1 are
    negatives. Summed over both anchors (student → teacher and teacher → student), as CRD does.
    """
    z_s = F.normalize(student_embedding, dim=-1)
    z_t = F.normalize(teacher_embedding, dim=-1)
    logits = z_s @ z_t.transpose(-1, -2) / temperature
    diagonal = torch.diagonal(logits, dim1=-2, dim2=-1)
    per_sample = (torch.logsumexp(logits, -1) - diagonal) + (torch.logsumexp(logits, -2) - diagonal)
    return weighted_sample_mean(per_sample, sample_weights)


@dataclass(frozen=True, kw_only=True)
class _FeatureDistiller(Distiller):
    """Base of the relational losses: one student and one teacher layer, optional NTDH masking."""

    student_layer: str = "embedding"
    teacher_layer: str = "embedding"
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    needs_teacher: ClassVar[bool] = True

    @property
    def student_layers(self):
        return (self.student_layer,)

    @property
    def teacher_layers(self):
        return (self.teacher_layer,)

    def features(self, out: StepOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Student and teacher features flattened beyond the sample axis: ``(M, N, D)`` or ``(N, D)``."""
        start = out.student_logits.dim() - 1  # the first axis after the samples
        return (out.student_features[self.student_layer].flatten(start),
                out.teacher_features[self.teacher_layer].flatten(start))


@LOSSES.register("rkd", about="CE + relational KD: distance and angle terms on a feature layer (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class RKD(_FeatureDistiller):
    distance_weight: float | Sequence[float] = 25.0  # RepDistiller's defaults
    angle_weight: float | Sequence[float] = 50.0

    name: ClassVar[str] = "rkd"

    def terms(self, out, modules):
        distance, angle = rkd_loss(*self.features(out), _mask(self, out))
        return {**super().terms(out, modules), "rkd_distance": distance, "rkd_angle": angle}

    def weights(self):
        return {**super().weights(), "rkd_distance": self.distance_weight, "rkd_angle": self.angle_weight}


@LOSSES.register("pkt", about="CE + probabilistic knowledge transfer on a feature layer (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class PKT(_FeatureDistiller):
    pkt_weight: float | Sequence[float] = 30000.0  # RepDistiller's default

    name: ClassVar[str] = "pkt"

    def terms(self, out, modules):
        return {**super().terms(out, modules), "pkt": pkt_loss(*self.features(out), _mask(self, out))}

    def weights(self):
        return {**super().weights(), "pkt": self.pkt_weight}


@LOSSES.register("sp", about="CE + similarity-preserving KD on a feature layer (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class SP(_FeatureDistiller):
    sp_weight: float | Sequence[float] = 3000.0  # RepDistiller's default

    name: ClassVar[str] = "sp"

    def terms(self, out, modules):
        return {**super().terms(out, modules), "sp": sp_loss(*self.features(out), _mask(self, out))}

    def weights(self):
        return {**super().weights(), "sp": self.sp_weight}


@LOSSES.register("crd", about="CE + contrastive representation distillation, in-batch negatives (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class CRD(_FeatureDistiller):
    embed_dim: int = 32
    nce_temperature: float = 0.07  # CRD's default
    crd_weight: float | Sequence[float] = 0.8  # RepDistiller's default

    name: ClassVar[str] = "crd"

    def modules(self, student_dims, teacher_dims, seed):
        """A linear embedding head per side (the teacher's head trains; the teacher does not)."""
        return {
            f"embed_{side}": seeded(lambda d=dims[layer]: Dense(d, self.embed_dim), seed + offset)
            for side, dims, layer, offset in (("student", student_dims, self.student_layer, 2_000_003),
                                              ("teacher", teacher_dims, self.teacher_layer, 3_000_017))
        }

    def terms(self, out, modules):
        student, teacher = self.features(out)
        crd = crd_loss(modules["embed_student"](student), modules["embed_teacher"](teacher), self.nce_temperature, _mask(self, out))
        return {**super().terms(out, modules), "crd": crd}

    def weights(self):
        return {**super().weights(), "crd": self.crd_weight}


# ----------------------------------------------------------------------------- label-free embedding losses (CMCD)
# Contrastive cross-modality distillation (CMCD, arXiv 2405.03355): a student learns from a frozen
# teacher's embeddings without labels. Embeddings are (..., N, d); each loss L2-normalises them and
# returns the mean over samples (one value per leading index). Written for vmap: no .item(), no
# branching on tensor values, no in-place ops on inputs. The L2 alignment term is
# feature_regression_loss (a projector, then MSE), reused as is.
def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Each row of ``embeddings`` ``(..., N, d)`` scaled to unit L2 norm (zero rows stay zero).

    Rows are first divided by their largest entry, a constant for the gradient: the direction
    does not depend on it, and F.normalize alone returns 0 for float32 rows above ~1e19, whose
    squared norm overflows to inf.
    """
    largest = embeddings.detach().abs().amax(-1, keepdim=True)
    scale = torch.where(largest > 0, largest, torch.ones_like(largest))
    return F.normalize(embeddings / scale, dim=-1)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """One-directional InfoNCE with in-batch negatives: for query i, the cross-entropy of
    ``q̂_i · k̂_j / temperature`` over keys j with target j = i, averaged over queries.
    ``(..., N, d)`` each → ``(...)``."""
    logits = unit_rows(queries) @ unit_rows(keys).transpose(-1, -2) / temperature
    return (torch.logsumexp(logits, -1) - torch.diagonal(logits, dim1=-2, dim2=-1)).mean(-1)


def cmc_loss(source: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric cross-modal InfoNCE (the CLIP loss): the mean of both directions. Also the
    self-supervised loss between two augmented views of one modality."""
    return (info_nce(source, target, temperature) + info_nce(target, source, temperature)) / 2


def cmd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    anchors: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """CMD (SEED-like similarity distillation): the cross-entropy −Σ_j p_t(j|i) log p_s(j|i)
    between the teacher's and the student's softmax over their similarities to ``anchors``
    ``(..., K, d)`` (teacher embeddings: the batch, or a queue), averaged over samples i.
    ``student``, ``teacher`` ``(..., N, d)``. The teacher's distribution is a fixed target:
    teacher and anchors are detached."""
    anchors = unit_rows(anchors.detach()).transpose(-1, -2)
    teacher_probs = F.softmax(unit_rows(teacher.detach()) @ anchors / teacher_temperature, -1)
    student_log_probs = F.log_softmax(unit_rows(student) @ anchors / student_temperature, -1)
    return -(teacher_probs * student_log_probs).sum(-1).mean(-1)


class EmbeddingQueue(nn.Module):
    """A FIFO memory of the ``size`` most recent (unit-norm) teacher embeddings, for CMD's anchors.

    The state is one buffer ``queue`` ``(size, dim)``, started as seeded random unit vectors, and
    it is shifted rather than indexed by a pointer, so stacked copies run under
    ``vmap(functional_call)`` each update their own slice.
    """

    def __init__(self, size: int, dim: int, seed: int):
        super().__init__()
        start = torch.randn(size, dim, generator=torch.Generator().manual_seed(int(seed)))
        self.register_buffer("queue", F.normalize(start, dim=-1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The anchors for this batch, ``embeddings`` ``(B, dim)`` (unit-normalised) then the
        queue; in train mode the batch then enters the queue and its oldest rows leave."""
        new = unit_rows(embeddings.detach())
        anchors = torch.cat([new, self.queue])
        if self.training:  # as BatchNorm's statistics: evaluating a loss must not change the state
            self.queue.copy_(anchors[: self.queue.shape[0]])
        return anchors


@dataclass(frozen=True, kw_only=True)
class EmbeddingLoss:
    """A label-free distillation loss between a student's and a (frozen) teacher's embeddings."""

    weight: float = 1.0

    name: ClassVar[str]

    def modules(self, student_dim: int, teacher_dim: int, seed: int) -> dict[str, nn.Module]:
        """The loss's own trainable (or stateful) parts for the copy of ``seed``; none by default."""
        return {}

    def terms(self, student: torch.Tensor, teacher: torch.Tensor, modules: Mapping[str, Callable]) -> dict[str, torch.Tensor]:
        """Named loss terms for one model's embeddings, ``student`` and ``teacher`` ``(N, d)``."""
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """The weight of each term that ``terms()`` returns."""
        return {self.name: self.weight}

    def config(self) -> dict:
        return {"loss": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


EMBEDDING_LOSSES: Registry[type[EmbeddingLoss]] = Registry("embedding loss")


def make_embedding_loss(name: str, **options) -> EmbeddingLoss:
    """Build a registered embedding loss by name; unknown names or options raise a ValueError listing the valid ones."""
    cls = EMBEDDING_LOSSES.get(name)
    check_options(f"embedding loss {name!r}", cls, options)
    return cls(**options)


def _check_same_space(loss: str, student_dim: int, teacher_dim: int) -> None:
    """Similarity losses compare student and teacher embeddings directly: their widths must match."""
    if student_dim != teacher_dim:
        raise ValueError(f"embedding loss {loss!r} compares embeddings in one space, but the student's have "
                         f"{student_dim} dimensions and the teacher's {teacher_dim}; project them, or use 'l2'")


@EMBEDDING_LOSSES.register("cmd", about="CMD: the student matches the teacher's softmax similarities to anchors (batch or queue)")
@dataclass(frozen=True, kw_only=True)
class CMD(EmbeddingLoss):
    # our reading: the paper does not fix these; a sharper teacher, as in SEED
    student_temperature: float = 0.1
    teacher_temperature: float = 0.05
    queue_size: int = 0  # 0: the anchors are the batch's teacher embeddings; K > 0: the batch, then a queue of K earlier ones

    name: ClassVar[str] = "cmd"

    def __post_init__(self):
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0 (0: no queue), got {self.queue_size}")

    def modules(self, student_dim, teacher_dim, seed):
        _check_same_space(self.name, student_dim, teacher_dim)
        if not self.queue_size:
            return {}
        return {"queue": EmbeddingQueue(self.queue_size, teacher_dim, seed + 4_000_037)}  # its own stream

    def terms(self, student, teacher, modules):
        anchors = modules["queue"](teacher) if self.queue_size else teacher
        return {"cmd": cmd_loss(student, teacher, anchors, self.student_temperature, self.teacher_temperature)}


@EMBEDDING_LOSSES.register("cmc", about="CMC: symmetric cross-modal InfoNCE between student and teacher embeddings (CLIP loss)")
@dataclass(frozen=True, kw_only=True)
class CMC(EmbeddingLoss):
    temperature: float = 0.07

    name: ClassVar[str] = "cmc"

    def modules(self, student_dim, teacher_dim, seed):
        _check_same_space(self.name, student_dim, teacher_dim)
        return {}

    def terms(self, student, teacher, modules):
        return {"cmc": cmc_loss(student, teacher, self.temperature)}


@EMBEDDING_LOSSES.register("l2", about="L2 alignment: MSE between linearly projected student and teacher embeddings")
@dataclass(frozen=True, kw_only=True)
class L2Alignment(EmbeddingLoss):
    name: ClassVar[str] = "l2"

    def modules(self, student_dim, teacher_dim, seed):
        # its own stream, apart from the model's initialisation (as FitNet's projector)
        return {"projector": seeded(lambda: Dense(student_dim, teacher_dim), seed + 1_000_003)}

    def terms(self, student, teacher, modules):
        return {"l2": feature_regression_loss(modules["projector"](student), teacher)}


# ----------------------------------------------------------------------------- DS-CMKD: dimensional structure
# DS-CMKD (Si et al., arXiv 2306.15977; papers.md §4) makes the low-quality modality's output
# features channel-wise independent and its intermediate features spatially uniform. The paper
# releases no code: both forms below are our reading of its abstract. They use the diagnostics'
# primitives in :mod:`cmkd_lab.metrics`, so a loss and the quantity it moves are one formula.
DS_GUIDES = ("none", "kd", "fitnet")


def channel_independence_loss(features: torch.Tensor, n_spatial: int = 0, eps: float = CORRELATION_EPS) -> torch.Tensor:
    """Our reading of DS-CMKD's independence term: standardise each channel of the pooled
    ``features`` ``(..., N, C)`` over the batch (a map with ``n_spatial`` trailing axes is pooled
    first), take their correlation matrix R and return the mean squared off-diagonal entry,
    Σ_{i≠j} R_ij² / (C² − C). 0 for uncorrelated channels, 1 for channels that are all one
    signal (up to sign); unchanged by rescaling or shifting a channel."""
    return off_diagonal_mean(channel_correlation(features, n_spatial, eps).pow(2))


def spatial_uniformity_loss(feature_map: torch.Tensor, n_spatial: int = 2) -> torch.Tensor:
    """Our reading of DS-CMKD's uniformity term: per sample and channel of ``feature_map``
    ``(..., N, C, H, W)``, KL(softmax over the H·W positions ‖ uniform) = log(H·W) − entropy,
    averaged over channels and samples → ``(...)``. 0 for a flat map; unchanged by adding a
    constant to a channel (the softmax's shift invariance), but not by scaling it."""
    log_p = spatial_log_probs(feature_map, n_spatial)
    kl = (log_p.exp() * log_p).sum(-1) + math.log(log_p.shape[-1])
    return kl.mean((-2, -1))


@LOSSES.register("ds", about="CE + DS-CMKD (our reading): channel independence of the output features and spatial "
                             "uniformity of an intermediate map; guide none|kd|fitnet from the teacher")
@dataclass(frozen=True, kw_only=True)
class DimensionalStructure(Distiller):
    """CE + ``independence_weight`` · :func:`channel_independence_loss` on ``output_layer`` +
    ``uniformity_weight`` · :func:`spatial_uniformity_loss` on ``map_layer``, plus, with
    ``guide``, a KD term (``temperature``, batchmean, T²) or a FitNet hint on ``hint_layer``
    from the high-quality teacher. Terms: ``ce``, ``independence``, ``uniformity``, and ``kd`` or
    ``hint``; a layer set to None drops its term. Every weight is one number or one per stacked
    model, so a sweep of weights (and CE alone: both weights 0) is one batched fit."""

    independence_weight: float | Sequence[float] = 1.0
    uniformity_weight: float | Sequence[float] = 1.0
    output_layer: str | None = "embedding"
    map_layer: str | None = "relu1"
    guide: str = "none"
    temperature: float = 4.0
    kd_weight: float | Sequence[float] = 1.0
    hint_layer: str = "embedding"
    hint_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "ds"

    def __post_init__(self):
        if self.guide not in DS_GUIDES:
            raise ValueError(f"unknown DS guide {self.guide!r}; valid: {', '.join(DS_GUIDES)}")

    @property
    def needs_teacher(self) -> bool:
        return self.guide != "none"

    @property
    def student_layers(self):
        layers = (self.output_layer, self.map_layer) + ((self.hint_layer,) if self.guide == "fitnet" else ())
        return tuple(dict.fromkeys(layer for layer in layers if layer is not None))

    @property
    def teacher_layers(self):
        return (self.hint_layer,) if self.guide == "fitnet" else ()

    def modules(self, student_dims, teacher_dims, seed):
        if self.guide != "fitnet":
            return {}
        make = lambda: Dense(student_dims[self.hint_layer], teacher_dims[self.hint_layer])  # noqa: E731
        return {"projector": seeded(make, seed + 1_000_003)}  # FitNet's stream

    def terms(self, out, modules):
        rank = out.student_logits.dim()  # (…, N, K): the axes beyond a layer's (…, N, C) are spatial
        terms = super().terms(out, modules)
        if self.output_layer is not None:
            output = out.student_features[self.output_layer]
            terms["independence"] = channel_independence_loss(output, output.dim() - rank)
        if self.map_layer is not None:
            feature_map = out.student_features[self.map_layer]
            if feature_map.dim() <= rank:
                raise ValueError(f"map_layer {self.map_layer!r} gives {tuple(feature_map.shape)}, not a (channels, height, "
                                 "width) map per sample; choose a convolutional layer (relu1, relu2, …)")
            terms["uniformity"] = spatial_uniformity_loss(feature_map, feature_map.dim() - rank)
        if self.guide == "kd":
            terms["kd"] = kd_loss(out.student_logits, out.teacher_logits, self.temperature, "batchmean", t2_scale=True)
        elif self.guide == "fitnet":
            start = rank - 1
            terms["hint"] = feature_regression_loss(modules["projector"](out.student_features[self.hint_layer].flatten(start)),
                                                    out.teacher_features[self.hint_layer].flatten(start))
        return terms

    def weights(self):
        weights = super().weights()
        if self.output_layer is not None:
            weights["independence"] = self.independence_weight
        if self.map_layer is not None:
            weights["uniformity"] = self.uniformity_weight
        weights.update({"none": {}, "kd": {"kd": self.kd_weight}, "fitnet": {"hint": self.hint_weight}}[self.guide])
        return weights
