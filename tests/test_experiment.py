"""The study runner: variants × tasks in one fit, shared baselines, metric hooks, one result type."""

import numpy as np
import pytest
import torch

from cmkd_lab.analysis.metrics import weighted_f1
from cmkd_lab.datasets import Splits, from_arrays
from cmkd_lab.engine import TrainConfig
from cmkd_lab.losses import make_loss
from cmkd_lab.models import ModelSpec
from cmkd_lab.studies.runner import StudyRun, Task, run_teacher_student, score_hook
from cmkd_lab.systems import train_classifier

CONFIG = TrainConfig(epochs=40, lr=0.1)


def task(seed, teacher_shift=0, n=120):
    """Student view b fixed by ``seed``; the teacher's view a depends on ``teacher_shift`` too."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, 4, generator=g)
    labels = signal[:, :3].argmax(-1)
    b = torch.cat([signal[:, :2], torch.randn(n, 4, generator=g)], 1)
    a = torch.cat([signal, torch.randn(n, 2, generator=torch.Generator().manual_seed(100 + teacher_shift))], 1)
    data = from_arrays({"a": a, "b": b}, labels)
    index = np.arange(n)
    return Task(Splits(data.subset(index[:80]), None, data.subset(index[80:])), seed, {"shift": teacher_shift})


def run(tasks, **options):
    return run_teacher_student(
        tasks,
        study="demo",
        teacher_modality="a",
        student_modality="b",
        teacher_config=CONFIG,
        progress=False,
        **options,
    )


def test_variants_train_k_teachers_by_m_tasks_in_one_fit_equal_to_alone():
    tasks = [task(0), task(1)]
    keep_first = lambda x, group: x * (torch.arange(x.shape[-1]) < 3)  # noqa: E731
    result = run(
        tasks,
        variants={"all": None, "first3": keep_first},
        variant_column="teacher_mode",
        losses={"kd": make_loss("kd", temperature=2.0, reduction="batchmean")},
    )
    table = result.table
    assert set(table.groupby("method")["teacher_mode"].unique().map(tuple)) == {("all", "first3"), ("all",)}
    assert set(table[table["method"] == "no_kd"]["teacher_mode"]) == {"all"}
    teacher_fit = result.artifacts.fits["teacher"]
    assert len(teacher_fit) == 1 and teacher_fit[0].record["n_models"] == 4  # 2 variants × 2 tasks, one fit
    for _i, t in enumerate(tasks):
        alone = train_classifier(
            ModelSpec("linear").sized((6,), 3),
            keep_first(t.splits.train["a"], [t]),
            t.splits.train.labels,
            seeds=[t.seed],
            config=CONFIG,
            progress=False,
        )
        accuracy = (
            (
                alone.modules["student"].predict(keep_first(t.splits.test["a"], [t]))[0].argmax(-1)
                == t.splits.test.labels
            )
            .double()
            .mean()
            .item()
        )
        row = table[(table["method"] == "teacher") & (table["teacher_mode"] == "first3") & (table["seed"] == t.seed)]
        assert row["value"].item() == pytest.approx(accuracy, abs=1e-9)
    outputs = result.artifacts.find(shift=0)
    assert [o.variant for o in outputs] == ["all", "all", "first3", "first3"]  # variant after variant
    assert all(o.settings["teacher_mode"] == o.variant and set(o.students) == {"no_kd", "kd"} for o in outputs)


def test_the_no_kd_baseline_trains_once_per_distinct_student_data():
    tasks = [task(0, shift) for shift in (0, 1, 2)] + [task(1, 0)]
    result = run(tasks, include=("teacher", "no_kd"))
    no_kd_models = sum(f["n_models"] for f in result.log.fits if f["method"] == "no_kd")
    assert no_kd_models == 2  # seed 0's three tasks share one student data set
    no_kd = result.table[result.table["method"] == "no_kd"]
    assert len(no_kd) == 4 and no_kd[no_kd["seed"] == 0]["value"].nunique() == 1
    separate = run(tasks, include=("no_kd",), share_baselines=False)
    assert sum(f["n_models"] for f in separate.log.fits if f["method"] == "no_kd") == 4
    assert np.allclose(
        separate.table.sort_values(["seed", "shift"])["value"].to_numpy(),
        no_kd.sort_values(["seed", "shift"])["value"].to_numpy(),
    )


def test_the_no_kd_baseline_shares_the_kd_fit_and_equals_a_fit_of_its_own():
    tasks = [task(0, shift) for shift in (0, 1)] + [task(1, 0)]
    kd = make_loss("kd", temperature=2.0, reduction="batchmean", kd_weight=[1.0, 0.5, 2.0, 1.0, 0.5, 2.0])
    hosted = run(tasks, losses={"kd": kd}, variants={"all": None, "half": lambda x, group: x / 2})
    records = {f["method"]: f for f in hosted.log.fits if f["method"] in ("no_kd", "kd")}
    assert records["no_kd"]["in_fit_of"] == "kd" and records["no_kd"]["wall_time_s"] == 0.0
    assert records["no_kd"]["n_models"] == 2 and records["kd"]["copies"] == {"kd": 6, "no_kd": 2}
    assert records["kd"]["system"]["ce_only_copies"] == 2
    alone = run(tasks, include=("no_kd",))
    assert [f["method"] for f in alone.log.fits] == ["no_kd"] and "in_fit_of" not in alone.log.fits[0]
    for (task_hosted, logits_hosted), (task_alone, logits_alone) in zip(
        hosted.artifacts.logits("no_kd"), alone.artifacts.logits("no_kd")
    ):
        assert task_hosted is task_alone and torch.allclose(logits_hosted, logits_alone, atol=1e-5)
    assert hosted.artifacts.models("no_kd")[0].n_models == 2 and hosted.artifacts.models("kd")[0].n_models == 6
    history = hosted.artifacts.fits["kd"][0].history["kd"]
    assert history.shape == (CONFIG.epochs, 6)  # the KD part's log keeps its own copies only


def test_a_loss_that_cannot_host_the_baseline_leaves_it_a_fit_of_its_own():
    masked = make_loss("kd", temperature=2.0, reduction="batchmean", masking=True)
    result = run([task(0), task(1)], losses={"masked": masked})
    assert [f["method"] for f in result.log.fits] == ["teacher", "no_kd", "masked"]
    assert all("in_fit_of" not in f for f in result.log.fits)


def test_metric_hooks_add_rows_from_the_kept_test_logits():
    tasks = [task(0), task(1)]
    result = run(
        tasks,
        losses={"kd": make_loss("kd", temperature=2.0, reduction="batchmean")},
        metrics=[score_hook("weighted_f1")],
    )
    f1 = result.table[result.table["metric"] == "test_weighted_f1"]
    assert set(f1["method"]) == {"teacher", "no_kd", "kd"} and len(f1) == 6
    for t, logits in result.artifacts.logits("kd"):
        row = f1[(f1["method"] == "kd") & (f1["seed"] == t.seed)]
        assert row["value"].item() == pytest.approx(float(weighted_f1(logits, t.splits.test.labels)))
    both = StudyRun.concat([result, run(tasks, include=("no_kd",))])
    assert len(both.table) == len(result.table) + 2 and len(both.log.fits) == len(result.log.fits) + 1
    assert len(both.artifacts.logits("no_kd")) == 4


def test_bad_runner_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown baseline"):
        run([task(0)], include=("oracle",))
    with pytest.raises(ValueError, match="clash with the baselines"):
        run([task(0)], losses={"teacher": make_loss("ce")})
    with pytest.raises(ValueError, match="at least one task"):
        run([])


def test_tasks_with_other_class_counts_never_share_a_fit():
    binary = task(0)
    labels = (binary.splits.train.labels > 0).long(), (binary.splits.test.labels > 0).long()
    two_class = Task(
        Splits(
            from_arrays(binary.splits.train.modalities, labels[0]),
            None,
            from_arrays(binary.splits.test.modalities, labels[1]),
        ),
        0,
        {"shift": "binary"},
    )
    result = run([task(1), two_class], include=("teacher",))
    assert len(result.artifacts.fits["teacher"]) == 2
    assert sorted(z.shape[-1] for _, z in result.artifacts.logits("teacher")) == [2, 3]
