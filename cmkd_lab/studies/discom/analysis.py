"""What the DisCoM-KD notebook reads from a results table: the method table, the ablation table,
the domain accuracies, the effect of the released modality targets, the notebook's claims
(stated below before the data, judged by :mod:`cmkd_lab.analysis.claims`), and the 2-D
embedding of the three feature types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...analysis import claims
from ...analysis.results import mean_std_cells, summarize
from ...report import figures
from .pipeline import ABLATIONS, ALL_MODALITIES, AS_RELEASED, KD_BASELINES, METHODS

FEATURE_KINDS = {"s": "invariant s", "d": "informative d", "u": "irrelevant u"}
# every baseline the paper compares with that the kit runs (MLKD is left out: pipeline.LEFT_OUT)
BASELINES = ("single", *KD_BASELINES)
STUDIES = ("discom_synthetic", "discom_real")

# The claims, stated before the data. papers.md §5: DisCoM-KD is "better than SOTA KD" [abs]; its
# tables set it beside single-modality models, SUM-fusion KD (α 0 and 0.5), DKD, MLKD and cross-modal
# KD on every modality of each benchmark. One row per dataset, modality and baseline; units: splits.
BEATS_BASELINE = claims.Claim(
    claim="DisCoM-KD's classifier beats the baseline on this modality",
    source="DisCoM-KD [abs] and its benchmark tables (papers.md §5)",
    kind="paper",
    quantity="test weighted F1, DisCoM-KD − baseline, paired by split",
    unit="points",
    prediction="> 0",
    sesoi=1.0,  # one point of weighted F1: the smallest margin a KD paper reports as a gain
)
# The method's premise (papers.md §5): s is domain-invariant, made so by a discriminator behind a GRL.
S_HIDES_MODALITY = claims.Claim(
    claim="the invariant features s hide the modality: a held-out domain classifier on s is at chance",
    source="DisCoM-KD method (papers.md §5)",
    kind="paper",
    quantity="domain accuracy on s − chance",
    unit="points",
    prediction="= 0",
    sesoi=10.0,  # a classifier within 10 points of chance tells the modalities apart little better than a coin
)
U_CARRIES_MODALITY = claims.Claim(
    claim="the irrelevant features u carry the modality (what L_mod trains them for)",
    source="kit",
    kind="check",
    quantity="domain accuracy on u − chance",
    unit="points",
    prediction="> 0",
    sesoi=10.0,  # as for s: less than 10 points above chance would be no modality signal worth the name
)
ADVERSARY_HIDES_MODALITY = claims.Claim(
    claim="L_adv takes modality information out of s (against the model trained without it)",
    source="kit",
    kind="check",
    quantity="domain accuracy on s, DisCoM-KD − no_adv, paired by split",
    unit="points",
    prediction="< 0",
    sesoi=5.0,  # half the invariance margin: a smaller change would not move s towards chance in any useful way
)
RELEASED_TARGETS_KEEP_F1 = claims.Claim(
    claim="the released modality targets leave the weighted F1 where the class-index targets put it",
    source="kit",
    kind="finding",
    quantity="test weighted F1, as released − class index, paired by split",
    unit="points",
    prediction="= 0",
    sesoi=1.0,  # as for the baselines: one point of weighted F1
)


def method_label(method: str, alpha) -> str:
    """``fusion_kd (α=0.5)`` for a KD student, the method's name otherwise."""
    return f"{method} (α={alpha:g})" if pd.notna(alpha) else method


def _labelled(table: pd.DataFrame) -> pd.DataFrame:
    alpha = table["alpha"] if "alpha" in table else pd.Series(np.nan, index=table.index)
    return table.assign(label=[method_label(m, a) for m, a in zip(table["method"], alpha)])


def _cells(table: pd.DataFrame, index: list[str], columns: str, order: list[str]) -> pd.DataFrame:
    summary = summarize(table, by=[*index, columns])
    summary["cell"] = mean_std_cells(summary)
    wide = summary.pivot(index=index, columns=columns, values="cell")
    return wide[[c for c in order if c in wide.columns]]


def method_table(table: pd.DataFrame, study: str, metric: str = "test_f1w") -> pd.DataFrame:
    """Test weighted F1 (%) as mean ± std over splits: rows dataset × modality, one column per
    method (KD students per α)."""
    part = _labelled(table[(table["study"] == study) & (table["metric"] == metric)])
    order = [label for method in METHODS for label in sorted(part.loc[part["method"] == method, "label"].unique())]
    return _cells(part, ["dataset", "modality"], "label", order)


def ablation_table(table: pd.DataFrame) -> pd.DataFrame:
    """DisCoM and each ablation: test weighted F1 (%) per modality, and the domain accuracies
    (%) on s and u, as mean ± std over splits; one row per method."""
    rows = table[
        ((table["study"] == "discom_synthetic") & (table["method"] == "discom")) | (table["study"] == "discom_ablation")
    ]
    f1 = rows[rows["metric"] == "test_f1w"]
    wide = _cells(
        f1.assign(column="test_f1w · " + f1["modality"].astype(str)),
        ["method"],
        "column",
        sorted(("test_f1w · " + f1["modality"].astype(str)).unique()),
    )
    domain = rows[rows["metric"].str.startswith("domain_acc")]
    if len(domain):
        wide = wide.join(_cells(domain, ["method"], "metric", ["domain_acc_s", "domain_acc_u"]))
    return wide.reindex([m for m in ("discom", *ABLATIONS) if m in wide.index])


def domain_accuracies(table: pd.DataFrame, method: str = "discom", study: str = "discom_synthetic") -> dict[str, float]:
    """Mean domain accuracy on s and on u of ``method``, and chance (1 / number of modalities)."""
    part = table[(table["study"] == study) & (table["method"] == method)]
    n_modalities = part.loc[part["metric"] == "test_f1w", "modality"].nunique()
    means = part.groupby("metric")["value"].mean()
    return {"s": float(means["domain_acc_s"]), "u": float(means["domain_acc_u"]), "chance": 1 / n_modalities}


def released_targets_effect(table: pd.DataFrame) -> pd.DataFrame:
    """The released modality targets against the paper's, split by split: per metric (and
    modality) the mean of each and of their difference (as released − class index), in points."""
    full = table[(table["study"] == "discom_synthetic") & (table["method"] == "discom")]
    released = table[(table["study"] == "discom_ablation") & (table["method"] == AS_RELEASED)]
    keys = ["modality", "metric", "seed"]
    paired = full.merge(released, on=keys, suffixes=("_paper", "_released"))
    paired["difference"] = paired["value_released"] - paired["value_paper"]
    out = (
        paired.groupby(["metric", "modality"], sort=False)
        .agg(
            class_index=("value_paper", "mean"),
            as_released=("value_released", "mean"),
            difference=("difference", "mean"),
            difference_std=("difference", "std"),
            n=("seed", "count"),
        )
        .reset_index()
    )
    out[["class_index", "as_released", "difference", "difference_std"]] *= 100
    return out.round(2)


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every claim of the notebook, judged (:func:`cmkd_lab.analysis.claims.table`: Holm within
    each kind): per dataset of the synthetic and real studies, DisCoM-KD against each baseline on
    each modality and the invariance of s (paper claims), then the released targets' effect on
    the weighted F1 (a finding), then what u and L_adv do (checks)."""
    rows = []
    for study in STUDIES:
        rows += baseline_rows(table, study) + domain_rows(table, study, S_HIDES_MODALITY, "domain_acc_s")
    rows += released_targets_rows(table)
    for study in STUDIES:
        rows += domain_rows(table, study, U_CARRIES_MODALITY, "domain_acc_u")
    rows += adversary_rows(table)
    return claims.table(rows)


def baseline_rows(table: pd.DataFrame, study: str) -> list[dict]:
    """:data:`BEATS_BASELINE` per dataset, modality and baseline (each KD student's α apart): each
    split's DisCoM-KD − baseline weighted F1, in points. A comparison where either side's mean test
    accuracy is within the engine's chance margin of 1/K is passed as at chance."""
    part = _labelled(table[table["study"] == study])
    rows = []
    per_modality = part[part["modality"] != ALL_MODALITIES]
    for (dataset, modality), cell in per_modality.groupby(["dataset", "modality"], sort=False):
        f1 = cell[cell["metric"] == "test_f1w"].pivot_table(index="seed", columns="label", values="value")
        accuracy = cell[cell["metric"] == "test_acc"].groupby("label")["value"].mean()
        if "discom" not in f1:
            continue
        n_classes = int(cell["n_classes"].iloc[0])
        chance = 1 / n_classes
        for label in _baseline_labels(cell):
            at_chance = [name for name in ("discom", label) if accuracy[name] <= claims.chance_ceiling(n_classes)]
            note = "; ".join(
                f"{name}: test accuracy {100 * accuracy[name]:.1f} %, chance {100 * chance:.1f} %" for name in at_chance
            )
            rows.append(
                BEATS_BASELINE.judge(
                    100 * (f1["discom"] - f1[label]),
                    at_chance=bool(at_chance),
                    note=note,
                    setting=f"{dataset} · {modality} vs {label}",
                )
            )
    return rows


def _baseline_labels(rows: pd.DataFrame) -> list[str]:
    """The labels of the baselines among ``rows``, in :data:`BASELINES`' order (each KD student's α ascending)."""
    return [label for method in BASELINES for label in sorted(set(rows.loc[rows["method"] == method, "label"]))]


def domain_rows(table: pd.DataFrame, study: str, claim: claims.Claim, metric: str) -> list[dict]:
    """``claim`` on DisCoM-KD's ``metric`` (a domain accuracy) per dataset of ``study``: each
    split's accuracy − chance (1 / number of modalities), in points."""
    part = table[(table["study"] == study) & (table["method"] == "discom")]
    rows = []
    for dataset, cell in part.groupby("dataset", sort=False):
        values = cell.loc[cell["metric"] == metric, "value"]
        if len(values):
            chance = 1 / cell.loc[cell["modality"] != ALL_MODALITIES, "modality"].nunique()
            rows.append(claim.judge(100 * (values - chance), setting=f"{dataset} (chance {100 * chance:.0f} %)"))
    return rows


def adversary_rows(table: pd.DataFrame) -> list[dict]:
    """:data:`ADVERSARY_HIDES_MODALITY` on the synthetic set: each split's domain accuracy on s,
    DisCoM-KD − no_adv, in points (no row without the ablations)."""
    with_adversary = _per_split(table, "discom_synthetic", "discom", "domain_acc_s")
    without = _per_split(table, "discom_ablation", "no_adv", "domain_acc_s")
    if with_adversary.empty or without.empty:
        return []
    dataset = table.loc[table["study"] == "discom_ablation", "dataset"].iloc[0]
    return [ADVERSARY_HIDES_MODALITY.judge(100 * (with_adversary - without).dropna(), setting=dataset)]


def released_targets_rows(table: pd.DataFrame) -> list[dict]:
    """:data:`RELEASED_TARGETS_KEEP_F1` per modality of the synthetic set: each split's weighted F1,
    as released − class index, in points (no rows without the ablations)."""
    released = table[
        (table["study"] == "discom_ablation") & (table["method"] == AS_RELEASED) & (table["metric"] == "test_f1w")
    ]
    rows = []
    for (dataset, modality), cell in released.groupby(["dataset", "modality"], sort=False):
        paper = _per_split(table, "discom_synthetic", "discom", "test_f1w", modality)
        rows.append(
            RELEASED_TARGETS_KEEP_F1.judge(
                100 * (cell.set_index("seed")["value"] - paper).dropna(), setting=f"{dataset} · {modality}"
            )
        )
    return rows


def _per_split(table: pd.DataFrame, study: str, method: str, metric: str, modality: str = ALL_MODALITIES) -> pd.Series:
    rows = table[
        (table["study"] == study)
        & (table["method"] == method)
        & (table["metric"] == metric)
        & (table["modality"] == modality)
    ]
    return rows.set_index("seed")["value"]


def variant_means(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's (or variant's) mean over splits of every metric: one row per method in the
    table's order; a per-modality metric gets one column per modality (``test_f1w · a``), a metric
    of modality "all" (domain accuracies, cosines) one column. Fractions, not percent."""
    column = np.where(
        table["modality"] == ALL_MODALITIES, table["metric"], table["metric"] + " · " + table["modality"].astype(str)
    )
    wide = table.assign(column=column).pivot_table(index="method", columns="column", values="value", sort=False)
    return wide.reindex(list(dict.fromkeys(table["method"]))).rename_axis(columns=None)


def embedding_figure(features: dict[str, tuple], title: str = "") -> go.Figure:
    """2-D PCA of each feature type (s, d, u), the modalities pooled and coloured: ``features``
    maps a modality to its (s, d, u) ``(N, width)``."""
    from sklearn.decomposition import PCA

    fig = make_subplots(rows=1, cols=3, subplot_titles=list(FEATURE_KINDS.values()))
    for j, _kind in enumerate(FEATURE_KINDS):
        pooled = np.concatenate([np.asarray(features[m][j]) for m in features])
        points = PCA(n_components=2, random_state=0).fit_transform(pooled)
        start = 0
        for i, m in enumerate(features):
            n = len(features[m][j])
            fig.add_trace(
                go.Scatter(
                    x=points[start : start + n, 0].tolist(),
                    y=points[start : start + n, 1].tolist(),
                    mode="markers",
                    name=f"modality {m}",
                    legendgroup=m,
                    showlegend=j == 0,
                    marker=dict(color=figures.PALETTE[i % len(figures.PALETTE)], size=5, opacity=0.6),
                ),
                row=1,
                col=j + 1,
            )
            start += n
    fig.update_layout(template=figures.TEMPLATE, title=title, font=dict(size=13), margin=dict(l=40, r=20, t=80, b=40))
    return fig
