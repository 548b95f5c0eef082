"""What the CMCD notebooks read from a results table: the method table, each distiller's margin
over the best baseline beside the paper's numbers, target error against the estimated modality
distance, their figures, and the notebooks' claims (stated below before the data, judged by
:mod:`cmkd_lab.analysis.claims`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from ...analysis import claims
from ...analysis.metrics import rank_correlation
from ...analysis.results import mean_std_cells, summarize
from ...report import figures
from .pipeline import DISTILLERS, METHODS

BASELINES = ("l2", "no_distill", "target_ssl", "finetune_only")  # the paper's baselines, L2 alignment among them
PAPER_SKETCHY = {"cmd": 72.61, "cmc": 73.24, "best baseline": 71.33}  # top-1 (%), papers.md §3
DISTANCES = ("tv_lower_bound", "mmd")
DISTANCE_NAMES = {"tv_lower_bound": "TV lower bound", "mmd": "MMD²"}
CLAIM_STAGE = "finetune"  # our reading: the paper's Sketchy numbers are those of the fine-tuned target encoder

# The claims, stated before the data. papers.md §3: CMD and CMC beat the best baseline by 1–3 points
# (Sketchy top-1: CMD 72.61, CMC 73.24 vs 71.33); one row per setting and distiller, each seed's
# distiller − best baseline (the baseline with the highest mean, L2 alignment among them).
BEATS_BEST_BASELINE = {
    method: claims.Claim(
        claim=f"{method.upper()} beats the best baseline after fine-tuning (the paper: by 1–3 points)",
        source="CMCD abstract; Sketchy top-1 (papers.md §3)",
        kind="paper",
        quantity=f"test accuracy, {method} − best baseline, fine-tuned, paired by seed",
        unit="points",
        prediction="> 0",
        sesoi=1.0,  # one accuracy point: the smallest gain a distillation paper reports, the paper's own from 1.3
    )
    for method in ("cmd", "cmc")
}
# The paper argues, by a convergence bound, that the distance between the modalities drives the
# target error; it measures no such link, so the kit's measurement is its own finding. α moves both
# the distance and the target's class information, so the correlation is taken within each α.
DISTANCE_TRACKS_ERROR = {
    distance: claims.Claim(
        claim=f"a larger estimated modality distance ({DISTANCE_NAMES[distance]}), a larger target error",
        source="kit (CMCD §3 argues it from its bound, with no measurement)",
        kind="finding",
        quantity=f"Spearman ρ({distance}, target test error) of the probed distilled encoders",
        unit="Spearman ρ",
        prediction="> 0",
        sesoi=0.1,  # Cohen's small correlation: a weaker monotone link would carry no argument
    )
    for distance in DISTANCES
}
# The data's knob is built to move the modality distance: an estimate that does not grow with it
# measures something else.
DISTANCE_FOLLOWS_KNOB = {
    distance: claims.Claim(
        claim=f"the estimated modality distance ({DISTANCE_NAMES[distance]}) grows with α",
        source="kit",
        kind="check",
        quantity=f"Spearman ρ({distance}, α) of the probed distilled encoders",
        unit="Spearman ρ",
        prediction="> 0",
        sesoi=0.1,  # as above
    )
    for distance in DISTANCES
}
MIN_BOOTSTRAP_UNITS = 4  # claims.judge_correlation gives no interval over fewer units


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
    rows = []
    for setting, method, best, per_seed in _margin_pairs(table, by):
        difference = 100 * (per_seed[method] - per_seed[best])
        rows.append(
            {
                **setting,
                "method": method,
                "best_baseline": best,
                "margin": difference.mean(),
                "margin_std": difference.std(ddof=1) if len(difference) > 1 else 0.0,
                "n_seeds": len(difference),
            }
        )
    return pd.DataFrame(rows)


def _margin_pairs(table: pd.DataFrame, by: list[str]):
    """Per ``by`` + stage and distiller (CMD, CMC): the setting (a dict with ``stage``), the
    distiller, the best baseline and the seeds' accuracies (one row per seed, one column per method)."""
    acc = table[table["metric"] == "test_acc"]
    for key, part in acc.groupby([*by, "stage"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        per_seed = part.pivot_table(index="seed", columns="method", values="value")
        best = per_seed[[b for b in BASELINES if b in per_seed]].mean().idxmax()
        for method in [m for m in ("cmd", "cmc") if m in per_seed]:
            yield dict(zip([*by, "stage"], key)), method, best, per_seed


def paper_vs_kit(margin: pd.DataFrame, stage: str = CLAIM_STAGE) -> pd.DataFrame:
    """The paper's Sketchy margins beside the kit's at ``stage``, one row per setting and distiller
    (for reading: the verdicts are the claims')."""
    settings = [c for c in margin.columns if c not in _MARGIN_VALUES]
    part = margin[margin["stage"] == stage]
    return pd.DataFrame(
        {
            "setting": [setting_label(row, settings) for _, row in part.iterrows()],
            "method": part["method"].str.upper().tolist(),
            "paper: Sketchy top-1 margin": [
                f"{PAPER_SKETCHY[m] - PAPER_SKETCHY['best baseline']:+.2f} "
                f"({PAPER_SKETCHY[m]:.2f} vs {PAPER_SKETCHY['best baseline']:.2f})"
                for m in part["method"]
            ],
            f"kit: margin ({stage})": [
                f"{mean:+.2f} ± {std:.2f} (n = {n})"
                for mean, std, n in zip(part["margin"], part["margin_std"], part["n_seeds"])
            ],
            "kit: best baseline": part["best_baseline"].tolist(),
        }
    )


def distance_points(table: pd.DataFrame, stage: str = "probe", methods=DISTILLERS) -> pd.DataFrame:
    """One row per (method, setting, seed) of ``methods`` at ``stage``: test error and both
    distances, and for real pairs their label (``pair``, as :func:`setting_label` writes it)."""
    part = table[(table["stage"] == stage) & table["method"].isin(methods)].dropna(axis=1, how="all")
    index = [c for c in part.columns if c not in ("metric", "value", "study")]
    wide = part.pivot_table(index=index, columns="metric", values="value").reset_index()
    if set(PAIR_COLUMNS) <= set(wide.columns):
        wide["pair"] = [setting_label(row, PAIR_COLUMNS) for _, row in wide.iterrows()]
    return wide.assign(test_error=1 - wide["test_acc"])


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
        rows.append(
            {
                **dict(zip([*by, "stage"], key)),
                "gain": difference.mean(),
                "gain_std": difference.std(ddof=1) if len(difference) > 1 else 0.0,
            }
        )
    return pd.DataFrame(rows).pivot(index=by, columns="stage", values=["gain", "gain_std"])


def scratch_gap(table: pd.DataFrame, by: list[str], stage: str = "finetune") -> pd.Series:
    """Per ``by``: fine-tuning from scratch (``finetune_only``) minus the best distilled encoder of
    the same seed (the highest of CMD, CMC and L2 at ``stage``), averaged over seeds, in points.
    Positive: fine-tuning from scratch overtakes every distilled encoder."""
    acc = table[(table["metric"] == "test_acc") & (table["stage"] == stage)]
    per_seed = acc.pivot_table(index=[*by, "seed"], columns="method", values="value")
    distilled = per_seed[[m for m in DISTILLERS if m in per_seed]].max(axis=1)
    return (100 * (per_seed["finetune_only"] - distilled)).groupby(level=by).mean().rename("scratch − best distilled")


# the columns of a margin row beside its setting
_MARGIN_VALUES = ("stage", "method", "best_baseline", "margin", "margin_std", "n_seeds")
PAIR_COLUMNS = ["dataset", "source", "target"]


def _name(column: str) -> str:
    return "α" if column == "alpha" else column


def setting_label(row: pd.Series, columns: list[str]) -> str:
    """A margin row's setting in words: ``"mfeat: pixels → fourier"`` for a pair, else
    ``"α = 0.25"``-style items."""
    if set(PAIR_COLUMNS) <= set(columns):
        return f"{row['dataset']}: {row['source']} → {row['target']}"
    return ", ".join(
        f"{_name(c)} = {row[c]:g}" if isinstance(row[c], numbers.Number) else f"{_name(c)} = {row[c]}" for c in columns
    )


def margin_claims(
    table: pd.DataFrame, by: list[str], n_classes: int | Mapping[str, int], stage: str = CLAIM_STAGE
) -> list[dict]:
    """:data:`BEATS_BEST_BASELINE` per setting of ``by`` and distiller at ``stage``: each seed's
    distiller − best baseline accuracy, in points. ``n_classes`` is the number of classes (per
    ``dataset`` when a mapping); a comparison where either side's mean test accuracy is within the
    engine's chance margin of 1/K is passed as at chance."""
    rows = []
    for setting, method, best, per_seed in _margin_pairs(table[table["stage"] == stage], by):
        classes = n_classes[setting["dataset"]] if isinstance(n_classes, Mapping) else n_classes
        means = per_seed[[method, best]].mean()
        at_chance = [name for name in (method, best) if means[name] <= claims.chance_ceiling(classes)]
        note = "; ".join(
            f"{name}: test accuracy {100 * means[name]:.1f} %, chance {100 / classes:.1f} %" for name in at_chance
        )
        label = f"{setting_label(pd.Series(setting), by)} vs {best}"
        rows.append(
            BEATS_BEST_BASELINE[method].judge(
                100 * (per_seed[method] - per_seed[best]), setting=label, at_chance=bool(at_chance), note=note
            )
        )
    return rows


def distance_claims(points: pd.DataFrame, *, within: str | None, units: str, setting: str) -> list[dict]:
    """:data:`DISTANCE_TRACKS_ERROR` for each distance estimate: Spearman ρ with the target error,
    taken within each value of the column ``within`` (a knob that drives both; None: across all
    points), the column ``units`` naming the independent units (resampled whole)."""
    return [
        _correlation_row(DISTANCE_TRACKS_ERROR[d], points[d], points["test_error"], points, within, units, setting)
        for d in DISTANCES
    ]


def knob_claims(points: pd.DataFrame, knob: str = "alpha", units: str = "seed") -> list[dict]:
    """:data:`DISTANCE_FOLLOWS_KNOB` for each distance estimate: Spearman ρ with ``knob``, the
    column ``units`` naming the independent units."""
    return [
        _correlation_row(
            DISTANCE_FOLLOWS_KNOB[d], points[d], points[knob], points, None, units, f"across {_name(knob)}"
        )
        for d in DISTANCES
    ]


def _correlation_row(
    claim: claims.Claim, x: pd.Series, y: pd.Series, points: pd.DataFrame, within: str | None, units: str, setting: str
) -> dict:
    n_units = points[units].nunique()
    note = (
        f"{n_units} {units}{'' if n_units == 1 else 's'}: a bootstrap interval needs {MIN_BOOTSTRAP_UNITS} or more"
        if n_units < MIN_BOOTSTRAP_UNITS
        else ""
    )
    return claim.judge_correlation(
        x.to_numpy(float),
        y.to_numpy(float),
        clusters=points[units].to_numpy(),
        strata=None if within is None else points[within].to_numpy(),
        setting=setting,
        note=note,
    )


def claim_line(row: Mapping) -> str:
    """A correlation claim's row in one line: its setting, estimate, 95 % interval and number of
    units (the verdict, Holm-adjusted with the notebook's other claims, is the claims table's)."""
    interval = "no interval" if pd.isna(row["ci_low"]) else f"95 % CI [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return f"{row['setting']}: ρ = {row['estimate']:+.2f}, {interval}, {row['n_units']} units"


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


def distance_figure(
    points: pd.DataFrame,
    color: str,
    claim_row: Mapping,
    distance: str = "tv_lower_bound",
    title: str = "Target error against the estimated modality distance",
) -> go.Figure:
    """One marker per (method, setting, seed): the estimated distance against the target test
    error; the subtitle is the judged claim (:func:`claim_line`)."""
    fig = go.Figure()
    for i, (name, part) in enumerate(points.groupby(color, sort=True)):
        fig.add_trace(
            go.Scatter(
                x=part[distance].tolist(),
                y=(100 * part["test_error"]).tolist(),
                mode="markers",
                name=f"{color} {figures.display_name(name)}",
                text=part["method"].tolist(),
                marker=dict(color=figures.color_for(str(name), i)),
            )
        )
    fig = figures.style(
        fig,
        f"{title}<br><sup>{claim_line(claim_row)}</sup>",
        "TV lower bound |2·acc − 1| (domain classifier)" if distance == "tv_lower_bound" else "MMD²",
        "target test error (%)",
    )
    return fig
