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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...analysis.metrics import MIN_SAMPLES_PER_SIDE, accuracy, domain_classifier_accuracy, weighted_f1
from ...analysis.results import RunLog, tidy_rows
from ...datasets import PairedDataset, standardise
from ...datasets.core import run_generator
from ...engine import FitResult, StepResult, TrainConfig, fit
from ...losses import Vanilla, make_loss
from ...models import ModelSpec
from ...systems import DISCOM_TERMS, MODALITY_TARGETS, TEACHER_PREFIX, DisCoM, Distillation, SumFusion
from ..runner import StudyRun, Task, fit_run, repeat_models

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
    st: Stacked,
    specs: Mapping[str, ModelSpec],
    protocol: Protocol,
    *,
    study: str,
    ablation_study: str | None,
    progress: bool | None,
) -> list[StudyRun]:
    """DisCoM (and, with an ``ablation_study``, its ablations) on the stacked tasks."""
    variants = {"discom": {}}
    if ablation_study:
        variants.update({name: {term: 0.0} for name, term in TERM_ABLATIONS.items()})
    names = list(variants)
    blocks = [variants[name] for name in names for _ in st.tasks]
    settings = st.settings
    runs = []
    system = protocol.discom(specs, blocks)
    result = _fit_discom(system, st, len(names), protocol, progress, f"{study}: discom ({', '.join(names)})")
    studies = {name: study if name == "discom" else ablation_study for name in names}
    rows = _discom_rows(system, result, st, studies, ablation_study, settings)
    runs.append(fit_run(study, "discom", result, rows, modalities=st.modalities))
    if ablation_study:
        released = protocol.discom(specs, modality_targets=AS_RELEASED)
        result = _fit_discom(
            released, st, 1, protocol, progress, f"{ablation_study}: discom with the released modality targets"
        )
        rows = _discom_rows(released, result, st, {AS_RELEASED: ablation_study}, None, settings)
        runs.append(fit_run(ablation_study, AS_RELEASED, result, rows, modalities=st.modalities))
    return runs


def _fit_discom(system, st, copies, protocol, progress, description) -> FitResult:
    feeds = {m: [f"x.{m}", f"y.{m}"] for m in st.modalities}  # each modality shuffled on its own: unpaired
    return fit(
        system,
        st.discom_data("train", copies),
        seeds=st.seeds * copies,
        config=protocol.train_config(st.n_train),
        val=st.discom_data("val", copies),
        feeds=feeds,
        progress=progress,
        description=description,
    )


def _discom_rows(system, result, st, studies: Mapping[str, str], feature_study: str | None, settings) -> list[dict]:
    """Rows of each block of copies (``studies``: its method → its study) and, with a
    ``feature_study``, the first block's auxiliary classifier on s alone and on d alone."""
    names = list(studies)
    k = len(names)
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


def variant_rows(
    st: Stacked, system: DisCoM, protocol: Protocol, *, study: str, name: str, progress: bool | None
) -> list[dict]:
    """One DisCoM ``system`` fitted on the stacked tasks with ``protocol``'s training settings:
    its rows (method ``name``), and, over each split's test samples (modality ``"all"``):
    ``cos_ds`` and ``cos_du``, the mean cosine of (d, s) and of (d, u), averaged over the
    modalities; ``discriminator_acc_s``, how often the trained modality discriminator names the
    right modality from s (beside ``domain_acc_s``, a fresh held-out classifier's accuracy)."""
    settings = st.settings
    result = _fit_discom(system, st, 1, protocol, progress, f"{study}: {name}")
    rows = _discom_rows(system, result, st, {name: study}, None, settings)
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
    return rows


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
    st: Stacked,
    specs: Mapping[str, ModelSpec],
    protocol: Protocol,
    *,
    study: str,
    methods: Sequence[str],
    progress: bool | None,
) -> list[StudyRun]:
    """Of ``methods``: single, the SUM-fusion teacher's KD and DKD students, cross-modal KD
    students (whose teachers are the single models, trained for them when not asked for)."""
    base = st.settings
    runs, single = [], {}
    if {"single", "crossmodal_kd"} & set(methods):
        runs, single = _fit_students(
            st,
            specs,
            protocol,
            study,
            [StudentJob("single", m, base) for m in st.modalities],
            lambda jobs: Vanilla(),
            progress,
        )
    if {"fusion_kd", "fusion_dkd"} & set(methods):
        runs += _fusion_students(st, specs, protocol, study, methods, base, progress)
    if "crossmodal_kd" in methods:
        jobs = [
            StudentJob("crossmodal_kd", m, {**base, "alpha": a, "teacher_modality": t}, single[t]["train_logits"], a)
            for m in st.modalities
            for t in [_best_other(single, m)]
            for a in protocol.kd_alphas
        ]
        runs += _fit_students(st, specs, protocol, study, jobs, _kd_loss(protocol, len(st.tasks)), progress)[0]
    return runs


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


def _fusion_students(st, specs, protocol, study, methods, base, progress) -> list[StudyRun]:
    fusion = fit(
        SumFusion(dict(specs), protocol.fusion_width),
        {**{f"x.{m}": st.x["train"][m] for m in st.modalities}, "y": st.y["train"]},
        seeds=st.seeds,
        config=protocol.train_config(st.n_train),
        val={**{f"x.{m}": st.x["val"][m] for m in st.modalities}, "y": st.y["val"]},
        progress=progress,
        description=f"{study}: SUM-fusion teacher",
    )
    teacher_test = test_scores(
        fusion.predict({f"x.{m}": st.x["test"][m] for m in st.modalities})["fusion"], st.y["test"], st.test_sizes
    )
    runs = [fit_run(study, "fusion_teacher", fusion, [], teacher_test_f1w=teacher_test["test_f1w"])]
    fusion_logits = fusion.predict({f"x.{m}": st.x["train"][m] for m in st.modalities})["fusion"]
    if "fusion_kd" in methods:
        jobs = [
            StudentJob("fusion_kd", m, {**base, "alpha": a}, fusion_logits, a)
            for m in st.modalities
            for a in protocol.kd_alphas
        ]
        runs += _fit_students(st, specs, protocol, study, jobs, _kd_loss(protocol, len(st.tasks)), progress)[0]
    if "fusion_dkd" in methods:
        dkd = make_loss(
            "dkd",
            alpha=1.0,
            beta=8.0,
            temperature=4.0,
            warmup_epochs=min(protocol.dkd_warmup_epochs, protocol.train_config(st.n_train).epochs),
        )
        jobs = [StudentJob("fusion_dkd", m, base, fusion_logits) for m in st.modalities]
        runs += _fit_students(st, specs, protocol, study, jobs, lambda jobs: dkd, progress)[0]
    return runs


def _best_other(single: Mapping[str, dict], modality: str) -> str:
    """The other modality whose single model has the best mean validation weighted F1."""
    return max((m for m in single if m != modality), key=lambda m: single[m]["val_f1w"])


def _fit_students(
    st, specs, protocol, study, jobs: Sequence[StudentJob], loss, progress
) -> tuple[list[StudyRun], dict]:
    """Students of ``jobs``, one batched fit per input shape; rows per job. Returns the runs and,
    per modality, its first job's training logits and mean best validation weighted F1."""
    by_shape: dict[tuple, list[StudentJob]] = defaultdict(list)
    for job in jobs:
        by_shape[st.shape(job.modality)].append(job)
    runs, models = [], {}
    m_tasks = len(st.tasks)
    for _shape, group in by_shape.items():
        k = len(group)
        data = {"x": torch.cat([st.x["train"][j.modality] for j in group]), "y": repeat_models(st.y["train"], k)}
        if group[0].teacher_logits is not None:
            data[f"{TEACHER_PREFIX}logits"] = torch.cat([j.teacher_logits for j in group])
        val = {"x": torch.cat([st.x["val"][j.modality] for j in group]), "y": repeat_models(st.y["val"], k)}
        spec = specs[group[0].modality]
        system = Distillation(spec, loss(group))
        method = group[0].method
        result = fit(
            system,
            data,
            seeds=st.seeds * k,
            config=protocol.train_config(st.n_train),
            val=val,
            progress=progress,
            description=f"{study}: {method} ({', '.join(dict.fromkeys(j.modality for j in group))})",
        )
        logits = result.predict({"x": torch.cat([st.x["test"][j.modality] for j in group])})["student"]
        rows = []
        for i, job in enumerate(group):
            block = slice(i * m_tasks, (i + 1) * m_tasks)
            for metric, values in test_scores(logits[block], st.y["test"], st.test_sizes).items():
                rows += tidy_rows(
                    study, job.method, {**job.settings, "modality": job.modality}, st.seeds, metric, values
                )
            if job.modality not in models:
                student = result.modules["student"].subset(list(range(block.start, block.stop)))
                models[job.modality] = {
                    "train_logits": student.predict(st.x["train"][job.modality]),
                    "val_f1w": float(result.history["val_weighted_f1"][:, block].max(0).mean()),
                }
        runs.append(fit_run(study, method, result, rows, modalities=[j.modality for j in group]))
    return runs, models


# ----------------------------------------------------------------------------- one dataset
def backbone_specs(st: Stacked, nets: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    return {m: nets[m].sized(st.shape(m), st.n_classes) for m in st.modalities}


def run_dataset(
    tasks: Sequence[Task],
    modalities: Sequence[str],
    nets: Mapping[str, ModelSpec],
    protocol: Protocol,
    *,
    study: str,
    ablation_study: str | None = None,
    methods: Sequence[str] = METHODS,
    progress: bool | None = None,
) -> StudyRun:
    """Every method of ``methods`` (and, with ``ablation_study``, DisCoM's ablations) on the
    tasks of one dataset, with its ``modalities`` (two or more)."""
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
    runs = [StudyRun(pd.DataFrame(), RunLog())]
    if "discom" in methods:
        runs += run_discom(st, specs, protocol, study=study, ablation_study=ablation_study, progress=progress)
    baselines = [m for m in methods if m != "discom"]
    if baselines:
        produced = run_baselines(st, specs, protocol, study=study, methods=baselines, progress=progress)
        runs += [_only(run, baselines) for run in produced]
    return StudyRun.concat(runs)


def _only(run: StudyRun, methods: Sequence[str]) -> StudyRun:
    """The run with rows of ``methods`` only (single models trained as cross-modal teachers)."""
    if len(run.table):
        run.table = run.table[run.table["method"].isin(methods)].reset_index(drop=True)
    return run
