"""NTDH's channel-masking tool (official code, ``sklearn/main.py``; papers.md §2) as a step any
teacher/student pair can run.

The tool asks which of the teacher's input channels carry what the teacher and the student share,
and retrains the teacher on a few of them:

1. **Rank** (:func:`ntd_saliency`): train a teacher net on the teacher's modality and a student
   net on the student's together (:func:`~cmkd_lab.analysis.saliency.joint_fit`, MFH's Algorithm 1
   fit), then permute each input channel of the teacher across samples and score it by the
   non-target divergence (NTD, :func:`~cmkd_lab.analysis.metrics.non_target_divergence`) between
   the teacher's logits and the student's, averaged over ``repeats`` permutations, min-max
   normalised per task. A channel whose scrambling raises the NTD most is one the two nets' agreement
   relies on: information the two modalities share.
2. **Select** (:data:`MASKING_MODES`, a registry): keep ``mask_dim`` channels: ``alg1`` the
   highest-scoring, ``reverse`` the lowest-scoring, ``random`` drawn at random (without
   replacement, from the task's seed).
3. **Retrain and distil**: :meth:`ChannelMasking.variants` gives one teacher-input
   :data:`~cmkd_lab.studies.runner.Variant` per mode, so that :func:`run_channel_masking` (through
   :func:`~cmkd_lab.studies.runner.run_teacher_student`) trains the masked teachers of every mode,
   the unmasked one and all their students as one batched fit per method.

**Kept means "the others zeroed".** The official tool trains a new teacher on the selected
columns only (input width ``mask_dim``). The kit keeps the input width and sets the other channels
to 0: a zero input contributes nothing to the first layer's output and its weights get a zero
gradient (under SGD or Adam they never move; weight decay only shrinks them, still multiplying
zeros), so the net computes a function of the kept channels only and spans exactly the function
class of a net on those channels (the runner's ``pad_inputs`` rests on the same fact). What
differs is the initial scale of the kept channels' weights (PyTorch scales a layer's initial
weights by 1/√fan-in, which counts the zeroed channels). Keeping the width is what lets the
masked teachers of every mode train in one stacked fit with the unmasked one (a stack needs one
shape). Mean replacement would give the same function class too (a constant input acts as a
bias), but its weights get gradients and train as extra biases; zeros (the official code's own
``mask`` helper) leave nothing to train.

**Departures from the official tool, said where they are.** (a) Its joint fit's agreement term is
the non-target JS between the two nets' outputs; the kit's joint fit uses MFH's MSE between the
logits (:class:`~cmkd_lab.systems.JointAgreement`): the kit's NTD is a metric, and its gradient is
undefined (NaN) at the masked target entry, so it cannot serve as a loss as it stands. Both terms
pull the two nets to agree; the *ranking* is by NTD, as released. (b) ``random`` draws distinct
channels from the task's seed (the release draws with replacement, from 0..49 whatever the
width). (c) The release scores with 10 permutations per channel (:data:`REPEATS`, the default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ...analysis.metrics import NTD_VARIANTS, non_target_divergence
from ...analysis.results import RunLog, tidy_rows
from ...analysis.saliency import channel_mask, joint_fit, min_max, top_channels
from ...datasets.core import run_generator
from ...engine import FitResult, Stack, TrainConfig
from ...engine.registry import Registry
from ...losses import Distiller
from ...models import ModelSpec
from ..runner import (
    MetricHook,
    Modality,
    StudyRun,
    Task,
    Variant,
    groups_of_equal_shape,
    modality_label,
    run_teacher_student,
    stack_split,
)

REPEATS = 10  # permutations per channel, as the official tool
UNMASKED = "none"  # the variant name of the unmasked teacher
MASK_COLUMN = "channel_masking"  # the rows' column naming the teacher's masking mode
MASK_STREAM = "ntdh_channel_masking"  # the seed stream of the permutations and of "random"
SCORE_CHUNK = 2**24  # input elements per forward pass of the scoring (64 MiB of float32)

# A selection: (min-max saliency (M, channels), mask_dim, the tasks' seeds) -> kept channels (M, mask_dim)
Selection = Callable[[torch.Tensor, int, Sequence[int]], torch.Tensor]
MASKING_MODES: Registry[Selection] = Registry("channel masking mode")


@MASKING_MODES.register("alg1", about="the mask_dim channels of highest NTD saliency (modality-general)")
def most_salient(scores: torch.Tensor, mask_dim: int, seeds: Sequence[int]) -> torch.Tensor:
    return top_channels(scores, mask_dim)


@MASKING_MODES.register("reverse", about="the mask_dim channels of lowest NTD saliency")
def least_salient(scores: torch.Tensor, mask_dim: int, seeds: Sequence[int]) -> torch.Tensor:
    return top_channels(-scores, mask_dim)


@MASKING_MODES.register("random", about="mask_dim distinct channels drawn from the task's seed")
def random_channels(scores: torch.Tensor, mask_dim: int, seeds: Sequence[int]) -> torch.Tensor:
    n_channels = scores.shape[-1]
    draws = [run_generator(seed, MASK_STREAM, "pool").permutation(n_channels)[:mask_dim] for seed in seeds]
    return torch.as_tensor(np.stack(draws), dtype=torch.long)


# ----------------------------------------------------------------------------- ranking
@torch.no_grad()
def ntd_permutation_saliency(
    teacher: Stack,
    x_a: torch.Tensor,
    student: Stack,
    x_b: torch.Tensor,
    labels: torch.Tensor,
    *,
    seeds: Sequence[int],
    repeats: int = REPEATS,
    ntd_variant: str = "js",
) -> torch.Tensor:
    """Raw NTD saliency ``(M, channels)`` of the teacher's input channels: per channel, the mean
    over ``repeats`` permutations (across samples, drawn per model from its seed) of the NTD
    between the teacher's logits with that channel permuted and the student's logits.

    ``x_a`` ``(M, N, channels, ...)``, ``x_b`` ``(M, N, ...)``, ``labels`` ``(M, N)``; a channel is an
    index on the axis after the sample axis (a feature, or an image's colour channel).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if ntd_variant not in NTD_VARIANTS:
        raise ValueError(f"unknown NTD variant {ntd_variant!r}; valid: {', '.join(NTD_VARIANTS)}")
    n_models, n_samples, n_channels = x_a.shape[:3]
    device = teacher.device
    x_a, labels = x_a.to(device), labels.to(device)
    target = student(x_b.to(device))[0]  # (M, N, K)
    generators = [run_generator(seed, MASK_STREAM, "train") for seed in seeds]
    # every (channel, repeat) is one slice; as many slices as SCORE_CHUNK allows run as one forward pass
    slices = [(c, r) for c in range(n_channels) for r in range(repeats)]
    per_chunk = max(1, SCORE_CHUNK // x_a.numel())
    rows = torch.arange(n_models, device=device).unsqueeze(1)
    scores = torch.zeros(n_models, n_channels, dtype=torch.float64, device=device)
    for start in range(0, len(slices), per_chunk):
        chunk = slices[start : start + per_chunk]
        order = np.stack([[g.permutation(n_samples) for _ in chunk] for g in generators])  # (M, B, N)
        permuted = x_a.unsqueeze(1).repeat(1, len(chunk), *[1] * (x_a.dim() - 1))  # (M, B, N, channels, ...)
        for b, (c, _) in enumerate(chunk):
            permuted[:, b, :, c] = x_a[:, :, c][rows, torch.as_tensor(order[:, b], device=device)]
        logits = teacher(permuted.flatten(1, 2))[0].unflatten(1, (len(chunk), n_samples))
        ntd = non_target_divergence(
            logits, target.unsqueeze(1).expand_as(logits), labels.unsqueeze(1).expand(logits.shape[:-1]), ntd_variant
        )  # (M, B)
        for b, (c, _) in enumerate(chunk):
            scores[:, c] += ntd[:, b] / repeats
    return scores.float().cpu()


@dataclass
class ChannelSaliency:
    """NTD saliency of the teacher's input channels, per task: min-max normalised ``scores`` and
    ``raw`` scores ``(channels,)`` each, and the joint fits behind them (one per group of tasks of
    equal shapes). :meth:`of` looks tasks up (the very objects that were ranked)."""

    tasks: list[Task]
    scores: torch.Tensor  # (tasks, channels)
    raw: torch.Tensor
    joints: list[FitResult] = field(default_factory=list)

    @property
    def n_channels(self) -> int:
        return self.scores.shape[-1]

    def of(self, tasks: Sequence[Task]) -> torch.Tensor:
        """The normalised scores ``(len(tasks), channels)`` of ``tasks``."""
        where = {id(task): i for i, task in enumerate(self.tasks)}
        missing = [i for i, task in enumerate(tasks) if id(task) not in where]
        if missing:
            raise ValueError(
                f"tasks at positions {missing} were not ranked: rank the tasks the study runs "
                "(ntd_saliency(tasks, ...)) and pass those same Task objects"
            )
        return self.scores[[where[id(task)] for task in tasks]]


def teacher_channels(tasks: Sequence[Task], teacher_modality: Modality) -> int:
    """The number of input channels of the teacher's modality (the axis after the sample axis),
    the same for every task; an error when tasks disagree."""
    counts = {stack_split([task], "train", teacher_modality)[0].shape[2] for task in tasks}
    if len(counts) != 1:
        raise ValueError(f"the tasks' teacher inputs have different channel counts {sorted(counts)}")
    return counts.pop()


def ntd_saliency(
    tasks: Sequence[Task],
    *,
    teacher_modality: Modality,
    student_modality: Modality,
    teacher_model: ModelSpec,
    student_model: ModelSpec,
    config: TrainConfig,
    repeats: int = REPEATS,
    ntd_variant: str = "js",
    progress: bool | None = None,
) -> ChannelSaliency:
    """Rank every task's teacher input channels on its training split (step 1 of the module
    docstring): one joint fit per group of tasks of equal shapes (seeds: the tasks' seeds), then
    :func:`ntd_permutation_saliency`. Needs 3+ classes (NTD does)."""
    if not tasks:
        raise ValueError("ranking needs at least one task")
    order, scores, raws, joints = [], [], [], []
    for group in groups_of_equal_shape(tasks, [teacher_modality, student_modality]):
        x_a, y = stack_split(group, "train", teacher_modality)
        x_b, _ = stack_split(group, "train", student_modality)
        n_classes = max(t.splits.train.n_classes for t in group)
        seeds = [t.seed for t in group]
        joint = joint_fit(
            teacher_model.sized(tuple(x_a.shape[2:]), n_classes),
            x_a,
            student_model.sized(tuple(x_b.shape[2:]), n_classes),
            x_b,
            y,
            seeds=seeds,
            config=config,
            progress=progress,
        )
        raw = ntd_permutation_saliency(
            joint.modules["teacher"],
            x_a,
            joint.modules["student"],
            x_b,
            y,
            seeds=seeds,
            repeats=repeats,
            ntd_variant=ntd_variant,
        )
        order += group
        raws.append(raw)
        scores.append(min_max(raw))
        joints.append(joint)
    return ChannelSaliency(order, torch.cat(scores), torch.cat(raws), joints)


# ----------------------------------------------------------------------------- the step
def check_mask_dim(mask_dim: int, n_channels: int) -> None:
    """``mask_dim`` must keep at least one channel and at most all ``n_channels``."""
    if isinstance(mask_dim, bool) or int(mask_dim) != mask_dim or not 1 <= mask_dim <= n_channels:
        raise ValueError(
            f"mask_dim must be an integer in 1..{n_channels} (the teacher's input channels), got {mask_dim!r}"
        )


@dataclass
class ChannelMasking:
    """The registered step: NTD saliency per task and ``mask_dim``; per mode of
    :data:`MASKING_MODES`, which channels each task's teacher keeps and the teacher-input variant
    that zeroes the others."""

    saliency: ChannelSaliency
    mask_dim: int

    def __post_init__(self):
        check_mask_dim(self.mask_dim, self.saliency.n_channels)

    def keep(self, mode: str, tasks: Sequence[Task]) -> torch.Tensor:
        """The kept channels ``(len(tasks), mask_dim)`` of each task under ``mode``."""
        select = MASKING_MODES.get(mode)
        return select(self.saliency.of(tasks), self.mask_dim, [t.seed for t in tasks])

    def variant(self, mode: str) -> Variant:
        """The teacher inputs ``(M, N, channels, ...)`` with every channel but the kept ones set to 0."""
        MASKING_MODES.get(mode)  # an unknown mode fails here, before any fit

        def masked(x: torch.Tensor, tasks: Sequence[Task]) -> torch.Tensor:
            mask = channel_mask(self.keep(mode, tasks), x.shape[2]).to(x.dtype)
            return x * mask.view(*mask.shape[:1], 1, mask.shape[1], *[1] * (x.dim() - 3))

        return masked

    def variants(self, modes: Sequence[str], unmasked: str | None = UNMASKED) -> dict[str, Variant | None]:
        """A variant per mode, after the unmasked teacher (``unmasked``: its name; ``None``: left out)."""
        if not modes:
            raise ValueError(f"name at least one masking mode; valid: {', '.join(MASKING_MODES.names())}")
        if unmasked in modes:
            raise ValueError(f"{unmasked!r} names the unmasked teacher; it cannot be a masking mode")
        return {**({unmasked: None} if unmasked is not None else {}), **{mode: self.variant(mode) for mode in modes}}


def run_channel_masking(
    tasks: Sequence[Task],
    *,
    study: str,
    teacher_modality: Modality,
    student_modality: str,
    teacher_model: ModelSpec,
    student_model: ModelSpec,
    teacher_config: TrainConfig,
    losses: Mapping[str, Distiller],
    modes: Sequence[str] = ("alg1", "reverse", "random"),
    mask_dim: int = 2,
    student_config: TrainConfig | None = None,
    saliency_config: TrainConfig | None = None,
    repeats: int = REPEATS,
    ntd_variant: str = "js",
    variant_column: str = MASK_COLUMN,
    metrics: Sequence[MetricHook] = (),
    metric_options: Mapping | None = None,
    progress: bool | None = None,
) -> StudyRun:
    """NTDH's channel-masking tool on ``tasks``: rank (joint fit on ``saliency_config``, default
    ``teacher_config``), then the unmasked teacher and one masked teacher per mode, No-KD and one
    student per loss behind each, batched by :func:`~cmkd_lab.studies.runner.run_teacher_student`.

    Rows: the runner's (``variant_column``: ``"none"`` or the mode; No-KD rows carry ``"none"``)
    and, per task and mode, ``kept_channel_1`` … ``kept_channel_<mask_dim>`` (method ``teacher``):
    the kept channels' indices, most salient first for ``alg1``. The joint fits are logged as
    method ``saliency``. ``mask_dim`` and ``modes`` are checked before any fit.
    """
    if not tasks:
        raise ValueError("a study needs at least one task")
    for mode in modes:
        MASKING_MODES.get(mode)
    check_mask_dim(mask_dim, teacher_channels(tasks, teacher_modality))
    saliency = ntd_saliency(
        tasks,
        teacher_modality=teacher_modality,
        student_modality=student_modality,
        teacher_model=teacher_model,
        student_model=student_model,
        config=saliency_config or teacher_config,
        repeats=repeats,
        ntd_variant=ntd_variant,
        progress=progress,
    )
    step = ChannelMasking(saliency, mask_dim)
    log = RunLog()
    for joint in saliency.joints:
        log.add(study=study, method="saliency", modality=modality_label(teacher_modality), **joint.record)
    run = run_teacher_student(
        tasks,
        study=study,
        teacher_modality=teacher_modality,
        student_modality=student_modality,
        teacher_model=teacher_model,
        student_model=student_model,
        teacher_config=teacher_config,
        student_config=student_config,
        losses=losses,
        variants=step.variants(modes),
        variant_column=variant_column,
        metrics=metrics,
        metric_options=metric_options,
        log=log,
        progress=progress,
    )
    for joint in saliency.joints:
        run.artifacts.fits["saliency"].append(joint)
    kept = []
    for mode in modes:
        channels = step.keep(mode, tasks).numpy()
        settings = [{**t.settings, variant_column: mode} for t in tasks]
        for rank in range(mask_dim):
            kept += tidy_rows(
                study, "teacher", settings, [t.seed for t in tasks], f"kept_channel_{rank + 1}", channels[:, rank]
            )
    run.table = pd.concat([run.table, pd.DataFrame(kept)], ignore_index=True)
    return run
