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
