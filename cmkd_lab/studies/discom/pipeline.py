"""DisCoM-KD's protocol and baselines (papers.md §5), batched over splits, for any paired data.

Per dataset and modality list, on ``n_splits`` stratified 70/10/20 splits (each modality
z-scored with its training split's statistics):

- ``discom``: :class:`~cmkd_lab.systems.DisCoM`, every modality's classifier at once, each
  modality shuffled on its own (unpaired feeding). Its ablations train in the same batched fit
  (a dropped term weighs 0 in its copies): ``no_mod``, ``no_adv``, ``no_aux``, ``no_orth``; the
  full model's auxiliary classifier read on s alone (``invariant_only``) and on d alone
  (``informative_only``); ``as_released`` is the full model with the released code's modality
  targets (a fit of its own).
- ``single``: one classifier per modality, cross-entropy only.
- ``fusion_kd`` / ``fusion_dkd``: a SUM-fusion teacher on paired samples of every modality
  (:class:`~cmkd_lab.systems.SumFusion`) → one student per modality, with KD (loss
  α·CE + (1 − α)·KD, T = 4, T², one student per α of ``kd_alphas``) or DKD (α = 1, β = 8, T = 4,
  a linear warm-up).
- ``crossmodal_kd``: the ``single`` model of another modality (the one with the best mean
  validation F1) as teacher → student of this modality, KD as above.

MLKD (``fusion_mlkd``) is left out: the kit has no MLKD loss, and the released one passes
probabilities where ``F.kl_div`` expects log-probabilities (see the notebook).

Every fit selects, per modality, the epoch with the best validation weighted F1 and reports
the test split's weighted F1 (``test_f1w``) and accuracy (``test_acc``) there. ``domain_acc_s``
and ``domain_acc_u``: a held-out logistic regression telling the modalities apart from the
test samples' s (resp. u) features (chance: 1 / number of modalities), modality ``"all"``.
Every row carries its ``dataset`` and the dataset's ``n_classes``.

Splits of one dataset stack into one fit when their sizes differ (group splits): training and
validation parts keep a seeded subset of the smallest size, test parts are scored in full.
Every fit goes through the study's :class:`~cmkd_lab.studies.runner.StudyRunner` (:func:`run_dataset`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...analysis.metrics import MIN_SAMPLES_PER_SIDE, accuracy, domain_classifier_accuracy, weighted_f1
from ...analysis.results import tidy_rows
from ...datasets import PairedDataset, standardise
from ...datasets.core import run_generator
from ...engine import FitResult, StepResult, TrainConfig
from ...losses import Vanilla, make_loss
from ...models import ModelSpec
from ...systems import DISCOM_TERMS, MODALITY_TARGETS, TEACHER_PREFIX, DisCoM, Distillation, SumFusion
from ..runner import StudyRunner, Task, repeat_models

VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # the paper's stratified 70/10/20 splits
METHODS = ("discom", "single", "fusion_kd", "fusion_dkd", "crossmodal_kd")
KD_BASELINES = ("fusion_kd", "fusion_dkd", "crossmodal_kd")
LEFT_OUT = {
    "fusion_mlkd": "no MLKD loss in the kit; the released one calls F.kl_div on probabilities, not log-probabilities"
}
TERM_ABLATIONS = {"no_mod": "mod", "no_adv": "adv", "no_aux": "aux", "no_orth": "orth"}
FEATURE_ABLATIONS = ("invariant_only", "informative_only")
AS_RELEASED = "as_released"
ABLATIONS = (*TERM_ABLATIONS, *FEATURE_ABLATIONS, AS_RELEASED)
ALL_MODALITIES = "all"  # the modality column of the domain-accuracy rows
REFERENCE_TRAIN = 1400  # the training split of a 2,000-sample set


@dataclass(frozen=True)
class Protocol:
    """How every fit trains, and DisCoM's and the baselines' settings. The paper trains 300
    epochs with Adam at lr 1e-4 and batch 128 on ResNet-18s; the kit's small nets converge in
    far fewer epochs at lr 1e-3 (selection keeps each modality's best validation epoch)."""

    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 128
    width: int = 32  # s, d and u each have this many features
    cl_weight: float = 1.0
    aux_weight: float = 1.0
    mod_weight: float = 1.0
    adv_weight: float = 1.0
    orth_weight: float = 1.0
    grl_scale: float = 1.0
    modality_targets: str = "class_index"
    kd_alphas: tuple[float, ...] = (0.0, 0.5)  # the weight of CE in α·CE + (1 − α)·KD
    kd_temperature: float = 4.0
    dkd_warmup_epochs: int = 20
    fusion_width: int = 64
    device: str = "auto"  # where every fit trains (see TrainConfig)

    def check(self) -> None:
        if self.modality_targets not in MODALITY_TARGETS:
            raise ValueError(
                f"unknown modality_targets {self.modality_targets!r}; valid: {', '.join(MODALITY_TARGETS)}"
            )
        for alpha in self.kd_alphas:
            if not 0 <= alpha <= 1:
                raise ValueError(f"kd_alphas lie in [0, 1] (the weight of CE), got {alpha}")
        if self.epochs < 1 or self.batch_size < 1 or self.width < 1:
            raise ValueError("epochs, batch_size and width must be >= 1")

    def train_config(self, n_train: int) -> TrainConfig:
        """Adam, mini-batches, per-head best-validation weighted F1. A training split larger than
        ``REFERENCE_TRAIN`` samples trains fewer passes, for about the optimiser steps ``epochs``
        passes over ``REFERENCE_TRAIN`` samples take (watch: about 3,300 samples, 17 of 40 passes)."""
        epochs = min(self.epochs, math.ceil(self.epochs * REFERENCE_TRAIN / n_train))
        return TrainConfig(
            epochs=epochs,
            lr=self.lr,
            optimizer="adam",
            batch_size=self.batch_size,
            device=self.device,
            select="best_val",
            select_metric="weighted_f1",
        )

    def discom(
        self,
        specs: Mapping[str, ModelSpec],
        copies: Sequence[Mapping[str, float]] | None = None,
        modality_targets: str | None = None,
        orthogonality: str = "signed",
    ) -> DisCoM:
        """The DisCoM system; ``copies`` gives, per copy, the weights it overrides (None: the
        protocol's weights for every copy); ``modality_targets`` overrides the protocol's;
        ``orthogonality="absolute"`` gives :class:`AbsoluteCosineDisCoM` (the paper's L_⊥ is signed)."""
        if orthogonality not in ORTHOGONALITY:
            raise ValueError(f"unknown orthogonality {orthogonality!r}; valid: {', '.join(ORTHOGONALITY)}")
        weights = {
            f"{t}_weight": getattr(self, f"{t}_weight")
            if copies is None
            else [copy.get(t, getattr(self, f"{t}_weight")) for copy in copies]
            for t in DISCOM_TERMS
        }
        return ORTHOGONALITY[orthogonality](
            dict(specs),
            width=self.width,
            grl_scale=self.grl_scale,
            modality_targets=modality_targets or self.modality_targets,
            **weights,
        )


@dataclass
class AbsoluteCosineDisCoM(DisCoM):
    """DisCoM whose L_⊥ is the mean *absolute* cosine of (d, u) plus that of (d, s): smallest when
    d is orthogonal to u and to s. The paper's (and the released code's) signed cosine is smallest
    at d = −u and d = −s instead. Every other term is DisCoM's."""

    def step(self, modules, batch):
        self._seen = {}  # the (s, d, u) that DisCoM's step computes, per modality
        try:
            outputs, terms = super().step(modules, batch)
            terms["orth"] = sum(
                F.cosine_similarity(d, u, dim=-1).abs().mean(-1) + F.cosine_similarity(d, s, dim=-1).abs().mean(-1)
                for s, d, u in self._seen.values()
            ) / len(self._seen)
        finally:
            del self._seen
        return StepResult(outputs, terms)

    def features(self, modules, modality, x):
        s, d, u = super().features(modules, modality, x)
        if hasattr(self, "_seen"):
            self._seen[modality] = (s, d, u)
        return s, d, u

    def config(self):
        return {**super().config(), "orthogonality": "absolute"}


ORTHOGONALITY = {"signed": DisCoM, "absolute": AbsoluteCosineDisCoM}  # L_⊥ on signed (the paper) or absolute cosines


# ----------------------------------------------------------------------------- data
def make_task(data: PairedDataset, modalities: Sequence[str], seed: int, name: str) -> Task:
    """The task of split seed ``seed``: the stratified 70/10/20 split, each modality z-scored with
    the training split's statistics."""
    split = data.select(*modalities).split(seed, VAL_FRACTION, TEST_FRACTION)
    return Task(standardise(split, list(modalities)), seed, {"dataset": name})


def make_tasks(data: PairedDataset, modalities: Sequence[str], n_splits: int, name: str) -> list[Task]:
    """One task per split seed 0..n_splits-1 of ``data`` (:func:`make_task`)."""
    return [make_task(data, modalities, seed, name) for seed in range(n_splits)]


@dataclass
class Stacked:
    """The tasks' parts as ``(M, N, ...)`` tensors per modality, with labels; ``test_sizes``
    says how many test rows of each copy are real (the rest repeat its last row)."""

    tasks: list[Task]
    x: dict[str, dict[str, torch.Tensor]]
    y: dict[str, torch.Tensor]
    test_sizes: list[int]
    n_classes: int

    @property
    def seeds(self) -> list[int]:
        return [t.seed for t in self.tasks]

    @property
    def modalities(self) -> list[str]:
        return list(self.x["train"])

    @property
    def settings(self) -> dict:
        """What every row of these tasks carries: the dataset and its number of classes (which
        sets chance, 1 / ``n_classes``)."""
        return {"dataset": self.tasks[0].settings["dataset"], "n_classes": self.n_classes}

    @property
    def n_train(self) -> int:
        return self.x["train"][self.modalities[0]].shape[1]

    def discom_data(self, part: str, copies: int = 1) -> dict[str, torch.Tensor]:
        return {
            key: repeat_models(value, copies)
            for m in self.modalities
            for key, value in ((f"x.{m}", self.x[part][m]), (f"y.{m}", self.y[part]))
        }

    def shape(self, modality: str) -> tuple[int, ...]:
        return tuple(self.x["train"][modality].shape[2:])


def stack_tasks(tasks: Sequence[Task], modalities: Sequence[str]) -> Stacked:
    """Stack the tasks' splits (see the module's note on unequal sizes)."""
    x: dict[str, dict[str, torch.Tensor]] = {}
    y: dict[str, torch.Tensor] = {}
    for part in ("train", "val"):
        datasets = [getattr(t.splits, part) for t in tasks]
        n = min(len(d) for d in datasets)
        rows = [
            np.sort(run_generator(t.seed, "stack_tasks", part).permutation(len(d))[:n]) for t, d in zip(tasks, datasets)
        ]
        x[part] = {m: torch.stack([d[m][r] for d, r in zip(datasets, rows)]) for m in modalities}
        y[part] = torch.stack([d.labels[r] for d, r in zip(datasets, rows)])
    tests = [t.splits.test for t in tasks]
    sizes = [len(d) for d in tests]
    pad = [np.minimum(np.arange(max(sizes)), n - 1) for n in sizes]
    x["test"] = {m: torch.stack([d[m][r] for d, r in zip(tests, pad)]) for m in modalities}
    y["test"] = torch.stack([d.labels[r] for d, r in zip(tests, pad)])
    n_classes = max(p.n_classes for t in tasks for p in t.splits.parts().values())
    return Stacked(list(tasks), x, y, sizes, n_classes)


def test_scores(logits: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]) -> dict[str, list[float]]:
    """Weighted F1 and accuracy of each copy on its real test rows: logits ``(M, N, C)``."""
    rows = [(logits[i, :n], labels[i % len(labels), :n]) for i, n in enumerate(sizes)]
    return {
        "test_f1w": [float(weighted_f1(z, y)) for z, y in rows],
        "test_acc": [float(accuracy(z, y)) for z, y in rows],
    }


# ----------------------------------------------------------------------------- DisCoM and its ablations
def discom_features(system: DisCoM, result: FitResult, data: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """Per modality (s, d, u) of every copy ``(M, N, width)``, in eval mode."""
    with torch.no_grad():
        return {m: system.features(result.modules, m, data[f"x.{m}"]) for m in system.modalities}


def _domain_rows(study, method, st: Stacked, features, block: slice, settings: dict) -> list[dict]:
    if min(st.test_sizes) < 2 * MIN_SAMPLES_PER_SIDE:  # half of each modality's test rows fit, half score
        print(
            f"note: {settings['dataset']}: {min(st.test_sizes)} test samples per split are too few for a domain "
            "classifier; no domain_acc rows"
        )
        return []
    rows = []
    for kind, j in (("s", 0), ("u", 2)):
        values = []
        for copy, (task, n) in enumerate(zip(st.tasks, st.test_sizes)):
            sets = [features[m][j][block][copy, :n] for m in st.modalities]
            values.append(domain_classifier_accuracy(sets, seed=task.seed))
        rows += tidy_rows(
            study, method, {**settings, "modality": ALL_MODALITIES}, st.seeds, f"domain_acc_{kind}", values
        )
    return rows


def run_discom(
    runner: StudyRunner,
    st: Stacked,
    specs: Mapping[str, ModelSpec],
    protocol: Protocol,
    *,
    ablation_study: str | None = None,
) -> None:
    """DisCoM (and, with an ``ablation_study``, its ablations) on the stacked tasks, as fits of
    ``runner``.

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs the fits and collects the rows; DisCoM's rows are of study ``runner.study``.
    st : Stacked
        The tasks' splits, ``(M, N, ...)`` per modality.
    specs : mapping of str to ModelSpec
        Each modality's backbone, sized (:func:`backbone_specs`).
    protocol : Protocol
        How the fits train, and DisCoM's loss weights.
    ablation_study : str, optional
        The study of the ablations' rows: the term ablations train in DisCoM's fit (a block of
        copies each), the feature ablations read its first block, and ``as_released`` (the
        released code's modality targets) is a fit of its own, logged under this study.

    Returns
    -------
    None
        Rows (per modality ``test_f1w`` and ``test_acc``; ``domain_acc_s`` and ``domain_acc_u``
        of modality ``"all"``; one row per split) and fits go to ``runner``.
    """
    variants = {"discom": {}}
    if ablation_study:
        variants.update({name: {term: 0.0} for name, term in TERM_ABLATIONS.items()})
    names = list(variants)
    system = protocol.discom(specs, [variants[name] for name in names for _ in st.tasks])
    result = _fit_discom(runner, "discom", system, st, len(names), protocol, f"discom ({', '.join(names)})")
    studies = {name: runner.study if name == "discom" else ablation_study for name in names}
    runner.add(_discom_rows(system, result, st, studies, ablation_study))
    if ablation_study:
        ablation = StudyRunner(ablation_study, progress=runner.progress)
        released = protocol.discom(specs, modality_targets=AS_RELEASED)
        result = _fit_discom(
            ablation, AS_RELEASED, released, st, 1, protocol, "discom with the released modality targets"
        )
        ablation.add(_discom_rows(released, result, st, {AS_RELEASED: ablation_study}, None))
        runner.include(ablation.result())


def _fit_discom(
    runner: StudyRunner, method: str, system: DisCoM, st: Stacked, copies: int, protocol: Protocol, description: str
) -> FitResult:
    """``copies`` blocks of ``system``'s copies (one per task each) on the tasks' training split,
    selected on their validation split; logged under ``method`` with the modalities."""
    feeds = {m: [f"x.{m}", f"y.{m}"] for m in st.modalities}  # each modality shuffled on its own: unpaired
    return runner.fit(
        method,
        system,
        st.discom_data("train", copies),
        seeds=st.seeds * copies,
        config=protocol.train_config(st.n_train),
        val=st.discom_data("val", copies),
        feeds=feeds,
        description=description,
        tags={"modalities": st.modalities},
    )


def _discom_rows(system, result, st, studies: Mapping[str, str], feature_study: str | None) -> list[dict]:
    """Rows of each block of copies (``studies``: its method → its study) and, with a
    ``feature_study``, the first block's auxiliary classifier on s alone and on d alone."""
    names = list(studies)
    k = len(names)
    settings = st.settings
    test = st.discom_data("test", k)
    logits = result.predict(test)
    features = discom_features(system, result, test)
    rows = []
    for i, name in enumerate(names):
        block = slice(i * len(st.tasks), (i + 1) * len(st.tasks))
        row_study = studies[name]
        for m in st.modalities:
            for metric, values in test_scores(logits[m][block], st.y["test"], st.test_sizes).items():
                rows += tidy_rows(row_study, name, {**settings, "modality": m}, st.seeds, metric, values)
        rows += _domain_rows(row_study, name, st, features, block, settings)
    if feature_study:
        block = slice(0, len(st.tasks))
        auxiliary = result.modules["auxiliary"].subset(range(len(st.tasks)))
        with torch.no_grad():
            for name, j in (("invariant_only", 0), ("informative_only", 1)):
                for m in st.modalities:
                    aux_logits = auxiliary(features[m][j][block])
                    for metric, values in test_scores(aux_logits, st.y["test"], st.test_sizes).items():
                        rows += tidy_rows(feature_study, name, {**settings, "modality": m}, st.seeds, metric, values)
    return rows


def run_variant(runner: StudyRunner, st: Stacked, system: DisCoM, protocol: Protocol, *, name: str) -> None:
    """One DisCoM ``system`` fitted on the stacked tasks with ``protocol``'s training settings,
    logged and reported as method ``name`` of ``runner``'s study.

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs the fit and collects the rows.
    st : Stacked
        The tasks' splits, ``(M, N, ...)`` per modality.
    system : DisCoM
        The system to fit (any protocol or orthogonality variant, one copy per task).
    protocol : Protocol
        How the fit trains.
    name : str
        The rows' and the fit's method.

    Returns
    -------
    None
        Rows go to ``runner``: those of :func:`run_discom` for one block, and, over each split's
        test samples (modality ``"all"``), ``cos_ds`` and ``cos_du`` (the mean cosine of (d, s)
        and of (d, u), averaged over the modalities) and ``discriminator_acc_s`` (how often the
        trained modality discriminator names the right modality from s, beside
        ``domain_acc_s``, a fresh held-out classifier's accuracy).
    """
    study, settings = runner.study, st.settings
    result = _fit_discom(runner, name, system, st, 1, protocol, name)
    rows = _discom_rows(system, result, st, {name: study}, None)
    features = discom_features(system, result, st.discom_data("test"))
    values = {
        metric: [
            np.mean(
                [
                    float(F.cosine_similarity(features[m][1][i, :n], features[m][j][i, :n], dim=-1).mean())
                    for m in st.modalities
                ]
            )
            for i, n in enumerate(st.test_sizes)
        ]
        for metric, j in (("cos_ds", 0), ("cos_du", 2))
    }
    with torch.no_grad():
        named = [result.modules["discriminator"](features[m][0]).argmax(-1) == k for k, m in enumerate(st.modalities)]
    values["discriminator_acc_s"] = [
        float(torch.cat([hit[i, :n] for hit in named]).float().mean()) for i, n in enumerate(st.test_sizes)
    ]
    for metric, per_split in values.items():
        rows += tidy_rows(study, name, {**settings, "modality": ALL_MODALITIES}, st.seeds, metric, per_split)
    runner.add(rows)


# ----------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class StudentJob:
    """One block of student copies: ``method`` on ``modality`` with a teacher's training logits."""

    method: str
    modality: str
    settings: dict
    teacher_logits: torch.Tensor | None = None  # (M, N_train, C)
    alpha: float = 1.0  # the weight of CE (1 − alpha on KD)


def run_baselines(
    runner: StudyRunner, st: Stacked, specs: Mapping[str, ModelSpec], protocol: Protocol, methods: Sequence[str]
) -> None:
    """The baselines of ``methods``, as fits of ``runner``: single, the SUM-fusion teacher's KD and
    DKD students, cross-modal KD students (whose teachers are the single models, trained for them
    when not asked for: then logged, but not reported).

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs the fits and collects the rows, of study ``runner.study``.
    st : Stacked
        The tasks' splits, ``(M, N, ...)`` per modality.
    specs : mapping of str to ModelSpec
        Each modality's backbone, sized (:func:`backbone_specs`).
    protocol : Protocol
        How the fits train, and the KD settings.
    methods : sequence of str
        Of :data:`METHODS` but ``discom``.

    Returns
    -------
    None
        Rows (per modality ``test_f1w`` and ``test_acc``, one row per split; the KD students'
        rows carry ``alpha``, the cross-modal ones' ``teacher_modality``) and fits go to ``runner``.
    """
    base = st.settings
    single = {}
    if {"single", "crossmodal_kd"} & set(methods):
        jobs = [StudentJob("single", m, base) for m in st.modalities]
        single = _fit_students(runner, st, specs, protocol, jobs, lambda jobs: Vanilla(), report="single" in methods)
    if {"fusion_kd", "fusion_dkd"} & set(methods):
        _fusion_students(runner, st, specs, protocol, methods)
    if "crossmodal_kd" in methods:
        jobs = [
            StudentJob("crossmodal_kd", m, {**base, "alpha": a, "teacher_modality": t}, single[t]["train_logits"], a)
            for m in st.modalities
            for t in [_best_other(single, m)]
            for a in protocol.kd_alphas
        ]
        _fit_students(runner, st, specs, protocol, jobs, _kd_loss(protocol, len(st.tasks)))


def _kd_loss(protocol: Protocol, n_tasks: int):
    """KD for a group of jobs: α·CE + (1 − α)·KD per block of copies (T², batchmean)."""
    return lambda jobs: make_loss(
        "kd",
        temperature=protocol.kd_temperature,
        reduction="batchmean",
        t2_scale=True,
        ce_weight=[j.alpha for j in jobs for _ in range(n_tasks)],
        kd_weight=[1 - j.alpha for j in jobs for _ in range(n_tasks)],
    )


def _fusion_students(
    runner: StudyRunner, st: Stacked, specs: Mapping[str, ModelSpec], protocol: Protocol, methods: Sequence[str]
) -> None:
    """The SUM-fusion teacher on paired samples of every modality, then its KD and DKD students."""
    inputs = lambda part: {f"x.{m}": st.x[part][m] for m in st.modalities}  # noqa: E731
    # trained, then recorded: the teacher's test F1 goes into its log record
    fusion = runner.train(
        SumFusion(dict(specs), protocol.fusion_width),
        {**inputs("train"), "y": st.y["train"]},
        seeds=st.seeds,
        config=protocol.train_config(st.n_train),
        val={**inputs("val"), "y": st.y["val"]},
        description="SUM-fusion teacher",
    )
    teacher_test = test_scores(fusion.predict(inputs("test"))["fusion"], st.y["test"], st.test_sizes)
    runner.record("fusion_teacher", fusion, teacher_test_f1w=teacher_test["test_f1w"])
    fusion_logits = fusion.predict(inputs("train"))["fusion"]
    if "fusion_kd" in methods:
        jobs = [
            StudentJob("fusion_kd", m, {**st.settings, "alpha": a}, fusion_logits, a)
            for m in st.modalities
            for a in protocol.kd_alphas
        ]
        _fit_students(runner, st, specs, protocol, jobs, _kd_loss(protocol, len(st.tasks)))
    if "fusion_dkd" in methods:
        dkd = make_loss(
            "dkd",
            alpha=1.0,
            beta=8.0,
            temperature=4.0,
            warmup_epochs=min(protocol.dkd_warmup_epochs, protocol.train_config(st.n_train).epochs),
        )
        jobs = [StudentJob("fusion_dkd", m, st.settings, fusion_logits) for m in st.modalities]
        _fit_students(runner, st, specs, protocol, jobs, lambda jobs: dkd)


def _best_other(single: Mapping[str, dict], modality: str) -> str:
    """The other modality whose single model has the best mean validation weighted F1."""
    return max((m for m in single if m != modality), key=lambda m: single[m]["val_f1w"])


def _fit_students(
    runner: StudyRunner,
    st: Stacked,
    specs: Mapping[str, ModelSpec],
    protocol: Protocol,
    jobs: Sequence[StudentJob],
    loss,
    report: bool = True,
) -> dict[str, dict]:
    """Students of ``jobs``, one batched fit per input shape, logged under the jobs' method; rows
    per job unless ``report`` is False. Returns, per modality, its first job's training logits
    ``(M, N_train, C)`` and mean best validation weighted F1."""
    by_shape: dict[tuple, list[StudentJob]] = defaultdict(list)
    for job in jobs:
        by_shape[st.shape(job.modality)].append(job)
    models = {}
    m_tasks = len(st.tasks)
    for _shape, group in by_shape.items():
        k = len(group)
        data = {"x": torch.cat([st.x["train"][j.modality] for j in group]), "y": repeat_models(st.y["train"], k)}
        if group[0].teacher_logits is not None:
            data[f"{TEACHER_PREFIX}logits"] = torch.cat([j.teacher_logits for j in group])
        val = {"x": torch.cat([st.x["val"][j.modality] for j in group]), "y": repeat_models(st.y["val"], k)}
        method = group[0].method
        result = runner.fit(
            method,
            Distillation(specs[group[0].modality], loss(group)),
            data,
            seeds=st.seeds * k,
            config=protocol.train_config(st.n_train),
            val=val,
            description=f"{method} ({', '.join(dict.fromkeys(j.modality for j in group))})",
            tags={"modalities": [j.modality for j in group]},
        )
        logits = result.predict({"x": torch.cat([st.x["test"][j.modality] for j in group])})["student"]
        rows = []
        for i, job in enumerate(group):
            block = slice(i * m_tasks, (i + 1) * m_tasks)
            for metric, values in test_scores(logits[block], st.y["test"], st.test_sizes).items():
                rows += tidy_rows(
                    runner.study, job.method, {**job.settings, "modality": job.modality}, st.seeds, metric, values
                )
            if job.modality not in models:
                student = result.modules["student"].subset(list(range(block.start, block.stop)))
                models[job.modality] = {
                    "train_logits": student.predict(st.x["train"][job.modality]),
                    "val_f1w": float(result.history["val_weighted_f1"][:, block].max(0).mean()),
                }
        if report:
            runner.add(rows)
    return models


# ----------------------------------------------------------------------------- one dataset
def backbone_specs(st: Stacked, nets: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    return {m: nets[m].sized(st.shape(m), st.n_classes) for m in st.modalities}


def run_dataset(
    runner: StudyRunner,
    tasks: Sequence[Task],
    modalities: Sequence[str],
    nets: Mapping[str, ModelSpec],
    protocol: Protocol,
    *,
    ablation_study: str | None = None,
    methods: Sequence[str] = METHODS,
) -> None:
    """Every method of ``methods`` (and, with ``ablation_study``, DisCoM's ablations) on the
    tasks of one dataset, as fits of ``runner``: DisCoM first, then the baselines.

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs every fit and collects the rows, of study ``runner.study``.
    tasks : sequence of Task
        The dataset's splits (:func:`make_tasks`), stacked into one fit per method.
    modalities : sequence of str
        Two or more different modalities of the tasks.
    nets : mapping of str to ModelSpec
        Each modality's backbone template, sized to its samples and the classes.
    protocol : Protocol
        How every fit trains, and the methods' settings.
    ablation_study : str, optional
        The study of DisCoM's ablations' rows (None: no ablations).
    methods : sequence of str
        Of :data:`METHODS`; an unknown name raises, listing them (and why a left-out one is).

    Returns
    -------
    None
        Rows (see :func:`run_discom` and :func:`run_baselines`, every row with ``dataset`` and
        ``n_classes``) and fits go to ``runner``.
    """
    protocol.check()
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        left_out = [m for m in unknown if m in LEFT_OUT]
        raise ValueError(
            f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}"
            + "".join(f" ({m} is left out: {LEFT_OUT[m]})" for m in left_out)
        )
    if len(modalities) < 2 or len(set(modalities)) != len(modalities):
        raise ValueError(f"DisCoM-KD needs two or more different modalities, got {list(modalities)}")
    st = stack_tasks(tasks, modalities)
    specs = backbone_specs(st, nets)
    if "discom" in methods:
        run_discom(runner, st, specs, protocol, ablation_study=ablation_study)
    baselines = [m for m in methods if m != "discom"]
    if baselines:
        run_baselines(runner, st, specs, protocol, baselines)
