"""The one verdict rule: error rates under simulated studies, agreement with scipy/statsmodels,
and the rule's cases one by one."""

import gc

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from cmkd_lab.analysis import claims

STATEMENT = {"claim": "KD beats No-KD", "source": "test", "kind": "paper", "unit": "points"}
MFH_NOISE = 1.2  # per-seed std of KD − No-KD in points, MFH Gaussian Fig. 2 runs (quick profile, 10 seeds)


def _held_share(effect: float, spread: float, n_seeds: int, n_studies: int, family: int = 1, seed: int = 0):
    """The share of simulated studies with any claim of the family held (sesoi 1 point)."""
    generator = np.random.default_rng(seed)
    held_any = 0
    gc.freeze()  # statsmodels' Holm runs gc.collect(); the test's heap would make it 0.1 s a call
    try:
        for _ in range(n_studies):
            rows = [
                claims.judge(generator.normal(effect, spread, n_seeds), "> 0", 1.0, **STATEMENT) for _ in range(family)
            ]
            verdicts = claims.table(rows)["verdict"] if family > 1 else [rows[0]["verdict"]]
            held_any += any(v == "held" for v in verdicts)
    finally:
        gc.unfreeze()
    return held_any / n_studies


def test_a_true_null_is_held_in_at_most_five_percent_of_studies():
    assert _held_share(0.0, MFH_NOISE, n_seeds=10, n_studies=1000) <= 0.05


def test_a_family_of_ten_true_nulls_has_any_held_in_at_most_five_percent_with_holm():
    assert _held_share(0.0, MFH_NOISE, n_seeds=10, n_studies=1000, family=10, seed=1) <= 0.05


def test_an_effect_of_twice_the_sesoi_at_d_1_and_ten_seeds_is_held_in_three_quarters_of_studies():
    assert _held_share(2.0, 2.0, n_seeds=10, n_studies=1000, seed=2) >= 0.75


@pytest.mark.parametrize("prediction, alternative", [("> 0", "greater"), ("< 0", "less")])
def test_judge_agrees_with_scipys_one_sample_t_test(prediction, alternative):
    values = np.array([0.4, 1.9, 2.5, -0.3, 1.1, 0.8, 2.2])
    row = claims.judge(values, prediction, 0.5, **STATEMENT)
    reference = stats.ttest_1samp(values, 0.0)
    interval = reference.confidence_interval(0.95)
    assert row["estimate"] == pytest.approx(values.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert row["p_value"] == pytest.approx(stats.ttest_1samp(values, 0.0, alternative=alternative).pvalue)
    assert row["n_units"] == 7


def test_an_equivalence_claim_uses_statsmodels_tost():
    values = np.array([0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.08, -0.05])
    row = claims.judge(values, "= 0", 0.5, **STATEMENT)
    assert row["p_value"] == pytest.approx(DescrStatsW(values).ttost_mean(-0.5, 0.5)[0])
    assert row["verdict"] == "held"


def test_table_applies_holm_within_each_kind_only():
    generator = np.random.default_rng(3)
    rows = [
        claims.judge(generator.normal(0.8, 1.0, 8), "> 0", 0.5, **{**STATEMENT, "kind": kind})
        for kind in ("paper", "paper", "paper", "check", "check")
    ]
    frame = claims.table(rows)
    for kind in ("paper", "check"):
        family = frame[frame["kind"] == kind]
        expected = multipletests(family["p_value"], method="holm")[1]
        assert family["p_adjusted"].to_numpy() == pytest.approx(expected)


def _row(low, high, prediction="> 0", sesoi=1.0, p=0.001):
    return {"ci_low": low, "ci_high": high, "prediction": prediction, "sesoi": sesoi, "p_adjusted": p, "note": ""}


@pytest.mark.parametrize(
    "low, high, prediction, p, expected",
    [
        (0.5, 3.0, "> 0", 0.001, "held"),
        (0.5, 3.0, "> 0", 0.2, "not resolved"),  # Holm says the family's evidence is too weak
        (0.1, 0.8, "> 0", 0.001, "not held"),  # above 0 but wholly inside ±sesoi: too small to matter
        (-3.0, -0.5, "> 0", 0.99, "not held"),  # a significant loss
        (-0.5, 3.0, "> 0", 0.2, "not resolved"),  # a null result never holds a claim
        (-3.0, -0.5, "< 0", 0.001, "held"),
        (0.5, 3.0, "< 0", 0.99, "not held"),
        (-0.5, 0.5, "= 0", 0.01, "held"),  # equivalence: wholly inside ±sesoi
        (-0.5, 3.0, "= 0", 0.5, "not resolved"),  # no gain shown, but no equivalence either
        (0.2, 3.0, "= 0", 0.9, "not held"),  # a gain beyond the margin
        (-4.0, -0.2, "= 0", 0.9, "not held"),  # a significant loss is not "no gain"
    ],
)
def test_the_rule_case_by_case(low, high, prediction, p, expected):
    assert claims.verdict_of(_row(low, high, prediction, p=p)) == expected


def test_models_at_chance_are_not_resolved_whatever_the_interval():
    row = claims.judge([0.0, 0.0, 0.0, 0.0], "= 0", 1.0, at_chance=True, **STATEMENT)
    assert row["verdict"] == "not resolved" and "chance" in row["note"]
    loss = claims.judge([-14.0, -15.5, -15.0, -14.9], "= 0", 1.0, **STATEMENT)
    assert loss["verdict"] == "not held"


def test_one_unit_is_not_resolved_and_the_note_says_how_many_would_resolve():
    assert claims.judge([2.0], "> 0", 1.0, **STATEMENT)["verdict"] == "not resolved"
    row = claims.judge([0.5, -0.3, 1.4], "> 0", 1.0, **STATEMENT)
    assert row["verdict"] == "not resolved"
    assert row["note"].startswith("~") and "would resolve 1 points" in row["note"]
    assert row["resolvable"] > 1.0


def test_clusters_are_averaged_into_units():
    row = claims.judge([1.0, 3.0, 2.0, 2.0, 0.0, 4.0], "> 0", 1.0, clusters=["a", "a", "b", "b", "c", "c"], **STATEMENT)
    assert row["n_units"] == 3 and row["estimate"] == pytest.approx(2.0)


def test_a_correlation_is_bootstrapped_over_clusters_and_judged():
    generator = np.random.default_rng(4)
    x = np.repeat(np.arange(12.0), 2)  # a symmetric quantity: both directions of a pair share x
    y = -x + generator.normal(0, 1.0, 24)
    row = claims.judge_correlation(x, y, "< 0", 0.1, clusters=np.repeat(np.arange(12), 2), **STATEMENT)
    assert row["n_units"] == 12
    assert row["estimate"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"] < 0
    assert row["verdict"] == "held"


def test_the_stratified_spearman_is_scipys_rho_per_stratum_to_the_last_bit():
    generator = np.random.default_rng(6)
    for trial in range(300):
        n = int(generator.integers(1, 40))
        x = generator.integers(0, 5, n) * 0.1 if trial % 2 else generator.normal(size=n)  # ties, or none
        y = np.round(generator.normal(size=n), 1)
        levels = generator.integers(0, 4, n)
        correlations, weights = [], []
        for level in np.unique(levels):
            inside = levels == level
            if inside.sum() >= 3 and np.ptp(x[inside]) > 0 and np.ptp(y[inside]) > 0:
                ranks = np.column_stack([stats.rankdata(x[inside]), stats.rankdata(y[inside])])
                correlations.append(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])
                weights.append(inside.sum())
        expected = np.average(correlations, weights=weights) if correlations else np.nan
        assert claims._stratified_spearman(x, y, levels) == pytest.approx(expected, abs=0, rel=0, nan_ok=True)


def test_the_bootstrap_replicates_equal_one_stratified_spearman_per_resample():
    generator = np.random.default_rng(7)
    for trial in range(100):
        n_units, per_unit = int(generator.integers(1, 20)), int(generator.integers(1, 5))
        row_unit = np.repeat(np.arange(n_units), per_unit)  # a unit's rows are resampled together
        x = generator.integers(0, 4, len(row_unit)) * 0.5 if trial % 2 else generator.normal(size=len(row_unit))
        y = np.round(generator.normal(size=len(row_unit)), 1)
        levels = np.tile(np.arange(per_unit), n_units) if trial % 3 else generator.integers(0, 3, len(row_unit))
        resamples = generator.integers(0, n_units, (50, n_units))
        one_by_one = []
        for units in resamples:
            rows = np.concatenate([np.flatnonzero(row_unit == unit) for unit in units])
            one_by_one.append(claims._stratified_spearman(x[rows], y[rows], levels[rows]))
        together = claims._resampled_stratified_spearman(x, y, levels, row_unit, resamples)
        assert np.array_equal(together, one_by_one, equal_nan=True)


def test_a_correlation_made_by_a_knob_vanishes_within_the_knob():
    generator = np.random.default_rng(5)
    knob = np.repeat(np.arange(6.0), 10)
    x = knob + generator.normal(0, 0.3, 60)  # the knob drives both quantities
    y = knob + generator.normal(0, 0.3, 60)
    seeds = np.tile(np.arange(10), 6)
    pooled = claims.judge_correlation(x, y, "> 0", 0.1, clusters=seeds, **STATEMENT)
    within = claims.judge_correlation(x, y, "> 0", 0.1, clusters=seeds, strata=knob, **STATEMENT)
    assert pooled["verdict"] == "held"
    assert within["verdict"] != "held" and abs(within["estimate"]) < 0.3


def test_a_statement_with_an_unknown_kind_or_prediction_or_no_sesoi_is_refused():
    with pytest.raises(ValueError, match="valid kinds: paper, finding, check"):
        claims.judge([1.0, 2.0], "> 0", 1.0, **{**STATEMENT, "kind": "support"})
    with pytest.raises(ValueError, match="valid predictions"):
        claims.judge([1.0, 2.0], ">", 1.0, **STATEMENT)
    with pytest.raises(ValueError, match="sesoi must be a positive number"):
        claims.Claim("c", "s", "paper", "q", "u", "> 0", 0.0)


def test_saved_claims_keep_every_column_and_the_verdicts_follow_the_rule(tmp_path):
    generator = np.random.default_rng(6)
    spec = claims.Claim("KD beats No-KD", "MFH §4", "paper", "KD − No-KD", "points", "> 0", 1.0)
    frame = claims.table([spec.judge(generator.normal(3, 1, 10), setting=f"γ = {g}") for g in (0.0, 1.0)])
    loaded = claims.load(claims.save(tmp_path, frame))
    assert list(loaded.columns) == list(claims.COLUMNS)
    assert [claims.verdict_of(row) for row in loaded.to_dict("records")] == loaded["verdict"].tolist()
    assert claims.counts(loaded) == {"held": 2, "not held": 0, "not resolved": 0}
    assert isinstance(claims.readable(loaded), pd.DataFrame)


def test_a_correlation_whose_models_ended_at_chance_is_not_resolved_and_chance_has_one_ceiling():
    x = np.arange(12.0)
    row = claims.judge_correlation(x, -x, "< 0", 0.1, at_chance=True, **STATEMENT)
    assert row["verdict"] == "not resolved" and row["note"].startswith("models ended at chance")
    assert claims.judge_correlation([], [], "< 0", 0.1, **STATEMENT)["verdict"] == "not resolved"
    assert claims.chance_ceiling(4) == pytest.approx(0.30)
    assert claims.chance_ceiling(np.array([2, 10])) == pytest.approx([0.55, 0.15])
