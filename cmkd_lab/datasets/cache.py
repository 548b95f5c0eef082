"""The kit's on-disk dataset format: named numpy arrays with sha256 checksums.

Every real dataset, whether it installs with the kit (``python -m cmkd_lab.datasets.prepare``)
or needs a script in ``data_scripts/``, is converted once into

    <data root>/<dataset name>/manifest.json
    <data root>/<dataset name>/<array name>.npy

The manifest lists each array file with its sha256, shape and dtype, plus free-form metadata
(class names, source files and their checksums, the converter version). Files are written to a
temporary name and renamed into place, and the manifest is written last, so an interrupted
conversion never looks complete. Loading verifies every checksum (once per process while the file
is unchanged) and uses no network.

The data root is ``$CMKD_LAB_DATA`` when set, else the user cache directory from platformdirs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..app.io import atomic_path

ENV_VAR = "CMKD_LAB_DATA"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PREPARE_COMMAND = "python -m cmkd_lab.datasets.prepare"


class DataError(RuntimeError):
    """A dataset cannot be loaded or fetched; the message says what to do."""


class DataNotPreparedError(DataError):
    """The dataset has not been converted into the data root yet."""


class CorruptDataError(DataError):
    """A cache file is missing, truncated or altered (its checksum does not match)."""


# dataset name -> the command that creates it (named in every "not prepared"/"corrupt" error)
_create_commands: dict[str, str] = {}


def set_create_command(name: str, command: str) -> None:
    """Record the command that converts dataset ``name`` into the data root."""
    _create_commands[name] = command


def create_command(name: str) -> str:
    """How to create dataset ``name``, quoted for an error message."""
    command = _create_commands.get(name, PREPARE_COMMAND)
    return f"`{command}` (or `make data`)" if command == PREPARE_COMMAND else f"`{command}`"


def data_root() -> Path:
    """Where converted datasets live: ``$CMKD_LAB_DATA`` or the user cache directory."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cmkd_lab")) / "datasets"


def dataset_dir(name: str, root: Path | None = None) -> Path:
    return (root or data_root()) / name


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename (see :func:`cmkd_lab.app.io.atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_arrays(
    name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None, root: Path | None = None
) -> Path:
    """Store ``arrays`` as dataset ``name`` (replacing any previous version); return its folder."""
    folder = dataset_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    # Without a manifest the dataset reads as "not prepared" while its files are being replaced.
    (folder / MANIFEST).unlink(missing_ok=True)
    entries = {}
    for array_name, values in arrays.items():
        if not array_name.isidentifier():
            raise ValueError(f"array names must be identifiers, got {array_name!r}")
        values = np.ascontiguousarray(values)
        if values.dtype == object:
            raise ValueError(f"array {array_name!r} has dtype object; store numbers or fixed-width strings")
        target = folder / f"{array_name}.npy"
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, values, allow_pickle=False)
        entries[array_name] = {
            "file": target.name,
            "sha256": sha256_file(target),
            "shape": list(values.shape),
            "dtype": values.dtype.str,
        }
    for stale in folder.glob("*.npy"):
        if stale.stem not in entries:
            stale.unlink()
    manifest = {
        "format": FORMAT_VERSION,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "arrays": entries,
        "meta": dict(meta or {}),
    }
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return folder


def read_manifest(name: str, root: Path | None = None) -> dict[str, Any]:
    """The manifest of dataset ``name``; a clear error naming the command to run when absent."""
    folder = dataset_dir(name, root)
    path = folder / MANIFEST
    hint = create_command(name)
    if not path.exists():
        elsewhere = "" if root else f"; set {ENV_VAR} to use another data folder"
        raise DataNotPreparedError(
            f"dataset {name!r} is not on disk (looked in {folder}). Run {hint} to create it{elsewhere}."
        )
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT_VERSION or not isinstance(manifest.get("arrays"), dict):
            raise ValueError(f"unsupported manifest format {manifest.get('format')!r}")
    except (ValueError, OSError) as error:
        raise CorruptDataError(
            f"the manifest {path} of dataset {name!r} is unreadable ({error}); run {hint} to rebuild it"
        ) from error
    return manifest


# (path, size, mtime_ns) -> sha256 already checked in this process
_verified: dict[tuple[str, int, int], str] = {}


def _verified_path(name: str, entry: Mapping[str, Any], folder: Path) -> Path:
    path = folder / entry["file"]
    hint = create_command(name)
    if not path.exists():
        raise CorruptDataError(f"cache file {path} of dataset {name!r} is missing; run {hint} to rebuild it")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) != entry["sha256"]:
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise CorruptDataError(
                f"cache file {path} of dataset {name!r} is corrupt: its sha256 is {actual[:12]}…, the manifest "
                f"records {entry['sha256'][:12]}…. Run {hint} to rebuild it."
            )
        _verified[key] = actual
    return path


def read_arrays(
    name: str, names: list[str] | None = None, root: Path | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load (and checksum-verify) the arrays of dataset ``name``; returns ``(arrays, meta)``."""
    manifest = read_manifest(name, root)
    folder = dataset_dir(name, root)
    wanted = manifest["arrays"] if names is None else {k: manifest["arrays"][k] for k in names}
    arrays = {}
    for array_name, entry in wanted.items():
        path = _verified_path(name, entry, folder)
        try:
            arrays[array_name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise CorruptDataError(
                f"cache file {path} of dataset {name!r} is unreadable ({error}); run {create_command(name)}"
            ) from error
    return arrays, manifest["meta"]


def is_prepared(name: str, root: Path | None = None) -> bool:
    """Cheap check (no hashing): the manifest exists and lists array files that all exist."""
    folder = dataset_dir(name, root)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return all((folder / entry["file"]).is_file() for entry in manifest["arrays"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def verify(name: str, root: Path | None = None) -> bool:
    """Whether dataset ``name`` is on disk with every checksum matching."""
    try:
        manifest = read_manifest(name, root)
        folder = dataset_dir(name, root)
        for entry in manifest["arrays"].values():
            _verified_path(name, entry, folder)
    except DataError:
        return False
    return True


def remove(name: str, root: Path | None = None) -> None:
    shutil.rmtree(dataset_dir(name, root), ignore_errors=True)


def class_names(name: str, root: Path | None = None) -> list[str]:
    """Class names recorded when dataset ``name`` was converted (index = label)."""
    return list(read_manifest(name, root)["meta"]["class_names"])
