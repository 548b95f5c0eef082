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
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from .registry import Registry

KD_REDUCTIONS = ("batchmean", "mean")


# ----------------------------------------------------------------------------- pure functions
def _per_model(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-model tensor ``(M,)`` shaped to broadcast against ``like`` ``(M, N, C)``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim())) if value.dim() else value


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples: ``(..., N, C)``, ``(..., N)`` → ``(...)``."""
    log_probs = F.log_softmax(logits, dim=-1)
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
    per_sample = kl_divergence(F.log_softmax(teacher_logits / t, -1), F.log_softmax(student_logits / t, -1))
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al. 2022): returns (TCKD, NCKD), each averaged over samples.

    TCKD is the KL between the binary (target, rest) distributions; NCKD the KL between the
    distributions over the non-target classes (target logit masked out).
    """
    t = _per_model(temperature, student_logits)
    target = F.one_hot(labels, student_logits.shape[-1]).bool()
    p_student = F.softmax(student_logits / t, -1)
    p_teacher = F.softmax(teacher_logits / t, -1)

    def binary(p):
        p_target = (p * target).sum(-1, keepdim=True)
        return torch.cat([p_target, 1 - p_target], -1).clamp_min(1e-12).log()

    tckd = kl_divergence(binary(p_teacher), binary(p_student)).mean(-1)
    masked_student = F.log_softmax(student_logits.masked_fill(target, float("-inf")) / t, -1)
    masked_teacher = F.log_softmax(teacher_logits.masked_fill(target, float("-inf")) / t, -1)
    non_target = ~target
    nckd = (masked_teacher.exp() * (masked_teacher - masked_student)).where(non_target, 0.0).sum(-1).mean(-1)
    if t2_scale:
        scale = torch.as_tensor(temperature, dtype=tckd.dtype) ** 2
        tckd, nckd = tckd * scale, nckd * scale
    return tckd, nckd


def feature_regression_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    projector_weight: torch.Tensor,
    projector_bias: torch.Tensor,
) -> torch.Tensor:
    """FitNet-style hint: MSE between linearly projected student features and teacher features.

    Features ``(..., N, D_s)`` and ``(..., N, D_t)`` (flattened beyond the sample axis);
    projector ``(..., D_t, D_s)`` and ``(..., D_t)``.
    """
    sample_axis = projector_weight.dim() - 2  # 0 for one model, 1 for a stack
    s = student_features.flatten(sample_axis + 1)
    t = teacher_features.flatten(sample_axis + 1)
    projected = s @ projector_weight.transpose(-1, -2) + projector_bias.unsqueeze(-2)
    return ((projected - t) ** 2).mean((-1, -2))


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
    """Base of every registered loss: ``terms()`` returns named per-model loss terms.

    ``ce_weight`` weighs the student's cross-entropy; subclasses add their own weighted terms.
    Weights may be one number or one per model (a sequence), so one stacked fit can sweep them.
    """

    ce_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "ce"
    needs_teacher: ClassVar[bool] = False

    @property
    def student_layers(self) -> tuple[str, ...]:
        return ()

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return ()

    def init_params(self, student_dims: dict[str, int], teacher_dims: dict[str, int], seeds: Sequence[int]) -> dict:
        """Extra trainable tensors (e.g. a projector), model axis first; none by default."""
        return {}

    def terms(self, out: StepOutputs, params: dict) -> dict[str, torch.Tensor]:
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
    temperature: float | Sequence[float]
    reduction: str
    t2_scale: bool = False
    kd_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "kd"
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self):
        if self.reduction not in KD_REDUCTIONS:
            raise ValueError(f"unknown KD reduction {self.reduction!r}; valid: {', '.join(KD_REDUCTIONS)}")

    def terms(self, out, params):
        kd = kd_loss(out.student_logits, out.teacher_logits, self.temperature, self.reduction, self.t2_scale)
        return {**super().terms(out, params), "kd": kd}

    def weights(self):
        return {**super().weights(), "kd": self.kd_weight}


@LOSSES.register("dkd", about="CE + decoupled KD: alpha·TCKD + beta·NCKD, logged as separate terms")
@dataclass(frozen=True, kw_only=True)
class DKD(Distiller):
    alpha: float | Sequence[float] = 1.0
    beta: float | Sequence[float] = 8.0
    temperature: float | Sequence[float] = 4.0
    t2_scale: bool = True

    name: ClassVar[str] = "dkd"
    needs_teacher: ClassVar[bool] = True

    def terms(self, out, params):
        tckd, nckd = dkd_loss(out.student_logits, out.teacher_logits, out.labels, self.temperature, self.t2_scale)
        return {**super().terms(out, params), "tckd": tckd, "nckd": nckd}

    def weights(self):
        return {**super().weights(), "tckd": self.alpha, "nckd": self.beta}


@LOSSES.register("fitnet", about="CE + feature regression through a learned linear projector (FitNet hint)")
@dataclass(frozen=True, kw_only=True)
class FitNet(Distiller):
    student_layer: str = "embedding"
    teacher_layer: str = "embedding"
    hint_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "fitnet"
    needs_teacher: ClassVar[bool] = True

    @property
    def student_layers(self):
        return (self.student_layer,)

    @property
    def teacher_layers(self):
        return (self.teacher_layer,)

    def init_params(self, student_dims, teacher_dims, seeds):
        projectors = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 1_000_003)  # its own stream, apart from the model's init
                projectors.append(torch.nn.Linear(student_dims[self.student_layer], teacher_dims[self.teacher_layer]))
        return {
            "projector.weight": torch.stack([p.weight.detach() for p in projectors]),
            "projector.bias": torch.stack([p.bias.detach() for p in projectors]),
        }

    def terms(self, out, params):
        hint = feature_regression_loss(
            out.student_features[self.student_layer],
            out.teacher_features[self.teacher_layer],
            params["projector.weight"],
            params["projector.bias"],
        )
        return {**super().terms(out, params), "hint": hint}

    def weights(self):
        return {**super().weights(), "hint": self.hint_weight}
