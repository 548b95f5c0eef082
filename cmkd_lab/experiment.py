"""Teacher → student studies: the shared path of every paper's notebooks.

A study is a list of :class:`Task` (one dataset draw, its seed and the setting values it
stands for, e.g. ``{"gamma": 0.25}``). :func:`run_teacher_student` trains, for all tasks at
once, a teacher on one modality (or several, concatenated), a student on another without
distillation (``no_kd``) and one student per named distillation loss, and returns the tidy
results table. Tasks whose data have the same shapes are trained as one batched fit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd
import torch

from .datasets import PairedDataset, Splits
from .losses import Distiller
from .models import ModelSpec, StackedModels
from .results import RunLog, tidy_rows
from .training import FitResult, TeacherOutputs, TrainConfig, accuracy, fit


@dataclass(frozen=True)
class Task:
    """One dataset draw to run every method on."""

    splits: Splits
    seed: int
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Architecture:
    """A model spec without the data-dependent parts (input shape, classes)."""

    kind: str = "linear"
    hidden: tuple[int, ...] = ()
    kernel_size: int = 3

    def spec(self, input_shape: tuple[int, ...], n_classes: int) -> ModelSpec:
        return ModelSpec(self.kind, input_shape, n_classes, tuple(self.hidden), self.kernel_size)


Modality = str | tuple[str, ...]


def modality_input(data: PairedDataset, modality: Modality) -> torch.Tensor:
    """One modality's inputs, or several modalities flattened and concatenated (early fusion)."""
    if isinstance(modality, str):
        return data[modality]
    return torch.cat([data[m].flatten(1) for m in modality], dim=1)


def modality_label(modality: Modality) -> str:
    return modality if isinstance(modality, str) else "+".join(modality)


@dataclass
class StudyResult:
    """The tidy table, and per method one fit per group of equal-shape tasks
    (``fits[method][g]`` trained ``groups[g]``, model i on ``groups[g][i]``)."""

    table: pd.DataFrame
    fits: dict[str, list[FitResult]]
    groups: list[list[Task]]
    log: RunLog

    def logits(self, method: str, modality: Modality, part: str = "test") -> list[tuple[Task, torch.Tensor]]:
        """Each task with the logits ``(N, C)`` that ``method``'s model gives on its ``part`` split."""
        pairs = []
        for result, group in zip(self.fits[method], self.groups):
            x, _ = _stack(group, part, modality)
            logits = result.models.predict(x)
            pairs.extend(zip(group, logits))
        return pairs


def _stack(tasks: Sequence[Task], part: str, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
    datasets = [getattr(t.splits, part) for t in tasks]
    return torch.stack([modality_input(d, modality) for d in datasets]), torch.stack([d.labels for d in datasets])


def _groups_of_equal_shape(tasks: Sequence[Task], modalities: Sequence[Modality]) -> list[list[Task]]:
    groups: dict[tuple, list[Task]] = defaultdict(list)
    for task in tasks:
        key = tuple(
            (part, tuple(modality_input(data, m).shape))
            for part, data in task.splits.parts().items()
            for m in modalities
        )
        groups[key].append(task)
    return list(groups.values())


def run_teacher_student(
    tasks: Sequence[Task],
    *,
    study: str,
    teacher_modality: Modality,
    student_modality: str,
    teacher_model: Architecture = Architecture(),
    student_model: Architecture = Architecture(),
    teacher_config: TrainConfig = TrainConfig(),
    student_config: TrainConfig | None = None,
    losses: Mapping[str, Distiller] = {},
    include: Sequence[str] = ("teacher", "no_kd"),
    log: RunLog | None = None,
    progress: bool | None = None,
) -> StudyResult:
    """Train teacher, no-KD student and one student per loss in ``losses`` on every task.

    Returns rows with ``metric = "test_acc"`` (a fraction) per task seed; ``include`` chooses
    which of the baselines ("teacher", "no_kd") are reported (the teacher is always trained
    when a loss needs it). The test split is only used for the reported metric.
    """
    if not tasks:
        raise ValueError("a study needs at least one task")
    unknown = set(include) - {"teacher", "no_kd"}
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; valid: teacher, no_kd")
    clash = set(losses) & {"teacher", "no_kd"}
    if clash:
        raise ValueError(f"loss names {sorted(clash)} clash with the baselines; rename them")
    student_config = student_config or teacher_config
    log = log if log is not None else RunLog()
    rows, fits = [], defaultdict(list)
    groups = _groups_of_equal_shape(tasks, [teacher_modality, student_modality])
    for group in groups:
        seeds = [t.seed for t in group]
        settings = [t.settings for t in group]
        n_classes = max(part.n_classes for t in group for part in t.splits.parts().values())

        def train_and_test(method, modality, architecture, config, loss=None, teacher=None):
            x, y = _stack(group, "train", modality)
            spec = architecture.spec(tuple(x.shape[2:]), n_classes)
            val = _stack(group, "val", modality) if group[0].splits.val is not None else None
            result = fit(spec, x, y, seeds=seeds, config=config, loss=loss, teacher=teacher, val=val,
                         progress=progress, description=f"{study}: {method}")
            x_test, y_test = _stack(group, "test", modality)
            scores = accuracy(result.models, x_test, y_test)
            rows.extend(tidy_rows(study, method, settings, seeds, "test_acc", scores))
            fits[method].append(result)
            log.add(study=study, method=method, modality=modality_label(modality), **result.record)
            return result

        needs_teacher = "teacher" in include or any(loss.needs_teacher for loss in losses.values())
        if needs_teacher:
            teacher = train_and_test("teacher", teacher_modality, teacher_model, teacher_config)
        if "no_kd" in include:
            train_and_test("no_kd", student_modality, student_model, student_config)
        for name, loss in losses.items():
            x_teacher, _ = _stack(group, "train", teacher_modality)
            outputs = TeacherOutputs.of(teacher.models, x_teacher, loss.teacher_layers) if loss.needs_teacher else None
            train_and_test(name, student_modality, student_model, student_config, loss=loss, teacher=outputs)
    table = pd.DataFrame(rows)
    if "teacher" not in include:
        table = table[table["method"] != "teacher"].reset_index(drop=True)
    return StudyResult(table, dict(fits), groups, log)
