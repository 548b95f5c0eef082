"""MFH Fig. 2 (vary γ) and Fig. 3 (vary α) on Gaussian data (papers.md §1, case study A).

:func:`run_fig2` and :func:`run_fig3` train every (setting × seed) model of a method as one
batched fit through :func:`~cmkd_lab.studies.runner.run_teacher_student`.

Rows: ``study`` ∈ mfh_fig2 (setting ``gamma``), mfh_fig3 (``alpha``); ``method`` ∈ teacher,
no_kd, kd; ``metric`` = test_acc (a fraction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import pandas as pd
import plotly.graph_objects as go

from ...analysis.results import summarize
from ...datasets.synthetic import RNG_MODES, mfh_overlap, mfh_teacher_specific
from ...engine import TrainConfig
from ...losses import Distiller
from ...report import figures
from ..official import with_official_inits
from ..quickstart import sign_change
from ..runner import StudyRun, Task, run_teacher_student
from .common import OFFICIAL_EPOCHS, SyntheticKDParameters, kd_loss, paired_difference, paper_comparison, ratios_table

PAPER_TOLERANCE = 2.0  # points: values read off published figures; the official script lands within 1-2 points
KNOB_TITLES = {"gamma": "γ (modality-general share)", "alpha": "α (teacher-specific share)"}


@dataclass(frozen=True)
class GaussianParameters(SyntheticKDParameters):
    """Fig. 2 (overlap o → γ) and Fig. 3 (xs1 → α); official settings in the full profile."""

    overlaps: tuple[int, ...] = (0, 2, 4, 6, 8, 10)
    xs1_values: tuple[int, ...] = (0, 10, 20, 30, 40)
    rng: str = "kit"  # "official": data and initial weights drawn as gauss/main.py draws them, run for run

    notebook: ClassVar[str] = "02_mfh_gaussian"
    profile_defaults: ClassVar = {"quick": {"n_runs": 10, "epochs": 300}, "full": {"n_runs": 10, "epochs": OFFICIAL_EPOCHS}}
    choices: ClassVar = {**SyntheticKDParameters.choices, "rng": RNG_MODES}


def _sweep_tasks(p: GaussianParameters, generator, knob_values, setting: str) -> list[Task]:
    """One task per (knob value, seed): train set from seed s, test set from seed s + 1; with
    ``rng="official"`` the official script's data and initial weights of run s."""
    tasks = []
    for value in knob_values:
        for seed in range(p.n_runs):
            splits, ratios = generator(value, seed, n_train=p.n_train, n_test=p.n_test, rng=p.rng)
            task = Task(splits, seed, {setting: ratios[setting]})
            tasks.append(with_official_inits(task) if p.rng == "official" else task)
    return tasks


def fig2_tasks(p: GaussianParameters) -> list[Task]:
    """Fig. 2: one task per (overlap, seed), labelled by γ."""
    return _sweep_tasks(p, mfh_overlap, p.overlaps, "gamma")


def fig3_tasks(p: GaussianParameters) -> list[Task]:
    """Fig. 3: one task per (xs1, seed), labelled by α."""
    return _sweep_tasks(p, mfh_teacher_specific, p.xs1_values, "alpha")


def _run(p: GaussianParameters, tasks: list[Task], study: str, progress: bool | None,
         losses: Mapping[str, Distiller] | None) -> StudyRun:
    return run_teacher_student(
        tasks, study=study, teacher_modality="a", student_modality="b",
        teacher_config=TrainConfig(epochs=p.epochs, lr=p.lr, device=p.device),  # linear models, full-batch SGD, last epoch
        losses={"kd": kd_loss(p)} if losses is None else losses, progress=progress,
    )


def run_fig2(p: GaussianParameters, progress: bool | None = None, losses: Mapping[str, Distiller] | None = None) -> StudyRun:
    """MFH Fig. 2: teacher, No-KD and KD students at every γ; one batched fit per method.
    ``losses`` (method name → KD loss; default ``{"kd": kd_loss(p)}``) trains one student per
    loss on the same data beside the same teachers, e.g. to compare reductions or temperatures."""
    return _run(p, fig2_tasks(p), "mfh_fig2", progress, losses)


def run_fig3(p: GaussianParameters, progress: bool | None = None, losses: Mapping[str, Distiller] | None = None) -> StudyRun:
    """MFH Fig. 3: teacher, No-KD and KD students at every α; one batched fit per method
    (``losses`` as in :func:`run_fig2`)."""
    return _run(p, fig3_tasks(p), "mfh_fig3", progress, losses)


def fig2_ratios(p: GaussianParameters) -> pd.DataFrame:
    return ratios_table("o", p.overlaps, mfh_overlap)


def fig3_ratios(p: GaussianParameters) -> pd.DataFrame:
    return ratios_table("xs1", p.xs1_values, mfh_teacher_specific)


# Published values (percent) read off the figures; see papers.md §1.
_GAMMAS = (0, 1 / 9, 1 / 4, 3 / 7, 2 / 3, 1)
_ALPHAS = (0, 1 / 2, 2 / 3, 3 / 4, 4 / 5)
FIG2_PAPER = pd.DataFrame(
    [{"gamma": g, "method": "kd", "paper": v} for g, v in zip(_GAMMAS, (66.3, 67.1, 67.9, 68.7, 69.4, 70.1))]
    + [{"gamma": g, "method": "no_kd", "paper": 67.9} for g in _GAMMAS]
    + [{"gamma": g, "method": "teacher", "paper": 71.0} for g in _GAMMAS]
)
FIG3_PAPER = pd.DataFrame(
    [{"alpha": a, "method": "teacher", "paper": v} for a, v in zip(_ALPHAS, (58.5, 64.0, 71.5, 78.0, 88.6))]
    + [{"alpha": 0.0, "method": "kd", "paper": 58.5}, {"alpha": 4 / 5, "method": "kd", "paper": 57.5}]
    + [{"alpha": a, "method": "no_kd", "paper": 57.4} for a in _ALPHAS]
)


# The official script (zihuixue/MFH gauss/main.py at dd90435, unchanged but for its unused
# plotting) run once on this kit's machine (2 CPU cores, torch 2.13.0 CPU build): its printed
# means in percent, per setting: (teacher, No-KD, KD student). With rng="official" the kit's
# full profile lands on them run for run (OFFICIAL_TOLERANCE); with its own generators, within
# the ±2.5 points of noise that 10 runs of new hyperplanes leave.
OFFICIAL_TOLERANCE = 0.3  # points
_FIG2_OFFICIAL = ((70.38, 69.41, 68.70), (70.17, 69.41, 68.96), (70.42, 69.41, 69.07), (72.58, 69.41, 69.65),
                  (76.37, 69.41, 70.94), (73.38, 69.41, 71.91))
_FIG3_OFFICIAL = ((58.45, 57.90, 59.49), (65.20, 57.90, 58.87), (70.78, 57.90, 58.56), (79.62, 57.90, 58.46),
                  (90.53, 57.90, 58.21))


def _official_frame(knob: str, settings, means) -> pd.DataFrame:
    return pd.DataFrame([{knob: value, "method": method, "paper": mean}
                         for value, row in zip(settings, means) for method, mean in zip(("teacher", "no_kd", "kd"), row)])


FIG2_OFFICIAL_SCRIPT = _official_frame("gamma", _GAMMAS, _FIG2_OFFICIAL)
FIG3_OFFICIAL_SCRIPT = _official_frame("alpha", _ALPHAS, _FIG3_OFFICIAL)


MODEL_NAMES = {"teacher": "teacher", "no_kd": "No-KD student", "kd": "KD student"}
FIGURES = {"gamma": ("Fig. 2", "γ"), "alpha": ("Fig. 3", "α")}


def _labelled(compared: pd.DataFrame, knob: str) -> pd.DataFrame:
    """A paper-vs-kit table whose rows start with readable labels (figure, setting such as
    "γ = 0.11", model) in place of the raw knob and method: what claims.csv calls each claim."""
    figure, symbol = FIGURES[knob]
    labels = pd.DataFrame({"figure": figure, "setting": [f"{symbol} = {v:.2f}" for v in compared[knob]],
                           "model": compared["method"].map(MODEL_NAMES)})
    return pd.concat([labels, compared.drop(columns=[knob, "method"])], axis=1)


def official_script_table(table: pd.DataFrame, knob: str) -> pd.DataFrame:
    """The official script's printed means beside the kit's (percent), within ±0.3 points:
    the check of ``rng="official"`` at the full profile (1000 epochs, 10 runs)."""
    reference = FIG2_OFFICIAL_SCRIPT if knob == "gamma" else FIG3_OFFICIAL_SCRIPT
    compared = paper_comparison(table, reference, [knob, "method"], OFFICIAL_TOLERANCE)
    return _labelled(compared, knob).rename(columns={"paper": "official script"})


def fig2_paper_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2's published values beside the kit's (percent, ±``PAPER_TOLERANCE`` points)."""
    return _labelled(paper_comparison(table, FIG2_PAPER, ["gamma", "method"], PAPER_TOLERANCE), "gamma")


def fig3_paper_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3's published values beside the kit's (percent, ±``PAPER_TOLERANCE`` points)."""
    return _labelled(paper_comparison(table, FIG3_PAPER, ["alpha", "method"], PAPER_TOLERANCE), "alpha")


def delta_by_seed(table: pd.DataFrame, knob: str, method: str = "kd") -> pd.DataFrame:
    """Δ = KD − No-KD (``method`` − No-KD) per seed and setting (fractions), as a tidy table with
    method "delta"."""
    return paired_difference(table, {"method": method}, {"method": "no_kd"}, on=[knob, "seed"]).assign(method="delta")


def kd_gains(table: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Mean Δ = student − No-KD (points) per setting (rows, ``knob`` ascending), one column per
    KD student (every method but the teacher and No-KD)."""
    students = [m for m in dict.fromkeys(table["method"]) if m not in ("teacher", "no_kd")]
    return pd.DataFrame({m: 100 * delta_by_seed(table, knob, m).groupby(knob)["value"].mean() for m in students})


def sign_flips(table: pd.DataFrame, knob: str = "gamma") -> pd.Series:
    """Per KD student, the ``knob`` value where Δ changes sign: the zero of the least-squares line
    through its mean Δ per setting (:func:`~cmkd_lab.studies.quickstart.sign_change`)."""
    gains = kd_gains(table, knob)
    return pd.Series({m: sign_change(gains.index, gains[m]) for m in gains})


def change_across(table: pd.DataFrame, knob: str) -> pd.Series:
    """Per method, mean test accuracy at the highest ``knob`` value minus at the lowest (points)."""
    acc = table[table["metric"] == "test_acc"].groupby(["method", knob])["value"].mean().unstack(knob).sort_index(axis=1)
    return 100 * (acc.iloc[:, -1] - acc.iloc[:, 0])


def accuracy_figure(table: pd.DataFrame, knob: str, paper: pd.DataFrame | None = None, title: str = "") -> go.Figure:
    """Teacher, No-KD and KD accuracy against ``knob`` with 95 % confidence bands of the mean
    (each run draws a new hyperplane, so ± std bands would span most of the axis) and the
    paper's markers."""
    summary = summarize(table[table["metric"] == "test_acc"], by=["method", knob])
    return figures.metric_vs_knob(summary, x=knob, reference=paper, title=title, x_title=KNOB_TITLES.get(knob, knob),
                                  band="ci95")


def delta_figure(table: pd.DataFrame, knob: str, title: str = "") -> go.Figure:
    """Δ = KD − No-KD (points) against ``knob``: every run's paired difference and the mean
    with its 95 % confidence interval, with the zero line."""
    points = delta_by_seed(table, knob).rename(columns={"value": "delta"})
    return figures.paired_delta(points, x=knob, title=title, x_title=KNOB_TITLES.get(knob, knob))


def headline(fig2: pd.DataFrame, fig3: pd.DataFrame) -> str:
    """The two messages in numbers: Δ per γ (Fig. 2); teacher and KD student from the lowest
    to the highest α (Fig. 3)."""
    delta = summarize(delta_by_seed(fig2, "gamma"), by=["gamma"])
    acc = summarize(fig3[fig3["metric"] == "test_acc"], by=["method", "alpha"])
    acc = acc.pivot(index="alpha", columns="method", values="mean")
    gains = ", ".join(f"γ={g:.2f}: {100 * m:+.2f}" for g, m in zip(delta["gamma"], delta["mean"]))
    return (f"Fig. 2, KD − No-KD (points): {gains}\n"
            f"Fig. 3: teacher {100 * acc['teacher'].iloc[0]:.1f} → {100 * acc['teacher'].iloc[-1]:.1f}, "
            f"KD student {100 * acc['kd'].iloc[0]:.1f} → {100 * acc['kd'].iloc[-1]:.1f}")


def explore(p: GaussianParameters, overlap: int, xs1: int, n_train: int, temperature: float, kd_weight: float) -> go.Figure:
    """The Explore callback: Fig. 2 at one overlap and Fig. 3 at one xs1, ``explore_runs`` seeds,
    ``explore_epochs`` epochs; each method of each study is one batched fit."""
    changed = p.replace(overlaps=(overlap,), xs1_values=(xs1,), n_train=n_train, temperature=temperature,
                        kd_weight=kd_weight, n_runs=p.explore_runs, epochs=p.explore_epochs)
    fig2, fig3 = run_fig2(changed, progress=False).table, run_fig3(changed, progress=False).table
    fig2["setting"] = f"Fig. 2: o = {overlap} (γ = {fig2['gamma'].iloc[0]:.2f})"
    fig3["setting"] = f"Fig. 3: xs1 = {xs1} (α = {fig3['alpha'].iloc[0]:.2f})"
    summary = summarize(pd.concat([fig2, fig3]), by=["setting", "method"])
    return figures.grouped_bars(summary, x="setting", x_title="",
                                title=f"n_train = {n_train}, T = {temperature}, KD weight = {kd_weight} "
                                      f"({p.explore_runs} seeds, {p.explore_epochs} epochs)")
