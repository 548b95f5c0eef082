"""The user's own datasets: a folder that every process of the kit reads, and dataset modules.

    python -m cmkd_lab datasets add mine mine.npz --labels y [--groups subject] [--description TEXT]

stores the arrays of ``mine.npz`` in the kit's array format (see :mod:`cache`: one ``.npy`` per
array and a manifest with each array's sha256 and the metadata: modalities, the labels and
groups arrays, class names, description) in the user datasets folder, ``$CMKD_LAB_USER_DATA``
or else the platformdirs user data directory. It is apart from the converted built-in datasets
(``$CMKD_LAB_DATA``), so neither hides the other.

Importing :mod:`cmkd_lab.datasets` registers every dataset of that folder (kind "user"), so a
notebook kernel sees the same datasets as the command line, then imports each module named in
``$CMKD_LAB_DATASET_MODULES`` (comma-separated), whose ``register_dataset`` calls define datasets
in code, then loads the Python entry points of group ``cmkd_lab.datasets`` that installed packages
declare (each a module, or a function called with no arguments, that registers datasets)::

    [project.entry-points."cmkd_lab.datasets"]
    my_lab = "my_lab.cmkd_datasets"
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import cache
from .core import PairedDataset, from_arrays

ENV_VAR = "CMKD_LAB_USER_DATA"
MODULES_ENV_VAR = "CMKD_LAB_DATASET_MODULES"
ENTRY_POINT_GROUP = "cmkd_lab.datasets"
KIND = "user"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def user_root() -> Path:
    """Where user datasets live: ``$CMKD_LAB_USER_DATA`` or the user data directory."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cmkd_lab")) / "datasets"


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file (``numpy.savez``), read whole; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}; save your arrays with numpy.savez({path.name!r}, name=array, ...)")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one unnamed array, not named arrays")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"cannot read {path} as an .npz file of numeric arrays ({error}); "
            f"write it with numpy.savez({path.with_suffix('.npz').name!r}, name=array, ...)"
        ) from None


def add(
    name: str,
    path: str | os.PathLike,
    *,
    labels: str = "labels",
    groups: str | None = None,
    relabel: bool = False,
    description: str = "",
    replace: bool = False,
) -> PairedDataset:
    """Store the arrays of the ``.npz`` file ``path`` as user dataset ``name`` and register it.

    Array ``labels`` holds the labels (class indices 0..K-1, or any values with ``relabel``, as
    :func:`from_arrays` takes them), array ``groups`` (optional) the group of each sample (e.g. its
    subject); every other array is a modality. :func:`from_arrays` checks them before anything is
    written.
    """
    from . import DATASETS

    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"dataset names are letters, digits, '_' and '-' (not first), got {name!r}")
    if name in DATASETS and DATASETS.info(name)["kind"] != KIND:
        info = DATASETS.info(name)
        raise ValueError(
            f"{name!r} is the name of a registered dataset ({info['kind']}: {info['description']}); choose another"
        )
    folder = cache.dataset_dir(name, user_root())
    if folder.exists() and not replace:
        raise ValueError(
            f"user dataset {name!r} exists ({folder}); pass --replace to overwrite it, "
            f"or `python -m cmkd_lab datasets remove {name}` first"
        )
    arrays = read_npz(path)
    for role, key in (("labels", labels), ("groups", groups)):
        if key is not None and key not in arrays:
            raise ValueError(
                f"{Path(path).name} has no array {key!r} for the {role}; its arrays are "
                f"{', '.join(arrays)} (choose one with --{role})"
            )
    modalities = {k: v for k, v in arrays.items() if k not in (labels, groups)}
    if len(modalities) < 2:
        raise ValueError(
            f"a paired dataset needs two modalities or more; {Path(path).name} has "
            f"{list(modalities)} besides the labels and groups"
        )
    dataset = from_arrays(
        modalities, arrays[labels], groups=arrays.get(groups) if groups else None, name=name, relabel=relabel
    )
    stored = {**{m: dataset[m].numpy() for m in modalities}, labels: dataset.labels.numpy()}
    if groups:
        stored[groups] = dataset.groups
    meta = {
        "modalities": list(modalities),
        "labels": labels,
        "groups": groups,
        "class_names": list(dataset.class_names),
        "description": description or f"{Path(path).name}: {len(dataset)} samples, {dataset.n_classes} classes",
        "source": f"{Path(path).name} (sha256 {cache.sha256_file(Path(path))})",
    }
    cache.write_arrays(name, stored, meta, root=user_root())
    if name not in DATASETS:
        _register(name, meta["description"])
    return dataset


def remove(name: str) -> Path:
    """Delete user dataset ``name`` from the folder and the registry; return its former folder."""
    from . import DATASETS

    folder = cache.dataset_dir(name, user_root())
    if not folder.exists():
        names = sorted(p.parent.name for p in user_root().glob(f"*/{cache.MANIFEST}"))
        raise ValueError(f"no user dataset {name!r} in {user_root()}; user datasets: {', '.join(names) or 'none'}")
    cache.remove(name, user_root())
    if name in DATASETS and DATASETS.info(name)["kind"] == KIND:
        DATASETS.unregister(name)
    return folder


def _load(name: str) -> PairedDataset:
    arrays, meta = cache.read_arrays(name, root=user_root())
    groups = arrays[meta["groups"]] if meta["groups"] else None
    return from_arrays(
        {m: arrays[m] for m in meta["modalities"]},
        arrays[meta["labels"]],
        groups=groups,
        name=name,
        class_names=meta["class_names"],
    )


def _register(name: str, description: str) -> None:
    from . import register_dataset

    cache.set_create_command(name, f"python -m cmkd_lab datasets add {name} FILE.npz --replace")
    register_dataset(
        name, kind=KIND, description=description, is_available=lambda: cache.is_prepared(name, user_root())
    )(functools.partial(_load, name))


def register_folder() -> None:
    """Register every dataset of the user datasets folder (a name taken already is skipped, with a warning)."""
    from . import DATASETS

    for manifest in sorted(user_root().glob(f"*/{cache.MANIFEST}")):
        name = manifest.parent.name
        if name in DATASETS:
            warnings.warn(
                f"user dataset {name!r} in {manifest.parent} is skipped: the name is taken by a built-in dataset",
                stacklevel=2,
            )
            continue
        try:
            description = cache.read_manifest(name, user_root())["meta"].get("description", "")
        except cache.DataError as error:
            description = f"damaged: {error}"
        _register(name, description)


def import_modules() -> None:
    """Import the modules named in ``$CMKD_LAB_DATASET_MODULES``, which register datasets in code."""
    for module in filter(None, (m.strip() for m in os.environ.get(MODULES_ENV_VAR, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as error:
            raise ImportError(
                f"{MODULES_ENV_VAR} names module {module!r}, which failed to import ({type(error).__name__}: {error})"
            ) from error


def load_entry_points() -> None:
    """Load each entry point of group ``cmkd_lab.datasets``; a function it names is called."""
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            if callable(loaded):
                loaded()
        except Exception as error:
            raise ImportError(
                f"entry point {entry_point.name!r} ({entry_point.value}) of group {ENTRY_POINT_GROUP!r} "
                f"failed ({type(error).__name__}: {error}); fix or uninstall the package that declares it"
            ) from error
