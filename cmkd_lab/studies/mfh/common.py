"""What the MFH studies share: the KD loss, channel choices, the per-seed difference of two
methods, the paper-vs-kit table and its claims."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...analysis import claims
from ...analysis.results import paper_vs_kit, summarize
from ...app.notebook import NotebookParameters
from ...losses import KD_REDUCTIONS, Distiller, make_loss

OFFICIAL_EPOCHS = 1000


@dataclass(frozen=True)
class SyntheticKDParameters(NotebookParameters):
    """What the two Gaussian MFH notebooks share: runs, data sizes, the official optimiser and
    KD settings, and the Explore section's smaller scale."""

    n_runs: int | None = None
    epochs: int | None = None
    n_train: int = 200
    n_test: int = 1000
    lr: float = 0.1
    temperature: float = 1.0
    kd_weight: float = 1.0
    reduction: str = "mean"
    explore_runs: int = 5
    explore_epochs: int = 300

    choices: ClassVar = {"reduction": KD_REDUCTIONS}


def kd_loss(p, **options) -> Distiller:
    """The KD loss of parameters ``p`` (temperature, reduction, kd_weight)."""
    return make_loss("kd", temperature=p.temperature, reduction=p.reduction, kd_weight=p.kd_weight, **options)


def ratios_table(knob: str, values: Sequence[int], generator: Callable, **options) -> pd.DataFrame:
    """The Venn shares (α, β, γ) of each value of a generator's ``knob``, one row per setting."""
    return pd.DataFrame(
        [{"setting": f"{knob} = {v}", **generator(v, 0, n_train=1, n_test=1, **options)[1]} for v in values]
    )


# ----------------------------------------------------------------------------- channel choices
def top_mask(scores: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """Per model, the ``ks[m]`` highest-scoring channels (k may differ between models)."""
    ranks = scores.argsort(-1, descending=True).argsort(-1)
    return ranks < ks.unsqueeze(1)


def random_mask(seeds: Sequence[int], ks: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Per model, ``ks[m]`` channels drawn at random from its seed."""
    scores = torch.stack([torch.rand(n_channels, generator=torch.Generator().manual_seed(int(s) + 7)) for s in seeds])
    return top_mask(scores, ks)


# ----------------------------------------------------------------------------- analysis
def paired_difference(table: pd.DataFrame, minuend: Mapping, subtrahend: Mapping, on: Sequence[str]) -> pd.DataFrame:
    """Test accuracy of the rows matching ``minuend`` minus that of the rows matching
    ``subtrahend`` (e.g. ``{"method": "kd"}``), paired on ``on`` (e.g. setting and seed)."""
    acc = table[table["metric"] == "test_acc"]

    def values(match: Mapping) -> pd.Series:
        rows = np.logical_and.reduce([acc[column] == value for column, value in match.items()])
        return acc[rows].set_index(list(on))["value"]

    return (values(minuend) - values(subtrahend)).rename("value").reset_index()


def paper_comparison(
    table: pd.DataFrame,
    paper: pd.DataFrame,
    on: Sequence[str],
    tolerance: float,
    match: Callable[[float], float] = lambda value: round(value, 3),
) -> pd.DataFrame:
    """The published values beside the kit's mean ± std (percent); settings are matched on
    ``match`` of the first ``on`` column (published settings are rounded)."""
    on, knob = list(on), on[0]
    key = lambda frame: frame.assign(**{knob: frame[knob].astype(float).map(match)})  # noqa: E731
    kit = summarize(table[table["metric"] == "test_acc"], by=on)
    return paper_vs_kit(key(kit), key(paper), on=on, tolerance=tolerance).round(2)


def reproduction_claims(
    kit: pd.DataFrame,
    paper: pd.DataFrame,
    on: Sequence[str],
    statement: claims.Claim,
    label: Callable[[Mapping], str],
    match: Callable[[float], float] = lambda value: round(value, 3),
    at_chance: Callable[[pd.DataFrame], str] = lambda rows: "",
) -> list[dict]:
    """Per published value (a row of ``paper``: ``on`` columns and ``paper``, in percent) that the
    kit measured: ``statement`` (an ``= 0`` claim, sesoi = the tolerance) judged on kit − paper per
    seed, in points. ``kit`` holds ``on`` columns, ``seed`` and ``value`` (percent); settings are
    matched on ``match`` of the first ``on`` column; ``label(row)`` names the claim's setting;
    ``at_chance(rows)`` says which of the kit rows compared ended at chance ("" when none did)."""
    knob = on[0]
    kit = kit.assign(**{knob: kit[knob].astype(float).map(match)})
    rows = []
    for published in paper.assign(**{knob: paper[knob].astype(float).map(match)}).to_dict("records"):
        inside = kit[np.logical_and.reduce([kit[column] == published[column] for column in on])]
        if len(inside):
            chance = at_chance(inside)
            rows.append(
                statement.judge(
                    inside["value"] - published["paper"], setting=label(published), at_chance=bool(chance), note=chance
                )
            )
    return rows


def at_chance(acc: pd.DataFrame, models: Sequence[tuple[str, str]], percent: bool = False) -> str:
    """Which of ``models`` ((method, teacher mode)) ended at chance, on how many seeds of ``acc``
    (``test_acc`` rows with an ``n_classes`` column; values in percent if ``percent``): test
    accuracy ≤ :func:`~cmkd_lab.analysis.claims.chance_ceiling`; "" when none did."""
    found = []
    for method, mode in models:
        rows = acc[(acc["method"] == method) & (acc["teacher_mode"] == mode)]
        low = rows["value"] / (100 if percent else 1) <= claims.chance_ceiling(rows["n_classes"].to_numpy())
        if low.any():
            found.append(f"{method} · {mode} on {int(low.sum())} of {len(rows)} seeds")
    return "; ".join(found)


def chance_note(*runs, methods: Sequence[str] | None = None) -> str:
    """The engine's "ended at chance" warnings of the fits of ``runs`` (StudyRuns; only the fits of
    ``methods`` if given), counted, or ""."""
    warned = [
        message
        for run in runs
        for record in run.log.fits
        for message in record.get("warnings", [])
        if methods is None or record.get("method") in methods
    ]
    return f"{len(warned)} model(s) ended at chance, e.g. {warned[0]}" if warned else ""
