"""Scoring the diagnosis (cmkd_lab.studies.diagnosis.scoring): rank scores with cluster-bootstrap
intervals over datasets, leave-one-dataset-out rules, claims and the leaderboard, on planted tables."""

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from cmkd_lab.analysis import claims
from cmkd_lab.studies.diagnosis import scoring

N_BOOT = 300  # enough for the intervals' ordering asserted here, and fast
DATASETS = ("A", "B", "C", "D")


def planted_table(seed=0, methods=("kd",)):
    """4 datasets × 6 pairs: ``good`` is Δ plus small noise, ``negated`` its negation (direction -1),
    ``noise`` independent of Δ."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, k, method in itertools.product(DATASETS, range(6), methods):
        delta = rng.normal(0, 2)
        rows.append(dict(dataset=dataset, pair=f"v{k}>w{k}", method=method, delta=delta, n_seeds=5))
    table = pd.DataFrame(rows)
    table["delta_low"], table["delta_high"] = table["delta"] - 1, table["delta"] + 1
    table["outcome"] = scoring.outcomes(table)
    table["good"] = table["delta"] + rng.normal(0, 0.1, len(table))
    table["negated"] = -table["good"]
    table["noise"] = rng.normal(0, 1, len(table))
    return table


PLANTED_DIRECTIONS = {"good": 1, "negated": -1, "noise": 1}


def separable_table():
    """4 datasets × 6 pairs, two of each outcome per dataset, Δ well apart between outcomes;
    ``signal`` = Δ separates them, ``flipped`` is Δ except in dataset D, where it is −Δ."""
    levels = {"hurts": (-4.0, -3.0), "no difference": (-0.3, 0.3), "helps": (3.0, 4.0)}
    rows = []
    for index, dataset in enumerate(DATASETS):
        for outcome, (low, high) in levels.items():
            for k, delta in enumerate((low + 0.1 * index, high - 0.1 * index)):
                rows.append(dict(dataset=dataset, pair=f"{outcome}{k}", method="kd", delta=delta, outcome=outcome))
    table = pd.DataFrame(rows)
    table["signal"] = table["delta"]
    table["flipped"] = np.where(table["dataset"] == "D", -table["delta"], table["delta"])
    return table


# ----------------------------------------------------------------------------- outcomes
@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.1, 2.0, "helps"),
        (-2.0, -0.1, "hurts"),
        (0.0, 1.0, "no difference"),  # touching 0 resolves nothing
        (-1.0, 0.0, "no difference"),
        (0.0, 0.0, "no difference"),
        (float("nan"), float("nan"), "no difference"),  # one seed: no interval
        (-float("inf"), float("inf"), "no difference"),
        (2.0, 2.0, "helps"),
    ],
)
def test_outcome_of_edges(low, high, expected):
    assert scoring.outcome_of(low, high) == expected


def test_outcomes_match_outcome_of_and_reject_reversed_intervals():
    frame = pd.DataFrame({"delta_low": [0.5, -2.0, -1.0, np.nan], "delta_high": [1.0, -0.5, 1.0, np.nan]})
    labels = scoring.outcomes(frame)
    assert labels.tolist() == [scoring.outcome_of(lo, hi) for lo, hi in zip(frame["delta_low"], frame["delta_high"])]
    assert labels.tolist() == ["helps", "hurts", "no difference", "no difference"]
    with pytest.raises(ValueError, match="low end"):
        scoring.outcome_of(1.0, 0.0)
    with pytest.raises(ValueError, match="delta_low exceeds"):
        scoring.outcomes(pd.DataFrame({"delta_low": [1.0], "delta_high": [0.0]}))


# ----------------------------------------------------------------------------- rank scores
def test_rank_scores_find_a_planted_predictor_whatever_its_direction():
    scores = scoring.rank_scores(planted_table(methods=("kd", "fitnet")), PLANTED_DIRECTIONS, n_boot=N_BOOT)
    assert set(zip(scores["predictor"], scores["method"])) == set(
        itertools.product(PLANTED_DIRECTIONS, ("kd", "fitnet"))
    )
    scores = scores.set_index(["predictor", "method"])
    for method in ("kd", "fitnet"):
        good, negated, noise = (scores.loc[(p, method)] for p in ("good", "negated", "noise"))
        assert good["tau_w"] > 0.8 and good["tau_w_low"] > 0 and good["rho_low"] > 0
        assert good["n_pairs"] == 24 and good["n_datasets"] == 4
        numbers = ["tau_w", "tau_w_low", "tau_w_high", "rho", "rho_low", "rho_high"]
        np.testing.assert_allclose(negated[numbers].to_numpy(float), good[numbers].to_numpy(float))
        assert noise["tau_w_low"] < 0 < noise["tau_w_high"]


def test_an_unrelated_predictors_interval_mostly_covers_zero():
    # nominal 95%; a bootstrap over 4 clusters covers less, but far more often than not
    covered = [
        row["tau_w_low"] < 0 < row["tau_w_high"]
        for seed in range(10)
        for row in scoring.rank_scores(planted_table(seed), {"noise": 1}, n_boot=200).to_dict("records")
    ]
    assert sum(covered) >= 7


def test_the_bootstrap_resamples_datasets_not_pairs():
    # all the correlation sits in dataset A; the other datasets' signals are unrelated to Δ
    rng = np.random.default_rng(1)
    rows = []
    for dataset, k in itertools.product(DATASETS, range(6)):
        delta, signal = (-10.0 + 4 * k,) * 2 if dataset == "A" else (rng.normal(0, 0.5), rng.normal())
        rows.append(dict(dataset=dataset, pair=f"p{k}", method="kd", delta=delta, signal=signal))
    table = pd.DataFrame(rows)
    by_dataset = scoring.rank_scores(table, {"signal": 1}, n_boot=N_BOOT).iloc[0]
    # every pair its own cluster: a pair-level bootstrap, which ignores that A's pairs stand or fall together
    by_pair = scoring.rank_scores(table.assign(dataset=table["dataset"] + table["pair"]), {"signal": 1}, n_boot=N_BOOT)
    by_pair = by_pair.iloc[0]
    assert by_dataset["tau_w"] == pytest.approx(by_pair["tau_w"])
    assert by_pair["tau_w_low"] > 0 > by_dataset["tau_w_low"]
    width = by_dataset["tau_w_high"] - by_dataset["tau_w_low"]
    assert width > by_pair["tau_w_high"] - by_pair["tau_w_low"]


def test_rank_scores_drop_undefined_pairs_and_give_nan_below_three():
    table = planted_table()
    table.loc[table["dataset"] == "A", "good"] = np.nan
    table["sparse"] = np.nan
    table.loc[table.index[:2], "sparse"] = [1.0, 2.0]
    scores = scoring.rank_scores(table, {"good": 1, "sparse": 1}, n_boot=50).set_index("predictor")
    assert scores.loc["good", "n_pairs"] == 18 and scores.loc["good", "n_datasets"] == 3
    assert scores.loc["good", "tau_w"] > 0.8
    assert scores.loc["sparse", "n_pairs"] == 2
    assert scores.loc["sparse", ["tau_w", "rho", "tau_w_low", "rho_high"]].isna().all()


def test_rank_scores_are_reproducible_by_seed():
    table = planted_table()
    first, again = (scoring.rank_scores(table, PLANTED_DIRECTIONS, n_boot=100, seed=3) for _ in range(2))
    pd.testing.assert_frame_equal(first, again)
    other = scoring.rank_scores(table, PLANTED_DIRECTIONS, n_boot=100, seed=4)
    assert not np.allclose(first["tau_w_low"], other["tau_w_low"])


# ----------------------------------------------------------------------------- the threshold rule
def test_threshold_rule_maximises_balanced_accuracy_over_its_grid():
    rng = np.random.default_rng(0)
    signal = np.round(rng.normal(size=12), 1)
    labels = np.array(scoring.OUTCOMES, dtype=object)[rng.integers(0, 3, size=12)]
    rule = scoring.ThresholdRule.fit(signal, labels)
    assert rule.low <= rule.high
    assert rule.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, rule.predict(signal)))
    values = np.unique(signal)
    grid = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
    best = max(
        balanced_accuracy_score(labels, scoring.ThresholdRule(low, high, "hurts", np.nan, 1).predict(signal))
        for low, high in itertools.combinations_with_replacement(grid, 2)
    )
    assert rule.balanced_accuracy == pytest.approx(best)


def test_threshold_rule_ties_and_undefined_signals():
    # one class: every "no difference" rule is perfect; the widest band wins
    rule = scoring.ThresholdRule.fit([1.0, 2.0, 3.0], ["no difference"] * 3)
    assert (rule.low, rule.high) == (-np.inf, np.inf)
    rule = scoring.ThresholdRule.fit([1.0, 2.0, 3.0], ["helps"] * 3)
    assert rule.predict([-100.0, 100.0]).tolist() == ["helps", "helps"]
    # undefined signals get the training majority, as does every pair when training had no signal
    rule = scoring.ThresholdRule.fit([1.0, 2.0, np.nan, np.nan], ["hurts", "helps", "hurts", "hurts"])
    assert rule.n_fitted == 2 and rule.fallback == "hurts"
    assert rule.predict([np.nan, 0.0, 5.0]).tolist() == ["hurts", "hurts", "helps"]
    empty = scoring.ThresholdRule.fit([np.nan, np.nan], ["helps", "no difference"])
    assert empty.fallback == "no difference"  # a tie goes to the null prediction
    assert empty.predict([1.0, np.nan]).tolist() == ["no difference"] * 2
    with pytest.raises(ValueError, match="valid outcomes"):
        scoring.ThresholdRule.fit([1.0], ["better"])


# ----------------------------------------------------------------------------- leave one dataset out
def test_lodo_scores_a_perfect_separator_perfectly():
    table = separable_table()
    predictions, summary = scoring.leave_one_dataset_out(table, {"signal": 1}, "kd", n_boot=N_BOOT)
    summary = summary.set_index("model")
    assert list(summary.index) == ["signal", scoring.LOGISTIC, scoring.MAJORITY]
    assert summary.loc["signal", "balanced_accuracy"] == 1.0
    assert summary.loc["signal", "auroc"] == 1.0
    assert summary.loc["signal", ["n_pairs", "n_datasets"]].tolist() == [24, 4]
    # the majority predicts one class everywhere: a balanced accuracy of 1/3 with three classes
    assert summary.loc[scoring.MAJORITY, "balanced_accuracy"] == pytest.approx(1 / 3)
    assert np.isnan(summary.loc[scoring.MAJORITY, "auroc"])
    assert set(predictions.columns) == set(scoring.PREDICTION_COLUMNS)
    assert len(predictions) == 3 * len(table)
    logistic = predictions[predictions["model"] == scoring.LOGISTIC]
    assert logistic["score"].between(0, 1).all()


def test_lodo_never_trains_on_the_held_out_dataset(monkeypatch):
    table = separable_table()
    seen = []
    fit = scoring.ThresholdRule.fit.__func__

    def recording_fit(cls, signal, outcomes):
        seen.append(set(np.round(np.asarray(signal, dtype=float), 6)))
        return fit(cls, signal, outcomes)

    monkeypatch.setattr(scoring.ThresholdRule, "fit", classmethod(recording_fit))
    predictions, summary = scoring.leave_one_dataset_out(table, {"flipped": 1}, "kd", n_boot=50)
    values_of = {d: set(np.round(part["flipped"], 6)) for d, part in table.groupby("dataset")}
    assert len(seen) == len(DATASETS)
    for held_out, training in zip(DATASETS, seen):
        assert training.isdisjoint(values_of[held_out])
        assert training == set().union(*(values_of[d] for d in DATASETS if d != held_out))
    # the relation flips in D alone: the rule learnt elsewhere swaps D's hurts and helps
    rule = predictions[predictions["model"] == "flipped"]
    in_d = rule["dataset"] == "D"
    swap = {"hurts": "helps", "helps": "hurts", "no difference": "no difference"}
    assert (rule.loc[in_d, "predicted"] == rule.loc[in_d, "outcome"].map(swap)).all()
    assert (rule.loc[~in_d, "predicted"] == rule.loc[~in_d, "outcome"]).all()
    assert summary.set_index("model").loc["flipped", "balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 4 + 1) / 3)


def test_lodo_falls_back_to_the_majority_where_a_predictor_is_undefined():
    table = separable_table()
    table["partial"] = np.where(table["dataset"] == "B", np.nan, table["signal"])
    table.loc[table["dataset"] == "A", "outcome"] = "hurts"  # training majority of every fold but A's: hurts
    predictions, summary = scoring.leave_one_dataset_out(table, {"partial": 1}, "kd", n_boot=50)
    rule = predictions[predictions["model"] == "partial"]
    in_b = rule["dataset"] == "B"
    assert (rule.loc[in_b, "predicted"] == "hurts").all() and rule.loc[in_b, "fell_back"].all()
    assert rule.loc[in_b, "score"].isna().all() and rule.loc[~in_b, "score"].notna().all()
    note = summary.set_index("model").loc["partial", "note"]
    assert note.startswith("6 of 24 pairs fell back to the training majority")
    assert summary.set_index("model").loc[scoring.LOGISTIC, "note"] == ""


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_pooled_bootstrap_replicates_match_sklearn_with_dataset_weights():
    predictions, _ = scoring.leave_one_dataset_out(planted_table(), PLANTED_DIRECTIONS, "kd", n_boot=10)
    rows = predictions[predictions["model"] == "noise"].reset_index(drop=True)
    weights = np.array([[1, 0, 2, 1], [0, 0, 4, 0], [2, 2, 0, 0], [0, 3, 0, 1]], dtype=float)
    balanced, auroc = scoring._pooled_replicates(rows, weights)
    assert np.isfinite(auroc).sum() >= 2
    dataset_index = rows["dataset"].map({d: i for i, d in enumerate(DATASETS)}).to_numpy()
    helps = rows["outcome"].to_numpy() == "helps"
    for b, replicate in enumerate(weights):
        row_weight = replicate[dataset_index]
        expected = balanced_accuracy_score(rows["outcome"], rows["predicted"], sample_weight=row_weight)
        assert balanced[b] == pytest.approx(expected)
        used = row_weight > 0
        if 0 < helps[used].sum() < used.sum():
            expected = roc_auc_score(helps[used], rows["score"][used], sample_weight=row_weight[used])
            assert auroc[b] == pytest.approx(expected)
        else:
            assert np.isnan(auroc[b])


# ----------------------------------------------------------------------------- claims and tables
def test_claim_rows_go_through_the_kits_verdict_rule():
    kinds = {"good": "paper", "negated": "paper", "noise": "finding"}
    sources = {"good": "a paper's abstract", "negated": "another paper", "noise": "kit"}
    rows = scoring.claim_rows(planted_table(), PLANTED_DIRECTIONS, kinds, sources, "kd", n_boot=N_BOOT)
    frame = claims.table(rows).set_index("source")
    assert list(frame["kind"]) == ["paper", "paper", "finding"]
    assert (frame["sesoi"] == scoring.TAU_SESOI).all() and (frame["n_units"] == 4).all()
    assert frame.loc["a paper's abstract", "verdict"] == "held"
    assert frame.loc["another paper", "estimate"] == pytest.approx(frame.loc["a paper's abstract", "estimate"])
    assert frame.loc["kit", "verdict"] != "held"
    with pytest.raises(ValueError, match="valid kinds"):
        scoring.claim_rows(planted_table(), {"good": 1}, {"good": "check"}, {"good": "kit"}, "kd")
    with pytest.raises(ValueError, match="sources must name every predictor; missing: good"):
        scoring.claim_rows(planted_table(), {"good": 1}, {"good": "paper"}, {}, "kd")


def test_leaderboard_sorts_by_weighted_tau_and_ends_with_the_floors():
    table = planted_table()
    scores = scoring.rank_scores(table, PLANTED_DIRECTIONS, n_boot=50)
    _, summary = scoring.leave_one_dataset_out(table, PLANTED_DIRECTIONS, "kd", n_boot=50)
    families = {"good": "MFH", "negated": "NTDH", "noise": "random"}
    board = scoring.leaderboard(scores, summary, "kd", families)
    assert board["predictor"].tolist()[-3:] == ["noise", scoring.LOGISTIC, scoring.MAJORITY]
    assert board.set_index("predictor").loc["noise", "family"] == "random"
    assert board["τ_w [95% CI]"].iloc[0].startswith("+0.9")
    assert board.set_index("predictor").loc[scoring.MAJORITY, "LODO balanced accuracy [95% CI]"].startswith("0.")
    with pytest.raises(ValueError, match="missing: noise"):
        scoring.leaderboard(scores, summary, "kd", {"good": "MFH", "negated": "NTDH"})
    with pytest.raises(ValueError, match="valid methods: kd"):
        scoring.leaderboard(scores, summary, "dkd", families)


@pytest.mark.parametrize(
    ("change", "directions", "message"),
    [
        (lambda t: t, {"good": 2}, "a direction is"),
        (lambda t: t, {"missing": 1}, "predictors without a column: missing"),
        (lambda t: t, {}, "at least one predictor"),
        (lambda t: t.drop(columns="outcome"), {"good": 1}, "lacks columns"),
        (lambda t: t.assign(outcome="better"), {"good": 1}, "valid outcomes"),
        (lambda t: pd.concat([t, t.iloc[:1]]), {"good": 1}, r"one row per \(dataset, pair, method\)"),
    ],
)
def test_bad_input_stops_with_a_clear_message(change, directions, message):
    with pytest.raises(ValueError, match=message):
        scoring.leave_one_dataset_out(change(planted_table()), directions, "kd", n_boot=10)


def test_lodo_names_the_valid_methods_and_needs_two_datasets():
    table = planted_table()
    with pytest.raises(ValueError, match="valid methods: kd"):
        scoring.leave_one_dataset_out(table, {"good": 1}, "fitnet")
    with pytest.raises(ValueError, match="at least 2 datasets"):
        scoring.leave_one_dataset_out(table[table["dataset"] == "A"], {"good": 1}, "kd")
