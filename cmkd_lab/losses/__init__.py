"""Losses: pure functions, and the distillation losses the trainer looks up by name.

:mod:`.registry` holds the registries (``LOSSES``, ``EMBEDDING_LOSSES``), :func:`make_loss`,
:func:`make_embedding_loss`, the :class:`Distiller` base class and :class:`Vanilla` (``"ce"``,
the no-KD baseline); each family registers its losses in its own module: :mod:`.logit` (KD,
DKD), :mod:`.masking` (NTDH's per-sample weights), :mod:`.feature` (FitNet, RKD, PKT, SP,
CRD), :mod:`.embedding` (CMCD's label-free CMD, CMC, L2) and :mod:`.structure` (DS-CMKD).
Importing this package registers them all.

Shapes: logits are ``(..., N, C)`` and labels ``(..., N)``; every function reduces over the
sample axis and returns one value per leading index, so the same code serves one model
(``(N, C)`` → scalar) and a stack of M models (``(M, N, C)`` → ``(M,)``). Reductions are
explicit (KD's ``reduction``); the T² factor follows one convention, :data:`.logit.T2_SCALE`.
"""

from .registry import (
    EMBEDDING_LOSSES,
    LOSSES,
    Distiller,
    StepOutputs,
    Vanilla,
    cross_entropy,
    make_embedding_loss,
    make_loss,
    weighted_sample_mean,
)
from .masking import PSSM_COSINE_THRESHOLD, pssm_weights
from .logit import DKD, KD, KD_REDUCTIONS, T2_SCALE, dkd_loss, kd_loss, kl_divergence, masked_kd_loss
from .feature import CRD, PKT, RKD, SP, FitNet, crd_loss, feature_regression_loss, pkt_loss, rkd_loss, sp_loss
from .embedding import CMC, CMD, EmbeddingLoss, EmbeddingQueue, L2Alignment, cmc_loss, cmd_loss, info_nce, unit_rows
from .structure import DS_GUIDES, DimensionalStructure, channel_independence_loss, spatial_uniformity_loss

__all__ = [
    "LOSSES",
    "EMBEDDING_LOSSES",
    "make_loss",
    "make_embedding_loss",
    "Distiller",
    "Vanilla",
    "StepOutputs",
    "EmbeddingLoss",
    "cross_entropy",
    "kl_divergence",
    "kd_loss",
    "dkd_loss",
    "KD_REDUCTIONS",
    "T2_SCALE",
    "KD",
    "DKD",
    "PSSM_COSINE_THRESHOLD",
    "pssm_weights",
    "masked_kd_loss",
    "weighted_sample_mean",
    "feature_regression_loss",
    "rkd_loss",
    "pkt_loss",
    "sp_loss",
    "crd_loss",
    "FitNet",
    "RKD",
    "PKT",
    "SP",
    "CRD",
    "unit_rows",
    "info_nce",
    "cmc_loss",
    "cmd_loss",
    "EmbeddingQueue",
    "CMD",
    "CMC",
    "L2Alignment",
    "DS_GUIDES",
    "channel_independence_loss",
    "spatial_uniformity_loss",
    "DimensionalStructure",
]
