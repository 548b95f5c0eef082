"""What the DisCoM-KD notebook reads from a results table: the method table, the ablation table,
the domain accuracies, the effect of the released modality targets, the paper-vs-kit claim,
and the 2-D embedding of the three feature types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...analysis.results import mean_std_cells, summarize
from ...report import figures
from .pipeline import ABLATIONS, ALL_MODALITIES, AS_RELEASED, KD_BASELINES, METHODS

FEATURE_KINDS = {"s": "invariant s", "d": "informative d", "u": "irrelevant u"}
PAPER_CLAIM = "DisCoM-KD ≥ the KD baselines on both modalities"
PAPER_EVIDENCE = ("SUN RGB-D, EuroSAT-MS-SAR, TRISTAR (ResNet-18s): DisCoM-KD's weighted F1 is at or above every "
                  "KD, DKD and MLKD student on each modality")


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
    rows = table[((table["study"] == "discom_synthetic") & (table["method"] == "discom")) | (table["study"] == "discom_ablation")]
    f1 = rows[rows["metric"] == "test_f1w"]
    wide = _cells(f1.assign(column="test_f1w · " + f1["modality"].astype(str)), ["method"], "column",
                  sorted(("test_f1w · " + f1["modality"].astype(str)).unique()))
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


INVARIANCE_CHANCE_MARGIN = 0.10  # s counts as modality-blind within this of chance
SPECIFIC_DOMAIN_ACCURACY = 0.90  # u counts as modality-specific above this


def invariance_claim(table: pd.DataFrame) -> pd.DataFrame:
    """The disentanglement's intent on the synthetic set, measured by a held-out domain
    classifier: s near chance, u high; the full model beside the one trained without L_adv."""
    domain = domain_accuracies(table)
    without = domain_accuracies(table, "no_adv", "discom_ablation") if (table["method"] == "no_adv").any() else None
    blind = abs(domain["s"] - domain["chance"]) <= INVARIANCE_CHANCE_MARGIN
    specific = domain["u"] > SPECIFIC_DOMAIN_ACCURACY
    kit = (f"s: {100 * domain['s']:.1f} %" + (f" (without L_adv {100 * without['s']:.1f} %)" if without else "")
           + f", u: {100 * domain['u']:.1f} %, chance {100 * domain['chance']:.0f} %")
    return pd.DataFrame([{
        "claim": "invariant features s hide the modality; irrelevant features u carry it",
        "paper": "the design's intent (modality discriminator on s behind gradient reversal; modality classifier on u)",
        "kit": kit,
        "criterion": f"s within {100 * INVARIANCE_CHANCE_MARGIN:.0f} points of chance; u above {100 * SPECIFIC_DOMAIN_ACCURACY:.0f} %",
        "verdict": "held" if blind and specific else ("not held (held for u only)" if specific else "not held"),
    }])


def released_targets_effect(table: pd.DataFrame) -> pd.DataFrame:
    """The released modality targets against the paper's, split by split: per metric (and
    modality) the mean of each and of their difference (as released − class index), in points."""
    full = table[(table["study"] == "discom_synthetic") & (table["method"] == "discom")]
    released = table[(table["study"] == "discom_ablation") & (table["method"] == AS_RELEASED)]
    keys = ["modality", "metric", "seed"]
    paired = full.merge(released, on=keys, suffixes=("_paper", "_released"))
    paired["difference"] = paired["value_released"] - paired["value_paper"]
    out = paired.groupby(["metric", "modality"], sort=False).agg(
        class_index=("value_paper", "mean"), as_released=("value_released", "mean"),
        difference=("difference", "mean"), difference_std=("difference", "std"), n=("seed", "count")).reset_index()
    out[["class_index", "as_released", "difference", "difference_std"]] *= 100
    return out.round(2)


def claims(table: pd.DataFrame, study: str) -> pd.DataFrame:
    """Per dataset and modality: DisCoM-KD's weighted F1 against the best KD baseline (the one
    with the highest mean), the margin split by split, and a verdict; a last row per dataset says
    whether the claim held on every modality."""
    f1 = _labelled(table[(table["study"] == study) & (table["metric"] == "test_f1w")])
    rows = []
    for (dataset, modality), part in f1.groupby(["dataset", "modality"], sort=False):
        per_seed = part.pivot_table(index="seed", columns="label", values="value")
        baselines = [c for c in per_seed if c.split(" ")[0] in KD_BASELINES]
        if "discom" not in per_seed or not baselines:
            continue
        best = per_seed[baselines].mean().idxmax()
        difference = 100 * (per_seed["discom"] - per_seed[best])
        se = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
        verdict = ("held" if difference.mean() >= 0 else
                   "not held" if difference.mean() + 2 * se < 0 else "not resolved (below, within two standard errors)")
        rows.append({"dataset": dataset, "modality": modality, "claim": "DisCoM-KD ≥ the best KD student",
                     "criterion": "mean margin ≥ 0 (not held: more than two standard errors below 0)",
                     "discom": f"{100 * per_seed['discom'].mean():.2f}",
                     "best KD baseline": f"{best}: {100 * per_seed[best].mean():.2f}",
                     "margin (points)": f"{difference.mean():+.2f} ± {difference.std(ddof=1) if len(difference) > 1 else 0:.2f}",
                     "verdict": verdict})
    return pd.DataFrame(rows)


def claim_rows(table: pd.DataFrame, studies=("discom_synthetic", "discom_real")) -> pd.DataFrame:
    """The paper-vs-kit table: per dataset, the claim, the paper's evidence, what the kit measures
    on every modality, and whether it held on all of them."""
    rows = []
    for study in studies:
        per_modality = claims(table, study)
        for dataset, part in per_modality.groupby("dataset", sort=False):
            held = (part["verdict"] == "held").all()
            rows.append({"dataset": dataset, "claim": PAPER_CLAIM, "paper": PAPER_EVIDENCE,
                         "kit": "; ".join(f"{modality}: {margin} points over {best}" for modality, margin, best in
                                          zip(part["modality"], part["margin (points)"], part["best KD baseline"])),
                         "criterion": "DisCoM's mean weighted F1 ≥ the best KD student's, on every modality",
                         "verdict": "held" if held else "not held on every modality"})
    return pd.DataFrame(rows)


def variant_means(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's (or variant's) mean over splits of every metric: one row per method in the
    table's order; a per-modality metric gets one column per modality (``test_f1w · a``), a metric
    of modality "all" (domain accuracies, cosines) one column. Fractions, not percent."""
    column = np.where(table["modality"] == ALL_MODALITIES, table["metric"], table["metric"] + " · " + table["modality"].astype(str))
    wide = table.assign(column=column).pivot_table(index="method", columns="column", values="value", sort=False)
    return wide.reindex(list(dict.fromkeys(table["method"]))).rename_axis(columns=None)


def embedding_figure(features: dict[str, tuple], title: str = "") -> go.Figure:
    """2-D PCA of each feature type (s, d, u), the modalities pooled and coloured: ``features``
    maps a modality to its (s, d, u) ``(N, width)``."""
    from sklearn.decomposition import PCA

    fig = make_subplots(rows=1, cols=3, subplot_titles=list(FEATURE_KINDS.values()))
    for j, kind in enumerate(FEATURE_KINDS):
        pooled = np.concatenate([np.asarray(features[m][j]) for m in features])
        points = PCA(n_components=2, random_state=0).fit_transform(pooled)
        start = 0
        for i, m in enumerate(features):
            n = len(features[m][j])
            fig.add_trace(go.Scatter(x=points[start:start + n, 0].tolist(), y=points[start:start + n, 1].tolist(),
                                     mode="markers", name=f"modality {m}", legendgroup=m, showlegend=j == 0,
                                     marker=dict(color=figures.PALETTE[i % len(figures.PALETTE)], size=5, opacity=0.6)),
                          row=1, col=j + 1)
            start += n
    fig.update_layout(template=figures.TEMPLATE, title=title, font=dict(size=13), margin=dict(l=40, r=20, t=80, b=40))
    return fig
