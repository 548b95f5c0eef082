"""NTDH (Chen et al., arXiv 2409.02438): non-target divergence and the gain of cross-modal KD.

Four studies, one results vocabulary (papers.md §2):

- ``ntdh_gauss``: MFH's Fig. 2 generator with x_a, x_b both 25-d at the official settings;
  the binary sweep (no non-target distribution exists with 2 classes) and the kit's K-class
  extension, where NTD is measured. Settings ``gamma``, ``n_classes``.
- ``ntdh_multiclass``: the 4-class ``make_classification`` set-up, MLP 50→16→16→4, trained to
  convergence (the official optimiser under-trains; :func:`training_check` measures it).
- ``ntdh_methods``: KD, DKD, FitNet, RKD, PKT, SP and CRD, each with and without NTDH masking.
- ``ntdh_realpairs``: ordered view pairs of the real datasets (mfeat, watch, segment).

Gap metrics per task, on held-out (test) data, are recorded under the student method whose
outputs they compare with the teacher's: ``ntd`` (non-target divergence, textbook JS by
default) and ``cmd_output`` (CMD of the two softmaxes) for ``no_kd`` and every KD method;
``cmd_input`` (CMD of x_a and x_b; only when both have one shape) depends on the data alone
and is recorded under ``no_kd``. Δ = KD − No-KD per task; "NTD" in the Δ-vs-NTD analyses is
the teacher/No-KD divergence, a property of the modality pair measured before any distillation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import permutations
from typing import ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import figures
from ..datasets import PairedDataset, Splits, from_arrays, load
from ..datasets.synthetic import mfh_overlap
from ..experiment import Architecture, StudyResult, Task, run_teacher_student
from ..losses import Distiller, make_loss
from ..metrics import central_moment_discrepancy, non_target_divergence, non_target_log_probs, rank_correlation
from ..notebook import NotebookParameters
from ..results import RunLog, summarize, tidy_rows
from ..training import TrainConfig, accuracy, fit
from ..training import single_thread

STUDY_GAUSS = "ntdh_gauss"
STUDY_MULTICLASS = "ntdh_multiclass"
STUDY_METHODS = "ntdh_methods"
STUDY_REALPAIRS = "ntdh_realpairs"
OVERLAPS = (0, 2, 4, 6, 8, 10)
MULTICLASS_SHIFTS = (20, 15, 10, 5, 0)  # v: the teacher sees X[20-v : 40-v], γ = v / 20
METHOD_NAMES = ("kd", "dkd", "fitnet", "rkd", "pkt", "sp", "crd")
NTD_VARIANTS = ("js", "official")
GAP_METRICS = ("ntd", "cmd_input", "cmd_output")


def _replace(p: NotebookParameters, **changes) -> NotebookParameters:
    return type(p).create(**{**p.as_dict(), **changes})


# ============================================================================ shared machinery
def _same_tensors(first: PairedDataset, second: PairedDataset, modality: str) -> bool:
    return torch.equal(first[modality], second[modality]) and torch.equal(first.labels, second.labels)


def run_with_gaps(
    tasks: Sequence[Task],
    *,
    study: str,
    teacher_model: Architecture,
    student_model: Architecture,
    teacher_config: TrainConfig,
    losses: Mapping[str, Distiller],
    student_config: TrainConfig | None = None,
    teacher_modality: str = "a",
    student_modality: str = "b",
    ntd_variant: str = "js",
    cmd_moments: int = 5,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, StudyResult]:
    """Teacher, No-KD and one student per loss on every task, plus the gap metrics per task.

    When several tasks of one seed share the student's data exactly (the Gaussian and
    make_classification sweeps change only the teacher's modality), the No-KD student is
    trained once per seed and its results are reported for each of those tasks.
    """
    log = RunLog()
    with single_thread():
        main = run_teacher_student(
            tasks, study=study, teacher_modality=teacher_modality, student_modality=student_modality,
            teacher_model=teacher_model, student_model=student_model, teacher_config=teacher_config,
            student_config=student_config, losses=losses, include=("teacher",), log=log, progress=progress,
        )
        # one representative task per distinct student data set
        representatives: list[Task] = []
        represented_by: dict[int, Task] = {}
        for task in tasks:
            match = next((r for r in representatives if r.seed == task.seed and all(
                _same_tensors(getattr(r.splits, part), getattr(task.splits, part), student_modality)
                for part in ("train", "test"))), None)
            if match is None:
                representatives.append(task)
                match = task
            represented_by[id(task)] = match
        base = run_teacher_student(
            representatives, study=study, teacher_modality=teacher_modality, student_modality=student_modality,
            teacher_model=teacher_model, student_model=student_model, teacher_config=teacher_config,
            student_config=student_config, include=("no_kd",), log=log, progress=progress,
        )
    no_kd_logits = {id(task): logits for task, logits in base.logits("no_kd", student_modality)}
    teacher_logits = {id(task): logits for task, logits in main.logits("teacher", teacher_modality)}
    student_logits = {name: {id(t): z for t, z in main.logits(name, student_modality)} for name in losses}
    rows = [r for r in main.table.to_dict("records")]
    for task in tasks:
        test = task.splits.test
        logits = {"no_kd": no_kd_logits[id(represented_by[id(task)])],
                  **{name: student_logits[name][id(task)] for name in losses}}
        no_kd_acc = (logits["no_kd"].argmax(-1) == test.labels).double().mean().item()
        rows += tidy_rows(study, "no_kd", task.settings, [task.seed], "test_acc", [no_kd_acc])
        rows += gap_rows(study, task, teacher_logits[id(task)], logits, teacher_modality, student_modality,
                         ntd_variant, cmd_moments)
    return pd.DataFrame(rows), main  # main.log holds every fit (both runs wrote to it)


def gap_rows(
    study: str,
    task: Task,
    teacher_logits: torch.Tensor,
    student_logits: Mapping[str, torch.Tensor],
    teacher_modality: str,
    student_modality: str,
    ntd_variant: str = "js",
    cmd_moments: int = 5,
) -> list[dict]:
    """The gap metrics of one task on its test split (see the module docstring for the rules)."""
    test = task.splits.test
    rows = []
    x_a, x_b = test[teacher_modality].flatten(1), test[student_modality].flatten(1)
    if x_a.shape == x_b.shape:
        rows += tidy_rows(study, "no_kd", task.settings, [task.seed], "cmd_input",
                          [central_moment_discrepancy(x_a, x_b, cmd_moments).item()])
    for method, logits in student_logits.items():
        if teacher_logits.shape[-1] >= 3:
            ntd = non_target_divergence(teacher_logits, logits, test.labels, variant=ntd_variant).item()
            rows += tidy_rows(study, method, task.settings, [task.seed], "ntd", [ntd])
        cmd = central_moment_discrepancy(teacher_logits.softmax(-1), logits.softmax(-1), cmd_moments).item()
        rows += tidy_rows(study, method, task.settings, [task.seed], "cmd_output", [cmd])
    return rows


def per_task(table: pd.DataFrame, settings: Sequence[str], kd_method: str = "kd") -> pd.DataFrame:
    """One row per task: accuracies (fractions) of teacher/No-KD/KD, Δ = KD − No-KD, and the
    gap metrics of the teacher/No-KD pair (``ntd``, ``cmd_input``, ``cmd_output``)."""
    keys = list(settings) + ["seed"]
    acc = table[table["metric"] == "test_acc"].pivot_table(index=keys, columns="method", values="value")
    wide = acc[["teacher", "no_kd", kd_method]].rename(columns={kd_method: "kd"})
    wide["delta"] = wide["kd"] - wide["no_kd"]
    gaps = table[(table["metric"].isin(GAP_METRICS)) & (table["method"] == "no_kd")]
    if len(gaps):
        wide = wide.join(gaps.pivot_table(index=keys, columns="metric", values="value"))
    return wide.reset_index()


def setting_summary(table: pd.DataFrame, settings: Sequence[str], scale_accuracy: float = 100.0) -> pd.DataFrame:
    """Mean over seeds per setting: accuracies and Δ in percent, gap metrics as measured."""
    wide = per_task(table, settings)
    accuracy_columns = ["teacher", "no_kd", "kd", "delta"]
    wide[accuracy_columns] = wide[accuracy_columns] * scale_accuracy
    grouped = wide.drop(columns="seed").groupby(list(settings), sort=True)
    summary = grouped.mean()
    summary["delta_std"] = grouped["delta"].std()
    summary["n_seeds"] = grouped.size()
    return summary.round(4)


def delta_ntd_correlation(table: pd.DataFrame, settings: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """Spearman ρ between Δ and NTD over tasks, with a bootstrap interval over tasks."""
    wide = per_task(table, settings).dropna(subset=["ntd", "delta"])
    return rank_correlation(wide["ntd"], wide["delta"], n_boot=n_boot, seed=seed)


def correlation_line(result: dict, what: str = "Spearman ρ(NTD, Δ)") -> str:
    return (f"{what} = {result['rho']:+.3f}, 95% bootstrap interval [{result['low']:+.3f}, {result['high']:+.3f}], "
            f"p = {result['p_value']:.2g}, n = {result['n']}")


# ----------------------------------------------------------------------------- figures
_KNOB_TITLES = {"gamma": "γ (modality-general share)"}


def accuracy_figure(table: pd.DataFrame, knob: str = "gamma", title: str = "") -> go.Figure:
    summary = summarize(table[table["metric"] == "test_acc"], by=["method", knob])
    return figures.metric_vs_knob(summary, x=knob, title=title, x_title=_KNOB_TITLES.get(knob, knob))


def delta_figure(table: pd.DataFrame, settings: Sequence[str], knob: str = "gamma", color: str | None = None,
                 title: str = "") -> go.Figure:
    """Δ = KD − No-KD (points) against ``knob``, mean ± std over seeds, one line per ``color`` value."""
    wide = per_task(table, settings)
    by = [color, knob] if color else [knob]
    summary = wide.groupby(by)["delta"].agg(mean="mean", std="std").reset_index()
    if color is None:
        summary, color = summary.assign(method="delta"), "method"
    else:
        summary[color] = [f"{color} = {v}" for v in summary[color]]
    fig = figures.metric_vs_knob(summary, x=knob, color=color, title=title, x_title=_KNOB_TITLES.get(knob, knob),
                                 y_title="KD − No-KD (points)")
    fig.add_hline(y=0, line_dash="dot", line_color="#555")
    return fig


def gaps_figure(table: pd.DataFrame, knob: str = "gamma", title: str = "") -> go.Figure:
    """Each gap metric of the teacher/No-KD pair against ``knob`` (mean ± std over seeds)."""
    gaps = table[(table["metric"].isin(GAP_METRICS)) & (table["method"] == "no_kd")]
    summary = summarize(gaps, by=["metric", knob])
    return figures.metric_vs_knob(summary, x=knob, color="metric", scale=1.0, title=title,
                                  x_title=_KNOB_TITLES.get(knob, knob), y_title="divergence / discrepancy")


def delta_vs_ntd_figure(points: pd.DataFrame, color: str, correlation: dict, title: str = "", hover: str | None = None) -> go.Figure:
    """Δ (points) against NTD, one marker per row of ``points`` (columns ``ntd``, ``delta``,
    ``color``), with the rank correlation and its interval in the title."""
    fig = go.Figure()
    for i, (name, part) in enumerate(points.groupby(color, sort=True)):
        fig.add_trace(go.Scatter(
            x=part["ntd"], y=100 * part["delta"], mode="markers",
            name=f"{color} = {name:.2f}" if isinstance(name, float) else f"{color} = {name}",
            marker=dict(color=figures.PALETTE[i % len(figures.PALETTE)], size=8, opacity=0.75),
            text=part[hover] if hover else None,
        ))
    fig.add_hline(y=0, line_dash="dot", line_color="#555")
    fig.update_layout(template=figures.TEMPLATE, font=dict(size=13), margin=dict(l=60, r=20, t=80, b=50),
                      title=f"{title}<br><sup>{correlation_line(correlation)}</sup>",
                      xaxis_title="non-target divergence, teacher vs No-KD student (nats)",
                      yaxis_title="KD − No-KD (points)")
    return fig


# ============================================================================ Gaussian γ sweep
@dataclass(frozen=True)
class GaussianParameters(NotebookParameters):
    """NTDH's Gaussian sweep: official settings in the full profile (100 runs, 1000 epochs)."""

    n_runs: int | None = None
    epochs: int | None = None
    overlaps: tuple[int, ...] = OVERLAPS
    n_classes: int = 4  # the K-class extension (K >= 3) where NTD exists
    n_train: int = 200
    n_test: int = 1000
    lr: float = 0.1
    temperature: float = 0.7
    reduction: str = "batchmean"
    t2_scale: bool = False
    ntd_variant: str = "js"
    cmd_moments: int = 5

    notebook: ClassVar[str] = "03_ntdh_gaussian"
    profile_defaults: ClassVar = {"quick": {"n_runs": 20, "epochs": 300}, "full": {"n_runs": 100, "epochs": 1000}}
    choices: ClassVar = {"reduction": ("batchmean", "mean"), "ntd_variant": NTD_VARIANTS, "overlaps": tuple(range(11))}

    def __post_init__(self):
        if self.n_classes < 3:
            raise ValueError(f"n_classes is the K-class extension and must be >= 3 (NTD needs 3 classes), got {self.n_classes}")


def gaussian_tasks(p: GaussianParameters, n_classes: int) -> list[Task]:
    """One task per (overlap, seed): MFH Fig. 2's generator with x_a and x_b both 25-d."""
    tasks = []
    for overlap in p.overlaps:
        for seed in range(p.n_runs):
            splits, ratios = mfh_overlap(overlap, seed, p.n_train, p.n_test, a_dims=25, b_dims=25, n_classes=n_classes)
            tasks.append(Task(splits, seed, {"gamma": round(ratios["gamma"], 4), "n_classes": n_classes}))
    return tasks


def gaussian_kd(p) -> Distiller:
    return make_loss("kd", temperature=p.temperature, reduction=p.reduction, t2_scale=p.t2_scale)


def run_gaussian(p: GaussianParameters, class_counts: Sequence[int] | None = None, progress: bool | None = None
                 ) -> tuple[pd.DataFrame, RunLog]:
    """The binary sweep (official) and the K-class extension; one table, ``n_classes`` tells them apart."""
    config = TrainConfig(epochs=p.epochs, lr=p.lr)
    frames, log = [], RunLog()
    for n_classes in class_counts or (2, p.n_classes):
        table, result = run_with_gaps(
            gaussian_tasks(p, n_classes), study=STUDY_GAUSS, teacher_model=Architecture("linear"),
            student_model=Architecture("linear"), teacher_config=config, losses={"kd": gaussian_kd(p)},
            ntd_variant=p.ntd_variant, cmd_moments=p.cmd_moments, progress=progress,
        )
        frames.append(table)
        log.fits.extend(result.log.fits)
    return pd.concat(frames, ignore_index=True), log


def gaussian_claims(table: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """What the official code's runs show (papers.md §2) beside the kit's numbers.

    No published numbers are known for this sweep: each row is a qualitative claim with the
    criterion the kit holds it to.
    """
    rows = []
    binary = table[table["n_classes"] == 2]
    multi = table[table["n_classes"] > 2]
    for label, part in (("binary", binary), (f"{int(multi['n_classes'].max())}-class" if len(multi) else "", multi)):
        if not len(part):
            continue
        wide = per_task(part, ["gamma"])
        by_gamma = wide.groupby("gamma")
        low, high = wide["gamma"].min(), wide["gamma"].max()
        for gamma, sign, said in ((low, -1, "clearly negative at γ = 0"), (high, +1, "clearly positive at γ = 1")):
            delta = by_gamma.get_group(gamma)["delta"]
            sem = delta.std(ddof=1) / np.sqrt(len(delta))
            rows.append({"sweep": label, "claim": f"Δ at γ = {gamma:g}", "official code": said,
                         "kit": f"{100 * delta.mean():+.2f} ± {100 * sem:.2f} (s.e.) points",
                         "criterion": "mean beyond 2 standard errors of zero, with the stated sign",
                         "holds": bool(sign * delta.mean() > 2 * sem)})
        rising = rank_correlation(wide["gamma"], wide["delta"], n_boot=n_boot)
        rows.append({"sweep": label, "claim": "Δ rises with γ", "official code": "negative → positive",
                     "kit": correlation_line(rising, "Spearman ρ(γ, Δ)"),
                     "criterion": "bootstrap interval above 0", "holds": bool(rising["low"] > 0)})
        for metric, said in (("cmd_input", "CMD(x_a, x_b) shrinks as γ grows"),
                             ("cmd_output", "CMD of the output softmaxes shrinks as γ grows"),
                             ("ntd", "(kit's K-class extension) NTD falls as γ grows")):
            if metric not in wide or wide[metric].isna().all():
                continue
            means = by_gamma[metric].mean()
            falling = rank_correlation(wide["gamma"], wide[metric], n_boot=n_boot)
            rows.append({"sweep": label, "claim": f"{metric} falls with γ", "official code": said,
                         "kit": f"{means.iloc[0]:.4f} → {means.iloc[-1]:.4f}; ρ(γ, ·) = {falling['rho']:+.2f} "
                                f"[{falling['low']:+.2f}, {falling['high']:+.2f}]",
                         "criterion": "bootstrap interval of ρ below 0", "holds": bool(falling["high"] < 0)})
        if "ntd" in wide and not wide["ntd"].isna().all():
            corr = delta_ntd_correlation(part, ["gamma"], n_boot=n_boot)
            rows.append({"sweep": label, "claim": "smaller NTD, larger Δ", "official code": "the hypothesis (paper)",
                         "kit": correlation_line(corr), "criterion": "bootstrap interval of ρ below 0",
                         "holds": bool(corr["high"] < 0)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- Explore
@functools.lru_cache(maxsize=16)
def _explore_models(p: GaussianParameters, overlap: int, seed: int):
    """Teacher and No-KD student of one K-class task (cached, so moving the sample slider is instant)."""
    splits, ratios = mfh_overlap(overlap, seed, p.n_train, p.n_test, a_dims=25, b_dims=25, n_classes=p.n_classes)
    config = TrainConfig(epochs=p.epochs, lr=p.lr)
    with single_thread():
        teacher = fit(Architecture("linear").spec((25,), p.n_classes), splits.train["a"], splits.train.labels,
                      seeds=[seed], config=config, progress=False)
        student = fit(Architecture("linear").spec((25,), p.n_classes), splits.train["b"], splits.train.labels,
                      seeds=[seed], config=config, progress=False)
    return splits, ratios, teacher.models.predict(splits.test["a"])[0], student.models.predict(splits.test["b"])[0]


def non_target_figure(p: GaussianParameters, overlap: int, sample: int, seed: int = 0) -> go.Figure:
    """The Explore view: for one test sample at one γ, the teacher's and the No-KD student's
    non-target distributions side by side, their JS divergence, and the task's mean NTD."""
    splits, ratios, teacher, student = _explore_models(p, int(overlap), int(seed))
    return non_target_bars(teacher, student, splits.test.labels, sample, f"γ = {ratios['gamma']:.2f}", "No-KD student (x_b)")


def non_target_bars(teacher: torch.Tensor, student: torch.Tensor, labels: torch.Tensor, sample: int, heading: str,
                    student_name: str = "student") -> go.Figure:
    """Teacher's and student's non-target distributions of test sample ``sample`` side by side,
    with their JS divergence and the mean NTD over all samples."""
    sample = int(sample) % len(labels)
    label = int(labels[sample])
    classes = [c for c in range(teacher.shape[-1]) if c != label]
    one = slice(sample, sample + 1)
    p_t = non_target_log_probs(teacher[one], labels[one]).exp()[0, classes]
    p_s = non_target_log_probs(student[one], labels[one]).exp()[0, classes]
    js = non_target_divergence(teacher[one], student[one], labels[one]).item()
    mean_ntd = non_target_divergence(teacher, student, labels).item()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("teacher", student_name), shared_yaxes=True)
    names = [f"class {c}" for c in classes]
    fig.add_trace(go.Bar(x=names, y=p_t.tolist(), marker_color=figures.METHOD_COLORS["teacher"], name="teacher"), 1, 1)
    fig.add_trace(go.Bar(x=names, y=p_s.tolist(), marker_color=figures.METHOD_COLORS["no_kd"], name=student_name), 1, 2)
    predicted = (int(teacher[sample].argmax()), int(student[sample].argmax()))
    fig.update_layout(
        template=figures.TEMPLATE, font=dict(size=13), showlegend=False, margin=dict(l=60, r=20, t=90, b=50),
        title=(f"{heading}, test sample {sample} (label {label}; teacher predicts {predicted[0]}, "
               f"student {predicted[1]})<br><sup>JS of the non-target distributions = {js:.4f} nats "
               f"(≤ ln 2 = 0.693); mean NTD over the test set = {mean_ntd:.4f}</sup>"),
        yaxis_title="probability among non-target classes",
    )
    return fig


# ============================================================================ 4-class synthetic
@dataclass(frozen=True)
class MulticlassParameters(NotebookParameters):
    """The 4-class make_classification study and the method table (masking on and off)."""

    n_runs: int | None = None
    epochs: int | None = None
    shifts: tuple[int, ...] = MULTICLASS_SHIFTS
    lr: float = 0.01
    optimizer: str = "adam"
    temperature: float = 0.7
    reduction: str = "batchmean"
    t2_scale: bool = False
    ntd_variant: str = "js"
    cmd_moments: int = 5
    check_official: bool = True  # measure the official optimiser (SGD lr 0.01, 1000 epochs, full batch)
    methods: tuple[str, ...] = METHOD_NAMES
    method_shifts: tuple[int, ...] | None = None
    method_runs: int | None = None
    method_epochs: int | None = None
    method_batch_size: int = 64  # RKD's angle term is O(batch³) per model
    method_lr: float | None = None

    notebook: ClassVar[str] = "03_ntdh_multiclass_methods"
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 3, "epochs": 150, "method_shifts": (10,), "method_runs": 2, "method_epochs": 2, "method_lr": 0.01},
        "full": {"n_runs": 10, "epochs": 300, "method_shifts": (20, 10, 0), "method_runs": 5, "method_epochs": 20,
                 "method_lr": 0.003},
    }
    choices: ClassVar = {"reduction": ("batchmean", "mean"), "ntd_variant": NTD_VARIANTS, "optimizer": ("sgd", "adam"),
                         "methods": METHOD_NAMES, "shifts": tuple(range(21)), "method_shifts": tuple(range(21))}


MULTICLASS_SAMPLES, MULTICLASS_TRAIN = 10_000, 6_000


@functools.lru_cache(maxsize=1)
def _make_classification() -> tuple[np.ndarray, np.ndarray]:
    """papers.md §2's set-up: 10000 samples, 4 classes, 50 informative features, random_state 42;
    standardised with the first 6000 (training) samples' statistics."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=MULTICLASS_SAMPLES, n_classes=4, n_features=50, n_informative=50,
                               n_redundant=0, n_clusters_per_class=1, random_state=42)
    train = x[:MULTICLASS_TRAIN]
    return ((x - train.mean(0)) / train.std(0)).astype(np.float32), y


def multiclass_task(shift: int, seed: int) -> Task:
    """Student x_b = noise(50) with X[:, 0:20]; teacher x_a = noise(50) with X[:, 20-v:40-v].

    The noise comes from ``seed`` (student's first, so it does not depend on v); samples
    0..5999 train, 6000..9999 test. γ = v/20.
    """
    if not 0 <= shift <= 20:
        raise ValueError(f"shift v must lie in 0..20, got {shift}")
    x, y = _make_classification()
    rng = np.random.default_rng(seed)
    x_b = rng.standard_normal(x.shape).astype(np.float32)
    x_a = rng.standard_normal(x.shape).astype(np.float32)
    x_b[:, 0:20] = x[:, 0:20]
    x_a[:, 20 - shift:40 - shift] = x[:, 20 - shift:40 - shift]
    data = from_arrays({"a": x_a, "b": x_b}, y, name="ntdh_make_classification")
    index = np.arange(len(y))
    splits = Splits(train=data.subset(index[:MULTICLASS_TRAIN]), val=None, test=data.subset(index[MULTICLASS_TRAIN:]))
    return Task(splits, seed, {"gamma": shift / 20, "n_classes": 4})


MULTICLASS_MODEL = Architecture("mlp", (16, 16))


def multiclass_config(p: MulticlassParameters) -> TrainConfig:
    return TrainConfig(epochs=p.epochs, lr=p.lr, optimizer=p.optimizer)


OFFICIAL_MULTICLASS_CONFIG = TrainConfig(epochs=1000, lr=0.01, optimizer="sgd")


def run_multiclass(p: MulticlassParameters, progress: bool | None = None) -> tuple[pd.DataFrame, StudyResult]:
    tasks = [multiclass_task(v, seed) for v in p.shifts for seed in range(p.n_runs)]
    kd = make_loss("kd", temperature=p.temperature, reduction=p.reduction, t2_scale=p.t2_scale)
    return run_with_gaps(tasks, study=STUDY_MULTICLASS, teacher_model=MULTICLASS_MODEL, student_model=MULTICLASS_MODEL,
                         teacher_config=multiclass_config(p), losses={"kd": kd}, ntd_variant=p.ntd_variant,
                         cmd_moments=p.cmd_moments, progress=progress)


def training_check(p: MulticlassParameters, seeds: Sequence[int] = (0, 1), students: bool = True,
                   progress: bool | None = None) -> pd.DataFrame:
    """Train and test accuracy of the teacher (γ = 1) and (if ``students``) the No-KD student under
    the official optimiser (full-batch SGD lr 0.01, 1000 epochs) and under the kit's."""
    task = multiclass_task(20, 0)
    rows = []
    for name, config in (("official: SGD lr 0.01, full batch", OFFICIAL_MULTICLASS_CONFIG),
                         (f"kit: {p.optimizer} lr {p.lr}, full batch", multiclass_config(p))):
        for modality, role in (("a", "teacher"), ("b", "student (No-KD)"))[: 2 if students else 1]:
            train, test = task.splits.train, task.splits.test
            spec = MULTICLASS_MODEL.spec((50,), 4)
            with single_thread():
                result = fit(spec, train[modality], train.labels, seeds=list(seeds), config=config, progress=progress)
            rows.append({"training": name, "epochs": config.epochs, "model": role,
                         "train_acc": 100 * accuracy(result.models, train[modality], train.labels).mean(),
                         "test_acc": 100 * accuracy(result.models, test[modality], test.labels).mean(),
                         "final_ce": float(result.history["ce"][-1].mean()),
                         "wall_s": result.record["wall_time_s"]})
    return pd.DataFrame(rows).round(3)


def multiclass_claims(table: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    wide = per_task(table, ["gamma"])
    ntd_gamma = rank_correlation(wide["gamma"], wide["ntd"], n_boot=n_boot)
    delta_gamma = rank_correlation(wide["gamma"], wide["delta"], n_boot=n_boot)
    corr = delta_ntd_correlation(table, ["gamma"], n_boot=n_boot)
    return pd.DataFrame([
        {"claim": "NTD falls as γ grows", "paper": "domain gap ↑ ⇒ non-target divergence ↑",
         "kit": correlation_line(ntd_gamma, "ρ(γ, NTD)"), "criterion": "interval below 0", "holds": ntd_gamma["high"] < 0},
        {"claim": "Δ rises with γ", "paper": "(MFH's message, also in NTDH's sweeps)",
         "kit": correlation_line(delta_gamma, "ρ(γ, Δ)"), "criterion": "interval above 0", "holds": delta_gamma["low"] > 0},
        {"claim": "smaller NTD, larger Δ", "paper": "the hypothesis",
         "kit": correlation_line(corr), "criterion": "interval below 0", "holds": corr["high"] < 0},
    ])


# ----------------------------------------------------------------------------- method table
def method_losses(p: MulticlassParameters) -> dict[str, Distiller]:
    """Every method with and without masking; keys ``name`` and ``name|masked``.

    KD as in the Gaussian study; DKD α = β = 1, T = 0.7 (NTDH's code); the feature methods on
    the last hidden layer with their RepDistiller weights.
    """
    options = {"kd": dict(temperature=p.temperature, reduction=p.reduction, t2_scale=p.t2_scale),
               "dkd": dict(alpha=1.0, beta=1.0, temperature=p.temperature)}
    built = {}
    for name in p.methods:
        built[name] = make_loss(name, **options.get(name, {}))
        built[f"{name}|masked"] = make_loss(name, masking=True, **options.get(name, {}))
    return built


def run_methods(p: MulticlassParameters, progress: bool | None = None) -> tuple[pd.DataFrame, StudyResult]:
    """The method table on the 4-class set: columns ``loss`` and ``masking`` split the method key."""
    tasks = [multiclass_task(v, seed) for v in p.method_shifts for seed in range(p.method_runs)]
    student_config = TrainConfig(epochs=p.method_epochs, lr=p.method_lr, optimizer="adam", batch_size=p.method_batch_size)
    table, result = run_with_gaps(tasks, study=STUDY_METHODS, teacher_model=MULTICLASS_MODEL, student_model=MULTICLASS_MODEL,
                                  teacher_config=multiclass_config(p), student_config=student_config,
                                  losses=method_losses(p), ntd_variant=p.ntd_variant, cmd_moments=p.cmd_moments,
                                  progress=progress)
    key = table["method"].str.split("|")
    table["masking"] = key.str.len() > 1
    table["method"] = key.str[0]
    table["loss"] = np.where(table["method"].isin(["teacher", "no_kd"]), "none", table["method"])
    return table, result


def method_table(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (%) mean ± std over seeds per γ and method, without and with masking, the
    change in points, and each student's NTD to the teacher without → with masking."""
    return pd.concat({gamma: _method_table_one(part) for gamma, part in table.groupby("gamma", sort=True)},
                     names=["gamma", "method"])


def _method_table_one(table: pd.DataFrame) -> pd.DataFrame:
    acc = table[(table["metric"] == "test_acc") & ~table["method"].isin(["teacher", "no_kd"])]
    summary = summarize(acc, by=["method", "masking"])
    cell = lambda r: f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"
    out = summary.assign(cell=summary.apply(cell, axis=1)).pivot(index="method", columns="masking", values="cell")
    means = summary.pivot(index="method", columns="masking", values="mean")
    out.columns = ["without masking" if not c else "with masking" for c in out.columns]
    out["masking − plain (points)"] = (100 * (means[True] - means[False])).round(2)
    ntd = summarize(table[table["metric"] == "ntd"], by=["method", "masking"]).pivot(index="method", columns="masking", values="mean")
    out["NTD plain → masked"] = [f"{ntd.loc[m, False]:.4f} → {ntd.loc[m, True]:.4f}" for m in out.index]
    baselines = summarize(table[(table["metric"] == "test_acc") & table["method"].isin(["teacher", "no_kd"])], by=["method"])
    for _, row in baselines.iterrows():
        out.loc[row["method"], "without masking"] = cell(row)
    order = [m for m in ("teacher", "no_kd", *METHOD_NAMES) if m in out.index]
    return out.loc[order].astype(object).fillna("")


def masking_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's two masking claims against the method table: per (γ, method), does masking
    lower the student's NTD to the teacher, and does it raise test accuracy?"""
    students = table[~table["method"].isin(["teacher", "no_kd"])]
    means = students.groupby(["metric", "gamma", "method", "masking"])["value"].mean().unstack("masking")
    change = (means[True] - means[False]).rename("change")
    rows = []
    for metric, claim, sign, unit in (("ntd", "masking reduces non-target divergence", -1, 1.0),
                                      ("test_acc", "masking improves the KD methods", +1, 100.0)):
        values = change.loc[metric]
        agree = int((sign * values > 0).sum())
        rows.append({"claim": claim, "paper": "yes (abstract: the masking framework reduces NTD and plugs into KD methods)",
                     "kit": f"{agree} of {len(values)} (γ, method) settings agree; mean change {unit * values.mean():+.4f}"
                            f"{' points' if unit == 100.0 else ' nats'}",
                     "criterion": "more than half of the settings agree", "holds": agree > len(values) / 2})
    return pd.DataFrame(rows)


# ============================================================================ real modality pairs
REAL_DATASETS = ("mfeat", "watch", "segment")


@dataclass(frozen=True)
class RealPairsParameters(NotebookParameters):
    """Every ordered view pair of the real datasets; the quick profile takes a few pairs."""

    n_runs: int | None = None
    epochs: int | None = None
    max_pairs_per_dataset: int | None = None  # None: all ordered pairs
    datasets: tuple[str, ...] = REAL_DATASETS
    hidden: int = 64
    lr: float = 0.003
    temperature: float = 0.7
    reduction: str = "batchmean"
    t2_scale: bool = False
    ntd_variant: str = "js"
    cmd_moments: int = 5

    notebook: ClassVar[str] = "03_ntdh_realpairs"
    profile_defaults: ClassVar = {"quick": {"n_runs": 2, "epochs": 60, "max_pairs_per_dataset": 2},
                                  "full": {"n_runs": 5, "epochs": 300, "max_pairs_per_dataset": None}}
    choices: ClassVar = {"datasets": REAL_DATASETS, "reduction": ("batchmean", "mean"), "ntd_variant": NTD_VARIANTS}


def _standardised_pair(splits: Splits, teacher_view: str, student_view: str) -> Splits:
    """The two views renamed a (teacher) and b (student), z-scored per feature with training statistics."""
    train = splits.train
    stats = {}
    for view in (teacher_view, student_view):
        values = train[view].flatten(1)
        stats[view] = (values.mean(0), values.std(0).clamp_min(1e-6))

    def part(data):
        if data is None:
            return None
        views = {role: (data[view].flatten(1) - stats[view][0]) / stats[view][1]
                 for role, view in (("a", teacher_view), ("b", student_view))}
        return PairedDataset(views, data.labels, data.groups, data.name)

    return Splits(part(splits.train), part(splits.val), part(splits.test))


def real_pairs(p: RealPairsParameters) -> list[tuple[str, str, str]]:
    """(dataset, teacher view, student view) for every ordered pair, the first few per dataset if limited."""
    pairs = []
    for name in p.datasets:
        views = load(name).modality_names
        ordered = list(permutations(views, 2))
        pairs += [(name, a, b) for a, b in ordered[: p.max_pairs_per_dataset or len(ordered)]]
    return pairs


def real_pair_tasks(p: RealPairsParameters) -> list[Task]:
    tasks = []
    for name in p.datasets:
        data = load(name)
        splits = {seed: data.split(seed) for seed in range(p.n_runs)}
        for dataset, teacher_view, student_view in real_pairs(_replace(p, datasets=(name,))):
            for seed, split in splits.items():
                settings = {"dataset": dataset, "teacher_view": teacher_view, "student_view": student_view}
                tasks.append(Task(_standardised_pair(split, teacher_view, student_view), seed, settings))
    return tasks


def run_realpairs(p: RealPairsParameters, progress: bool | None = None) -> tuple[pd.DataFrame, StudyResult]:
    model = Architecture("mlp", (p.hidden,))
    kd = make_loss("kd", temperature=p.temperature, reduction=p.reduction, t2_scale=p.t2_scale)
    return run_with_gaps(real_pair_tasks(p), study=STUDY_REALPAIRS, teacher_model=model, student_model=model,
                         teacher_config=TrainConfig(epochs=p.epochs, lr=p.lr, optimizer="adam"), losses={"kd": kd},
                         ntd_variant=p.ntd_variant, cmd_moments=p.cmd_moments, progress=progress)


REAL_SETTINGS = ("dataset", "teacher_view", "student_view")


def pair_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: mean accuracies (%), Δ and its std over seeds, NTD and CMDs."""
    return setting_summary(table, REAL_SETTINGS).reset_index()


def pair_correlation(table: pd.DataFrame, n_boot: int = 2000) -> dict:
    """Spearman ρ between the pairs' mean NTD and mean Δ, bootstrap over pairs."""
    pairs = pair_summary(table)
    return rank_correlation(pairs["ntd"], pairs["delta"], n_boot=n_boot)


def pair_figure(table: pd.DataFrame, correlation: dict) -> go.Figure:
    pairs = pair_summary(table).assign(delta=lambda f: f["delta"] / 100)
    pairs["pair"] = pairs["teacher_view"] + " → " + pairs["student_view"]
    return delta_vs_ntd_figure(pairs, "dataset", correlation, title="Real modality pairs: KD gain against NTD",
                               hover="pair")


def pair_sample_figure(result: StudyResult, pair: str, sample: int) -> go.Figure:
    """Explore for real pairs: ``pair`` is "dataset: teacher → student"; the first seed's teacher
    and KD student (the No-KD students are trained once per student view and not kept here)."""
    dataset, views = pair.split(": ")
    teacher_view, student_view = views.split(" → ")
    wanted = {"dataset": dataset, "teacher_view": teacher_view, "student_view": student_view}
    teachers = result.logits("teacher", "a")
    students = result.logits("kd", "b")
    for (task, teacher), (_, student) in zip(teachers, students):
        if task.settings == wanted:
            return non_target_bars(teacher, student, task.splits.test.labels, sample,
                                   f"{dataset}: {teacher_view} → {student_view} (seed {task.seed})", "KD student")
    raise ValueError(f"no task for pair {pair!r}")
