"""Runs are independent: no sample of one run's training data is drawn again by another run.

A run's ± and intervals treat its runs as independent samples. Each synthetic generator is
checked over seeds 0..4 on its raw input arrays: a row of any run's training split must not
appear in another run's train, validation or test split (nor in another split of its own run).
Rows are compared on every pair of adjacent columns, so that a shared latent planted in a few
columns is caught even when the noise around it differs (as it did when run s tested on the
generator seeded s + 1, the one run s + 1 trained on): two independent float32 pairs agree by
chance with a probability near 1e-15. ``rng="official"`` keeps the official scripts' draws, which
do overlap; a test checks that the comparison finds that overlap.

Real data are one fixed set of samples, split anew per seed: every sample lies in some split of
every run, so there the checks are that a run's splits are disjoint, that the same seed gives the
same split, and that group splits test disjoint groups.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmkd_lab.datasets import from_arrays
from cmkd_lab.datasets.core import RUN_PARTS, run_generator, run_seeds, run_state
from cmkd_lab.datasets.synthetic import (
    cmcd_modalities,
    discom_modalities,
    gaussian_venn,
    mfh_overlap,
    mfh_table2_draws,
    mfh_teacher_specific,
    ntdh_multiclass,
    sensor_windows,
)

SEEDS = range(5)


def column_pairs(values) -> list[np.ndarray]:
    """Per pair of adjacent columns of the flattened rows, each row's two float32 values as one
    64-bit key."""
    rows = np.ascontiguousarray(torch.as_tensor(values).reshape(len(values), -1).numpy(), dtype=np.float32)
    return [np.ascontiguousarray(rows[:, j : j + 2]).view(np.uint64)[:, 0] for j in range(rows.shape[1] - 1)]


def shared_training_rows(runs: dict[int, dict[str, dict[str, object]]]) -> int:
    """How many training rows, over all runs and modalities, agree on some pair of adjacent
    columns with a row of another split (another run's, or another part of their own run).
    ``runs[seed][part][modality]`` is an array with one row per sample."""
    found = 0
    for seed, parts in runs.items():
        for modality, train in parts["train"].items():
            train_keys = column_pairs(train)
            others = [
                column_pairs(values[modality])
                for other_seed, other_parts in runs.items()
                for part, values in other_parts.items()
                if (other_seed, part) != (seed, "train")
            ]
            hit = np.zeros(len(train), dtype=bool)
            for other in others:
                for column, keys in enumerate(train_keys):
                    hit |= np.isin(keys, other[column])
            found += int(hit.sum())
    return found


def splits_arrays(splits) -> dict[str, dict[str, torch.Tensor]]:
    return {part: dict(data.modalities) for part, data in splits.parts().items()}


def mfh_runs(generator, rng: str = "kit", **options) -> dict:
    return {seed: splits_arrays(generator(seed=seed, rng=rng, **options)[0]) for seed in SEEDS}


def table2_runs(rng: str = "kit") -> dict:
    runs = {}
    for seed in SEEDS:
        draws = mfh_table2_draws(15, 42 + seed, rng=rng)
        # the students train on the fresh draw: it is training data too
        runs[seed] = {**splits_arrays(draws.splits), "fresh": dict(draws.fresh.modalities)}
    return runs


def with_fresh_as_training(runs: dict) -> dict:
    """Also check the fresh draw as a run's training data (it swaps places with the train set)."""
    return {seed: {**parts, "train": parts["fresh"], "fresh": parts["train"]} for seed, parts in runs.items()}


def gaussian_venn_runs() -> dict:
    return {
        seed: {
            part: dict(gaussian_venn(300, seed=seed, task_seed=seed, part=part).modalities)
            for part in ("train", "val", "test")
        }
        for seed in SEEDS
    }


def pooled_runs(draw) -> dict:
    """A pooled generator as the studies use it: run s splits the pool drawn with seed s."""
    return {seed: splits_arrays(draw(seed).split(seed)) for seed in SEEDS}


def sensor_dataset(seed: int):
    arrays = sensor_windows(n_windows=600, length=16, seed=seed)
    return from_arrays({m: arrays[m] for m in ("accel", "gyro")}, arrays["labels"], arrays["subjects"])


RUNS = {
    "mfh_overlap": lambda: mfh_runs(mfh_overlap, overlap=4),
    "mfh_overlap (NTDH, 4 classes)": lambda: mfh_runs(mfh_overlap, overlap=4, a_dims=25, b_dims=25, n_classes=4),
    "mfh_teacher_specific": lambda: mfh_runs(mfh_teacher_specific, xs1=20),
    "mfh_table2_draws": table2_runs,
    "mfh_table2_draws (fresh draw)": lambda: with_fresh_as_training(table2_runs()),
    "gaussian_venn": gaussian_venn_runs,
    "ntdh_multiclass": lambda: {seed: splits_arrays(ntdh_multiclass(10, seed)) for seed in SEEDS},
    "cmcd_modalities": lambda: pooled_runs(lambda seed: cmcd_modalities(0.5, seed=seed, n_samples=400)),
    "discom_modalities": lambda: pooled_runs(lambda seed: discom_modalities(400, seed=seed)),
    "sensor_windows": lambda: pooled_runs(sensor_dataset),
}


@pytest.mark.parametrize("name", RUNS)
def test_no_training_row_of_one_run_is_drawn_by_another(name):
    runs = RUNS[name]()
    assert shared_training_rows(runs) == 0


@pytest.mark.parametrize("name", RUNS)
def test_the_same_seed_draws_the_same_data(name):
    first, again = RUNS[name](), RUNS[name]()
    for seed in SEEDS:
        for part, modalities in first[seed].items():
            for modality, values in modalities.items():
                assert torch.equal(torch.as_tensor(values), torch.as_tensor(again[seed][part][modality])), (seed, part)
    modality = next(iter(first[0]["train"]))
    assert not torch.equal(torch.as_tensor(first[0]["train"][modality]), torch.as_tensor(first[1]["train"][modality]))


@pytest.mark.parametrize(
    "generator, options",
    [(mfh_overlap, {"overlap": 4}), (mfh_teacher_specific, {"xs1": 20}), (mfh_overlap, {"overlap": 4, "n_classes": 4})],
)
def test_official_draws_overlap_across_runs_as_the_scripts_do(generator, options):
    """The official Fig. 2/3 and NTDH scripts test run s on seed s + 1, where run s + 1 trains:
    all 200 training rows of runs 1..4 reappear among run s's test rows, in the latent columns of
    both modalities (counted once per modality)."""
    assert shared_training_rows(mfh_runs(generator, rng="official", **options)) == 2 * 200 * 4


def test_official_table2_draws_do_not_overlap_across_runs():
    """The Table 2 script reseeds each run with its own seed and draws its sets from that one stream."""
    assert shared_training_rows(table2_runs(rng="official")) == 0
    assert shared_training_rows(with_fresh_as_training(table2_runs(rng="official"))) == 0


def test_run_seeds_give_each_run_stream_and_part_its_own_state():
    states = {
        (seed, stream, part): run_state(seed, stream, part)
        for seed in SEEDS
        for stream in ("mfh_overlap", "split")
        for part in RUN_PARTS
    }
    assert len(set(states.values())) == len(states)
    assert list(run_seeds(3, "split")) == list(RUN_PARTS)
    assert (
        run_generator(3, "split", "val").standard_normal(4).tolist()
        == run_generator(3, "split", "val").standard_normal(4).tolist()
    )
    with pytest.raises(ValueError, match="non-negative integer"):
        run_seeds(-1, "split")
    with pytest.raises(ValueError, match="unknown part 'validation'"):
        run_generator(0, "split", "validation")
    with pytest.raises(ValueError, match="unknown part 'task'"):
        gaussian_venn(10, part="task")


def indices(part) -> set[int]:
    return set(part["i"][:, 0].int().tolist())


def test_real_data_splits_are_disjoint_within_a_run_and_reproducible():
    data = from_arrays({"i": np.arange(300)}, np.arange(300) % 3)
    splits = {seed: data.split(seed) for seed in SEEDS}
    for seed, run in splits.items():
        parts = [indices(part) for part in run.parts().values()]
        assert sum(map(len, parts)) == len(set().union(*parts)) == len(data)
        again = data.split(seed)
        assert all(indices(a) == indices(b) for a, b in zip(run.parts().values(), again.parts().values()))
    tests = [indices(run.test) for run in splits.values()]
    assert len({frozenset(test) for test in tests}) == len(tests)


def test_group_splits_test_disjoint_groups_over_the_first_seeds():
    groups = np.repeat(np.arange(40), 6)
    data = from_arrays({"i": np.arange(240)}, np.tile(np.arange(3), 80), groups=groups)
    tests = [set(data.split(seed).test_groups()) for seed in SEEDS]
    assert all(not a & b for k, a in enumerate(tests) for b in tests[k + 1 :])
