"""Measures of the gap between a teacher and a student, or between two modalities.

- :func:`non_target_divergence` (NTDH, papers.md §2): for each sample, the *non-target
  distribution* is the softmax over the classes other than the label (as in DKD); NTD is the
  Jensen–Shannon divergence between the teacher's and the student's non-target distributions,
  per sample or averaged. The default is the textbook JS (bounded by ln 2); ``variant="official"``
  is what the NTDH code computes, ½[KL(m‖p_s) + KL(m‖p_t)] (``F.kl_div``'s argument order),
  which is neither the textbook JS nor bounded by ln 2.
- :func:`central_moment_discrepancy` (Zellinger et al. 2017): distance between two feature
  sets through their means and central moments 2..k.
- :func:`rank_correlation`: Spearman's ρ with a percentile bootstrap interval, for "does NTD
  predict the KD gain" across settings.
- :func:`domain_tv_lower_bound` and :func:`mmd` (for CMCD, arXiv 2405.03355): how far apart
  two feature distributions are, as a held-out domain classifier's lower bound on their total
  variation and as the unbiased squared MMD with a Gaussian kernel.
- ``VALIDATION_METRICS``: classification scores per model (:func:`accuracy`,
  :func:`weighted_f1`) that the training engine selects epochs by and studies report.

Shapes follow :mod:`cmkd_lab.losses`: logits ``(..., N, C)``, labels ``(..., N)``, features
``(..., N, D)``; reductions over the sample axis give one value per leading index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.registry import Registry

NTD_VARIANTS = ("js", "official")
NTD_REDUCTIONS = ("mean", "none")


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``F.log_softmax(logits, -1)``, computed over a transposed view: PyTorch's CPU kernel over a
    short last axis (the 2 to 10 classes of these studies) is several times slower than over
    another axis (measured on (600, 200, K) logits, one thread: 2.5–6× forward, 1.2–3× with the
    backward pass). Equal to float rounding."""
    if logits.dim() < 2:
        return F.log_softmax(logits, -1)
    return F.log_softmax(logits.transpose(-1, -2), -2).transpose(-1, -2)


def non_target_log_probs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-softmax over the non-target classes: ``(..., N, C)`` → ``(..., N, C)``, target entry -inf.

    The official code subtracts 1000 from the target logit; masking it out exactly gives the
    same distribution without the approximation.
    """
    n_classes = logits.shape[-1]
    if n_classes < 3:
        raise ValueError(
            f"a non-target distribution needs at least 3 classes (got {n_classes}): with 2 classes "
            "only one non-target class is left, so its distribution is always (1,) and NTD is 0"
        )
    labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
    labels = labels.expand(logits.shape[:-1]) if labels.dim() < logits.dim() - 1 else labels
    target = F.one_hot(labels, n_classes).bool()
    return log_softmax(logits.masked_fill(target, float("-inf")) / temperature)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) summed over classes, with 0·log 0 = 0 on the masked (target) entry."""
    p = p_log.exp()
    terms = p * (p_log - q_log)
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)


def non_target_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    variant: str = "js",
    reduction: str = "mean",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Non-target divergence between teacher and student (NTDH).

    ``variant``: ``"js"`` (default) is the textbook Jensen–Shannon divergence
    ½KL(p_t‖m) + ½KL(p_s‖m), m = ½(p_t + p_s), in nats, 0 ≤ JS ≤ ln 2 and symmetric;
    ``"official"`` is the NTDH code's ½[KL(m‖p_s) + KL(m‖p_t)], offered to reproduce it.
    ``reduction``: ``"mean"`` over samples (``(..., N, C)`` → ``(...)``) or ``"none"`` (→ ``(..., N)``).
    """
    if variant not in NTD_VARIANTS:
        raise ValueError(f"unknown NTD variant {variant!r}; valid: {', '.join(NTD_VARIANTS)}")
    if reduction not in NTD_REDUCTIONS:
        raise ValueError(f"unknown NTD reduction {reduction!r}; valid: {', '.join(NTD_REDUCTIONS)}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)} "
            "differ in shape"
        )
    teacher_logits = teacher_logits.double()
    student_logits = student_logits.double()
    p_t = non_target_log_probs(teacher_logits, labels, temperature)
    p_s = non_target_log_probs(student_logits, labels, temperature)
    m = torch.logaddexp(p_t, p_s) - math.log(2.0)
    if variant == "js":
        per_sample = 0.5 * (_kl(p_t, m) + _kl(p_s, m))
    else:
        per_sample = 0.5 * (_kl(m, p_s) + _kl(m, p_t))
    per_sample = per_sample.clamp_min(0.0)  # rounding can give -1e-17
    return per_sample if reduction == "none" else per_sample.mean(-1)


def central_moment_discrepancy(x: torch.Tensor, y: torch.Tensor, n_moments: int = 5) -> torch.Tensor:
    """CMD between two feature sets ``(..., N, D)`` and ``(..., N', D)`` → ``(...)``.

    ‖E[x] − E[y]‖₂ + Σ_{k=2..n_moments} ‖c_k(x) − c_k(y)‖₂, with c_k the per-dimension k-th
    central moment. This is the unscaled form the NTDH and MISA code use (Zellinger et al.
    divide term k by |b − a|^k for features bounded in [a, b]; for softmax outputs that is 1).
    """
    if n_moments < 1:
        raise ValueError(f"n_moments must be >= 1, got {n_moments}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"CMD compares features of one dimension; got {x.shape[-1]} and {y.shape[-1]}")
    x, y = x.double(), y.double()
    mean_x, mean_y = x.mean(-2), y.mean(-2)
    total = (mean_x - mean_y).norm(dim=-1)
    centred_x, centred_y = x - mean_x.unsqueeze(-2), y - mean_y.unsqueeze(-2)
    power_x, power_y = centred_x, centred_y
    for _ in range(2, n_moments + 1):  # the k-th powers by products: 3x faster than pow(k) on CPU
        power_x, power_y = power_x * centred_x, power_y * centred_y
        total = total + (power_x.mean(-2) - power_y.mean(-2)).norm(dim=-1)
    return total


def rank_correlation(x, y, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Spearman's ρ between ``x`` and ``y`` with a percentile bootstrap interval over the points.

    Returns ``{"rho", "low", "high", "p_value", "n"}``; resamples where either side is constant
    are skipped (their ρ is undefined).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need two 1-D arrays of the same length >= 3, got {x.shape} and {y.shape}")
    from scipy import stats  # deferred: a slow import most callers never need

    rho, p_value = stats.spearmanr(x, y)
    index = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    x_ranks, y_ranks = stats.rankdata(x[index], axis=1), stats.rankdata(y[index], axis=1)
    x_ranks -= x_ranks.mean(1, keepdims=True)
    y_ranks -= y_ranks.mean(1, keepdims=True)
    denominator = np.sqrt((x_ranks**2).sum(1) * (y_ranks**2).sum(1))
    defined = denominator > 0  # a resample where either side is constant has no ρ
    boots = (x_ranks * y_ranks).sum(1)[defined] / denominator[defined]
    tail = (1 - confidence) / 2
    low, high = np.quantile(boots, [tail, 1 - tail]) if len(boots) else (np.nan, np.nan)
    return {"rho": float(rho), "low": float(low), "high": float(high), "p_value": float(p_value), "n": int(len(x))}


__all__ = [
    "NTD_VARIANTS",
    "non_target_log_probs",
    "non_target_divergence",
    "central_moment_discrepancy",
    "rank_correlation",
]


# ----------------------------------------------------------------------------- classification scores
PADDING_LABEL = -1
"""The label of a padding row: copies of one stacked split that hold fewer samples than the
longest fill their slice with rows labelled so, which every metric here and every loss that
weighs rows leaves out."""


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose top logit is the label: ``(..., N, C)``, ``(..., N)`` → ``(...)``;
    rows labelled :data:`PADDING_LABEL` are not samples."""
    samples = labels != PADDING_LABEL
    correct = (logits.argmax(-1) == labels) & samples
    return correct.sum(-1).to(torch.float64) / samples.sum(-1).clamp_min(1)


def weighted_f1(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """F1 per class weighted by the class's share of the labels (scikit-learn's ``average="weighted"``;
    a class never predicted nor present scores 0): ``(..., N, C)``, ``(..., N)`` → ``(...)``; rows
    labelled :data:`PADDING_LABEL` are not samples."""
    n_classes = logits.shape[-1]
    samples = (labels != PADDING_LABEL).unsqueeze(-1)
    predicted = F.one_hot(logits.argmax(-1), n_classes).to(torch.float64) * samples
    actual = F.one_hot(labels.long().clamp_min(0), n_classes).to(torch.float64) * samples
    true_positive = (predicted * actual).sum(-2)
    denominator = predicted.sum(-2) + actual.sum(-2)
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp_min(1e-12), torch.zeros_like(denominator))
    support = actual.sum(-2)
    return (f1 * support).sum(-1) / support.sum(-1).clamp_min(1)


VALIDATION_METRICS: Registry = Registry("validation metric")
VALIDATION_METRICS.register("accuracy", about="fraction of correct top-1 predictions")(accuracy)
VALIDATION_METRICS.register("weighted_f1", about="class-support-weighted F1 (scikit-learn's 'weighted')")(weighted_f1)


# ----------------------------------------------------------------------------- modality distance
MIN_SAMPLES_PER_SIDE = 4  # two to fit and two to score, per side, at the smallest


def _feature_sets(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature sets ``(N, d)`` and ``(N', d)`` (tensors or arrays) as float64 CPU tensors, checked."""
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"need two feature matrices (N, d) and (N', d), got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two feature sets must have the same width d, got {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < MIN_SAMPLES_PER_SIDE:
        raise ValueError(f"need at least {MIN_SAMPLES_PER_SIDE} samples per side, got {len(a)} and {len(b)}")
    return a, b


def domain_classifier_accuracy(feature_sets: Sequence, seed: int = 0, test_fraction: float = 0.5) -> float:
    """Held-out accuracy of a classifier telling which of K feature sets ``(N_k, d)`` a sample
    comes from (chance: 1/K). A logistic regression on standardised features, with the same
    number of samples from each set (the smallest count, drawn with ``seed``), fitted on a
    ``1 − test_fraction`` share and scored on the rest; its sampling error is about
    1/√(number of scored samples)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if len(feature_sets) < 2:
        raise ValueError(f"need at least two feature sets to tell apart, got {len(feature_sets)}")
    sets = [_feature_sets(feature_sets[0], other)[1] for other in feature_sets]
    per_side = min(len(x) for x in sets)
    n_test = min(max(1, round(per_side * test_fraction)), per_side - 1)  # each part holds every set
    rng = np.random.default_rng(seed)
    features = np.concatenate([x.numpy()[rng.permutation(len(x))[:per_side]] for x in sets])
    domains = np.repeat(np.arange(len(sets)), per_side)
    is_test = np.tile(np.arange(per_side) < n_test, len(sets))  # the first n_test of each shuffled set
    from sklearn.linear_model import LogisticRegression  # deferred: a slow import most callers never need
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(features[~is_test], domains[~is_test])
    return float(classifier.score(features[is_test], domains[is_test]))


def domain_tv_lower_bound(a, b, seed: int = 0, test_fraction: float = 0.5) -> float:
    """A lower bound on the total-variation distance between the distributions of ``a`` ``(N, d)``
    and ``b`` ``(N', d)``, from a held-out domain classifier (:func:`domain_classifier_accuracy`).

    For any classifier f telling a from b, with balanced classes, its accuracy is
    ½[1 + P_a(f = a) − P_b(f = a)], so TV(P_a, P_b) = sup_A |P_a(A) − P_b(A)| ≥ 2·acc − 1.
    Returns ``max(0, 2·acc − 1)`` (below chance is noise). It is only a lower bound: a linear
    classifier sees differences a hyperplane can separate (a shifted mean, not a change of
    spread alone), and the held-out accuracy has sampling error.
    """
    return max(0.0, 2.0 * domain_classifier_accuracy([a, b], seed, test_fraction) - 1.0)


def mmd(a, b, bandwidth: float | None = None) -> float:
    """Unbiased squared maximum mean discrepancy between ``a`` ``(N, d)`` and ``b`` ``(N', d)``.

    Gaussian kernel k(x, y) = exp(−‖x − y‖² / (2·bandwidth²)); ``bandwidth=None`` takes the
    median of the pairwise distances of the pooled samples (the median heuristic). The unbiased
    estimate drops the i = j terms, so it is centred on 0 for one distribution and can be
    slightly negative. Float64 on the CPU with all pairwise distances in memory: a few thousand
    samples per side.
    """
    a, b = _feature_sets(a, b)
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive (or None for the median heuristic), got {bandwidth}")
    pooled = torch.cat([a, b])
    squared = torch.cdist(pooled, pooled).pow(2)
    if bandwidth is None:
        upper = torch.triu(torch.ones_like(squared, dtype=torch.bool), diagonal=1)
        bandwidth = squared[upper].median().sqrt().item()
        if bandwidth == 0:
            raise ValueError("the median pairwise distance is 0 (most samples repeat); pass a bandwidth")
    kernel = torch.exp(-squared / (2 * bandwidth**2))
    n_a, n_b = len(a), len(b)
    within_a, within_b, across = kernel[:n_a, :n_a], kernel[n_a:, n_a:], kernel[:n_a, n_a:]
    return float(
        (within_a.sum() - within_a.diagonal().sum()) / (n_a * (n_a - 1))
        + (within_b.sum() - within_b.diagonal().sum()) / (n_b * (n_b - 1))
        - 2 * across.mean()
    )


# ----------------------------------------------------------------------------- dimensional structure (DS-CMKD)
# DS-CMKD (arXiv 2306.15977, papers.md §4) reads features through their "dimensional structure":
# how correlated their channels are, and how evenly each channel of an intermediate map spreads
# over the image. These work on any model's named layers: pooled features ``(..., N, C)`` or
# maps ``(..., N, C, H, W)`` (any number of spatial axes); a map is pooled (mean over its spatial
# axes) where channels are compared. Written without in-place ops or branches on values, so the
# DS losses (:mod:`cmkd_lab.losses`) reuse them under ``vmap``.
CORRELATION_EPS = 1e-5  # added to each channel's variance: a constant channel correlates with nothing


def channel_correlation(
    features: torch.Tensor, n_spatial: int = 0, eps: float = CORRELATION_EPS, row_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The channels' correlation matrix over the samples: ``(..., N, C)`` (or a map with
    ``n_spatial`` trailing spatial axes, pooled first) → ``(..., C, C)``. Each channel is
    standardised over the batch, z = (f − mean) / √(var + eps), then R = zᵀz / N. With a
    ``row_mask`` ``(..., N)`` (1 on samples, 0 on padding rows) every mean is over the n samples it
    marks."""
    if n_spatial:
        features = features.flatten(-n_spatial).mean(-1)
    if row_mask is None:
        centred = features - features.mean(-2, keepdim=True)
        z = centred / (centred.pow(2).mean(-2, keepdim=True) + eps).sqrt()
        return z.transpose(-1, -2) @ z / features.shape[-2]
    mask, n = row_mask.unsqueeze(-1), row_mask.sum(-1)[..., None, None]
    centred = features - (mask * features).sum(-2, keepdim=True) / n
    z = centred / ((mask * centred.pow(2)).sum(-2, keepdim=True) / n + eps).sqrt()
    return (mask * z).transpose(-1, -2) @ z / n


def off_diagonal_mean(matrix: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of square matrices ``(..., C, C)`` → ``(...)``, as
    (total − trace) / (C² − C): no boolean indexing, so it runs under ``vmap``."""
    channels = matrix.shape[-1]
    trace = torch.diagonal(matrix, dim1=-2, dim2=-1).sum(-1)
    return (matrix.sum((-2, -1)) - trace) / (channels * (channels - 1))


def mean_abs_correlation(features: torch.Tensor, n_spatial: int = 0) -> torch.Tensor:
    """Mean |off-diagonal entry| of :func:`channel_correlation`: 0 for uncorrelated channels,
    1 when every channel is a multiple of one. ``(..., N, C[, spatial])`` → ``(...)``."""
    return off_diagonal_mean(channel_correlation(features, n_spatial).abs())


def spatial_log_probs(feature_map: torch.Tensor, n_spatial: int = 2) -> torch.Tensor:
    """Per sample and channel, the log-softmax of a map over its ``n_spatial`` trailing axes:
    ``(..., C, H, W)`` → ``(..., C, H·W)``."""
    return F.log_softmax(feature_map.flatten(-n_spatial), dim=-1)


def spatial_entropy(feature_map: torch.Tensor, n_spatial: int = 2) -> torch.Tensor:
    """Entropy (nats) of each channel's softmax over positions, averaged over the samples:
    ``(..., N, C, H, W)`` → ``(..., C)``. log(H·W) for a flat map, 0 for a single peak."""
    log_p = spatial_log_probs(feature_map, n_spatial)
    return -(log_p.exp() * log_p).sum(-1).mean(-2)


def effective_rank(features: torch.Tensor, n_spatial: int = 0) -> torch.Tensor:
    """Effective rank (Roy & Vetterli 2007) of centred features ``(..., N, C[, spatial])``:
    exp of the entropy of the singular values normalised to sum 1. Between 1 (one direction)
    and min(N, C) (all directions equally used)."""
    if n_spatial:
        features = features.flatten(-n_spatial).mean(-1)
    centred = (features - features.mean(-2, keepdim=True)).double()
    values = torch.linalg.svdvals(centred)
    p = values / values.sum(-1, keepdim=True).clamp_min(1e-300)
    entropy = -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(-1)
    return entropy.exp()


def structure_diagnostics(output_features: torch.Tensor, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
    """DS-CMKD's diagnostics per leading index: ``channel_corr`` (mean |off-diagonal
    correlation|) and ``effective_rank`` of ``output_features`` (pooled ``(..., N, C)``, or a map
    ``(..., N, C, H, W)`` that is pooled first), and ``spatial_entropy`` (nats, mean over
    channels and samples) of ``feature_map`` ``(..., N, C, H, W)``."""
    n_spatial = 2 if output_features.dim() == feature_map.dim() else 0
    output_features = output_features.double()
    return {
        "channel_corr": mean_abs_correlation(output_features, n_spatial),
        "spatial_entropy": spatial_entropy(feature_map.double()).mean(-1),
        "effective_rank": effective_rank(output_features, n_spatial),
    }
