"""The DS-CMKD notebook's checked exercise answers (05_ds_cmkd): seeded calls registered with
:func:`cmkd_lab.app.course.exercise`. Each trains students on the first image set at one
severity with :func:`.study.weight_sweep`, on the CPU at a small fixed scale (``n_runs`` seeds,
300 training images, 5 epochs); the answers that read one sweep share it (the sweeps are memoised)."""

from __future__ import annotations

import functools

import pandas as pd

from ...app import course
from . import analysis, study

NOTEBOOK = "05_ds_cmkd"
SCALE = {"n_train": 300, "epochs": 5, "teacher_epochs": 10, "device": "cpu"}
INDEPENDENCE_WEIGHTS = (0.1, 1.0, 10.0)  # β of exercise 2, the uniformity term off


@functools.cache
def sweep_means(
    variants: tuple, severity: float = 0.5, n_runs: int = 2, guide: str = study.DS_GUIDE, **changes
) -> pd.DataFrame:
    """:func:`.analysis.variant_means` of :func:`.study.weight_sweep` with ``variants`` (pairs of
    a name and its (independence, uniformity) weights) guided by ``guide``, at this module's
    scale with ``changes`` to the notebook's parameters. Cached: do not modify it."""
    params = study.DSParameters.create(n_runs=n_runs, **SCALE, **changes)
    return analysis.variant_means(study.weight_sweep(params, dict(variants), severity=severity, guide=guide).table)


def uniformity_shift(map_layer: str = "relu2", severity: float = 0.5, n_runs: int = 2) -> pd.Series:
    """ds_ud − kd (the uniformity term on ``map_layer``, on top of KD): every metric's mean
    seed-by-seed shift (accuracy in points; the spatial entropy is that of ``map_layer``)."""
    means = sweep_means((("kd", (0, 0)), ("ds_ud", (0, 1))), severity, n_runs, map_layer=map_layer)
    return means.loc["ds_ud"] - means.loc["kd"]


@course.exercise(
    NOTEBOOK,
    "relu2_entropy_gain",
    what="ds_ud − kd, spatial entropy of the flattened map (nats)",
    other={"map_layer": "relu1"},
)
def relu2_entropy_gain(map_layer: str = "relu2", severity: float = 0.5, n_runs: int = 2) -> float:
    return float(uniformity_shift(map_layer, severity, n_runs)["spatial_entropy"])


@course.exercise(
    NOTEBOOK,
    "accuracy_shift_relu2_vs_relu1",
    what="accuracy shift of ds_ud over kd, relu2 − relu1 (points)",
    other={"severity": 0.75},
)
def accuracy_shift_relu2_vs_relu1(severity: float = 0.5, n_runs: int = 2) -> float:
    shifts = {layer: uniformity_shift(layer, severity, n_runs)["test_acc"] for layer in ("relu1", "relu2")}
    return float(shifts["relu2"] - shifts["relu1"])


def independence_sweep(severity: float = 0.5, n_runs: int = 2) -> pd.DataFrame:
    """KD + the independence term at each β of :data:`INDEPENDENCE_WEIGHTS`: every metric's mean
    over seeds, one row per β."""
    return sweep_means(tuple((f"β = {w:g}", (w, 0)) for w in INDEPENDENCE_WEIGHTS), severity, n_runs)


def _weight_change(metric: str, weight: float, severity: float, n_runs: int) -> float:
    means = independence_sweep(severity, n_runs)
    return float(means.loc[f"β = {weight:g}", metric] - means.loc[f"β = {INDEPENDENCE_WEIGHTS[0]:g}", metric])


@course.exercise(NOTEBOOK, "rank_rise_to_weight_10", what="effective rank, β = 10 − β = 0.1", other={"weight": 1.0})
def rank_rise_to_weight_10(weight: float = 10.0, severity: float = 0.5, n_runs: int = 2) -> float:
    return _weight_change("effective_rank", weight, severity, n_runs)


@course.exercise(
    NOTEBOOK, "accuracy_change_to_weight_10", what="test accuracy, β = 10 − β = 0.1 (points)", other={"weight": 1.0}
)
def accuracy_change_to_weight_10(weight: float = 10.0, severity: float = 0.5, n_runs: int = 2) -> float:
    return _weight_change("test_acc", weight, severity, n_runs)


def degradation_gap(
    first: str = "noise", second: str = "occlusion", severity: float = 0.5, n_runs: int = 2
) -> pd.Series:
    """CE students on images degraded by ``first`` alone minus those degraded by ``second`` alone:
    every metric's mean shift (accuracy in points)."""

    def ce_means(kind: str) -> pd.Series:
        return sweep_means((("ce", (0, 0)),), severity, n_runs, "none", degradations=(kind,)).loc["ce"]

    return ce_means(first) - ce_means(second)


@course.exercise(
    NOTEBOOK,
    "noise_minus_occlusion_entropy",
    what="CE students' spatial entropy, noise − occlusion (nats)",
    other={"first": "downsample"},
)
def noise_minus_occlusion_entropy(
    first: str = "noise", second: str = "occlusion", severity: float = 0.5, n_runs: int = 2
) -> float:
    return float(degradation_gap(first, second, severity, n_runs)["spatial_entropy"])


@course.exercise(
    NOTEBOOK,
    "noise_minus_occlusion_correlation",
    what="CE students' channel correlation, noise − occlusion",
    other={"first": "downsample"},
)
def noise_minus_occlusion_correlation(
    first: str = "noise", second: str = "occlusion", severity: float = 0.5, n_runs: int = 2
) -> float:
    return float(degradation_gap(first, second, severity, n_runs)["channel_corr"])


def teacher_shift(guide: str = study.DS_GUIDE, severity: float = 0.5, n_runs: int = 2) -> pd.Series:
    """ds_both guided by ``guide`` minus ds_both without a teacher (both DS terms on in each):
    every metric's mean seed-by-seed shift (accuracy in points)."""
    both = (("ds_both", (1, 1)),)
    return (
        sweep_means(both, severity, n_runs, guide).loc["ds_both"]
        - sweep_means(both, severity, n_runs, "none").loc["ds_both"]
    )


@course.exercise(
    NOTEBOOK,
    "teacher_accuracy_gain",
    what="ds_both with KD from the teacher − without a teacher, test accuracy (points)",
    other={"guide": "fitnet"},
)
def teacher_accuracy_gain(guide: str = study.DS_GUIDE, severity: float = 0.5, n_runs: int = 2) -> float:
    return float(teacher_shift(guide, severity, n_runs)["test_acc"])


@course.exercise(
    NOTEBOOK,
    "teacher_correlation_shift",
    what="ds_both with KD from the teacher − without a teacher, channel correlation",
    other={"guide": "fitnet"},
)
def teacher_correlation_shift(guide: str = study.DS_GUIDE, severity: float = 0.5, n_runs: int = 2) -> float:
    return float(teacher_shift(guide, severity, n_runs)["channel_corr"])
