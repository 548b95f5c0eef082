"""What the DS-CMKD notebook reads from a results table: the observation table (clean vs degraded
features), the method tables, how each DS loss moves its own diagnostic, the notebook's claims
(stated below before the data, judged by :mod:`cmkd_lab.analysis.claims`), their figures, and
the Explore callback."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...analysis import claims
from ...analysis.results import mean_std_cells, mean_std_table, summarize
from ...report import figures
from .study import ALL_METHODS, DIAGNOSTICS, DS_BASELINE, DS_METHODS, METRICS, NO_TEACHER, DSParameters, run

PAIR_COLUMNS = ["dataset", "source", "target", "severity"]
METRIC_TITLES = {
    "test_acc": "test accuracy (%)",
    "channel_corr": "mean |off-diagonal channel correlation|",
    "spatial_entropy": "spatial entropy (nats)",
    "effective_rank": "effective rank",
}

# The claims, stated before the data (papers.md §4), one row per image set or registered pair.
# Units: seeds. One teacher serves every severity of a seed, so a seed's severities are averaged.
CORRELATION_SESOI = 0.05  # in mean |r|: half of Cohen's small correlation (0.1); less is no structure to speak of
ENTROPY_SESOI = 0.1  # in nats: moves the effective number of positions, exp(entropy), by about 10 %
ACCURACY_SESOI = 1.0  # in points: the smallest gain a distillation paper reports
CLEAN_LESS_CORRELATED = claims.Claim(
    claim="the high-quality modality's output features have lower channel correlation",
    source="DS-CMKD abstract, its motivating analysis (papers.md §4)",
    kind="paper",
    quantity="mean |off-diagonal channel correlation|, degraded CE student − clean teacher, per seed",
    unit="mean |r|",
    prediction="> 0",
    sesoi=CORRELATION_SESOI,
)
CLEAN_MORE_UNIFORM = claims.Claim(
    claim="the high-quality modality's intermediate features spread more uniformly over positions",
    source="DS-CMKD abstract, its motivating analysis (papers.md §4)",
    kind="paper",
    quantity="spatial entropy of the intermediate map, degraded CE student − clean teacher, per seed",
    unit="nats",
    prediction="< 0",
    sesoi=ENTROPY_SESOI,
)
DS_BEATS = {
    baseline: claims.Claim(
        claim=f"DS-CMKD (ds_both) raises the low-quality student's accuracy over {name}",
        source="DS-CMKD abstract (papers.md §4)",
        kind="paper",
        quantity=f"test accuracy, ds_both − {baseline}, per seed",
        unit="points",
        prediction="> 0",
        sesoi=ACCURACY_SESOI,
    )
    for baseline, name in (("ce", "CE (no teacher)"), ("kd", "KD (the distillation it builds on)"))
}
GAIN_GROWS_WITH_GAP = claims.Claim(
    claim="DS-CMKD's gain over KD is larger when the modality gap is larger",
    source="DS-CMKD abstract (papers.md §4)",
    kind="paper",
    quantity="test accuracy, (ds_both − kd) at the largest severity − at the smallest, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ACCURACY_SESOI,
)
# The kit's own ablations: each DS term alone, and the teacher's part.
TERM_BEATS_KD = {
    method: claims.Claim(
        claim=f"{method} (KD + the {term} term alone) raises accuracy over KD",
        source="kit",
        kind="finding",
        quantity=f"test accuracy, {method} − kd, per seed",
        unit="points",
        prediction="> 0",
        sesoi=ACCURACY_SESOI,
    )
    for method, term in (("ds_ci", "independence"), ("ds_ud", "uniformity"))
}
TEACHER_ADDS_TO_DS = claims.Claim(
    claim=f"the teacher adds to the DS terms: ds_both beats {NO_TEACHER}",
    source="kit",
    kind="finding",
    quantity=f"test accuracy, ds_both − {NO_TEACHER}, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ACCURACY_SESOI,
)
DS_WITHOUT_TEACHER_BEATS_CE = claims.Claim(
    claim="the DS terms without a teacher raise accuracy over CE",
    source="kit",
    kind="finding",
    quantity=f"test accuracy, {NO_TEACHER} − ce, per seed",
    unit="points",
    prediction="> 0",
    sesoi=ACCURACY_SESOI,
)
# Each DS term moves the statistic it optimises, against the student of its fit without it (KD):
# a check that the loss does what it says, never support for the paper.
TERM_MOVES_ITS_DIAGNOSTIC = {
    "ds_ci": (
        "channel_corr",
        claims.Claim(
            claim="ds_ci lowers the channel correlation its term penalises",
            source="kit",
            kind="check",
            quantity="mean |off-diagonal channel correlation|, ds_ci − kd, per seed",
            unit="mean |r|",
            prediction="< 0",
            sesoi=CORRELATION_SESOI,
        ),
    ),
    "ds_ud": (
        "spatial_entropy",
        claims.Claim(
            claim="ds_ud raises the spatial entropy its term rewards",
            source="kit",
            kind="check",
            quantity="spatial entropy of the intermediate map, ds_ud − kd, per seed",
            unit="nats",
            prediction="> 0",
            sesoi=ENTROPY_SESOI,
        ),
    ),
}


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
        wide["degraded − clean"] = mean_std_cells(
            gap_summary.set_index(_by(part)).loc[wide.index].reset_index(), 1.0, 3
        )
        wide.columns = [
            f"{metric}: {name}"
            for name in ("clean teacher" if c == "teacher" else "degraded CE" if c == "ce" else c for c in wide.columns)
        ]
        rows.append(wide)
    return pd.concat(rows, axis=1).rename(index={-1.0: "—"})


def diagnostic_shifts(table: pd.DataFrame) -> pd.DataFrame:
    """How each DS student's diagnostics and accuracy differ from its baseline's (the student of
    its fit with both DS terms off: KD, or CE for the student without a teacher) on the same seed
    and pair: mean ± std of the difference (accuracy in points), per DS student and metric (all
    pairs and severities)."""
    rows = []
    present = set(table["method"])
    for method in [m for m in DS_BASELINE if m in present and DS_BASELINE[m] in present]:
        for metric in METRICS:
            difference = _scale(metric) * paired(table, metric, method, DS_BASELINE[method])["difference"]
            rows.append(
                {
                    "method": f"{method} − {DS_BASELINE[method]}",
                    "metric": metric,
                    "shift": f"{difference.mean():+.3f} ± {difference.std(ddof=1):.3f}",
                }
            )
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot(index="method", columns="metric", values="shift")[list(METRICS)]


def claims_table(table: pd.DataFrame, n_classes: Mapping[str, int]) -> pd.DataFrame:
    """Every claim of the notebook, judged (:func:`cmkd_lab.analysis.claims.table`: Holm within
    each kind), per image set or registered pair: the observation, DS-CMKD against CE and KD and
    its gain's growth with the gap (paper claims), the ablations (findings), and each DS term
    against the diagnostic it optimises (checks). ``n_classes`` gives each dataset's number of
    classes: a comparison where either side's mean test accuracy is within the engine's chance
    margin of 1/K is passed as at chance."""
    paper, findings, checks = [], [], []
    for dataset, part in table.groupby("dataset", sort=False):
        setting = _setting(part)
        chance = claims.chance_ceiling(n_classes[dataset])
        paper += [
            _difference_row(
                CLEAN_LESS_CORRELATED, part, "channel_corr", "ce", "teacher", setting, chance, "ds_analysis"
            ),
            _difference_row(
                CLEAN_MORE_UNIFORM, part, "spatial_entropy", "ce", "teacher", setting, chance, "ds_analysis"
            ),
        ]
        paper += [
            _difference_row(claim, part, "test_acc", "ds_both", baseline, setting, chance)
            for baseline, claim in DS_BEATS.items()
        ]
        paper.append(_growth_row(part, dataset, chance))
        findings += [
            _difference_row(claim, part, "test_acc", method, "kd", setting, chance)
            for method, claim in TERM_BEATS_KD.items()
        ]
        findings += [
            _difference_row(TEACHER_ADDS_TO_DS, part, "test_acc", "ds_both", NO_TEACHER, setting, chance),
            _difference_row(DS_WITHOUT_TEACHER_BEATS_CE, part, "test_acc", NO_TEACHER, "ce", setting, chance),
        ]
        checks += [
            _difference_row(claim, part, metric, method, DS_BASELINE[method], setting, chance)
            for method, (metric, claim) in TERM_MOVES_ITS_DIAGNOSTIC.items()
        ]
    return claims.table([row for row in paper + findings + checks if row is not None])


def _setting(part: pd.DataFrame) -> str:
    """A dataset's rows in words: ``"digits_degraded: clean → degraded"``."""
    first = part.iloc[0]
    return f"{first['dataset']}: {first['source']} → {first['target']}"


def _in_study(table: pd.DataFrame, study: str | None) -> pd.Series:
    return table["study"] == study if study is not None else table["study"] != "ds_analysis"


def _chance_note(part: pd.DataFrame, methods, chance: float, study: str | None) -> str:
    """Which of ``methods`` (rows of ``study``) have a mean test accuracy at or below ``chance``
    (1/K plus the engine's margin); empty when none."""
    accuracy = part[(part["metric"] == "test_acc") & _in_study(part, study)].groupby("method")["value"].mean()
    return "; ".join(
        f"{m}: test accuracy {100 * accuracy[m]:.1f} %, at most chance + margin ({100 * chance:.1f} %)"
        for m in methods
        if accuracy[m] <= chance
    )


def _difference_row(
    claim: claims.Claim,
    part: pd.DataFrame,
    metric: str,
    method: str,
    baseline: str,
    setting: str,
    chance: float,
    study: str | None = None,
) -> dict | None:
    """``claim`` on each seed's ``method`` − ``baseline`` of ``metric`` (rows of ``study``;
    accuracy in points), the seed's severities averaged; None when either method did not run."""
    if not {method, baseline} <= set(part.loc[_in_study(part, study), "method"]):
        return None
    difference = paired(part, metric, method, baseline, study)
    note = _chance_note(part, (method, baseline), chance, study)
    return claim.judge(
        _scale(metric) * difference["difference"],
        clusters=difference["seed"],
        setting=setting,
        at_chance=bool(note),
        note=note,
    )


def _growth_row(part: pd.DataFrame, dataset: str, chance: float) -> dict | None:
    """:data:`GAIN_GROWS_WITH_GAP` per seed: ds_both − kd at the largest severity minus at the
    smallest; None without both methods or two severities."""
    if not {"ds_both", "kd"} <= set(part["method"]) or part["severity"].nunique() < 2:
        return None
    gain = paired(part, "test_acc", "ds_both", "kd").pivot_table(index="seed", columns="severity", values="difference")
    low, high = gain.columns.min(), gain.columns.max()
    note = _chance_note(part[part["severity"] == high], ("ds_both", "kd"), chance, None)
    return GAIN_GROWS_WITH_GAP.judge(
        100 * (gain[high] - gain[low]),
        setting=f"{dataset}: severity {high:g} vs {low:g}",
        at_chance=bool(note),
        note=note,
    )


def variant_means(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's (or variant's) mean over seeds of every metric, accuracy in %: one row per
    method in the table's order, one column per metric. Methods trained on the same seeds, so the
    difference of two rows is their mean seed-by-seed difference."""
    wide = table.pivot_table(index="method", columns="metric", values="value", sort=False)
    wide = wide[[m for m in METRICS if m in wide.columns]]
    if "test_acc" in wide:
        wide["test_acc"] *= 100
    return wide.reindex(list(dict.fromkeys(table["method"]))).rename_axis(columns=None)


def metric_grid(
    table: pd.DataFrame,
    x: str = "severity",
    methods=ALL_METHODS,
    metrics=METRICS,
    title: str = "",
    study: str | None = None,
) -> go.Figure:
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
            style = dict(
                name=figures.display_name(method),
                legendgroup=method,
                showlegend=column == 1,
                marker_color=figures.color_for(method, i),
                error_y=dict(type="data", array=std, visible=True),
            )
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
    return metric_grid(
        part,
        methods=("teacher", "ce"),
        metrics=DIAGNOSTICS,
        study="ds_analysis",
        title=f"{dataset}: features on clean inputs (teacher) vs degraded inputs (CE student)",
    )


EXPLORE_SCALE = {"n_runs": 1, "n_train": 300, "epochs": 8, "teacher_epochs": 8, "methods": ("kd",) + DS_METHODS}


def explore_figure(p: DSParameters, severity: float, independence_weight: float, uniformity_weight: float) -> go.Figure:
    """The Explore callback: KD and the three DS students (KD + the DS terms) on one seed of the
    first image set at ``severity``, with the two weights, at a small scale (``EXPLORE_SCALE``);
    every metric per method."""
    changed = p.replace(
        images=tuple(p.images[:1]) or ("digits_degraded",),
        pairs=(),
        severities=(float(severity),),
        independence_weight=float(independence_weight),
        uniformity_weight=float(uniformity_weight),
        **EXPLORE_SCALE,
    )
    table = run(changed, progress=False).table
    return metric_grid(
        table,
        methods=EXPLORE_SCALE["methods"],
        title=(
            f"severity {severity:.2f}, independence weight {independence_weight:g}, uniformity weight "
            f"{uniformity_weight:g} "
            "(one seed, small scale)"
        ),
    )


def example_images(p: DSParameters, n: int = 8) -> np.ndarray:
    """``n`` clean images and their degraded copies at each severity of ``p`` (first image set),
    as rows of one mosaic array ``(rows, n, H, W)`` for :func:`cmkd_lab.report.figures.image_mosaic`."""
    from ...datasets import load

    name = (p.images or ("digits_degraded",))[0]
    rows = [load(name, severity=0.0, seed=0)["clean"][:n, 0].numpy()]
    rows += [load(name, severity=s, seed=0, kinds=p.degradations)["degraded"][:n, 0].numpy() for s in p.severities]
    return np.stack(rows)
