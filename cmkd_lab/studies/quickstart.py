"""Quickstart: a teacher on modality a, students on modality b with and without KD.

Data: :func:`~cmkd_lab.datasets.synthetic.gaussian_venn`, whose knobs set how many decisive
features the two modalities share. Everything the notebook and its Explore section show comes
from :func:`run` and the figure builders here; its claims are stated below, before the data, and
judged by :mod:`cmkd_lab.analysis.claims`; its checked exercise answers are the registered calls
at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ..analysis import claims
from ..analysis.results import summarize
from ..app import course
from ..app.notebook import NotebookParameters
from ..datasets import PairedDataset, Splits
from ..datasets.synthetic import gaussian_venn, venn_ratios
from ..engine import TrainConfig
from ..losses import KD_REDUCTIONS, kd_loss, make_loss
from ..models import ModelSpec
from ..report import figures
from .runner import StudyRun, Task, run_teacher_student

STUDY = "quickstart"
NOTEBOOK = "00_quickstart"
N_CLASSES = 2  # gaussian_venn's labels are binary

# The claims, stated before the data: MFH's Fig. 2 (papers.md §1) has Δ = KD − No-KD at −1.6 and −0.8
# points for γ = 0 and 0.11, 0 at γ = 0.25, and +0.8 to +2.2 points from γ = 0.43 to 1. A setting
# below KD_HURTS_BELOW is judged on the first claim, one above KD_HELPS_ABOVE on the second; the
# paper puts the sign change in between, so a setting there has no claim. Units: runs, each run's
# KD and No-KD students trained on the same data.
KD_HURTS_BELOW, KD_HELPS_ABOVE = 0.2, 0.4
KD_HURTS = claims.Claim(
    claim="KD lowers the student's accuracy when the teacher relies on features only its modality sees (small γ)",
    source="MFH §4, Fig. 2",
    kind="paper",
    quantity="test accuracy, KD − No-KD student, paired by run",
    unit="points",
    prediction="< 0",
    sesoi=1.0,  # one accuracy point: the smallest change a KD paper reports as a gain or a loss
)
KD_HELPS = claims.Claim(
    claim="KD raises the student's accuracy when the teacher's decisive features are shared (large γ)",
    source="MFH §4, Fig. 2",
    kind="paper",
    quantity="test accuracy, KD − No-KD student, paired by run",
    unit="points",
    prediction="> 0",
    sesoi=1.0,  # as above
)


@dataclass(frozen=True)
class QuickstartParameters(NotebookParameters):
    """Two contrasting Venn settings by default: the same strong teacher, once relying on what
    the student's modality also sees (KD helps), once on what only its own modality sees (KD
    hurts). Few training samples, so what the teacher passes on is worth something."""

    n_runs: int | None = None
    epochs: int | None = None
    # each setting: (shared, a_specific, b_specific) decisive features of the modality Venn diagram
    venn_settings: tuple[tuple[int, ...], ...] = ((16, 0, 0), (2, 14, 4))
    n_train: int = 50
    n_test: int = 1000
    temperature: float = 2.0
    kd_weight: float = 1.0
    reduction: str = "batchmean"
    lr: float = 0.1

    notebook: ClassVar[str] = "00_quickstart"
    profile_defaults: ClassVar = {"quick": {"n_runs": 10, "epochs": 300}, "full": {"n_runs": 20, "epochs": 1000}}
    choices: ClassVar = {"reduction": KD_REDUCTIONS}

    def __post_init__(self):
        if not self.venn_settings:
            raise ValueError("venn_settings needs at least one (shared, a_specific, b_specific) setting")
        for setting in self.venn_settings:
            if len(setting) != 3 or min(setting) < 0:
                raise ValueError(
                    f"each of venn_settings is (shared, a_specific, b_specific), non-negative; got {setting}"
                )
            shared, a_specific, b_specific = setting
            if shared + a_specific == 0 or shared + b_specific == 0:
                raise ValueError(f"setting {setting}: each modality needs at least one decisive feature")


def setting_label(shared: int, a_specific: int, b_specific: int) -> str:
    return f"shared {shared} · a only {a_specific} · b only {b_specific}"


def make_tasks(p: QuickstartParameters) -> list[Task]:
    """Per setting, one task per seed s: train and test sets drawn from the train and test parts
    of run s (same task; no run shares a sample with another). Rows carry the setting's label and
    its Venn ratios (α, β, γ)."""
    tasks = []
    for shared, a_specific, b_specific in p.venn_settings:
        knobs = dict(shared=shared, a_specific=a_specific, b_specific=b_specific)
        settings = {"setting": setting_label(**knobs), **venn_ratios(**knobs)}
        for seed in range(p.n_runs):
            train = gaussian_venn(p.n_train, **knobs, seed=seed, task_seed=seed)
            test = gaussian_venn(p.n_test, **knobs, seed=seed, task_seed=seed, part="test")
            tasks.append(Task(Splits(train=train, val=None, test=test), seed, settings))
    return tasks


def settings_table(tasks: list[Task]) -> pd.DataFrame:
    """One row per Venn setting: its label and ratios (α, β, γ)."""
    return pd.DataFrame([task.settings for task in tasks]).drop_duplicates().round(3).reset_index(drop=True)


def run(p: QuickstartParameters, progress: bool | None = None, one_fit: bool = False) -> StudyRun:
    """Teacher, No-KD and KD students on every setting and seed. Settings whose modalities differ
    in width train as separate fits; ``one_fit=True`` zero-pads them (:func:`zero_padded`) so that
    every setting trains in one batched fit per method (faster for a sweep of many settings)."""
    config = TrainConfig(epochs=p.epochs, lr=p.lr, device=p.device)
    kd = make_loss("kd", temperature=p.temperature, reduction=p.reduction, kd_weight=p.kd_weight)
    tasks = make_tasks(p)
    return run_teacher_student(
        zero_padded(tasks) if one_fit else tasks,
        study=STUDY,
        teacher_modality="a",
        student_modality="b",
        teacher_model=ModelSpec("linear"),
        student_model=ModelSpec("linear"),
        teacher_config=config,
        losses={"kd": kd},
        progress=progress,
    )


def zero_padded(tasks: list[Task]) -> list[Task]:
    """The tasks with each modality padded by zero columns to its widest setting. A zero input
    adds nothing to a linear model's output and gets no gradient, so a padded setting learns the
    same kind of model; only the initial weights' scale (set by the input width) changes."""
    widths = {m: max(task.splits.train[m].shape[1] for task in tasks) for m in ("a", "b")}

    def pad(data: PairedDataset) -> PairedDataset:
        views = {m: torch.nn.functional.pad(x, (0, widths[m] - x.shape[1])) for m, x in data.modalities.items()}
        return PairedDataset(views, data.labels, data.groups, data.name, data.class_names)

    return [Task(task.splits.map(pad), task.seed, task.settings) for task in tasks]


def shared_sweep(
    shared_values: Sequence[int], teacher_features: int = 16, b_specific: int = 4
) -> tuple[tuple[int, ...], ...]:
    """Venn settings that move the teacher's decisive features from "a only" to "shared": per value
    s of ``shared_values``, s shared, ``teacher_features`` − s a-only, ``b_specific`` b-only."""
    return tuple((s, teacher_features - s, b_specific) for s in shared_values)


@functools.cache
def venn_gains(
    venn_settings: tuple[tuple[int, ...], ...], n_train: int = 50, n_runs: int = 10, epochs: int = 100
) -> pd.DataFrame:
    """:func:`gains` of the default parameters with these settings (on the CPU; every setting and
    run in one batched fit per method), sorted by γ. Cached: do not modify the table."""
    params = QuickstartParameters.create(
        venn_settings=venn_settings, n_train=n_train, n_runs=n_runs, epochs=epochs, device="cpu"
    )
    return gains(run(params, progress=False, one_fit=True).table).sort_values("gamma", ignore_index=True)


def sign_change(knob: Sequence[float], values: Sequence[float]) -> float:
    """Where an effect changes sign: the zero of the least-squares line through (``knob``,
    ``values``). A line through every setting is far less noisy than the first setting whose own
    mean turns positive."""
    slope, intercept = np.polyfit(np.asarray(knob, dtype=float), np.asarray(values, dtype=float), 1)
    return float(-intercept / slope)


LOSS_TERMS = {
    "ce": "cross-entropy with the labels",
    "kd": "KD term (KL to the teacher's softmax)",
    "total": "total loss",
}


def accuracy_figure(table: pd.DataFrame, title: str = "Teacher (modality a) and students (modality b)") -> go.Figure:
    """Bars per setting: the teacher on modality a, the students on modality b."""
    summary = summarize(table, by=["setting", "method"])
    return figures.grouped_bars(summary, x="setting", title=title, x_title="")


def delta_figure(table: pd.DataFrame) -> go.Figure:
    """Each run's KD − No-KD against the setting's γ, with the 95 % interval of the mean."""
    wide = table.pivot_table(index=["setting", "gamma", "seed"], columns="method", values="value").reset_index()
    return figures.paired_delta(
        wide.assign(delta=wide["kd"] - wide["no_kd"]),
        x="gamma",
        title="What KD adds to the student, per run",
        x_title="γ (modality-general share)",
    )


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: γ, teacher and students (%), and KD − No-KD (points) with its standard error."""
    wide = table.pivot_table(index=["setting", "gamma", "seed"], columns="method", values="value")
    delta = 100 * (wide["kd"] - wide["no_kd"])
    by = delta.groupby(level=["setting", "gamma"], sort=False)
    out = (100 * wide.groupby(level=["setting", "gamma"], sort=False).mean()).round(2)
    out["KD − No-KD"] = by.mean().round(2)
    out["standard error"] = (by.std() / np.sqrt(by.count())).round(2)
    return out.reset_index()


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """The notebook's claims, judged: per setting with γ below ``KD_HURTS_BELOW`` :data:`KD_HURTS`,
    above ``KD_HELPS_ABOVE`` :data:`KD_HELPS`, on each run's KD − No-KD (points). A setting whose
    students' mean test accuracy is within the engine's chance margin of 50 % is passed as at chance."""
    wide = table.pivot_table(index=["setting", "gamma", "seed"], columns="method", values="value", sort=False)
    rows = []
    for (setting, gamma), runs in wide.groupby(level=["setting", "gamma"], sort=False):
        claim = KD_HURTS if gamma < KD_HURTS_BELOW else KD_HELPS if gamma > KD_HELPS_ABOVE else None
        if claim is None:
            continue
        students = runs[["no_kd", "kd"]].mean()
        at_chance = students[students <= claims.chance_ceiling(N_CLASSES)]
        rows.append(
            claim.judge(
                100 * (runs["kd"] - runs["no_kd"]),
                setting=f"{setting} (γ = {gamma:.2f})",
                at_chance=len(at_chance) > 0,
                note="; ".join(f"{m}: test accuracy {100 * a:.1f} %" for m, a in at_chance.items()),
            )
        )
    return claims.table(rows)


def loss_curves_figure(result: StudyRun) -> go.Figure:
    """Every loss term of the KD students per epoch, mean over seeds and settings."""
    history = pd.concat([fit.history_frame() for fit in result.artifacts.fits["kd"]])
    curves = (
        history.groupby(["term", "epoch"], sort=False)["value"].agg(mean="mean", std="std", n="count").reset_index()
    )
    curves["std"] = curves["std"].fillna(0.0)
    return figures.metric_vs_knob(
        curves,
        x="epoch",
        color="term",
        scale=1.0,
        title="KD students: loss terms per epoch",
        y_title="loss (mean over runs)",
        names=LOSS_TERMS,
    )


def explore_figure(
    p: QuickstartParameters, shared: int, a_specific: int, b_specific: int, temperature: float, kd_weight: float
) -> go.Figure:
    """The Explore callback: re-run one Venn setting with new knobs and redraw the bars."""
    changed = p.replace(venn_settings=[(shared, a_specific, b_specific)], temperature=temperature, kd_weight=kd_weight)
    ratios = venn_ratios(shared, a_specific, b_specific)
    return accuracy_figure(
        run(changed, progress=False).table,
        title=f"γ = {ratios['gamma']:.2f}, α = {ratios['alpha']:.2f}, T = {temperature}, KD weight = {kd_weight}",
    )


# ----------------------------------------------------------------------------- checked exercise answers
@course.exercise(
    NOTEBOOK, "gamma_kd_stops_hurting", what="γ where KD − No-KD crosses zero (least-squares line)", other={"n_runs": 5}
)
def gamma_kd_stops_hurting(
    shared_values: tuple[int, ...] = (0, 4, 8, 12, 16), n_runs: int = 10, epochs: int = 100
) -> float:
    """Exercise 1: :func:`sign_change` of KD − No-KD over γ, for the settings of :func:`shared_sweep`."""
    sweep = venn_gains(shared_sweep(shared_values), n_runs=n_runs, epochs=epochs)
    return sign_change(sweep["gamma"], sweep["KD − No-KD"])


@course.exercise(
    NOTEBOOK, "kd_gain_plenty_of_labels", what="KD − No-KD (points) with 1000 labels, γ = 1", other={"n_train": 50}
)
def kd_gain_plenty_of_labels(n_train: int = 1000, n_runs: int = 10, epochs: int = 100) -> float:
    """Exercise 2: mean KD − No-KD (points) with every decisive feature shared, ``n_train`` labels."""
    return float(venn_gains(((16, 0, 0),), n_train=n_train, n_runs=n_runs, epochs=epochs)["KD − No-KD"].item())


@course.exercise(
    NOTEBOOK, "kd_gain_nothing_shared", what="KD − No-KD (points) with nothing shared", other={"n_runs": 10}
)
def kd_gain_nothing_shared(n_runs: int = 30, epochs: int = 100) -> float:
    """Exercise 3: mean KD − No-KD (points) when the modalities share no decisive feature."""
    return float(venn_gains(((0, 14, 4),), n_runs=n_runs, epochs=epochs)["KD − No-KD"].item())


@course.exercise(
    NOTEBOOK,
    "kd_weight_mean_equal_to_batchmean",
    what="KD weight under 'mean' equal to weight 1 under 'batchmean'",
    other={"n_classes": 3},
)
def kd_weight_mean_equal_to_batchmean(n_classes: int = 2, temperature: float = 2.0, seed: int = 0) -> float:
    """Exercise 4: the KD weight under reduction "mean" that gives the loss of weight 1 under
    "batchmean", as the ratio of the two losses on seeded random logits (64 samples)."""
    student_logits, teacher_logits = torch.randn(2, 1, 64, n_classes, generator=torch.Generator().manual_seed(seed))
    loss = {
        reduction: kd_loss(student_logits, teacher_logits, temperature=temperature, reduction=reduction).item()
        for reduction in ("batchmean", "mean")
    }
    return loss["batchmean"] / loss["mean"]
