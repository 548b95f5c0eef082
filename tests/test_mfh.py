"""MFH claims, asserted on what the quick-profile notebooks record (results.csv)."""

from __future__ import annotations

import pandas as pd
import pytest

from cmkd_lab.studies import mfh

ALLOWED_METHODS = {"teacher", "no_kd", "kd"}


def _accuracy(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["metric"] == "test_acc"]


@pytest.fixture(scope="module")
def gaussian(executed) -> pd.DataFrame:
    return executed.results("02_mfh_gaussian")


@pytest.fixture(scope="module")
def table2(executed) -> pd.DataFrame:
    return executed.results("02_mfh_table2")


def test_gaussian_results_contract(gaussian):
    assert set(gaussian["study"]) == {"mfh_fig2", "mfh_fig3"}
    assert set(gaussian["method"]) == ALLOWED_METHODS
    assert gaussian["value"].between(0, 1).all()
    fig2 = gaussian[gaussian["study"] == "mfh_fig2"]
    assert fig2["gamma"].notna().all() and fig2.groupby(["method", "gamma", "seed"]).size().eq(1).all()
    assert fig2["gamma"].nunique() == 6 and fig2["seed"].nunique() >= 5


def test_fig2_kd_gain_rises_with_gamma_and_changes_sign(gaussian):
    delta = mfh.delta_by_seed(gaussian[gaussian["study"] == "mfh_fig2"], "gamma").groupby("gamma")["value"].mean()
    assert delta.loc[delta.index.min()] < 0, delta  # KD hurts when nothing is shared
    assert delta.loc[delta.index.max()] > 0, delta  # and helps when everything is
    assert delta.loc[delta.index.max()] - delta.loc[delta.index.min()] > 0.02
    assert pd.Series(delta.to_numpy()).diff().dropna().ge(-0.005).all(), delta  # rising, within noise


def test_fig3_better_teacher_does_not_give_better_student(gaussian):
    fig3 = _accuracy(gaussian[gaussian["study"] == "mfh_fig3"])
    mean = fig3.groupby(["method", "alpha"])["value"].mean()
    teacher, kd = mean["teacher"], mean["kd"]
    assert teacher.iloc[-1] - teacher.iloc[0] >= 0.20, teacher
    assert (kd.max() - kd.min()) < 0.03, kd


def test_table2_results_contract(table2):
    assert set(table2["study"]) == {"mfh_table2"}
    assert set(table2["method"]) <= ALLOWED_METHODS
    assert set(table2["teacher_mode"]) == {"regular", "random", "gt", "alg1"}
    assert table2["value"].between(0, 1).all()


def test_table2_modality_general_teacher_is_worse_but_teaches_better(table2):
    mean = _accuracy(table2).groupby(["method", "teacher_mode"])["value"].mean()
    for mode in ("gt", "alg1"):
        assert mean[("teacher", mode)] < mean[("teacher", "regular")] - 0.05, mean
        assert mean[("kd", mode)] > mean[("kd", "regular")], mean
    per_gamma = _accuracy(table2).groupby(["method", "teacher_mode", "gamma"])["value"].mean()
    assert (per_gamma[("kd", "alg1")] > per_gamma[("kd", "regular")]).mean() >= 0.8, per_gamma


def test_algorithm1_recovers_true_shared_channels(table2):
    recovery = table2[table2["metric"] == "channel_recovery"].groupby("teacher_mode")["value"].mean()
    assert recovery["alg1"] >= 0.9, recovery
    assert recovery["random"] < 0.7, recovery


def test_venn_diagram_stacks_the_three_shares():
    ratios = mfh.fig2_ratios(mfh.GaussianParameters.create())
    fig = mfh.venn_diagram(ratios).to_dict()
    bars = {trace["name"].split(" ")[0]: trace for trace in fig["data"]}
    assert set(bars) == {"a-specific", "shared", "b-specific"} and fig["layout"]["barmode"] == "stack"
    totals = [sum(bars[k]["x"][i] for k in bars) for i in range(len(ratios))]
    assert totals == pytest.approx([1.0] * len(ratios))


def test_table2_as_released_flag_trains_regular_kd_on_x_a():
    quick = dict(n_runs=2, epochs=30, alg1_epochs=10, alg1_repeats=2, xs2_values=(10,), teacher_modes=("gt",))
    correct = mfh.run_table2(mfh.Table2Parameters.create(**quick), progress=False).table
    released = mfh.run_table2(mfh.Table2Parameters.create(**quick, regular_kd_as_released=True), progress=False).table
    pick = lambda t: t[(t["method"] == "kd") & (t["teacher_mode"] == "regular")]["value"].to_numpy()  # noqa: E731
    assert not (pick(correct) == pick(released)).all()
    same = lambda t: t[t["method"] == "no_kd"]["value"].to_numpy()  # noqa: E731
    assert (same(correct) == same(released)).all()


def test_real_study_contract_on_one_small_dataset():
    p = mfh.RealParameters.create(datasets=("segment",), n_runs=2, epochs=5, alg1_repeats=1)
    table = mfh.run_real(p, progress=False).table
    assert set(table["teacher_mode"]) == set(mfh.REAL_TEACHER_MODES)
    assert set(table["method"]) == ALLOWED_METHODS and set(table["dataset"]) == {"segment"}
    assert table.groupby(["method", "teacher_mode", "seed"]).size().eq(1).all()


def test_explore_callbacks_return_figures():
    p = mfh.GaussianParameters.create(explore_runs=2, explore_epochs=10)
    fig = mfh.explore_gaussian(p, overlap=4, xs1=20, n_train=100, temperature=2.0, kd_weight=0.5)
    assert len(fig.to_dict()["data"]) == 3
    t = mfh.Table2Parameters.create(explore_runs=2, explore_epochs=10)
    fig = mfh.explore_table2(t, xs2=10, n_train=100, temperature=1.0, kd_weight=1.0)
    assert len(fig.to_dict()["data"]) == 3
