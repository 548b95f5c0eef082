"""07_when_does_cmkd_help's exercises: seeded calls whose answers the course checks."""

from __future__ import annotations

import functools

import pandas as pd

from ...app import course
from ...datasets import load
from .benchmark import GAUSSIAN, DiagnosisParameters, gaussian_tasks, probe_signals, view_tasks

NOTEBOOK = DiagnosisParameters.notebook


@functools.lru_cache(maxsize=8)
def _mg_shares(dataset: str, n_runs: int, probe_epochs: int) -> pd.Series:
    """Algorithm 1's mg_share per pair (mean over seeds) of the planted family or of a dataset's
    ordered pairs, at the quick profile's settings otherwise; memoised."""
    p = DiagnosisParameters.create(n_runs=n_runs, probe_epochs=probe_epochs)
    if dataset == GAUSSIAN:
        tasks = gaussian_tasks((0, 10), p.seeds)
    else:
        data = load(dataset)
        tasks = view_tasks(dataset, data, [tuple(data.modality_names[:2]), tuple(data.modality_names[1::-1])], p.seeds)
    signals = probe_signals(tasks, p, names=["mg_share"], progress=False)
    return signals[signals["method"] == "signal"].groupby("pair")["value"].mean()


@course.exercise(
    NOTEBOOK,
    "planted_share_spread",
    other={"probe_epochs": 5},
    what="mg_share at γ = 1 minus at γ = 0 on the planted family, 2 seeds, 20 probe epochs",
)
def planted_share_spread_exercise(n_runs: int = 2, probe_epochs: int = 20) -> float:
    """How far Algorithm 1's whole-view share moves between no and full modality-general overlap."""
    shares = _mg_shares(GAUSSIAN, n_runs, probe_epochs)
    return float(shares.loc["a>b γ=1.00"] - shares.loc["a>b γ=0.00"])


@course.exercise(
    NOTEBOOK,
    "segment_direction_gap",
    other={"probe_epochs": 5},
    what="mg_share of colour>shape minus of shape>colour on segment, 2 seeds, 20 probe epochs",
)
def segment_direction_gap_exercise(n_runs: int = 2, probe_epochs: int = 20) -> float:
    """MFH's signal in the two directions of one pair (NTD is one number for both)."""
    shares = _mg_shares("segment", n_runs, probe_epochs)
    return float(shares.loc["colour>shape"] - shares.loc["shape>colour"])
