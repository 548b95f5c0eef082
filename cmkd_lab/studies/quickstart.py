"""Quickstart: a teacher on modality a, students on modality b with and without KD.

Data: :func:`~cmkd_lab.datasets.synthetic.gaussian_venn`, whose knobs set how many decisive
features the two modalities share. Everything the notebook and its Explore section show comes
from :func:`run` and the figure builders here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ..analysis.results import summarize
from ..app.notebook import NotebookParameters
from ..datasets import PairedDataset, Splits
from ..datasets.synthetic import gaussian_venn, venn_ratios
from ..engine import TrainConfig
from ..losses import make_loss
from ..report import figures
from .runner import Architecture, StudyRun, Task, run_teacher_student

STUDY = "quickstart"


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
    choices: ClassVar = {"reduction": ("batchmean", "mean")}

    def __post_init__(self):
        if not self.venn_settings:
            raise ValueError("venn_settings needs at least one (shared, a_specific, b_specific) setting")
        for setting in self.venn_settings:
            if len(setting) != 3 or min(setting) < 0:
                raise ValueError(f"each of venn_settings is (shared, a_specific, b_specific), non-negative; got {setting}")
            shared, a_specific, b_specific = setting
            if shared + a_specific == 0 or shared + b_specific == 0:
                raise ValueError(f"setting {setting}: each modality needs at least one decisive feature")


def setting_label(shared: int, a_specific: int, b_specific: int) -> str:
    return f"shared {shared} · a only {a_specific} · b only {b_specific}"


def make_tasks(p: QuickstartParameters) -> list[Task]:
    """Per setting, one task per seed s: train set drawn with seed s, test set with seed s + 1000
    (same task). Rows carry the setting's label and its Venn ratios (α, β, γ)."""
    tasks = []
    for shared, a_specific, b_specific in p.venn_settings:
        knobs = dict(shared=shared, a_specific=a_specific, b_specific=b_specific)
        settings = {"setting": setting_label(**knobs), **venn_ratios(**knobs)}
        for seed in range(p.n_runs):
            train = gaussian_venn(p.n_train, **knobs, seed=seed, task_seed=seed)
            test = gaussian_venn(p.n_test, **knobs, seed=seed + 1000, task_seed=seed)
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
        zero_padded(tasks) if one_fit else tasks, study=STUDY, teacher_modality="a", student_modality="b",
        teacher_model=Architecture("linear"), student_model=Architecture("linear"),
        teacher_config=config, losses={"kd": kd}, progress=progress,
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


def gamma_sweep(p: QuickstartParameters, shared_values: Sequence[int], teacher_features: int = 16,
                b_specific: int = 4) -> pd.DataFrame:
    """Exercise 1: move the teacher's decisive features from "a only" to "shared", one setting per
    value s of ``shared_values`` (s shared, ``teacher_features`` − s a-only, ``b_specific`` b-only),
    every setting and seed in one batched fit per method. Returns :func:`gains`, sorted by γ."""
    settings = [(s, teacher_features - s, b_specific) for s in shared_values]
    return gains(run(p.replace(venn_settings=settings), progress=False, one_fit=True).table).sort_values("gamma", ignore_index=True)


def sign_change(knob: Sequence[float], values: Sequence[float]) -> float:
    """Where an effect changes sign: the zero of the least-squares line through (``knob``,
    ``values``). A line through every setting is far less noisy than the first setting whose own
    mean turns positive."""
    slope, intercept = np.polyfit(np.asarray(knob, dtype=float), np.asarray(values, dtype=float), 1)
    return float(-intercept / slope)


LOSS_TERMS = {"ce": "cross-entropy with the labels", "kd": "KD term (KL to the teacher's softmax)", "total": "total loss"}


def accuracy_figure(table: pd.DataFrame, title: str = "Teacher (modality a) and students (modality b)") -> go.Figure:
    """Bars per setting: the teacher on modality a, the students on modality b."""
    summary = summarize(table, by=["setting", "method"])
    return figures.grouped_bars(summary, x="setting", title=title, x_title="")


def delta_figure(table: pd.DataFrame) -> go.Figure:
    """Each run's KD − No-KD against the setting's γ, with the 95 % interval of the mean."""
    wide = table.pivot_table(index=["setting", "gamma", "seed"], columns="method", values="value").reset_index()
    return figures.paired_delta(wide.assign(delta=wide["kd"] - wide["no_kd"]), x="gamma",
                                title="What KD adds to the student, per run", x_title="γ (modality-general share)")


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: γ, teacher and students (%), and KD − No-KD (points) with its standard error."""
    wide = table.pivot_table(index=["setting", "gamma", "seed"], columns="method", values="value")
    delta = 100 * (wide["kd"] - wide["no_kd"])
    by = delta.groupby(level=["setting", "gamma"], sort=False)
    out = (100 * wide.groupby(level=["setting", "gamma"], sort=False).mean()).round(2)
    out["KD − No-KD"] = by.mean().round(2)
    out["standard error"] = (by.std() / np.sqrt(by.count())).round(2)
    return out.reset_index()


def loss_curves_figure(result: StudyRun) -> go.Figure:
    """Every loss term of the KD students per epoch, mean over seeds and settings."""
    history = pd.concat([fit.history_frame() for fit in result.artifacts.fits["kd"]])
    curves = history.groupby(["term", "epoch"], sort=False)["value"].agg(mean="mean", std="std", n="count").reset_index()
    curves["std"] = curves["std"].fillna(0.0)
    return figures.metric_vs_knob(curves, x="epoch", color="term", scale=1.0, title="KD students: loss terms per epoch",
                                  y_title="loss (mean over runs)", names=LOSS_TERMS)


def explore_figure(p: QuickstartParameters, shared: int, a_specific: int, b_specific: int, temperature: float,
                   kd_weight: float) -> go.Figure:
    """The Explore callback: re-run one Venn setting with new knobs and redraw the bars."""
    changed = p.replace(venn_settings=[(shared, a_specific, b_specific)], temperature=temperature, kd_weight=kd_weight)
    ratios = venn_ratios(shared, a_specific, b_specific)
    return accuracy_figure(run(changed, progress=False).table,
                           title=f"γ = {ratios['gamma']:.2f}, α = {ratios['alpha']:.2f}, T = {temperature}, KD weight = {kd_weight}")
