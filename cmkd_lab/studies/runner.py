"""One way to run a study: tasks in, one :class:`StudyRun` (table, log, artifacts) out.

A study is a list of :class:`Task` (one dataset draw, its seed and the setting values it
stands for, e.g. ``{"gamma": 0.25}``). :func:`run_teacher_student` trains, for all tasks at
once, a teacher on one modality (or several, concatenated), a student without distillation
(``no_kd``) and one student per named distillation loss, all through the training engine:

- tasks whose data have the same shapes form one batched fit per method; with ``share_sizes``,
  tasks whose splits differ only in their numbers of samples too (seeds of grouped data): each
  split is padded to the longest and the engine weighs each copy's own rows (``fit(rows=...)``);
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
import torch.nn.functional as F

from ..analysis.metrics import PADDING_LABEL, VALIDATION_METRICS, accuracy
from ..analysis.results import ID_COLUMNS, VALUE_COLUMNS, RunLog, tidy_rows
from ..datasets import PairedDataset, Splits
from ..engine import FitResult, Stack, System, TrainConfig, fit
from ..losses import Distiller, Vanilla
from ..models import ModelSpec, Net, build_model
from ..systems import Distillation, train_classifier

BASELINES = ("teacher", "no_kd")


@dataclass(frozen=True)
class Task:
    """One dataset draw to run every method on. ``init`` may give a method's initial weights
    (``"teacher"``, ``"no_kd"`` or a loss name → the state dict of its net) instead of building
    them from the seed, e.g. to replay an official script's draws. ``study`` (when set) names the
    study of the task's rows and fit records in place of the runner's, so the tasks of several
    studies can share fits."""

    splits: Splits
    seed: int
    settings: dict = field(default_factory=dict)
    init: Mapping[str, Mapping[str, torch.Tensor]] = field(default_factory=dict)
    study: str | None = None


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

    def select(self, study: str) -> StudyRun:
        """The part of this run that belongs to ``study`` (of a run whose tasks name several):
        its rows, its fits' records and fits, and its tasks' outputs."""
        table = self.table[self.table["study"] == study].reset_index(drop=True) if len(self.table) else self.table
        log = RunLog(
            fits=[r for r in self.log.fits if r.get("study") == study],
            splits=list(self.log.splits),
            started=self.log.started,
        )
        artifacts = Artifacts(outputs=[o for o in self.artifacts.outputs if o.task.study in (None, study)])
        for method, fits in self.artifacts.fits.items():
            kept = [f for f in fits if f.record.get("study") == study]
            if kept:
                artifacts.fits[method] = kept
        table = table.dropna(axis=1, how="all")  # the settings of the other studies
        settings = [c for c in table.columns if c not in ID_COLUMNS + VALUE_COLUMNS]
        table = table[[*ID_COLUMNS, *settings, *VALUE_COLUMNS]] if len(table) else table
        return StudyRun(table, log, artifacts)

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

    def train(
        self,
        system: System,
        data: Mapping[str, torch.Tensor],
        *,
        seeds: Sequence[int],
        config: TrainConfig,
        description: str = "fit",
        **options,
    ) -> FitResult:
        """:func:`~cmkd_lab.engine.fit` with this study's progress and description, not recorded
        (for a fit whose parts are recorded apart, :meth:`record`)."""
        return fit(
            system,
            data,
            seeds=seeds,
            config=config,
            progress=self.progress,
            description=f"{self.study}: {description}",
            **options,
        )

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
        result = self.train(system, data, seeds=seeds, config=config, description=description or method, **options)
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
        """Log a fit (or a part of one, :meth:`FitResult.subset`) under ``method`` and keep it;
        a ``study`` tag replaces the runner's (and is stamped on the fit's record)."""
        result.record["study"] = tags.pop("study", self.study)
        self.run.log.add(**{"study": result.record["study"], "method": method, **tags, **result.record})
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
def stack_split(
    tasks: Sequence[Task], part: str, modality: Modality, pad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(M, N, ...)`` and labels ``(M, N)`` of ``part`` across ``tasks``; with ``pad``,
    flat inputs ``(N, D_m)`` get zero columns up to the widest. Splits with fewer samples than
    the longest are padded with zero rows labelled :data:`~cmkd_lab.analysis.metrics.PADDING_LABEL`
    (see :func:`split_sizes`)."""
    datasets = [getattr(t.splits, part) for t in tasks]
    inputs = [modality_input(d, modality) for d in datasets]
    labels = [d.labels for d in datasets]
    if pad and all(x.dim() == 2 for x in inputs):
        width = max(x.shape[1] for x in inputs)
        inputs = [F.pad(x, (0, width - x.shape[1])) for x in inputs]
    n_rows = max(len(y) for y in labels)
    inputs = [pad_rows(x, n_rows) for x in inputs]
    labels = [pad_rows(y, n_rows, PADDING_LABEL) for y in labels]
    return torch.stack(inputs), torch.stack(labels)


def pad_rows(x: torch.Tensor, n_rows: int, value: float = 0) -> torch.Tensor:
    """``x`` ``(n, ...)`` with rows of ``value`` appended up to ``n_rows``."""
    return x if len(x) == n_rows else F.pad(x, (0, 0) * (x.dim() - 1) + (0, n_rows - len(x)), value=value)


def split_sizes(tasks: Sequence[Task], part: str) -> list[int]:
    """Each task's number of samples in ``part``."""
    return [len(getattr(t.splits, part)) for t in tasks]


def groups_of_equal_shape(
    tasks: Sequence[Task], modalities: Sequence[Modality], pad: bool = False, any_size: bool = False
) -> list[list[Task]]:
    """Tasks that can train as one stacked fit: equal input shapes and class counts (with ``pad``,
    flat inputs of any width, :func:`stack_split` pads them; with ``any_size``, splits of any
    number of samples, padded with rows that the fits and metrics leave out)."""
    groups: dict[tuple, list[Task]] = defaultdict(list)
    for task in tasks:
        key = tuple(
            (part, data.n_classes, _shape_key(modality_input(data, m), pad, any_size))
            for part, data in task.splits.parts().items()
            for m in modalities
        )
        groups[key].append(task)
    return list(groups.values())


def _shape_key(x: torch.Tensor, pad: bool, any_size: bool = False) -> tuple:
    sample = ("flat",) if pad and x.dim() == 2 else tuple(x.shape[1:])
    return sample if any_size else (x.shape[0], *sample)


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
    pad_inputs: bool = False,
    share_sizes: bool = False,
    metrics: Sequence[MetricHook] = (),
    metric_options: Mapping | None = None,
    log: RunLog | None = None,
    progress: bool | None = None,
) -> StudyRun:
    """Train teacher(s), No-KD and one student per loss in ``losses`` on every task.

    The steps, per group of tasks that can share a fit (:func:`groups_of_equal_shape`):

    1. stack the group's inputs (:meth:`TaskGroup.stack`), the teacher's once per variant;
    2. train the teachers, every variant × task in one fit (:func:`train_teachers`);
    3. train the students, one fit per loss (:func:`train_students`); the first loss that can
       host them (``Distiller.hosts_baseline``) also trains the No-KD students the group still
       needs, else they train in a fit of their own;
    4. report ``test_acc`` rows, each task's test logits and the ``metrics`` hooks' rows
       (:func:`report_group`).

    Parameters
    ----------
    tasks : sequence of Task
        The draws to run every method on.
    study : str
        The study of the rows and of the log's records.
    teacher_modality, student_modality : str or tuple of str
        Each side's inputs; a tuple concatenates several modalities (early fusion).
    teacher_model, student_model : ModelSpec
        Templates (no input shape or classes), sized to the data.
    teacher_config, student_config : TrainConfig
        How each side trains (``student_config`` defaults to ``teacher_config``). Selection
        (``select="best_val"``) uses the validation split; the test split only gives the
        reported numbers.
    losses : mapping of str to Distiller
        One student per entry, named by its key.
    include : sequence of {"teacher", "no_kd"}
        The baselines reported (the teacher trains whenever a loss needs it).
    variants : mapping of str to Variant, optional
        K versions of the teacher's input (e.g. teachers that keep some channels only); K
        teachers × M tasks train as one fit, and so do their students. Rows then carry
        ``variant_column``; No-KD rows carry the first variant's name.
    share_baselines : bool
        Train the No-KD student once per distinct (seed, student data) and report it for every
        task and variant that shares it.
    pad_inputs : bool
        Let tasks whose flat inputs differ only in width share a fit: narrower inputs get zero
        columns. A zero column gets a zero gradient, so each model trains as its narrower self
        but for the initial draw of its padded weights (initial weights a task gives are padded
        with zeros). Linear and MLP models only.
    share_sizes : bool
        Let tasks whose splits differ in their numbers of samples (seeds of grouped data) share
        a fit: shorter splits get padding rows, which the fits weigh 0 (``fit(rows=...)``) and
        the metrics leave out, so each model trains and scores as it would alone (within float
        tolerance). Full-batch training, losses that weigh rows (``Distiller.weighs_rows``) and
        nets without BatchNorm only. Each task's outputs hold its own test rows, so tasks of one
        group may hand a metric hook logits of different lengths.
    metrics : sequence of MetricHook
        Called once per group as ``hook(study, outputs, metric_options)``, variant after variant.
    log : RunLog, optional
        A log to extend.
    progress : bool, optional
        Progress bars of the fits.

    Returns
    -------
    StudyRun
        Rows ``metric = "test_acc"`` (a fraction) per task and method, plus the hooks' rows; a log
        record per fit (a hosted No-KD student as a record of its own, ``in_fit_of`` its host);
        artifacts with every fit and each task's test logits.
    """
    _check_arguments(tasks, include, losses, variants, pad_inputs, teacher_model, student_model)
    variants = dict(variants) if variants is not None else {None: None}
    student_config = student_config or teacher_config
    reason = share_sizes and sizes_unshareable(losses, (teacher_config, student_config), (teacher_model, student_model))
    if reason:
        raise ValueError(f"share_sizes: tasks of different sizes cannot share these fits: {reason}")
    runner = StudyRunner(study, progress=progress, log=log)
    baselines = _Baselines(student_modality, share_baselines) if "no_kd" in include else None
    needs_teacher = "teacher" in include or any(loss.needs_teacher for loss in losses.values())
    host = next((name for name, loss in losses.items() if loss.hosts_baseline), None)
    for members in groups_of_equal_shape(tasks, [teacher_modality, student_modality], pad_inputs, share_sizes):
        group = TaskGroup.stack(members, teacher_modality, student_modality, variants, variant_column, pad_inputs)
        teacher = None
        if needs_teacher:
            spec = teacher_model.sized(group.input_shape("teacher"), group.n_classes)
            teacher = train_teachers(runner, group, spec, teacher_config, teacher_modality)
        spec = student_model.sized(group.input_shape("student"), group.n_classes)
        untrained = baselines.untrained(group) if baselines else []
        if untrained and host is None:
            no_kd = train_students(
                runner,
                group,
                "no_kd",
                Vanilla(),
                spec,
                student_config,
                None,
                student_modality,
                copies=0,
                hosted=untrained,
            )
            baselines.store(group, untrained, no_kd["no_kd"])
        students = {}
        for name, loss in losses.items():
            hosted = untrained if name == host else []
            parts = train_students(
                runner, group, name, loss, spec, student_config, teacher, student_modality, hosted=hosted
            )
            if hosted:
                baselines.store(group, hosted, parts["no_kd"])
            students[name] = parts[name]
        report_group(runner, group, teacher, students, include, baselines, metrics, metric_options or {})
    return runner.result()


def sizes_unshareable(
    losses: Mapping[str, Distiller], configs: Sequence[TrainConfig], models: Sequence[ModelSpec]
) -> str | None:
    """Why tasks of different sizes cannot share fits (``share_sizes``) with these losses, train
    configs and nets; None when they can."""
    unweighted = [name for name, loss in losses.items() if not loss.weighs_rows]
    if unweighted:
        return f"loss(es) {unweighted} read the whole batch (their weighs_rows is False)"
    if any(config.batch_size is not None for config in configs):
        return "it needs full-batch training (batch_size=None): a mini-batch would mix padding rows"
    if any(model.batch_norm for model in models):
        return "it needs nets without BatchNorm: its batch statistics would count padding rows"
    return None


def _check_arguments(tasks, include, losses, variants, pad_inputs, teacher_model, student_model) -> None:
    if not tasks:
        raise ValueError("a study needs at least one task")
    unknown = set(include) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; valid: {', '.join(BASELINES)}")
    clash = set(losses) & set(BASELINES)
    if clash:
        raise ValueError(f"loss names {sorted(clash)} clash with the baselines; rename them")
    if variants is not None and not variants:
        raise ValueError("variants is empty: pass None for the plain teacher, or name at least one variant")
    if pad_inputs and {teacher_model.kind, student_model.kind} - {"linear", "mlp"}:
        raise ValueError("pad_inputs pads flat inputs with zero columns: for linear and mlp models only")


@dataclass
class TaskGroup:
    """Tasks that train as one fit, their inputs stacked per split: the teacher's ``(K·M, N, ...)``
    (K variant blocks of the M tasks), the student's ``(M, N, ...)``, the labels ``(M, N)``.
    ``widths`` gives per side each task's own input width where inputs were padded, else ``None``."""

    tasks: list[Task]
    variants: list[str | None]
    variant_column: str
    teacher_x: dict[str, torch.Tensor]
    student_x: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    n_classes: int
    widths: dict[str, list[int] | None]
    sizes: dict[str, list[int]]  # per split, each task's number of samples (the rest is padding)

    @classmethod
    def stack(
        cls,
        tasks: Sequence[Task],
        teacher_modality: Modality,
        student_modality: Modality,
        variants: Mapping[str | None, Variant | None],
        variant_column: str,
        pad: bool = False,
    ) -> TaskGroup:
        """Stack ``tasks``' splits; with ``pad``, flat inputs padded with zero columns to the widest."""
        parts = [p for p in ("train", "val", "test") if getattr(tasks[0].splits, p) is not None]
        teacher_x, student_x, labels = {}, {}, {}
        for part in parts:
            x, labels[part] = stack_split(tasks, part, teacher_modality, pad)
            student_x[part], _ = stack_split(tasks, part, student_modality, pad)
            teacher_x[part] = torch.cat([x if edit is None else edit(x, tasks) for edit in variants.values()])
        n_classes = max(part.n_classes for t in tasks for part in t.splits.parts().values())
        widths = {
            side: [modality_input(t.splits.train, modality).shape[1] for t in tasks]
            if pad and modality_input(tasks[0].splits.train, modality).dim() == 2
            else None
            for side, modality in (("teacher", teacher_modality), ("student", student_modality))
        }
        sizes = {part: split_sizes(tasks, part) for part in parts}
        return cls(list(tasks), list(variants), variant_column, teacher_x, student_x, labels, n_classes, widths, sizes)

    @property
    def parts(self) -> list[str]:
        return list(self.labels)

    @property
    def size(self) -> int:
        return len(self.tasks)

    def input_shape(self, side: str) -> tuple[int, ...]:
        return tuple((self.teacher_x if side == "teacher" else self.student_x)["train"].shape[2:])

    def settings(self, variant: str | None) -> list[dict]:
        """What each task's rows carry: its settings, plus the variant column with variants."""
        extra = {self.variant_column: variant} if variant is not None else {}
        return [{**t.settings, **extra} for t in self.tasks]

    def studies(self, rows: Sequence[int]) -> list[str | None]:
        """The study of each task of ``rows``."""
        return [self.tasks[i].study for i in rows]

    def seeds(self, copies: int = 1, hosted: Sequence[Task] = ()) -> list[int]:
        return [self.tasks[i].seed for i in self.rows(copies, hosted)]

    def rows(self, copies: int = 1, hosted: Sequence[Task] = ()) -> list[int]:
        """The task of each copy of a fit: ``copies`` blocks of the group's tasks, then ``hosted``."""
        return list(range(self.size)) * copies + positions(self.tasks, hosted)

    def train_rows(self, copies: int = 1, hosted: Sequence[Task] = ()) -> list[int] | None:
        """Each copy's number of training samples where the tasks' sizes differ (``fit(rows=...)``), else None."""
        sizes = self.sizes["train"]
        return [sizes[i] for i in self.rows(copies, hosted)] if len(set(sizes)) > 1 else None

    def student_data(self, part: str, copies: int, hosted: Sequence[Task] = ()) -> dict | None:
        if part not in self.parts:
            return None
        rows = self.rows(copies, hosted)
        return {"x": self.student_x[part][rows], "y": self.labels[part][rows]}


def train_teachers(
    runner: StudyRunner, group: TaskGroup, spec: ModelSpec, config: TrainConfig, modality: Modality
) -> FitResult:
    """Step 2: the teacher of every variant × task of ``group``, one fit."""
    k = len(group.variants)
    data = {p: {"x": group.teacher_x[p], "y": repeat_models(group.labels[p], k)} for p in group.parts}
    result = runner.train(
        Distillation(spec, Vanilla()),
        data["train"],
        seeds=group.seeds(k),
        config=config,
        val=data.get("val"),
        init=given_init(group.tasks, "teacher", spec, k, group.widths["teacher"]),
        rows=group.train_rows(k),
        description="teacher",
    )
    record_parts(runner, result, [("teacher", k * group.size)], modality, group.studies(group.rows(k)))
    return result


def train_students(
    runner: StudyRunner,
    group: TaskGroup,
    method: str,
    loss: Distiller,
    spec: ModelSpec,
    config: TrainConfig,
    teacher: FitResult | None,
    modality: Modality,
    *,
    copies: int | None = None,
    hosted: Sequence[Task] = (),
) -> dict[str, FitResult]:
    """Step 3: ``method``'s students of every variant × task of ``group`` (``copies`` blocks,
    default one per variant), then one No-KD student per task of ``hosted`` (cross-entropy alone;
    fed variant 0's teacher, which it ignores) in the same fit, returned and logged apart."""
    copies = len(group.variants) if copies is None else copies
    own = copies * group.size
    data = group.student_data("train", copies, hosted)
    teacher_stack = None
    if loss.needs_teacher:
        rows = list(range(own)) + positions(group.tasks, hosted)
        data["x_teacher"] = group.teacher_x["train"][rows]
        teacher_stack = teacher.modules["student"].subset(rows) if hosted else teacher.modules["student"]
    widths = group.widths["student"]
    blocks = ([given_init(group.tasks, method, spec, copies, widths)] if copies else []) + (
        [given_init(hosted, "no_kd", spec, 1, widths and [widths[i] for i in positions(group.tasks, hosted)])]
        if hosted
        else []
    )
    result = runner.train(
        Distillation(spec, loss, teacher_stack, ce_only=[False] * own + [True] * len(hosted) if copies else ()),
        data,
        seeds=group.seeds(copies, hosted),
        config=config,
        val=group.student_data("val", copies, hosted),
        init=joined_init(blocks),
        rows=group.train_rows(copies, hosted),
        description=method + (" and no_kd" if hosted and copies else ""),
    )
    blocks = [(method, own)] if copies else []
    blocks += [("no_kd", len(hosted))] if hosted else []
    record_parts(runner, result, blocks, modality, group.studies(group.rows(copies, hosted)))
    if not (hosted and copies):
        return {blocks[0][0]: result}
    return {"no_kd": result.subset(range(own, own + len(hosted))), method: result.subset(range(own))}


def record_parts(
    runner: StudyRunner,
    result: FitResult,
    blocks: Sequence[tuple[str, int]],
    modality: Modality | None = None,
    studies: Sequence[str | None] | None = None,
) -> None:
    """Log one fit by method and study: ``blocks`` name the methods of consecutive copies (the
    first is the fit's own, the others train in it), ``studies`` the study of each copy (``None``:
    the runner's). A fit of one method and study is logged whole; otherwise each part is logged
    as a fit of its own, the first with the fit's wall time and its ``copies`` per part, the
    others with ``in_fit_of`` the fit's method and no wall time."""
    parts: dict[tuple[str, str], list[int]] = {}
    start = 0
    for method, n in blocks:
        for copy in range(start, start + n):
            study = (studies[copy] if studies is not None else None) or runner.study
            parts.setdefault((method, study), []).append(copy)
        start += n
    tags = {"modality": modality_label(modality)} if modality is not None else {}
    if len(parts) == 1:
        ((method, study),) = parts
        runner.record(method, result, **tags, **({"study": study} if study != runner.study else {}))
        return
    host, studies = blocks[0][0], {study for _, study in parts}
    name = (lambda method, study: method) if len(studies) == 1 else (lambda method, study: f"{study}/{method}")
    composition = {name(method, study): len(copies) for (method, study), copies in parts.items()}
    first = next(iter(parts))
    for (method, study), copies in sorted(parts.items(), key=lambda item: item[0] == first):
        extra = {"copies": composition} if (method, study) == first else {"wall_time_s": 0.0, "in_fit_of": host}
        part = result.subset(copies, **extra)
        runner.record(method, part, **tags, **({"study": study} if study != runner.study else {}))


def report_group(
    runner: StudyRunner,
    group: TaskGroup,
    teacher: FitResult | None,
    students: Mapping[str, FitResult],
    include: Sequence[str],
    baselines: _Baselines | None,
    metrics: Sequence[MetricHook],
    metric_options: Mapping,
) -> None:
    """Step 4: the test accuracy of every reported model, each task's :class:`TaskOutputs`, and
    the ``metrics`` hooks' rows."""
    k, test = len(group.variants), group.labels["test"]
    teacher_logits = teacher.predict({"x": group.teacher_x["test"]})["student"] if teacher is not None else None
    logits = {
        name: fit.predict({"x": repeat_models(group.student_x["test"], k)})["student"] for name, fit in students.items()
    }
    if baselines is not None:
        logits = {"no_kd": baselines.logits(group), **logits}
    rows = []
    if teacher_logits is not None and "teacher" in include:
        rows += _accuracy_rows(runner, group, "teacher", teacher_logits)
    if "no_kd" in logits:
        rows += task_rows(
            runner, group, "no_kd", group.variants[0], "test_acc", accuracy(logits["no_kd"], test).numpy()
        )
    for name in students:
        rows += _accuracy_rows(runner, group, name, logits[name])
    runner.add(rows)
    outputs = []
    for i, variant in enumerate(group.variants):
        for j, (task, settings) in enumerate(zip(group.tasks, group.settings(variant))):
            index, n_test = i * group.size + j, group.sizes["test"][j]  # its own test rows, not the padding
            chosen = {m: z[index if z.shape[0] > group.size else j][:n_test] for m, z in logits.items()}
            teacher_of_task = teacher_logits[index][:n_test] if teacher_logits is not None else None
            outputs.append(TaskOutputs(task, variant, settings, teacher_of_task, chosen))
    runner.run.artifacts.outputs.extend(outputs)
    by_study: dict[str, list[TaskOutputs]] = defaultdict(list)
    for out in outputs:
        by_study[out.task.study or runner.study].append(out)
    for hook in metrics:
        for study, of_study in by_study.items():
            runner.add(hook(study, of_study, metric_options))


def _accuracy_rows(runner: StudyRunner, group: TaskGroup, method: str, logits: torch.Tensor) -> list[dict]:
    """``test_acc`` rows of ``method``'s K variant blocks of logits ``(K·M, N, C)``."""
    scores = accuracy(logits, repeat_models(group.labels["test"], len(group.variants))).numpy()
    return [
        row
        for i, variant in enumerate(group.variants)
        for row in task_rows(runner, group, method, variant, "test_acc", scores[i * group.size : (i + 1) * group.size])
    ]


def task_rows(
    runner: StudyRunner, group: TaskGroup, method: str, variant: str | None, metric: str, values: Sequence[float]
) -> list[dict]:
    """One row per task of ``group`` (``values`` in task order), in its study."""
    rows = tidy_rows(runner.study, method, group.settings(variant), group.seeds(), metric, values)
    for row, task in zip(rows, group.tasks):
        row["study"] = task.study or runner.study
    return rows


class _Baselines:
    """The No-KD students' test logits, by what they depend on: their seed and student data
    (``share``), or the task itself."""

    def __init__(self, modality: Modality, share: bool):
        self.modality, self.share = modality, share
        self.test_logits: dict[tuple, torch.Tensor] = {}
        self._keyed: tuple[TaskGroup | None, list[tuple]] = (None, [])  # the last group's keys: hashing data costs

    def keys(self, group: TaskGroup) -> list[tuple]:
        if self._keyed[0] is not group:
            keys = [_data_key(t, self.modality) if self.share else (t.seed, id(t)) for t in group.tasks]
            self._keyed = (group, keys)
        return self._keyed[1]

    def untrained(self, group: TaskGroup) -> list[Task]:
        """The first task of each key that no No-KD student was trained for yet."""
        first: dict[tuple, Task] = {}
        for key, task in zip(self.keys(group), group.tasks):
            if key not in self.test_logits:
                first.setdefault(key, task)
        return list(first.values())

    def store(self, group: TaskGroup, trained: Sequence[Task], result: FitResult) -> None:
        index = positions(group.tasks, trained)
        logits = result.predict({"x": group.student_x["test"][index]})["student"]
        keys, sizes = self.keys(group), group.sizes["test"]
        self.test_logits.update((keys[i], z[: sizes[i]]) for i, z in zip(index, logits))

    def logits(self, group: TaskGroup) -> torch.Tensor:
        """The No-KD test logits of every task of ``group``, ``(M, N, C)`` (padded as its test split)."""
        n_rows = group.labels["test"].shape[1]
        return torch.stack([pad_rows(self.test_logits[key], n_rows) for key in self.keys(group)])


def given_init(
    tasks: Sequence[Task],
    method: str,
    spec: ModelSpec,
    copies: int = 1,
    widths: Sequence[int] | None = None,
) -> dict[str, Stack] | None:
    """The initial nets of ``method`` for a fit over ``copies`` blocks of ``tasks``, as its student
    stack: the nets the tasks give (``Task.init``), or ``None`` when none does. With ``widths``
    (each task's own flat input width, where :func:`stack_split` padded the inputs to ``spec``'s)
    a task that gives none gets the net its seed draws at its own width; every net is padded
    with zero weights for the padded columns, so it computes what it would unpadded."""
    given = [method in t.init for t in tasks]
    if any(given) and not all(given):
        raise ValueError(f"either every task of a fit gives initial weights for {method!r} or none does")
    narrower = widths is not None and any(w != spec.input_shape[0] for w in widths)
    if not any(given) and not narrower:
        return None
    nets = []
    for i, task in enumerate(tasks):
        if method in task.init:
            state = dict(task.init[method])
        else:
            state = build_model(spec.sized((widths[i],), spec.n_classes), task.seed).state_dict()
        net = Net(spec)
        net.load_state_dict(_padded(state, net.state_dict()))
        nets.append(net)
    return {"student": Stack.from_modules(nets).repeat(copies)}


def _padded(state: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict whose 2-d weights narrower in their input axis than ``target``'s get zero
    columns (a net built for inputs that :func:`stack_split` padded); other shapes as given."""
    padded = {}
    for name, value in state.items():
        want = target.get(name)
        if want is not None and value.dim() == 2 and value.shape[0] == want.shape[0] and value.shape[1] < want.shape[1]:
            value = F.pad(value, (0, want.shape[1] - value.shape[1]))
        padded[name] = value
    return padded


def positions(group: Sequence[Task], tasks: Sequence[Task]) -> list[int]:
    """Where each of ``tasks`` (the same objects) sits in ``group``."""
    where = {id(task): i for i, task in enumerate(group)}
    return [where[id(task)] for task in tasks]


def joined_init(stacks: Sequence[dict[str, Stack] | None]) -> dict[str, Stack] | None:
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
