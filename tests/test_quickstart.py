"""The quickstart's study functions, as the notebook and its Explore section call them."""

import pandas as pd
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
    result = quickstart.run(
        quickstart.QuickstartParameters.create(n_runs=2, epochs=200, n_train=200, venn_settings=[(5, 0, 0)]),
        progress=False,
    )
    assert result.table.query("method == 'teacher'")["value"].min() > 0.85


def test_the_default_settings_judge_mfh_fig2s_two_claims():
    """The quickstart's claims at its quick profile, by the kit's rule: KD helps when the decisive
    features are shared (γ = 1: held); when the teacher relies on its own (γ ≈ 0.1) KD gives no gain
    worth a point (the interval stays below the sesoi). The two teachers are comparably strong."""
    params = quickstart.QuickstartParameters.create()
    table = quickstart.run(params, progress=False).table
    judged = quickstart.claims_table(table).set_index("claim")
    assert list(judged["kind"]) == ["paper", "paper"] and set(judged["source"]) == {"MFH §4, Fig. 2"}
    helps, hurts = judged.loc[quickstart.KD_HELPS.claim], judged.loc[quickstart.KD_HURTS.claim]
    assert helps["verdict"] == "held" and "γ = 1.00" in helps["setting"]
    assert hurts["ci_high"] < quickstart.KD_HURTS.sesoi and "γ = 0.10" in hurts["setting"]
    gains = quickstart.gains(table).set_index("gamma")
    assert abs(gains.loc[1.0, "teacher"] - gains.loc[gains.index.min(), "teacher"]) < 10


def test_claims_skip_the_settings_between_the_papers_signs_and_flag_students_at_chance():
    """γ between 0.2 and 0.4 has no claim (MFH Fig. 2 changes sign there); students within 5
    points of 50 % make the row not resolved, whatever its interval."""
    rows = [
        {"setting": setting, "gamma": gamma, "seed": seed, "method": method, "value": value + 0.001 * seed}
        for setting, gamma, no_kd, kd in (
            ("middle", 0.3, 0.70, 0.60),
            ("low", 0.1, 0.53, 0.43),
            ("high", 1.0, 0.70, 0.80),
        )
        for seed in range(5)
        for method, value in (("teacher", 0.9), ("no_kd", no_kd), ("kd", kd))
    ]
    judged = quickstart.claims_table(pd.DataFrame(rows))
    assert judged["setting"].tolist() == ["low (γ = 0.10)", "high (γ = 1.00)"]
    assert judged["verdict"].tolist() == ["not resolved", "held"]
    assert "no_kd: test accuracy 53.2 %" in judged["note"].iloc[0]


def test_zero_padding_trains_settings_of_different_widths_as_one_fit_per_method():
    params = quickstart.QuickstartParameters.create(n_runs=2, epochs=10, venn_settings=[(2, 14, 4), (10, 6, 4)])
    tasks = quickstart.make_tasks(params)
    padded = quickstart.zero_padded(tasks)
    assert {t.splits.train["b"].shape[1] for t in tasks} == {26, 34}
    assert {t.splits.test["b"].shape[1] for t in padded} == {34}
    for task, wide in zip(tasks, padded):
        narrow, filled = task.splits.train["b"], wide.splits.train["b"]
        assert filled[:, : narrow.shape[1]].equal(narrow) and not filled[:, narrow.shape[1] :].any()
    result = quickstart.run(params, progress=False, one_fit=True)
    assert [fit["method"] for fit in result.log.fits] == ["teacher", "no_kd", "kd"]
    assert result.table["setting"].nunique() == 2


def test_sign_change_is_the_zero_of_the_least_squares_line():
    assert quickstart.sign_change([0.0, 0.5, 1.0], [-1.0, 0.1, 0.9]) == pytest.approx(0.5, abs=0.05)
    assert quickstart.sign_change([0.0, 1.0], [-2.0, 2.0]) == pytest.approx(0.5)
