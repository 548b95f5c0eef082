"""CMCD's study: the three stages on the engine, the quick profile's claims, the results contract,
and the real-data notebook's study on a downloaded dataset's fixture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from cmkd_lab.analysis.results import claim_verdicts
from cmkd_lab.studies.cmcd import analysis, pipeline, real, synthetic


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
    acc = run.table[(run.table["metric"] == "test_acc") & (run.table["alpha"] == params.alpha)
                    & (run.table["stage"] == "probe")]
    mean = acc.groupby("method")["value"].mean()
    assert params.n_labeled <= 5 * 4  # a few labels per class
    assert mean["cmd"] > mean["no_distill"] + 0.05 and mean["cmc"] > mean["no_distill"] + 0.05


def test_quick_profile_target_error_rises_with_the_estimated_distance(quick_run):
    _, run = quick_run
    points = analysis.distance_points(run.table)
    assert sorted(points["alpha"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    for distance in analysis.DISTANCES:
        assert analysis.distance_correlation(points, distance, n_boot=500)["rho"] > 0
    error = points.groupby("alpha")["test_error"].mean()
    assert error[1.0] > error[0.0] + 0.4  # at alpha = 1 the target holds no class information


def test_claims_report_margins_and_the_distance_link(quick_run):
    params, run = quick_run
    table = run.table[run.table["alpha"] == params.alpha]
    margin = analysis.margins(table, ["alpha"])
    assert set(margin["method"]) == {"cmd", "cmc"} and set(margin["best_baseline"]) <= set(analysis.BASELINES)
    # the margin is the distiller minus the best baseline, seed by seed
    acc = table[(table["metric"] == "test_acc") & (table["stage"] == "finetune")].pivot_table(
        index="seed", columns="method", values="value")
    row = margin[(margin["stage"] == "finetune") & (margin["method"] == "cmd")].iloc[0]
    assert row["margin"] == pytest.approx(100 * (acc["cmd"] - acc[row["best_baseline"]]).mean())
    correlation = analysis.distance_correlation(analysis.distance_points(run.table), n_boot=200)
    claims = analysis.claims(margin, correlation)
    assert len(claims) == 3 and claims["verdict"].str.match("held|not held|not resolved").all()


def tiny_transfers(seeds=(0, 1)):
    data = synthetic.load("cmcd_modalities", alpha=0.25, seed=0, n_samples=400)
    return pipeline.transfers_from_splits({s: data.split(s) for s in seeds}, "source", "target", n_paired=100,
                                          n_labeled=8, settings={"alpha": 0.25})


TINY = pipeline.Stages(ssl_epochs=2, distill_epochs=2, head_epochs=3, embedding_dim=8, batch_size=32)


def test_the_stages_reuse_weights_bit_for_bit():
    net = synthetic.Architecture("mlp", (16,))
    run = pipeline.run_transfers(tiny_transfers(), study="t", source_net=net, target_net=net, stages=TINY,
                                 methods=("cmd", "no_distill", "finetune_only"), progress=False)
    distilled = run.artifacts.fits["cmd"][0].modules["encoder"]
    probe, finetune = run.artifacts.fits["probe"][0], run.artifacts.fits["finetune"][0]
    assert probe.record["frozen_modules"] == ["encoder"]
    probed = probe.modules["encoder"].subset([0, 1])  # the probe fit's first block is CMD's
    for key, value in distilled.params.items():
        assert torch.equal(probed.params[key], value)
    assert not torch.equal(finetune.modules["encoder"].params["encoder.fc1.weight"],
                           probe.modules["encoder"].params["encoder.fc1.weight"][2:])  # fine-tuning moved it
    # the seeds' teachers were trained once and shared by every method
    assert len(run.artifacts.fits["ssl_teacher"]) == 1 and run.artifacts.fits["ssl_teacher"][0].record["n_models"] == 2


def test_variants_share_the_ssl_teachers_and_label_their_rows():
    net = synthetic.Architecture("mlp", (16,))
    variants = {"batch": TINY, "queue": dataclasses.replace(TINY, queue_size=64)}
    run = pipeline.run_transfers(tiny_transfers(), study="t", source_net=net, target_net=net, stages=TINY,
                                 methods=("cmd",), progress=False, variants=variants)
    assert len(run.artifacts.fits["ssl_teacher"]) == 1 and len(run.artifacts.fits["cmd"]) == 2
    assert set(run.table["variant"]) == {"batch", "queue"}
    assert (run.table.groupby(["variant", "stage", "metric"])["seed"].nunique() == 2).all()
    with pytest.raises(ValueError, match="variant 'hot' changes \\['ssl_temperature'\\], which the shared SSL teachers"):
        pipeline.run_transfers(tiny_transfers(), study="t", source_net=net, target_net=net, stages=TINY, methods=("cmd",),
                               variants={"hot": dataclasses.replace(TINY, ssl_temperature=0.5)})


def test_gain_and_gap_are_seed_by_seed_differences_and_claims_name_their_setting():
    accuracies = {0: {("cmd", "probe"): 0.8, ("no_distill", "probe"): 0.5, ("cmd", "finetune"): 0.9,
                      ("cmc", "finetune"): 0.95, ("finetune_only", "finetune"): 0.92},
                  1: {("cmd", "probe"): 0.7, ("no_distill", "probe"): 0.6, ("cmd", "finetune"): 0.85,
                      ("cmc", "finetune"): 0.8, ("finetune_only", "finetune"): 0.9}}
    table = pd.DataFrame([{"method": m, "stage": stage, "alpha": 0.5, "seed": seed, "metric": "test_acc", "value": v}
                          for seed, values in accuracies.items() for (m, stage), v in values.items()])
    gain = analysis.distillation_gain(table, ["alpha"])
    assert gain.loc[0.5, ("gain", "probe")] == pytest.approx(100 * (0.3 + 0.1) / 2)
    assert gain.loc[0.5, ("gain", "finetune")] == pytest.approx(100 * (-0.02 - 0.05) / 2)
    assert analysis.scratch_gap(table, ["alpha"])[0.5] == pytest.approx(100 * (-0.03 + 0.05) / 2)  # vs the best distiller
    points = pd.DataFrame({"alpha": [0.0, 0.5, 1.0, 1.0], "tv_lower_bound": 1.0, "mmd": [0.1, 0.2, 0.3, 0.4]})
    order = analysis.distance_knob_correlations(points, n_boot=50)
    assert order.loc["tv_lower_bound", "rho"] == 0 and order.loc["mmd", "rho"] > 0.9  # a constant estimate orders nothing
    margin = pd.DataFrame([{"dataset": "mfeat", "source": "pixels", "target": "fourier", "stage": "finetune", "method": "cmd",
                            "best_baseline": "l2", "margin": 1.0, "margin_std": 0.5, "n_seeds": 3}])
    claims = analysis.claims(margin, {"rho": 0.3, "low": 0.1, "high": 0.5, "n": 9})
    assert claim_verdicts(claims)["claim"].tolist() == ["mfeat: pixels → fourier · CMD beats the best baseline by 1–3 points",
                                                       "across pairs · a larger modality distance, a larger target error"]


def test_unknown_methods_and_bad_sizes_are_clear_errors():
    net = synthetic.Architecture("mlp", (16,))
    with pytest.raises(ValueError, match="unknown method\\(s\\) \\['crd'\\]; valid methods: cmd, cmc, l2, no_distill"):
        pipeline.run_transfers(tiny_transfers(), study="t", source_net=net, target_net=net, methods=("crd",))
    data = synthetic.load("cmcd_modalities", alpha=0.0, seed=0, n_samples=400)
    with pytest.raises(ValueError, match="n_paired = 5000 but only .* training samples remain"):
        pipeline.make_transfer(data.split(0), "source", "target", n_paired=5000, n_labeled=8, seed=0, settings={})
    with pytest.raises(ValueError, match="n_labeled = 2 cannot hold one sample of each of 4 classes"):
        pipeline.make_transfer(data.split(0), "source", "target", n_paired=10, n_labeled=2, seed=0, settings={})
    with pytest.raises(ValueError, match="alpha = 0.3 must be one of alphas"):
        synthetic.CMCDParameters.create(alpha=0.3)


def test_the_labeled_set_is_balanced_and_apart_from_the_paired_set():
    data = synthetic.load("cmcd_modalities", alpha=0.0, seed=0, n_samples=400)
    transfer = pipeline.make_transfer(data.split(3), "source", "target", n_paired=100, n_labeled=10, seed=3, settings={})
    counts = np.bincount(transfer.labels.numpy(), minlength=4)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1
    paired = {tuple(row) for row in transfer.target_paired.numpy().round(5)}
    assert not paired & {tuple(row) for row in transfer.target_labeled.numpy().round(5)}


def test_explore_reruns_one_setting(monkeypatch):
    params = synthetic.CMCDParameters.create()
    monkeypatch.setattr(synthetic, "EXPLORE_SCALE", {**synthetic.EXPLORE_SCALE, "n_samples": 400, "ssl_epochs": 1,
                                                     "distill_epochs": 1, "head_epochs": 2})
    fig = synthetic.explore_figure(params, 0.5, 60, 8, 0.2).to_dict()
    assert {trace["name"] for trace in fig["data"]} == {"probe", "finetune"}
    assert "α = 0.50, M = 60, m = 8, temperature = 0.2" in fig["layout"]["title"]["text"]


def test_real_pairs_run_on_a_downloaded_datasets_fixture(tmp_path, monkeypatch):
    """AV-MNIST (image → audio) from its download fixture reaches the real-data study by name and pair."""
    from cmkd_lab.datasets import avmnist, cache
    from test_data_scripts import convert, make_avmnist_raw

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "data"))
    make_avmnist_raw(tmp_path / "raw")
    convert(avmnist.AVMNIST, tmp_path / "raw", tmp_path / "data", "--images-per-recording", "3", "--n-mels", "16",
            "--n-frames", "20")
    params = real.CMCDRealParameters.create(datasets=["avmnist"], pairs=["avmnist:image>audio"], n_runs=2,
                                            labeled_per_class=1, ssl_epochs=1, distill_epochs=1, head_epochs=2,
                                            embedding_dim=8)
    run = real.run(params, progress=False)
    table = run.table
    assert set(table["dataset"]) == {"avmnist"} and set(table["source"]) == {"image"} and set(table["target"]) == {"audio"}
    assert set(table["method"]) == set(pipeline.METHODS) and table["value"].notna().all()
    teacher_fit = run.artifacts.fits["ssl_teacher"][0]
    assert teacher_fit.system.encoder.kind == "cnn2d"  # nets from the modalities' (C, H, W) shape
    assert [s["seed"] for s in run.log.splits] == [0, 1] and all(s["test_groups"] for s in run.log.splits)
    with pytest.raises(ValueError, match="pairs: 'avmnist:image>image' is not 'dataset:teacher>student'"):
        real.CMCDRealParameters.create(datasets=["avmnist"], pairs=["avmnist:image>image"])


def test_real_runs_several_label_counts_from_the_same_teachers():
    params = real.CMCDRealParameters.create(datasets=["segment"], n_runs=1, n_paired=60, ssl_epochs=1, distill_epochs=1,
                                            head_epochs=2, embedding_dim=8)
    run = real.run(params, progress=False, methods=("cmd", "no_distill"), labeled_per_class=[1, 3])
    assert set(run.table["labeled_per_class"]) == {1, 3} and set(run.table["method"]) == {"cmd", "no_distill"}
    assert len(run.artifacts.fits["ssl_teacher"]) == 1  # the label counts share the SSL teacher
    gain = analysis.distillation_gain(run.table, ["labeled_per_class"])
    assert list(gain.index) == [1, 3] and list(gain["gain"].columns) == ["probe"]
