"""The DisCoM-KD notebook's checked exercise answers (06_discom_kd): seeded calls registered with
:func:`cmkd_lab.app.course.exercise`. Each runs DisCoM alone on the synthetic set, on the CPU, at
a small fixed scale (``n_splits`` splits, ``epochs`` epochs), two variants at a time
(:func:`.study.discom_variants`); the answers that read one comparison share its run."""

from __future__ import annotations

import functools

import pandas as pd

from ...app import course
from . import analysis, study

NOTEBOOK = "06_discom_kd"
# the variants each exercise compares (name -> the settings it changes), as study.discom_variants takes them
COMPARISONS = {
    "targets": {"class_index": {}, "as_released": {"modality_targets": "as_released"}},
    "grl_scale": {"λ = 0.3": {"grl_scale": 0.3}, "λ = 3": {"grl_scale": 3.0}},
    "orthogonality": {"signed": {}, "absolute": {"orthogonality": "absolute"}},
}


@functools.cache
def variant_means(comparison: str, n_splits: int = 2, epochs: int = 4) -> pd.DataFrame:
    """:func:`.analysis.variant_means` of the variants of ``COMPARISONS[comparison]`` on the
    synthetic set (each variant's mean over splits of every metric). Cached: do not modify it."""
    params = study.DisCoMParameters.create(device="cpu", n_splits=n_splits, epochs=epochs)
    return analysis.variant_means(study.discom_variants(params, COMPARISONS[comparison]).table)


def _f1_shift(means: pd.DataFrame, variant: str, reference: str) -> float:
    """``variant`` − ``reference`` weighted F1, mean over the modalities, in points."""
    return float(100 * (means.loc[variant] - means.loc[reference]).filter(like="test_f1w").mean())


@course.exercise(
    NOTEBOOK,
    "released_f1_shift",
    what="DisCoM's weighted F1, as released − class index, mean over modalities (points)",
    other={"epochs": 2},
)
def released_f1_shift(n_splits: int = 2, epochs: int = 4) -> float:
    return _f1_shift(variant_means("targets", n_splits, epochs), "as_released", "class_index")


@course.exercise(
    NOTEBOOK,
    "released_domain_s_shift",
    what="domain accuracy on s, as released − class index (points)",
    other={"epochs": 2},
)
def released_domain_s_shift(n_splits: int = 2, epochs: int = 4) -> float:
    means = variant_means("targets", n_splits, epochs)
    return float(100 * (means.loc["as_released", "domain_acc_s"] - means.loc["class_index", "domain_acc_s"]))


@course.exercise(
    NOTEBOOK,
    "probe_beyond_discriminator",
    what="fresh probe − training discriminator accuracy on s, the smaller over λ",
    other={"epochs": 2},
)
def probe_beyond_discriminator(n_splits: int = 2, epochs: int = 4) -> float:
    means = variant_means("grl_scale", n_splits, epochs)
    return float((means["domain_acc_s"] - means["discriminator_acc_s"]).min())


@course.exercise(NOTEBOOK, "signed_cos_du", what="mean cos(d, u) with the signed L_⊥", other={"epochs": 2})
def signed_cos_du(n_splits: int = 2, epochs: int = 4) -> float:
    return float(variant_means("orthogonality", n_splits, epochs).loc["signed", "cos_du"])


@course.exercise(NOTEBOOK, "absolute_cos_du", what="mean cos(d, u) with the absolute L_⊥", other={"epochs": 2})
def absolute_cos_du(n_splits: int = 2, epochs: int = 4) -> float:
    return float(variant_means("orthogonality", n_splits, epochs).loc["absolute", "cos_du"])


@course.exercise(
    NOTEBOOK,
    "absolute_f1_shift",
    other={"epochs": 2},
    what="weighted F1, absolute − signed L_⊥, mean over modalities (points)",
)
def absolute_f1_shift(n_splits: int = 2, epochs: int = 4) -> float:
    return _f1_shift(variant_means("orthogonality", n_splits, epochs), "absolute", "signed")
