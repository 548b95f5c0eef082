"""03_ntdh_realpairs: NTDH on every ordered modality pair of real datasets (the kit's mfeat, watch
and segment by default; any registered dataset by name).

Each pair's views are z-scored per feature with training statistics and renamed ``a`` (teacher)
and ``b`` (student); per pair: teacher, No-KD and KD students, the gap metrics, and across pairs
the rank correlation between NTD and Δ (three pairs or more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import ClassVar, Mapping

import pandas as pd
import plotly.graph_objects as go

from ...analysis.metrics import rank_correlation
from ...datasets import load, real_dataset_names, standardise
from ...report import figures
from ..real_data import note_small_test_sets, split_records, train_config
from ..runner import Architecture, StudyRun, Task
from . import common
from .common import NTDHParameters, kd_losses, non_target_sample_figure, run_with_gaps, setting_summary

STUDY = "ntdh_realpairs"
SETTINGS = ("dataset", "teacher_view", "student_view")
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
    profile_defaults: ClassVar = {"quick": {"n_runs": 2, "epochs": 60, "max_pairs_per_dataset": 2},
                                  "full": {"n_runs": 5, "epochs": 300, "max_pairs_per_dataset": None}}
    choices: ClassVar = {**NTDHParameters.choices, "datasets": real_dataset_names}


def make_tasks(p: RealPairsParameters) -> list[Task]:
    """One task per (ordered view pair, seed), the first ``max_pairs_per_dataset`` pairs of each
    dataset if limited: the seed's split, the pair's views standardised per feature."""
    tasks = []
    for name in p.datasets:
        data = load(name)
        splits = {seed: data.split(seed) for seed in range(p.n_runs)}
        for teacher_view, student_view in list(permutations(data.modality_names, 2))[: p.max_pairs_per_dataset]:
            settings = {"dataset": name, "teacher_view": teacher_view, "student_view": student_view}
            for seed, split in splits.items():
                views = standardise(split, {"a": teacher_view, "b": student_view}, per="feature", scale=p.standardize)
                tasks.append(Task(views, seed, settings))
    return tasks


def run(p: RealPairsParameters, progress: bool | None = None, kd_variants: Mapping[str, Mapping] | None = None) -> StudyRun:
    """Teacher, No-KD and KD students (one-hidden-layer MLPs, full-batch Adam) on every pair;
    ``kd_variants`` adds a KD student per variant of the KD options (:func:`.common.kd_losses`)."""
    tasks = make_tasks(p)
    note_small_test_sets(tasks)
    config = train_config(tasks, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer="adam", device=p.device)
    run = run_with_gaps(tasks, p, study=STUDY, model=Architecture("mlp", (p.hidden,)), teacher_config=config,
                        losses=kd_losses(p, kd_variants), progress=progress)
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
    ρ < 0 for NTD; note that NTD is the same for a → b and b → a, while the accuracies are not."""
    rows = []
    for column, label in PREDICTORS.items():
        known = pairs.dropna(subset=[column, "delta"])
        result = (rank_correlation(known[column], known["delta"], n_boot=n_boot) if len(known) >= MIN_PAIRS else
                  dict.fromkeys(("rho", "low", "high", "p_value"), math.nan) | {"n": len(known)})
        rows.append({"predictor": label, **result})
    return pd.DataFrame(rows).round(3)


def resolved_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair of :func:`pair_summary`, sorted by NTD, with whether its Δ lies beyond two
    standard errors (over seeds) of zero."""
    resolved = pairs["delta"].abs() > 2 * pairs["delta_std"] / pairs["n_seeds"] ** 0.5
    columns = [*SETTINGS, "teacher", "no_kd", "delta", "delta_std", "ntd", "resolved"]
    return pairs.assign(resolved=resolved)[columns].sort_values("ntd")


def pair_correlation(table: pd.DataFrame, n_boot: int = 2000) -> dict:
    """Spearman ρ between the pairs' mean NTD and mean Δ, bootstrap over pairs; NaN (with ``n``)
    below ``MIN_PAIRS`` pairs with an NTD."""
    pairs = pair_summary(table).dropna(subset=["ntd", "delta"])
    if len(pairs) < MIN_PAIRS:
        return dict.fromkeys(("rho", "low", "high", "p_value"), math.nan) | {"n": len(pairs)}
    return rank_correlation(pairs["ntd"], pairs["delta"], n_boot=n_boot)


def correlation_line(correlation: dict) -> str:
    """The correlation across pairs in words, or why there is none."""
    if correlation["n"] < MIN_PAIRS:
        return f"too few pairs (n = {correlation['n']}) for a rank correlation"
    return common.correlation_line(correlation)


def claims(correlation: dict) -> pd.DataFrame:
    """The paper-vs-kit row: does the rank correlation across pairs support the hypothesis? The
    verdict starts with "held", "not held", "null result" or "not tested"
    (:func:`cmkd_lab.analysis.results.verdict`)."""
    if correlation["n"] < MIN_PAIRS:
        verdict = f"not tested: {correlation_line(correlation)}"
    elif correlation["high"] < 0:
        verdict = "held: the data support the hypothesis (ρ < 0)"
    elif correlation["low"] > 0:
        verdict = "not held: the data contradict the hypothesis (ρ > 0)"
    else:
        verdict = "null result: the interval contains 0, so the data neither support nor contradict the hypothesis"
    return pd.DataFrame([{
        "claim": "smaller NTD, larger KD gain (across modality pairs)",
        "paper": "qualitative; shown on MNIST→MNIST-M, SemanticKITTI, NYU Depth V2, RAVDESS (numbers not available to us)",
        "kit": correlation_line(correlation),
        "criterion": f"95% bootstrap interval of ρ entirely below 0 ({MIN_PAIRS} pairs or more)",
        "verdict": verdict,
    }])


def pair_figure(table: pd.DataFrame, correlation: dict) -> go.Figure:
    pairs = pair_summary(table).assign(delta=lambda f: f["delta"] / 100)
    pairs["pair"] = pairs["teacher_view"] + " → " + pairs["student_view"]
    return figures.delta_vs_ntd(pairs, "dataset", "Real modality pairs: KD gain against NTD", correlation_line(correlation),
                                hover="pair")


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
    return non_target_sample_figure(outputs.teacher, outputs.students["kd"], outputs.task.splits.test.labels, sample,
                                    f"{pair} (seed {outputs.task.seed})", "KD student")
