"""DS-CMKD's dimensional-structure losses: channel independence and spatial uniformity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..analysis.metrics import CORRELATION_EPS, channel_correlation, off_diagonal_mean, spatial_log_probs
from ..models import Dense, seeded
from .feature import feature_regression_loss
from .logit import kd_loss
from .registry import LOSSES, Distiller, weighted_sample_mean

# DS-CMKD (Si et al., arXiv 2306.15977; papers.md §4) makes the low-quality modality's output
# features channel-wise independent and its intermediate features spatially uniform. The paper
# releases no code: both forms below are our reading of its abstract. They use the diagnostics'
# primitives in :mod:`cmkd_lab.analysis.metrics`, so a loss and the quantity it moves are one formula.
# The paper's method is cross-modal distillation "guided by the high-quality modality": our reading
# is the DS terms on top of Hinton KD from the high-quality teacher (guide "kd", the default);
# "fitnet" guides by a feature hint instead, and "none" (DS without a teacher) is an ablation.
DS_GUIDES = ("none", "kd", "fitnet")


def channel_independence_loss(
    features: torch.Tensor,
    n_spatial: int = 0,
    eps: float = CORRELATION_EPS,
    row_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Our reading of DS-CMKD's independence term: standardise each channel of the pooled
    ``features`` over the batch, take their correlation matrix R and return the mean squared
    off-diagonal entry, Σ_{i≠j} R_ij² / (C² − C). 0 for uncorrelated channels, 1 for channels
    that are all one signal (up to sign); unchanged by rescaling or shifting a channel.

    Parameters
    ----------
    features : Tensor, shape (..., N, C) or (..., N, C, *spatial)
        Output features, C channels; a map is average-pooled over its spatial axes first.
    n_spatial : int
        How many trailing spatial axes ``features`` has (0: none; 2 for ``(N, C, H, W)``).
    eps : float
        Added to each channel's variance before standardising (a constant channel stays finite).
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:func:`~cmkd_lab.analysis.metrics.channel_correlation`); None: every row.

    Returns
    -------
    Tensor, shape (...)
        In [0, 1].
    """
    return off_diagonal_mean(channel_correlation(features, n_spatial, eps, row_mask).pow(2))


def spatial_uniformity_loss(
    feature_map: torch.Tensor, n_spatial: int = 2, row_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Our reading of DS-CMKD's uniformity term: per sample and channel of ``feature_map``,
    KL(softmax over the H·W positions ‖ uniform) = log(H·W) − entropy, averaged over channels
    and samples. 0 for a flat map; unchanged by adding a constant to a channel (the softmax's
    shift invariance), but not by scaling it.

    Parameters
    ----------
    feature_map : Tensor, shape (..., N, C, H, W)
        Intermediate features; with ``n_spatial=1``, ``(..., N, C, L)``.
    n_spatial : int
        How many trailing spatial axes the map has.
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:func:`~cmkd_lab.losses.weighted_sample_mean`); None: every row.

    Returns
    -------
    Tensor, shape (...)
        ≥ 0, at most log(H·W).
    """
    log_p = spatial_log_probs(feature_map, n_spatial)
    kl = (log_p.exp() * log_p).sum(-1) + math.log(log_p.shape[-1])
    if row_mask is None:
        return kl.mean((-2, -1))
    return weighted_sample_mean(kl.mean(-1), row_mask=row_mask)


@LOSSES.register(
    "ds",
    about="DS-CMKD (our reading): CE + KD from the high-quality teacher + channel independence of "
    "the output features + spatial uniformity of an intermediate map; guide kd (default)|fitnet, "
    "or none: DS without a teacher, an ablation",
)
@dataclass(frozen=True, kw_only=True)
class DimensionalStructure(Distiller):
    """DS-CMKD, our reading (``"ds"``): CE + ``independence_weight`` ·
    :func:`channel_independence_loss` on ``output_layer`` + ``uniformity_weight`` ·
    :func:`spatial_uniformity_loss` on ``map_layer``, plus the high-quality teacher's guidance.

    Reads the student's logits ``(B, C)``, labels ``(B,)``, its ``output_layer`` (``(B, D)``, or a
    map, pooled) and its ``map_layer`` (``(B, channels, H, W)`` or ``(B, channels, L)``: a
    convolutional layer, else a ValueError), and per guide the teacher's logits ``(B, C)`` or its
    ``hint_layer``. Terms ``"ce"``, ``"independence"``, ``"uniformity"``, and ``"kd"`` or
    ``"hint"``; a layer set to None drops its term. Both DS weights 0 is exactly CE + KD (CE alone
    with ``guide="none"``). With ``guide="fitnet"`` owns module ``"projector"``.

    Parameters
    ----------
    independence_weight, uniformity_weight : float or sequence of float
        Weights of the two DS terms (one per model to sweep them in one batched fit).
    output_layer : str or None
        The student layer made channel-independent (default ``"embedding"``).
    map_layer : str or None
        The student map made spatially uniform (default ``"relu1"``).
    guide : {"kd", "fitnet", "none"}
        ``"kd"`` (default, our reading of the paper): KD from the teacher (``temperature``,
        batchmean, T²); ``"fitnet"``: a FitNet hint on ``hint_layer``; ``"none"``: no teacher
        (DS alone, an ablation).
    temperature : float
        KD's T.
    kd_weight : float or sequence of float
        Weight of ``"kd"``.
    hint_layer : str
        The layer of both nets the hint compares.
    hint_weight : float or sequence of float
        Weight of ``"hint"``.
    ce_weight : float or sequence of float
        Weight of ``"ce"``.
    """

    independence_weight: float | Sequence[float] = 1.0
    uniformity_weight: float | Sequence[float] = 1.0
    output_layer: str | None = "embedding"
    map_layer: str | None = "relu1"
    guide: str = "kd"
    temperature: float = 4.0
    kd_weight: float | Sequence[float] = 1.0
    hint_layer: str = "embedding"
    hint_weight: float | Sequence[float] = 1.0

    name: ClassVar[str] = "ds"
    weighs_rows: ClassVar[bool] = True

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
            terms["independence"] = channel_independence_loss(output, output.dim() - rank, row_mask=out.row_mask)
        if self.map_layer is not None:
            feature_map = out.student_features[self.map_layer]
            if feature_map.dim() <= rank:
                raise ValueError(
                    f"map_layer {self.map_layer!r} gives {tuple(feature_map.shape)}, not a (channels, height, "
                    "width) map per sample; choose a convolutional layer (relu1, relu2, …)"
                )
            terms["uniformity"] = spatial_uniformity_loss(feature_map, feature_map.dim() - rank, out.row_mask)
        if self.guide == "kd":
            terms["kd"] = kd_loss(
                out.student_logits, out.teacher_logits, self.temperature, "batchmean", True, out.row_mask
            )
        elif self.guide == "fitnet":
            start = rank - 1
            terms["hint"] = feature_regression_loss(
                modules["projector"](out.student_features[self.hint_layer].flatten(start)),
                out.teacher_features[self.hint_layer].flatten(start),
                row_mask=out.row_mask,
            )
        return terms

    def weights(self):
        weights = super().weights()
        if self.output_layer is not None:
            weights["independence"] = self.independence_weight
        if self.map_layer is not None:
            weights["uniformity"] = self.uniformity_weight
        weights.update({"none": {}, "kd": {"kd": self.kd_weight}, "fitnet": {"hint": self.hint_weight}}[self.guide])
        return weights
