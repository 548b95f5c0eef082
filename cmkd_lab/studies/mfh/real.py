"""MFH's real-data protocol (the RAVDESS study, papers.md §1) on real paired datasets.

Any registered dataset of real paired data can be studied by name (the kit's own, downloaded ones,
the user's). Its teacher → student modalities come from ``pairs`` ("dataset:teacher>student"), else
from the kit's defaults for its own datasets, else they are its first two modalities; the nets come
from the defaults, else from each modality's shape (vector: MLP, (C, T): 1-D CNN, (C, H, W): 2-D CNN).

Per dataset and group of equal-shape seeds: Algorithm 1 (joint fit and permutation saliency of
the teacher's ``embedding`` channels); the teacher in four modes, ``regular`` (whole) or with
``fraction`` of its channels replaced by their training mean, chosen ``random``,
``least_salient`` (the MG teacher: the most modality-general channels stay) or
``most_salient``; No-KD; one KD student per mode, all modes in one batched fit. The teacher is
Algorithm 1's jointly trained teacher net, so every mode edits the very channels that were scored.

Rows (study ``mfh_real``; settings ``dataset``, ``teacher_mode``): ``test_acc`` of teacher, no_kd
(mode "regular") and kd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch

from ... import figures
from ...datasets import PairedDataset, load, real_dataset_names, standardise
from ...experiment import (Architecture, StudyRun, Task, classifier_run, fit_run, groups_of_equal_shape, repeat_models,
                          stack_split)
from ...losses import Distiller
from ...metrics import accuracy
from ...notebook import NotebookParameters
from ...results import RunLog, mean_std_cells, summarize, tidy_rows
from ...saliency import algorithm1, channel_means, mean_replacement
from ...training import TrainConfig
from ..real_data import net_for, note_small_test_sets, parse_pairs, split_records, train_config
from .common import kd_loss, paired_difference, random_mask, top_mask

STUDY = "mfh_real"


@dataclass(frozen=True)
class RealPair:
    """A real paired dataset as teacher modality → student modality, with the nets to use."""

    teacher_modality: str
    student_modality: str
    teacher: Architecture
    student: Architecture


# The kit's own datasets: the pair and nets this study was tuned on.
DEFAULT_PAIRS = {
    "mfeat": RealPair("pixels", "zernike", Architecture("mlp", (128,)), Architecture("mlp", (64,))),
    "watch": RealPair("accel", "gyro", Architecture("cnn1d", (16, 32)), Architecture("cnn1d", (16, 32))),
    "segment": RealPair("colour", "shape", Architecture("mlp", (64,)), Architecture("mlp", (32,))),
}
TEACHER_MODES = ("regular", "random", "least_salient", "most_salient")


@dataclass(frozen=True)
class RealParameters(NotebookParameters):
    """The RAVDESS protocol on real paired data: Algorithm 1 on the teacher's penultimate layer,
    then ``fraction`` of its channels replaced by their training mean."""

    datasets: tuple[str, ...] = ("mfeat", "segment")
    pairs: tuple[str, ...] = ()  # "dataset:teacher>student", e.g. "mine:accel>gyro"
    n_runs: int | None = None
    epochs: int | None = None
    alg1_repeats: int | None = None
    fraction: float = 0.75
    lr: float = 0.01
    momentum: float = 0.9
    temperature: float = 1.0
    kd_ce_weight: float = 0.0
    kd_weight: float = 1.0
    reduction: str = "batchmean"
    standardize: bool = True  # z-score each modality with training-split statistics
    batch_size: int | None = None  # None: full batch up to 2048 training samples, else mini-batches (see real_data)

    notebook: ClassVar[str] = "02_mfh_real"
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 5, "epochs": 150, "alg1_repeats": 5},
        "full": {"n_runs": 10, "epochs": 500, "alg1_repeats": 100},
    }
    choices: ClassVar = {"datasets": real_dataset_names, "reduction": ("mean", "batchmean")}

    def __post_init__(self):
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
        self.chosen_pairs()

    def chosen_pairs(self) -> dict[str, tuple[str, str]]:
        """``pairs`` as dataset → (teacher modality, student modality)."""
        return {name: (teacher, student) for name, teacher, student in parse_pairs(self.pairs, self.datasets)}


def choose_pair(p: RealParameters, name: str, data: PairedDataset) -> RealPair:
    """Dataset ``name``'s pair: from ``p.pairs``, else the defaults, else its first two modalities;
    nets from the defaults, else by the shape of each modality's samples."""
    chosen = p.chosen_pairs()
    if name in chosen:
        teacher, student = chosen[name]
    elif name in DEFAULT_PAIRS:
        return DEFAULT_PAIRS[name]
    elif len(data.modality_names) >= 2:
        teacher, student = data.modality_names[:2]
    else:
        raise ValueError(f"dataset {name!r} has one modality, {data.modality_names}; MFH needs a teacher's and a student's")

    return RealPair(teacher, student, net_for(data, teacher, name), net_for(data, student, name))


def make_tasks(p: RealParameters, name: str) -> tuple[RealPair, list[Task]]:
    """Dataset ``name``'s pair and one task per seed: the seeded split, both modalities standardised."""
    data = load(name)
    pair = choose_pair(p, name, data)
    modalities = [pair.teacher_modality, pair.student_modality]
    return pair, [Task(standardise(data.split(seed), modalities, scale=p.standardize), seed, {"dataset": name}) for seed in range(p.n_runs)]


def _mode_masks(scores: torch.Tensor, fraction: float, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
    """Channels to replace per teacher mode, ``(M, channels)``."""
    n_models, n_channels = scores.shape
    k = torch.full((n_models,), int(round(fraction * n_channels)))
    return {
        "regular": torch.zeros(n_models, n_channels, dtype=torch.bool),
        "random": random_mask(seeds, k, n_channels),
        "least_salient": top_mask(-scores, k),  # keeps the most modality-general channels: the MG teacher
        "most_salient": top_mask(scores, k),
    }


def run(p: RealParameters, progress: bool | None = None) -> StudyRun:
    """The protocol on every dataset of ``p``, one group of equal-shape seeds at a time."""
    kd = kd_loss(p, ce_weight=p.kd_ce_weight)
    studied = [make_tasks(p, name) for name in p.datasets]  # every dataset loads before anything trains
    every_task = [task for _, tasks in studied for task in tasks]
    note_small_test_sets(every_task)
    runs = [StudyRun(pd.DataFrame(), RunLog(splits=split_records(every_task)))]
    for pair, tasks in studied:
        for group in groups_of_equal_shape(tasks, [pair.teacher_modality, pair.student_modality]):
            config = train_config(group, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer="sgd",
                                  momentum=p.momentum, device=p.device)
            runs += _run_group(pair, group, config, kd, p, progress)
    return StudyRun.concat(runs)


def _run_group(pair: RealPair, tasks: list[Task], config: TrainConfig, kd: Distiller, p: RealParameters,
               progress: bool | None) -> list[StudyRun]:
    seeds = [t.seed for t in tasks]
    (xa, y), (xa_test, y_test) = (stack_split(tasks, part, pair.teacher_modality) for part in ("train", "test"))
    xb, xb_test = (stack_split(tasks, part, pair.student_modality)[0] for part in ("train", "test"))
    n_classes = max(part.n_classes for t in tasks for part in t.splits.parts().values())
    teacher_spec = pair.teacher.spec(tuple(xa.shape[2:]), n_classes)
    student_spec = pair.student.spec(tuple(xb.shape[2:]), n_classes)
    saliency = algorithm1(teacher_spec, xa, student_spec, xb, y, seeds=seeds, layer="embedding",
                          repeats=p.alg1_repeats, config=config, progress=progress)
    teacher, masks = saliency.joint.modules["teacher"], _mode_masks(saliency.scores, p.fraction, seeds)
    means = channel_means(teacher, xa, "embedding")
    edits = {mode: {"embedding": mean_replacement(mask, means)} for mode, mask in masks.items()}
    settings = lambda mode: [{**t.settings, "teacher_mode": mode} for t in tasks]  # noqa: E731
    teacher_rows = [row for mode, edit in edits.items() for row in tidy_rows(
        STUDY, "teacher", settings(mode), seeds, "test_acc", accuracy(teacher(xa_test, edits=edit)[0], y_test).numpy())]
    k, tags = len(edits), {"dataset": tasks[0].settings["dataset"]}
    repeated = lambda x: repeat_models(x, k)  # noqa: E731
    train = dict(config=config, progress=progress, tags=tags)
    return [
        fit_run(STUDY, "algorithm1", saliency.joint, teacher_rows, **tags),
        classifier_run(STUDY, "no_kd", student_spec, (xb, y), (xb_test, y_test), settings("regular"), seeds=seeds, **train),
        classifier_run(STUDY, "kd", student_spec, (repeated(xb), repeated(y)), (repeated(xb_test), repeated(y_test)),
                       [s for mode in edits for s in settings(mode)], seeds=seeds * k, **train, loss=kd,
                       teacher_logits=torch.cat([teacher(xa, edits=edit)[0] for edit in edits.values()])),
    ]


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (percent) per dataset and teacher mode, teacher and students side by side."""
    acc = table[table["metric"] == "test_acc"]
    summary = summarize(acc, by=["dataset", "teacher_mode", "method"])
    summary["cell"] = mean_std_cells(summary)
    wide = summary.pivot(index=["dataset", "teacher_mode"], columns="method", values="cell")
    order = [m for m in TEACHER_MODES if m in acc["teacher_mode"].unique()]
    return wide.reindex(pd.MultiIndex.from_product([list(dict.fromkeys(acc["dataset"])), order]))[["teacher", "no_kd", "kd"]]


def accuracy_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    acc = table[(table["metric"] == "test_acc") & (table["method"] != "no_kd")].copy()
    acc["setting"] = acc["dataset"] + " · " + acc["teacher_mode"]
    summary = summarize(acc, by=["setting", "method"])
    return figures.grouped_bars(summary, x="setting", x_title="dataset · teacher mode", title=title)


# comparison -> (method, teacher mode) minus (method, teacher mode); No-KD rows carry mode "regular"
COMPARISONS = {
    "MG KD − regular KD": (("kd", "least_salient"), ("kd", "regular")),
    "random KD − regular KD": (("kd", "random"), ("kd", "regular")),
    "regular KD − No-KD": (("kd", "regular"), ("no_kd", "regular")),
    "MG KD − No-KD": (("kd", "least_salient"), ("no_kd", "regular")),
}


def comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, each comparison's difference per seed: mean and std over seeds (points)."""
    rows = lambda pair: dict(zip(("method", "teacher_mode"), pair))  # noqa: E731
    differences = pd.concat([
        paired_difference(part, rows(minuend), rows(subtrahend), on=["seed"]).assign(dataset=name, comparison=label)
        for name, part in table.groupby("dataset", sort=False) for label, (minuend, subtrahend) in COMPARISONS.items()
    ])
    summary = summarize(differences, by=["dataset", "comparison"])
    summary = summary.assign(mean=100 * summary["mean"], std=100 * summary["std"])
    return summary.rename(columns={"mean": "mean (points)"}).round(2)
