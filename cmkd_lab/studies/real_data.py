"""What the real-data studies (02_mfh_real, 03_ntdh_realpairs) share: how large sets are fed,
the record of each seed's split, and a note on tiny test sets."""

from __future__ import annotations

import math
from typing import Sequence

from ..experiment import Task
from ..training import TrainConfig

SMALL_TEST_SET = 30  # below this many test samples, one sample moves the accuracy by more than 3 points
FULL_BATCH_LIMIT = 2048  # training samples; larger sets are fed in mini-batches unless told otherwise
MINI_BATCH = 128


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
    return [{**task.settings, "seed": task.seed, **{f"n_{name}": len(part) for name, part in task.splits.parts().items()},
             "test_groups": task.splits.test_groups()} for task in tasks]


def note_small_test_sets(tasks: Sequence[Task]) -> None:
    """Print, per dataset (``settings["dataset"]``) whose test split has fewer than
    ``SMALL_TEST_SET`` samples, how coarse its test accuracy is."""
    fewest: dict[str, int] = {}
    for task in tasks:
        name = task.settings["dataset"]
        fewest[name] = min(fewest.get(name, len(task.splits.test)), len(task.splits.test))
    for name, n in fewest.items():
        if n < SMALL_TEST_SET:
            print(f"note: dataset {name!r} has only {n} test samples per split, so its test accuracy moves in "
                  f"steps of {100 / n:.1f} points; read differences of a few steps as noise (more data or seeds help)")
