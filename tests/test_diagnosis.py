"""The diagnosis (07_when_does_cmkd_help, ``python -m cmkd_lab diagnose``): the planted family's
known answer, the probe's predictors, the pair table, and a user dataset diagnosed from the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from cmkd_lab.analysis.results import save_results
from cmkd_lab.app.cli import main
from cmkd_lab.datasets import DATASETS, PairedDataset, from_arrays, register_dataset
from cmkd_lab.studies.diagnosis import benchmark, predictors, report
from cmkd_lab.studies.diagnosis.diagnose import diagnose, parse_pair

pytestmark = pytest.mark.filterwarnings("ignore:.*ended at chance")


def small(**options) -> benchmark.DiagnosisParameters:
    settings = dict(n_runs=2, epochs=20, probe_epochs=20, max_pairs_per_dataset=2, max_samples=400, n_boot=50)
    return benchmark.DiagnosisParameters.create(**{**settings, **options})


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny benchmark: the planted family's ends, segment's two directions, two mfeat pairs."""
    p = small(datasets=["gaussian_venn", "segment", "mfeat"], overlaps=[0, 10], methods=["kd", "fitnet"])
    run = benchmark.run(p, progress=False)
    folder = tmp_path_factory.mktemp("benchmark")
    save_results(run.table, folder, run.log, p.as_dict())
    return folder, run


def test_the_mfh_signal_ranks_the_planted_family_by_gamma_and_delta_rises_with_it():
    """The known answer: on MFH's Fig. 2 generator the KD gain rises with γ, and Algorithm 1's
    whole-view share ranks the settings the same way (τ > 0.6)."""
    p = small(datasets=["gaussian_venn"], n_runs=3, epochs=200, probe_epochs=100, methods=["kd"])
    tasks = benchmark.make_tasks(p)
    signals = benchmark.probe_signals(tasks, p, names=["mg_share"], progress=False)
    table = pd.concat([signals, benchmark.measure(tasks, p, progress=False).table], ignore_index=True)
    pairs = benchmark.pair_table(table)
    assert len(pairs) == 6 and set(pairs["method"]) == {"kd"}
    tau_gamma = stats.weightedtau(pairs["mg_share"], pairs["gamma"]).statistic
    tau_delta = stats.weightedtau(pairs["mg_share"], pairs["delta"]).statistic
    assert tau_gamma > 0.6, pairs[["gamma", "mg_share", "delta"]]
    assert tau_delta > 0.6, pairs[["gamma", "mg_share", "delta"]]
    assert stats.spearmanr(pairs["gamma"], pairs["delta"]).statistic > 0.6, pairs[["gamma", "delta"]]


def test_the_share_is_algorithm1s_permutation_score_of_the_whole_view_in_expectation():
    """mg_share's closed form, Σ Cov(t, s) / Σ Var(t) on per-sample-centred logits, equals
    Algorithm 1's score / reliance with the whole view permuted, averaged over permutations."""
    generator = torch.Generator().manual_seed(0)
    t = torch.randn(1, 300, 4, generator=generator)
    s = 0.6 * t + 0.5 * torch.randn(1, 300, 4, generator=generator)

    class Fixed:
        def __init__(self):
            self.logits = {"joint_teacher": t, "joint_student": s}

    closed = predictors.modality_general_share(Fixed()).item()
    centre = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731
    tc, sc = centre(t[0]), centre(s[0])
    gap = ((tc - sc) ** 2).sum(-1).mean()
    score = reliance = 0.0
    for _ in range(400):
        order = torch.randperm(300, generator=generator)
        score += (((tc[order] - sc) ** 2).sum(-1).mean() - gap) / 400
        reliance += ((tc[order] - tc) ** 2).sum(-1).mean() / 400
    assert closed == pytest.approx(float(score / reliance), abs=0.03)
    assert 0.4 < closed < 0.9


def test_the_mg_teacher_replaces_the_least_salient_embedding_channels_by_their_mean():
    """mg_teacher_logits = the head on the joint teacher's embedding with each copy's
    MG_FRACTION lowest-scoring channels (Algorithm 1's saliency, the copy's own permutations)
    set to their mean over the inputs."""
    from cmkd_lab.analysis.saliency import permutation_saliency
    from cmkd_lab.engine import Stack
    from cmkd_lab.models import ModelSpec

    generator = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(2, 60, 5, generator=generator), torch.randn(2, 60, 7, generator=generator)
    teacher = Stack.from_seeds(ModelSpec("mlp", hidden=(12,)).sized((5,), 3), [3, 4])
    student = Stack.from_seeds(ModelSpec("mlp", hidden=(12,)).sized((7,), 3), [5, 6])
    seeds = [3, 4]
    edited = predictors.mg_teacher_logits(teacher, student, x_a, x_b, seeds=seeds)

    embedding = teacher(x_a, features=("embedding",))[1]["embedding"].detach()
    replaced = round(predictors.MG_FRACTION * 12)
    for m, seed in enumerate(seeds):
        own = torch.Generator().manual_seed(seed)
        permutations = torch.stack([torch.randperm(60, generator=own) for _ in range(predictors.MG_REPEATS)])
        scores = permutation_saliency(
            teacher.subset([m]),
            x_a[m : m + 1],
            student.subset([m]),
            x_b[m : m + 1],
            layer="embedding",
            repeats=predictors.MG_REPEATS,
            permutations=permutations.unsqueeze(1),
        )[0]
        low = scores.argsort()[:replaced]
        h = embedding[m].clone()
        h[:, low] = embedding[m][:, low].mean(0)
        expected = h @ teacher.params["head.weight"][m].T + teacher.params["head.bias"][m]
        torch.testing.assert_close(edited[m], expected.detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(edited, teacher(x_a)[0].detach())  # the edit changes the teacher


def test_padded_probe_fits_give_each_pair_what_it_gives_alone():
    p = small(datasets=["mfeat"], max_pairs_per_dataset=3, n_runs=1, probe_epochs=10)
    tasks = benchmark.make_tasks(p)
    names = ["mg_share", "mg_teacher_gain", "teacher_acc", "pilot_gain", "mmd2", "correlation_gap"]
    together = benchmark.probe_signals(tasks, p, names=names, progress=False)
    alone = pd.concat([benchmark.probe_signals([task], p, names=names, progress=False) for task in tasks])
    key = ["pair", "seed", "metric"]
    a = together[together["method"] == "signal"].set_index(key)["value"].sort_index()
    b = alone[alone["method"] == "signal"].set_index(key)["value"].sort_index()
    assert a.index.equals(b.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-5)


def test_grouped_data_keep_each_seeds_whole_split_and_its_seeds_share_the_outcomes_fits():
    """Whole subjects go to one part, so the parts' sizes differ across seeds. Each seed keeps its
    whole split; the outcome trains every seed in one fit per method (padded, rows weighed), and
    each task scores what it scores trained alone."""
    g = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), g.integers(8, 30, size=12))
    labels = g.integers(0, 3, size=len(groups))
    views = {"u": g.normal(size=(len(groups), 5)) + labels[:, None], "v": g.normal(size=(len(groups), 4))}
    data = from_arrays(views, labels, groups=groups, name="grouped")
    p = small(n_runs=3, epochs=15, methods=["kd", "fitnet", "ds"])
    tasks = benchmark.view_tasks("grouped", data, [("u", "v")], p.seeds)
    sizes = [[len(part) for part in t.splits.parts().values()] for t in tasks]
    assert sizes == [[len(part) for part in data.split(seed).parts().values()] for seed in p.seeds]
    assert len({tuple(s) for s in sizes}) > 1  # the point: sizes differ across seeds
    together = benchmark.measure(tasks, p)
    fits = {r["method"]: r for r in together.log.fits if "in_fit_of" not in r}
    assert fits["kd"]["n_models"] == 3 and fits["kd"]["rows"] == [s[0] for s in sizes]
    alone = pd.concat([benchmark.measure([task], p).table for task in tasks])
    key = ["method", "seed"]
    a = together.table.set_index(key)["value"].sort_index()
    b = alone.set_index(key)["value"].sort_index()
    assert a.index.equals(b.index) and len(a) == 3 * 5
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-9)


def test_grouped_maps_train_each_size_apart_for_as_long_as_its_own_size_gives():
    """CNNs train on mini-batches, where rows cannot be weighed: each training size trains in fits
    of its own, its number of passes set by its own size, so a seed trains as it would alone."""
    g = np.random.default_rng(1)
    groups = np.repeat(np.arange(10), g.integers(10, 40, size=10))
    labels = g.integers(0, 2, size=len(groups))
    views = {"u": g.normal(size=(len(groups), 2, 20)) + labels[:, None, None], "v": g.normal(size=(len(groups), 2, 20))}
    data = from_arrays(views, labels, groups=groups, name="grouped_maps")
    p = small(n_runs=2, epochs=4, methods=["kd"])
    tasks = benchmark.view_tasks("grouped_maps", data, [("u", "v")], p.seeds)
    assert len({len(t.splits.train) for t in tasks}) == 2
    together = benchmark.measure(tasks, p)
    teachers = [r for r in together.log.fits if r["method"] == "teacher"]
    assert sorted(r["n_models"] for r in teachers) == [1, 1] and all("rows" not in r for r in teachers)
    for record, task in zip(teachers, tasks):
        assert record["train_config"]["epochs"] == benchmark._config([task], p.epochs, p).epochs
    alone = pd.concat([benchmark.measure([task], p).table for task in tasks])
    key = ["method", "seed"]
    np.testing.assert_allclose(
        together.table.set_index(key)["value"].sort_index().to_numpy(),
        alone.set_index(key)["value"].sort_index().to_numpy(),
        atol=1e-9,
    )


def test_the_pair_table_pairs_each_method_with_no_kd_by_seed(bench):
    _, run = bench
    pairs = benchmark.pair_table(run.table)
    accuracy = run.table[run.table["metric"] == "test_acc"]
    wide = accuracy.pivot_table(index=["dataset", "pair", "seed"], columns="method", values="value")
    expected = 100 * (wide["fitnet"] - wide["no_kd"]).groupby(["dataset", "pair"]).mean()
    fitnet = pairs[pairs["method"] == "fitnet"].set_index(["dataset", "pair"])["delta"]
    pd.testing.assert_series_equal(fitnet.sort_index(), expected.sort_index(), check_names=False)
    assert (pairs["delta_low"] <= pairs["delta"]).all() and (pairs["delta"] <= pairs["delta_high"]).all()
    helps = pairs["delta_low"] > 0
    assert (pairs.loc[helps, "outcome"] == "helps").all()
    assert set(pairs["outcome"]) <= {"helps", "hurts", "no difference"}
    assert pairs.groupby("dataset")["pair"].nunique().to_dict() == {"gaussian_venn": 2, "mfeat": 2, "segment": 2}
    for name in predictors.predictor_names():
        assert name in pairs and f"cost_{name}" in pairs
        assert (pairs[f"cost_{name}"] >= 0).all()
    assert pairs.loc[pairs["dataset"] == "gaussian_venn", "ntd"].isna().all()  # binary: no non-target classes
    assert pairs.loc[pairs["dataset"] == "segment", "ntd"].notna().all()
    assert pairs["entropy_gap"].isna().all()  # no conv net among these pairs


def test_the_evaluation_scores_every_predictor_and_judges_claims(bench):
    _, run = bench
    evaluation = report.evaluate(benchmark.pair_table(run.table), n_boot=50)
    board = evaluation.leaderboard("kd")
    assert set(predictors.predictor_names()) <= set(board["predictor"]) | {"entropy_gap"}
    assert {"logistic (all predictors)", "majority"} <= set(board["predictor"])
    assert set(evaluation.claims["kind"]) == {"paper", "finding"}
    assert "kd" in report.conclusion(evaluation) and "fitnet" in report.conclusion(evaluation)
    assert len(report.planted_claims(run.table)) == 2


def test_a_registered_predictor_joins_the_probe_and_bad_registrations_fail():
    with pytest.raises(ValueError, match="direction must be"):
        predictors.register_predictor("x", family="mine", direction=2, stages=(), about="")
    with pytest.raises(ValueError, match="unknown stage"):
        predictors.register_predictor("x", family="mine", direction=1, stages=("nope",), about="")

    @predictors.register_predictor("test_width", family="mine", direction=1, stages=(), about="input width")
    def width(probe):
        return torch.tensor([float(probe.view("a", m).shape[-1]) for m in range(len(probe.tasks))])

    try:
        p = small(datasets=["segment"], n_runs=1, probe_epochs=2)
        signals = benchmark.probe_signals(benchmark.make_tasks(p), p, names=["test_width"], progress=False)
        values = signals[signals["method"] == "signal"].set_index("pair")["value"]
        assert values.to_dict() == {"colour>shape": 10.0, "shape>colour": 8.0}
    finally:
        predictors.PREDICTORS.unregister("test_width")


@pytest.fixture
def odd_datasets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype("float32")
    made = {
        "test_one_class": lambda: from_arrays({"u": x, "v": x}, np.zeros(60, int), name="test_one_class"),
        "test_empty_view": lambda: PairedDataset(  # from_arrays refuses it already; a loader might not
            {"u": torch.as_tensor(x), "v": torch.zeros(60, 0)}, torch.arange(60) % 2, name="test_empty_view"
        ),
    }
    for name, loader in made.items():
        register_dataset(name, kind="test", description="a broken dataset")(loader)
    yield
    for name in made:
        DATASETS.unregister(name)


def test_diagnose_stops_bad_input_with_a_clear_message(bench, odd_datasets):
    folder, _ = bench
    with pytest.raises(ValueError, match="two different modalities"):
        parse_pair("colour>colour", ["colour", "shape"], "segment")
    with pytest.raises(ValueError, match="no modality 'depth'; its modalities: colour, shape"):
        diagnose("segment", "colour>depth", benchmark=folder, log=lambda _: None)
    with pytest.raises(ValueError, match="single class"):
        diagnose("test_one_class", "u>v", benchmark=folder, log=lambda _: None)
    with pytest.raises(ValueError, match="width 0"):
        diagnose("test_empty_view", "u>v", benchmark=folder, log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="python -m cmkd_lab run 07_when_does_cmkd_help"):
        diagnose("segment", "colour>shape", benchmark=folder / "missing", log=lambda _: None)
    with pytest.raises(ValueError, match="no method 'dkd'; it measured: fitnet, kd"):
        diagnose("segment", "colour>shape", benchmark=folder, method="dkd", log=lambda _: None)


def test_a_user_dataset_is_diagnosed_from_the_cli(bench, tmp_path, monkeypatch, capsys):
    folder, _ = bench
    monkeypatch.setenv("CMKD_LAB_USER_DATA", str(tmp_path / "user"))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 900)
    latent = rng.normal(size=(900, 4)) + 1.5 * np.eye(3)[labels] @ rng.normal(size=(3, 4))
    arrays = {
        "accel": np.c_[latent, rng.normal(size=(900, 3))],
        "gyro": np.c_[latent[:, :2], rng.normal(size=(900, 5))],
    }
    np.savez(tmp_path / "mine.npz", labels=labels, **{k: v.astype("float32") for k, v in arrays.items()})
    try:
        assert main(["datasets", "add", "test_mine", str(tmp_path / "mine.npz")]) == 0
        code = main(["diagnose", "test_mine", "--pair", "accel>gyro", "--benchmark", str(folder), "--measure"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert "diagnose: probing test_mine accel>gyro: 600 of 900 samples" in printed
        assert "prediction: KD (kd)" in printed and "measured kd: Δ =" in printed
        for name in predictors.predictor_names():
            assert name in printed
        assert main(["diagnose", "test_mine", "--pair", "accel>depth", "--benchmark", str(folder)]) == 2
        assert "its modalities: accel, gyro" in capsys.readouterr().err
    finally:
        if "test_mine" in DATASETS:
            DATASETS.unregister("test_mine")


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_diagnoses_a_user_dataset_as_written(executed, tmp_path, monkeypatch):
    """The README's "Will KD help on your pair?" commands, with the walk-through's dataset ``mine``;
    the session's quick run of the notebook stands in for the first command (the benchmark run)."""
    monkeypatch.chdir(tmp_path)
    environment = {
        **os.environ,
        "CMKD_LAB_USER_DATA": str(tmp_path / "user_data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    walkthrough = README.read_text().split("### Your data in every study, by name", 1)[1].split("\n### ", 1)[0]
    making_mine, adding_mine = re.findall(r"```(?:python|bash)\n(.*?)```", walkthrough, flags=re.S)[:2]
    exec(making_mine, {})
    subprocess.run(adding_mine.strip().splitlines()[0], shell=True, check=True, env=environment)
    shutil.copytree(executed.folder("07_when_does_cmkd_help"), tmp_path / "outputs" / "07_when_does_cmkd_help")

    section = README.read_text().split("### Will KD help on your pair?", 1)[1].split("\n### ", 1)[0]
    lines = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].strip().splitlines()
    assert lines[0].startswith("python -m cmkd_lab run 07_when_does_cmkd_help")
    for line in lines[1:]:
        done = subprocess.run(line, shell=True, capture_output=True, text=True, env=environment, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        assert "diagnose: probing mine accel>gyro: 120 samples" in done.stdout
        assert "prediction: KD (kd)" in done.stdout
        assert ("measured kd: Δ =" in done.stdout) == ("--measure" in line)


def test_the_notebook_records_every_signal_outcome_and_claim(executed):
    table = executed.results("07_when_does_cmkd_help")
    folder = executed.folder("07_when_does_cmkd_help")
    signals = table[table["method"] == "signal"]
    assert set(signals["metric"]) == set(predictors.predictor_names())
    assert set(table.loc[table["metric"] == "test_acc", "method"]) == {"teacher", "no_kd", "kd", "fitnet", "ds"}
    assert (table.loc[table["method"] == "signal_cost", "value"] >= 0).all()
    quick = benchmark.DiagnosisParameters.create()
    assert set(table["dataset"]) == set(quick.datasets) and set(table["seed"]) == set(quick.seeds)
    verdicts = pd.read_csv(folder / "claims.csv")
    assert set(verdicts["kind"]) == {"paper", "finding", "check"}
    assert verdicts["verdict"].isin(["held", "not held", "not resolved"]).all()
    written = {path.name for path in folder.iterdir()}
    assert {"signal_scores.html", "delta_vs_signals_kd.html", "planted_family.html"} <= written
