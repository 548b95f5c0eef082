"""Logit distillation: Hinton KD and decoupled KD (DKD), as pure functions and registered losses.

Reductions are explicit: KD's ``reduction`` must be named, one of ``KD_REDUCTIONS``
("batchmean" sums over classes and averages over samples, the KL definition; "mean" also
averages over classes, PyTorch's old default, as in the official MFH code). The T² factor
follows one convention for every KD loss here, ``T2_SCALE``: on unless a caller turns it off.
Both losses take NTDH's masking (:mod:`.masking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..analysis.metrics import log_softmax
from ..engine.schedules import Ramp
from .masking import PSSM_COSINE_THRESHOLD, _mask, pssm_weights
from .registry import LOSSES, Distiller, weighted_sample_mean

KD_REDUCTIONS = ("batchmean", "mean")  # the choices every study and notebook offers
# The kit's T² convention (Hinton et al. 2015; DKD): a soft-target term is multiplied by T², so its
# gradients keep their scale as T changes and a temperature changes only how soft the targets are.
# A study that reproduces code without the factor says so with t2_scale=False (NTDH's).
T2_SCALE = True


def _per_model(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-model tensor ``(M,)`` on ``like``'s device, shaped to broadcast against
    ``like`` (``(M, N, C)`` logits, or ``(M,)`` losses)."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim())) if value.dim() else value


def _check_reduction(reduction: str) -> None:
    if reduction not in KD_REDUCTIONS:
        raise ValueError(f"unknown KD reduction {reduction!r}; valid: {', '.join(KD_REDUCTIONS)}")


def kl_divergence(target_log_probs: torch.Tensor, input_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ input) per sample, summed over the class axis.

    Parameters
    ----------
    target_log_probs, input_log_probs : Tensor, shape (..., N, C)
        Log-probabilities (e.g. the teacher's and the student's).

    Returns
    -------
    Tensor, shape (..., N)
    """
    return (target_log_probs.exp() * (target_log_probs - input_log_probs)).sum(-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float | torch.Tensor,
    reduction: str,
    t2_scale: bool = T2_SCALE,
    row_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) ‖ softmax(s/T)), reduced over samples, times T².

    Parameters
    ----------
    student_logits, teacher_logits : Tensor, shape (..., N, C)
    temperature : float or Tensor
        T: one number, or one per model ``(M,)`` for stacked logits ``(M, N, C)``.
    reduction : {"batchmean", "mean"}
        ``"batchmean"``: summed over classes, averaged over samples (the KL definition);
        ``"mean"``: also averaged over the C classes.
    t2_scale : bool
        Multiply by T² (:data:`T2_SCALE`, the kit's convention).
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:func:`weighted_sample_mean`); None: every row.

    Returns
    -------
    Tensor, shape (...)
        The loss (a scalar for one model).
    """
    _check_reduction(reduction)
    t = _per_model(temperature, student_logits)
    per_sample = kl_divergence(log_softmax(teacher_logits / t), log_softmax(student_logits / t))
    loss = weighted_sample_mean(per_sample, row_mask=row_mask)
    if reduction == "mean":
        loss = loss / student_logits.shape[-1]
    if t2_scale:
        loss = loss * _per_model(temperature, loss) ** 2
    return loss


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float | torch.Tensor,
    t2_scale: bool = T2_SCALE,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al. 2022): the target-class and non-target-class parts of KD.

    TCKD is the KL between the binary (target, rest) distributions; NCKD the KL between the
    distributions over the non-target classes (target logit masked out).

    Parameters
    ----------
    student_logits, teacher_logits : Tensor, shape (..., N, C)
    labels : Tensor of int, shape (..., N)
    temperature : float or Tensor
        T: one number, or one per model ``(M,)``.
    t2_scale : bool
        Multiply both terms by T² (:data:`T2_SCALE`).
    sample_weights : Tensor, shape (..., N), optional
        Weights of each sample's terms before the average (e.g. :func:`pssm_weights`).

    Returns
    -------
    tckd, nckd : Tensor, shape (...)
        Each averaged over samples (:func:`weighted_sample_mean`).
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
        scale = _per_model(temperature, tckd) ** 2
        tckd, nckd = tckd * scale, nckd * scale
    return tckd, nckd


def masked_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    sample_weights: torch.Tensor,
    temperature: float | torch.Tensor,
    reduction: str,
    t2_scale: bool = T2_SCALE,
    row_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KD with NTDH masking: both logit vectors of sample i are scaled by ω_i inside the KL, so
    ω = 0 makes both distributions uniform (the sample drops out) and ω = 1 leaves KD as is.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor, shape (..., N, C)
    sample_weights : Tensor, shape (..., N)
        ω per sample (:func:`pssm_weights`).
    temperature, reduction, t2_scale
        As in :func:`kd_loss`.
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:attr:`~cmkd_lab.losses.StepOutputs.row_mask`), for the mean.

    Returns
    -------
    Tensor, shape (...)
    """
    scale = sample_weights.unsqueeze(-1)
    return kd_loss(scale * student_logits, scale * teacher_logits, temperature, reduction, t2_scale, row_mask)


@LOSSES.register("kd", about="CE + Hinton KD (temperature; reduction batchmean|mean; T² unless t2_scale=False)")
@dataclass(frozen=True, kw_only=True)
class KD(Distiller):
    """CE + Hinton KD (``"kd"``, :func:`kd_loss`), optionally with NTDH masking
    (:func:`masked_kd_loss`).

    Reads the student's and the teacher's logits ``(B, C)`` and the labels ``(B,)``; terms
    ``"ce"`` and ``"kd"``, each a scalar per copy.

    Parameters
    ----------
    temperature : float
        T, required.
    reduction : {"batchmean", "mean"}
        Required (:data:`KD_REDUCTIONS`); see :func:`kd_loss`.
    t2_scale : bool
        Multiply the KD term by T² (:data:`T2_SCALE`).
    kd_weight : float or sequence of float
        Weight of ``"kd"`` (one per model to sweep it).
    masking : bool
        Weigh samples by NTDH's :func:`pssm_weights`.
    mask_threshold : float
        The cosine threshold of the masking.
    ce_weight : float or sequence of float
        Weight of ``"ce"``.
    """

    temperature: float
    reduction: str
    t2_scale: bool = T2_SCALE
    kd_weight: float | Sequence[float] = 1.0
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "kd"
    needs_teacher: ClassVar[bool] = True
    weighs_rows: ClassVar[bool] = True

    def __post_init__(self):
        _check_reduction(self.reduction)

    def terms(self, out, modules):
        if self.masking:
            weights = pssm_weights(out.teacher_logits, out.student_logits, out.labels, self.mask_threshold)
            kd = masked_kd_loss(
                out.student_logits,
                out.teacher_logits,
                weights,
                self.temperature,
                self.reduction,
                self.t2_scale,
                out.row_mask,
            )
        else:
            kd = kd_loss(
                out.student_logits,
                out.teacher_logits,
                self.temperature,
                self.reduction,
                self.t2_scale,
                out.row_mask,
            )
        return {**super().terms(out, modules), "kd": kd}

    def weights(self):
        return {**super().weights(), "kd": self.kd_weight}

    @property
    def hosts_baseline(self) -> bool:
        return not self.masking  # a KL divergence of two softmaxes is finite; masking's cosine weights are not vetted


@LOSSES.register("dkd", about="CE + decoupled KD: alpha·TCKD + beta·NCKD, logged as separate terms")
@dataclass(frozen=True, kw_only=True)
class DKD(Distiller):
    """CE + decoupled KD (``"dkd"``, :func:`dkd_loss`): alpha·TCKD + beta·NCKD.

    Reads the student's and the teacher's logits ``(B, C)`` and the labels ``(B,)``; terms
    ``"ce"``, ``"tckd"`` and ``"nckd"``, each a scalar per copy, logged apart.

    Parameters
    ----------
    alpha, beta : float or sequence of float
        Weights of ``"tckd"`` and ``"nckd"`` (one per model to sweep them).
    temperature : float
        T.
    t2_scale : bool
        Multiply both terms by T² (:data:`T2_SCALE`).
    warmup_epochs : int
        The DKD paper's linear warm-up of both weights over this many epochs (0: none).
    masking : bool
        Weigh samples by NTDH's :func:`pssm_weights`.
    mask_threshold : float
        The cosine threshold of the masking.
    ce_weight : float or sequence of float
        Weight of ``"ce"``.
    """

    alpha: float | Sequence[float] = 1.0
    beta: float | Sequence[float] = 8.0
    temperature: float = 4.0
    t2_scale: bool = T2_SCALE
    warmup_epochs: int = 0  # the DKD paper's linear warm-up of both terms (0: none)
    masking: bool = False
    mask_threshold: float = PSSM_COSINE_THRESHOLD

    name: ClassVar[str] = "dkd"
    needs_teacher: ClassVar[bool] = True

    def terms(self, out, modules):
        weights = _mask(self, out)
        tckd, nckd = dkd_loss(
            out.student_logits, out.teacher_logits, out.labels, self.temperature, self.t2_scale, weights
        )
        return {**super().terms(out, modules), "tckd": tckd, "nckd": nckd}

    def weights(self):
        if self.warmup_epochs:
            return {
                **super().weights(),
                "tckd": Ramp(self.alpha, self.warmup_epochs),
                "nckd": Ramp(self.beta, self.warmup_epochs),
            }
        return {**super().weights(), "tckd": self.alpha, "nckd": self.beta}
