"""03_ntdh_realpairs: NTDH on every ordered modality pair of real datasets (the kit's mfeat, watch
and segment by default; any registered dataset by name).

Each pair's views are z-scored per feature with training statistics and renamed ``a`` (teacher)
and ``b`` (student); per pair: teacher, No-KD and KD students, the gap metrics, and across pairs
the rank correlation between NTD and Δ (three pairs or more).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go

from ...analysis import claims
from ...analysis.metrics import rank_correlation
from ...app import course
from ...datasets import load, real_dataset_names, standardise
from ...models import ModelSpec
from ...report import figures
from ..real_data import note_small_test_sets, split_records, train_config
from ..runner import StudyRun, Task
from .common import (
    MODELS,
    RHO_SESOI,
    NTDHParameters,
    correlation_line,
    ended_at_chance,
    kd_losses,
    non_target_sample_figure,
    run_with_gaps,
    setting_summary,
)

STUDY = "ntdh_realpairs"
SETTINGS = ("dataset", "teacher_view", "student_view", "n_classes")
MIN_PAIRS = 3  # Spearman's ρ needs three points


@dataclass(frozen=True)
class RealPairsParameters(NTDHParameters):
    """Every ordered view pair of the real datasets; the quick profile takes a few pairs."""

    n_runs: int | None = None
    epochs: int | None = None
    max_pairs_per_dataset: int | None = None  # None: all ordered pairs
    datasets: tuple[str, ...] = ("mfeat", "watch", "segment")
    hidden: int = 64
    lr: float = 0.003
    standardize: bool = True  # z-score each view with training-split statistics
    batch_size: int | None = None  # None: full batch up to 2048 training samples, else mini-batches (see real_data)

    notebook: ClassVar[str] = "03_ntdh_realpairs"
    # quick: mfeat's five pairs with the first view as teacher and both directions of watch and segment,
    # seven unordered pairs (units): a bootstrap over fewer draws degenerate resamples (one unit alone)
    profile_defaults: ClassVar = {
        "quick": {"n_runs": 2, "epochs": 60, "max_pairs_per_dataset": 5},
        "full": {"n_runs": 5, "epochs": 300, "max_pairs_per_dataset": None},
    }
    choices: ClassVar = {**NTDHParameters.choices, "datasets": real_dataset_names}


def make_tasks(p: RealPairsParameters) -> list[Task]:
    """One task per (ordered view pair, seed), the first ``max_pairs_per_dataset`` pairs of each
    dataset if limited: the seed's split, the pair's views standardised per feature."""
    tasks = []
    for name in p.datasets:
        data = load(name)
        splits = {seed: data.split(seed) for seed in range(p.n_runs)}
        for teacher_view, student_view in list(permutations(data.modality_names, 2))[: p.max_pairs_per_dataset]:
            settings = {
                "dataset": name,
                "teacher_view": teacher_view,
                "student_view": student_view,
                "n_classes": data.n_classes,
            }
            for seed, split in splits.items():
                views = standardise(split, {"a": teacher_view, "b": student_view}, per="feature", scale=p.standardize)
                tasks.append(Task(views, seed, settings))
    return tasks


def run(
    p: RealPairsParameters, progress: bool | None = None, kd_variants: Mapping[str, Mapping] | None = None
) -> StudyRun:
    """Teacher, No-KD and KD students (one-hidden-layer MLPs, full-batch Adam) on every pair;
    ``kd_variants`` adds a KD student per variant of the KD options (:func:`.common.kd_losses`)."""
    tasks = make_tasks(p)
    note_small_test_sets(tasks)
    config = train_config(tasks, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer="adam", device=p.device)
    run = run_with_gaps(
        tasks,
        p,
        study=STUDY,
        model=ModelSpec("mlp", hidden=(p.hidden,)),
        teacher_config=config,
        losses=kd_losses(p, kd_variants),
        progress=progress,
    )
    run.log.splits += split_records(tasks)
    return run


def pair_summary(table: pd.DataFrame, kd_method: str = "kd") -> pd.DataFrame:
    """One row per pair: mean accuracies (%), Δ (of student ``kd_method``) and its std over seeds,
    NTD and CMDs."""
    return setting_summary(table, SETTINGS, kd_method=kd_method).reset_index()


# a pair's properties that might predict its Δ (columns of pair_summary)
PREDICTORS = {"ntd": "NTD (teacher vs No-KD)", "teacher": "teacher accuracy", "no_kd": "student view's own accuracy"}


def predictor_correlations(pairs: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman ρ between Δ and each of ``PREDICTORS`` across the pairs of :func:`pair_summary`,
    with bootstrap intervals over pairs; NaN below ``MIN_PAIRS`` pairs. The hypothesis predicts
    ρ < 0 for NTD; note that NTD is the same for a → b and b → a, while the accuracies are not. A
    table for reading: its intervals resample ordered pairs, so a pair run in both directions
    counts twice (the claim, :func:`hypothesis_row`, resamples unordered pairs)."""
    rows = []
    for column, label in PREDICTORS.items():
        known = pairs.dropna(subset=[column, "delta"])
        result = (
            rank_correlation(known[column], known["delta"], n_boot=n_boot)
            if len(known) >= MIN_PAIRS
            else dict.fromkeys(("rho", "low", "high", "p_value"), math.nan) | {"n": len(known)}
        )
        rows.append({"predictor": label, **result})
    return pd.DataFrame(rows).round(3)


def resolved_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair of :func:`pair_summary`, sorted by NTD, with whether its Δ lies beyond two
    standard errors (over seeds) of zero."""
    resolved = pairs["delta"].abs() > 2 * pairs["delta_std"] / pairs["n_seeds"] ** 0.5
    columns = [*SETTINGS, "teacher", "no_kd", "delta", "delta_std", "ntd", "resolved"]
    return pairs.assign(resolved=resolved)[columns].sort_values("ntd")


def unordered_pairs(pairs: pd.DataFrame) -> list[str]:
    """Each row's unordered pair, ``"dataset: view, view"`` (views sorted): a → b and b → a share
    one label, since NTD before distillation is the same in both directions (the teacher on a and
    the No-KD student on b are the same recipe as the teacher on b and the student on a, and JS is
    symmetric), so they are one unit, not two."""
    return [
        f"{d}: {', '.join(sorted((a, b)))}"
        for d, a, b in zip(pairs["dataset"], pairs["teacher_view"], pairs["student_view"])
    ]


# Stated before the data. The units are unordered pairs (their two directions are resampled
# together); a dataset's pairs that share a view are not independent either, which the interval
# does not model.
HYPOTHESIS_ACROSS_PAIRS = claims.Claim(
    claim="smaller NTD, larger KD gain, across modality pairs",
    source="NTDH abstract; its real-data experiments (MNIST→MNIST-M, SemanticKITTI, NYU Depth V2, RAVDESS)",
    kind="paper",
    quantity="Spearman ρ(NTD, Δ) over ordered pairs (means over seeds), unordered pairs resampled whole",
    unit="Spearman ρ",
    prediction="< 0",
    sesoi=RHO_SESOI,
)


def hypothesis_row(pairs: pd.DataFrame, setting: str = "") -> dict:
    """:data:`HYPOTHESIS_ACROSS_PAIRS` judged on :func:`pair_summary`'s pairs that have an NTD;
    not resolved where a pair's models ended at chance (accuracies in percent)."""
    known = pairs.dropna(subset=["ntd", "delta"])
    chance = any(
        ended_at_chance(accuracies / 100, n_classes)
        for accuracies, n_classes in zip(known[list(MODELS)].to_numpy(), known["n_classes"])
    )
    return HYPOTHESIS_ACROSS_PAIRS.judge_correlation(
        known["ntd"], known["delta"], clusters=unordered_pairs(known), setting=setting, at_chance=chance
    )


def claims_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """The notebook's claim, judged on :func:`pair_summary`'s pairs."""
    return claims.table([hypothesis_row(pairs, setting=", ".join(dict.fromkeys(pairs["dataset"])))])


def pair_figure(pairs: pd.DataFrame, verdicts: pd.DataFrame) -> go.Figure:
    """Δ against NTD, one marker per ordered pair of :func:`pair_summary`, with the claim's ρ."""
    shown = pairs.assign(delta=pairs["delta"] / 100, pair=pairs["teacher_view"] + " → " + pairs["student_view"])
    subtitle = correlation_line(verdicts.iloc[0], "ρ(NTD, Δ)") + " unordered pairs; 95% interval"
    return figures.delta_vs_ntd(shown, "dataset", "Real modality pairs: KD gain against NTD", subtitle, hover="pair")


def pair_names(pairs: pd.DataFrame) -> list[str]:
    """The Explore section's pair labels, ``"dataset: teacher → student"``."""
    return [f"{d}: {a} → {b}" for d, a, b in zip(pairs["dataset"], pairs["teacher_view"], pairs["student_view"])]


def pair_sample_figure(run: StudyRun, pair: str, sample: int) -> go.Figure:
    """Explore for real pairs: ``pair`` is "dataset: teacher → student"; the first seed's teacher
    and KD student."""
    dataset, views = pair.split(": ")
    teacher_view, student_view = views.split(" → ")
    found = run.artifacts.find(dataset=dataset, teacher_view=teacher_view, student_view=student_view)
    if not found:
        raise ValueError(f"no task for pair {pair!r}")
    outputs = found[0]
    return non_target_sample_figure(
        outputs.teacher,
        outputs.students["kd"],
        outputs.task.splits.test.labels,
        sample,
        f"{pair} (seed {outputs.task.seed})",
        "KD student",
    )


# ----------------------------------------------------------------------------- exercises
@functools.lru_cache(maxsize=4)
def segment_both_directions(
    n_runs: int = 3, epochs: int = 60, temperature: float = 4.0, t2_scale: bool = True
) -> StudyRun:
    """Both directions of segment (colour ↔ shape), full batch, with NTDH's KD (``"kd"``) and a KD
    student ``"variant"`` of ``temperature`` and ``t2_scale`` (Hinton's setting by default); memoised."""
    p = RealPairsParameters.create(datasets=["segment"], n_runs=n_runs, epochs=epochs)
    return run(p, progress=False, kd_variants={"variant": {"temperature": temperature, "t2_scale": t2_scale}})


def segment_deltas(n_runs: int, epochs: int, temperature: float, t2_scale: bool, kd_method: str) -> pd.Series:
    """Δ (points) of ``kd_method`` per direction of :func:`segment_both_directions`, indexed by
    (teacher view, student view)."""
    pairs = pair_summary(segment_both_directions(n_runs, epochs, temperature, t2_scale).table, kd_method)
    return pairs.set_index(["teacher_view", "student_view"])["delta"]


@course.exercise(
    "03_ntdh_realpairs",
    "direction_delta_gap",
    other={"epochs": 20},
    what="Δ of colour → shape minus Δ of shape → colour on segment, 3 seeds, 60 epochs (points)",
)
def direction_delta_gap_exercise(n_runs: int = 3, epochs: int = 60) -> float:
    """How far the KD gains of segment's two directions differ, while their NTD is one number."""
    delta = segment_deltas(n_runs, epochs, 4.0, True, "kd")
    return float(delta[("colour", "shape")] - delta[("shape", "colour")])


@course.exercise(
    "03_ntdh_realpairs",
    "hinton_change",
    other={"temperature": 0.7, "t2_scale": False},
    what="Δ with Hinton's KD (T = 4, T²) minus Δ with NTDH's (T = 0.7), segment colour → shape (points)",
)
def hinton_change_exercise(temperature: float = 4.0, t2_scale: bool = True, n_runs: int = 3, epochs: int = 60) -> float:
    """What a KD variant of ``temperature`` and ``t2_scale`` changes in colour → shape's Δ."""
    variant, ntdh = (segment_deltas(n_runs, epochs, temperature, t2_scale, method) for method in ("variant", "kd"))
    return float(variant[("colour", "shape")] - ntdh[("colour", "shape")])
