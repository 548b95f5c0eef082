"""DS-CMKD (papers.md §4): a high-quality teacher, low-quality students, and the dimensional
structure of what they learn (05_ds_cmkd).

Pairs: clean and degraded images (:mod:`cmkd_lab.datasets.degraded`, the degradation ``severity``
a knob), and any registered dataset's image pair by name (``pairs=["eurosat_ms_sar:ms>sar"]``,
its ``severity`` NaN: the gap is whatever the two modalities are). Per pair and seed: a 2-D CNN
with BatchNorm trained with CE on the high-quality modality (the teacher), and students on the
low-quality one, trained with

- ``ce``: cross-entropy only;
- ``kd`` and ``fitnet``: from the teacher (Hinton KD with T² scaling; a hint on the embedding);
- ``ds_ci``, ``ds_ud``, ``ds_both``: DS-CMKD as we read it, :class:`~cmkd_lab.losses.DimensionalStructure`:
  CE + KD from the teacher (the paper's "guided by the high-quality modality") + the DS terms
  (channel independence, spatial uniformity, both);
- ``ds (no teacher)``: CE + both DS terms without the teacher, an ablation.

KD and the three DS students are one batched fit (the DS loss with per-model weights, KD's both
0), CE and DS without a teacher another, FitNet a third; teachers are trained once per seed and
clean data, so the severities share them. Model selection is ``select`` (default: the best
validation epoch).

Rows (tidy; settings ``dataset``, ``source``, ``target``, ``severity``): ``test_acc`` and the
diagnostics of :func:`~cmkd_lab.analysis.metrics.structure_diagnostics` on the test split, each model on
its own modality: ``channel_corr`` and ``effective_rank`` of the output features
(``output_layer``), ``spatial_entropy`` of the intermediate map (``map_layer``). Studies:
``ds_severity`` (the degraded pairs, every method and severity), ``ds_methods`` (the registered
pairs), ``ds_analysis`` (the motivating analysis: the teacher's features on clean inputs beside
the CE student's on degraded ones, for every pair).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ...analysis.metrics import accuracy, structure_diagnostics
from ...analysis.results import tidy_rows
from ...app.notebook import NotebookParameters
from ...datasets import Splits, load, real_dataset_names, standardise
from ...datasets.core import run_generator
from ...datasets.degraded import DEGRADATIONS, DEGRADED_DATASETS
from ...engine import SELECTION_RULES, Stack, TrainConfig
from ...losses import make_loss
from ...models import ModelSpec
from ...systems import Distillation
from ..real_data import parse_pairs, split_records
from ..runner import StudyRun, StudyRunner, Task, repeat_models

DS_METHODS = ("ds_ci", "ds_ud", "ds_both")  # DS-CMKD: KD from the teacher + the DS terms (our reading)
NO_TEACHER = "ds (no teacher)"  # CE + both DS terms, no teacher: the ablation of the teacher's part
METHODS = ("ce", "kd", "fitnet") + DS_METHODS + (NO_TEACHER,)  # the students
ALL_METHODS = ("teacher",) + METHODS
STUDIES = ("ds_analysis", "ds_methods", "ds_severity")
DIAGNOSTICS = ("channel_corr", "spatial_entropy", "effective_rank")
METRICS = ("test_acc",) + DIAGNOSTICS
DEGRADED_SOURCE, DEGRADED_TARGET = "clean", "degraded"
# Our reading of "guided by the high-quality modality": Hinton KD from its teacher (the DS loss's default guide).
DS_GUIDE = "kd"
# The batched DS fits: per guide, its students and the DS terms each switches on (independence,
# uniformity). With both off, the guided fit's student is plain KD and the unguided one's plain CE.
DS_FITS = {
    DS_GUIDE: {"kd": (0, 0), "ds_ci": (1, 0), "ds_ud": (0, 1), "ds_both": (1, 1)},
    "none": {"ce": (0, 0), NO_TEACHER: (1, 1)},
}
# each DS student's baseline: the student of its fit with both terms off (same guidance, same seeds)
DS_BASELINE = {
    method: next(base for base, switches in students.items() if switches == (0, 0))
    for students in DS_FITS.values()
    for method, switches in students.items()
    if switches != (0, 0)
}


@dataclass(frozen=True)
class DSParameters(NotebookParameters):
    """DS-CMKD: the motivating analysis, the severity sweep, and registered image pairs."""

    images: tuple[str, ...] | None = None  # clean/degraded image sets (quick: digits; full: digits and mfeat)
    severities: tuple[float, ...] = (0.25, 0.5, 0.75)
    degradations: tuple[str, ...] = DEGRADATIONS
    pairs: tuple[str, ...] = ()  # registered image pairs "dataset:high>low", e.g. "nyu_depth_v2:rgb>depth"
    methods: tuple[str, ...] = METHODS
    n_runs: int | None = None
    n_train: int | None = None  # training images per seed of the degraded sets (a seeded subset); 0: all
    epochs: int | None = None
    teacher_epochs: int | None = None
    hidden: tuple[int, ...] = (8, 16, 16)
    lr: float = 0.03
    batch_size: int = 64
    select: str = "best_val"
    independence_weight: float = 1.0
    uniformity_weight: float = 1.0
    output_layer: str = "embedding"
    map_layer: str = "relu1"
    kd_temperature: float = 4.0
    kd_weight: float = 1.0
    hint_weight: float = 1.0

    notebook: ClassVar[str] = "05_ds_cmkd"
    profile_defaults: ClassVar = {
        "quick": {"images": ("digits_degraded",), "n_runs": 3, "n_train": 600, "epochs": 10, "teacher_epochs": 10},
        "full": {"images": DEGRADED_DATASETS, "n_runs": 5, "n_train": 600, "epochs": 10, "teacher_epochs": 15},
    }
    choices: ClassVar = {
        "images": DEGRADED_DATASETS,
        "methods": METHODS,
        "degradations": DEGRADATIONS,
        "select": SELECTION_RULES,
    }

    def __post_init__(self):
        for severity in self.severities:
            if not 0 <= severity <= 1:
                raise ValueError(f"severities lie in [0, 1] (0: no degradation), got {severity}")
        parse_pairs(self.pairs, real_dataset_names())
        if not self.methods:
            raise ValueError(f"methods is empty; valid methods: {', '.join(METHODS)}")
        if not self.images and not self.pairs:
            raise ValueError("nothing to run: give images (clean/degraded sets) or pairs (registered image pairs)")
        if not self.hidden:
            raise ValueError("hidden needs the CNN's channels per stage, e.g. (8, 16, 16)")

    def net(self) -> ModelSpec:
        return ModelSpec("cnn2d", hidden=tuple(self.hidden), batch_norm=True)

    def train_config(self, epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            lr=self.lr,
            optimizer="adam",
            batch_size=self.batch_size,
            select=self.select,
            device=self.device,
        )

    def ds_loss(self, guide: str, weights: Sequence[tuple[float, float]]):
        """The DS loss guided by ``guide`` for one batched fit: one (independence, uniformity)
        pair of weights per model, with this notebook's layers and KD or hint settings."""
        return make_loss(
            "ds",
            guide=guide,
            temperature=self.kd_temperature,
            kd_weight=self.kd_weight,
            hint_weight=self.hint_weight,
            output_layer=self.output_layer,
            map_layer=self.map_layer,
            independence_weight=tuple(float(w[0]) for w in weights),
            uniformity_weight=tuple(float(w[1]) for w in weights),
        )

    def switched_weights(self, guide: str, methods: Sequence[str], n_tasks: int) -> list[tuple[float, float]]:
        """Per model of a batched fit of ``DS_FITS[guide]``: ``methods`` blocks of ``n_tasks``
        models, each block's DS weights those of this notebook switched as its method says."""
        return [
            (self.independence_weight * DS_FITS[guide][m][0], self.uniformity_weight * DS_FITS[guide][m][1])
            for m in methods
            for _ in range(n_tasks)
        ]


@dataclass(frozen=True)
class Pair:
    """One seed's split of one high/low-quality pair, standardised (training-split statistics)."""

    task: Task
    source: str
    target: str

    @property
    def settings(self) -> dict:
        return self.task.settings


def degraded_pairs(p: DSParameters, name: str, severities: Sequence[float]) -> list[Pair]:
    """Per severity and seed: the seed's split of ``name`` degraded with that seed."""
    pairs = []
    for severity in severities:
        for seed in range(p.n_runs):
            data = load(name, severity=severity, seed=seed, kinds=p.degradations)
            split = standardise(_fewer_train(data.split(seed), p.n_train, seed), [DEGRADED_SOURCE, DEGRADED_TARGET])
            settings = {
                "dataset": name,
                "source": DEGRADED_SOURCE,
                "target": DEGRADED_TARGET,
                "severity": float(severity),
            }
            pairs.append(Pair(Task(split, seed, settings), DEGRADED_SOURCE, DEGRADED_TARGET))
    return pairs


def _fewer_train(splits: Splits, n_train: int, seed: int) -> Splits:
    """``splits`` with a seeded subset of ``n_train`` training samples (0 or more than there are: all)."""
    if not n_train or n_train >= len(splits.train):
        return splits
    keep = run_generator(seed, "fewer_train", "train").permutation(len(splits.train))[:n_train]
    return Splits(splits.train.subset(np.sort(keep)), splits.val, splits.test)


def registered_pairs(p: DSParameters) -> list[Pair]:
    """Per item of ``p.pairs`` and seed: the seed's split of that registered dataset, its two
    modalities checked to be images ``(C, H, W)``."""
    pairs = []
    for name, source, target in parse_pairs(p.pairs, real_dataset_names()):
        data = load(name)
        for modality in (source, target):
            if len(data.shape(modality)) != 3:
                raise ValueError(
                    f"DS-CMKD needs image modalities (channels, height, width); {name!r} modality "
                    f"{modality!r} has samples of shape {data.shape(modality)}. Image modalities of "
                    f"{name!r}: {[m for m in data.modality_names if len(data.shape(m)) == 3]}"
                )
        for seed in range(p.n_runs):
            split = standardise(data.split(seed), [source, target])
            settings = {"dataset": name, "source": source, "target": target, "severity": math.nan}
            pairs.append(Pair(Task(split, seed, settings), source, target))
    return pairs


def run(p: DSParameters, progress: bool | None = None) -> StudyRun:
    """The degraded image sets over ``p.severities`` (``ds_severity``), the registered pairs
    (``ds_methods``), and the motivating analysis of both (``ds_analysis``).

    Parameters
    ----------
    p : DSParameters
        The notebook's parameters (image sets, pairs, methods, nets, training).
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).

    Returns
    -------
    StudyRun
        Tidy rows (settings ``dataset``, ``source``, ``target``, ``severity``; metrics
        :data:`METRICS`, one row per seed), the log (every fit, one runner per study, and each
        split's record) and the fits.
    """
    groups = [("ds_severity", degraded_pairs(p, name, p.severities)) for name in p.images or ()]
    if p.pairs:
        by_pair = defaultdict(list)
        for pair in registered_pairs(p):  # every pair loads and is checked before anything trains
            by_pair[(pair.settings["dataset"], pair.source, pair.target)].append(pair)
        groups += [("ds_methods", pairs) for pairs in by_pair.values()]
    runners = {study: StudyRunner(study, progress=progress) for study, _ in groups}
    for study, pairs in groups:
        run_pairs(runners[study], pairs, p)
    run = StudyRun.concat([runner.result() for runner in runners.values()])
    run.log.splits += split_records([pair.task for _, pairs in groups for pair in pairs])
    return run


def run_pairs(runner: StudyRunner, pairs: Sequence[Pair], p: DSParameters) -> None:
    """Teacher and every student of ``p.methods`` on ``pairs``, as fits of ``runner``: the CE
    teachers, then one batched fit per group of students (:data:`DS_FITS`, FitNet apart).

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs the fits (the teachers as ``teacher``, each student fit under its methods
        joined by ``+``) and collects the rows.
    pairs : sequence of Pair
        One seed's split of one high/low-quality pair each, all of one shape.
    p : DSParameters
        The methods, nets, DS weights and training settings.

    Returns
    -------
    None
        Rows of study ``runner.study`` (every method's :data:`METRICS` on the test split, one
        row per pair), plus the ``ds_analysis`` rows of the teacher and CE, go to ``runner``.
    """
    unknown = sorted(set(p.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}")
    parts, n_classes = _parts(pairs)
    teacher = _teachers(runner, pairs, parts, n_classes, p)
    outputs = {"teacher": _evaluate(teacher, parts["test"]["x_teacher"], parts["test"]["y"], p)}
    jobs = [
        (chosen, p.ds_loss(guide, p.switched_weights(guide, chosen, len(pairs))))
        for guide, students in DS_FITS.items()
        if (chosen := [m for m in students if m in p.methods])
    ]
    if "fitnet" in p.methods:
        jobs.append((["fitnet"], make_loss("fitnet", hint_weight=p.hint_weight)))
    for methods, loss in jobs:
        evaluated = _fit_students(runner, methods, pairs, parts, n_classes, p, loss, teacher)
        outputs.update(zip(methods, evaluated))

    settings, seeds = [pair.settings for pair in pairs], [pair.task.seed for pair in pairs]
    rows = [
        row
        for method, values in outputs.items()
        for metric in METRICS
        for row in tidy_rows(runner.study, method, settings, seeds, metric, values[metric])
    ]
    rows += [
        row
        for method in ("teacher", "ce")
        if method in outputs
        for metric in METRICS
        for row in tidy_rows("ds_analysis", method, settings, seeds, metric, outputs[method][metric])
    ]
    runner.add(rows)


def _parts(pairs: Sequence[Pair]) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    parts = {part: _stacked(pairs, part) for part in ("train", "val", "test")}
    return parts, max(part.n_classes for pair in pairs for part in pair.task.splits.parts().values())


def _fit_students(
    runner: StudyRunner,
    methods: Sequence[str],
    pairs: Sequence[Pair],
    parts: dict[str, dict[str, torch.Tensor]],
    n_classes: int,
    p: DSParameters,
    loss,
    teacher: Stack | None,
) -> list[dict[str, list[float]]]:
    """A block of students (one per pair) for each of ``methods``, trained with ``loss`` on the
    low-quality modality from ``teacher`` (used only when the loss needs one) in one fit, logged
    under the methods joined by ``+``; each block's test metrics."""
    n, k, seeds = len(pairs), len(methods), [pair.task.seed for pair in pairs]
    teacher = teacher if loss.needs_teacher else None
    data = {
        key: repeat_models(value, k)
        for key, value in parts["train"].items()
        if teacher is not None or key != "x_teacher"
    }
    val = {key: repeat_models(parts["val"][key], k) for key in ("x", "y")}
    spec = p.net().sized(tuple(parts["train"]["x"].shape[2:]), n_classes)
    result = runner.fit(
        "+".join(methods),
        Distillation(spec, loss, teacher.repeat(k) if teacher is not None else None),
        data,
        seeds=seeds * k,
        config=p.train_config(p.epochs),
        val=val,
        description=", ".join(methods),
    )
    evaluated = _evaluate(
        result.modules["student"], repeat_models(parts["test"]["x"], k), repeat_models(parts["test"]["y"], k), p
    )
    return [{metric: values[i * n : (i + 1) * n] for metric, values in evaluated.items()} for i in range(k)]


def weight_sweep(
    p: DSParameters,
    variants: Mapping[str, tuple[float, float]],
    *,
    severity: float,
    guide: str = DS_GUIDE,
    progress: bool | None = False,
) -> StudyRun:
    """Students of ``variants`` on ``p``'s first image set at ``severity`` (one seed per run), as
    one batched fit (study ``ds_weights``), with ``p``'s layers and training settings.

    Parameters
    ----------
    p : DSParameters
        The image set (the first of ``p.images``), seeds, nets and training settings.
    variants : mapping of str to (float, float)
        A variant's name → its (independence, uniformity) weights.
    severity : float
        The degradation severity in [0, 1].
    guide : str
        How the teacher guides every student: ``"kd"`` (default: (0, 0) is the plain KD
        student), ``"fitnet"`` (a hint; (0, 0) is FitNet) or ``"none"`` (no teacher; (0, 0) is
        CE alone). With a teacher, a CE teacher on the clean images trains first
        (``p.teacher_epochs``).
    progress : bool or None
        Progress bars of every fit.

    Returns
    -------
    StudyRun
        Tidy rows of test accuracy and the diagnostics on the test split, ``method`` the
        variant's name, one row per seed; the log of the teachers' fit (when guided) and the
        students' fit (under the variants' names joined by ``+``).
    """
    pairs = degraded_pairs(p, (p.images or ("digits_degraded",))[0], [severity])
    parts, n_classes = _parts(pairs)
    names = list(variants)
    runner = StudyRunner("ds_weights", progress=progress)
    teacher = None if guide == "none" else _teachers(runner, pairs, parts, n_classes, p)
    loss = p.ds_loss(guide, [variants[name] for name in names for _ in pairs])
    evaluated = _fit_students(runner, names, pairs, parts, n_classes, p, loss, teacher)
    settings, seeds = [pair.settings for pair in pairs], [pair.task.seed for pair in pairs]
    runner.add(
        [
            row
            for name, values in zip(names, evaluated)
            for metric in METRICS
            for row in tidy_rows(runner.study, name, settings, seeds, metric, values[metric])
        ]
    )
    return runner.result()


def n_classes(p: DSParameters) -> dict[str, int]:
    """How many classes each image set and registered pair of ``p`` holds, by dataset name (a
    model's chance accuracy is one over that)."""
    names = list(p.images or ()) + [name for name, _, _ in parse_pairs(p.pairs, real_dataset_names())]
    return {name: load(name).n_classes for name in dict.fromkeys(names)}


def _stacked(pairs: Sequence[Pair], part: str) -> dict[str, torch.Tensor]:
    """``x`` (low quality), ``x_teacher`` (high quality), ``y`` of ``part``, stacked over pairs."""
    datasets = [getattr(pair.task.splits, part) for pair in pairs]
    return {
        "x": torch.stack([d[pair.target] for d, pair in zip(datasets, pairs)]),
        "x_teacher": torch.stack([d[pair.source] for d, pair in zip(datasets, pairs)]),
        "y": torch.stack([d.labels for d in datasets]),
    }


def _teachers(
    runner: StudyRunner,
    pairs: Sequence[Pair],
    parts: dict[str, dict[str, torch.Tensor]],
    n_classes: int,
    p: DSParameters,
) -> Stack:
    """One CE teacher per distinct (seed, high-quality data), in one fit logged as ``teacher``
    (severities share their teacher); the teacher of each pair."""
    keys = [(pair.task.seed, _digest(parts["train"]["x_teacher"][i])) for i, pair in enumerate(pairs)]
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    distinct = sorted(first.values())
    spec = p.net().sized(tuple(parts["train"]["x_teacher"].shape[2:]), n_classes)
    pick = lambda part: {"x": parts[part]["x_teacher"][distinct], "y": parts[part]["y"][distinct]}  # noqa: E731
    result = runner.fit(
        "teacher",
        Distillation(spec),
        pick("train"),
        seeds=[keys[i][0] for i in distinct],
        config=p.train_config(p.teacher_epochs),
        val=pick("val"),
        description="teachers",
    )
    position = {keys[i]: j for j, i in enumerate(distinct)}
    return result.modules["student"].subset([position[key] for key in keys])


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.contiguous().numpy().tobytes()).hexdigest()


@torch.no_grad()
def _evaluate(models: Stack, x: torch.Tensor, y: torch.Tensor, p: DSParameters) -> dict[str, list[float]]:
    """Test accuracy and the structure diagnostics of each model ``(M,)`` on its inputs ``x`` ``(M, N, ...)``."""
    logits, features = models(x, features=(p.output_layer, p.map_layer))
    values = {"test_acc": accuracy(logits, y)}
    values.update(structure_diagnostics(features[p.output_layer], features[p.map_layer]))
    return {metric: [float(v) for v in value] for metric, value in values.items()}
