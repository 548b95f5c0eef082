"""NTDH's channel-masking tool (cmkd_lab.studies.ntdh.masking): the NTD ranking on a planted case,
what each mode keeps, its errors, and its teachers batched through run_teacher_student against
the same teacher trained alone."""

import functools

import numpy as np
import pandas as pd
import pytest
import torch

from cmkd_lab.datasets.core import Splits, from_arrays
from cmkd_lab.engine import TrainConfig
from cmkd_lab.losses import make_loss
from cmkd_lab.models import ModelSpec
from cmkd_lab.studies.ntdh import masking, multiclass_methods
from cmkd_lab.studies.runner import Task, run_teacher_student

SHARED = (2, 5)  # teacher channels the student's view also carries
SPECIFIC = 3  # a teacher channel that carries the class alone
WIDTH = 8
CONFIG = TrainConfig(epochs=60, lr=0.05, optimizer="adam")
LINEAR = ModelSpec("linear")


def planted_task(seed: int, n_train: int = 300, n_test: int = 150) -> Task:
    """3 classes. Teacher view: 8 noise channels, two of which (SHARED) carry two class contrasts
    the student's view carries too, one (SPECIFIC) a third contrast only the teacher sees."""
    rng = np.random.default_rng(seed)

    def part(n: int):
        y = np.arange(n) % 3
        onehot = 2.0 * np.eye(3)[y]
        contrasts = np.stack([onehot[:, 0] - onehot[:, 2], onehot[:, 1] - onehot[:, 2], onehot[:, 0] - onehot[:, 1]], 1)
        x_a = rng.standard_normal((n, WIDTH)).astype(np.float32)
        x_b = rng.standard_normal((n, 6)).astype(np.float32)
        for i, channel in enumerate(SHARED):
            x_a[:, channel] += contrasts[:, i]
            x_b[:, i] += contrasts[:, i]
        x_a[:, SPECIFIC] += contrasts[:, 2]
        return from_arrays({"a": x_a, "b": x_b}, y)

    return Task(Splits(part(n_train), None, part(n_test)), seed, {"setting": "planted"})


@pytest.fixture(scope="module")
def tasks():
    return [planted_task(seed) for seed in range(3)]


@pytest.fixture(scope="module")
def saliency(tasks):
    return masking.ntd_saliency(
        tasks,
        teacher_modality="a",
        student_modality="b",
        teacher_model=LINEAR,
        student_model=LINEAR,
        config=CONFIG,
        repeats=3,
        progress=False,
    )


def test_ntd_saliency_ranks_shared_channels_first_then_teacher_specific_then_noise(saliency):
    order = saliency.scores.argsort(-1, descending=True)
    for ranked in order.tolist():
        assert set(ranked[:2]) == set(SHARED), ranked
        assert ranked[2] == SPECIFIC, ranked
    assert saliency.scores.shape == (3, WIDTH) and saliency.scores.min() >= 0 and saliency.scores.max() <= 1
    noise = [c for c in range(WIDTH) if c not in (*SHARED, SPECIFIC)]
    assert (saliency.raw[:, list(SHARED)].min(-1).values > saliency.raw[:, noise].max(-1).values).all()
    assert len(saliency.joints) == 1 and saliency.joints[0].seeds == [0, 1, 2]


def _known_saliency(n_tasks: int = 3, width: int = 6) -> masking.ChannelSaliency:
    """Scores in a known order: task i ranks channel (i + j) % width j-th highest."""
    tasks = [planted_task(seed, n_train=30, n_test=15) for seed in range(n_tasks)]
    scores = torch.zeros(n_tasks, width)
    for i in range(n_tasks):
        for j in range(width):
            scores[i, (i + j) % width] = 1.0 - j / (width - 1)
    return masking.ChannelSaliency(tasks, scores, scores.clone())


def test_each_mode_keeps_its_channels_and_zeroes_the_others():
    known = _known_saliency()
    step = masking.ChannelMasking(known, mask_dim=2)
    tasks = known.tasks
    assert step.keep("alg1", tasks).tolist() == [[0, 1], [1, 2], [2, 3]], "most salient first"
    assert [sorted(row) for row in step.keep("reverse", tasks).tolist()] == [[4, 5], [0, 5], [0, 1]]
    random = step.keep("random", tasks)
    assert random.shape == (3, 2) and all(len(set(row)) == 2 for row in random.tolist())
    assert torch.equal(random, step.keep("random", tasks)), "drawn from the tasks' seeds"
    assert ((random >= 0) & (random < 6)).all()
    # the variant: kept channels pass, the others are 0; any trailing shape (images: (M, N, C, H, W))
    for shape in ((3, 4, 6), (3, 4, 6, 2, 2)):
        x = torch.randn(shape) + 5.0
        masked = step.variant("alg1")(x, tasks)
        for i, kept in enumerate(step.keep("alg1", tasks).tolist()):
            for channel in range(6):
                expected = x[i, :, channel] if channel in kept else torch.zeros_like(x[i, :, channel])
                assert torch.equal(masked[i, :, channel], expected)
    assert list(step.variants(["alg1", "reverse"])) == [masking.UNMASKED, "alg1", "reverse"]
    assert step.variants(["alg1"])[masking.UNMASKED] is None


def test_reverse_keeps_the_lowest_scores():
    known = _known_saliency()
    kept = masking.ChannelMasking(known, mask_dim=2).keep("reverse", known.tasks)
    lowest = known.scores.argsort(-1)[:, :2]
    assert [sorted(row) for row in kept.tolist()] == [sorted(row) for row in lowest.tolist()]


def test_errors_name_the_valid_values():
    known = _known_saliency()
    step = masking.ChannelMasking(known, mask_dim=2)
    with pytest.raises(ValueError, match="valid names: alg1, random, reverse"):
        step.variant("top")
    with pytest.raises(ValueError, match="valid names: alg1, random, reverse"):
        step.variants(["alg1", "top"])
    for bad in (0, 7, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"mask_dim must be an integer in 1\.\.6"):
            masking.ChannelMasking(known, mask_dim=bad)
    with pytest.raises(ValueError, match="cannot be a masking mode"):
        step.variants(["none"])
    with pytest.raises(ValueError, match="were not ranked"):
        step.keep("alg1", [planted_task(9, n_train=30, n_test=15)])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        masking.ntd_permutation_saliency(
            None, torch.zeros(1, 3, 2), None, torch.zeros(1, 3, 2), None, seeds=[0], repeats=0
        )


def test_run_checks_mode_and_mask_dim_before_any_fit(tasks, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started before the arguments were checked")

    monkeypatch.setattr(masking, "joint_fit", no_fit)
    options = dict(
        study="s",
        teacher_modality="a",
        student_modality="b",
        teacher_model=LINEAR,
        student_model=LINEAR,
        teacher_config=CONFIG,
        losses={},
    )
    with pytest.raises(ValueError, match=r"mask_dim must be an integer in 1\.\.8"):
        masking.run_channel_masking(tasks, mask_dim=9, **options)
    with pytest.raises(ValueError, match="valid names: alg1, random, reverse"):
        masking.run_channel_masking(tasks, modes=["alg1", "best"], **options)


def test_notebook_parameters_check_mode_and_mask_dim():
    with pytest.raises(ValueError, match="'masking_modes'.*valid values: alg1, random, reverse"):
        multiclass_methods.MulticlassParameters.create(masking_modes=["alg2"])
    with pytest.raises(ValueError, match="'mask_dim'"):
        multiclass_methods.MulticlassParameters.create(mask_dim=51)
    with pytest.raises(ValueError, match="'mask_dim'"):
        multiclass_methods.MulticlassParameters.create(mask_dim=0)


def _accuracies(table: pd.DataFrame) -> pd.Series:
    rows = table[table["metric"] == "test_acc"]
    return rows.set_index(["method", "seed"])["value"].sort_index()


@pytest.mark.filterwarnings("ignore:.*ended at chance")  # teachers kept to noise channels (reverse, random)
def test_masked_teachers_batched_equal_each_trained_alone(tasks):
    """Every mode's teacher and KD student, trained in one batched fit with the unmasked ones, equal
    a plain run on a task whose teacher view was masked beforehand (one task, no variants)."""
    losses = {"kd": make_loss("kd", temperature=0.7, reduction="batchmean", t2_scale=False)}
    run = masking.run_channel_masking(
        tasks,
        study="s",
        teacher_modality="a",
        student_modality="b",
        teacher_model=LINEAR,
        student_model=LINEAR,
        teacher_config=CONFIG,
        losses=losses,
        modes=["alg1", "reverse", "random"],
        mask_dim=2,
        repeats=2,
        progress=False,
    )
    table = run.table
    assert set(table[masking.MASK_COLUMN]) == {"none", "alg1", "reverse", "random"}
    assert [f["method"] for f in run.log.fits][0] == "saliency" and len(run.artifacts.fits["saliency"]) == 1
    teacher_fits = [f for f in run.log.fits if f["method"] == "teacher"]
    assert len(teacher_fits) == 1 and teacher_fits[0]["n_models"] == 4 * len(tasks), "one fit for every teacher"
    ranked = masking.ntd_saliency(
        tasks,
        teacher_modality="a",
        student_modality="b",
        teacher_model=LINEAR,
        student_model=LINEAR,
        config=CONFIG,
        repeats=2,
        progress=False,
    )
    step = masking.ChannelMasking(ranked, mask_dim=2)
    for mode in ("alg1", "reverse", "random"):
        kept = table[(table[masking.MASK_COLUMN] == mode) & table["metric"].str.startswith("kept_channel_")]
        recorded = kept.pivot_table(index="seed", columns="metric", values="value").to_numpy()
        assert recorded.tolist() == step.keep(mode, tasks).tolist(), mode
    task = tasks[1]
    for mode in ("alg1", "reverse"):
        kept = step.keep(mode, [task])[0].tolist()
        zeroed = task.splits.map(functools.partial(_mask_view, kept=kept))
        alone = run_teacher_student(
            [Task(zeroed, task.seed, task.settings)],
            study="s",
            teacher_modality="a",
            student_modality="b",
            teacher_config=CONFIG,
            losses=losses,
            progress=False,
        )
        batched = table[(table["seed"] == task.seed) & table[masking.MASK_COLUMN].isin([mode, "none"])]
        batched = batched[~((batched["method"] != "no_kd") & (batched[masking.MASK_COLUMN] == "none"))]
        one_sample = 1 / len(task.splits.test.labels)  # float rounding may flip one borderline sample
        assert np.allclose(_accuracies(alone.table), _accuracies(batched), atol=one_sample + 1e-9), mode
        output = next(o for o in run.artifacts.outputs if o.variant == mode and o.task is task)
        torch.testing.assert_close(output.teacher, alone.artifacts.outputs[0].teacher, atol=1e-4, rtol=1e-4)
        alone_kd = alone.artifacts.outputs[0].students["kd"]
        torch.testing.assert_close(output.students["kd"], alone_kd, atol=1e-4, rtol=1e-4)


def _mask_view(data, kept):
    x_a = data["a"].clone()
    x_a[:, [c for c in range(x_a.shape[1]) if c not in kept]] = 0.0
    return from_arrays({"a": x_a.numpy(), "b": data["b"].numpy()}, data.labels.numpy())
