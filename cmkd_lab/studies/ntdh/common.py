"""What the NTDH studies share: their parameters, the run with gap metrics, per-task tables,
the claims of a γ sweep and figures.

Every NTDH task has the teacher's view as modality ``a`` and the student's as ``b``. Gap
metrics per task, on held-out (test) data, are recorded under the student method whose outputs
they compare with the teacher's: ``ntd`` (non-target divergence, textbook JS by default; 3+
classes only) and ``cmd_output`` (CMD of the two softmaxes) for ``no_kd`` and every KD method;
``cmd_input`` (CMD of x_a and x_b; only when both have one shape) depends on the data alone
and is recorded under ``no_kd``. Δ = KD − No-KD per task; "NTD" in the Δ-vs-NTD analyses is
the teacher/No-KD divergence, a property of the modality pair measured before any distillation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ...analysis import claims
from ...analysis.metrics import NTD_VARIANTS, central_moment_discrepancy, non_target_divergence, non_target_log_probs
from ...analysis.results import summarize, tidy_rows
from ...app.notebook import NotebookParameters
from ...engine import TrainConfig
from ...losses import KD_REDUCTIONS, Distiller, make_loss
from ...models import ModelSpec
from ...report import figures
from ..runner import StudyRun, Task, TaskOutputs, run_teacher_student

GAP_METRICS = ("ntd", "cmd_input", "cmd_output")
MODELS = ("teacher", "no_kd", "kd")  # the models of a task's Δ
KNOB_TITLES = {"gamma": "γ (modality-general share)"}


@dataclass(frozen=True)
class NTDHParameters(NotebookParameters):
    """What every NTDH notebook sets: the KD loss (NTDH's code: T = 0.7, batchmean, no T²) and
    the gap metrics."""

    temperature: float = 0.7
    reduction: str = "batchmean"
    t2_scale: bool = False
    ntd_variant: str = "js"  # "official": the released code's ½[KL(m‖p_s) + KL(m‖p_t)]
    cmd_moments: int = 5

    choices: ClassVar = {"reduction": KD_REDUCTIONS, "ntd_variant": NTD_VARIANTS}


def kd_options(p: NTDHParameters) -> dict:
    """The options of the KD loss (``make_loss("kd", **kd_options(p))``)."""
    return {"temperature": p.temperature, "reduction": p.reduction, "t2_scale": p.t2_scale}


def kd_losses(p: NTDHParameters, variants: Mapping[str, Mapping] | None = None) -> dict[str, Distiller]:
    """The KD loss of ``p`` as ``"kd"`` and, per name in ``variants``, a KD loss with those options
    changed (e.g. ``{"hinton": {"temperature": 4.0, "t2_scale": True}}``): in one run, every variant's
    student shares the teacher and the No-KD student, so their Δ differ by the loss alone."""
    return {
        "kd": make_loss("kd", **kd_options(p)),
        **{name: make_loss("kd", **{**kd_options(p), **changes}) for name, changes in (variants or {}).items()},
    }


def run_with_gaps(
    tasks: Sequence[Task],
    p: NTDHParameters,
    *,
    study: str,
    model: ModelSpec,
    teacher_config: TrainConfig,
    losses: Mapping[str, Distiller],
    student_config: TrainConfig | None = None,
    progress: bool | None = None,
) -> StudyRun:
    """Teacher on ``a``, No-KD and one student per loss on ``b``, every net of ``model``, plus the
    gap metrics per task. The No-KD student is trained once per distinct student data set (the
    synthetic sweeps move only the teacher's view) and reported for every task sharing it."""
    return run_teacher_student(
        tasks,
        study=study,
        teacher_modality="a",
        student_modality="b",
        teacher_model=model,
        student_model=model,
        teacher_config=teacher_config,
        student_config=student_config,
        losses=losses,
        metrics=(gap_rows,),
        metric_options={"ntd_variant": p.ntd_variant, "cmd_moments": p.cmd_moments},
        progress=progress,
    )


GAP_CHUNK = 32  # tasks whose gap metrics are computed together: float64 copies that stay in cache


def gap_rows(study: str, outputs: Sequence[TaskOutputs], options: Mapping) -> list[dict]:
    """The gap metrics of a group of tasks on their test splits (see the module docstring for the
    rules), computed :data:`GAP_CHUNK` tasks at a time: each metric reduces over one task's samples,
    so the values equal those of one call over all tasks, and the float64 copies stay small
    (2–3× faster on 600 tasks of 1000 × 25 than one call)."""
    moments, variant = options["cmd_moments"], options["ntd_variant"]
    settings, seeds = [o.settings for o in outputs], [o.task.seed for o in outputs]
    values: dict[tuple[str, str], list[torch.Tensor]] = {}

    def add(method: str, metric: str, value: torch.Tensor) -> None:
        values.setdefault((method, metric), []).append(value)

    for start in range(0, len(outputs), GAP_CHUNK):
        chunk = outputs[start : start + GAP_CHUNK]
        tests = [o.task.splits.test for o in chunk]
        teacher = torch.stack([o.teacher for o in chunk])
        labels = torch.stack([test.labels for test in tests])
        x_a, x_b = (torch.stack([test[m].flatten(1) for test in tests]) for m in ("a", "b"))
        if x_a.shape == x_b.shape:
            add("no_kd", "cmd_input", central_moment_discrepancy(x_a, x_b, moments))
        teacher_probs = teacher.softmax(-1)
        for method in chunk[0].students:
            logits = torch.stack([o.students[method] for o in chunk])
            if teacher.shape[-1] >= 3:
                add(method, "ntd", non_target_divergence(teacher, logits, labels, variant=variant))
            add(method, "cmd_output", central_moment_discrepancy(teacher_probs, logits.softmax(-1), moments))
    return [
        row
        for (method, metric), parts in values.items()
        for row in tidy_rows(study, method, settings, seeds, metric, torch.cat(parts).tolist())
    ]


# ----------------------------------------------------------------------------- tables
def per_task(table: pd.DataFrame, settings: Sequence[str], kd_method: str = "kd") -> pd.DataFrame:
    """One row per task: accuracies (fractions) of teacher/No-KD/KD, Δ = KD − No-KD, and the
    gap metrics of the teacher/No-KD pair (``ntd``, ``cmd_input``, ``cmd_output``; NaN where not
    measured, e.g. NTD with two classes)."""
    keys = list(settings) + ["seed"]
    acc = table[table["metric"] == "test_acc"].pivot_table(index=keys, columns="method", values="value")
    wide = acc[["teacher", "no_kd", kd_method]].rename(columns={kd_method: "kd"})
    wide["delta"] = wide["kd"] - wide["no_kd"]
    gaps = table[(table["metric"].isin(GAP_METRICS)) & (table["method"] == "no_kd")]
    if len(gaps):
        wide = wide.join(gaps.pivot_table(index=keys, columns="metric", values="value"))
    return wide.reindex(columns=[*wide.columns, *(m for m in GAP_METRICS if m not in wide)]).reset_index()


def ntd_by_variant(run: StudyRun, settings: Sequence[str], student: str = "no_kd") -> pd.DataFrame:
    """Per task (3+ classes), the teacher/``student`` NTD on the test split in every variant of
    :data:`~cmkd_lab.analysis.metrics.NTD_VARIANTS` (one column each), from the run's test logits."""
    rows = []
    for outputs in run.artifacts.outputs:
        if outputs.teacher is None or outputs.teacher.shape[-1] < 3:
            continue
        labels = outputs.task.splits.test.labels
        rows.append(
            {
                **{name: outputs.settings[name] for name in settings},
                "seed": outputs.task.seed,
                **{
                    variant: float(
                        non_target_divergence(outputs.teacher, outputs.students[student], labels, variant=variant)
                    )
                    for variant in NTD_VARIANTS
                },
            }
        )
    return pd.DataFrame(rows, columns=[*settings, "seed", *NTD_VARIANTS])


def setting_summary(
    table: pd.DataFrame, settings: Sequence[str], scale_accuracy: float = 100.0, kd_method: str = "kd"
) -> pd.DataFrame:
    """Mean over seeds per setting: accuracies and Δ (of student ``kd_method``) in percent, gap
    metrics as measured."""
    wide = per_task(table, settings, kd_method)
    accuracy_columns = ["teacher", "no_kd", "kd", "delta"]
    wide[accuracy_columns] = wide[accuracy_columns] * scale_accuracy
    grouped = wide.drop(columns="seed").groupby(list(settings), sort=True)
    summary = grouped.mean()
    summary["delta_std"] = grouped["delta"].std()
    summary["n_seeds"] = grouped.size()
    return summary.round(4)


def delta_by_method(table: pd.DataFrame, settings: Sequence[str], methods: Sequence[str]) -> pd.DataFrame:
    """Mean Δ over seeds (points) per setting, one column per KD student of ``methods`` (e.g. the
    variants of :func:`kd_losses`): how a change of the loss moves the gain."""
    return pd.DataFrame(
        {method: 100 * per_task(table, settings, method).groupby(list(settings))["delta"].mean() for method in methods}
    ).round(2)


# ----------------------------------------------------------------------------- claims of a γ sweep
# sesoi: 0.1 in ρ is Cohen's "small" correlation; a weaker monotone relation would guide no choice of teacher
RHO_SESOI = 0.1
# sesoi: one accuracy point, the smallest change of a KD method the field reports as a gain or a loss
POINTS_SESOI = 1.0

DELTA_RISES = claims.Claim(
    claim="KD's gain Δ = KD − No-KD rises with γ, the modality-general share of the decisive features",
    source="MFH Fig. 2; NTDH's synthetic sweeps (official code, papers.md §2)",
    kind="paper",
    quantity="each seed's Spearman ρ(γ, Δ) over the γ settings, mean over seeds",
    unit="Spearman ρ",
    prediction="> 0",
    sesoi=RHO_SESOI,
)
NTD_FALLS = claims.Claim(
    claim="the non-target divergence (teacher vs No-KD student) falls as the modality gap shrinks (γ grows)",
    source="NTDH abstract",
    kind="paper",
    quantity="each seed's Spearman ρ(γ, NTD) over the γ settings, mean over seeds",
    unit="Spearman ρ",
    prediction="< 0",
    sesoi=RHO_SESOI,
)
HYPOTHESIS = claims.Claim(
    claim="smaller NTD, larger KD gain: at one γ, the runs with the smaller NTD gain more from KD",
    source="NTDH abstract (the hypothesis)",
    kind="paper",
    quantity="Spearman ρ(NTD, Δ) within each γ (weighted mean over γ), seeds resampled whole",
    unit="Spearman ρ",
    prediction="< 0",
    sesoi=RHO_SESOI,
)
HYPOTHESIS_POOLED = claims.Claim(
    claim="smaller NTD, larger KD gain, pooled over γ: confounded by the knob (γ drives both NTD and Δ)",
    source="kit",
    kind="finding",
    quantity="Spearman ρ(NTD, Δ) over every (γ, seed), seeds resampled whole",
    unit="Spearman ρ",
    prediction="< 0",
    sesoi=RHO_SESOI,
)


def ended_at_chance(mean_accuracies: Iterable[float], n_classes: int) -> bool:
    """Whether any of the compared models ended at chance: its mean test accuracy (a fraction) at
    most 1/K + the engine's margin (5 points)."""
    return any(accuracy <= claims.chance_ceiling(n_classes) for accuracy in mean_accuracies)


def seed_trends(wide: pd.DataFrame, column: str, knob: str = "gamma") -> pd.Series:
    """Per seed of :func:`per_task`'s ``wide``, the Spearman ρ between ``knob`` and ``column``
    over that seed's settings: a paired trend, since a seed's data and No-KD student are shared
    by its settings. NaN where ``column`` does not vary (no ρ) or holds a NaN.

    Every seed at once, with the numbers ``scipy.stats.spearmanr(part[knob], part[column])``
    gives per seed: average ranks are exact half-integers, so their centred sums are exact, and
    the rest repeats ``np.corrcoef``'s operations (covariance times 1/(n − 1), divided by the
    standard deviation of ``column``, then of ``knob``, clipped to [−1, 1])."""
    data = wide[["seed", knob, column]]
    groups = data.groupby("seed")
    size = groups.size()
    centred = groups[[knob, column]].rank().sub((data["seed"].map(size) + 1) / 2, axis=0)  # exact
    sums = (
        pd.DataFrame(
            {
                "seed": data["seed"],
                "xy": centred[knob] * centred[column],
                "xx": centred[knob] ** 2,
                "yy": centred[column] ** 2,
            }
        )
        .groupby("seed")[["xy", "xx", "yy"]]
        .sum()
    )
    scale = 1.0 / (size - 1.0)
    rho = (sums["xy"] * scale / np.sqrt(sums["yy"] * scale) / np.sqrt(sums["xx"] * scale)).clip(-1.0, 1.0)
    has_nan = data[[knob, column]].isna().any(axis=1).groupby(data["seed"]).any()
    varies = (groups[column].nunique() > 1) & (groups[knob].nunique() > 1) & ~has_nan
    return rho.where(varies).rename(column).rename_axis(None).astype(float)


def sweep_claim_rows(wide: pd.DataFrame, setting: str, n_classes: int) -> list[dict]:
    """The claims of a γ sweep measured on :func:`per_task`'s ``wide`` (Δ in fractions): Δ rises
    with γ; where NTD was measured, NTD falls with γ and the hypothesis within γ (the paper's claim,
    γ held fixed) and pooled over γ (a finding: γ drives both). Seeds are the units throughout."""
    chance = ended_at_chance(wide[list(MODELS)].mean(), n_classes)
    rows = [DELTA_RISES.judge(seed_trends(wide, "delta"), setting=setting, at_chance=chance)]
    if "ntd" not in wide or wide["ntd"].isna().all():
        return rows
    measured = wide.dropna(subset=["ntd", "delta"])
    rows.append(NTD_FALLS.judge(seed_trends(measured, "ntd"), setting=setting, at_chance=chance))
    for spec, strata in ((HYPOTHESIS, measured["gamma"]), (HYPOTHESIS_POOLED, None)):
        rows.append(
            spec.judge_correlation(
                measured["ntd"],
                100 * measured["delta"],
                clusters=measured["seed"],
                strata=strata,
                setting=setting,
                at_chance=chance,
            )
        )
    return rows


def correlation_line(row: Mapping, what: str) -> str:
    """A correlation claim's estimate, interval and units in words (its verdict is the claims table's)."""
    interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return f"{what} = {row['estimate']:+.2f}{interval}, n = {row['n_units']}"


def hypothesis_line(rows: pd.DataFrame | Sequence[Mapping]) -> str:
    """The hypothesis within γ and pooled over γ in words, from claim rows holding both."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    within, pooled = (next(r for r in records if r["claim"] == spec.claim) for spec in (HYPOTHESIS, HYPOTHESIS_POOLED))
    return (
        f"{correlation_line(within, 'ρ(NTD, Δ) within γ')}; "
        f"{correlation_line(pooled, 'pooled over γ (confounded by γ)')} seeds; 95% intervals"
    )


# ----------------------------------------------------------------------------- figures
def accuracy_figure(table: pd.DataFrame, knob: str = "gamma", title: str = "") -> go.Figure:
    """Accuracies against ``knob`` with 95 % confidence bands of the mean over runs."""
    summary = summarize(table[table["metric"] == "test_acc"], by=["method", knob])
    return figures.metric_vs_knob(summary, x=knob, title=title, x_title=KNOB_TITLES.get(knob, knob), band="ci95")


def gaps_figure(table: pd.DataFrame, knob: str = "gamma", title: str = "") -> go.Figure:
    """Each gap metric of the teacher/No-KD pair against ``knob``, one panel (and y-axis) each:
    NTD (≤ ln 2) and the CMDs (inputs about 8) differ by orders of magnitude."""
    gaps = table[(table["metric"].isin(GAP_METRICS)) & (table["method"] == "no_kd")]
    summary = summarize(gaps, by=["metric", knob])
    return figures.metric_panels(summary, x=knob, title=title, x_title=KNOB_TITLES.get(knob, knob))


def delta_vs_ntd_figure(
    points: pd.DataFrame, color: str, subtitle: str, title: str = "", hover: str | None = None
) -> go.Figure:
    """Δ against NTD, one marker per row of ``points``, with ``subtitle`` (the claims' correlations,
    e.g. :func:`hypothesis_line`) under the title."""
    return figures.delta_vs_ntd(points, color, title, subtitle, hover)


def non_target_sample_figure(
    teacher: torch.Tensor,
    student: torch.Tensor,
    labels: torch.Tensor,
    sample: int,
    heading: str,
    student_name: str = "student",
) -> go.Figure:
    """Teacher's and student's non-target distributions of test sample ``sample`` (logits
    ``(N, C)``), with their JS divergence and the mean NTD over all samples."""
    sample = int(sample) % len(labels)
    label = int(labels[sample])
    classes = [c for c in range(teacher.shape[-1]) if c != label]
    one = slice(sample, sample + 1)
    p_t, p_s = (non_target_log_probs(logits[one], labels[one]).exp()[0, classes] for logits in (teacher, student))
    js = non_target_divergence(teacher[one], student[one], labels[one]).item()
    mean_ntd = non_target_divergence(teacher, student, labels).item()
    title = (
        f"{heading}, test sample {sample} (label {label}; teacher predicts {int(teacher[sample].argmax())}, "
        f"student {int(student[sample].argmax())})<br><sup>JS of the non-target distributions = {js:.4f} nats "
        f"(≤ ln 2 = 0.693); mean NTD over the test set = {mean_ntd:.4f}</sup>"
    )
    return figures.non_target_bars(classes, p_t.tolist(), p_s.tolist(), title, student_name)
