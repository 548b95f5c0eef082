"""Algorithm 1 of MFH: which channels of a teacher carry modality-general information.

1. :func:`joint_fit` trains a teacher net on ``x_a`` and a student net on ``x_b`` together with
   ``CE_a + CE_b + MSE(logits_a, logits_b)``: the agreement term pulls both nets towards what
   the two modalities share.
2. :func:`permutation_saliency` permutes one channel of a chosen teacher layer across samples
   (``repeats`` times) and scores it by the MSE between the teacher's and the student's logits:
   a channel the agreement relies on (modality-general) raises the MSE when scrambled.
3. :func:`min_max` normalises the scores per model; :func:`top_channels` takes the top k as
   modality-general.

``layer`` is ``"input"`` (the teacher's input channels) or any named layer of the teacher
(``"embedding"``, ``"relu1"``, ``"conv2"``…); a channel is an index on the axis after the
sample axis. All models of a stack (seeds × settings) are scored together.

:func:`mean_replacement` builds the edit that replaces chosen channels by their mean, the
modified teacher of MFH's real-data studies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..engine import Edit, FitResult, Stack, TrainConfig, broadcast_models, fit
from ..models import ModelSpec
from ..systems import JointAgreement

ALGORITHM1_CONFIG = TrainConfig(epochs=1000, lr=0.01, optimizer="sgd", momentum=0.9)
INPUT = "input"


def joint_fit(
    teacher_spec: ModelSpec,
    x_a: torch.Tensor,
    student_spec: ModelSpec,
    x_b: torch.Tensor,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    config: TrainConfig = ALGORITHM1_CONFIG,
    agreement_weight: float = 1.0,
    init: Mapping[str, Stack] | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``len(seeds)`` (teacher, student) pairs as a :class:`~cmkd_lab.systems.JointAgreement`
    system: ``x_a``, ``x_b`` are ``(M, N, ...)`` or shared ``(N, ...)``; ``y`` is ``(M, N)`` or
    ``(N,)``. The result's modules are ``"teacher"`` and ``"student"``; ``init`` may give their
    initial nets (stacks of M copies) instead of building them from the seeds."""
    n_models = len(seeds)
    y = torch.as_tensor(y, dtype=torch.long)
    data = {
        "x_a": broadcast_models(x_a, n_models, len(teacher_spec.input_shape)),
        "x_b": broadcast_models(x_b, n_models, len(student_spec.input_shape)),
        "y": y.unsqueeze(0).expand(n_models, -1) if y.dim() == 1 else y,
    }
    if not (data["x_a"].shape[:2] == data["x_b"].shape[:2] == data["y"].shape):
        raise ValueError(
            f"x_a {tuple(data['x_a'].shape[:2])}, x_b {tuple(data['x_b'].shape[:2])} and "
            f"y {tuple(data['y'].shape)} must be (models, samples)"
        )
    system = JointAgreement(teacher_spec, student_spec, agreement_weight)
    return fit(
        system, data, seeds=seeds, config=config, init=init, progress=progress, description="Algorithm 1: joint fit"
    )


def _feeds_head(spec: ModelSpec, layer: str) -> bool:
    """Whether ``layer``'s output (flattened) is exactly what the linear head reads."""
    if layer == "embedding":
        return True
    if layer == INPUT:
        return spec.kind == "linear"
    plan = [name for name, _, _ in spec.layers()]
    return plan[-1] == layer


def layer_output(models: Stack, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of ``layer`` (``"input"``: ``x`` itself), ``(M, N, channels, ...)``."""
    x = models.broadcast(x)
    if layer == INPUT:
        return x
    with torch.no_grad():
        return models.forward(x, features=[layer])[1][layer]


def _permutations(n_models: int, n_samples: int, repeats: int, generator: torch.Generator) -> torch.Tensor:
    """``(repeats, M, N)`` permutations of the sample axis, one per model and repeat."""
    return torch.rand(repeats, n_models, n_samples, generator=generator).argsort(-1)


def _per_channel(
    permutations: torch.Tensor, repeats: int, n_models: int, n_channels: int, n_samples: int
) -> torch.Tensor:
    """Permutations ``(repeats, M, N)`` (shared by the channels) or ``(repeats, M, channels, N)``
    as ``(repeats, M, channels, N)``: one per repeat, model and channel."""
    shared = (repeats, n_models, n_samples)
    if tuple(permutations.shape) == shared:
        return permutations.unsqueeze(2).expand(-1, -1, n_channels, -1)
    if tuple(permutations.shape) != (repeats, n_models, n_channels, n_samples):
        raise ValueError(
            f"permutations must be (repeats, models, N) = {shared} or (repeats, models, channels, N) = "
            f"{(repeats, n_models, n_channels, n_samples)}, got {tuple(permutations.shape)}"
        )
    return permutations


@torch.no_grad()
def permutation_saliency(
    teacher: Stack,
    x_a: torch.Tensor,
    student: Stack,
    x_b: torch.Tensor,
    *,
    layer: str = INPUT,
    repeats: int = 100,
    seed: int = 0,
    permutations: torch.Tensor | None = None,
    closed_form: bool = True,
) -> torch.Tensor:
    """Raw Algorithm 1 scores ``(M, channels)``: per channel of the teacher's ``layer``, the
    MSE between teacher and student logits with that channel permuted across samples, averaged
    over ``repeats`` permutations.

    Where the layer feeds the linear head directly (``"embedding"``, a linear model's input)
    the permuted logits are computed in closed form (``logits + W[:, c]·(h_perm − h)``), which
    equals the full forward pass (``closed_form=False`` runs it anyway, to check); other layers
    run the network with the layer edited. Every channel sees the same ``repeats`` permutations,
    drawn from ``seed``, unless ``permutations`` gives them: ``(repeats, M, N)`` shared by the
    channels or ``(repeats, M, channels, N)`` one per channel (e.g. an official script's draws).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    x_a, x_b = teacher.broadcast(x_a), student.broadcast(x_b)
    target, _ = student.forward(x_b)
    hidden = layer_output(teacher, x_a, layer)
    n_models, n_samples, n_channels = hidden.shape[:3]
    if permutations is None:
        permutations = _permutations(n_models, n_samples, repeats, torch.Generator().manual_seed(int(seed)))
    perms = _per_channel(torch.as_tensor(permutations, dtype=torch.long), repeats, n_models, n_channels, n_samples)
    scores = torch.zeros(n_models, n_channels)
    if closed_form and _feeds_head(teacher.spec, layer):
        base, _ = teacher.forward(x_a)
        flat = hidden.reshape(n_models, n_samples, -1)
        if flat.shape[2] != n_channels:
            raise ValueError(f"layer {layer!r} has spatial axes; its channels do not feed the head one to one")
        weight = teacher.params["head.weight"]  # (M, C_out, channels)
        gap = base - target  # (M, N, K)
        for c in range(n_channels):
            column = flat[:, :, c]  # (M, N)
            shifted = torch.gather(column.unsqueeze(0).expand(repeats, -1, -1), 2, perms[:, :, c]) - column
            change = shifted.unsqueeze(-1) * weight[:, :, c].unsqueeze(1)  # (R, M, N, K)
            scores[:, c] = ((gap + change) ** 2).mean((-1, -2)).mean(0)
        return scores
    rows = torch.arange(n_models).unsqueeze(1)
    for c in range(n_channels):
        for perm in perms[:, :, c]:
            permuted = hidden.clone()
            permuted[:, :, c] = hidden[rows, perm][:, :, c]
            if layer == INPUT:
                logits, _ = teacher.forward(permuted)
            else:
                logits, _ = teacher(x_a, edits={layer: Edit(lambda _output, replacement: replacement, (permuted,))})
            scores[:, c] += ((logits - target) ** 2).mean((-1, -2)) / repeats
    return scores


def min_max(scores: torch.Tensor) -> torch.Tensor:
    """Scores rescaled to [0, 1] per model (row); a constant row becomes zeros."""
    low = scores.min(-1, keepdim=True).values
    span = scores.max(-1, keepdim=True).values - low
    return torch.where(span > 0, (scores - low) / span.clamp_min(1e-12), torch.zeros_like(scores))


def top_channels(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring channels of each model, ``(M, k)``."""
    if not 0 <= k <= scores.shape[-1]:
        raise ValueError(f"k must lie in 0..{scores.shape[-1]}, got {k}")
    return scores.topk(k, dim=-1).indices


def channel_mask(index: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Boolean ``(M, n_channels)`` mask with the channels in ``index`` ``(M, k)`` set."""
    mask = torch.zeros(index.shape[0], n_channels, dtype=torch.bool)
    return mask.scatter(1, index, True)


def channel_recovery(selected: torch.Tensor, true_channels: Sequence[int]) -> np.ndarray:
    """Per model, the fraction of ``true_channels`` found among the ``selected`` ``(M, k)``."""
    truth = torch.as_tensor(list(true_channels))
    if truth.numel() == 0:
        raise ValueError("true_channels is empty")
    return torch.isin(selected, truth).sum(-1).double().div(truth.numel()).numpy()


@dataclass
class Saliency:
    """Algorithm 1's result: min-max normalised scores ``(M, channels)``, raw scores, the joint fit."""

    scores: torch.Tensor
    raw: torch.Tensor
    joint: FitResult
    layer: str

    def modality_general(self, k: int) -> torch.Tensor:
        """The top-k channels of each model, ``(M, k)``."""
        return top_channels(self.scores, k)


def algorithm1(
    teacher_spec: ModelSpec,
    x_a: torch.Tensor,
    student_spec: ModelSpec,
    x_b: torch.Tensor,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    layer: str = INPUT,
    repeats: int = 100,
    config: TrainConfig = ALGORITHM1_CONFIG,
    init: Mapping[str, Stack] | None = None,
    permutations: torch.Tensor | None = None,
    progress: bool | None = None,
) -> Saliency:
    """MFH Algorithm 1 end to end: joint fit, permutation saliency on ``layer``, min-max.
    ``init`` and ``permutations`` (default: from the seeds) are passed to :func:`joint_fit` and
    :func:`permutation_saliency`."""
    joint = joint_fit(teacher_spec, x_a, student_spec, x_b, y, seeds=seeds, config=config, init=init, progress=progress)
    teacher, student = joint.modules["teacher"], joint.modules["student"]
    raw = permutation_saliency(
        teacher, x_a, student, x_b, layer=layer, repeats=repeats, seed=int(seeds[0]), permutations=permutations
    )
    return Saliency(min_max(raw), raw, joint, layer)


def mean_replacement(mask: torch.Tensor, means: torch.Tensor) -> Edit:
    """An edit for ``Stack(..., edits={layer: ...})``: channels where ``mask`` ``(M, channels)``
    is set take the constant ``means`` ``(M, channels, ...)`` (e.g. their mean over the training
    batch); the others pass through."""
    return Edit(_replace_channels, (mask, means))


def _replace_channels(output: torch.Tensor, mask: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """One model's ``output`` ``(N, channels, ...)`` with the masked channels set to ``means``."""
    mask = mask.reshape(mask.shape + (1,) * (output.dim() - 2))
    return torch.where(mask, means, output)


def channel_means(models: Stack, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Each channel's mean over the samples of ``x``, ``(M, channels, ...)``."""
    return layer_output(models, x, layer).mean(1)
