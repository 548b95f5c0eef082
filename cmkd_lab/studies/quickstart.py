"""Quickstart: a teacher on modality a, students on modality b with and without KD.

Data: :func:`~cmkd_lab.datasets.synthetic.gaussian_venn`, whose knobs set how many decisive
features the two modalities share. Everything the notebook and its Explore section show comes
from :func:`run` and the figure builders here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go

from .. import figures
from ..datasets import Splits
from ..datasets.synthetic import gaussian_venn, venn_ratios
from ..experiment import Architecture, StudyRun, Task, run_teacher_student
from ..losses import make_loss
from ..notebook import NotebookParameters
from ..results import summarize
from ..training import TrainConfig

STUDY = "quickstart"


@dataclass(frozen=True)
class QuickstartParameters(NotebookParameters):
    n_runs: int | None = None
    epochs: int | None = None
    shared: int = 8
    a_specific: int = 8
    b_specific: int = 4
    n_train: int = 200
    n_test: int = 1000
    temperature: float = 2.0
    kd_weight: float = 1.0
    reduction: str = "batchmean"
    lr: float = 0.1

    notebook: ClassVar[str] = "00_quickstart"
    profile_defaults: ClassVar = {"quick": {"n_runs": 3, "epochs": 300}, "full": {"n_runs": 10, "epochs": 1000}}
    choices: ClassVar = {"reduction": ("batchmean", "mean")}


def make_tasks(p: QuickstartParameters) -> list[Task]:
    """One task per seed s: train set drawn with seed s, test set with seed s + 1000 (same task)."""
    knobs = dict(shared=p.shared, a_specific=p.a_specific, b_specific=p.b_specific)
    tasks = []
    for seed in range(p.n_runs):
        train = gaussian_venn(p.n_train, **knobs, seed=seed, task_seed=seed)
        test = gaussian_venn(p.n_test, **knobs, seed=seed + 1000, task_seed=seed)
        tasks.append(Task(Splits(train=train, val=None, test=test), seed, venn_ratios(**knobs)))
    return tasks


def run(p: QuickstartParameters, progress: bool | None = None) -> StudyRun:
    config = TrainConfig(epochs=p.epochs, lr=p.lr)
    kd = make_loss("kd", temperature=p.temperature, reduction=p.reduction, kd_weight=p.kd_weight)
    return run_teacher_student(
        make_tasks(p), study=STUDY, teacher_modality="a", student_modality="b",
        teacher_model=Architecture("linear"), student_model=Architecture("linear"),
        teacher_config=config, losses={"kd": kd}, progress=progress,
    )


LOSS_TERMS = {"ce": "cross-entropy with the labels", "kd": "KD term (KL to the teacher's softmax)", "total": "total loss"}


def accuracy_figure(table: pd.DataFrame) -> go.Figure:
    """One bar per model: the teacher on modality a, the students on modality b."""
    summary = summarize(table, by=["method"])
    summary["model"] = [figures.display_name(m) for m in summary["method"]]
    fig = figures.grouped_bars(summary, x="model", title="Teacher (modality a) and students (modality b)", x_title="")
    return fig.update_layout(barmode="overlay", showlegend=False)  # one bar per category: no empty group slots


def loss_curves_figure(result: StudyRun) -> go.Figure:
    """Every loss term of the KD student per epoch, mean over seeds."""
    history = result.artifacts.fits["kd"][0].history_frame()
    curves = history.groupby(["term", "epoch"], sort=False)["value"].agg(mean="mean", std="std", n="count").reset_index()
    curves["std"] = curves["std"].fillna(0.0)
    return figures.metric_vs_knob(curves, x="epoch", color="term", scale=1.0, title="KD student: loss terms per epoch",
                                  y_title="loss (mean over seeds)", names=LOSS_TERMS)


def explore_figure(p: QuickstartParameters, shared: int, a_specific: int, temperature: float, kd_weight: float) -> go.Figure:
    """The Explore callback: re-run the study with new knobs and redraw the accuracy bars."""
    changed = p.replace(shared=shared, a_specific=a_specific, temperature=temperature, kd_weight=kd_weight)
    result = run(changed, progress=False)
    ratios = venn_ratios(shared, a_specific, changed.b_specific)
    fig = accuracy_figure(result.table)
    fig.update_layout(title=f"γ = {ratios['gamma']:.2f}, α = {ratios['alpha']:.2f}, T = {temperature}, KD weight = {kd_weight}")
    return fig
