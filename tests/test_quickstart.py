"""The quickstart's study functions, as the notebook and its Explore section call them."""

import pytest

from cmkd_lab.studies import quickstart


def test_explore_callback_reruns_and_redraws_one_bar_per_method():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=30)
    fig = quickstart.explore_figure(params, shared=0, a_specific=10, b_specific=4, temperature=4.0, kd_weight=2.0)
    bars = fig.to_dict()["data"]
    assert [b["name"] for b in bars] == ["Teacher", "No-KD student", "KD student"]
    assert "γ = 0.00" in fig.layout.title.text and "T = 4.0" in fig.layout.title.text
    with pytest.raises(ValueError, match="each modality needs at least one decisive feature"):
        quickstart.explore_figure(params, shared=0, a_specific=10, b_specific=0, temperature=1.0, kd_weight=1.0)


def test_tasks_share_the_hyperplane_between_train_and_test_draws():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=10, venn_settings=[(5, 0, 0)])
    task = quickstart.make_tasks(params)[1]
    train, test = task.splits.train, task.splits.test
    assert task.seed == 1 and task.settings["gamma"] == 1.0
    assert not train["a"][:5].equal(test["a"][:5])
    # With all decisive features shared, a linear rule fitted on train transfers to test.
    result = quickstart.run(quickstart.QuickstartParameters.create(n_runs=2, epochs=200, n_train=200, venn_settings=[(5, 0, 0)]),
                            progress=False)
    assert result.table.query("method == 'teacher'")["value"].min() > 0.85


def test_the_default_settings_show_kd_helping_and_hurting_outside_their_intervals():
    """The quickstart's lesson at its quick profile: the same kind of teacher, KD helps when the
    decisive features are shared (γ = 1) and hurts when the teacher relies on its own (γ ≈ 0.1)."""
    params = quickstart.QuickstartParameters.create()
    gains = quickstart.gains(quickstart.run(params, progress=False).table).set_index("gamma")
    shared, own = gains.loc[gains.index.max()], gains.loc[gains.index.min()]
    assert shared["KD − No-KD"] > 2 * shared["standard error"]
    assert own["KD − No-KD"] < -2 * own["standard error"]
    assert abs(shared["teacher"] - own["teacher"]) < 10  # comparably strong teachers


def test_zero_padding_trains_settings_of_different_widths_as_one_fit_per_method():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=10, venn_settings=[(2, 14, 4), (10, 6, 4)])
    tasks = quickstart.make_tasks(params)
    padded = quickstart.zero_padded(tasks)
    assert {t.splits.train["b"].shape[1] for t in tasks} == {26, 34}
    assert {t.splits.test["b"].shape[1] for t in padded} == {34}
    for task, wide in zip(tasks, padded):
        narrow, filled = task.splits.train["b"], wide.splits.train["b"]
        assert filled[:, : narrow.shape[1]].equal(narrow) and not filled[:, narrow.shape[1]:].any()
    result = quickstart.run(params, progress=False, one_fit=True)
    assert [fit["method"] for fit in result.log.fits] == ["teacher", "no_kd", "kd"]
    assert result.table["setting"].nunique() == 2


def test_sign_change_is_the_zero_of_the_least_squares_line():
    assert quickstart.sign_change([0.0, 0.5, 1.0], [-1.0, 0.1, 0.9]) == pytest.approx(0.5, abs=0.05)
    assert quickstart.sign_change([0.0, 1.0], [-2.0, 2.0]) == pytest.approx(0.5)
