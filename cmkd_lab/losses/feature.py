"""Feature distillation: FitNet's hint and the relational losses (RKD, PKT, SP, CRD).

Each is a pure function on features ``(..., N, D)`` and a registered loss reading one student
and one teacher layer; every one takes NTDH's masking (:mod:`.masking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..models import Dense, seeded
from .masking import PSSM_COSINE_THRESHOLD, _mask
from .registry import LOSSES, Distiller, StepOutputs, weighted_sample_mean


def feature_regression_loss(
    projected_student: torch.Tensor,
    teacher_features: torch.Tensor,
    sample_weights: torch.Tensor | None = None,
    row_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """FitNet-style hint: MSE between (already projected) student features and teacher features,
    averaged over D and then over samples.

    Parameters
    ----------
    projected_student, teacher_features : Tensor, shape (..., N, D)
    sample_weights : Tensor, shape (..., N), optional
        Per-sample weights of the mean (:func:`~cmkd_lab.losses.weighted_sample_mean`).
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:func:`~cmkd_lab.losses.weighted_sample_mean`); None: every row.

    Returns
    -------
    Tensor, shape (...)
    """
    per_sample = ((projected_student - teacher_features) ** 2).mean(-1)
    return weighted_sample_mean(per_sample, sample_weights, row_mask)


@LOSSES.register("fitnet", about="CE + feature regression through a learned linear projector (FitNet hint)")
@dataclass(frozen=True, kw_only=True)
class FitNet(Distiller):
    """CE + FitNet's hint (``"fitnet"``, :func:`feature_regression_loss`): the student layer
    through a learned linear projector regresses on the teacher layer.

    Reads the student's logits ``(B, C)``, labels ``(B,)`` and one layer of each net, flattened
    beyond the sample axis to ``(B, D_s)`` and ``(B, D_t)`` (a map ``(B, channels, H, W)``
    becomes ``(B, channels·H·W)``); terms ``"ce"`` and ``"hint"``. Owns module ``"projector"``
    (D_s → D_t).

    Parameters
    ----------
    student_layer, teacher_layer : str
        The layers compared (default ``"embedding"``).
    hint_weight : float or sequence of float
        Weight of ``"hint"``.
    masking : bool
        Weigh samples by NTDH's :func:`~cmkd_lab.losses.pssm_weights`.
    mask_threshold : float
        The cosine threshold of the masking.
    ce_weight : float or sequence of float
        Weight of ``"ce"``.
    """

    student_layer: str = "embedding"
    teacher_layer: str = "embedding"
    hint_weight: float | Sequence[float] = 1.0
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "fitnet"
    needs_teacher: ClassVar[bool] = True
    weighs_rows: ClassVar[bool] = True

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
            out.row_mask,
        )
        return {**super().terms(out, modules), "hint": hint}

    def weights(self):
        return {**super().weights(), "hint": self.hint_weight}


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
    """Relational KD (Park et al. 2019): a distance and an angle term, each a Huber loss
    between the student's and the (constant) teacher's relations.

    Distance: pairwise distances, each set divided by its mean off-diagonal distance. Angle:
    for anchor a, the cosine between (f_i − f_a) and (f_k − f_a) for all i, k. Memory is
    O(N³) per model for the angle term: use mini-batches.

    Parameters
    ----------
    student_features : Tensor, shape (..., N, D_s)
    teacher_features : Tensor, shape (..., N, D_t)
    sample_weights : Tensor, shape (..., N), optional
        Weights of the anchors.

    Returns
    -------
    distance, angle : Tensor, shape (...)
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
    angle = weighted_sample_mean(
        F.smooth_l1_loss(angles(student_features), t_angle, reduction="none").mean((-1, -2)), sample_weights
    )
    return distance, angle


def pkt_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    sample_weights: torch.Tensor | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas 2018): KL between the teacher's and the
    student's conditional distributions over neighbours, from cosine similarities mapped to [0, 1].

    Parameters
    ----------
    student_features : Tensor, shape (..., N, D_s)
    teacher_features : Tensor, shape (..., N, D_t)
    sample_weights : Tensor, shape (..., N), optional
        Weights of the anchors.
    eps : float
        Keeps norms and logarithms away from 0.

    Returns
    -------
    Tensor, shape (...)
    """

    def conditional(features):
        unit = features / (features.norm(dim=-1, keepdim=True) + eps)
        similarity = (unit @ unit.transpose(-1, -2) + 1.0) / 2.0
        return similarity / similarity.sum(-1, keepdim=True)

    p_teacher, p_student = conditional(teacher_features), conditional(student_features)
    per_anchor = (p_teacher * torch.log((p_teacher + eps) / (p_student + eps))).mean(-1)
    return weighted_sample_mean(per_anchor, sample_weights)


def sp_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, sample_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori 2019): squared difference of the row-normalised
    Gram matrices, ‖G_t − G_s‖²_F / N².

    Parameters
    ----------
    student_features : Tensor, shape (..., N, D_s)
    teacher_features : Tensor, shape (..., N, D_t)
    sample_weights : Tensor, shape (..., N), optional
        Weights of the anchors (the Gram matrices' rows).

    Returns
    -------
    Tensor, shape (...)
    """

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

    Embeddings are L2-normalised; similarity / ``temperature`` logits between every student and
    teacher sample; sample i's positive is its own pair, the other N − 1 are negatives. Summed
    over both anchors (student → teacher and teacher → student), as CRD does.

    Parameters
    ----------
    student_embedding, teacher_embedding : Tensor, shape (..., N, d)
    temperature : float
        The similarity temperature.
    sample_weights : Tensor, shape (..., N), optional
        Weights of each sample's two terms.

    Returns
    -------
    Tensor, shape (...)
    """
    z_s = F.normalize(student_embedding, dim=-1)
    z_t = F.normalize(teacher_embedding, dim=-1)
    logits = z_s @ z_t.transpose(-1, -2) / temperature
    diagonal = torch.diagonal(logits, dim1=-2, dim2=-1)
    per_sample = (torch.logsumexp(logits, -1) - diagonal) + (torch.logsumexp(logits, -2) - diagonal)
    return weighted_sample_mean(per_sample, sample_weights)


@dataclass(frozen=True, kw_only=True)
class _FeatureDistiller(Distiller):
    """Base of the relational losses: one student and one teacher layer, optional NTDH masking.

    Parameters
    ----------
    student_layer, teacher_layer : str
        The layers compared (default ``"embedding"``), flattened beyond the sample axis to
        ``(B, D_s)`` and ``(B, D_t)``.
    masking : bool
        Weigh anchors by NTDH's :func:`~cmkd_lab.losses.pssm_weights`.
    mask_threshold : float
        The cosine threshold of the masking.
    ce_weight : float or sequence of float
        Weight of ``"ce"``.
    """

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
        return (
            out.student_features[self.student_layer].flatten(start),
            out.teacher_features[self.teacher_layer].flatten(start),
        )


@LOSSES.register("rkd", about="CE + relational KD: distance and angle terms on a feature layer (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class RKD(_FeatureDistiller):
    """CE + relational KD (``"rkd"``, :func:`rkd_loss`): distance and angle terms.

    Reads the student's logits ``(B, C)``, labels ``(B,)`` and one layer of each net, flattened
    beyond the sample axis to ``(B, D_s)`` and ``(B, D_t)``; terms ``"ce"``, ``"rkd_distance"``
    and ``"rkd_angle"``. The angle term takes O(B³) memory per copy.

    Parameters
    ----------
    distance_weight, angle_weight : float or sequence of float
        Weights of ``"rkd_distance"`` and ``"rkd_angle"`` (RepDistiller's 25 and 50).
    student_layer, teacher_layer, masking, mask_threshold, ce_weight
        As for every relational loss (default layers ``"embedding"``, no masking, CE weight 1).
    """

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
    """CE + probabilistic knowledge transfer (``"pkt"``, :func:`pkt_loss`).

    Reads the student's logits ``(B, C)``, labels ``(B,)`` and one layer of each net, flattened
    beyond the sample axis to ``(B, D_s)`` and ``(B, D_t)``; terms ``"ce"`` and ``"pkt"``.

    Parameters
    ----------
    pkt_weight : float or sequence of float
        Weight of ``"pkt"`` (RepDistiller's 30000).
    student_layer, teacher_layer, masking, mask_threshold, ce_weight
        As for every relational loss (default layers ``"embedding"``, no masking, CE weight 1).
    """

    pkt_weight: float | Sequence[float] = 30000.0  # RepDistiller's default

    name: ClassVar[str] = "pkt"

    def terms(self, out, modules):
        return {**super().terms(out, modules), "pkt": pkt_loss(*self.features(out), _mask(self, out))}

    def weights(self):
        return {**super().weights(), "pkt": self.pkt_weight}


@LOSSES.register("sp", about="CE + similarity-preserving KD on a feature layer (optional NTDH masking)")
@dataclass(frozen=True, kw_only=True)
class SP(_FeatureDistiller):
    """CE + similarity-preserving KD (``"sp"``, :func:`sp_loss`).

    Reads the student's logits ``(B, C)``, labels ``(B,)`` and one layer of each net, flattened
    beyond the sample axis to ``(B, D_s)`` and ``(B, D_t)``; terms ``"ce"`` and ``"sp"``.

    Parameters
    ----------
    sp_weight : float or sequence of float
        Weight of ``"sp"`` (RepDistiller's 3000).
    student_layer, teacher_layer, masking, mask_threshold, ce_weight
        As for every relational loss (default layers ``"embedding"``, no masking, CE weight 1).
    """

    sp_weight: float | Sequence[float] = 3000.0  # RepDistiller's default

    name: ClassVar[str] = "sp"

    def terms(self, out, modules):
        return {**super().terms(out, modules), "sp": sp_loss(*self.features(out), _mask(self, out))}

    def weights(self):
        return {**super().weights(), "sp": self.sp_weight}


@LOSSES.register(
    "crd", about="CE + contrastive representation distillation, in-batch negatives (optional NTDH masking)"
)
@dataclass(frozen=True, kw_only=True)
class CRD(_FeatureDistiller):
    """CE + contrastive representation distillation, in-batch negatives (``"crd"``, :func:`crd_loss`).

    Reads the student's logits ``(B, C)``, labels ``(B,)`` and one layer of each net, flattened
    beyond the sample axis to ``(B, D_s)`` and ``(B, D_t)``; terms ``"ce"`` and ``"crd"``. Owns
    modules ``"embed_student"`` (D_s → ``embed_dim``) and ``"embed_teacher"`` (D_t →
    ``embed_dim``), which train; the teacher does not.

    Parameters
    ----------
    embed_dim : int
        Width of the shared embedding space.
    nce_temperature : float
        The similarity temperature (CRD's 0.07).
    crd_weight : float or sequence of float
        Weight of ``"crd"`` (RepDistiller's 0.8).
    student_layer, teacher_layer, masking, mask_threshold, ce_weight
        As for every relational loss (default layers ``"embedding"``, no masking, CE weight 1).
    """

    embed_dim: int = 32
    nce_temperature: float = 0.07  # CRD's default
    crd_weight: float | Sequence[float] = 0.8  # RepDistiller's default

    name: ClassVar[str] = "crd"

    def modules(self, student_dims, teacher_dims, seed):
        """A linear embedding head per side (the teacher's head trains; the teacher does not)."""
        return {
            f"embed_{side}": seeded(lambda d=dims[layer]: Dense(d, self.embed_dim), seed + offset)
            for side, dims, layer, offset in (
                ("student", student_dims, self.student_layer, 2_000_003),
                ("teacher", teacher_dims, self.teacher_layer, 3_000_017),
            )
        }

    def terms(self, out, modules):
        student, teacher = self.features(out)
        crd = crd_loss(
            modules["embed_student"](student), modules["embed_teacher"](teacher), self.nce_temperature, _mask(self, out)
        )
        return {**super().terms(out, modules), "crd": crd}

    def weights(self):
        return {**super().weights(), "crd": self.crd_weight}
