"""What the real-data studies (02_mfh_real, 03_ntdh_realpairs, 04_cmcd_real) share: the net for
a modality's shape, how large sets are fed, the record of each seed's split, and a note on tiny
test sets."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..datasets import PairedDataset
from ..engine import TrainConfig
from ..models import ModelSpec
from .runner import Task

SMALL_TEST_SET = 30  # below this many test samples, one sample moves the accuracy by more than 3 points
FULL_BATCH_LIMIT = 2048  # training samples; larger sets are fed in mini-batches unless told otherwise
MINI_BATCH = 128
PAIR_FORMAT = re.compile(r"([^:>]+):([^:>]+)>([^:>]+)")


def parse_pairs(pairs: Sequence[str], datasets: Sequence[str]) -> list[tuple[str, str, str]]:
    """``"dataset:from>to"`` items as ``(dataset, from modality, to modality)``; each must name two
    different modalities of one of ``datasets``."""
    parsed = []
    for item in pairs:
        match = PAIR_FORMAT.fullmatch(item)
        if not match or match[2] == match[3]:
            raise ValueError(
                f"pairs: {item!r} is not 'dataset:teacher>student' with two different modalities, "
                "e.g. 'mine:accel>gyro'"
            )
        if match[1] not in datasets:
            raise ValueError(f"pairs: {item!r} names dataset {match[1]!r}, which is not in datasets {list(datasets)}")
        parsed.append((match[1], match[2], match[3]))
    return parsed


# The net for a modality without a default, by the number of axes of one sample.
NETS_BY_RANK = {
    1: ModelSpec("mlp", hidden=(64,)),
    2: ModelSpec("cnn1d", hidden=(16, 32)),
    3: ModelSpec("cnn2d", hidden=(16, 32)),
}


def net_for(data: PairedDataset, modality: str, name: str) -> ModelSpec:
    """The net for ``modality`` of dataset ``name``, from the shape of its samples: a vector gets
    an MLP, ``(channels, time)`` a 1-D CNN, ``(channels, height, width)`` a 2-D CNN."""
    shape = data.shape(modality)
    if len(shape) not in NETS_BY_RANK:
        raise ValueError(
            f"no net for modality {modality!r} of dataset {name!r}: its samples have shape {shape}; "
            "the kit builds nets for vectors, (channels, time) and (channels, height, width)"
        )
    return NETS_BY_RANK[len(shape)]


def train_config(tasks: Sequence[Task], *, epochs: int, batch_size: int | None, **options) -> TrainConfig:
    """How to train on ``tasks``. ``batch_size=None`` chooses: full batch for ``epochs`` epochs up
    to ``FULL_BATCH_LIMIT`` training samples; above it, mini-batches of ``MINI_BATCH`` for as many
    whole passes as give at least ``epochs`` optimiser steps, so a large set takes as many steps as
    a small one rather than costing more per step (7,500 training samples: 150 steps in 3 passes,
    where full batch needs 150 passes). A given ``batch_size`` trains ``epochs`` passes of it."""
    n_train = max(len(task.splits.train) for task in tasks)
    if batch_size is None and n_train > FULL_BATCH_LIMIT:
        batch_size = MINI_BATCH
        epochs = math.ceil(epochs / math.ceil(n_train / MINI_BATCH))
    return TrainConfig(epochs=epochs, batch_size=batch_size, **options)


def split_records(tasks: Sequence[Task]) -> list[dict]:
    """Per task: its settings, seed, split sizes and test groups (None without groups), for ``run.json``."""
    return [
        {
            **task.settings,
            "seed": task.seed,
            **{f"n_{name}": len(part) for name, part in task.splits.parts().items()},
            "test_groups": task.splits.test_groups(),
        }
        for task in tasks
    ]


def note_small_test_sets(tasks: Sequence[Task]) -> None:
    """Print, per dataset (``settings["dataset"]``) whose test split has fewer than
    ``SMALL_TEST_SET`` samples, how coarse its test accuracy is."""
    fewest: dict[str, int] = {}
    for task in tasks:
        name = task.settings["dataset"]
        fewest[name] = min(fewest.get(name, len(task.splits.test)), len(task.splits.test))
    for name, n in fewest.items():
        if n < SMALL_TEST_SET:
            print(
                f"note: dataset {name!r} has only {n} test samples per split, so its test accuracy moves in "
                f"steps of {100 / n:.1f} points; read differences of a few steps as noise (more data or seeds help)"
            )
