"""The quickstart's study functions, as the notebook and its Explore section call them."""

from cmkd_lab.studies import quickstart


def test_explore_callback_reruns_and_redraws_one_bar_per_method():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=30)
    fig = quickstart.explore_figure(params, shared=0, a_specific=10, temperature=4.0, kd_weight=2.0)
    bars = fig.to_dict()["data"]
    assert [b["name"] for b in bars] == ["Teacher", "No-KD student", "KD student"]
    assert "γ = 0.00" in fig.layout.title.text and "T = 4.0" in fig.layout.title.text


def test_tasks_share_the_hyperplane_between_train_and_test_draws():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=10, shared=5, a_specific=0, b_specific=0)
    task = quickstart.make_tasks(params)[1]
    train, test = task.splits.train, task.splits.test
    assert task.seed == 1 and task.settings["gamma"] == 1.0
    assert not train["a"][:5].equal(test["a"][:5])
    # With all decisive features shared, a linear rule fitted on train transfers to test.
    result = quickstart.run(quickstart.QuickstartParameters.create(n_runs=2, epochs=200, shared=5, a_specific=0,
                                                                   b_specific=0), progress=False)
    assert result.table.query("method == 'teacher'")["value"].min() > 0.85
