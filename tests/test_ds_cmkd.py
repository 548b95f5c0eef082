"""DS-CMKD's study on the quick profile: the results contract, the DS students reading the
teacher, the motivating analysis, each DS loss moving its own diagnostic, the claims table, clear
errors, the Explore callback, and registered image pairs from the download datasets' fixtures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cmkd_lab.analysis import claims
from cmkd_lab.datasets import load
from cmkd_lab.datasets.degraded import DEGRADATIONS, degrade
from cmkd_lab.losses import make_loss
from cmkd_lab.studies.ds_cmkd import analysis, study
from cmkd_lab.studies.runner import StudyRunner


@pytest.fixture(scope="module")
def quick_run():
    params = study.DSParameters.create()
    return params, study.run(params, progress=False)


def _mean_by_severity(table, study_name, method, metric):
    part = table[(table["study"] == study_name) & (table["method"] == method) & (table["metric"] == metric)]
    return part.groupby("severity")["value"].mean()


def test_the_results_contract(quick_run):
    params, run = quick_run
    table = run.table
    assert set(table["study"]) == {"ds_analysis", "ds_severity"}  # no registered pairs in the default run
    severity = table[table["study"] == "ds_severity"]
    assert set(severity["method"]) == set(study.ALL_METHODS)
    assert set(table["metric"]) == set(study.METRICS)
    assert sorted(severity["severity"].unique()) == sorted(params.severities)
    cells = severity.groupby(["dataset", "severity", "method", "metric"])["seed"]
    assert len(cells) == len(params.images) * len(params.severities) * len(study.ALL_METHODS) * len(study.METRICS)
    assert (cells.size() == params.n_runs).all() and (cells.nunique() == params.n_runs).all()  # one row per seed
    assert set(table.loc[table["study"] == "ds_analysis", "method"]) == {"teacher", "ce"}
    assert np.isfinite(table["value"]).all()
    acc = table[table["metric"] == "test_acc"]["value"]
    assert acc.between(0, 1).all()
    assert {"study", "method", "dataset", "source", "target", "severity", "seed", "metric", "value"} == set(
        table.columns
    )


def test_quick_profile_teacher_learns_and_degradation_hurts(quick_run):
    _, run = quick_run
    teacher = _mean_by_severity(run.table, "ds_severity", "teacher", "test_acc")
    ce = _mean_by_severity(run.table, "ds_severity", "ce", "test_acc")
    assert (teacher > 0.9).all()
    assert ce.is_monotonic_decreasing and ce.iloc[-1] < ce.iloc[0] - 0.2  # a larger severity, a larger gap


def test_the_ds_students_read_the_teacher_by_default(quick_run):
    """DS-CMKD distils: the registered DS loss and the study's DS students are guided by KD from
    the high-quality teacher; only the ablation trains without it."""
    assert make_loss("ds").guide == study.DS_GUIDE == "kd" and make_loss("ds").needs_teacher
    assert not make_loss("ds", guide="none").needs_teacher
    _, run = quick_run
    fits = {name: results[0] for name, results in run.artifacts.fits.items() if name != "teacher"}
    assert set(study.DS_METHODS) <= set(study.DS_FITS[study.DS_GUIDE]) and study.NO_TEACHER in study.DS_FITS["none"]
    guided = fits["+".join(study.DS_FITS[study.DS_GUIDE])]
    assert guided.system.teacher is not None and guided.system.loss.guide == "kd" and "kd" in guided.history
    assert guided.history["kd"][-1].min() > 0  # every student of the fit (KD and the DS students) reads the teacher
    unguided = fits["+".join(study.DS_FITS["none"])]
    assert unguided.system.teacher is None and "kd" not in unguided.history
    assert study.DS_BASELINE == {"ds_ci": "kd", "ds_ud": "kd", "ds_both": "kd", study.NO_TEACHER: "ce"}


def test_quick_profile_motivating_analysis(quick_run):
    """Clean features (teacher) spread more uniformly over positions than the CE student's
    features of degraded images: pooled over severities and seeds, and most at the largest
    severity."""
    params, run = quick_run
    entropy_gap = analysis.paired(run.table, "spatial_entropy", "ce", "teacher", study="ds_analysis")
    by_severity = entropy_gap.groupby("severity")["difference"].mean()
    assert entropy_gap["difference"].mean() < 0 and by_severity[max(params.severities)] == by_severity.min()


def test_each_ds_loss_moves_its_own_diagnostic_against_its_baseline(quick_run):
    """Against the student of its fit with both terms off (KD; CE without a teacher), at every
    severity, not only on average."""
    _, run = quick_run
    table = run.table

    def shift(method, metric):
        difference = analysis.paired(table, metric, method, study.DS_BASELINE[method])
        return difference.groupby("severity")["difference"].mean()

    assert (shift("ds_ud", "spatial_entropy") > 0.1).all() and (shift("ds_both", "spatial_entropy") > 0.1).all()
    assert (shift(study.NO_TEACHER, "spatial_entropy") > 0.1).all()
    assert (shift(study.NO_TEACHER, "channel_corr") < -0.05).all()
    assert shift("ds_ci", "channel_corr").mean() < 0  # on top of KD the independence term moves it less
    shifts = analysis.diagnostic_shifts(table)
    assert set(shifts.index) == {f"{m} − {b}" for m, b in study.DS_BASELINE.items()}
    assert list(shifts.columns) == list(study.METRICS)


def test_the_claims_table_states_each_claim_and_judges_it_by_the_one_rule(quick_run):
    params, run = quick_run
    table = analysis.claims_table(run.table, study.n_classes(params))
    assert list(table.columns) == list(claims.COLUMNS) and set(table["verdict"]) <= set(claims.VERDICTS)
    expected = (
        [
            analysis.CLEAN_LESS_CORRELATED,
            analysis.CLEAN_MORE_UNIFORM,
            *analysis.DS_BEATS.values(),
            analysis.GAIN_GROWS_WITH_GAP,
        ]
        + list(analysis.TERM_BEATS_KD.values())
        + [analysis.TEACHER_ADDS_TO_DS, analysis.DS_WITHOUT_TEACHER_BEATS_CE]
        + [claim for _, claim in analysis.TERM_MOVES_ITS_DIAGNOSTIC.values()]
    )
    assert table["claim"].tolist() == [claim.claim for claim in expected]
    assert table["kind"].tolist() == [claim.kind for claim in expected]
    # a DS term moving the statistic it optimises is a check, never one of the paper's claims
    assert (table["kind"] == "paper").sum() == 5
    assert table.loc[table["kind"] == "check", "claim"].str.contains("its term").all()
    assert (table["n_units"] == params.n_runs).all()  # the unit is the seed: its severities averaged
    # the estimate is the seed-by-seed difference, in points for accuracy
    ds_over_kd = analysis.paired(run.table, "test_acc", "ds_both", "kd").groupby("seed")["difference"].mean()
    assert table.loc[table["claim"] == analysis.DS_BEATS["kd"].claim, "estimate"].item() == pytest.approx(
        100 * ds_over_kd.mean()
    )
    uniformity = table[table["claim"] == analysis.TERM_MOVES_ITS_DIAGNOSTIC["ds_ud"][1].claim].iloc[0]
    assert uniformity["kind"] == "check" and uniformity["verdict"] == "held"


def test_tables_and_figures_read_the_results(quick_run):
    _, run = quick_run
    wide = analysis.method_table(run.table)
    assert list(wide.columns) == list(study.ALL_METHODS) and len(wide) == 3
    observation = analysis.observation_table(run.table)
    assert len(observation) == 3 and any("degraded − clean" in c for c in observation.columns)
    fig = analysis.metric_grid(run.table).to_dict()
    assert len(fig["data"]) == len(study.ALL_METHODS) * len(study.METRICS)
    assert [a["text"] for a in fig["layout"]["annotations"]] == [analysis.METRIC_TITLES[m] for m in study.METRICS]


@pytest.mark.filterwarnings("ignore:.*ended at chance")  # one epoch on 60 images: the point is the plumbing
def test_weight_sweep_trains_each_variant_with_its_weights():
    params = study.DSParameters.create(n_runs=2, n_train=60, epochs=1, teacher_epochs=1, hidden=[4, 4])
    run = study.weight_sweep(params, {"ce": (0, 0), "both": (1, 1)}, severity=0.5, guide="none")
    table = run.table
    assert [(fit["study"], fit["method"]) for fit in run.log.fits] == [("ds_weights", "ce+both")]  # no teacher
    assert set(table["study"]) == {"ds_weights"} and set(table["metric"]) == set(study.METRICS)
    assert (table.groupby(["method", "metric"])["seed"].nunique() == 2).all()
    means = analysis.variant_means(table)
    assert list(means.index) == ["ce", "both"] and list(means.columns) == list(study.METRICS)
    assert means.loc["ce", "test_acc"] == pytest.approx(
        100 * table[(table["method"] == "ce") & (table["metric"] == "test_acc")]["value"].mean()
    )
    guided = study.weight_sweep(params, {"kd": (0, 0)}, severity=0.5)  # the default guide: trains the teacher first
    assert [fit["method"] for fit in guided.log.fits] == ["teacher", "kd"]
    assert set(guided.table["method"]) == {"kd"} and len(guided.table) == 2 * len(study.METRICS)
    assert not guided.table.equals(study.weight_sweep(params, {"kd": (0, 0)}, severity=0.5, guide="none").table)


def test_degradation_is_seeded_and_grows_with_severity():
    images = load("digits_degraded", severity=0.0)["clean"][:50]
    assert torch.equal(degrade(images, 0.0, seed=1), images)
    assert torch.equal(degrade(images, 0.5, seed=1), degrade(images, 0.5, seed=1))
    assert not torch.equal(degrade(images, 0.5, seed=1), degrade(images, 0.5, seed=2))
    distance = [float((degrade(images, s, seed=0) - images).pow(2).mean()) for s in (0.25, 0.5, 1.0)]
    assert distance == sorted(distance) and distance[0] > 0
    for kind in DEGRADATIONS:
        assert not torch.equal(degrade(images, 0.5, seed=0, kinds=[kind]), images), kind
    data = load("mfeat_degraded", severity=0.5, seed=0)
    assert data.shape("clean") == data.shape("degraded") == (1, 16, 15) and len(data) == 2000


def test_bad_inputs_fail_with_the_valid_options():
    create = study.DSParameters.create
    with pytest.raises(ValueError, match="'methods': \\['mkd'\\] not allowed; valid values: ce, kd, fitnet, ds_ci"):
        create(methods=["ce", "mkd"])
    with pytest.raises(
        ValueError, match="'images': \\['cifar'\\] not allowed; valid values: digits_degraded, mfeat_degraded"
    ):
        create(images=["cifar"])
    with pytest.raises(ValueError, match="names dataset 'nope', which is not in datasets \\[.*'mfeat'"):
        create(pairs=["nope:rgb>depth"])
    with pytest.raises(
        ValueError, match="unknown degradation\\(s\\) \\['blur'\\]; valid: downsample, noise, occlusion"
    ):
        load("digits_degraded", kinds=["blur"])
    with pytest.raises(ValueError, match="severities lie in \\[0, 1\\]"):
        create(severities=[0.5, 1.5])
    with pytest.raises(ValueError, match="has no modality 'rgb'; its modalities are \\['fourier'"):
        study.run(create(images=[], pairs=["mfeat:rgb>pixels"], n_runs=1), progress=False)
    with pytest.raises(
        ValueError, match="needs image modalities .* 'mfeat' modality 'pixels' has samples of shape \\(240,\\)"
    ):
        study.run(create(images=[], pairs=["mfeat:pixels>fourier"], n_runs=1), progress=False)
    with pytest.raises(ValueError, match="unknown method\\(s\\) \\['mkd'\\]; valid methods: ce, kd"):
        study.run_pairs(
            StudyRunner("x"), [], dataclasses.replace(create(), methods=("mkd",))
        )  # past the parameter check


def test_explore_reruns_kd_and_the_ds_students_at_one_setting(quick_run):
    params, _ = quick_run
    fig = analysis.explore_figure(params, severity=0.5, independence_weight=2.0, uniformity_weight=0.5).to_dict()
    names = {trace["name"] for trace in fig["data"]}
    assert len(fig["data"]) == 4 * len(study.METRICS) and len(names) == 4
    assert "independence weight 2" in fig["layout"]["title"]["text"]


@pytest.mark.filterwarnings("ignore:.*ended at chance")  # one epoch on a dozen images: the point is the plumbing
@pytest.mark.parametrize("pair", ["eurosat_ms_sar:ms>sar", "nyu_depth_v2:rgb>depth"])
def test_registered_image_pairs_run_on_the_download_fixtures(pair, tmp_path, monkeypatch):
    """A downloaded dataset reaches the study by name and pair (ds_methods, severity NaN)."""
    from test_data_scripts import convert, make_eurosat_raw, make_nyu_raw

    from cmkd_lab.datasets import cache, eurosat_ms_sar, nyu_depth_v2

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "data"))
    if pair.startswith("eurosat"):
        make_eurosat_raw(tmp_path / "raw", per_class=8)
        convert(
            eurosat_ms_sar.EUROSAT_MS_SAR, tmp_path / "raw", tmp_path / "data", "--size", "8", "--max-per-class", "8"
        )
    else:
        make_nyu_raw(tmp_path / "raw")
        convert(
            nyu_depth_v2.NYU_DEPTH_V2,
            tmp_path / "raw",
            tmp_path / "data",
            "--height",
            "12",
            "--width",
            "16",
            "--n-scene-classes",
            "2",
            "--chunk",
            "5",
        )
        # the 13-image fixture has two scenes of its first class, too few for a 3-part split by
        # scene; the study runs unchanged on the samples without their scene groups
        loader = study.load
        monkeypatch.setattr(study, "load", lambda name, **kw: dataclasses.replace(loader(name, **kw), groups=None))
    params = study.DSParameters.create(
        images=[], pairs=[pair], n_runs=2, epochs=1, teacher_epochs=1, hidden=[4, 4], batch_size=8
    )
    run = study.run(params, progress=False)
    table = run.table
    dataset, modalities = pair.split(":")
    source, target = modalities.split(">")
    assert set(table["study"]) == {"ds_methods", "ds_analysis"}
    assert set(table["dataset"]) == {dataset} and set(table["source"]) == {source} and set(table["target"]) == {target}
    assert table["severity"].isna().all() and set(table["metric"]) == set(study.METRICS)
    assert set(table.loc[table["study"] == "ds_methods", "method"]) == set(study.ALL_METHODS)
    assert sorted(table["seed"].unique()) == [0, 1] and [s["seed"] for s in run.log.splits] == [0, 1]
    assert len(analysis.method_table(table)) == 1
