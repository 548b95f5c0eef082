"""Every notebook runs to the end with parameters other than its defaults.

A user who changes a parameter is exploring: the notebook must show what the data say (claims
as "held / not held" with the numbers) and go on, never stop on an assertion about its own
results. The assertions on the default profiles live in the study tests. Each set below is
small (few runs, few epochs) and moves at least one study knob away from its default; a
notebook without a set here fails ``test_every_notebook_has_a_non_default_set``. A copy with
another profile takes that profile's values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from cmkd_lab.analysis.results import load_results
from cmkd_lab.app.notebook import NotebookParameters, list_notebooks, parameters_class, run_notebook

NON_DEFAULT = {
    "00_quickstart": {"n_runs": 2, "epochs": 40, "venn_settings": ((10, 5, 5),), "n_train": 200, "temperature": 1.0},
    "01_data_tour": {"n_seeds": 1, "datasets": ["segment"], "samples_per_class": 2},
    "02_mfh_gaussian": {
        "n_runs": 3,
        "epochs": 40,
        "overlaps": [0, 10],
        "xs1_values": [0, 40],
        "reduction": "batchmean",
        "rng": "official",
    },
    "02_mfh_real": {"n_runs": 2, "epochs": 20, "alg1_repeats": 2, "datasets": ["segment"], "fraction": 0.5},
    "02_mfh_case_studies": {
        "n_runs": 2,
        "epochs": 20,
        "gaussian_runs": 2,
        "gaussian_epochs": 30,
        "alg1_repeats": 2,
        "pairs": ["gaussian:a_general+a_specific>b", "segment:colour+shape>colour"],
        "removal_pairs": ["segment:shape>colour"],
        "ratios": [0.0, 0.5, 0.9],
        "orders": ["least_salient", "random"],
        "kd_ce_weight": 0.0,
        "removal_kd_ce_weight": 1.0,
    },
    "02_mfh_table2": {
        "n_runs": 2,
        "epochs": 40,
        "alg1_epochs": 40,
        "alg1_repeats": 3,
        "xs2_values": [10, 30],
        "teacher_modes": ["gt", "alg1"],
        "regular_kd_as_released": True,
        "rng": "official",
    },
    "03_ntdh_gaussian": {"n_runs": 4, "epochs": 40, "overlaps": [0, 5, 10], "n_classes": 6, "ntd_variant": "official"},
    "03_ntdh_multiclass_methods": {
        "n_runs": 2,
        "epochs": 20,
        "shifts": [20, 0],
        "methods": ["kd", "dkd"],
        "method_runs": 1,
        "method_epochs": 1,
        "check_official": False,
    },
    "03_ntdh_realpairs": {"n_runs": 2, "epochs": 10, "datasets": ["segment"], "hidden": 16},
    "03_ntdh_mnist_m": {
        "n_runs": 2,
        "epochs": 2,
        "stu_types": [1],
        "hidden": [32, 16],
        "train_samples": 600,
        "mask_modes": ["random", "most_salient"],
    },
    "04_cmcd": {
        "n_runs": 2,
        "ssl_epochs": 3,
        "distill_epochs": 3,
        "head_epochs": 10,
        "alphas": [0.0, 1.0],
        "alpha": 1.0,
        "n_samples": 800,
        "n_paired": 100,
        "sweeps": False,
    },
    "05_ds_cmkd": {
        "n_runs": 2,
        "n_train": 200,
        "epochs": 2,
        "teacher_epochs": 2,
        "images": ["mfeat_degraded"],
        "severities": [1.0],
        "degradations": ["noise"],
        "methods": ["ce", "ds_both"],
        "select": "last",
    },
    "06_discom_kd": {
        "n_splits": 2,
        "epochs": 3,
        "synthetic": False,
        "real": ["mfeat:pixels,fourier,zernike"],
        "modality_targets": "as_released",
        "grl_scale": 0.5,
    },
    "07_when_does_cmkd_help": {
        "datasets": ["segment", "gaussian_venn"],
        "overlaps": [0, 10],
        "methods": ["kd"],
        "n_runs": 2,
        "epochs": 5,
        "probe_epochs": 5,
        "n_boot": 20,
    },
    "04_cmcd_real": {
        "n_runs": 2,
        "ssl_epochs": 2,
        "distill_epochs": 2,
        "head_epochs": 10,
        "datasets": ["segment"],
        "labeled_per_class": 3,
    },
}


def test_every_notebook_has_a_non_default_set():
    stems = [path.stem for path in list_notebooks()]
    assert sorted(NON_DEFAULT) == sorted(stems)
    for stem, values in NON_DEFAULT.items():
        cls = parameters_class(stem)
        cls.create(**values)  # valid names and values
        defaults = cls.create()
        assert any(
            getattr(cls.create(**values), name) != getattr(defaults, name)
            for name in values
            if name not in {"n_runs", "epochs", "n_seeds"}
        ), f"{stem}: no study knob differs from its default"


@pytest.mark.parametrize("stem", sorted(NON_DEFAULT))
def test_the_notebook_completes_with_other_parameters(stem, tmp_path):
    """... and every fit runs where the ``device`` parameter says (each fit's record keeps it)."""
    folder = run_notebook(stem, "quick", {**NON_DEFAULT[stem], "device": "cpu"}, tmp_path)
    assert len(load_results(folder))
    fits = json.loads((folder / "run.json").read_text())["fits"]
    assert all(fit["train_config"]["device"] == "cpu" and fit["device"] == "cpu" for fit in fits), stem


@dataclass(frozen=True)
class ProfiledParameters(NotebookParameters):
    epochs: int | None = None
    n_runs: int | None = None

    profile_defaults: ClassVar = {"quick": {"epochs": 30, "n_runs": 2}, "full": {"epochs": 1000, "n_runs": 10}}


def test_a_copy_with_another_profile_takes_that_profiles_values_and_keeps_the_given_ones():
    quick = ProfiledParameters.create(n_runs=5)
    full = quick.replace(profile="full")
    assert (full.profile, full.epochs, full.n_runs) == ("full", 1000, 5)  # n_runs given, epochs from the profile
    assert full.replace(profile="quick") == quick and quick.replace(epochs=7).replace(profile="full").epochs == 7
