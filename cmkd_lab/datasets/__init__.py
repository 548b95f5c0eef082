"""Datasets: the paired-data protocol, synthetic generators and named datasets.

Public entry points: :func:`list_datasets`, :func:`load`, :func:`from_arrays`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..engine.registry import Registry, check_options
from .core import PairedDataset, Splits, from_arrays, split_dataset, standardise

DATASETS: Registry[Callable[..., PairedDataset]] = Registry("dataset")


def register_dataset(name: str, *, kind: str, description: str, is_available: Callable[[], bool] | None = None):
    """Register a loader ``f(**options) -> PairedDataset`` under ``name``.

    ``kind`` is "synthetic", "offline" (installs with the kit), "download" (needs a script in
    data_scripts/), "user" (the user datasets folder, see :mod:`.user`) or any other word for a
    dataset defined in code; ``is_available`` tells whether the data is on disk now.
    """
    return DATASETS.register(name, kind=kind, description=description, is_available=is_available)


def real_dataset_names() -> list[str]:
    """The registered datasets of real paired data (every kind but "synthetic"), which the
    real-data studies take by name."""
    return [name for name in DATASETS.names() if DATASETS.info(name)["kind"] != "synthetic"]


def list_datasets() -> pd.DataFrame:
    """One row per dataset: name, kind, whether it can be loaded now, and what it is."""
    rows = []
    for name in DATASETS.names():
        info = DATASETS.info(name)
        available = info["is_available"]() if info["is_available"] else True
        rows.append(
            {
                "name": name,
                "kind": info["kind"],
                "available": bool(available),
                "needs_download": info["kind"] == "download" and not available,
                "description": info["description"],
            }
        )
    return pd.DataFrame(rows)


def load(name: str, **options) -> PairedDataset:
    """Load a registered dataset by name; unknown names and options raise a ValueError listing valid ones."""
    loader = DATASETS.get(name)
    check_options(f"dataset {name!r}", loader, options)
    return loader(**options)


from . import synthetic  # noqa: E402,F401  (registers the synthetic datasets)
from . import real  # noqa: E402,F401  (registers mfeat, watch and segment)
from . import avmnist, eurosat_ms_sar, nyu_depth_v2, ravdess  # noqa: E402,F401  (the download datasets)
from . import mnist_m  # noqa: E402,F401  (NTDH's MNIST → MNIST-M: the offline stand-in and the download)
from . import degraded  # noqa: E402,F401  (registers the clean/degraded image pairs)
from . import user  # noqa: E402  (last: user datasets never shadow the kit's own)

user.register_folder()
user.import_modules()
user.load_entry_points()

__all__ = [
    "PairedDataset",
    "Splits",
    "from_arrays",
    "split_dataset",
    "standardise",
    "list_datasets",
    "load",
    "real_dataset_names",
    "register_dataset",
]
