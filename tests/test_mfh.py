"""MFH claims, asserted on what the quick-profile notebooks record (results.csv)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cmkd_lab.analysis.results import claim_verdicts, verdict
from cmkd_lab.report import figures
from cmkd_lab.studies.mfh import gaussian, real, table2

ALLOWED_METHODS = {"teacher", "no_kd", "kd"}


def _accuracy(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["metric"] == "test_acc"]


@pytest.fixture(scope="module")
def gaussian_table(executed) -> pd.DataFrame:
    return executed.results("02_mfh_gaussian")


@pytest.fixture(scope="module")
def table2_table(executed) -> pd.DataFrame:
    return executed.results("02_mfh_table2")


def test_gaussian_results_contract(gaussian_table):
    assert set(gaussian_table["study"]) == {"mfh_fig2", "mfh_fig3"}
    assert set(gaussian_table["method"]) == ALLOWED_METHODS
    assert gaussian_table["value"].between(0, 1).all()
    fig2 = gaussian_table[gaussian_table["study"] == "mfh_fig2"]
    assert fig2["gamma"].notna().all() and fig2.groupby(["method", "gamma", "seed"]).size().eq(1).all()
    assert fig2["gamma"].nunique() == 6 and fig2["seed"].nunique() >= 5


def test_fig2_kd_gain_rises_with_gamma_and_changes_sign(gaussian_table):
    delta = gaussian.delta_by_seed(gaussian_table[gaussian_table["study"] == "mfh_fig2"], "gamma").groupby("gamma")["value"].mean()
    assert delta.loc[delta.index.min()] < 0, delta  # KD hurts when nothing is shared
    assert delta.loc[delta.index.max()] > 0, delta  # and helps when everything is
    assert delta.loc[delta.index.max()] - delta.loc[delta.index.min()] > 0.02
    assert pd.Series(delta.to_numpy()).diff().dropna().ge(-0.005).all(), delta  # rising, within noise


def test_fig2_sign_flip_lies_where_the_paper_puts_it(gaussian_table):
    fig2 = gaussian_table[gaussian_table["study"] == "mfh_fig2"]
    flip = gaussian.sign_flips(fig2)["kd"]
    assert 0.05 < flip < 0.6, flip  # papers.md: near γ ≈ 0.3-0.4
    assert gaussian.kd_gains(fig2, "gamma")["kd"].iloc[0] < 0


def test_paper_tables_label_every_claim_for_the_gallery(gaussian_table, table2_table):
    fig2 = gaussian.fig2_paper_table(gaussian_table[gaussian_table["study"] == "mfh_fig2"])
    claims = claim_verdicts(fig2, table2.paper_table(table2_table)).set_index("claim")
    assert "Fig. 2 · γ = 0.00 · KD student" in claims.index and "γ = 0.33 · MG KD student (Algorithm 1)" in claims.index
    assert claims.loc[claims.index.str.startswith("γ = 0.25"), "verdict"].eq("null result").all()  # no kit setting
    assert set(claims["verdict"]) <= {"held", "not held", "null result"}


def test_fig3_better_teacher_does_not_give_better_student(gaussian_table):
    fig3 = _accuracy(gaussian_table[gaussian_table["study"] == "mfh_fig3"])
    mean = fig3.groupby(["method", "alpha"])["value"].mean()
    teacher, kd = mean["teacher"], mean["kd"]
    assert teacher.iloc[-1] - teacher.iloc[0] >= 0.20, teacher
    assert (kd.max() - kd.min()) < 0.03, kd


def test_table2_results_contract(table2_table):
    assert set(table2_table["study"]) == {"mfh_table2"}
    assert set(table2_table["method"]) <= ALLOWED_METHODS
    assert set(table2_table["teacher_mode"]) == {"regular", "random", "gt", "alg1"}
    assert table2_table["value"].between(0, 1).all()
    acc = _accuracy(table2_table)
    assert acc.groupby(["method", "teacher_mode", "gamma", "seed"]).size().eq(1).all()
    assert set(acc[acc["method"] == "no_kd"]["teacher_mode"]) == {"regular"}


def test_table2_algorithm1_scores_are_min_max_per_model(table2_table):
    scores = table2_table[table2_table["metric"] == "alg1_score"]
    assert set(scores["teacher_mode"]) == {"alg1"} and scores["channel"].nunique() == 50
    per_model = scores.groupby(["gamma", "seed"])["value"]
    assert per_model.min().eq(0).all() and per_model.max().eq(1).all() and per_model.size().eq(50).all()


def test_table2_modality_general_teacher_is_worse_but_teaches_better(table2_table):
    mean = _accuracy(table2_table).groupby(["method", "teacher_mode"])["value"].mean()
    for mode in ("gt", "alg1"):
        assert mean[("teacher", mode)] < mean[("teacher", "regular")] - 0.05, mean
        assert mean[("kd", mode)] > mean[("kd", "regular")], mean
    per_gamma = _accuracy(table2_table).groupby(["method", "teacher_mode", "gamma"])["value"].mean()
    assert (per_gamma[("kd", "alg1")] > per_gamma[("kd", "regular")]).mean() >= 0.8, per_gamma


def test_algorithm1_recovers_true_shared_channels(table2_table):
    recovery = table2_table[table2_table["metric"] == "channel_recovery"].groupby("teacher_mode")["value"].mean()
    assert recovery["alg1"] >= 0.9, recovery
    assert recovery["random"] < 0.7, recovery


def test_venn_diagram_stacks_the_three_shares():
    ratios = gaussian.fig2_ratios(gaussian.GaussianParameters.create())
    fig = figures.venn_diagram(ratios).to_dict()
    bars = {trace["name"].split(" ")[0]: trace for trace in fig["data"]}
    assert set(bars) == {"a-specific", "shared", "b-specific"} and fig["layout"]["barmode"] == "stack"
    totals = [sum(bars[k]["x"][i] for k in bars) for i in range(len(ratios))]
    assert totals == pytest.approx([1.0] * len(ratios))


def test_algorithm1_recovery_alone_beats_chance_once_the_joint_pair_is_trained():
    p = table2.Table2Parameters.create(n_runs=3, xs2_values=(10, 30), alg1_epochs=50, alg1_repeats=1)
    recovery = table2.algorithm1_recovery(p)
    assert list(recovery.columns) == ["gamma", "recovery", "chance"] and recovery["chance"].tolist() == [0.2, 0.6]
    assert (recovery["recovery"] > recovery["chance"] + 0.2).all(), recovery


def test_table2_as_released_flag_trains_regular_kd_on_x_a():
    quick = dict(n_runs=2, epochs=30, alg1_epochs=10, alg1_repeats=2, xs2_values=(10,), teacher_modes=("gt",))
    correct = table2.run(table2.Table2Parameters.create(**quick), progress=False).table
    released = table2.run(table2.Table2Parameters.create(**quick, regular_kd_as_released=True), progress=False).table
    pick = lambda t: t[(t["method"] == "kd") & (t["teacher_mode"] == "regular")]["value"].to_numpy()  # noqa: E731
    assert not (pick(correct) == pick(released)).all()
    same = lambda t: t[t["method"] == "no_kd"]["value"].to_numpy()  # noqa: E731
    assert (same(correct) == same(released)).all()


def test_real_study_contract_on_one_small_dataset():
    p = real.RealParameters.create(datasets=("segment",), n_runs=2, epochs=5, alg1_repeats=1)
    run = real.run(p, progress=False)
    table = run.table
    assert set(table["teacher_mode"]) == set(real.TEACHER_MODES)
    assert set(table["method"]) == ALLOWED_METHODS and set(table["dataset"]) == {"segment"}
    assert table.groupby(["method", "teacher_mode", "seed"]).size().eq(1).all()
    assert [fit["method"] for fit in run.log.fits] == ["algorithm1", "no_kd", "kd"]
    comparisons = real.comparisons(table)
    assert list(comparisons["comparison"]) == list(real.COMPARISONS) and comparisons["n"].eq(2).all()
    acc = _accuracy(table)
    kd = acc[acc["method"] == "kd"].pivot(index="seed", columns="teacher_mode", values="value")
    mg = comparisons.set_index("comparison").loc["MG KD − regular KD", "mean (points)"]
    assert mg == pytest.approx(round(100 * (kd["least_salient"] - kd["regular"]).mean(), 2))
    assert list(comparisons.columns[:3]) == ["dataset", "comparison", "paper says"]
    assert comparisons["verdict"].str.match("held|not held|null result").all()
    verdicts = claim_verdicts(comparisons)
    assert list(verdicts["claim"]) == [f"segment · {c}" for c in real.COMPARISONS]
    # the teachers alone: the same teacher rows as the full run, and Algorithm 1 against reliance
    probe = real.teacher_probe(p, progress=False)
    teachers = lambda t: t[t["method"] == "teacher"].sort_values(["teacher_mode", "seed"])["value"].to_numpy()  # noqa: E731
    assert teachers(probe) == pytest.approx(teachers(table))
    rho = probe[probe["metric"] == "reliance_rho"]
    assert len(rho) == 2 and rho["value"].between(-1, 1).all()
    summary = real.probe_table(probe)
    assert list(summary.index) == ["segment"] and list(summary.columns) == ["random", "least_salient", "most_salient",
                                                                           "reliance_rho"]


@pytest.mark.parametrize(("mean", "std", "n", "predicted", "word"), [
    (3.0, 1.0, 4, +1, "held"), (-3.0, 1.0, 4, +1, "not held"), (0.5, 1.0, 4, +1, "null result"),
    (0.5, 1.0, 4, 0, "held"), (3.0, 1.0, 4, 0, "not held"), (3.0, 0.0, 1, +1, "null result"),
])
def test_real_comparison_verdicts(mean, std, n, predicted, word):
    assert verdict(real._verdict(mean, std, n, predicted)) == word


def test_explore_callbacks_return_figures():
    p = gaussian.GaussianParameters.create(explore_runs=2, explore_epochs=10)
    fig = gaussian.explore(p, overlap=4, xs1=20, n_train=100, temperature=2.0, kd_weight=0.5)
    assert len(fig.to_dict()["data"]) == 3
    t = table2.Table2Parameters.create(explore_runs=2, explore_epochs=10)
    fig = table2.explore(t, xs2=10, n_train=100, temperature=1.0, kd_weight=1.0)
    assert len(fig.to_dict()["data"]) == 3


def test_table2_channel_choices_keep_in_place_or_in_the_given_order():
    x = torch.arange(24.0).reshape(2, 3, 4)  # (tasks, samples, channels)
    tasks = ["first", "second"]  # a variant only needs the tasks' identities
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    in_place = table2.ChannelChoice.in_place(mask)
    assert torch.equal(in_place.variant(tasks)(x, tasks), x * mask.unsqueeze(1))
    assert torch.equal(in_place.mask(), mask)
    in_order = table2.ChannelChoice.in_order([torch.tensor([3, 1]), torch.tensor([2, 2, 0, 1])], torch.tensor([2, 2]), 4)
    kept = in_order.variant(tasks)(x, tasks)
    assert torch.equal(kept[0, :, :2], x[0][:, [3, 1]]) and torch.equal(kept[1, :, :2], x[1][:, [2, 2]])
    assert not kept[:, :, 2:].any()
    assert in_order.mask().tolist() == [[False, True, False, True], [False, False, True, False]]
