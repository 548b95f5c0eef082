"""Scoring the diagnosis: how well each predictor foretells what a cross-modal KD method does to a pair.

The input is the benchmark's *pair table*: one row per (dataset, pair, method) with the measured
gain over No-KD (``delta``, in points, with its interval over seeds ``delta_low``/``delta_high``),
its ``outcome`` (:data:`OUTCOMES`, by :func:`outcome_of`) and one float column per predictor (NaN
where a predictor is undefined for that pair). Each predictor comes with a direction (+1: a larger
value predicts a larger gain; -1: a smaller one), and every score here uses the *oriented* signal
``direction * value``, so that a positive score always means "the predictor works the way its paper
says".

Predictors are scored as transferability metrics are (LEEP, LogME, ...): by rank correlation with
the gain over the pairs, and by how well a rule fitted on other datasets foretells the outcome on a
dataset it has never seen:

- :func:`rank_scores`: weighted Kendall τ (:func:`scipy.stats.weightedtau`, hyperbolic weigher:
  the top of the ranking counts most) and Spearman ρ per predictor and method, each with a
  percentile interval by cluster bootstrap over datasets (a dataset's pairs share its data, so
  datasets, not pairs, are the independent units);
- :func:`leave_one_dataset_out`: per held-out dataset, a one-feature :class:`ThresholdRule` per
  predictor, a logistic model on all predictors (:func:`logistic_pipeline`) and the training
  majority, fitted on the other datasets' pairs; pooled balanced accuracy and AUROC ("helps" vs
  not) with cluster-bootstrap intervals;
- :func:`claim_rows`: one claim per predictor through the kit's verdict rule
  (:func:`cmkd_lab.analysis.claims.judge_correlation`, datasets resampled whole);
- :func:`leaderboard`: the notebook's table, one row per predictor.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...analysis import claims

OUTCOMES = ("hurts", "no difference", "helps")
# a tie between the most frequent outcomes goes to the null prediction first
_MAJORITY_TIE_ORDER = ("no difference", "hurts", "helps")
PAIR_COLUMNS = ("dataset", "pair", "method", "delta")
CLAIM_KINDS = ("paper", "finding")
LOGISTIC = "logistic (all predictors)"
MAJORITY = "majority"
N_BOOT = claims.N_BOOT
CONFIDENCE = claims.CONFIDENCE
MIN_PAIRS = 3  # a rank correlation over fewer pairs says nothing
# sesoi of each predictor's claim: a Spearman ρ of 0.3 between the oriented signal and Δ (Cohen's
# "medium" correlation); a weaker monotone link would not tell a user which pairs to distil.
TAU_SESOI = 0.3


# ----------------------------------------------------------------------------- outcomes
def outcome_of(low: float, high: float) -> str:
    """The outcome of one pair from its gain's interval.

    Parameters
    ----------
    low, high : float
        The 95% interval of Δ = method − No-KD over seeds (points).

    Returns
    -------
    str
        ``"hurts"`` when ``high < 0``, ``"helps"`` when ``low > 0``, else ``"no difference"``
        (an interval touching 0, or undefined, as with one seed, resolves nothing).

    Raises
    ------
    ValueError
        If ``low > high``.
    """
    low, high = float(low), float(high)
    if low > high:
        raise ValueError(f"the interval's low end must not exceed its high end; got [{low}, {high}]")
    if high < 0:
        return "hurts"
    if low > 0:
        return "helps"
    return "no difference"


def outcomes(frame: pd.DataFrame) -> pd.Series:
    """:func:`outcome_of` for every row of a pair table.

    Parameters
    ----------
    frame : pandas.DataFrame
        With columns ``delta_low`` and ``delta_high``.

    Returns
    -------
    pandas.Series
        Named ``outcome``, on ``frame``'s index, values in :data:`OUTCOMES`.

    Raises
    ------
    ValueError
        If a column is missing or a row's ``delta_low > delta_high``.
    """
    _require_columns(frame, ("delta_low", "delta_high"))
    low, high = frame["delta_low"].to_numpy(float), frame["delta_high"].to_numpy(float)
    reversed_rows = np.flatnonzero(low > high)
    if len(reversed_rows):
        raise ValueError(f"delta_low exceeds delta_high in {len(reversed_rows)} rows (first: {reversed_rows[0]})")
    labels = np.select([high < 0, low > 0], ["hurts", "helps"], "no difference")
    return pd.Series(labels, index=frame.index, name="outcome", dtype=object)


def majority_outcome(values: Sequence[str]) -> str:
    """The most frequent outcome; ties go to ``"no difference"``, then ``"hurts"``, then ``"helps"``.

    Parameters
    ----------
    values : sequence of str
        Outcomes (:data:`OUTCOMES`), at least one.

    Returns
    -------
    str
    """
    counts = pd.Series(_checked_outcomes(values)).value_counts()
    if counts.empty:
        raise ValueError("no outcomes to take the majority of")
    top = counts[counts == counts.max()].index
    return next(outcome for outcome in _MAJORITY_TIE_ORDER if outcome in top)


# ----------------------------------------------------------------------------- rank scores
def rank_scores(
    pairs: pd.DataFrame, directions: Mapping[str, int], *, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """Each predictor's rank correlation with the gain, per method, with cluster-bootstrap intervals.

    Per method and predictor, over the pairs where the predictor is defined: ``tau_w``, the
    weighted Kendall τ (:func:`scipy.stats.weightedtau`, hyperbolic weigher) and ``rho``, Spearman's
    ρ (:func:`scipy.stats.spearmanr`), between the oriented signal and ``delta``. Their 95%
    intervals are percentile intervals over ``n_boot`` cluster-bootstrap replicates: datasets drawn
    with replacement (a :func:`numpy.random.default_rng` of ``seed``), each with all its pairs.
    Replicates with fewer than 3 pairs, or a constant signal or gain, are skipped
    (``n_replicates`` counts those kept); one dataset gives no interval.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table (columns :data:`PAIR_COLUMNS` and one per predictor).
    directions : mapping of str to {+1, -1}
        Per predictor, the sign that makes a larger oriented signal predict a larger gain.
    n_boot : int
        Bootstrap replicates.
    seed : int
        The seed of the replicates' generator (the same draws for every predictor and method).

    Returns
    -------
    pandas.DataFrame
        One row per (predictor, method): predictor, method, n_pairs, n_datasets, tau_w,
        tau_w_low, tau_w_high, rho, rho_low, rho_high, n_replicates. Scores are NaN over fewer
        than 3 pairs or a constant signal.
    """
    frame = _checked_pairs(pairs, directions)
    rows = []
    for method, part in frame.groupby("method", sort=False):
        for predictor, direction in directions.items():
            defined = part.dropna(subset=[predictor, "delta"])
            signal = direction * defined[predictor].to_numpy(float)
            delta = defined["delta"].to_numpy(float)
            tau_w, rho = _rank_correlations(signal, delta)
            rows.append(
                {
                    "predictor": predictor,
                    "method": method,
                    "n_pairs": len(defined),
                    "n_datasets": defined["dataset"].nunique(),
                    "tau_w": tau_w,
                    "rho": rho,
                    **_rank_intervals(signal, delta, defined["dataset"].to_numpy(), n_boot, seed),
                }
            )
    columns = ["predictor", "method", "n_pairs", "n_datasets"]
    columns += ["tau_w", "tau_w_low", "tau_w_high", "rho", "rho_low", "rho_high", "n_replicates"]
    return pd.DataFrame(rows, columns=columns)


def _rank_correlations(signal: np.ndarray, delta: np.ndarray) -> tuple[float, float]:
    """(weighted τ, Spearman ρ), NaN over fewer than 3 pairs or a constant side."""
    from scipy import stats

    if len(signal) < MIN_PAIRS or np.ptp(signal) == 0 or np.ptp(delta) == 0:
        return float("nan"), float("nan")
    return float(stats.weightedtau(signal, delta).statistic), float(stats.spearmanr(signal, delta).statistic)


def _rank_intervals(signal, delta, datasets, n_boot, seed) -> dict:
    rows_of = _rows_of_clusters(datasets)
    kept = []
    if len(rows_of) >= 2:
        for draw in _cluster_draws(len(rows_of), n_boot, seed):
            rows = np.concatenate([rows_of[d] for d in draw])
            replicate = _rank_correlations(signal[rows], delta[rows])
            if np.isfinite(replicate[0]):
                kept.append(replicate)
    tau_w, rho = np.asarray(kept, dtype=float).reshape(-1, 2).T
    tau_low, tau_high = _percentile_interval(tau_w)
    rho_low, rho_high = _percentile_interval(rho)
    return {
        "tau_w_low": tau_low,
        "tau_w_high": tau_high,
        "rho_low": rho_low,
        "rho_high": rho_high,
        "n_replicates": len(kept),
    }


# ----------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class ThresholdRule:
    """A one-feature rule on an oriented signal: below ``low`` "hurts", above ``high`` "helps",
    else "no difference"; an undefined (NaN) signal gets ``fallback``, the training majority.

    :meth:`fit` chooses ``low <= high`` to maximise the balanced accuracy on the training pairs
    over a grid of cut points: the midpoints between consecutive sorted unique training values,
    plus -inf and +inf (so a rule may never predict a class, and ``low == high`` leaves no
    "no difference" band). Ties go to the widest "no difference" band (the most training values
    inside it: the rule claims an effect only where the data force it), then to the smallest
    ``low``; the choice is deterministic. Every (low, high) of the grid is scored at once from the
    classes' cumulative counts (a grid quadratic in the distinct training values: a benchmark's
    hundreds of pairs take milliseconds).

    Attributes
    ----------
    low, high : float
        The cut points (NaN when fitted on no defined value: every prediction is ``fallback``).
    fallback : str
        The training pairs' majority outcome (:func:`majority_outcome`).
    balanced_accuracy : float
        On the training pairs with a defined signal.
    n_fitted : int
        The training pairs with a defined signal.
    """

    low: float
    high: float
    fallback: str
    balanced_accuracy: float
    n_fitted: int

    @classmethod
    def fit(cls, signal: Sequence[float], outcomes: Sequence[str]) -> ThresholdRule:
        """Fit the cut points (see the class).

        Parameters
        ----------
        signal : sequence of float, shape (n,)
            The oriented signal of the training pairs (NaN where undefined).
        outcomes : sequence of str, shape (n,)
            Their outcomes (:data:`OUTCOMES`), at least one.

        Returns
        -------
        ThresholdRule
        """
        signal = np.asarray(signal, dtype=float)
        labels = _checked_outcomes(outcomes)
        if signal.shape != labels.shape or signal.ndim != 1:
            raise ValueError(f"signal and outcomes must be 1-D and of one length; got {signal.shape}, {labels.shape}")
        fallback = majority_outcome(labels)
        defined = ~np.isnan(signal)
        if not defined.any():
            return cls(float("nan"), float("nan"), fallback, float("nan"), 0)
        values, position = np.unique(signal[defined], return_inverse=True)
        counts = np.zeros((len(values), len(OUTCOMES)))
        np.add.at(counts, (position, _outcome_codes(labels[defined])), 1)
        # below[k, c]: training values of class c under cut k (cut k lies between values[k-1] and values[k])
        below = np.vstack([np.zeros(len(OUTCOMES)), counts.cumsum(axis=0)])
        totals = counts.sum(axis=0)
        low_cut, high_cut = np.triu_indices(len(values) + 1)
        hurts, middle, helps = range(len(OUTCOMES))  # OUTCOMES' order
        recalls = np.stack(
            [
                below[low_cut, hurts],
                below[high_cut, middle] - below[low_cut, middle],
                totals[helps] - below[high_cut, helps],
            ],
            axis=1,
        )
        present = totals > 0  # balanced accuracy averages the recall of the classes present
        score = (recalls[:, present] / totals[present]).mean(axis=1)
        best = np.flatnonzero(np.isclose(score, score.max(), rtol=0, atol=1e-12))
        chosen = best[np.lexsort((low_cut[best], low_cut[best] - high_cut[best]))[0]]
        cuts = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
        return cls(
            float(cuts[low_cut[chosen]]),
            float(cuts[high_cut[chosen]]),
            fallback,
            float(score[chosen]),
            int(defined.sum()),
        )

    def predict(self, signal: Sequence[float]) -> np.ndarray:
        """The predicted outcomes.

        Parameters
        ----------
        signal : sequence of float, shape (n,)
            Oriented signals (NaN where undefined: ``fallback``).

        Returns
        -------
        numpy.ndarray of str (object), shape (n,)
        """
        signal = np.asarray(signal, dtype=float)
        predicted = np.where(signal < self.low, "hurts", np.where(signal > self.high, "helps", "no difference"))
        predicted = predicted.astype(object)
        predicted[np.isnan(signal) | (self.n_fitted == 0)] = self.fallback
        return predicted


def logistic_pipeline():
    """The logistic model on all predictors' oriented signals: median imputation, standardisation
    and a class-balanced multinomial logistic regression.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )


# ----------------------------------------------------------------------------- leave one dataset out
PREDICTION_COLUMNS = ("dataset", "pair", "method", "model", "predicted", "outcome", "score", "fell_back")


def leave_one_dataset_out(
    pairs: pd.DataFrame, directions: Mapping[str, int], method: str, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict each dataset's outcomes from rules fitted on the other datasets only.

    For each held-out dataset, on the other datasets' pairs of ``method``: per predictor a
    :class:`ThresholdRule` on its oriented signal; ``"logistic (all predictors)"``
    (:func:`logistic_pipeline` on every predictor defined somewhere in training; a training set of
    one class predicts that class); ``"majority"``, the training majority (a floor). A pair whose
    signal is undefined gets the training majority (``fell_back``), as does every pair of a fold
    whose training pairs are all undefined.

    The summary pools every fold's held-out predictions per model: balanced accuracy
    (:func:`sklearn.metrics.balanced_accuracy_score`) and AUROC of "helps" vs not from ``score``
    (:func:`sklearn.metrics.roc_auc_score`, over the pairs with a score; NaN with one class), each
    with a 95% percentile interval over ``n_boot`` cluster-bootstrap replicates (datasets drawn
    with replacement, each with all its held-out pairs; an AUROC replicate without both classes
    is skipped).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table, with ``outcome``.
    directions : mapping of str to {+1, -1}
        Per predictor, its direction.
    method : str
        The distillation method whose outcomes are predicted.
    n_boot : int
        Bootstrap replicates of the summary's intervals.
    seed : int
        The seed of their generator.

    Returns
    -------
    predictions : pandas.DataFrame
        One row per (held-out pair, model): :data:`PREDICTION_COLUMNS`; ``score`` is the oriented
        signal (one-feature rules), P(helps) (logistic), NaN for the majority and wherever the model
        fell back.
    summary : pandas.DataFrame
        One row per model: model, balanced_accuracy, balanced_accuracy_low, balanced_accuracy_high,
        auroc, auroc_low, auroc_high, n_pairs, n_datasets, note (how many pairs fell back).

    Raises
    ------
    ValueError
        If ``method`` is not in the table, or its pairs come from fewer than 2 datasets.
    """
    frame = _checked_pairs(pairs, directions, with_outcome=True)
    part = _of_method(frame, method)
    datasets = part["dataset"].unique()
    if len(datasets) < 2:
        raise ValueError(f"leaving one dataset out needs pairs of at least 2 datasets; {method!r} has {len(datasets)}")
    folds = []
    for held_out in datasets:
        train, test = part[part["dataset"] != held_out], part[part["dataset"] == held_out]
        base = test[["dataset", "pair", "method", "outcome"]].reset_index(drop=True)
        for predictor, direction in directions.items():
            rule = ThresholdRule.fit(direction * train[predictor].to_numpy(float), train["outcome"])
            signal = direction * test[predictor].to_numpy(float)
            fell_back = np.isnan(signal) | (rule.n_fitted == 0)
            score = np.where(fell_back, np.nan, signal)
            folds.append(base.assign(model=predictor, predicted=rule.predict(signal), score=score, fell_back=fell_back))
        folds.append(base.assign(model=LOGISTIC, **_logistic_fold(train, test, directions)))
        majority = majority_outcome(train["outcome"])
        folds.append(base.assign(model=MAJORITY, predicted=majority, score=np.nan, fell_back=False))
    predictions = pd.concat(folds, ignore_index=True)[list(PREDICTION_COLUMNS)]
    summary = [_summary_row(model, rows, n_boot, seed) for model, rows in predictions.groupby("model", sort=False)]
    return predictions, pd.DataFrame(summary)


def _logistic_fold(train: pd.DataFrame, test: pd.DataFrame, directions: Mapping[str, int]) -> dict:
    features = [predictor for predictor in directions if train[predictor].notna().any()]
    if not features or train["outcome"].nunique() == 1:
        return {"predicted": majority_outcome(train["outcome"]), "score": np.nan, "fell_back": True}

    def oriented(rows):
        return np.column_stack([directions[p] * rows[p].to_numpy(float) for p in features])

    model = logistic_pipeline().fit(oriented(train), train["outcome"].to_numpy(str))
    classes = list(model.classes_)
    probabilities = model.predict_proba(oriented(test))
    helps = probabilities[:, classes.index("helps")] if "helps" in classes else np.zeros(len(test))
    return {"predicted": model.predict(oriented(test)).astype(object), "score": helps, "fell_back": False}


def _summary_row(model: str, rows: pd.DataFrame, n_boot: int, seed: int) -> dict:
    balanced, auroc = _pooled_metrics(rows)
    intervals = _pooled_intervals(rows, n_boot, seed)
    fell_back = int(rows["fell_back"].sum())
    note = ""
    if fell_back and model != MAJORITY:
        why = "one class or no predictor in training" if model == LOGISTIC else "predictor undefined"
        note = f"{fell_back} of {len(rows)} pairs fell back to the training majority ({why})"
    return {
        "model": model,
        "balanced_accuracy": balanced,
        "balanced_accuracy_low": intervals[0],
        "balanced_accuracy_high": intervals[1],
        "auroc": auroc,
        "auroc_low": intervals[2],
        "auroc_high": intervals[3],
        "n_pairs": len(rows),
        "n_datasets": rows["dataset"].nunique(),
        "note": note,
    }


def _pooled_metrics(rows: pd.DataFrame) -> tuple[float, float]:
    """Balanced accuracy of the predictions and AUROC of "helps" from the score (where defined)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    with warnings.catch_warnings():  # a model may predict a class no held-out pair has, or one class alone
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        balanced = float(balanced_accuracy_score(rows["outcome"], rows["predicted"]))
    scored = rows[rows["score"].notna()]
    helps = scored["outcome"].to_numpy() == "helps"
    auroc = float(roc_auc_score(helps, scored["score"])) if 0 < helps.sum() < len(helps) else float("nan")
    return balanced, auroc


def _pooled_intervals(rows: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float, float, float]:
    """Cluster-bootstrap intervals of :func:`_pooled_metrics`: (balanced low, high, AUROC low, high)."""
    rows_of = _rows_of_clusters(rows["dataset"].to_numpy())
    n = len(rows_of)
    if n < 2:
        return (float("nan"),) * 4
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], _cluster_draws(n, n_boot, seed)), 1)
    balanced, auroc = _pooled_replicates(rows, weights)
    return (*_percentile_interval(balanced), *_percentile_interval(auroc[~np.isnan(auroc)]))


def _pooled_replicates(rows: pd.DataFrame, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pooled_metrics` of each replicate, a replicate given by how often it drew each dataset
    (``weights``, shape (n_boot, n_datasets), datasets in order of first appearance).

    A replicate weighs each pair by its dataset's draws, so both metrics are weighted sums of
    per-dataset blocks computed once: the confusion matrices (:func:`sklearn.metrics.confusion_matrix`)
    and, per pair of datasets, the Mann–Whitney U of the first's "helps" scores against the second's
    other scores (:func:`scipy.stats.mannwhitneyu`: comparisons won, ties counting half), whose
    weighted sum over the weighted number of comparisons is the AUROC (NaN without both classes).
    """
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import confusion_matrix

    rows_of = _rows_of_clusters(rows["dataset"].to_numpy())
    truth, predicted = rows["outcome"].to_numpy(str), rows["predicted"].to_numpy(str)
    confusion = np.stack([confusion_matrix(truth[r], predicted[r], labels=list(OUTCOMES)) for r in rows_of])
    replicate_confusion = np.einsum("bd,dij->bij", weights, confusion)
    per_class = replicate_confusion.sum(axis=2)
    recall = np.diagonal(replicate_confusion, axis1=1, axis2=2) / np.where(per_class > 0, per_class, 1)
    balanced = np.nanmean(np.where(per_class > 0, recall, np.nan), axis=1)

    score = rows["score"].to_numpy(float)
    positive = [score[r][(truth[r] == "helps") & ~np.isnan(score[r])] for r in rows_of]
    negative = [score[r][(truth[r] != "helps") & ~np.isnan(score[r])] for r in rows_of]
    wins = np.array(
        [
            [mannwhitneyu(p, q, method="asymptotic").statistic if len(p) and len(q) else 0.0 for q in negative]
            for p in positive
        ]
    )
    comparisons = (weights @ [len(p) for p in positive]) * (weights @ [len(q) for q in negative])
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = np.einsum("bd,de,be->b", weights, wins, weights) / comparisons
    return balanced, np.where(comparisons > 0, auroc, np.nan)


# ----------------------------------------------------------------------------- claims and tables
def claim_rows(
    pairs: pd.DataFrame,
    directions: Mapping[str, int],
    kinds: Mapping[str, str],
    sources: Mapping[str, str],
    method: str,
    *,
    n_boot: int = claims.N_BOOT,
    seed: int = 0,
) -> list[dict]:
    """One claim per predictor: its oriented signal ranks the pairs by ``method``'s gain.

    Each is a :class:`cmkd_lab.analysis.claims.Claim` (prediction ``"> 0"``, sesoi
    :data:`TAU_SESOI` in Spearman ρ) judged by :meth:`~cmkd_lab.analysis.claims.Claim.judge_correlation`
    over the pairs where the predictor is defined, datasets resampled whole.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table.
    directions : mapping of str to {+1, -1}
        Per predictor, its direction.
    kinds : mapping of str to {"paper", "finding"}
        Per predictor: a seed paper's signal (``"paper"``) or the kit's own (``"finding"``:
        baselines, the random floor).
    sources : mapping of str to str
        Per predictor, where its claim comes from (e.g. "NTDH abstract", "kit").
    method : str
        The distillation method whose gain is ranked.
    n_boot, seed : int
        As in :func:`cmkd_lab.analysis.claims.judge_correlation`.

    Returns
    -------
    list of dict
        Rows for :func:`cmkd_lab.analysis.claims.table`, in ``directions``' order, setting ``method``.
    """
    frame = _checked_pairs(pairs, directions)
    part = _of_method(frame, method)
    for name, mapping in (("kinds", kinds), ("sources", sources)):
        missing = [predictor for predictor in directions if predictor not in mapping]
        if missing:
            raise ValueError(f"{name} must name every predictor; missing: {', '.join(missing)}")
    wrong = {predictor: kinds[predictor] for predictor in directions if kinds[predictor] not in CLAIM_KINDS}
    if wrong:
        raise ValueError(f"unknown claim kinds {wrong}; valid kinds: {', '.join(CLAIM_KINDS)}")
    rows = []
    for predictor, direction in directions.items():
        larger = "larger" if direction > 0 else "smaller"
        statement = claims.Claim(
            claim=f"the {larger} {predictor}, the larger {method}'s gain over No-KD across pairs",
            source=sources[predictor],
            kind=kinds[predictor],
            quantity=f"Spearman ρ(oriented {predictor}, Δ {method}) over pairs, datasets resampled whole",
            unit="Spearman ρ",
            prediction="> 0",
            sesoi=TAU_SESOI,
        )
        rows.append(
            statement.judge_correlation(
                direction * part[predictor].to_numpy(float),
                part["delta"].to_numpy(float),
                clusters=part["dataset"].to_numpy(),
                setting=method,
                n_boot=n_boot,
                seed=seed,
            )
        )
    return rows


def leaderboard(
    scores: pd.DataFrame, lodo_summary: pd.DataFrame, method: str, families: Mapping[str, str]
) -> pd.DataFrame:
    """The notebook's table for one method: each predictor's rank scores and held-out accuracy.

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`rank_scores`'s output.
    lodo_summary : pandas.DataFrame
        :func:`leave_one_dataset_out`'s summary for ``method``.
    method : str
        The method whose rows are shown.
    families : mapping of str to str
        Per predictor, its family (e.g. "MFH", "NTDH", "naive", "random").

    Returns
    -------
    pandas.DataFrame
        One row per predictor, sorted by τ_w (undefined last), then the logistic model and the
        majority floor: predictor, family, "τ_w [95% CI]", "ρ [95% CI]", "LODO balanced accuracy
        [95% CI]", "AUROC [95% CI]", "n pairs"; cells as text.
    """
    ranked = scores[scores["method"] == method]
    if ranked.empty:
        raise ValueError(f"no rank scores for method {method!r}; valid methods: {', '.join(scores['method'].unique())}")
    missing = [predictor for predictor in ranked["predictor"] if predictor not in families]
    if missing:
        raise ValueError(f"families must name every predictor; missing: {', '.join(missing)}")
    held_out = lodo_summary.set_index("model")
    ranked = ranked.sort_values("tau_w", ascending=False, na_position="last", kind="stable")
    rows = [
        {
            "predictor": row["predictor"],
            "family": families[row["predictor"]],
            "τ_w [95% CI]": _cell(row["tau_w"], row["tau_w_low"], row["tau_w_high"], signed=True),
            "ρ [95% CI]": _cell(row["rho"], row["rho_low"], row["rho_high"], signed=True),
            **_held_out_cells(held_out, row["predictor"]),
            "n pairs": int(row["n_pairs"]),
        }
        for _, row in ranked.iterrows()
    ]
    for model, family in ((LOGISTIC, "all predictors"), (MAJORITY, "floor")):
        if model in held_out.index:
            cells = _held_out_cells(held_out, model)
            empty = {"τ_w [95% CI]": "", "ρ [95% CI]": ""}
            rows.append(
                {"predictor": model, "family": family, **empty, **cells, "n pairs": int(held_out.at[model, "n_pairs"])}
            )
    return pd.DataFrame(rows)


def _held_out_cells(held_out: pd.DataFrame, model: str) -> dict:
    if model not in held_out.index:
        return {"LODO balanced accuracy [95% CI]": "", "AUROC [95% CI]": ""}
    row = held_out.loc[model]
    return {
        "LODO balanced accuracy [95% CI]": _cell(
            row["balanced_accuracy"], row["balanced_accuracy_low"], row["balanced_accuracy_high"]
        ),
        "AUROC [95% CI]": _cell(row["auroc"], row["auroc_low"], row["auroc_high"]),
    }


def _cell(estimate: float, low: float, high: float, signed: bool = False) -> str:
    def number(value):
        return f"{value:+.2f}" if signed else f"{value:.2f}"

    if pd.isna(estimate):
        return ""
    if pd.isna(low) or pd.isna(high):
        return number(estimate)
    return f"{number(estimate)} [{number(low)}, {number(high)}]"


# ----------------------------------------------------------------------------- internals
def _checked_pairs(pairs: pd.DataFrame, directions: Mapping[str, int], with_outcome: bool = False) -> pd.DataFrame:
    """The pair table, checked: its columns, one row per (dataset, pair, method), the directions
    (+1 or -1, each naming a column) and, ``with_outcome``, outcomes in :data:`OUTCOMES`."""
    if not isinstance(pairs, pd.DataFrame):
        raise TypeError(f"pairs must be a pandas DataFrame (the pair table); got {type(pairs).__name__}")
    _require_columns(pairs, (*PAIR_COLUMNS, "outcome") if with_outcome else PAIR_COLUMNS)
    if not directions:
        raise ValueError("directions must name at least one predictor")
    missing = [predictor for predictor in directions if predictor not in pairs.columns]
    if missing:
        known = [c for c in pairs.columns if c not in (*PAIR_COLUMNS, "outcome", "delta_low", "delta_high", "n_seeds")]
        raise ValueError(f"predictors without a column: {', '.join(missing)}; the table's predictors: {known}")
    wrong = {predictor: d for predictor, d in directions.items() if d not in (1, -1)}
    if wrong:
        raise ValueError(f"a direction is +1 or -1; got {wrong}")
    duplicated = pairs.duplicated(subset=["dataset", "pair", "method"])
    if duplicated.any():
        first = pairs.loc[duplicated, ["dataset", "pair", "method"]].iloc[0].tolist()
        raise ValueError(f"one row per (dataset, pair, method) expected; {duplicated.sum()} repeated, e.g. {first}")
    if with_outcome:
        _checked_outcomes(pairs["outcome"])
    return pairs


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"the pair table lacks columns {missing}; it has {list(frame.columns)}")


def _checked_outcomes(values) -> np.ndarray:
    labels = np.asarray(values, dtype=object).ravel()
    unknown = sorted({str(v) for v in labels} - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcomes {unknown}; valid outcomes: {', '.join(OUTCOMES)}")
    return labels


def _outcome_codes(labels: np.ndarray) -> np.ndarray:
    return pd.Categorical(labels, categories=OUTCOMES).codes


def _of_method(frame: pd.DataFrame, method: str) -> pd.DataFrame:
    part = frame[frame["method"] == method]
    if part.empty:
        valid = ", ".join(map(str, frame["method"].unique()))
        raise ValueError(f"no pairs of method {method!r}; valid methods: {valid}")
    return part


def _rows_of_clusters(labels: np.ndarray) -> list[np.ndarray]:
    """Row indices of each cluster, clusters in order of first appearance."""
    codes, _ = pd.factorize(pd.Series(labels, dtype=object))
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)] if len(codes) else []


def _cluster_draws(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples of ``n_clusters`` cluster indices, with replacement: shape (n_boot, n_clusters)."""
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def _percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    replicates = np.asarray(replicates, dtype=float)
    if len(replicates) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)
