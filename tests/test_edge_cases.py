"""Edge cases at the kit's edges: study parameters that cannot run are refused before a kernel
starts, naming what they need; a summary of one seed does not print a spread of zero."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cmkd_lab.datasets as datasets
from cmkd_lab.analysis.results import mean_std, mean_std_table
from cmkd_lab.app.notebook import run_notebook
from cmkd_lab.datasets import user
from cmkd_lab.studies.discom.study import DisCoMParameters
from cmkd_lab.studies.mfh.table2 import Table2Parameters


@pytest.fixture
def user_folder(tmp_path, monkeypatch) -> Path:
    """An empty user datasets folder, and a registry that forgets what a test registers."""
    monkeypatch.setenv(user.ENV_VAR, str(tmp_path / "user_data"))
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))
    monkeypatch.setattr(datasets.DATASETS, "_info", dict(datasets.DATASETS._info))
    return tmp_path / "user_data"


def add_dataset(folder: Path, name: str, n_samples: int, n_classes: int) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(n_samples) % n_classes
    np.savez(
        folder.parent / f"{name}.npz",
        labels=labels,
        accel=rng.normal(size=(n_samples, 6)) + labels[:, None],
        gyro=rng.normal(size=(n_samples, 4)),
    )
    user.add(name, folder.parent / f"{name}.npz")


def test_mfh_table2_refuses_more_channels_than_x_a_has_before_the_kernel_starts(tmp_path):
    with pytest.raises(ValueError, match=r"xs1 \+ xs2 <= 50.*xs1 = 30.*\[25\]"):
        Table2Parameters.create(xs1=30, xs2_values=[10, 25])
    with pytest.raises(ValueError, match=r"xs1 \+ xs2 <= 50"):
        run_notebook("02_mfh_table2", "quick", {"xs1": 30, "xs2_values": [25]}, tmp_path)
    assert not list(tmp_path.rglob("*.ipynb")), "no kernel ran"
    assert Table2Parameters.create(xs1=20, xs2_values=[30]).xs2_values == (30,)


def test_discom_refuses_a_dataset_whose_splits_cannot_hold_every_class(user_folder, tmp_path):
    """40 samples of 5 classes: the 70/10/20 split leaves 4 validation rows for 5 classes. The
    parameters say so, with the smallest size that works, before a kernel starts."""
    add_dataset(user_folder, "tiny", n_samples=40, n_classes=5)
    with pytest.raises(ValueError, match=r"'tiny' has 40 samples of 5 classes.*at least 42 samples"):
        DisCoMParameters.create(real=["tiny"])
    with pytest.raises(ValueError, match="at least 42 samples"):
        run_notebook("06_discom_kd", "quick", {"real": ["tiny"], "synthetic": False}, tmp_path)
    assert not list(tmp_path.rglob("*.ipynb")), "no kernel ran"
    add_dataset(user_folder, "small", n_samples=42, n_classes=5)
    assert DisCoMParameters.create(real=["small"]).real == ("small",)


def test_one_seed_shows_its_mean_without_a_spread():
    assert mean_std(0.712, 0.0, 100, n=1) == "71.20 (n = 1)"
    assert mean_std(0.712, 0.013, 100, n=3) == mean_std(0.712, 0.013, 100) == "71.20 ± 1.30"
    table = pd.DataFrame(
        {
            "study": "s",
            "method": ["kd", "kd", "no_kd"],
            "gamma": 0.5,
            "seed": [0, 1, 0],
            "metric": "test_acc",
            "value": [0.7, 0.8, 0.6],
        }
    )
    cells = mean_std_table(table, index="gamma").iloc[0]
    assert cells["kd"] == "75.00 ± 7.07" and cells["no_kd"] == "60.00 (n = 1)"
