"""MFH claims, asserted on what the quick-profile notebooks record (results.csv, claims.csv, run.json)."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from cmkd_lab.analysis import claims
from cmkd_lab.app.notebook import NOTEBOOK_DIR
from cmkd_lab.datasets.synthetic import mfh_overlap, mfh_teacher_specific
from cmkd_lab.report import figures
from cmkd_lab.studies.mfh import common, gaussian, real, table2

ALLOWED_METHODS = {"teacher", "no_kd", "kd"}
MFH_NOTEBOOKS = ("02_mfh_gaussian", "02_mfh_table2", "02_mfh_real")


def _accuracy(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["metric"] == "test_acc"]


@pytest.fixture(scope="module")
def gaussian_table(executed) -> pd.DataFrame:
    return executed.results("02_mfh_gaussian")


@pytest.fixture(scope="module")
def table2_table(executed) -> pd.DataFrame:
    return executed.results("02_mfh_table2")


def _claims(executed, stem: str) -> pd.DataFrame:
    """A notebook's claims.csv, checked against the verdict rule row by row."""
    frame = claims.load(executed.folder(stem))
    assert list(frame.columns) == list(claims.COLUMNS)
    assert [claims.verdict_of(row) for row in frame.to_dict("records")] == frame["verdict"].tolist()
    assert set(frame["verdict"]) <= set(claims.VERDICTS) and set(frame["kind"]) <= set(claims.KINDS)
    return frame


def _row(frame: pd.DataFrame, statement: claims.Claim, setting: str | None = None) -> pd.Series:
    rows = frame[(frame["claim"] == statement.claim) & (frame["source"] == statement.source)]
    if setting is not None:
        rows = rows[rows["setting"] == setting]
    assert len(rows) == 1, (statement.claim, setting, rows)
    return rows.iloc[0]


def test_gaussian_results_contract(gaussian_table):
    assert set(gaussian_table["study"]) == {"mfh_fig2", "mfh_fig3"}
    assert set(gaussian_table["method"]) == ALLOWED_METHODS
    assert gaussian_table["value"].between(0, 1).all()
    fig2 = gaussian_table[gaussian_table["study"] == "mfh_fig2"]
    assert fig2["gamma"].notna().all() and fig2.groupby(["method", "gamma", "seed"]).size().eq(1).all()
    assert fig2["gamma"].nunique() == 6 and fig2["seed"].nunique() >= 5


def test_gaussian_claims_state_what_the_paper_says_of_both_figures(executed):
    frame = _claims(executed, "02_mfh_gaussian")
    assert set(frame["kind"]) == {"paper"} and frame["n_units"].eq(10).all()  # every claim: 10 runs
    grows = _row(frame, gaussian.GAIN_GROWS_WITH_GAMMA)
    assert grows["setting"] == "Fig. 2" and grows["unit"] == "Spearman ρ"
    hurts = _row(frame, gaussian.KD_HURTS_AT_LOW_GAMMA, "Fig. 2 · γ = 0.00")
    helps = _row(frame, gaussian.KD_HELPS_AT_HIGH_GAMMA, "Fig. 2 · γ = 1.00")
    rises = _row(frame, gaussian.TEACHER_RISES_WITH_ALPHA, "Fig. 3 · α = 0.00 → 0.80")
    flat = _row(frame, gaussian.GAIN_FLAT_IN_ALPHA, "Fig. 3 · α = 0.00 → 0.80")
    reproduced = frame[frame["claim"] == gaussian.REPRODUCES_GAIN.claim]
    gammas = [f"Fig. 2 · γ = {g:.2f}" for g in (0, 1 / 9, 1 / 4, 3 / 7, 2 / 3, 1)]
    assert reproduced["setting"].tolist() == [*gammas, "Fig. 3 · α = 0.00", "Fig. 3 · α = 0.80"]
    assert reproduced["prediction"].eq("= 0").all() and reproduced["sesoi"].eq(gaussian.PAPER_TOLERANCE).all()
    # what the quick profile shows: KD's gain rises with γ from a loss to a gain; the teacher
    # gains ~30 points over α while the student's gain stays within a couple of points
    assert grows["verdict"] == "held" and grows["estimate"] > 0.5, grows
    assert hurts["verdict"] == "held" and hurts["estimate"] < -1, hurts
    assert helps["verdict"] == "held" and helps["estimate"] > 1, helps
    assert rises["verdict"] == "held" and rises["estimate"] > 20, rises
    assert flat["verdict"] == "held" and abs(flat["estimate"]) < 2, flat
    assert reproduced["estimate"].abs().lt(gaussian.PAPER_TOLERANCE).all(), reproduced


def test_fig2_sign_flip_lies_where_the_paper_puts_it(gaussian_table):
    fig2 = gaussian_table[gaussian_table["study"] == "mfh_fig2"]
    flip = gaussian.sign_flips(fig2)["kd"]
    assert 0.05 < flip < 0.6, flip  # papers.md: near γ ≈ 0.3-0.4
    assert gaussian.kd_gains(fig2, "gamma")["kd"].iloc[0] < 0


def test_paper_tables_stay_for_reading_with_labelled_rows(gaussian_table, table2_table):
    fig2 = gaussian.fig2_paper_table(gaussian_table[gaussian_table["study"] == "mfh_fig2"])
    assert list(fig2.columns[:3]) == ["figure", "setting", "model"] and len(fig2) == 18
    assert ("Fig. 2", "γ = 0.00", "KD student") in set(zip(fig2["figure"], fig2["setting"], fig2["model"]))
    published = table2.paper_table(table2_table)
    unmatched = published[published["setting"] == "γ = 0.25"]  # no kit setting: shown, not tested
    assert len(unmatched) == 5 and unmatched["kit"].isna().all()


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


def test_table2_claims_judge_table2_and_algorithm1(executed):
    frame = _claims(executed, "02_mfh_table2")
    assert set(frame["kind"]) == {"paper", "finding", "check"} and frame["n_units"].eq(10).all()
    worse = _row(frame, table2.MG_TEACHER_WORSE)
    better = _row(frame, table2.MG_STUDENT_BETTER)
    beats_random = _row(frame, table2.MG_BEATS_RANDOM)
    as_truth = _row(frame, table2.ALG1_TEACHES_AS_TRUTH)
    recovers = _row(frame, table2.ALG1_RECOVERS)
    random_choice = _row(frame, table2.RANDOM_AT_CHANCE)
    assert (recovers["kind"], random_choice["kind"], as_truth["kind"]) == ("finding", "check", "finding")
    reproduced = frame[frame["claim"] == table2.REPRODUCES.claim]
    assert len(reproduced) == 20 and not reproduced["setting"].str.startswith("γ = 0.25").any()  # 4 γ × 5 models
    assert "γ = 0.66 · MG KD student (Algorithm 1)" in set(reproduced["setting"])
    # what the quick profile shows: the MG teacher is far worse, its student better by about a
    # point; Algorithm 1 finds nearly every shared channel, a random choice chance's share
    assert worse["verdict"] == "held" and worse["estimate"] < -10, worse
    assert better["ci_low"] > 0 and better["estimate"] < 3, better
    assert beats_random["verdict"] == "held", beats_random
    assert recovers["verdict"] == "held" and recovers["estimate"] > 0.5, recovers
    assert random_choice["verdict"] == "held" and abs(random_choice["estimate"]) < 0.05, random_choice
    assert reproduced["estimate"].abs().lt(table2.PAPER_TOLERANCE).all(), reproduced


def test_table2_claims_without_a_mode_or_with_models_at_chance_are_not_resolved():
    p = table2.Table2Parameters.create(
        n_runs=2, epochs=1, alg1_epochs=10, alg1_repeats=1, xs2_values=(10, 20), teacher_modes=("gt", "alg1")
    )
    frame = table2.claims_table(table2.run(p, progress=False), p)
    beats_random = _row(frame, table2.MG_BEATS_RANDOM)
    assert beats_random["n_units"] == 0 and beats_random["verdict"] == "not resolved"
    assert "no 'random' teacher" in beats_random["note"]
    # one epoch leaves the students near 50 %: their comparison is marked, whatever its interval
    better = _row(frame, table2.MG_STUDENT_BETTER)
    assert better["verdict"] == "not resolved" and better["note"].startswith("models ended at chance: kd · "), better


def test_at_chance_counts_the_seeds_of_each_model_at_chance():
    acc = pd.DataFrame(
        {
            "method": ["kd"] * 3 + ["no_kd"] * 3,
            "teacher_mode": "regular",
            "n_classes": 4,
            "value": [0.25, 0.31, 0.80, 0.29, 0.301, 0.9],
        }
    )
    assert common.at_chance(acc, [("kd", "regular"), ("no_kd", "regular")]) == (
        "kd · regular on 1 of 3 seeds; no_kd · regular on 1 of 3 seeds"
    )  # 1/4 + 5 points = 0.30
    percent = acc.assign(value=100 * acc["value"])
    assert common.at_chance(percent, [("kd", "regular")], percent=True) == "kd · regular on 1 of 3 seeds"
    assert common.at_chance(acc.assign(value=0.9), [("kd", "regular")]) == ""


def test_venn_diagram_stacks_the_three_shares():
    ratios = gaussian.fig2_ratios(gaussian.GaussianParameters.create())
    fig = figures.venn_diagram(ratios).to_dict()
    bars = {trace["name"].split(" ")[0]: trace for trace in fig["data"]}
    assert set(bars) == {"a-specific", "shared", "b-specific"} and fig["layout"]["barmode"] == "stack"
    totals = [sum(bars[k]["x"][i] for k in bars) for i in range(len(ratios))]
    assert totals == pytest.approx([1.0] * len(ratios))


def test_algorithm1_recovery_alone_beats_chance_once_the_joint_pair_is_trained():
    p = table2.Table2Parameters.create(n_runs=3, xs2_values=(10, 30), alg1_epochs=50, alg1_repeats=1)
    run = table2.algorithm1_recovery(p)
    assert run.log.fits[0]["method"] == "algorithm1" and run.log.fits[0]["n_models"] == 6
    recovery = table2.recovery_by_gamma(run)
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


def test_table2_regular_models_train_alike_beside_the_random_teacher():
    alone = table2._mean_accuracy(2, 10, 42, (), False)
    beside = table2._mean_accuracy(2, 10, 42, ("random",), False)  # the run exercises 1 and 3 share
    assert table2._mean_accuracy(2, 10, 42, ("random",)) is beside, "one run, however the call spells it"
    assert list(alone.index) == [("teacher", "regular"), ("kd", "regular"), ("no_kd", "regular")]
    assert (beside[alone.index] == alone).all(), (alone, beside)
    columns = table2.regular_kd_accuracy(n_runs=2, epochs=10)
    assert columns.index.equals(alone.index) and (columns["as_released=False"] == alone).all()


def test_figure_sweeps_planted_from_shared_draws_equal_separate_draws():
    p = gaussian.GaussianParameters.create(n_runs=2, n_train=30, n_test=40)
    for tasks, generator, knob, values in (
        (gaussian.fig2_tasks(p), mfh_overlap, "gamma", p.overlaps),
        (gaussian.fig3_tasks(p), mfh_teacher_specific, "alpha", p.xs1_values),
    ):
        assert len(tasks) == 2 * len(values)
        for task, (value, seed) in zip(tasks, [(v, s) for v in values for s in range(2)]):
            alone, ratios = generator(value, seed, n_train=30, n_test=40)
            assert task.settings == {knob: ratios[knob]}
            for part in ("train", "test"):
                assert torch.equal(getattr(task.splits, part).labels, getattr(alone, part).labels)
                assert all(torch.equal(getattr(task.splits, part)[m], getattr(alone, part)[m]) for m in ("a", "b"))


def test_real_study_contract_on_one_small_dataset():
    p = real.RealParameters.create(datasets=("segment",), n_runs=2, epochs=5, alg1_repeats=1)
    run = real.run(p, progress=False)
    table = run.table
    assert set(table["teacher_mode"]) == set(real.TEACHER_MODES) and set(table["n_classes"]) == {7}
    assert set(table["method"]) == ALLOWED_METHODS and set(table["dataset"]) == {"segment"}
    assert table.groupby(["method", "teacher_mode", "seed"]).size().eq(1).all()
    assert [fit["method"] for fit in run.log.fits] == ["algorithm1", "no_kd", "kd"]
    assert {fit["train_config"]["lr"] for fit in run.log.fits} == {real.DEFAULT_PAIRS["segment"].lr}
    comparisons = real.comparisons(table)
    assert list(comparisons.columns) == list(claims.COLUMNS)
    assert list(comparisons["claim"]) == [real.CLAIMS[c].claim for c in real.COMPARISONS]
    assert comparisons["setting"].eq("segment").all() and comparisons["n_units"].eq(2).all()
    acc = _accuracy(table)
    kd = acc[acc["method"] == "kd"].pivot(index="seed", columns="teacher_mode", values="value")
    assert comparisons["estimate"].iloc[0] == pytest.approx(100 * (kd["least_salient"] - kd["regular"]).mean())
    # the teachers alone: the same teacher rows as the full run, and Algorithm 1 against reliance
    probed = real.teacher_probe(p, progress=False)
    assert [(fit["method"], fit["dataset"]) for fit in probed.log.fits] == [("algorithm1", "segment")]
    assert [s["seed"] for s in probed.log.splits] == [0, 1]
    probe = probed.table
    teachers = lambda t: t[t["method"] == "teacher"].sort_values(["teacher_mode", "seed"])["value"].to_numpy()  # noqa: E731
    assert teachers(probe) == pytest.approx(teachers(table))
    rho = probe[probe["metric"] == "reliance_rho"]
    assert len(rho) == 2 and rho["value"].between(-1, 1).all()
    summary = real.probe_table(probe)
    assert list(summary.index) == ["segment"]
    assert list(summary.columns) == ["random", "least_salient", "most_salient", "reliance_rho"]


def _real_table(accuracies: dict[tuple[str, str], list[float]], n_classes: int = 4) -> pd.DataFrame:
    """A mfh_real results table of one dataset from per-seed test accuracies per (method, mode)."""
    return pd.DataFrame(
        [
            {
                "study": real.STUDY,
                "method": method,
                "dataset": "toy",
                "n_classes": n_classes,
                "teacher_mode": mode,
                "seed": seed,
                "metric": "test_acc",
                "value": value,
            }
            for (method, mode), values in accuracies.items()
            for seed, value in enumerate(values)
        ]
    )


def _seeds(mean: float, spread: float, n: int = 5) -> list[float]:
    return list(mean + spread * np.linspace(-1, 1, n))


@pytest.mark.parametrize(
    ("regular_kd", "no_kd", "verdict", "note"),
    [
        (_seeds(0.25, 0.0), _seeds(0.25, 0.0), "not resolved", "models ended at chance"),  # both students at chance
        (_seeds(0.651, 0.01), _seeds(0.80, 0.01), "not held", ""),  # KD loses ~15 points: no "no gain"
        (_seeds(0.801, 0.005), _seeds(0.80, 0.005), "held", ""),  # equal within ±1 point: equivalence
        (_seeds(0.80, 0.05), _seeds(0.79, -0.05), "not resolved", ""),  # too noisy to tell
    ],
)
def test_no_gain_of_regular_kd_is_held_only_by_equivalence(regular_kd, no_kd, verdict, note):
    others = {("kd", "least_salient"): _seeds(0.85, 0.01), ("kd", "random"): _seeds(0.6, 0.01)}
    table = _real_table({("kd", "regular"): regular_kd, ("no_kd", "regular"): no_kd, **others})
    row = real.comparisons(table).set_index("claim").loc[real.CLAIMS["regular KD − No-KD"].claim]
    assert row["verdict"] == verdict and row["note"].startswith(note), row
    assert row["setting"] == "toy" and row["prediction"] == "= 0"


def test_real_quick_profile_trains_every_model_above_chance(executed):
    record = json.loads((executed.folder("02_mfh_real") / "run.json").read_text())
    assert [warning for fit in record["fits"] for warning in fit["warnings"]] == []
    frame = _claims(executed, "02_mfh_real")
    assert frame["setting"].tolist() == ["mfeat"] * 4 + ["segment"] * 4 and frame["n_units"].eq(5).all()
    assert not frame["note"].str.startswith("models ended at chance").any()
    by_claim = frame.set_index(["setting", "claim"])
    # on mfeat the MG teacher keeps far more of what its student can learn than a random one
    assert by_claim.loc[("mfeat", real.CLAIMS["MG KD − random KD"].claim), "verdict"] == "held"


@pytest.mark.parametrize("stem", MFH_NOTEBOOKS)
def test_mfh_notebooks_show_their_claims_and_the_rule(stem):
    notebook = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert "claims.readable(" in code and "display(Markdown(claims.RULE))" in code and "claims.save(out, " in code
    assert "save_claims" not in code and "check_within" not in code and "check_sign" not in code
    assert "Our reading" in text


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
    in_order = table2.ChannelChoice.in_order(
        [torch.tensor([3, 1]), torch.tensor([2, 2, 0, 1])], torch.tensor([2, 2]), 4
    )
    kept = in_order.variant(tasks)(x, tasks)
    assert torch.equal(kept[0, :, :2], x[0][:, [3, 1]]) and torch.equal(kept[1, :, :2], x[1][:, [2, 2]])
    assert not kept[:, :, 2:].any()
    assert in_order.mask().tolist() == [[False, True, False, True], [False, False, True, False]]
