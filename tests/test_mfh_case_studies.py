"""MFH's case studies (02_mfh_case_studies): §2's unimodal vs multimodal teacher and the removal-ratio
sweep, asserted on what the quick-profile notebook records, and the study functions at tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cmkd_lab.analysis import claims
from cmkd_lab.datasets.synthetic import gaussian_venn
from cmkd_lab.engine import Stack
from cmkd_lab.models import ModelSpec, Net
from cmkd_lab.studies.mfh import case_studies as cs
from cmkd_lab.studies.runner import Task

STEM = "02_mfh_case_studies"
QUICK = cs.CaseStudyParameters.create()
PER_PAIR = {
    ("teacher", "unimodal"),
    ("teacher", "multimodal"),
    ("kd", "unimodal"),
    ("kd", "multimodal"),
    ("no_kd", "none"),
}
ALG1_METRICS = {"added_mg_share", "base_mg_share", "added_reliance_share"}


@pytest.fixture(scope="module")
def table(executed) -> pd.DataFrame:
    return executed.results(STEM)


@pytest.fixture(scope="module")
def verdicts(executed) -> pd.DataFrame:
    frame = claims.load(executed.folder(STEM))
    assert list(frame.columns) == list(claims.COLUMNS)
    assert [claims.verdict_of(row) for row in frame.to_dict("records")] == frame["verdict"].tolist()
    return frame


def _row(frame: pd.DataFrame, statement: claims.Claim, setting: str) -> pd.Series:
    rows = frame[(frame["claim"] == statement.claim) & (frame["setting"] == setting)]
    assert len(rows) == 1, (statement.claim, setting, rows)
    return rows.iloc[0]


# ----------------------------------------------------------------------------- the quick notebook
def test_both_teachers_and_the_students_of_every_pair_on_every_seed(table):
    expected = {"study", "method", "dataset", "pair", "form", "n_classes", "teacher_input", "teacher_views"}
    assert expected | {"order", "ratio", "seed", "metric", "value"} <= set(table.columns)
    assert set(table["study"]) == {cs.TEACHERS_STUDY, cs.REMOVAL_STUDY}
    teachers = table[(table["study"] == cs.TEACHERS_STUDY) & (table["metric"] == "test_acc")]
    assert set(teachers["pair"]) == {pair.label for pair in QUICK.teacher_pairs()}
    assert teachers["value"].between(0, 1).all()
    for pair, part in teachers.groupby("pair"):
        runs = QUICK.gaussian_runs if pair.startswith(cs.GAUSSIAN) else QUICK.n_runs
        seeds = part.groupby(["method", "teacher_input"])["seed"].apply(frozenset)
        assert set(seeds.index) == PER_PAIR, pair
        assert set(seeds) == {frozenset(range(runs))}, pair
    alg1 = table[(table["study"] == cs.TEACHERS_STUDY) & (table["method"] == "algorithm1")]
    assert alg1.groupby("pair")["metric"].apply(set).map(lambda m: m == ALG1_METRICS).all()
    assert set(alg1["pair"]) == set(teachers["pair"])


def test_the_removal_sweep_covers_every_order_and_ratio(table):
    removal = table[(table["study"] == cs.REMOVAL_STUDY) & (table["metric"] == "test_acc")]
    assert set(removal["pair"]) == {pair.label for pair in QUICK.removal_view_pairs()}
    assert sorted(removal["ratio"].unique()) == list(cs.RATIOS)
    for method in ("teacher", "kd"):
        part = removal[removal["method"] == method]
        settings = set(zip(part["order"], part["ratio"]))
        assert settings == {("none", 0.0)} | {(o, r) for o in cs.ORDERS for r in cs.RATIOS if r > 0}
        assert part.groupby(["order", "ratio"])["seed"].nunique().eq(QUICK.n_runs).all()
    curves = cs.removal_curves(table)
    kd = curves[curves["method"] == "kd"]
    assert len(kd) == len(cs.ORDERS) * len(cs.RATIOS) and kd["ci95"].gt(0).all() and kd["n"].eq(QUICK.n_runs).all()
    # the whole teacher beats one that keeps a tenth of its channels, whichever go first
    teachers = curves[curves["method"] == "teacher"].set_index(["order", "ratio"])["mean"]
    assert all(teachers[(o, 0.0)] > teachers[(o, 0.9)] for o in cs.ORDERS)


def test_the_claims_table_judges_every_pair_and_the_removal_curve(verdicts):
    assert set(verdicts["kind"]) == {"paper", "finding", "check"}
    for pair in QUICK.teacher_pairs():
        better = _row(verdicts, cs.BETTER_TEACHER, pair.label)
        assert better["n_units"] == (QUICK.gaussian_runs if pair.dataset == cs.GAUSSIAN else QUICK.n_runs)
    specific, general = (cs.ViewPair.parse(text).label for text in cs.GAUSSIAN_PAIRS)
    assert _row(verdicts, cs.SPECIFIC_VIEW_NO_BETTER, specific)["prediction"] == "= 0"
    assert _row(verdicts, cs.GENERAL_VIEW_BETTER, general)["prediction"] == "> 0"
    assert _row(verdicts, cs.NO_BETTER_STUDENT, "segment: shape (+colour) → shape")["sesoi"] == cs.ONE_POINT
    for statement in (cs.RISES, cs.FALLS, cs.LEAST_BEATS_RANDOM):
        assert _row(verdicts, statement, "segment: colour → shape")["n_units"] == QUICK.n_runs
    # pure KD: a teacher left with one of its ten colour channels drags its student far below its peak
    falls = _row(verdicts, cs.FALLS, "segment: colour → shape")
    assert falls["ci_low"] > 0 and falls["estimate"] > 5, falls
    across = _row(verdicts, cs.GAIN_FOLLOWS_MG_SHARE, "all pairs")
    assert across["n_units"] == len(QUICK.teacher_pairs()) and across["verdict"] == "not resolved"  # 3 < 4 pairs
    # by construction of the Gaussian views: the added views make a far better teacher, and
    # Algorithm 1 finds a_general's information more modality-general than a_specific's
    assert _row(verdicts, cs.BETTER_TEACHER, specific)["verdict"] == "held"
    assert _row(verdicts, cs.BETTER_TEACHER, general)["verdict"] == "held"
    check = _row(verdicts, cs.ALG1_SEES_THE_SHARE, "gaussian")
    assert check["verdict"] == "held" and check["estimate"] > 0.3, check


def test_the_gains_table_and_share_follow_from_the_results(table):
    gains = cs.gains_table(table)
    assert list(gains["pair"]) == [pair.label for pair in QUICK.teacher_pairs()]
    per_seed = cs.pair_gains(table)
    for row in gains.itertuples():
        seeds = per_seed[per_seed["pair"] == row.pair]
        assert row.teacher_ci_low <= row.teacher_gain <= row.teacher_ci_high
        assert row.student_gain == pytest.approx(seeds["student_gain"].mean())
    share = cs.share_summary(gains).set_index("pairs")
    better = gains[gains["better_teacher"]]
    assert share.loc["all pairs", "worse_or_equal_student"] == (better["student_gain"] <= 0).sum()
    shown = cs.paper_vs_kit(gains)
    assert list(shown["case"][:2]) == list(cs.PAPER_CASES["case"]) and len(shown) == 2 + len(gains)


def test_the_notebook_writes_its_figures_and_run_record(executed):
    folder = executed.folder(STEM)
    assert (folder / "teacher_vs_student_gain.html").exists()
    assert (folder / "removal_segment_colour_to_shape.html").exists()
    record = json.loads((folder / "run.json").read_text())
    assert record["parameters"]["profile"] == "quick"
    methods = [fit["method"] for fit in record["fits"]]
    # per group: teacher, kd (hosting no_kd), algorithm1; the removal pair: algorithm1, teacher, kd
    assert methods.count("algorithm1") == 3 and methods.count("teacher") == 3 and methods.count("kd") == 3


# ----------------------------------------------------------------------------- the study functions
def test_pairs_parse_with_clear_errors():
    pair = cs.ViewPair.parse("mfeat:fourier+karhunen_loeve+morphological>zernike")
    assert pair.base == "fourier" and pair.added == ("karhunen_loeve", "morphological") and pair.form == "cross"
    assert pair.label == "mfeat: fourier (+karhunen_loeve+morphological) → zernike"
    assert cs.ViewPair.parse("segment:shape+colour>shape").form == "own"
    assert cs.ViewPair.parse("segment:colour>shape", "1").added == ()
    for bad in ("mfeat:pixels>zernike", "mfeat:pixels+pixels>zernike", "mfeat>zernike", "mfeat:a+>b"):
        with pytest.raises(ValueError, match="is not 'dataset:A\\+C>B'"):
            cs.ViewPair.parse(bad)
    with pytest.raises(ValueError, match="is not 'dataset:A>B'"):
        cs.ViewPair.parse("mfeat:pixels+fourier>zernike", "1")


def test_parameters_reject_what_the_study_cannot_run():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid: \\['gaussian'"):
        cs.CaseStudyParameters.create(pairs=["nope:a+b>c"])
    with pytest.raises(ValueError, match="ratios must lie in \\[0, 1\\), include 0"):
        cs.CaseStudyParameters.create(ratios=[0.25, 0.5, 0.75])
    with pytest.raises(ValueError, match="removal_pairs take real datasets"):
        cs.CaseStudyParameters.create(removal_pairs=["gaussian:a_general>b"])
    with pytest.raises(ValueError, match="not allowed; valid values: least_salient, most_salient, random"):
        cs.CaseStudyParameters.create(orders=["least_salient", "middle"])
    full = cs.CaseStudyParameters.create(profile="full")
    assert {pair.form for pair in full.teacher_pairs()} == {"own", "cross"} and full.n_runs > QUICK.n_runs


def test_an_unknown_view_names_the_datasets_views():
    p = cs.CaseStudyParameters.create(pairs=["gaussian:a_general+c>b"], gaussian_runs=1)
    with pytest.raises(ValueError, match="gaussian has no view\\(s\\) \\['c'\\]; its views: \\['a_general'"):
        cs.run(p, progress=False)


def test_gaussian_views_split_modality_a_into_its_general_and_specific_halves():
    splits = cs.gaussian_views(3, n_train=50, n_test=40)
    train = splits.train
    assert {m: train.shape(m) for m in cs.GAUSSIAN_VIEWS} == {"a_general": (15,), "a_specific": (15,), "b": (40,)}
    assert len(train) == 50 and len(splits.test) == 40 and splits.val is None
    drawn = gaussian_venn(50, **cs.GAUSSIAN_LAYOUT, seed=3, task_seed=3, part="train")
    assert torch.equal(train["a_general"][:, :10], drawn["a"][:, :10].float())  # the shared dims
    assert torch.equal(train["a_general"][:, :10], drawn["b"][:, :10].float())  # ... which b sees too
    assert torch.equal(train["a_specific"][:, :10], drawn["a"][:, 10:20].float())
    assert torch.equal(train.labels, drawn.labels)


def test_a_held_view_sits_at_its_training_mean_and_the_kept_one_passes():
    splits = cs.gaussian_views(0, n_train=30, n_test=20)
    task = Task(splits, 0)
    union = ("a_general", "a_specific")
    columns = cs.view_columns(task, union)
    assert [len(c) for c in columns.values()] == [15, 15] and columns["a_specific"][0] == 15
    hold = cs.held_variant(union, ("a_general",), columns)
    x = torch.cat([splits.test["a_general"], splits.test["a_specific"]], dim=1).unsqueeze(0)
    held = hold(x, [task])
    assert torch.equal(held[0, :, :15], x[0, :, :15])
    assert torch.allclose(held[0, :, 15:], splits.train["a_specific"].mean(0).expand(20, -1))
    assert cs.held_variant(union, union, columns) is None


def test_removal_masks_remove_the_right_channels_nested_across_ratios():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.0, 0.6, 0.4]])
    masks = cs.removal_masks(scores, [0], cs.RATIOS, cs.ORDERS)
    assert set(masks) == {(o, r) for o in cs.ORDERS for r in cs.RATIOS if r > 0}
    for (order, ratio), mask in masks.items():
        assert int(mask.sum()) == round(ratio * 10), (order, ratio)
    assert masks[("least_salient", 0.25)][0].nonzero().flatten().tolist() == [1, 7]  # (round(2.5) = 2) lowest
    assert masks[("most_salient", 0.25)][0].nonzero().flatten().tolist() == [0, 6]
    for order in cs.ORDERS:
        for low, high in zip(cs.RATIOS[1:], cs.RATIOS[2:]):
            assert not (masks[(order, low)] & ~masks[(order, high)]).any(), (order, low, high)
    with pytest.raises(ValueError, match="unknown removal order"):
        cs.removal_masks(scores, [0], cs.RATIOS, ["middle"])


def _linear(weight: list[list[float]]) -> Stack:
    weights = torch.tensor(weight)
    net = Net(ModelSpec("linear").sized((weights.shape[1],), weights.shape[0]))
    with torch.no_grad():
        net.head.weight.copy_(weights)
        net.head.bias.zero_()
    return Stack.from_modules([net])


def test_block_scores_tell_a_shared_block_from_a_teacher_only_block():
    # teacher logits (x0 + x1, 0); student logits (x0, 0): x0 is shared, x1 the teacher's alone
    x = torch.randn(1, 4000, 2, generator=torch.Generator().manual_seed(0))
    teacher, student = _linear([[1.0, 1.0], [0.0, 0.0]]), _linear([[1.0], [0.0]])
    blocks = {"shared": torch.tensor([0]), "own": torch.tensor([1])}
    scores = cs.block_scores(teacher, x, student, x[..., :1], blocks, repeats=3, seed=0)
    shared_score, shared_reliance = scores["shared"]
    own_score, own_reliance = scores["own"]
    assert shared_reliance.item() == pytest.approx(own_reliance.item(), rel=0.1)  # the teacher leans on both alike
    assert (shared_score / shared_reliance).item() == pytest.approx(1.0, abs=0.1)
    assert (own_score / own_reliance).item() == pytest.approx(0.0, abs=0.1)


def _removal_table(curves: dict[int, dict[float, float]]) -> pd.DataFrame:
    """A mfh_removal table of the least-salient KD student's accuracy per seed and ratio."""
    rows = [
        {
            "study": cs.REMOVAL_STUDY,
            "method": "kd",
            "pair": "p",
            "n_classes": 4,
            "order": "none" if ratio == 0 else "least_salient",
            "ratio": ratio,
            "seed": seed,
            "metric": "test_acc",
            "value": value,
        }
        for seed, curve in curves.items()
        for ratio, value in curve.items()
    ]
    return pd.DataFrame(rows)


def test_the_peak_ratio_is_chosen_on_the_other_seeds():
    rising = {0.0: 0.60, 0.25: 0.61, 0.5: 0.68, 0.75: 0.62, 0.9: 0.55}
    noisy = {0.0: 0.60, 0.25: 0.70, 0.5: 0.64, 0.75: 0.62, 0.9: 0.55}  # its own peak is at 0.25
    table = _removal_table({0: rising, 1: rising, 2: noisy})
    frame = cs.rise_and_fall(table)
    assert frame["peak_ratio"].tolist() == [0.5, 0.5, 0.5]  # seed 2 does not pick its own peak
    assert frame["rise"].to_numpy() == pytest.approx([8.0, 8.0, 4.0])
    assert frame["fall"].to_numpy() == pytest.approx([13.0, 13.0, 9.0])
    rows = cs.claim_rows(table)
    assert [row["claim"] for row in rows] == [cs.RISES.claim, cs.FALLS.claim]  # no random order here
    assert rows[0]["estimate"] == pytest.approx(20 / 3)


def test_a_tiny_run_of_both_studies_keeps_the_contract():
    p = cs.CaseStudyParameters.create(
        pairs=list(cs.GAUSSIAN_PAIRS),
        removal_pairs=["segment:colour>shape"],
        ratios=[0.0, 0.5, 0.9],
        orders=["least_salient", "random"],
        n_runs=2,
        epochs=3,
        gaussian_runs=2,
        gaussian_epochs=5,
        alg1_repeats=1,
        device="cpu",
    )
    run = cs.run(p, progress=False)
    table = run.table
    acc = table[table["metric"] == "test_acc"]
    teachers = acc[acc["study"] == cs.TEACHERS_STUDY]
    assert teachers.groupby("pair").size().to_dict() == {
        pair.label: len(PER_PAIR) * 2 for pair in p.teacher_pairs()
    }  # 2 seeds each
    # the Gaussian pairs share one multimodal teacher: the same accuracies under both pairs
    shared = teachers[(teachers["dataset"] == cs.GAUSSIAN) & (teachers["teacher_input"] == "multimodal")]
    assert len(shared) == 2 * 2 * 2 and shared.groupby(["method", "seed"])["value"].nunique().eq(1).all()
    removal = acc[(acc["study"] == cs.REMOVAL_STUDY) & (acc["method"] == "kd")]
    assert sorted(set(zip(removal["order"], removal["ratio"]))) == [
        ("least_salient", 0.5),
        ("least_salient", 0.9),
        ("none", 0.0),
        ("random", 0.5),
        ("random", 0.9),
    ]
    assert len(run.log.splits) == 2  # the removal pair's real tasks (the Gaussian runs are no splits)
    verdicts = cs.claims_table(table)
    assert set(verdicts["claim"]) >= {cs.RISES.claim, cs.FALLS.claim, cs.LEAST_BEATS_RANDOM.claim}
    assert np.isfinite(cs.gains_table(table)["added_mg_share"]).all()


def test_removal_needs_a_vector_view():
    from cmkd_lab.datasets import from_arrays

    data = from_arrays(
        {"series": np.random.default_rng(0).normal(size=(60, 2, 5)), "vector": np.ones((60, 3))},
        np.arange(60) % 3,
    )
    pair = cs.ViewPair("mine", ("series",), "vector")
    p = cs.CaseStudyParameters.create(pairs=[], removal_pairs=[], n_runs=1)
    tasks = [Task(data.split(0), 0, {"dataset": "mine", "n_classes": 3})]
    with pytest.raises(ValueError, match="replaces the channels of a vector view"):
        cs.run_removal_pair(pair, p, progress=False, tasks=tasks)
