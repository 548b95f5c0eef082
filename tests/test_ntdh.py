"""NTDH notebooks (quick profile): the claims they make, read from the results and claims they
recorded, and the claim functions on tables whose verdict is known."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from cmkd_lab.analysis import claims
from cmkd_lab.studies.ntdh import common, gaussian, multiclass_methods, realpairs


def recorded_claims(executed, stem: str) -> pd.DataFrame:
    """The notebook's claims.csv, checked against the kit's one verdict rule: every column, and
    every verdict what :func:`claims.verdict_of` gives for the row's own numbers."""
    saved = claims.load(executed.folder(stem))
    assert list(saved.columns) == list(claims.COLUMNS)
    assert [claims.verdict_of(row) for row in saved.to_dict("records")] == saved["verdict"].tolist()
    assert set(saved["kind"]) <= set(claims.KINDS) and set(saved["verdict"]) <= set(claims.VERDICTS)
    return saved


def row_of(saved: pd.DataFrame, spec: claims.Claim, setting: str | None = None) -> pd.Series:
    rows = saved[(saved["claim"] == spec.claim) & ((saved["setting"] == setting) if setting is not None else True)]
    assert len(rows) == 1, (spec.claim, setting, saved[["claim", "setting"]])
    return rows.iloc[0]


# ----------------------------------------------------------------------------- 03_ntdh_gaussian
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


def test_gauss_claims_follow_the_rule_and_name_the_confound(executed):
    saved = recorded_claims(executed, "03_ntdh_gaussian")
    n_runs = json.loads((executed.folder("03_ntdh_gaussian") / "run.json").read_text())["parameters"]["n_runs"]
    assert (saved["n_units"] == n_runs).all(), "seeds are the units of every claim"
    settings = ["binary (official)", "4-class (kit's extension)"]
    for setting in settings:
        assert row_of(saved, gaussian.INPUT_CMD_FALLS, setting)["kind"] == "check", "it falls by construction"
        assert row_of(saved, gaussian.OUTPUT_CMD_FALLS, setting)["kind"] == "finding"
        assert row_of(saved, common.DELTA_RISES, setting)["verdict"] == "held"
    for spec in (gaussian.DELTA_AT_NO_OVERLAP, gaussian.DELTA_AT_FULL_OVERLAP):
        assert (saved["claim"] == spec.claim).sum() == 2 and spec.kind == "paper"
    # NTD exists only in the K-class sweep; the hypothesis is judged within γ (paper) and pooled (finding)
    assert saved.loc[saved["claim"] == common.NTD_FALLS.claim, "setting"].tolist() == [settings[1]]
    within, pooled = row_of(saved, common.HYPOTHESIS, settings[1]), row_of(saved, common.HYPOTHESIS_POOLED, settings[1])
    assert within["kind"] == "paper" and "within each γ" in within["quantity"]
    assert pooled["kind"] == "finding" and "confounded by the knob" in pooled["claim"]
    assert row_of(saved, common.NTD_FALLS, settings[1])["verdict"] == "held"
    assert pooled["verdict"] == "held" and pooled["estimate"] < -0.5, "γ drives NTD down and Δ up"
    assert within["estimate"] > pooled["estimate"], "holding γ fixed weakens the relation"
    official = saved[saved["claim"] == gaussian.OFFICIAL_REPLAY.claim]
    assert official.empty, "the official replay is judged only with rng='official'"


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


def _official_rows(kit_means):
    """A binary table at γ = 0, two seeds per model, whose means are ``kit_means`` (percent)."""
    return pd.DataFrame(
        [
            {"n_classes": 2, "gamma": 0.0, "method": method, "seed": seed, "metric": "test_acc", "value": mean / 100}
            for method, mean in zip(("teacher", "no_kd", "kd"), kit_means)
            for seed in range(2)
        ]
    )


def test_official_replay_is_an_equivalence_check_on_the_compared_means():
    script = (70.36, 72.15, 68.44)  # the script's γ = 0 means
    table = gaussian.official_script_table(_official_rows(script))
    assert list(table.columns[:2]) == ["claim", "official script"] and "verdict" not in table
    assert list(table["claim"]) == [
        "binary sweep, γ = 0: teacher mean",
        "binary sweep, γ = 0: No-KD student mean",
        "binary sweep, γ = 0: KD student mean",
    ]
    same = gaussian.official_script_claim(_official_rows(script))
    assert same["kind"] == "check" and same["prediction"] == "= 0" and same["sesoi"] == gaussian.OFFICIAL_TOLERANCE
    assert same["n_units"] == 3 and same["verdict"] == "held"
    off = gaussian.official_script_claim(_official_rows((71.36, 73.15, 69.44)))  # every mean a point higher
    assert off["verdict"] == "not held" and off["estimate"] == pytest.approx(1.0)
    near = gaussian.official_script_claim(_official_rows((70.46, 72.05, 68.49)))  # within ±0.3, spread out
    assert near["verdict"] in ("held", "not resolved") and near["ci_low"] < 0 < near["ci_high"]
    quick = gaussian.official_script_claim(_official_rows(script), gaussian.GaussianParameters.create(rng="official"))
    assert quick["verdict"] == "not resolved" and quick["n_units"] == 0
    assert quick["note"] == "not the official settings (n_runs, epochs differ)"


def test_official_replay_counts_the_shared_no_kd_student_once():
    rows = pd.concat([_official_rows((70.36, 72.15, 68.44)), _official_rows((71.90, 72.15, 73.51)).assign(gamma=1.0)])
    assert gaussian.official_script_claim(rows)["n_units"] == 5  # teacher and KD at two γ, one No-KD student


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


def test_gap_metrics_in_chunks_equal_one_task_at_a_time(monkeypatch):
    params = gaussian.GaussianParameters.create(n_runs=3, epochs=5, overlaps=[0, 4, 10])
    outputs = gaussian.run(params, class_counts=[4], progress=False).artifacts.outputs
    options = {"ntd_variant": "official", "cmd_moments": 5}
    monkeypatch.setattr(common, "GAP_CHUNK", 1)
    alone = common.gap_rows("s", outputs, options)
    monkeypatch.setattr(common, "GAP_CHUNK", 4)  # chunks of 4, 4 and 1 task
    assert common.gap_rows("s", outputs, options) == alone  # every row, in order, to the last bit
    assert [(r["method"], r["metric"]) for r in alone[:: len(outputs)]] == [
        ("no_kd", "cmd_input"),
        ("no_kd", "ntd"),
        ("no_kd", "cmd_output"),
        ("kd", "ntd"),
        ("kd", "cmd_output"),
    ]


def test_the_exercise_sweeps_run_once_however_their_settings_are_passed():
    by_keyword = gaussian.class_sweep(n_classes=3, n_runs=2, epochs=3, overlaps=(0, 10))
    assert gaussian.class_sweep(3, 2, 3, (0, 10)) is by_keyword
    assert gaussian.class_sweep(3, 2, 3, [0, 10]) is by_keyword
    assert gaussian.class_sweep(3, 2, 4, (0, 10)) is not by_keyword


def test_a_sweeps_tasks_share_each_runs_draw_and_equal_separate_draws():
    params = gaussian.GaussianParameters.create(n_runs=2, n_train=30, n_test=40)
    draws = {}
    for n_classes in (2, 4):
        for overlap in (0, 4, 10):
            for seed in range(2):
                shared = gaussian.make_task(params, overlap, seed, n_classes, draws)
                alone = gaussian.make_task(params, overlap, seed, n_classes)
                assert shared.settings == alone.settings
                for part in ("train", "test"):
                    mine, theirs = getattr(shared.splits, part), getattr(alone.splits, part)
                    assert torch.equal(mine.labels, theirs.labels)
                    assert all(torch.equal(mine[m], theirs[m]) for m in ("a", "b"))
    assert sum(key[0] in ("train", "test") for key in draws) == 4, "one draw per run and part"


# ----------------------------------------------------------------------------- claims of a γ sweep
def _sweep(n_seeds: int = 12, gammas=(0.0, 0.5, 1.0), seed: int = 0, accuracy: float = 0.7) -> pd.DataFrame:
    """A per_task-like table where γ lowers NTD and raises Δ, and within a γ the two are unrelated."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "gamma": g,
            "seed": s,
            "teacher": accuracy,
            "no_kd": accuracy,
            "kd": accuracy,
            "ntd": 0.3 - 0.2 * g + 0.01 * rng.standard_normal(),
            "delta": 0.03 * g - 0.01 + 0.003 * rng.standard_normal(),
        }
        for s in range(n_seeds)
        for g in gammas
    ]
    return pd.DataFrame(rows)


def test_seed_trends_are_each_seeds_rank_correlation():
    wide = pd.DataFrame({"gamma": [0, 1, 2] * 2, "seed": [0] * 3 + [1] * 3, "x": [3, 2, 1, 1, 1, 1]})
    trends = common.seed_trends(wide, "x")
    assert trends[0] == pytest.approx(-1.0) and math.isnan(trends[1])
    sweep = _sweep(n_seeds=30, gammas=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), seed=3)
    sweep["delta"] = sweep["delta"].round(3)  # ties, as accuracies give
    sweep.loc[sweep.index[7], "ntd"] = float("nan")
    for column in ("delta", "ntd"):
        expected = [stats.spearmanr(part["gamma"], part[column]).statistic for _, part in sweep.groupby("seed")]
        assert common.seed_trends(sweep, column).tolist() == pytest.approx(expected, abs=0, nan_ok=True)


def test_a_knob_that_drives_both_holds_the_pooled_finding_not_the_paper_claim():
    rows = claims.table(common.sweep_claim_rows(_sweep(), "synthetic", n_classes=4))
    verdict = dict(zip(rows["claim"], rows["verdict"]))
    assert verdict[common.DELTA_RISES.claim] == "held" and verdict[common.NTD_FALLS.claim] == "held"
    assert verdict[common.HYPOTHESIS_POOLED.claim] == "held"
    assert verdict[common.HYPOTHESIS.claim] != "held", "within γ the generator relates nothing"
    assert (rows["n_units"] == 12).all()
    assert "within γ" in common.hypothesis_line(rows) and "confounded by γ" in common.hypothesis_line(rows)


def test_a_sweep_at_chance_is_not_resolved():
    rows = claims.table(common.sweep_claim_rows(_sweep(accuracy=0.27), "synthetic", n_classes=4))
    assert (rows["verdict"] == "not resolved").all() and rows["note"].str.startswith("models ended at chance").all()


# ----------------------------------------------------------------------------- 03_ntdh_multiclass_methods
@pytest.fixture(scope="module")
def multiclass(executed):
    return executed.results("03_ntdh_multiclass_methods")


def test_multiclass_contract(multiclass):
    assert set(multiclass["study"]) == {"ntdh_multiclass", "ntdh_methods", "ntdh_channel_masking"}
    study = multiclass[multiclass["study"] == "ntdh_multiclass"].dropna(axis=1, how="all")
    assert set(study["metric"]) == {"test_acc", "ntd", "cmd_input", "cmd_output"}
    by_gamma = common.per_task(study, ["gamma"]).groupby("gamma").mean()
    assert stats.spearmanr(by_gamma.index, by_gamma["ntd"])[0] < -0.8, by_gamma["ntd"]
    assert by_gamma["delta"].iloc[-1] > by_gamma["delta"].iloc[0], by_gamma["delta"]


def test_multiclass_log_records_the_fits_of_every_study_and_none_ended_at_chance(executed):
    """... but teachers kept to channels of low NTD saliency or random ones, which may by design."""
    record = json.loads((executed.folder("03_ntdh_multiclass_methods") / "run.json").read_text())
    studies = {"ntdh_multiclass", "ntdh_methods", multiclass_methods.STUDY_MASKING}
    assert {fit["study"] for fit in record["fits"]} == studies
    masking_fits = [f["method"] for f in record["fits"] if f["study"] == multiclass_methods.STUDY_MASKING]
    assert masking_fits == ["saliency", "teacher", "no_kd", "kd"], "one fit per method, every teacher in one"
    others = [f for f in record["fits"] if f["method"] != "teacher" or f["study"] != multiclass_methods.STUDY_MASKING]
    assert not [warning for fit in others for warning in fit["warnings"]]
    assert record["parameters"]["method_runs"] >= 3 and record["parameters"]["n_runs"] >= 3


def test_method_table_has_every_method_with_and_without_masking(multiclass):
    methods = multiclass[multiclass["study"] == "ntdh_methods"]
    students = methods[~methods["method"].isin(["teacher", "no_kd"]) & (methods["metric"] == "test_acc")]
    assert set(students["method"]) == set(multiclass_methods.METHOD_NAMES)
    assert (students["loss"] == students["method"]).all()
    counts = students.groupby(["method", "masking"]).size()
    assert len(counts) == 2 * len(multiclass_methods.METHOD_NAMES) and counts.nunique() == 1, counts
    assert (students.groupby(["method", "masking"])["value"].mean() > 0.25 + 0.05).all(), "every student beats chance"
    table = multiclass_methods.method_table(methods)
    assert {"without masking", "with masking"} <= set(table.columns)
    assert table.index.names == ["gamma", "method"]


def test_multiclass_claims_judge_masking_per_method_by_seed(executed, multiclass):
    saved = recorded_claims(executed, "03_ntdh_multiclass_methods")
    n_seeds = multiclass.loc[multiclass["study"] == "ntdh_methods", "seed"].nunique()
    for spec in (multiclass_methods.MASKING_RAISES_ACCURACY, multiclass_methods.MASKING_LOWERS_NTD):
        rows = saved[saved["claim"] == spec.claim]
        assert len(rows) == len(multiclass_methods.METHOD_NAMES) and (rows["n_units"] == n_seeds).all()
        assert rows["setting"].str.split(" ").str[0].tolist() == list(multiclass_methods.METHOD_LABELS.values())
    within = row_of(saved, common.HYPOTHESIS, "4-class synthetic")
    pooled = row_of(saved, common.HYPOTHESIS_POOLED, "4-class synthetic")
    assert within["kind"] == "paper" and pooled["kind"] == "finding"
    papers = saved[saved["kind"] == "paper"]
    assert (papers["p_adjusted"].dropna() >= papers["p_value"].dropna()).all(), "Holm within the paper family"


MODE = multiclass_methods.MASK_COLUMN  # the channel-masking run's column of teacher modes


@pytest.fixture(scope="module")
def channel_masking(multiclass):
    """The channel-masking run's rows (its mode column apart from the method table's ``masking``)."""
    return multiclass[multiclass["study"] == multiclass_methods.STUDY_MASKING].dropna(axis=1, how="all")


def test_channel_masking_trains_every_mode_beside_the_unmasked_teacher(executed, channel_masking):
    parameters = json.loads((executed.folder("03_ntdh_multiclass_methods") / "run.json").read_text())["parameters"]
    modes, mask_dim = parameters["masking_modes"], parameters["mask_dim"]
    seeds = range(parameters["method_runs"])
    accuracies = channel_masking[channel_masking["metric"] == "test_acc"]
    for method, expected in (("teacher", {"none", *modes}), ("kd", {"none", *modes}), ("no_kd", {"none"})):
        rows = accuracies[accuracies["method"] == method]
        assert set(rows[MODE]) == expected, method
        assert all(sorted(part["seed"]) == list(seeds) for _, part in rows.groupby(MODE)), method
    kept = channel_masking[channel_masking["metric"].str.startswith("kept_channel_")]
    assert set(kept[MODE]) == set(modes) and kept["metric"].nunique() == mask_dim
    assert kept["value"].between(0, multiclass_methods.N_FEATURES - 1).all()
    assert (kept.groupby(["gamma", MODE, "seed"])["value"].nunique() == mask_dim).all(), "distinct channels"
    summary = multiclass_methods.masking_summary(channel_masking)
    assert [mode for _, mode in summary.index] == ["none", *modes]
    assert summary["Δ 95% CI"].str.match(r"\[[+-]\d").all() and (summary["n seeds"] == len(seeds)).all()
    mean = accuracies.groupby(["method", MODE])["value"].mean()
    assert mean["teacher", "reverse"] < mean["teacher", "none"] - 0.2, "the least salient channels carry little"
    assert (mean["kd"] > 0.25 + 0.05).all(), "every KD student beats chance"


def test_channel_masking_alg1_keeps_the_channels_both_views_see(channel_masking):
    """At γ = v/20 the teacher's channels 20−v … 19 are the ones the student also sees."""
    shares = multiclass_methods.kept_roles(channel_masking)
    general = shares[shares["gamma"] > 0].groupby(MODE)["modality-general"].mean()
    assert general["alg1"] >= 0.75 and general["reverse"] <= 0.25, general


def test_channel_masking_claims_recorded_by_seed(executed, channel_masking):
    saved = recorded_claims(executed, "03_ntdh_multiclass_methods")
    n_seeds = channel_masking["seed"].nunique()
    deltas = multiclass_methods.masking_deltas(channel_masking)
    kd = deltas.pivot_table(index="seed", columns=MODE, values="kd")
    for spec, other in (
        (multiclass_methods.ALG1_OVER_REVERSE, "reverse"),
        (multiclass_methods.ALG1_OVER_RANDOM, "random"),
    ):
        row = row_of(saved, spec)
        assert row["kind"] == "paper" and row["n_units"] == n_seeds and row["unit"] == "points"
        assert row["estimate"] == pytest.approx(100 * (kd["alg1"] - kd[other]).mean(), abs=1e-6)
    check = row_of(saved, multiclass_methods.ALG1_KEEPS_GENERAL)
    assert check["kind"] == "check" and check["verdict"] == "held", check


def _masking_tool_table(gap: float, kd_accuracy: float = 0.7, n_seeds: int = 4) -> pd.DataFrame:
    """A channel-masking run at γ = 0.5: the KD student behind the alg1 teacher ``gap`` (fraction)
    above those behind reverse and random, with a little seed noise; alg1 keeps channels 10 and 11
    (modality-general at v = 10), reverse 40 and 41 (noise)."""
    rng = np.random.default_rng(2)
    rows = []
    for seed in range(n_seeds):
        base = {"gamma": 0.5, "seed": seed}
        rows.append(
            {
                **base,
                "method": "no_kd",
                MODE: "none",
                "metric": "test_acc",
                "value": kd_accuracy,
            }
        )
        for mode in ("none", "alg1", "reverse", "random"):
            value = kd_accuracy + (gap if mode == "alg1" else 0.0) + 0.002 * rng.standard_normal()
            rows.append({**base, "method": "kd", MODE: mode, "metric": "test_acc", "value": value})
            rows.append({**base, "method": "teacher", MODE: mode, "metric": "test_acc", "value": 0.5})
            rows.append({**base, "method": "no_kd", MODE: mode, "metric": "ntd", "value": 0.1})
        for mode, kept in (("alg1", (10, 11)), ("reverse", (40, 41)), ("random", (5 + seed, 30))):
            for rank, channel in enumerate(kept, start=1):
                rows.append(
                    {
                        **base,
                        "method": "teacher",
                        MODE: mode,
                        "metric": f"kept_channel_{rank}",
                        "value": channel,
                    }
                )
    return pd.DataFrame(rows)


def test_masking_tool_claims_follow_the_paired_differences():
    reverse, random, check = multiclass_methods.masking_tool_claims(_masking_tool_table(gap=0.03))
    assert reverse["claim"] == multiclass_methods.ALG1_OVER_REVERSE.claim and reverse["n_units"] == 4
    assert reverse["estimate"] == pytest.approx(3.0, abs=0.3) and reverse["verdict"] == "held"
    assert random["verdict"] == "held" and reverse["setting"] == "4-class synthetic, mask_dim = 2"
    assert check["estimate"] == pytest.approx(1.0 - 10 / 50) and check["verdict"] == "held"
    assert multiclass_methods.masking_tool_claims(_masking_tool_table(gap=0.0))[0]["verdict"] == "not held"
    at_chance = multiclass_methods.masking_tool_claims(_masking_tool_table(gap=0.03, kd_accuracy=0.27))
    assert [row["verdict"] for row in at_chance[:2]] == ["not resolved"] * 2
    summary = multiclass_methods.masking_summary(_masking_tool_table(gap=0.03))
    assert summary.loc[(0.5, "alg1"), "Δ (points)"] == pytest.approx(3.0, abs=0.3)
    assert summary.loc[(0.5, "reverse"), "kept: noise"] == 1.0 and summary.loc[(0.5, "alg1"), "kept: noise"] == 0.0


def _methods_table(gain: float, accuracy: float = 0.7, n_seeds: int = 4) -> pd.DataFrame:
    """A method table at one γ: KD's masked student ``gain`` (fraction) above its unmasked one, with
    a little seed noise, and NTD unchanged by masking."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(n_seeds):
        rows.append({"method": "teacher", "masking": False, "seed": seed, "metric": "test_acc", "value": accuracy})
        for masking in (False, True):
            rows += [
                {
                    "method": "kd",
                    "masking": masking,
                    "seed": seed,
                    "metric": "test_acc",
                    "value": accuracy + (gain if masking else 0.0) + 0.002 * rng.standard_normal(),
                },
                {
                    "method": "kd",
                    "masking": masking,
                    "seed": seed,
                    "metric": "ntd",
                    "value": 0.2 + 0.0001 * rng.standard_normal(),
                },
            ]
    return pd.DataFrame(rows).assign(gamma=0.5)


def test_masking_claims_follow_the_paired_differences():
    accuracy, ntd = multiclass_methods.masking_claims(_methods_table(gain=0.03))
    assert accuracy["setting"] == "KD" and accuracy["n_units"] == 4
    assert accuracy["estimate"] == pytest.approx(3.0, abs=0.3) and accuracy["verdict"] == "held"
    assert ntd["verdict"] == "not held", "a change far inside ±0.01 nats is too small to matter"
    none = multiclass_methods.masking_claims(_methods_table(gain=0.0))[0]
    assert none["verdict"] == "not held"
    at_chance = multiclass_methods.masking_claims(_methods_table(gain=0.03, accuracy=0.27))
    assert all(row["verdict"] == "not resolved" for row in at_chance)
    assert all(row["note"].startswith("models ended at chance") for row in at_chance)


# ----------------------------------------------------------------------------- 03_ntdh_realpairs
@pytest.fixture(scope="module")
def real_pairs(executed):
    return executed.results("03_ntdh_realpairs")


def test_realpairs_contract(real_pairs):
    assert set(real_pairs["study"]) == {"ntdh_realpairs"}
    assert {"dataset", "teacher_view", "student_view", "n_classes"} <= set(real_pairs.columns)
    assert set(real_pairs["dataset"]) == {"mfeat", "watch", "segment"}
    assert set(real_pairs["metric"]) >= {"test_acc", "ntd", "cmd_output"}
    assert (real_pairs["teacher_view"] != real_pairs["student_view"]).all()
    assert real_pairs.loc[real_pairs["metric"] == "ntd", "value"].between(0, 0.6932).all(), "textbook JS ≤ ln 2"


def test_realpairs_claim_counts_unordered_pairs(executed, real_pairs):
    saved = recorded_claims(executed, "03_ntdh_realpairs")
    row = row_of(saved, realpairs.HYPOTHESIS_ACROSS_PAIRS)
    pairs = real_pairs[["dataset", "teacher_view", "student_view"]].drop_duplicates()
    unordered = {(d, frozenset((a, b))) for d, a, b in pairs.itertuples(index=False)}
    assert len(pairs) > len(unordered), "the quick profile runs both directions of some pairs"
    assert row["n_units"] == len(unordered) and row["kind"] == "paper"


def _pair_summary(ntd_by_pair, delta_by_direction, accuracy=80.0, n_classes=7):
    """pair_summary-like rows: per unordered pair (dataset d<i>, views x, y) both directions, one NTD."""
    rows = []
    for i, (ntd, deltas) in enumerate(zip(ntd_by_pair, delta_by_direction)):
        for (a, b), delta in zip((("x", "y"), ("y", "x")), deltas):
            rows.append(
                {
                    "dataset": f"d{i}",
                    "teacher_view": a,
                    "student_view": b,
                    "n_classes": n_classes,
                    "teacher": accuracy,
                    "no_kd": accuracy,
                    "kd": accuracy,
                    "delta": delta,
                    "ntd": ntd,
                }
            )
    return pd.DataFrame(rows)


def test_unordered_pairs_label_both_directions_alike():
    pairs = _pair_summary([0.1, 0.2], [(1.0, -1.0), (0.5, 0.2)])
    labels = realpairs.unordered_pairs(pairs)
    assert labels[0] == labels[1] != labels[2] == labels[3] == "d1: x, y"


def test_hypothesis_across_pairs_follows_the_rule_with_pairs_as_units():
    ntd = np.linspace(0.1, 0.5, 8)
    falling = realpairs.hypothesis_row(_pair_summary(ntd, [(-10 * v, -10 * v + 0.1) for v in ntd]))
    assert falling["n_units"] == 8 and falling["estimate"] < -0.9 and falling["verdict"] == "held"
    rising = realpairs.hypothesis_row(_pair_summary(ntd, [(10 * v, 10 * v + 0.1) for v in ntd]))
    assert rising["verdict"] == "not held"
    weak_teacher = realpairs.hypothesis_row(_pair_summary(ntd, [(-10 * v, -10 * v) for v in ntd], accuracy=18.0))
    assert weak_teacher["verdict"] == "not resolved" and weak_teacher["note"].startswith("models ended at chance")


def test_real_pair_views_are_standardised_with_training_statistics():
    params = realpairs.RealPairsParameters.create(datasets=["segment"], n_runs=1, max_pairs_per_dataset=1)
    (task,) = realpairs.make_tasks(params)
    assert task.settings == {"dataset": "segment", "teacher_view": "colour", "student_view": "shape", "n_classes": 7}
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


def test_predictor_correlations_need_three_pairs():
    pairs = pd.DataFrame(
        {
            "ntd": [0.1, 0.2, 0.3, 0.4],
            "teacher": [90, 80, 70, 60],
            "no_kd": [50, 60, 70, 80],
            "delta": [2.0, 1.0, 0.0, -1.0],
        }
    )
    table = realpairs.predictor_correlations(pairs, n_boot=100)
    assert list(table["predictor"]) == list(realpairs.PREDICTORS.values())
    assert table["rho"].tolist() == [-1.0, 1.0, -1.0] and table["n"].eq(4).all()
    assert realpairs.predictor_correlations(pairs.head(2), n_boot=100)["rho"].isna().all()
