"""What the DS-CMKD notebook reads from a results table: the observation table (clean vs degraded
features), the method tables, how each DS loss moves its own diagnostic, the paper-vs-kit claims,
their figures, and the Explore callback."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...analysis.results import mean_std_cells, mean_std_table, summarize
from ...report import figures
from .study import ALL_METHODS, DIAGNOSTICS, DS_METHODS, METRICS, DSParameters, run

PAIR_COLUMNS = ["dataset", "source", "target", "severity"]
METRIC_TITLES = {"test_acc": "test accuracy (%)", "channel_corr": "mean |off-diagonal channel correlation|",
                 "spatial_entropy": "spatial entropy (nats)", "effective_rank": "effective rank"}
# each DS loss and the diagnostic it targets, with the direction the paper wants (+1: up, -1: down)
TARGETED = {"ds_ci": ("channel_corr", -1), "ds_ud": ("spatial_entropy", +1)}
SIGNIFICANCE = 2.0  # a claim holds when its mean effect is more than this many standard errors from 0


def _scale(metric: str) -> float:
    return 100.0 if metric == "test_acc" else 1.0


def _by(table: pd.DataFrame) -> list[str]:
    """The pair columns present in ``table`` (a table of degraded sets only has no NaN-only columns)."""
    return [c for c in PAIR_COLUMNS if c in table.columns and table[c].notna().any()]


def method_table(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """``metric`` as mean ± std over seeds (accuracy in %): one row per pair and severity, one
    column per method (teacher first)."""
    part = table[(table["metric"] == metric) & (table["study"] != "ds_analysis")]
    digits = 2 if metric == "test_acc" else 3
    wide = mean_std_table(part.fillna({"severity": -1.0}), _by(part), scale=_scale(metric), digits=digits)
    wide = wide.rename(index={-1.0: "—"})
    return wide[[m for m in ALL_METHODS if m in wide.columns]]


def paired(table: pd.DataFrame, metric: str, method: str, baseline: str, study: str | None = None) -> pd.DataFrame:
    """Per pair, severity and seed: ``metric`` of ``method`` minus that of ``baseline`` (same seed)."""
    part = table[table["metric"] == metric]
    if study is not None:
        part = part[part["study"] == study]
    else:
        part = part[part["study"] != "ds_analysis"]
    index = _by(part) + ["seed"]
    wide = part.fillna({"severity": -1.0}).pivot_table(index=index, columns="method", values="value").reset_index()
    wide["difference"] = wide[method] - wide[baseline]
    return wide.replace({"severity": {-1.0: math.nan}})[index + ["difference"]]


def _effect(differences: pd.Series) -> dict:
    n = len(differences)
    std = float(differences.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(differences.mean()), "std": std, "se": std / math.sqrt(n) if n else math.nan, "n": n}


def _verdict(effect: dict, sign: int) -> str:
    if effect["n"] < 2:
        return "not resolved (fewer than two seeds)"
    signed = sign * effect["mean"]
    if signed - SIGNIFICANCE * effect["se"] > 0:
        return "held"
    if signed + SIGNIFICANCE * effect["se"] < 0:
        return "not held (the opposite)"
    return "not resolved (within two standard errors of 0)"


def observation_table(table: pd.DataFrame) -> pd.DataFrame:
    """The motivating analysis: each diagnostic of the teacher's features on clean inputs beside
    the CE student's on degraded inputs, and their seed-by-seed difference (degraded − clean),
    mean ± std, per pair and severity."""
    part = table[table["study"] == "ds_analysis"]
    rows = []
    for metric in DIAGNOSTICS:
        summary = summarize(part[part["metric"] == metric].fillna({"severity": -1.0}), by=_by(part) + ["method"])
        summary["cell"] = mean_std_cells(summary, scale=1.0, digits=3)
        wide = summary.pivot(index=_by(part), columns="method", values="cell")
        gap = paired(table, metric, "ce", "teacher", study="ds_analysis").fillna({"severity": -1.0})
        gap_summary = summarize(gap.rename(columns={"difference": "value"}), by=_by(part))
        wide["degraded − clean"] = mean_std_cells(gap_summary.set_index(_by(part)).loc[wide.index].reset_index(), 1.0, 3)
        wide.columns = [f"{metric}: {name}" for name in ("clean teacher" if c == "teacher" else "degraded CE" if c == "ce" else c
                                                           for c in wide.columns)]
        rows.append(wide)
    return pd.concat(rows, axis=1).rename(index={-1.0: "—"})


def diagnostic_shifts(table: pd.DataFrame) -> pd.DataFrame:
    """How each DS student's diagnostics differ from the CE student's on the same seed and pair:
    mean ± std of the difference, per DS method and diagnostic (all pairs and severities)."""
    rows = []
    for method in [m for m in DS_METHODS if m in set(table["method"])]:
        for metric in DIAGNOSTICS + ("test_acc",):
            effect = _effect(paired(table, metric, method, "ce")["difference"])
            rows.append({"method": method, "metric": metric, "shift vs CE": f"{effect['mean'] * _scale(metric):+.3f} ± "
                         f"{effect['std'] * _scale(metric):.3f}", "n": effect["n"]})
    if not rows:
        return pd.DataFrame()
    wide = pd.DataFrame(rows).pivot(index="method", columns="metric", values="shift vs CE")
    return wide[[m for m in METRICS if m in wide.columns]]


def claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims beside what the kit measures, each with its criterion and verdict."""
    rows = []

    def add(claim, paper, effect, unit, sign, criterion):
        rows.append({"claim": claim, "paper says": paper,
                     "kit measures": f"{effect['mean']:+.3f} ± {effect['std']:.3f} {unit} (n = {effect['n']})",
                     "criterion": criterion, "verdict": _verdict(effect, sign)})

    within = f"mean more than {SIGNIFICANCE:g} standard errors"
    observation = "the abstract's observation, no number given (papers.md §4)"
    if "ds_analysis" in set(table["study"]):
        # one teacher serves every severity of a seed: the unit is the seed (severities averaged)
        for metric, sign, what, unit in (("channel_corr", +1, "lower channel correlation", ""),
                                         ("spatial_entropy", -1, "higher spatial entropy (more uniform maps)", "nats, ")):
            gap = paired(table, metric, "ce", "teacher", "ds_analysis").groupby(["dataset", "seed"])["difference"].mean()
            add(f"clean (high-quality) features have {what}", observation, _effect(gap),
                f"{unit}degraded CE − clean teacher, per seed", sign, f"{within} {'above' if sign > 0 else 'below'} 0")
    methods = set(table["method"])
    for method, (metric, sign) in TARGETED.items():
        if method in methods and "ce" in methods:
            add(f"{method} moves {metric} {'down' if sign < 0 else 'up'} (the loss does what it says)",
                "the method's premise", _effect(paired(table, metric, method, "ce")["difference"]),
                f"{method} − ce", sign, f"{within} {'below' if sign < 0 else 'above'} 0")
    for method in [m for m in DS_METHODS if m in methods and "ce" in methods]:
        accuracy = paired(table, "test_acc", method, "ce")
        effect = _effect(100 * accuracy["difference"])
        add(f"{method} raises the low-quality student's accuracy over CE", "DS-CMKD improves the low-quality "
            "modality (abstract; no number for this setting)", effect, "points", +1, f"{within} above 0")
    if "ds_both" in methods and "ce" in methods:
        gain = paired(table, "test_acc", "ds_both", "ce").dropna(subset=["severity"])
        if gain["severity"].nunique() >= 2:
            low, high = gain["severity"].min(), gain["severity"].max()
            at = lambda s: 100 * gain[gain["severity"] == s].groupby("seed")["difference"].mean()  # noqa: E731
            growth = (at(high) - at(low)).dropna()
            add(f"the DS gain grows with the modality gap (severity {high:g} vs {low:g})",
                "gains are largest when the gap is large (abstract)", _effect(growth), "points", +1, f"{within} above 0")
    return pd.DataFrame(rows)


def claims_by_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`claims` for each dataset on its own, then for all of them pooled (``dataset`` "all"),
    the dataset as the first column."""
    parts = {name: claims(part) for name, part in table.groupby("dataset", sort=False)}
    if len(parts) > 1:
        parts["all"] = claims(table)
    return pd.concat(parts, names=["dataset", "row"]).reset_index(level="row", drop=True).reset_index()


def variant_means(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's (or variant's) mean over seeds of every metric, accuracy in %: one row per
    method in the table's order, one column per metric. Methods trained on the same seeds, so the
    difference of two rows is their mean seed-by-seed difference."""
    wide = table.pivot_table(index="method", columns="metric", values="value", sort=False)
    wide = wide[[m for m in METRICS if m in wide.columns]]
    if "test_acc" in wide:
        wide["test_acc"] *= 100
    return wide.reindex(list(dict.fromkeys(table["method"]))).rename_axis(columns=None)


def metric_grid(table: pd.DataFrame, x: str = "severity", methods=ALL_METHODS, metrics=METRICS, title: str = "",
                study: str | None = None) -> go.Figure:
    """One panel per metric: its mean ± std over seeds against ``x`` (lines) or per method (bars
    when ``x`` has one value), one colour per method."""
    part = table[table["method"].isin(methods) & table["metric"].isin(metrics)]
    part = part[part["study"] == study] if study else part[part["study"] != "ds_analysis"]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES[m] for m in metrics])
    summary = summarize(part, by=[x, "method", "metric"])
    bars = summary[x].nunique() <= 1
    order = [m for m in methods if m in set(summary["method"])]
    for column, metric in enumerate(metrics, start=1):
        for i, method in enumerate(order):
            rows = summary[(summary["metric"] == metric) & (summary["method"] == method)].sort_values(x)
            mean, std = (rows["mean"] * _scale(metric)).tolist(), (rows["std"] * _scale(metric)).tolist()
            style = dict(name=figures.display_name(method), legendgroup=method, showlegend=column == 1,
                         marker_color=figures.color_for(method, i), error_y=dict(type="data", array=std, visible=True))
            if bars:
                fig.add_trace(go.Bar(x=[method], y=mean, **style), row=1, col=column)
            else:
                fig.add_trace(go.Scatter(x=rows[x].tolist(), y=mean, mode="lines+markers", **style), row=1, col=column)
    fig = figures.style(fig, title, "" if bars else x, "")
    fig.update_layout(width=max(900, 320 * len(metrics)), height=420)
    return fig


def observation_figure(table: pd.DataFrame, dataset: str) -> go.Figure:
    """The motivating analysis of one degraded set: the clean teacher's and the degraded CE
    student's diagnostics against severity."""
    part = table[(table["study"] == "ds_analysis") & (table["dataset"] == dataset)]
    return metric_grid(part, methods=("teacher", "ce"), metrics=DIAGNOSTICS, study="ds_analysis",
                       title=f"{dataset}: features on clean inputs (teacher) vs degraded inputs (CE student)")


EXPLORE_SCALE = {"n_runs": 1, "n_train": 300, "epochs": 8, "teacher_epochs": 1, "methods": ("ce",) + DS_METHODS}


def explore_figure(p: DSParameters, severity: float, independence_weight: float, uniformity_weight: float) -> go.Figure:
    """The Explore callback: CE and the three DS students on one seed of the first image set at
    ``severity``, with the two weights, at a small scale (``EXPLORE_SCALE``); every metric per
    method. The teacher is not shown (it trains one epoch: no student here reads it)."""
    changed = p.replace(images=tuple(p.images[:1]) or ("digits_degraded",), pairs=(), severities=(float(severity),),
                        independence_weight=float(independence_weight), uniformity_weight=float(uniformity_weight),
                        **EXPLORE_SCALE)
    table = run(changed, progress=False).table
    return metric_grid(table, methods=EXPLORE_SCALE["methods"], title=(
        f"severity {severity:.2f}, independence weight {independence_weight:g}, uniformity weight {uniformity_weight:g} "
        "(one seed, small scale)"))


def example_images(p: DSParameters, n: int = 8) -> np.ndarray:
    """``n`` clean images and their degraded copies at each severity of ``p`` (first image set),
    as rows of one mosaic array ``(rows, n, H, W)`` for :func:`cmkd_lab.report.figures.image_mosaic`."""
    from ...datasets import load

    name = (p.images or ("digits_degraded",))[0]
    rows = [load(name, severity=0.0, seed=0)["clean"][:n, 0].numpy()]
    rows += [load(name, severity=s, seed=0, kinds=p.degradations)["degraded"][:n, 0].numpy() for s in p.severities]
    return np.stack(rows)
