"""What the CMCD notebooks read from a results table: the method table, each distiller's margin
over the best baseline beside the paper's claim, target error against the estimated modality
distance, and their figures."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...analysis.metrics import rank_correlation
from ...analysis.results import mean_std_cells, summarize
from ...report import figures
from .pipeline import DISTILLERS, METHODS

BASELINES = ("l2", "no_distill", "target_ssl", "finetune_only")  # the paper's baselines, L2 alignment among them
PAPER_SKETCHY = {"cmd": 72.61, "cmc": 73.24, "best baseline": 71.33}  # top-1 (%), papers.md §3
PAPER_MARGIN = (1.0, 3.0)  # points over the best baseline, as the paper states its gain
DISTANCES = ("tv_lower_bound", "mmd")


def method_table(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Test accuracy (%) as mean ± std over seeds: rows ``by`` + stage, one column per method."""
    acc = table[table["metric"] == "test_acc"]
    summary = summarize(acc, by=[*by, "stage", "method"])
    summary["cell"] = mean_std_cells(summary)
    wide = summary.pivot(index=[*by, "stage"], columns="method", values="cell")
    return wide[[m for m in METHODS if m in wide.columns]]


def margins(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` + stage: each distiller's accuracy minus the best baseline's (the baseline with
    the highest mean), per seed, as mean ± std in points, and which baseline was best."""
    acc = table[table["metric"] == "test_acc"]
    rows = []
    for key, part in acc.groupby([*by, "stage"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        per_seed = part.pivot_table(index="seed", columns="method", values="value")
        baselines = [b for b in BASELINES if b in per_seed]
        best = per_seed[baselines].mean().idxmax()
        for method in [m for m in ("cmd", "cmc") if m in per_seed]:
            difference = 100 * (per_seed[method] - per_seed[best])
            rows.append({**dict(zip([*by, "stage"], key)), "method": method, "best_baseline": best,
                         "margin": difference.mean(), "margin_std": difference.std(ddof=1) if len(difference) > 1 else 0.0,
                         "n_seeds": len(difference)})
    return pd.DataFrame(rows)


def distance_points(table: pd.DataFrame, stage: str = "probe", methods=DISTILLERS) -> pd.DataFrame:
    """One row per (method, setting, seed) of ``methods`` at ``stage``: test error and both distances."""
    part = table[(table["stage"] == stage) & table["method"].isin(methods)].dropna(axis=1, how="all")
    index = [c for c in part.columns if c not in ("metric", "value", "study")]
    wide = part.pivot_table(index=index, columns="metric", values="value").reset_index()
    return wide.assign(test_error=1 - wide["test_acc"])


def distance_correlation(points: pd.DataFrame, distance: str = "tv_lower_bound", n_boot: int = 2000) -> dict:
    """Spearman ρ between the estimated distance and the target test error, bootstrap over points."""
    return rank_correlation(points[distance], points["test_error"], n_boot=n_boot)


def correlations_by_method(points: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """ρ between each distance estimate and the target error, per distiller and pooled: a loss that
    aligns embeddings only up to their similarities (CMD, CMC) can leave a distance that tracks the
    modality gap less than a regression onto the teacher's embedding (L2) does."""
    groups = [(method, part) for method, part in points.groupby("method", sort=False)] + [("all", points)]
    return pd.DataFrame([{"method": method, "distance": distance, **rank_correlation(part[distance], part["test_error"],
                                                                                   n_boot=n_boot)}
                         for method, part in groups for distance in DISTANCES]).round(3)


def distance_knob_correlations(points: pd.DataFrame, knob: str = "alpha", n_boot: int = 500) -> pd.DataFrame:
    """How well each distance estimate orders the settings of ``knob``: Spearman ρ between the
    estimate and the knob over the points, with its bootstrap interval; one row per estimate. An
    estimate that is the same at every point orders nothing: its ρ is taken as 0."""
    rows = {distance: rank_correlation(points[distance], points[knob], n_boot=n_boot) for distance in DISTANCES}
    table = pd.DataFrame(rows).T[["rho", "low", "high", "n"]]
    table["rho"] = table["rho"].fillna(0.0)
    return table.rename_axis("distance")


RANDOM_ENCODER = {"probe": "no_distill", "finetune": "finetune_only"}  # the undistilled target encoder per stage


def distillation_gain(table: pd.DataFrame, by: list[str], method: str = "cmd") -> pd.DataFrame:
    """Per ``by`` and stage: ``method``'s accuracy minus that of the random target encoder at the
    same stage (``no_distill`` probed, ``finetune_only`` fine-tuned), seed by seed, as its mean
    and std in points; rows ``by``, columns (statistic, stage). A stage without both is left out."""
    acc = table[table["metric"] == "test_acc"]
    rows = []
    for key, part in acc.groupby([*by, "stage"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        per_seed = part.pivot_table(index="seed", columns="method", values="value")
        if not {method, RANDOM_ENCODER[key[-1]]} <= set(per_seed.columns):
            continue
        difference = 100 * (per_seed[method] - per_seed[RANDOM_ENCODER[key[-1]]])
        rows.append({**dict(zip([*by, "stage"], key)), "gain": difference.mean(),
                     "gain_std": difference.std(ddof=1) if len(difference) > 1 else 0.0})
    return pd.DataFrame(rows).pivot(index=by, columns="stage", values=["gain", "gain_std"])


def scratch_gap(table: pd.DataFrame, by: list[str], stage: str = "finetune") -> pd.Series:
    """Per ``by``: fine-tuning from scratch (``finetune_only``) minus the best distilled encoder of
    the same seed (the highest of CMD, CMC and L2 at ``stage``), averaged over seeds, in points.
    Positive: fine-tuning from scratch overtakes every distilled encoder."""
    acc = table[(table["metric"] == "test_acc") & (table["stage"] == stage)]
    per_seed = acc.pivot_table(index=[*by, "seed"], columns="method", values="value")
    distilled = per_seed[[m for m in DISTILLERS if m in per_seed]].max(axis=1)
    return (100 * (per_seed["finetune_only"] - distilled)).groupby(level=by).mean().rename("scratch − best distilled")


def correlation_line(correlation: dict, distance: str = "tv_lower_bound") -> str:
    return (f"ρ({distance}, target error) = {correlation['rho']:+.2f} "
            f"[{correlation['low']:+.2f}, {correlation['high']:+.2f}], n = {correlation['n']}")


_MARGIN_VALUES = ("stage", "method", "best_baseline", "margin", "margin_std", "n_seeds")  # the rest of a margin row: its setting
PAIR_COLUMNS = ["dataset", "source", "target"]


def _name(column: str) -> str:
    return "α" if column == "alpha" else column


def setting_label(row: pd.Series, columns: list[str]) -> str:
    """A margin row's setting in words: ``"mfeat: pixels → fourier"`` for a pair, else
    ``"α = 0.25"``-style items."""
    if set(PAIR_COLUMNS) <= set(columns):
        return f"{row['dataset']}: {row['source']} → {row['target']}"
    return ", ".join(f"{_name(c)} = {row[c]:g}" if isinstance(row[c], numbers.Number) else f"{_name(c)} = {row[c]}"
                     for c in columns)


def claims(margin: pd.DataFrame, correlation: dict, stage: str = "finetune") -> pd.DataFrame:
    """The paper-vs-kit rows: the distillers' margin over the best baseline (at ``stage``), one row
    per setting of ``margin`` (its ``setting`` in words), and the link between modality distance
    and target error (across every setting)."""
    rows = []
    settings = [c for c in margin.columns if c not in _MARGIN_VALUES]
    for _, row in margin[margin["stage"] == stage].iterrows():
        paper_margin = PAPER_SKETCHY[row["method"]] - PAPER_SKETCHY["best baseline"]
        se = row["margin_std"] / np.sqrt(row["n_seeds"])
        verdict = ("held" if row["margin"] - 2 * se > 0 else
                   "not held (worse than the best baseline)" if row["margin"] + 2 * se < 0 else
                   "not resolved (within two standard errors of 0)")
        rows.append({
            "setting": setting_label(row, settings) if settings else None,
            "claim": f"{row['method'].upper()} beats the best baseline by 1–3 points",
            "paper": f"Sketchy top-1: {PAPER_SKETCHY[row['method']]:.2f} vs {PAPER_SKETCHY['best baseline']:.2f} "
                     f"(+{paper_margin:.2f})",
            "kit": f"{row['margin']:+.2f} ± {row['margin_std']:.2f} points over {row['best_baseline']} ({stage})",
            "criterion": "mean margin more than two standard errors above 0 (the 1–3 point size is the paper's data, not a tolerance)",
            "verdict": verdict,
        })
    relation = ("held" if correlation["low"] > 0 else "not held (ρ < 0)" if correlation["high"] < 0 else
                "not resolved (the interval contains 0)")
    rows.append({
        "setting": (f"across {'pairs' if set(PAIR_COLUMNS) <= set(settings) else ', '.join(map(_name, settings))}"
                    if settings else None),
        "claim": "a larger modality distance, a larger target error",
        "paper": "argued by the theory (total variation between the modalities' latent distributions); no measurement",
        "kit": correlation_line(correlation),
        "criterion": "95% bootstrap interval of ρ entirely above 0",
        "verdict": relation,
    })
    return pd.DataFrame(rows)


def accuracy_figure(table: pd.DataFrame, x: str, title: str = "", x_title: str | None = None) -> go.Figure:
    """Test accuracy against ``x`` per method, the probe stage solid and fine-tuning dashed."""
    acc = table[table["metric"] == "test_acc"]
    summary = summarize(acc, by=[x, "method", "stage"])
    summary["line"] = summary["method"] + " · " + summary["stage"]
    fig = figures.metric_vs_knob(summary, x=x, color="line", title=title, x_title=x_title or x)
    for trace in fig.data:
        if trace.name and trace.name.endswith("finetune"):
            trace.line.dash = "dash"
    return fig


def distance_figure(points: pd.DataFrame, color: str, correlation: dict, distance: str = "tv_lower_bound",
                    title: str = "Target error against the estimated modality distance") -> go.Figure:
    """One marker per (method, setting, seed): the estimated distance against the target test error."""
    fig = go.Figure()
    for i, (name, part) in enumerate(points.groupby(color, sort=True)):
        fig.add_trace(go.Scatter(x=part[distance].tolist(), y=(100 * part["test_error"]).tolist(), mode="markers",
                                 name=f"{color} {figures.display_name(name)}", marker=dict(color=figures.color_for(str(name), i)),
                                 text=part["method"].tolist()))
    fig = figures.style(fig, f"{title}<br><sup>{correlation_line(correlation, distance)}</sup>",
                        "TV lower bound |2·acc − 1| (domain classifier)" if distance == "tv_lower_bound" else "MMD²",
                        "target test error (%)")
    return fig

