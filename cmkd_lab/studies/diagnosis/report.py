"""What 07_when_does_cmkd_help shows: the scores of every predictor (:func:`evaluate`), their
figures, the planted family's check, the costs and a conclusion written from the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ...analysis import claims
from ...report import figures
from .benchmark import GAUSSIAN
from .predictors import PREDICTORS, directions, families, kinds, predictor_names, sources
from .scoring import LOGISTIC, MAJORITY, claim_rows, leaderboard, leave_one_dataset_out, rank_scores

PAPER_FAMILIES = ("MFH", "NTDH", "CMCD", "DS-CMKD")
BASELINE_FAMILIES = ("naive",)


@dataclass
class Evaluation:
    """Every predictor scored on a pair table: rank scores (all methods), per method the
    leave-one-dataset-out predictions and summary, and the claims."""

    pairs: pd.DataFrame
    predictors: list[str]
    scores: pd.DataFrame
    held_out: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    claims: pd.DataFrame

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.pairs["method"]))

    def leaderboard(self, method: str) -> pd.DataFrame:
        """One row per predictor for ``method``: τ_w, ρ, leave-one-dataset-out balanced accuracy
        and AUROC, each with its 95% interval (:func:`.scoring.leaderboard`)."""
        return leaderboard(self.scores, self.held_out[method][1], method, families(self.predictors))

    def held_out_summary(self) -> pd.DataFrame:
        """Every method's leave-one-dataset-out summary, one table."""
        return pd.concat([summary.assign(method=m) for m, (_, summary) in self.held_out.items()], ignore_index=True)


def evaluate(pairs: pd.DataFrame, n_boot: int = claims.N_BOOT, seed: int = 0) -> Evaluation:
    """Score every registered predictor present in ``pairs`` (:func:`.benchmark.pair_table`)."""
    names = [n for n in predictor_names() if n in pairs]
    signs = directions(names)
    scores = rank_scores(pairs, signs, n_boot=n_boot, seed=seed)
    methods = list(dict.fromkeys(pairs["method"]))
    held_out = {m: leave_one_dataset_out(pairs, signs, m, n_boot=n_boot, seed=seed) for m in methods}
    rows = []
    for method in methods:
        rows += claim_rows(pairs, signs, kinds(names), sources(names), method, n_boot=n_boot, seed=seed)
    return Evaluation(pairs, names, scores, held_out, claims.table(rows))


# ----------------------------------------------------------------------------- tables
def overview(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: pairs, mean Δ (points) and how many pairs KD helps, hurts or leaves
    unchanged (by Δ's interval over seeds)."""
    counts = pairs.pivot_table(index=["dataset", "method"], columns="outcome", values="pair", aggfunc="count")
    counts = counts.reindex(columns=["helps", "no difference", "hurts"]).fillna(0).astype(int)
    summary = pairs.groupby(["dataset", "method"]).agg(pairs=("pair", "count"), mean_delta=("delta", "mean"))
    return summary.join(counts).round(2).reset_index()


def cost_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per predictor: its family, what it measures and its mean cost (seconds per task: the probe
    stages it reads plus its own computation)."""
    rows = []
    for name in predictor_names():
        if f"cost_{name}" in pairs:
            predictor = PREDICTORS.get(name)
            rows.append(
                {
                    "predictor": name,
                    "family": predictor.family,
                    "reads": ", ".join(predictor.stages) or "the inputs only",
                    "cost (s per task)": round(float(pairs[f"cost_{name}"].mean()), 4),
                    "what it measures": predictor.about,
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the conclusion
def best_of(board: pd.DataFrame, scores: pd.DataFrame, method: str, family_set: Sequence[str]) -> pd.Series | None:
    """The predictor of ``family_set`` with the highest τ_w for ``method`` (its rank-score row)."""
    names = set(board.loc[board["family"].isin(family_set), "predictor"])
    rows = scores[(scores["method"] == method) & scores["predictor"].isin(names)].dropna(subset=["tau_w"])
    return None if rows.empty else rows.sort_values("tau_w", ascending=False).iloc[0]


def conclusion(evaluation: Evaluation) -> str:
    """A paragraph per method, from the numbers: the best paper signal against the best naive
    baseline and the random floor. A paper's signal *beats* the baselines when the lower end of its
    τ_w interval lies above the best baseline's τ_w; it *matches* them when the intervals overlap."""
    pairs = evaluation.pairs
    n_pairs, n_datasets = pairs[["dataset", "pair"]].drop_duplicates().shape[0], pairs["dataset"].nunique()
    lines = [f"Across **{n_pairs} ordered pairs of {n_datasets} datasets**:", ""]
    for method in evaluation.methods:
        board = evaluation.leaderboard(method)
        paper = best_of(board, evaluation.scores, method, PAPER_FAMILIES)
        naive = best_of(board, evaluation.scores, method, BASELINE_FAMILIES)
        random = best_of(board, evaluation.scores, method, ("random",))
        if paper is None or naive is None:
            lines.append(f"- **{method}**: too few pairs with both a paper signal and a baseline to compare.")
            continue
        verdict = (
            "**beats** the naive baselines"
            if paper["tau_w_low"] > naive["tau_w"]
            else "does **not** beat the naive baselines"
        )
        floor = "" if random is None else f"; the random floor τ_w = {random['tau_w']:+.2f}"
        held = evaluation.held_out[method][1].set_index("model")["balanced_accuracy"]
        best_paper, best_naive = held.get(paper["predictor"], np.nan), held.get(naive["predictor"], np.nan)
        lodo = f"held-out balanced accuracy {best_paper:.2f} vs {best_naive:.2f}"
        family = PREDICTORS.get(paper["predictor"]).family
        lines.append(
            f"- **{method}**: the best paper signal, `{paper['predictor']}` ({family}), "
            f"τ_w = {paper['tau_w']:+.2f} [{paper['tau_w_low']:+.2f}, {paper['tau_w_high']:+.2f}], {verdict}: "
            f"the best of them, `{naive['predictor']}`, τ_w = {naive['tau_w']:+.2f} "
            f"[{naive['tau_w_low']:+.2f}, {naive['tau_w_high']:+.2f}]{floor}; {lodo} "
            f"(logistic on all signals {held.get(LOGISTIC, np.nan):.2f}, majority {held.get(MAJORITY, np.nan):.2f})."
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the planted family
MG_SHARE_TRACKS_GAMMA = claims.Claim(
    claim="Algorithm 1's modality-general share ranks the planted family's pairs by γ",
    source="kit (MFH's Algorithm 1 on the Fig. 2 generator)",
    kind="check",
    quantity="Spearman ρ(γ, mg_share) over (γ, seed), seeds resampled whole",
    unit="Spearman ρ",
    prediction="> 0",
    sesoi=0.3,
)
GAIN_RISES_WITH_GAMMA = claims.Claim(
    claim="the KD gain rises with the modality-general share γ",
    source="MFH §4, Fig. 2",
    kind="paper",
    quantity="Spearman ρ(γ, Δ) over (γ, seed), seeds resampled whole",
    unit="Spearman ρ",
    prediction="> 0",
    sesoi=0.3,
)


def planted_rows(table: pd.DataFrame, method: str = "kd") -> pd.DataFrame:
    """Per (γ, seed) of the planted family: γ, the MFH signal and ``method``'s Δ (points)."""
    planted = table[table["dataset"] == GAUSSIAN]
    if planted.empty:
        return pd.DataFrame(columns=["gamma", "seed", "mg_share", "delta"])
    index = ["gamma", "seed"]
    share = planted[(planted["method"] == "signal") & (planted["metric"] == "mg_share")].set_index(index)["value"]
    accuracy = planted[planted["metric"] == "test_acc"].pivot_table(index=index, columns="method", values="value")
    delta = 100 * (accuracy[method] - accuracy["no_kd"]) if method in accuracy else np.nan
    return pd.DataFrame({"mg_share": share, "delta": delta}).reset_index()


def planted_claims(table: pd.DataFrame, method: str = "kd") -> list[dict]:
    """The planted family's two claims: Δ rises with γ (MFH Fig. 2) and the MFH signal tracks γ."""
    rows = planted_rows(table, method)
    if rows.empty:
        return []
    setting = f"{GAUSSIAN}, {method}"
    return [
        claim.judge_correlation(rows["gamma"], rows[column], clusters=rows["seed"], setting=setting)
        for claim, column in ((GAIN_RISES_WITH_GAMMA, "delta"), (MG_SHARE_TRACKS_GAMMA, "mg_share"))
    ]


def planted_figure(table: pd.DataFrame, method: str = "kd") -> go.Figure:
    """The planted family: the MFH signal and Δ against γ, one marker per seed."""
    rows = planted_rows(table, method)
    fig = go.Figure()
    fig.add_scatter(x=rows["gamma"], y=rows["mg_share"], mode="markers", name="mg_share (left)")
    fig.add_scatter(x=rows["gamma"], y=rows["delta"], mode="markers", name=f"Δ {method} (points, right)", yaxis="y2")
    title = "The planted family: MFH's signal and the gain against γ"
    figures.style(fig, title, "γ (modality-general share)", "mg_share")
    fig.update_layout(yaxis2={"title": "Δ (points)", "overlaying": "y", "side": "right"})
    return fig


# ----------------------------------------------------------------------------- figures
def score_figure(evaluation: Evaluation) -> go.Figure:
    """Each predictor's τ_w with Δ and its 95% interval over datasets, one colour per method."""
    scores = evaluation.scores.dropna(subset=["tau_w"])
    fig = go.Figure()
    for i, method in enumerate(evaluation.methods):
        part = scores[scores["method"] == method]
        fig.add_scatter(
            x=part["tau_w"],
            y=[f"{families()[p]} · {p}" for p in part["predictor"]],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": part["tau_w_high"] - part["tau_w"],
                "arrayminus": part["tau_w"] - part["tau_w_low"],
            },
            mode="markers",
            name=method,
            marker={"color": figures.color_for(method, i)},
        )
    figures.style(
        fig, "Which signal ranks the pairs by their KD gain?", "weighted Kendall τ with Δ (oriented signal)", ""
    )
    fig.add_vline(x=0, line={"color": "grey", "dash": "dot"})
    return fig


def scatter_figure(pairs: pd.DataFrame, method: str = "kd", predictors: Sequence[str] | None = None) -> go.Figure:
    """Δ of ``method`` against each predictor, one panel per predictor, one colour per dataset."""
    names = [n for n in predictors or predictor_names() if n in pairs and pairs[n].notna().any()]
    part = pairs[pairs["method"] == method]
    long = part.melt(id_vars=["dataset", "pair", "delta"], value_vars=names, var_name="predictor", value_name="signal")
    fig = px.scatter(
        long.dropna(subset=["signal"]),
        x="signal",
        y="delta",
        color="dataset",
        facet_col="predictor",
        facet_col_wrap=4,
        hover_data=["pair"],
        facet_col_spacing=0.05,
        facet_row_spacing=0.08,
    )
    fig.update_xaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(
        title=f"Δ of {method} (points) against each signal, one marker per ordered pair",
        height=260 * ((len(names) + 3) // 4),
    )
    return fig


def signal_percentiles(pairs: pd.DataFrame, signals: Mapping[str, float]) -> pd.DataFrame:
    """Where each of ``signals`` (predictor → value) sits among the benchmark's pairs: the share of
    pairs (in %) whose oriented signal is lower, and the benchmark's range."""
    table = pairs.drop_duplicates(["dataset", "pair"])
    rows = []
    for name, value in signals.items():
        if name not in table:
            continue
        known = table[name].dropna().to_numpy()
        sign = PREDICTORS.get(name).direction
        below = np.nan if np.isnan(value) or not len(known) else 100 * float(np.mean(sign * known < sign * value))
        low, high = (known.min(), known.max()) if len(known) else (np.nan, np.nan)
        rows.append(
            {"predictor": name, "value": value, "percentile": below, "benchmark_min": low, "benchmark_max": high}
        )
    return pd.DataFrame(rows)


def pair_signal_figure(pairs: pd.DataFrame, dataset: str, pair: str) -> go.Figure:
    """Explore: one pair's signals against the benchmark's distribution (each predictor's
    oriented signal as a percentile among all pairs; the pair in red)."""
    table = pairs.drop_duplicates(["dataset", "pair"]).reset_index(drop=True)
    chosen = table[(table["dataset"] == dataset) & (table["pair"] == pair)]
    if chosen.empty:
        raise ValueError(f"no pair {pair!r} of dataset {dataset!r} in the benchmark")
    names = [n for n in predictor_names() if n in table and table[n].notna().any()]
    fig = go.Figure()
    for name in names:
        oriented = PREDICTORS.get(name).direction * table[name]
        percentile = 100 * oriented.rank(pct=True)
        fig.add_scatter(
            x=percentile,
            y=[name] * len(table),
            mode="markers",
            marker={"color": "lightgrey"},
            showlegend=False,
            hovertext=table["dataset"] + ": " + table["pair"],
        )
        fig.add_scatter(
            x=percentile[chosen.index],
            y=[name],
            mode="markers",
            marker={"color": "crimson", "size": 12},
            showlegend=False,
            hovertext=[f"{name} = {chosen[name].iloc[0]:.3g}"],
        )
    deltas = pairs[(pairs["dataset"] == dataset) & (pairs["pair"] == pair)]
    measured = ", ".join(f"{m} {d:+.2f}" for m, d in zip(deltas["method"], deltas["delta"]))
    figures.style(
        fig,
        f"{dataset}: {pair} among the benchmark's pairs (measured Δ: {measured})",
        "percentile of the oriented signal among all pairs (right: KD predicted to help more)",
        "",
    )
    return fig


def pair_names(pairs: pd.DataFrame) -> list[str]:
    """``"dataset: pair"`` per benchmark pair, for the Explore section's dropdown."""
    table = pairs.drop_duplicates(["dataset", "pair"])
    return [f"{d}: {p}" for d, p in zip(table["dataset"], table["pair"])]


def explore_pair(pairs: pd.DataFrame, name: str) -> go.Figure:
    dataset, pair = name.split(": ", 1)
    return pair_signal_figure(pairs, dataset, pair)
