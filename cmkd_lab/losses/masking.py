"""NTDH's masking (papers.md §2, "PSSM"): per-sample weights ω that choose which samples a
distillation term counts (every maskable loss reduces with
:func:`~cmkd_lab.losses.registry.weighted_sample_mean`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import StepOutputs

PSSM_COSINE_THRESHOLD = 0.996  # NTDH's masking: a wrong teacher still counts if its logits align this well


def pssm_weights(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    threshold: float = PSSM_COSINE_THRESHOLD,
) -> torch.Tensor:
    """NTDH's per-sample masking weight ω (papers.md §2, "PSSM").

    ω = 1 where the teacher predicts the label; where it is wrong, ω = (cos(z_t, z_s) + 1)/2 if
    the cosine similarity of the two logit vectors is at least ``threshold``, else 0. The
    weights are constants for the gradient (detached): they choose samples, they are not learned.

    Parameters
    ----------
    teacher_logits, student_logits : Tensor, shape (..., N, C)
    labels : Tensor of int, shape (..., N)
    threshold : float
        The cosine similarity from which a wrong teacher still counts.

    Returns
    -------
    Tensor, shape (..., N)
        ω in [0, 1].
    """
    with torch.no_grad():
        correct = teacher_logits.argmax(-1) == labels
        cosine = F.cosine_similarity(teacher_logits, student_logits, dim=-1)
        aligned = torch.where(cosine >= threshold, (cosine + 1) / 2, torch.zeros_like(cosine))
        return torch.where(correct, torch.ones_like(cosine), aligned)


def _mask(distiller, out: StepOutputs) -> torch.Tensor | None:
    """The PSSM weights when ``distiller.masking`` is on, else None (no weighting)."""
    if not distiller.masking:
        return None
    return pssm_weights(out.teacher_logits, out.student_logits, out.labels, distiller.mask_threshold)
