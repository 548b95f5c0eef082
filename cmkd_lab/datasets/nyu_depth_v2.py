"""NYU Depth V2, labeled subset: RGB + depth frames, scene types as classes (a download dataset).

``python -m cmkd_lab datasets download nyu_depth_v2`` (or ``python data_scripts/get_nyu_depth_v2.py``)
runs :data:`NYU_DEPTH_V2`; :func:`nyu_depth_v2`, registered as dataset ``"nyu_depth_v2"``, reads
the converted arrays offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source, register_download
from .formats import FormatError, _load, area_resize

NYU_MAT = "nyu_depth_v2_labeled.mat"


def _matlab_strings(handle, dataset) -> list[str]:
    """Decode a MATLAB cell array of strings stored in HDF5 (each cell a reference to uint16 chars)."""
    return ["".join(map(chr, np.asarray(handle[ref]).ravel())) for ref in np.asarray(dataset).ravel()]


def convert_nyu_depth_v2(
    raw: Path, *, height: int = 60, width: int = 80, n_scene_classes: int = 10, chunk: int = 64
) -> tuple[dict[str, np.ndarray], dict]:
    """RGB and depth of the 1449 labeled frames, shrunk to ``height`` x ``width``; scene type as label.

    The ``n_scene_classes - 1`` most frequent scene types keep their names, the rest become
    "other". The scene (e.g. kitchen_0003) is kept as a group: frames of one scene are near
    duplicates and must not be split between train and test.
    """
    import h5py

    path = raw / NYU_MAT
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FormatError(
            f"{path} is not a MATLAB v7.3 (HDF5) file ({error}); delete it and run the script again"
        ) from None
    with handle:
        for key in ("images", "depths", "sceneTypes", "scenes"):
            if key not in handle:
                raise FormatError(f"{path} has no {key!r} variable; found {sorted(handle)}")
        images, depths = handle["images"], handle["depths"]  # MATLAB column-major: (N, 3, W, H), (N, W, H)
        n = images.shape[0]
        rgb = np.empty((n, 3, height, width), dtype=np.uint8)
        depth = np.empty((n, 1, height, width), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            block = np.asarray(images[start:stop]).transpose(0, 1, 3, 2)
            rgb[start:stop] = np.clip(np.rint(area_resize(block, height, width)), 0, 255)
            block = np.asarray(depths[start:stop]).transpose(0, 2, 1)[:, None]
            depth[start:stop] = area_resize(block, height, width)
        scene_types = _matlab_strings(handle, handle["sceneTypes"])
        scenes = _matlab_strings(handle, handle["scenes"])
    if len(scene_types) != n or len(scenes) != n:
        raise FormatError(f"{path}: {n} images but {len(scene_types)} scene types and {len(scenes)} scenes")
    names, counts = np.unique(scene_types, return_counts=True)
    frequent = [str(s) for s in names[np.lexsort((names, -counts))][: n_scene_classes - 1]]
    class_names = frequent + (["other"] if len(names) > len(frequent) else [])
    labels = np.array([class_names.index(s) if s in frequent else len(frequent) for s in scene_types], dtype=np.int64)
    scene_names = sorted(set(scenes))
    arrays = {
        "rgb": rgb,
        "depth": depth,
        "labels": labels,
        "scene": np.array([scene_names.index(s) for s in scenes], dtype=np.int64),
    }
    return arrays, {"class_names": class_names, "scenes": scene_names, "depth_unit": "metres"}


def nyu_depth_v2() -> PairedDataset:
    """NYU Depth V2 labeled frames: ``rgb`` (3xHxW in [0, 1]) and ``depth`` (1xHxW, metres); scene groups."""
    arrays, meta = _load("nyu_depth_v2")
    return from_arrays(
        {"rgb": arrays["rgb"] / np.float32(255), "depth": arrays["depth"]},
        arrays["labels"],
        groups=arrays["scene"],
        name="nyu_depth_v2",
        class_names=meta["class_names"],
    )


NYU_DEPTH_V2 = DownloadSpec(
    name="nyu_depth_v2",
    script="python data_scripts/get_nyu_depth_v2.py",
    description="NYU Depth V2, labeled subset (1449 aligned RGB + depth frames, scene types)",
    # The kit knows no checksum for this file in advance: it is recorded on first download.
    sources=(Source(NYU_MAT, "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"),),
    convert=convert_nyu_depth_v2,
    notes="The .mat file is about 2.8 GB (MATLAB v7.3, read with h5py); the converted data is about 50 MB.",
    option_help={
        "height": "image height after shrinking (source: 480)",
        "width": "image width after shrinking (source: 640)",
        "n_scene_classes": "the most frequent scene types kept as classes, the last class being 'other'",
        "chunk": "frames read from the .mat file at a time (memory)",
    },
)


register_download(NYU_DEPTH_V2, nyu_depth_v2)
