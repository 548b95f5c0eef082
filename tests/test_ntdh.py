"""NTDH notebooks (quick profile): the claims they make, read from the results they recorded."""

import json

import pandas as pd
import pytest
from scipy import stats

from cmkd_lab.analysis.results import claim_verdicts
from cmkd_lab.studies.ntdh import common, gaussian, multiclass_methods, realpairs


@pytest.fixture(scope="module")
def gauss(executed):
    return executed.results("03_ntdh_gaussian")


def test_gauss_results_contract(gauss):
    assert set(gauss["study"]) == {"ntdh_gauss"}
    assert {"gamma", "n_classes"} <= set(gauss.columns)
    assert set(gauss["method"]) == {"teacher", "no_kd", "kd"}
    assert set(gauss["metric"]) == {"test_acc", "ntd", "cmd_input", "cmd_output"}
    assert not gauss.duplicated(["method", "gamma", "n_classes", "seed", "metric"]).any(), "one row per seed"
    assert gauss.loc[gauss["n_classes"] == 2, "metric"].ne("ntd").all(), "no NTD with two classes"


def test_gauss_trains_no_kd_once_per_seed_and_class_count(executed):
    record = json.loads((executed.folder("03_ntdh_gaussian") / "run.json").read_text())
    no_kd = [fit["n_models"] for fit in record["fits"] if fit["method"] == "no_kd"]
    teachers = [fit["n_models"] for fit in record["fits"] if fit["method"] == "teacher"]
    n_runs, n_gammas = record["parameters"]["n_runs"], len(record["parameters"]["overlaps"])
    assert no_kd == [n_runs, n_runs] and teachers == [n_runs * n_gammas] * 2, record["fits"]


@pytest.mark.parametrize("n_classes", ["binary", "multi"])
def test_gauss_delta_rises_with_gamma(gauss, n_classes):
    part = gauss[gauss["n_classes"] == 2] if n_classes == "binary" else gauss[gauss["n_classes"] > 2]
    by_gamma = common.per_task(part, ["gamma"]).groupby("gamma")["delta"].mean()
    assert by_gamma.iloc[0] < -0.01 and by_gamma.iloc[-1] > 0.005, by_gamma
    assert stats.spearmanr(by_gamma.index, by_gamma.to_numpy())[0] > 0.9, by_gamma


def test_gauss_ntd_and_cmds_fall_as_gamma_rises(gauss):
    multi = common.per_task(gauss[gauss["n_classes"] > 2], ["gamma"]).groupby("gamma").mean()
    assert stats.spearmanr(multi.index, multi["ntd"])[0] < -0.9, multi["ntd"]
    binary = common.per_task(gauss[gauss["n_classes"] == 2], ["gamma"]).groupby("gamma").mean()
    for metric in ("cmd_input", "cmd_output"):
        assert binary[metric].iloc[-1] < binary[metric].iloc[0], (metric, binary[metric])


def test_gauss_ntd_and_delta_negatively_rank_correlated(gauss):
    correlation = common.delta_ntd_correlation(gauss[gauss["n_classes"] > 2], ["gamma"], n_boot=500)
    assert correlation["rho"] < -0.5 and correlation["high"] < 0, correlation


def test_explore_callback_draws_both_non_target_distributions():
    params = gaussian.GaussianParameters.create(epochs=50)
    fig = gaussian.non_target_figure(params, overlap=10, sample=3).to_dict()
    bars = [trace for trace in fig["data"] if trace["type"] == "bar"]
    assert len(bars) == 2 and all(len(b["x"]) == params.n_classes - 1 for b in bars)
    assert all(abs(sum(b["y"]) - 1) < 1e-5 for b in bars)
    assert "JS of the non-target distributions" in fig["layout"]["title"]["text"]


def test_parameters_reject_binary_extension():
    with pytest.raises(ValueError, match="n_classes"):
        gaussian.GaussianParameters.create(n_classes=2)


@pytest.fixture(scope="module")
def multiclass(executed):
    return executed.results("03_ntdh_multiclass_methods")


def test_multiclass_contract_and_claims(multiclass):
    assert set(multiclass["study"]) == {"ntdh_multiclass", "ntdh_methods"}
    study = multiclass[multiclass["study"] == "ntdh_multiclass"].dropna(axis=1, how="all")
    assert set(study["metric"]) == {"test_acc", "ntd", "cmd_input", "cmd_output"}
    by_gamma = common.per_task(study, ["gamma"]).groupby("gamma").mean()
    assert stats.spearmanr(by_gamma.index, by_gamma["ntd"])[0] < -0.8, by_gamma["ntd"]
    assert by_gamma["delta"].iloc[-1] > by_gamma["delta"].iloc[0], by_gamma["delta"]
    correlation = common.delta_ntd_correlation(study, ["gamma"], n_boot=500)
    assert correlation["rho"] < 0 and correlation["high"] < 0.2, correlation


def test_multiclass_log_records_the_fits_of_both_studies(executed):
    record = json.loads((executed.folder("03_ntdh_multiclass_methods") / "run.json").read_text())
    assert {fit["study"] for fit in record["fits"]} == {"ntdh_multiclass", "ntdh_methods"}


def test_method_table_has_every_method_with_and_without_masking(multiclass):
    methods = multiclass[multiclass["study"] == "ntdh_methods"]
    students = methods[~methods["method"].isin(["teacher", "no_kd"]) & (methods["metric"] == "test_acc")]
    assert set(students["method"]) == set(multiclass_methods.METHOD_NAMES)
    assert (students["loss"] == students["method"]).all()
    counts = students.groupby(["method", "masking"]).size()
    assert len(counts) == 2 * len(multiclass_methods.METHOD_NAMES) and counts.nunique() == 1, counts
    assert students["value"].between(0.25, 1.0).all(), "every student learns something above chance"
    table = multiclass_methods.method_table(methods)
    assert {"without masking", "with masking"} <= set(table.columns)
    assert table.index.names == ["gamma", "method"]
    claims = multiclass_methods.masking_claims(methods)
    assert list(claims["claim"]) == ["masking reduces non-target divergence", "masking improves the KD methods"]


@pytest.fixture(scope="module")
def real_pairs(executed):
    return executed.results("03_ntdh_realpairs")


def test_realpairs_contract(real_pairs):
    assert set(real_pairs["study"]) == {"ntdh_realpairs"}
    assert {"dataset", "teacher_view", "student_view"} <= set(real_pairs.columns)
    assert set(real_pairs["dataset"]) == {"mfeat", "watch", "segment"}
    assert set(real_pairs["metric"]) >= {"test_acc", "ntd", "cmd_output"}
    assert (real_pairs["teacher_view"] != real_pairs["student_view"]).all()
    assert real_pairs.loc[real_pairs["metric"] == "ntd", "value"].between(0, 0.6932).all(), "textbook JS ≤ ln 2"
    correlation = realpairs.pair_correlation(real_pairs, n_boot=200)
    assert correlation["low"] <= correlation["rho"] <= correlation["high"]


def test_real_pair_views_are_standardised_with_training_statistics():
    params = realpairs.RealPairsParameters.create(datasets=["segment"], n_runs=1, max_pairs_per_dataset=1)
    (task,) = realpairs.make_tasks(params)
    assert task.settings == {"dataset": "segment", "teacher_view": "colour", "student_view": "shape"}
    pair = task.splits
    assert set(pair.train.modalities) == {"a", "b"}
    assert pair.train["a"].mean(0).abs().max() < 1e-4 and (pair.train["b"].std(0) - 1).abs().max() < 1e-3
    assert pair.test["a"].mean(0).abs().max() > 1e-4  # test statistics are not used


def test_real_pair_explore_callback():
    params = realpairs.RealPairsParameters.create(datasets=["segment"], n_runs=1, epochs=5, max_pairs_per_dataset=1)
    run = realpairs.run(params, progress=False)
    fig = realpairs.pair_sample_figure(run, "segment: colour → shape", 7).to_dict()
    bars = [trace for trace in fig["data"] if trace["type"] == "bar"]
    assert len(bars) == 2 and all(len(b["x"]) == 6 for b in bars)
    with pytest.raises(ValueError, match="no task"):
        realpairs.pair_sample_figure(run, "segment: shape → colour", 0)


def test_kd_variants_share_the_teacher_and_ntd_variants_come_from_the_logits():
    params = gaussian.GaussianParameters.create(n_runs=2, epochs=10, overlaps=[0, 10])
    run = gaussian.run(params, class_counts=[4], progress=False, kd_variants={"mean": {"reduction": "mean"}})
    table = run.table
    assert set(table["method"]) == {"teacher", "no_kd", "kd", "mean"}
    assert [fit["method"] for fit in run.log.fits] == ["teacher", "no_kd", "kd", "mean"]
    deltas = common.delta_by_method(table, ["gamma"], ["kd", "mean"])
    assert list(deltas.columns) == ["kd", "mean"] and list(deltas.index) == [0.0, 1.0]
    variants = common.ntd_by_variant(run, ["gamma"])
    assert list(variants.columns) == ["gamma", "seed", "js", "official"] and len(variants) == 4
    assert variants["js"].between(0, 0.6932).all()
    recorded = common.per_task(table, ["gamma"])["ntd"].to_numpy()  # the run's own NTD is the JS one
    assert variants.sort_values(["gamma", "seed"])["js"].to_numpy() == pytest.approx(recorded, abs=1e-6)


def test_official_script_table_says_held_only_at_the_official_settings():
    rows = [{"n_classes": 2, "gamma": 0.0, "method": method, "seed": seed, "metric": "test_acc", "value": mean / 100}
            for method, mean in zip(("teacher", "no_kd", "kd"), (70.36, 72.15, 68.44)) for seed in range(2)]
    table = pd.DataFrame(rows)
    plain = gaussian.official_script_table(table)
    assert list(plain.columns[:2]) == ["claim", "official script"] and (plain["verdict"] == "held: within ±0.3 points").all()
    quick = gaussian.official_script_table(table, gaussian.GaussianParameters.create(rng="official"))
    assert quick["verdict"].str.startswith("null result: not the official settings (n_runs, epochs differ)").all()
    labels = claim_verdicts(plain)["claim"]
    assert list(labels) == ["binary sweep, γ = 0: teacher mean", "binary sweep, γ = 0: No-KD student mean",
                            "binary sweep, γ = 0: KD student mean"]


@pytest.mark.parametrize(("low", "high", "n", "word"), [
    (-0.8, -0.2, 10, "held"), (0.2, 0.8, 10, "not held"), (-0.5, 0.5, 10, "null result"), (None, None, 2, "null result"),
])
def test_realpair_claims_read_as_verdicts(low, high, n, word):
    nan = float("nan")
    correlation = {"rho": nan if low is None else (low + high) / 2, "low": nan if low is None else low,
                   "high": nan if high is None else high, "p_value": 0.5, "n": n}
    assert claim_verdicts(realpairs.claims(correlation))["verdict"].tolist() == [word]


def test_predictor_correlations_need_three_pairs():
    pairs = pd.DataFrame({"ntd": [0.1, 0.2, 0.3, 0.4], "teacher": [90, 80, 70, 60], "no_kd": [50, 60, 70, 80],
                          "delta": [2.0, 1.0, 0.0, -1.0]})
    table = realpairs.predictor_correlations(pairs, n_boot=100)
    assert list(table["predictor"]) == list(realpairs.PREDICTORS.values())
    assert table["rho"].tolist() == [-1.0, 1.0, -1.0] and table["n"].eq(4).all()
    assert realpairs.predictor_correlations(pairs.head(2), n_boot=100)["rho"].isna().all()
