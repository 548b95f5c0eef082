"""One way to run a study: tasks in, one :class:`StudyRun` (table, log, artifacts) out.

A study is a list of :class:`Task` (one dataset draw, its seed and the setting values it
stands for, e.g. ``{"gamma": 0.25}``). :func:`run_teacher_student` trains, for all tasks at
once, a teacher on one modality (or several, concatenated), a student without distillation
(``no_kd``) and one student per named distillation loss, all through the training engine:

- tasks whose data have the same shapes form one batched fit per method;
- ``variants`` name K versions of the teacher's input (e.g. MFH's modality-general teachers
  keep some channels only); K teachers × M tasks train as one fit, and so do their students;
- the No-KD student does not depend on the teacher: it is trained once per distinct student
  data set (``share_baselines``) and reported for every task and variant that shares it. It
  trains in the same fit as the first loss that can host it (``Distiller.hosts_baseline``:
  its copies weigh every term but cross-entropy 0), which saves a fit's per-step overhead,
  and is reported as a fit of its own (``in_fit_of`` names the host);
- ``metrics`` hooks add rows per task from the outputs (NTD, CMD, F1…).

Every study returns a :class:`StudyRun`; runs of several studies concatenate with
:meth:`StudyRun.concat`, so a notebook never merges tables or logs by hand.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..analysis.metrics import VALIDATION_METRICS, accuracy
from ..analysis.results import RunLog, tidy_rows
from ..datasets import PairedDataset, Splits
from ..engine import FitResult, Stack, System, TrainConfig, fit
from ..losses import Distiller, Vanilla
from ..models import ModelSpec, Net
from ..systems import Distillation, train_classifier

BASELINES = ("teacher", "no_kd")


@dataclass(frozen=True)
class Task:
    """One dataset draw to run every method on. ``init`` may give a method's initial weights
    (``"teacher"``, ``"no_kd"`` or a loss name → the state dict of its net) instead of building
    them from the seed, e.g. to replay an official script's draws."""

    splits: Splits
    seed: int
    settings: dict = field(default_factory=dict)
    init: Mapping[str, Mapping[str, torch.Tensor]] = field(default_factory=dict)


Modality = str | tuple[str, ...]
# A teacher variant: (teacher inputs (M, N, ...) of one split, the group's tasks) -> edited inputs
Variant = Callable[[torch.Tensor, Sequence[Task]], torch.Tensor]


def modality_input(data: PairedDataset, modality: Modality) -> torch.Tensor:
    """One modality's inputs, or several modalities flattened and concatenated (early fusion)."""
    if isinstance(modality, str):
        return data[modality]
    return torch.cat([data[m].flatten(1) for m in modality], dim=1)


def modality_label(modality: Modality) -> str:
    return modality if isinstance(modality, str) else "+".join(modality)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TaskOutputs:
    """What one task's models produced on its test split: the teacher's logits (``None`` when no
    teacher was trained) and each student method's logits, for one teacher variant. ``settings``
    are the task's settings plus the variant column: what the task's rows carry."""

    task: Task
    variant: str | None
    settings: dict
    teacher: torch.Tensor | None
    students: dict[str, torch.Tensor]


# A metric hook: (study, the outputs of one group of tasks with equal shapes, options) -> rows;
# called once per group, so it can score all of the group's tasks at once
MetricHook = Callable[[str, Sequence[TaskOutputs], Mapping], list[dict]]


@dataclass
class Artifacts:
    """Per task (and variant) the test logits of every model, and per method the fits (their
    trained modules, logs and records)."""

    outputs: list[TaskOutputs] = field(default_factory=list)
    fits: dict[str, list[FitResult]] = field(default_factory=lambda: defaultdict(list))

    def logits(self, method: str) -> list[tuple[Task, torch.Tensor]]:
        """Each task with the test logits ``(N, C)`` of ``method`` (``"teacher"`` or a student)."""
        pairs = []
        for out in self.outputs:
            value = out.teacher if method == "teacher" else out.students.get(method)
            if value is not None:
                pairs.append((out.task, value))
        return pairs

    def models(self, method: str) -> list[Stack]:
        """The trained nets of ``method`` (``"teacher"`` or a student), one stack per fit."""
        return [result.modules["student"] for result in self.fits[method]]

    def find(self, **settings) -> list[TaskOutputs]:
        """The outputs of tasks whose settings include ``settings``."""
        return [o for o in self.outputs if all(o.task.settings.get(k) == v for k, v in settings.items())]


@dataclass
class StudyRun:
    """The one result type of every study: the tidy table, the run log, the artifacts."""

    table: pd.DataFrame
    log: RunLog
    artifacts: Artifacts = field(default_factory=Artifacts)

    @staticmethod
    def concat(runs: Sequence[StudyRun]) -> StudyRun:
        log = RunLog(started=min(r.log.started for r in runs))
        artifacts = Artifacts()
        for run in runs:
            log.fits.extend(run.log.fits)
            log.splits.extend(run.log.splits)
            artifacts.outputs.extend(run.artifacts.outputs)
            for method, fits in run.artifacts.fits.items():
                artifacts.fits[method].extend(fits)
        tables = [r.table for r in runs if len(r.table)]
        return StudyRun(pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(), log, artifacts)


# ----------------------------------------------------------------------------- the runner API
class StudyRunner:
    """A study as a sequence of fits through the engine, building one :class:`StudyRun`.

    Every staged study (teacher → students → baselines, or SSL → distil → probe) is written as
    calls to :meth:`fit` (or :meth:`classifier`), each logged with its study and method and kept
    among the artifacts, plus the rows it reports (:meth:`add`); :meth:`result` returns the run.

    Parameters
    ----------
    study : str
        The ``study`` column of every row and log record.
    progress : bool or None
        Progress bars of every fit (``None``: the engine's default).
    log : RunLog, optional
        The log to extend (e.g. one that already holds the splits' records).
    """

    def __init__(self, study: str, *, progress: bool | None = None, log: RunLog | None = None):
        self.study = study
        self.progress = progress
        self.run = StudyRun(pd.DataFrame(), log if log is not None else RunLog())
        self._tables: list[pd.DataFrame] = []  # rows in the order they were added

    def fit(
        self,
        method: str,
        system: System,
        data: Mapping[str, torch.Tensor],
        *,
        seeds: Sequence[int],
        config: TrainConfig,
        description: str | None = None,
        tags: Mapping = {},
        **options,
    ) -> FitResult:
        """Train ``len(seeds)`` copies of ``system`` on ``data`` (tensors ``(M, N, ...)``) with
        :func:`~cmkd_lab.engine.fit` (``options``: ``val``, ``init``, ``freeze``, ``feeds``,
        ``augment``) and record the fit under ``method`` with ``tags``."""
        result = fit(
            system,
            data,
            seeds=seeds,
            config=config,
            progress=self.progress,
            description=f"{self.study}: {description or method}",
            **options,
        )
        self.record(method, result, **tags)
        return result

    def classifier(
        self,
        method: str,
        spec: ModelSpec,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        settings: Sequence[dict],
        *,
        seeds: Sequence[int],
        config: TrainConfig,
        tags: Mapping = {},
        **options,
    ) -> FitResult:
        """Classifiers of ``spec`` trained on ``train`` = (inputs ``(M, N, ...)``, labels ``(M, N)``)
        by :func:`~cmkd_lab.systems.train_classifier` (``options``: loss, teacher…); one
        ``test_acc`` row per model with its ``settings``, scored on ``test``."""
        result = train_classifier(
            spec,
            *train,
            seeds=seeds,
            config=config,
            progress=self.progress,
            description=f"{self.study}: {method}",
            **options,
        )
        self.record(method, result, **tags)
        scores = accuracy(result.predict({"x": test[0]})["student"], test[1]).numpy()
        self.add(tidy_rows(self.study, method, settings, seeds, "test_acc", scores))
        return result

    def record(self, method: str, result: FitResult, **tags) -> None:
        """Log a fit (or a part of one, :meth:`FitResult.subset`) under ``method`` and keep it."""
        self.run.log.add(study=self.study, method=method, **tags, **result.record)
        self.run.artifacts.fits[method].append(result)

    def add(self, rows: Sequence[dict]) -> None:
        """Result rows (tidy: study, method, settings, seed, metric, value)."""
        if len(rows):
            self._tables.append(pd.DataFrame(list(rows)))

    def include(self, run: StudyRun) -> None:
        """Another run's rows, log records and artifacts (e.g. a sub-study's)."""
        if len(run.table):
            self._tables.append(run.table)
        self.run.log.fits.extend(run.log.fits)
        self.run.log.splits.extend(run.log.splits)
        self.run.artifacts.outputs.extend(run.artifacts.outputs)
        for method, fits in run.artifacts.fits.items():
            self.run.artifacts.fits[method].extend(fits)

    def result(self) -> StudyRun:
        """The run so far: every row added, every fit recorded."""
        self.run.table = pd.concat(self._tables, ignore_index=True) if self._tables else pd.DataFrame()
        return self.run


# ----------------------------------------------------------------------------- stacking tasks
def stack_split(tasks: Sequence[Task], part: str, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(M, N, ...)`` and labels ``(M, N)`` of ``part`` across ``tasks``."""
    datasets = [getattr(t.splits, part) for t in tasks]
    return torch.stack([modality_input(d, modality) for d in datasets]), torch.stack([d.labels for d in datasets])


def groups_of_equal_shape(tasks: Sequence[Task], modalities: Sequence[Modality]) -> list[list[Task]]:
    """Tasks that can train as one stacked fit: equal input shapes and class counts."""
    groups: dict[tuple, list[Task]] = defaultdict(list)
    for task in tasks:
        key = tuple(
            (part, data.n_classes, tuple(modality_input(data, m).shape))
            for part, data in task.splits.parts().items()
            for m in modalities
        )
        groups[key].append(task)
    return list(groups.values())


def _data_key(task: Task, modality: Modality) -> tuple:
    """What a teacher-free model of ``task`` depends on: its seed and its data, by content."""
    digest = hashlib.sha1()
    for part, data in task.splits.parts().items():
        digest.update(part.encode())
        digest.update(modality_input(data, modality).contiguous().numpy().tobytes())
        digest.update(data.labels.numpy().tobytes())
    return task.seed, digest.hexdigest()


def repeat_models(x: torch.Tensor, copies: int) -> torch.Tensor:
    """``(M, ...)`` → ``(copies·M, ...)``, block after block."""
    return x.repeat(copies, *[1] * (x.dim() - 1))


# ----------------------------------------------------------------------------- the study runner
def run_teacher_student(
    tasks: Sequence[Task],
    *,
    study: str,
    teacher_modality: Modality,
    student_modality: str,
    teacher_model: ModelSpec = ModelSpec("linear"),
    student_model: ModelSpec = ModelSpec("linear"),
    teacher_config: TrainConfig = TrainConfig(),
    student_config: TrainConfig | None = None,
    losses: Mapping[str, Distiller] = {},
    include: Sequence[str] = BASELINES,
    variants: Mapping[str, Variant] | None = None,
    variant_column: str = "variant",
    share_baselines: bool = True,
    metrics: Sequence[MetricHook] = (),
    metric_options: Mapping | None = None,
    log: RunLog | None = None,
    progress: bool | None = None,
) -> StudyRun:
    """Train teacher(s), No-KD and one student per loss in ``losses`` on every task.

    Rows: ``metric = "test_acc"`` (a fraction) per task seed, plus whatever ``metrics`` hooks
    add (each called once per group of tasks with equal shapes as ``hook(study, outputs,
    metric_options)``, ``outputs`` the group's :class:`TaskOutputs`, variant after variant). ``include`` chooses which
    baselines are reported (the teacher is trained whenever a loss needs it). With ``variants``,
    each row carries ``variant_column``; No-KD rows carry the first variant's name. Selection
    (``select="best_val"``) uses the validation split; the test split only gives the reported
    numbers.
    """
    if not tasks:
        raise ValueError("a study needs at least one task")
    unknown = set(include) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; valid: {', '.join(BASELINES)}")
    clash = set(losses) & set(BASELINES)
    if clash:
        raise ValueError(f"loss names {sorted(clash)} clash with the baselines; rename them")
    student_config = student_config or teacher_config
    if variants is not None and not variants:
        raise ValueError("variants is empty: pass None for the plain teacher, or name at least one variant")
    variants = dict(variants) if variants is not None else {None: None}
    names = list(variants)
    run = StudyRun(pd.DataFrame(), log if log is not None else RunLog())
    rows = []

    def train(method, spec, data, val, group, config, loss=None, teacher=None, modality=None, copies=1, baseline=()):
        """A fit of ``method``'s students: ``copies`` blocks of ``group``, then one No-KD student
        per task of ``baseline`` (cross-entropy alone) in the same fit, returned apart."""
        system = Distillation(
            spec, loss or Vanilla(), teacher, ce_only=[False] * copies * len(group) + [True] * len(baseline)
        )
        init = _joined(
            [given_init(group, method, spec, copies)] + ([given_init(baseline, "no_kd", spec)] if baseline else [])
        )
        result = fit(
            system,
            data,
            seeds=[t.seed for t in group] * copies + [t.seed for t in baseline],
            config=config,
            val=val,
            init=init,
            progress=progress,
            description=f"{study}: {method}" + (" and no_kd" if baseline else ""),
        )
        parts = {method: result}
        if baseline:
            own = copies * len(group)
            parts = {
                "no_kd": result.subset(range(own, own + len(baseline)), wall_time_s=0.0, in_fit_of=method),
                method: result.subset(range(own), copies={method: own, "no_kd": len(baseline)}),
            }
        for name, part in parts.items():
            run.artifacts.fits[name].append(part)
            run.log.add(study=study, method=name, modality=modality_label(modality), **part.record)
        return parts

    def split_data(x, y, group, part, copies=1, baseline=()):
        if getattr(group[0].splits, part) is None:
            return None
        rows = list(range(len(group))) * copies + positions(group, baseline)
        return {"x": x[rows], "y": y[rows]}

    def settings_of(group, variant):
        return [{**t.settings, **({variant_column: variant} if variant is not None else {})} for t in group]

    no_kd_cache: dict[tuple, torch.Tensor] = {}
    for group in groups_of_equal_shape(tasks, [teacher_modality, student_modality]):
        seeds = [t.seed for t in group]
        k = len(names)
        n_classes = max(part.n_classes for t in group for part in t.splits.parts().values())
        parts = [p for p in ("train", "val", "test") if getattr(group[0].splits, p) is not None]
        teacher_x, student_x, labels = {}, {}, {}
        for part in parts:
            xt, labels[part] = stack_split(group, part, teacher_modality)
            student_x[part], _ = stack_split(group, part, student_modality)
            teacher_x[part] = torch.cat([xt if variants[v] is None else variants[v](xt, group) for v in names])
        teacher_logits = None
        needs_teacher = "teacher" in include or any(loss.needs_teacher for loss in losses.values())
        if needs_teacher:
            spec = teacher_model.sized(tuple(teacher_x["train"].shape[2:]), n_classes)
            y = {p: repeat_models(labels[p], k) for p in parts}
            teacher = train(
                "teacher",
                spec,
                {"x": teacher_x["train"], "y": y["train"]},
                {"x": teacher_x["val"], "y": y["val"]} if "val" in parts else None,
                group,
                teacher_config,
                modality=teacher_modality,
                copies=k,
            )["teacher"]
            teacher_logits = teacher.predict({"x": teacher_x["test"]})["student"]
            if "teacher" in include:
                for i, v in enumerate(names):
                    block = slice(i * len(group), (i + 1) * len(group))
                    rows += tidy_rows(
                        study,
                        "teacher",
                        settings_of(group, v),
                        seeds,
                        "test_acc",
                        accuracy(teacher_logits[block], labels["test"]).numpy(),
                    )
        student_spec = student_model.sized(tuple(student_x["train"].shape[2:]), n_classes)
        student_logits: dict[str, torch.Tensor] = {}
        # No-KD students this group still needs (one per distinct student data set when shared);
        # they train in the first fit whose loss can host them, else in a fit of their own
        keys = _baseline_keys(group, student_modality, share_baselines) if "no_kd" in include else []
        baseline = _untrained(keys, group, no_kd_cache)
        host = next((name for name, loss in losses.items() if loss.hosts_baseline), None) if baseline else None
        if baseline and host is None:
            alone = train(
                "no_kd",
                student_spec,
                *[_stacked(baseline, p, student_modality) for p in ("train", "val")],
                baseline,
                student_config,
                modality=student_modality,
            )["no_kd"]
            _cache_baseline(no_kd_cache, keys, group, baseline, alone, student_x["test"])
        method_rows = {}
        for name, loss in losses.items():
            hosted = baseline if name == host else []
            data = split_data(student_x["train"], labels["train"], group, "train", k, hosted)
            teacher_stack = None
            if loss.needs_teacher:
                teacher_rows = list(range(k * len(group))) + positions(group, hosted)  # No-KD: variant 0's teacher
                data["x_teacher"] = teacher_x["train"][teacher_rows]
                teacher_stack = (
                    teacher.modules["student"].subset(teacher_rows) if hosted else teacher.modules["student"]
                )
            val = split_data(student_x.get("val"), labels.get("val"), group, "val", k, hosted)
            parts = train(
                name,
                student_spec,
                data,
                val,
                group,
                student_config,
                loss=loss,
                teacher=teacher_stack,
                modality=student_modality,
                copies=k,
                baseline=hosted,
            )
            if hosted:
                _cache_baseline(no_kd_cache, keys, group, hosted, parts["no_kd"], student_x["test"])
            student_logits[name] = parts[name].predict({"x": repeat_models(student_x["test"], k)})["student"]
            method_rows[name] = [
                row
                for i, v in enumerate(names)
                for row in tidy_rows(
                    study,
                    name,
                    settings_of(group, v),
                    seeds,
                    "test_acc",
                    accuracy(student_logits[name][i * len(group) : (i + 1) * len(group)], labels["test"]).numpy(),
                )
            ]
        if keys:
            student_logits = {"no_kd": torch.stack([no_kd_cache[key] for key in keys]), **student_logits}
            rows += tidy_rows(
                study,
                "no_kd",
                settings_of(group, names[0]),
                seeds,
                "test_acc",
                accuracy(student_logits["no_kd"], labels["test"]).numpy(),
            )
        rows += [row for name in losses for row in method_rows[name]]
        for i, v in enumerate(names):
            for j, (task, settings) in enumerate(zip(group, settings_of(group, v))):
                index = i * len(group) + j
                students = {m: z[index if z.shape[0] > len(group) else j] for m, z in student_logits.items()}
                teacher_test = teacher_logits[index] if teacher_logits is not None else None
                run.artifacts.outputs.append(TaskOutputs(task, v, settings, teacher_test, students))
        for hook in metrics:
            rows += hook(study, run.artifacts.outputs[-len(names) * len(group) :], metric_options or {})
    run.table = pd.DataFrame(rows)
    return run


def given_init(tasks: Sequence[Task], method: str, spec: ModelSpec, copies: int = 1) -> dict[str, Stack] | None:
    """The initial nets of ``method`` that ``tasks`` give (``Task.init``), as the student stack of a
    fit over ``copies`` blocks of the tasks; ``None`` when no task gives them."""
    given = [method in t.init for t in tasks]
    if not any(given):
        return None
    if not all(given):
        raise ValueError(f"either every task of a fit gives initial weights for {method!r} or none does")
    nets = []
    for task in tasks:
        net = Net(spec)
        net.load_state_dict(dict(task.init[method]))
        nets.append(net)
    return {"student": Stack.from_modules(nets).repeat(copies)}


def _stacked(tasks: Sequence[Task], part: str, modality: Modality) -> dict | None:
    if getattr(tasks[0].splits, part) is None:
        return None
    x, y = stack_split(tasks, part, modality)
    return {"x": x, "y": y}


def _baseline_keys(group: Sequence[Task], modality: Modality, share: bool) -> list[tuple]:
    """What each task's No-KD student depends on: its seed and student data (when ``share``), or
    the task itself."""
    return [_data_key(t, modality) if share else (t.seed, id(t)) for t in group]


def _untrained(keys: list[tuple], group: Sequence[Task], cache: dict) -> list[Task]:
    """The first task of each key that the cache does not hold yet."""
    first: dict[tuple, Task] = {}
    for key, task in zip(keys, group):
        if key not in cache:
            first.setdefault(key, task)
    return list(first.values())


def positions(group: Sequence[Task], tasks: Sequence[Task]) -> list[int]:
    """Where each of ``tasks`` (the same objects) sits in ``group``."""
    where = {id(task): i for i, task in enumerate(group)}
    return [where[id(task)] for task in tasks]


def _cache_baseline(
    cache: dict,
    keys: list[tuple],
    group: Sequence[Task],
    trained: Sequence[Task],
    result: FitResult,
    x_test: torch.Tensor,
) -> None:
    """Store the test logits of the No-KD students of ``trained`` (tasks of ``group``) by key."""
    index = positions(group, trained)
    logits = result.predict({"x": x_test[index]})["student"]
    cache.update(zip([keys[i] for i in index], logits))


def _joined(stacks: Sequence[dict[str, Stack] | None]) -> dict[str, Stack] | None:
    """Initial modules of consecutive blocks of copies, joined; ``None`` when no block gives any."""
    given = [s for s in stacks if s is not None]
    if not given:
        return None
    if len(given) < len(stacks):
        raise ValueError("either every block of a fit gives initial weights or none does")
    return {name: Stack.concat([s[name] for s in given]) for name in given[0]}


def score_hook(metric: str) -> MetricHook:
    """A metric hook that scores every model of a task on its test split with a registered
    validation metric (e.g. ``"weighted_f1"``), one row per model, metric named ``test_<metric>``."""
    score = VALIDATION_METRICS.get(metric)

    def hook(study: str, outputs: Sequence[TaskOutputs], options: Mapping) -> list[dict]:
        labels = torch.stack([o.task.splits.test.labels for o in outputs])
        methods = (["teacher"] if outputs[0].teacher is not None else []) + list(outputs[0].students)
        return [
            row
            for method in methods
            for row in tidy_rows(
                study,
                method,
                [o.settings for o in outputs],
                [o.task.seed for o in outputs],
                f"test_{metric}",
                score(
                    torch.stack([o.teacher if method == "teacher" else o.students[method] for o in outputs]), labels
                ).tolist(),
            )
        ]

    return hook


# TRANSITIONAL (removed once every study uses StudyRunner)
def fit_run(study: str, method: str, result: FitResult, rows: Sequence[dict], **tags) -> StudyRun:
    runner = StudyRunner(study)
    runner.record(method, result, **tags)
    runner.add(rows)
    return runner.result()


def classifier_run(study, method, spec, train, test, settings, *, seeds, config, progress, tags={}, **options):
    runner = StudyRunner(study, progress=progress)
    runner.classifier(method, spec, train, test, settings, seeds=seeds, config=config, tags=tags, **options)
    return runner.result()
