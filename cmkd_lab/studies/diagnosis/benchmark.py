"""07_when_does_cmkd_help: every paper's signal for "will KD help on this pair?", measured against
the gain KD and two more methods actually give, across every ordered pair of every dataset.

Per dataset (a registered dataset by name, or ``gaussian_venn``: MFH's Fig. 2 generator at each
overlap, the planted family where the answer is known, Δ rising with γ) and ordered view pair
``a > b``, per seed:

1. **Probe** (:func:`probe_group`, before any full distillation): a quick teacher on ``a``, a quick
   model on ``b``, MFH Algorithm 1's joint fit, a short KD pilot and the same pilot from MFH's
   modality-general teacher, each ``probe_epochs`` long,
   on the training split; every registered predictor (:mod:`.predictors`) read on the validation
   split, with its cost in seconds per task.
2. **Outcome** (:func:`measure`): teacher, No-KD and one student per method (``methods``: KD,
   FitNet, DS by default) at full length by
   :func:`~cmkd_lab.studies.runner.run_teacher_student`; Δ = method − No-KD test accuracy,
   paired by seed.

Rows (study ``cmkd_diagnosis``; settings ``dataset``, ``pair``, ``teacher_view``,
``student_view``, ``n_classes``, ``gamma`` for the planted family): ``test_acc`` of teacher, no_kd
and each method; ``signal`` rows (method ``signal``, metric = predictor) and their costs (method
``signal_cost``, metric = predictor, seconds per task). :func:`pair_table` gives one row per
(dataset, pair, method) with Δ, its interval over seeds, its outcome (helps / no difference /
hurts) and every signal's mean over seeds: the input of :mod:`.scoring`.

Every net is a registered kind sized to its view (an MLP for vectors, a 1-D or 2-D CNN for time
series and images, :func:`~cmkd_lab.studies.real_data.net_for`), trained with Adam; views are
z-scored per feature (vectors) or per channel (maps) with training statistics. Grouped data keep
each seed's whole split, although whole subjects per part make the parts' sizes differ across
seeds: the probe trains each size in fits of its own; the outcome trains every seed in one fit per
method where the fits weigh rows (full-batch MLPs, ``share_sizes``), else each size apart.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...analysis.results import tidy_rows
from ...analysis.saliency import joint_fit
from ...app.notebook import NotebookParameters
from ...datasets import DATASETS, PairedDataset, Splits, load, standardise
from ...datasets.core import run_state
from ...datasets.synthetic import mfh_overlap
from ...engine import TrainConfig
from ...losses import LOSSES, Distiller, make_loss
from ...models import ModelSpec
from ...systems import train_classifier
from ..real_data import net_for, train_config
from ..runner import (
    StudyRun,
    StudyRunner,
    Task,
    given_init,
    groups_of_equal_shape,
    run_teacher_student,
    sizes_unshareable,
    stack_split,
)
from .predictors import PREDICTORS, Probe, mg_teacher_logits, predictor_names
from .scoring import outcome_of

STUDY = "cmkd_diagnosis"
GAUSSIAN = "gaussian_venn"
SETTINGS = ("dataset", "pair", "teacher_view", "student_view", "n_classes")
KD_OPTIONS = {"temperature": 4.0, "reduction": "batchmean"}  # Hinton's KD (with T²), also the pilot's
METHOD_OPTIONS = {  # the methods' options; DS reads a map only where the student net has one
    "kd": KD_OPTIONS,
    "fitnet": {},
    "ds": {"map_layer": None},
    "dkd": {},
    "pkt": {},
    "sp": {},
    "rkd": {},
}
GAUSSIAN_N_TRAIN = 200
GAUSSIAN_N_HELD_OUT = 500  # each of validation and test


ALL_DATASETS = (GAUSSIAN, "mfeat", "segment", "watch", "digits_degraded", "mfeat_degraded", "mnist_m_procedural")
QUICK_DATASETS = (GAUSSIAN, "mfeat", "segment", "digits_degraded")  # the CNN pairs of watch cost a minute


def dataset_choices() -> list[str]:
    """Every registered dataset; ``gaussian_venn`` names the planted family (:func:`gaussian_tasks`)."""
    return DATASETS.names()


@dataclass(frozen=True)
class DiagnosisParameters(NotebookParameters):
    """The benchmark: datasets, methods, seeds, and the probe's and the outcome's lengths."""

    n_runs: int | None = None
    epochs: int | None = None  # the outcome's training length (see real_data.train_config for large sets)
    probe_epochs: int | None = None  # the probe's: quick models, Algorithm 1, the KD pilot
    max_pairs_per_dataset: int | None = None  # None: every ordered pair
    max_samples: int | None = None  # per dataset, a stratified subsample (None: all samples)
    datasets: tuple[str, ...] | None = None  # None: the profile's
    methods: tuple[str, ...] = ("kd", "fitnet", "ds")
    overlaps: tuple[int, ...] = (0, 2, 4, 6, 8, 10)  # the planted family's settings (γ = o / (20 − o))
    lr: float = 0.003
    batch_size: int | None = None  # None: full batch for MLPs (up to 2048 samples), mini-batches of 128 for CNNs
    hidden: int = 64
    seed: int = 0  # the first seed; runs use seed, seed + 1, ...
    n_boot: int | None = None  # bootstrap replicates of every interval of the scores

    notebook: ClassVar[str] = "07_when_does_cmkd_help"
    profile_defaults: ClassVar = {
        "quick": {
            "datasets": QUICK_DATASETS,
            "n_runs": 2,
            "epochs": 40,
            "probe_epochs": 20,
            "max_pairs_per_dataset": 4,
            "max_samples": 600,
            "n_boot": 200,
        },
        "full": {
            "datasets": ALL_DATASETS,
            "n_runs": 5,
            "epochs": 150,
            "probe_epochs": 40,
            "max_pairs_per_dataset": None,
            "max_samples": 2000,
            "n_boot": 2000,
        },
    }
    choices: ClassVar = {"datasets": dataset_choices, "methods": tuple(METHOD_OPTIONS)}

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_runs))


# ----------------------------------------------------------------------------- tasks
def pair_label(teacher_view: str, student_view: str) -> str:
    return f"{teacher_view}>{student_view}"


def view_tasks(
    name: str, data: PairedDataset, pairs: Sequence[tuple[str, str]], seeds: Sequence[int], **extra
) -> list[Task]:
    """One task per (ordered pair, seed) of ``data``: the seed's split, the pair's views z-scored
    with training statistics and renamed ``a`` (teacher) and ``b`` (student)."""
    check_dataset(name, data)
    tasks = []
    for seed in seeds:
        split = data.split(seed)  # whole: grouped data's parts differ in size across seeds
        for teacher_view, student_view in pairs:
            settings = {
                "dataset": name,
                "pair": pair_label(teacher_view, student_view),
                "teacher_view": teacher_view,
                "student_view": student_view,
                "n_classes": data.n_classes,
                **extra,
            }
            tasks.append(Task(_standardised(split, teacher_view, student_view), seed, settings))
    return tasks


def _standardised(split: Splits, teacher_view: str, student_view: str) -> Splits:
    """Vectors per feature, maps (time series, images) per channel, so a map keeps its shape."""
    views = {"a": teacher_view, "b": student_view}
    per = "feature" if all(split.train[v].dim() == 2 for v in views.values()) else "channel"
    return standardise(split, views, per=per)


def check_dataset(name: str, data: PairedDataset) -> None:
    """A dataset a diagnosis can read: two classes or more, and no view of width 0."""
    if data.n_classes < 2 or len(torch.unique(data.labels)) < 2:
        raise ValueError(f"dataset {name!r} has a single class; a diagnosis needs two classes or more")
    empty = [m for m in data.modality_names if math.prod(data.shape(m)) == 0]
    if empty:
        raise ValueError(f"dataset {name!r}: modality {empty[0]!r} has width 0 {data.shape(empty[0])}; drop it")
    if len(data.modality_names) < 2:
        raise ValueError(f"dataset {name!r} has one modality ({data.modality_names}); a pair needs two")


def ordered_pairs(data: PairedDataset, limit: int | None = None) -> list[tuple[str, str]]:
    return list(permutations(data.modality_names, 2))[:limit]


def gaussian_tasks(overlaps: Sequence[int], seeds: Sequence[int]) -> list[Task]:
    """The planted family: MFH Fig. 2's generator (teacher view ``a`` 25-d, student view ``b``
    50-d, binary) at each overlap, γ = o / (20 − o); 200 training samples, and 500 validation
    and 500 test samples from the run's independent held-out draw."""
    tasks = []
    for overlap in overlaps:
        for seed in seeds:
            splits, ratios = mfh_overlap(overlap, seed, n_train=GAUSSIAN_N_TRAIN, n_test=2 * GAUSSIAN_N_HELD_OUT)
            held_out = splits.test
            val, test = (held_out.subset(range(i, i + GAUSSIAN_N_HELD_OUT)) for i in (0, GAUSSIAN_N_HELD_OUT))
            settings = {
                "dataset": GAUSSIAN,
                "pair": f"a>b γ={ratios['gamma']:.2f}",
                "teacher_view": "a",
                "student_view": "b",
                "n_classes": held_out.n_classes,
                "gamma": ratios["gamma"],
            }
            tasks.append(Task(standardise(Splits(splits.train, val, test), ["a", "b"], per="feature"), seed, settings))
    return tasks


def make_tasks(p: DiagnosisParameters) -> list[Task]:
    """Every (dataset, ordered pair, seed) of ``p``."""
    tasks = []
    for name in p.datasets:
        if name == GAUSSIAN:
            tasks += gaussian_tasks(p.overlaps, p.seeds)
        else:
            data = subsample(load(name), p.max_samples)
            tasks += view_tasks(name, data, ordered_pairs(data, p.max_pairs_per_dataset), p.seeds)
    return tasks


def subsample(data: PairedDataset, max_samples: int | None) -> PairedDataset:
    """At most ``max_samples`` samples of ``data``, stratified by class, drawn once (seed 0 of the
    diagnosis's own stream): every seed's split then draws from the same subsample."""
    if max_samples is None or len(data) <= max_samples:
        return data
    from sklearn.model_selection import train_test_split

    index, _ = train_test_split(
        np.arange(len(data)),
        train_size=max_samples,
        stratify=data.labels.numpy(),
        random_state=run_state(0, STUDY, "pool"),
    )
    return data.subset(np.sort(index))


# ----------------------------------------------------------------------------- nets and methods
CONV_CHANNELS = (8, 16)  # the conv nets of time series and small images: half the real-data studies' widths
MAX_CONV_POSITIONS = 128  # a map with more positions (time steps, pixels) is flattened into the MLP


def nets(task: Task, hidden: int) -> tuple[ModelSpec, ModelSpec]:
    """The teacher's and the student's net templates, from their views' shapes: an MLP with one
    hidden layer of ``hidden`` units for vectors and for maps of more than ``MAX_CONV_POSITIONS``
    positions (a CNN on 28×28 images costs minutes per seed on two CPU cores), a 1-D or 2-D CNN
    of ``CONV_CHANNELS`` for smaller maps (time series, 8×8 images)."""
    train, name = task.splits.train, task.settings["dataset"]
    return tuple(_net(train[side], lambda side=side: net_for(train, side, name), hidden) for side in ("a", "b"))


def _net(x: torch.Tensor, conv_net, hidden: int) -> ModelSpec:
    if x.dim() == 2 or math.prod(x.shape[2:]) > MAX_CONV_POSITIONS:
        return ModelSpec("mlp", hidden=(hidden,))
    return dataclasses.replace(conv_net(), hidden=CONV_CHANNELS)


def method_losses(methods: Sequence[str], student_net: ModelSpec) -> dict[str, Distiller]:
    """Each method's loss; DS's spatial term on the student's first convolutional map where it has one."""
    unknown = [m for m in methods if m not in METHOD_OPTIONS or m not in LOSSES]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(METHOD_OPTIONS)}")
    losses = {}
    for method in methods:
        options = dict(METHOD_OPTIONS[method])
        if method == "ds" and student_net.kind != "mlp":
            options["map_layer"] = "relu1"
        losses[method] = make_loss(method, **options)
    return losses


CONV_BATCH = 128  # CNNs learn little in a few full-batch epochs


CONV_STEPS = 4  # a CNN takes this many mini-batch steps per full-batch epoch of an MLP


def _config(tasks: Sequence[Task], epochs: int, p: DiagnosisParameters) -> TrainConfig:
    """Adam. With a ``batch_size``: ``epochs`` passes of it. Without: MLPs train full batch for
    ``epochs`` epochs (mini-batches above 2048 samples, :func:`~..real_data.train_config`); when
    either net is a CNN, mini-batches of ``CONV_BATCH`` for as many whole passes as give
    ``CONV_STEPS · epochs`` steps (a CNN learns little in a few full-batch steps)."""
    options = {"lr": p.lr, "optimizer": "adam", "device": p.device}
    if p.batch_size is None and any(net.kind != "mlp" for net in nets(tasks[0], p.hidden)):
        steps_per_pass = math.ceil(max(len(t.splits.train) for t in tasks) / CONV_BATCH)
        return TrainConfig(epochs=math.ceil(CONV_STEPS * epochs / steps_per_pass), batch_size=CONV_BATCH, **options)
    return train_config(tasks, epochs=epochs, batch_size=p.batch_size, **options)


def _net_groups(tasks: Sequence[Task], hidden: int) -> list[list[Task]]:
    """Tasks that may share the outcome's fits: one dataset, the same nets (flat views of any
    width share them padded: fewer, larger fits beat fits bucketed by width on two cores)."""
    groups: dict[tuple, list[Task]] = {}
    for task in tasks:
        groups.setdefault((task.settings["dataset"], nets(task, hidden)), []).append(task)
    return list(groups.values())


# ----------------------------------------------------------------------------- 1. the probe
def probe_group(group: Sequence[Task], p: DiagnosisParameters, progress: bool | None = None) -> Probe:
    """The probe's five stages on a group of tasks (M copies each, one fit per stage), timed:
    quick teacher, quick student (No-KD), Algorithm 1's joint fit, KD pilot, KD pilot from the
    MG teacher (Algorithm 1's saliency on the joint teacher, :func:`.predictors.mg_teacher_logits`). Flat views of
    different widths share the fits padded with zero columns, each net starting from the net its
    seed draws at its own width (:func:`~cmkd_lab.studies.runner.given_init`), so it trains as it
    would alone."""
    group = list(group)
    seeds = [t.seed for t in group]
    config = _config(group, p.probe_epochs, p)
    pad = _paddable(group, p.hidden)
    x, specs, widths, init = {}, {}, {}, {}
    for side, net in zip(("a", "b"), nets(group[0], p.hidden)):
        x[side], y = stack_split(group, "train", side, pad=pad)
        specs[side] = net.sized(tuple(x[side].shape[2:]), group[0].splits.train.n_classes)
        widths[side] = [t.splits.train[side].shape[1] for t in group] if pad else None
        init[side] = given_init(group, "probe", specs[side], 1, widths[side])
        init[side] = init[side] and init[side]["student"]
    models, seconds = {}, {}

    def timed(stage: str, train):
        started = time.perf_counter()
        result = train()
        seconds[stage] = (time.perf_counter() - started) / len(group)
        return result

    def classifier(side: str, **options):
        fitted = train_classifier(
            specs[side], x[side], y, seeds=seeds, config=config, init=init[side], progress=progress, **options
        )
        return fitted.modules["student"]

    models["teacher"] = timed("teacher", lambda: classifier("a"))
    models["student"] = timed("student", lambda: classifier("b"))
    # JointAgreement builds copy s's student from seed s + 1: its padded nets must too
    next_seeds = [dataclasses.replace(t, seed=t.seed + 1) for t in group]
    joint_student = given_init(next_seeds, "probe", specs["b"], 1, widths["b"])
    joint_init = {"teacher": init["a"], "student": joint_student and joint_student["student"]}
    joint_init = {k: v for k, v in joint_init.items() if v is not None} or None
    joint = timed(
        "joint",
        lambda: joint_fit(
            specs["a"], x["a"], specs["b"], x["b"], y, seeds=seeds, config=config, init=joint_init, progress=progress
        ),
    )
    models["joint_teacher"], models["joint_student"] = joint.modules["teacher"], joint.modules["student"]
    kd = make_loss("kd", **KD_OPTIONS)
    models["pilot"] = timed("pilot", lambda: classifier("b", loss=kd, teacher=models["teacher"], x_teacher=x["a"]))

    def mg_pilot():
        logits = mg_teacher_logits(models["joint_teacher"], models["joint_student"], x["a"], x["b"], seeds=seeds)
        return classifier("b", loss=kd, teacher_logits=logits)

    models["mg_pilot"] = timed("mg_pilot", mg_pilot)
    part = "val" if group[0].splits.val is not None else "train"
    probe_a, probe_y = stack_split(group, part, "a", pad=pad)
    probe_b, _ = stack_split(group, part, "b", pad=pad)
    return Probe(group, probe_a, probe_b, probe_y, models, specs, seconds, widths)


def _paddable(tasks: Sequence[Task], hidden: int) -> bool:
    """Whether the tasks' flat views may share fits padded: MLPs on vectors only."""
    return all(
        net.kind == "mlp" and task.splits.train[side].dim() == 2
        for task in tasks
        for side, net in zip(("a", "b"), nets(task, hidden))
    )


def signal_rows(probe: Probe, names: Sequence[str]) -> list[dict]:
    """Each predictor's value per task (method ``signal``) and its cost in seconds per task
    (method ``signal_cost``): the stages it reads plus its own computation."""
    settings, seeds = [t.settings for t in probe.tasks], [t.seed for t in probe.tasks]
    rows = []
    for name in names:
        predictor = PREDICTORS.get(name)
        started = time.perf_counter()
        values = np.asarray(torch.as_tensor(predictor.function(probe)).double(), dtype=float)
        own = (time.perf_counter() - started) / len(probe.tasks)
        if values.shape != (len(probe.tasks),):
            raise ValueError(f"predictor {name!r} returned shape {values.shape}; it must give one value per task")
        cost = own + sum(probe.stage_seconds[s] for s in predictor.stages)
        rows += tidy_rows(STUDY, "signal", settings, seeds, name, values)
        rows += tidy_rows(STUDY, "signal_cost", settings, seeds, name, [cost] * len(values))
    return rows


def probe_signals(
    tasks: Sequence[Task], p: DiagnosisParameters, names: Sequence[str] | None = None, progress: bool | None = None
) -> pd.DataFrame:
    """Every predictor on every task, group by group of equal shapes (:func:`probe_group`)."""
    names = list(names or predictor_names())
    rows = []
    flat = [_paddable([t], p.hidden) for t in tasks]
    groups = groups_of_equal_shape([t for t, f in zip(tasks, flat) if f], ("a", "b"), pad=True)
    groups += groups_of_equal_shape([t for t, f in zip(tasks, flat) if not f], ("a", "b"))
    for group in groups:
        rows += signal_rows(probe_group(group, p, progress), names)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- 2. the outcome
def measure(tasks: Sequence[Task], p: DiagnosisParameters, progress: bool | None = None) -> StudyRun:
    """Teacher, No-KD and every method at full length on every task, each group of tasks that share
    nets in one :func:`~cmkd_lab.studies.runner.run_teacher_student` call (flat views of different
    widths share a fit, padded; so do seeds whose grouped splits differ in size, where the fits
    allow it: full batch, every method weighing rows)."""
    runs = []
    for group in _net_groups(tasks, p.hidden):
        teacher_net, student_net = nets(group[0], p.hidden)
        losses = method_losses(p.methods, student_net)
        pad = all(net.kind in ("linear", "mlp") for net in (teacher_net, student_net))
        share = sizes_unshareable(losses, [_config(group, p.epochs, p)], [teacher_net, student_net]) is None
        # where the fits cannot weigh rows (mini-batches), each size trains apart, for as long as
        # its own size gives (a CNN's passes follow its number of batches)
        for members in [group] if share else groups_of_equal_shape(group, ("a", "b"), pad):
            runs.append(
                run_teacher_student(
                    members,
                    study=STUDY,
                    teacher_modality="a",
                    student_modality="b",
                    teacher_model=teacher_net,
                    student_model=student_net,
                    teacher_config=_config(members, p.epochs, p),
                    losses=losses,
                    pad_inputs=pad,
                    share_sizes=share,
                    progress=progress,
                )
            )
    return StudyRun.concat(runs)


def run(p: DiagnosisParameters, progress: bool | None = None) -> StudyRun:
    """The benchmark: the probe's signals and the measured outcomes of every task of ``p``."""
    tasks = make_tasks(p)
    runner = StudyRunner(STUDY, progress=progress)
    runner.add(probe_signals(tasks, p, progress=progress).to_dict("records"))
    runner.include(measure(tasks, p, progress))
    return runner.result()


# ----------------------------------------------------------------------------- the pair table
def deltas(table: pd.DataFrame) -> pd.DataFrame:
    """Δ = method − No-KD test accuracy (points) per (dataset, pair, seed, method)."""
    accuracy = table[(table["metric"] == "test_acc")]
    wide = accuracy.pivot_table(index=["dataset", "pair", "seed"], columns="method", values="value")
    methods = [m for m in wide.columns if m not in ("teacher", "no_kd")]
    gains = (100 * wide[methods].sub(wide["no_kd"], axis=0)).reset_index()
    return gains.melt(id_vars=["dataset", "pair", "seed"], value_vars=methods, var_name="method", value_name="delta")


def pair_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, pair, method): Δ's mean over seeds (points), its 95% t interval,
    ``n_seeds``, the ``outcome`` (:func:`outcome_of`), the teacher's and No-KD's test accuracy
    (``teacher_test_acc``, ``no_kd_test_acc``),
    and every signal's mean over seeds (one column per predictor); the input of :mod:`.scoring`."""
    from scipy import stats

    rows = []
    for (dataset, pair, method), part in deltas(table).groupby(["dataset", "pair", "method"], sort=False):
        values = part["delta"].to_numpy()
        mean = float(values.mean())
        if len(values) > 1 and np.ptp(values) > 1e-9:
            low, high = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        else:
            low, high = (mean, mean) if len(values) > 1 else (-math.inf, math.inf)
        rows.append(
            {
                "dataset": dataset,
                "pair": pair,
                "method": method,
                "delta": mean,
                "delta_low": float(low),
                "delta_high": float(high),
                "n_seeds": len(values),
                "outcome": outcome_of(low, high),
            }
        )
    pairs = pd.DataFrame(rows)
    index = ["dataset", "pair"]
    accuracy = table[(table["metric"] == "test_acc") & table["method"].isin(["teacher", "no_kd"])]
    extra = (100 * accuracy.pivot_table(index=index, columns="method", values="value")).rename(
        columns=lambda m: f"{m}_test_acc"
    )
    for kind, prefix in (("signal", ""), ("signal_cost", "cost_")):
        part = table[table["method"] == kind]
        if len(part):
            values = part.pivot_table(index=index, columns="metric", values="value", dropna=False)
            extra = extra.join(values.add_prefix(prefix))
    for column in ("teacher_view", "student_view", "n_classes", "gamma"):
        if column in table:
            extra = extra.join(table.groupby(index)[column].first())
    return pairs.merge(extra.reset_index(), on=index, how="left")
