"""What the real-data studies (02_mfh_real, 03_ntdh_realpairs) share: a note on tiny test sets."""

from __future__ import annotations

from typing import Sequence

from ..experiment import Task

SMALL_TEST_SET = 30  # below this many test samples, one sample moves the accuracy by more than 3 points


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
