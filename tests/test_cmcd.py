"""CMCD's study: the three stages on the engine, the quick profile's claims, the results contract,
and the real-data notebook's study on a downloaded dataset's fixture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from cmkd_lab.analysis import claims
from cmkd_lab.studies.cmcd import analysis, pipeline, real, synthetic
from cmkd_lab.studies.runner import StudyRunner


@pytest.fixture(scope="module")
def quick_run():
    params = synthetic.CMCDParameters.create(sweeps=False)
    return params, synthetic.run(params, progress=False)


def test_the_results_contract(quick_run):
    params, run = quick_run
    table = run.table
    assert set(table["study"]) == {"cmcd_synthetic"}
    assert set(table["method"]) == set(pipeline.METHODS)
    assert set(table["stage"]) == {"probe", "finetune"}
    assert set(table["metric"]) == {"test_acc", "tv_lower_bound", "mmd"}
    for method, stages in pipeline.METHOD_STAGES.items():
        assert set(table.loc[table["method"] == method, "stage"]) == set(stages)
    per_cell = table.groupby(["alpha", "method", "stage", "metric"])["seed"]
    assert (per_cell.size() == params.n_runs).all() and (per_cell.nunique() == params.n_runs).all()  # one row per seed
    assert table["value"].notna().all()


def test_quick_profile_distillation_beats_no_distillation_at_small_m(quick_run):
    params, run = quick_run
    acc = run.table[
        (run.table["metric"] == "test_acc") & (run.table["alpha"] == params.alpha) & (run.table["stage"] == "probe")
    ]
    mean = acc.groupby("method")["value"].mean()
    assert params.n_labeled <= 5 * 4  # a few labels per class
    assert mean["cmd"] > mean["no_distill"] + 0.05 and mean["cmc"] > mean["no_distill"] + 0.05


@pytest.fixture(scope="module")
def quick_claims(quick_run):
    """The notebook's claims table on the quick run, as its claims cell builds it."""
    params, run = quick_run
    table = run.table
    points = analysis.distance_points(table)
    rows = (
        analysis.margin_claims(table[table["alpha"] == params.alpha], ["alpha"], synthetic.n_classes(params))
        + analysis.distance_claims(points, within="alpha", units="seed", setting="within each α")
        + analysis.knob_claims(points)
    )
    return claims.table(rows)


def test_quick_profile_distance_estimates_follow_the_knob(quick_run, quick_claims):
    """α is built to move the modality distance: both estimates grow with it over the seeds (the
    checks), and the target error with it (at α = 1 the target holds no class information)."""
    _, run = quick_run
    points = analysis.distance_points(run.table)
    assert sorted(points["alpha"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    error = points.groupby("alpha")["test_error"].mean()
    assert error[1.0] > error[0.0] + 0.4
    checks = quick_claims[quick_claims["kind"] == "check"].set_index("claim")
    assert list(checks.index) == [analysis.DISTANCE_FOLLOWS_KNOB[d].claim for d in analysis.DISTANCES]
    assert (checks["estimate"] > 0).all() and (checks["n_units"] == run.table["seed"].nunique()).all()
    assert checks.loc[analysis.DISTANCE_FOLLOWS_KNOB["mmd"].claim, "verdict"] == "held"


def test_the_claims_table_states_each_claim_and_judges_it_by_the_one_rule(quick_run, quick_claims):
    """The paper's margins per distiller (paired by seed, against the best baseline after
    fine-tuning), the distance link within α as the kit's finding, the knob as checks."""
    params, run = quick_run
    assert list(quick_claims.columns) == list(claims.COLUMNS)
    assert quick_claims["kind"].tolist() == ["paper"] * 2 + ["finding"] * 2 + ["check"] * 2
    assert set(quick_claims["verdict"]) <= set(claims.VERDICTS)
    paper = quick_claims[quick_claims["kind"] == "paper"]
    assert paper["claim"].tolist() == [analysis.BEATS_BEST_BASELINE[m].claim for m in ("cmd", "cmc")]
    assert (paper["sesoi"] == 1.0).all() and (paper["prediction"] == "> 0").all()
    # each estimate is the seed-by-seed margin over the best baseline of margins()
    margin = analysis.margins(run.table[run.table["alpha"] == params.alpha], ["alpha"])
    for (_, row), method in zip(paper.iterrows(), ("cmd", "cmc")):
        expected = margin[(margin["stage"] == "finetune") & (margin["method"] == method)].iloc[0]
        assert row["estimate"] == pytest.approx(expected["margin"])
        assert row["setting"] == f"α = {params.alpha:g} vs {expected['best_baseline']}"
        assert row["n_units"] == params.n_runs
    findings = quick_claims[quick_claims["kind"] == "finding"]
    assert (findings["setting"] == "within each α").all() and (findings["source"].str.startswith("kit")).all()
    table = analysis.paper_vs_kit(margin)
    assert table["method"].tolist() == ["CMD", "CMC"]
    assert table["paper: Sketchy top-1 margin"].str.startswith("+1.").all()  # +1.28 and +1.91


def tiny_transfers(seeds=(0, 1)):
    data = synthetic.load("cmcd_modalities", alpha=0.25, seed=0, n_samples=400)
    return pipeline.transfers_from_splits(
        {s: data.split(s) for s in seeds}, "source", "target", n_paired=100, n_labeled=8, settings={"alpha": 0.25}
    )


TINY = pipeline.Stages(ssl_epochs=2, distill_epochs=2, head_epochs=3, embedding_dim=8, batch_size=32)


def test_the_stages_reuse_weights_bit_for_bit():
    net = synthetic.ModelSpec("mlp", hidden=(16,))
    runner = StudyRunner("t", progress=False)
    pipeline.run_transfers(
        runner,
        tiny_transfers(),
        source_net=net,
        target_net=net,
        stages=TINY,
        methods=("cmd", "no_distill", "finetune_only"),
    )
    run = runner.result()
    assert [fit["method"] for fit in run.log.fits] == ["ssl_teacher", "cmd", "probe", "finetune"]
    assert set(run.table["study"]) == {"t"} and {fit["study"] for fit in run.log.fits} == {"t"}
    distilled = run.artifacts.fits["cmd"][0].modules["encoder"]
    probe, finetune = run.artifacts.fits["probe"][0], run.artifacts.fits["finetune"][0]
    assert probe.record["frozen_modules"] == ["encoder"]
    probed = probe.modules["encoder"].subset([0, 1])  # the probe fit's first block is CMD's
    for key, value in distilled.params.items():
        assert torch.equal(probed.params[key], value)
    assert not torch.equal(
        finetune.modules["encoder"].params["encoder.fc1.weight"],
        probe.modules["encoder"].params["encoder.fc1.weight"][2:],
    )  # fine-tuning moved it
    # the seeds' teachers were trained once and shared by every method
    assert len(run.artifacts.fits["ssl_teacher"]) == 1 and run.artifacts.fits["ssl_teacher"][0].record["n_models"] == 2


def test_variants_share_the_ssl_teachers_and_label_their_rows():
    net = synthetic.ModelSpec("mlp", hidden=(16,))
    variants = {"batch": TINY, "queue": dataclasses.replace(TINY, queue_size=64)}
    runner = StudyRunner("t", progress=False)
    pipeline.run_transfers(
        runner, tiny_transfers(), source_net=net, target_net=net, stages=TINY, methods=("cmd",), variants=variants
    )
    run = runner.result()
    assert len(run.artifacts.fits["ssl_teacher"]) == 1 and len(run.artifacts.fits["cmd"]) == 2
    assert set(run.table["variant"]) == {"batch", "queue"}
    assert (run.table.groupby(["variant", "stage", "metric"])["seed"].nunique() == 2).all()
    with pytest.raises(
        ValueError, match="variant 'hot' changes \\['ssl_temperature'\\], which the shared SSL teachers"
    ):
        pipeline.run_transfers(
            StudyRunner("t", progress=False),
            tiny_transfers(),
            source_net=net,
            target_net=net,
            stages=TINY,
            methods=("cmd",),
            variants={"hot": dataclasses.replace(TINY, ssl_temperature=0.5)},
        )


def test_gain_and_gap_are_seed_by_seed_differences():
    accuracies = {
        0: {
            ("cmd", "probe"): 0.8,
            ("no_distill", "probe"): 0.5,
            ("cmd", "finetune"): 0.9,
            ("cmc", "finetune"): 0.95,
            ("finetune_only", "finetune"): 0.92,
        },
        1: {
            ("cmd", "probe"): 0.7,
            ("no_distill", "probe"): 0.6,
            ("cmd", "finetune"): 0.85,
            ("cmc", "finetune"): 0.8,
            ("finetune_only", "finetune"): 0.9,
        },
    }
    table = pd.DataFrame(
        [
            {"method": m, "stage": stage, "alpha": 0.5, "seed": seed, "metric": "test_acc", "value": v}
            for seed, values in accuracies.items()
            for (m, stage), v in values.items()
        ]
    )
    gain = analysis.distillation_gain(table, ["alpha"])
    assert gain.loc[0.5, ("gain", "probe")] == pytest.approx(100 * (0.3 + 0.1) / 2)
    assert gain.loc[0.5, ("gain", "finetune")] == pytest.approx(100 * (-0.02 - 0.05) / 2)
    assert analysis.scratch_gap(table, ["alpha"])[0.5] == pytest.approx(
        100 * (-0.03 + 0.05) / 2
    )  # vs the best distiller
    points = pd.DataFrame({"alpha": [0.0, 0.5, 1.0, 1.0], "tv_lower_bound": 1.0, "mmd": [0.1, 0.2, 0.3, 0.4]})
    order = analysis.distance_knob_correlations(points, n_boot=50)
    assert (
        order.loc["tv_lower_bound", "rho"] == 0 and order.loc["mmd", "rho"] > 0.9
    )  # a constant estimate orders nothing


def test_distance_claims_take_the_correlation_within_the_knob():
    """Across α the error and the distance rise together (α drives both); within each α the
    distillers' distances run against their errors: the within-α claim sees that, the pooled ρ not."""
    points = pd.DataFrame(
        [
            {
                "alpha": alpha,
                "seed": seed,
                "method": method,
                "tv_lower_bound": alpha + 0.1 * i,
                "mmd": alpha + 0.1 * i + 0.01 * seed,
                "test_error": alpha - 0.1 * i,
            }
            for seed in range(5)
            for alpha in (0.0, 0.5, 1.0)
            for i, method in enumerate(pipeline.DISTILLERS)
        ]
    )
    within = analysis.distance_claims(points, within="alpha", units="seed", setting="within each α")
    assert within[0]["estimate"] == pytest.approx(-1.0) and within[1]["estimate"] < -0.9
    assert [row["verdict"] for row in within] == ["not held", "not held"] and within[0]["n_units"] == 5
    pooled = analysis.distance_claims(points, within=None, units="seed", setting="pooled over α")
    assert all(row["estimate"] > 0.5 for row in pooled)
    few = analysis.distance_claims(points[points["seed"] < 3], within="alpha", units="seed", setting="3 seeds")
    assert few[0]["verdict"] == "not resolved" and few[0]["note"] == "3 seeds: a bootstrap interval needs 4 or more"


def test_margin_claims_pair_seeds_name_the_pair_and_leave_chance_unresolved():
    pair = {"dataset": "mfeat", "source": "pixels", "target": "fourier", "stage": "finetune", "metric": "test_acc"}
    gains = {"cmd": [0.03, 0.04, 0.05], "cmc": [0.0, 0.001, -0.001], "l2": [0.0] * 3, "finetune_only": [-0.02] * 3}
    table = pd.DataFrame(
        [
            {**pair, "method": m, "seed": seed, "value": 0.8 + gain}
            for m, values in gains.items()
            for seed, gain in enumerate(values)
        ]
    )
    rows = analysis.margin_claims(table, analysis.PAIR_COLUMNS, {"mfeat": 10})
    assert [r["setting"] for r in rows] == ["mfeat: pixels → fourier vs l2"] * 2  # l2 has the highest mean
    assert rows[0]["estimate"] == pytest.approx(4.0) and rows[0]["verdict"] == "held"  # 3, 4, 5 points
    assert rows[1]["verdict"] == "not held"  # 0, 0.1, −0.1 points: the interval inside ±1 point
    near_chance = table.assign(value=table["value"] - 0.68)  # 12 % with 10 classes: within 5 points of chance
    rows = analysis.margin_claims(near_chance, analysis.PAIR_COLUMNS, {"mfeat": 10})
    assert all(r["verdict"] == "not resolved" and r["note"].startswith("models ended at chance") for r in rows)


def test_unknown_methods_and_bad_sizes_are_clear_errors():
    net = synthetic.ModelSpec("mlp", hidden=(16,))
    with pytest.raises(ValueError, match="unknown method\\(s\\) \\['crd'\\]; valid methods: cmd, cmc, l2, no_distill"):
        pipeline.run_transfers(StudyRunner("t"), tiny_transfers(), source_net=net, target_net=net, methods=("crd",))
    data = synthetic.load("cmcd_modalities", alpha=0.0, seed=0, n_samples=400)
    with pytest.raises(ValueError, match="n_paired = 5000 but only .* training samples remain"):
        pipeline.make_transfer(data.split(0), "source", "target", n_paired=5000, n_labeled=8, seed=0, settings={})
    with pytest.raises(ValueError, match="n_labeled = 2 cannot hold one sample of each of 4 classes"):
        pipeline.make_transfer(data.split(0), "source", "target", n_paired=10, n_labeled=2, seed=0, settings={})
    with pytest.raises(ValueError, match="alpha = 0.3 must be one of alphas"):
        synthetic.CMCDParameters.create(alpha=0.3)


def test_the_labeled_set_is_balanced_and_apart_from_the_paired_set():
    data = synthetic.load("cmcd_modalities", alpha=0.0, seed=0, n_samples=400)
    transfer = pipeline.make_transfer(
        data.split(3), "source", "target", n_paired=100, n_labeled=10, seed=3, settings={}
    )
    counts = np.bincount(transfer.labels.numpy(), minlength=4)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1
    paired = {tuple(row) for row in transfer.target_paired.numpy().round(5)}
    assert not paired & {tuple(row) for row in transfer.target_labeled.numpy().round(5)}


def test_explore_reruns_one_setting(monkeypatch):
    params = synthetic.CMCDParameters.create()
    monkeypatch.setattr(
        synthetic,
        "EXPLORE_SCALE",
        {**synthetic.EXPLORE_SCALE, "n_samples": 400, "ssl_epochs": 1, "distill_epochs": 1, "head_epochs": 2},
    )
    fig = synthetic.explore_figure(params, 0.5, 60, 8, 0.2).to_dict()
    assert {trace["name"] for trace in fig["data"]} == {"probe", "finetune"}
    assert "α = 0.50, M = 60, m = 8, temperature = 0.2" in fig["layout"]["title"]["text"]


def test_real_pairs_run_on_a_downloaded_datasets_fixture(tmp_path, monkeypatch):
    """AV-MNIST (image → audio) from its download fixture reaches the real-data study by name and pair."""
    from test_data_scripts import convert, make_avmnist_raw

    from cmkd_lab.datasets import avmnist, cache

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "data"))
    make_avmnist_raw(tmp_path / "raw")
    convert(
        avmnist.AVMNIST,
        tmp_path / "raw",
        tmp_path / "data",
        "--images-per-recording",
        "3",
        "--n-mels",
        "16",
        "--n-frames",
        "20",
    )
    params = real.CMCDRealParameters.create(
        datasets=["avmnist"],
        pairs=["avmnist:image>audio"],
        n_runs=2,
        labeled_per_class=1,
        ssl_epochs=1,
        distill_epochs=1,
        head_epochs=2,
        embedding_dim=8,
    )
    run = real.run(params, progress=False)
    table = run.table
    assert (
        set(table["dataset"]) == {"avmnist"} and set(table["source"]) == {"image"} and set(table["target"]) == {"audio"}
    )
    assert set(table["method"]) == set(pipeline.METHODS) and table["value"].notna().all()
    teacher_fit = run.artifacts.fits["ssl_teacher"][0]
    assert teacher_fit.system.encoder.kind == "cnn2d"  # nets from the modalities' (C, H, W) shape
    assert [s["seed"] for s in run.log.splits] == [0, 1] and all(s["test_groups"] for s in run.log.splits)
    with pytest.raises(ValueError, match="pairs: 'avmnist:image>image' is not 'dataset:teacher>student'"):
        real.CMCDRealParameters.create(datasets=["avmnist"], pairs=["avmnist:image>image"])


def test_real_runs_several_label_counts_from_the_same_teachers():
    params = real.CMCDRealParameters.create(
        datasets=["segment"], n_runs=1, n_paired=60, ssl_epochs=1, distill_epochs=1, head_epochs=2, embedding_dim=8
    )
    run = real.run(params, progress=False, methods=("cmd", "no_distill"), labeled_per_class=[1, 3])
    assert set(run.table["labeled_per_class"]) == {1, 3} and set(run.table["method"]) == {"cmd", "no_distill"}
    assert len(run.artifacts.fits["ssl_teacher"]) == 1  # the label counts share the SSL teacher
    gain = analysis.distillation_gain(run.table, ["labeled_per_class"])
    assert list(gain.index) == [1, 3] and list(gain["gain"].columns) == ["probe"]
