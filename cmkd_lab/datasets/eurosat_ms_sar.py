"""EuroSAT: Sentinel-2 multispectral (13 bands) paired with Sentinel-1 SAR (VV, VH) patches, 10
land-cover classes (a download dataset).

``python -m cmkd_lab datasets download eurosat_ms_sar`` (or ``python data_scripts/get_eurosat_ms_sar.py``)
runs :data:`EUROSAT_MS_SAR`; :func:`eurosat_ms_sar`, registered as dataset ``"eurosat_ms_sar"``,
reads the converted arrays offline.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .core import PairedDataset, from_arrays
from .download import DownloadSpec, Source, register_download
from .formats import FormatError, _load, area_resize, zip_members

EUROSAT_CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]
EUROSAT_MS_ZIP = "EuroSAT_MS.zip"
EUROSAT_SAR_ZIP = "EuroSAT-SAR.zip"
EUROSAT_PATTERN = r"(?:^|/)(" + "|".join(EUROSAT_CLASSES) + r")/([^/]+)\.tiff?$"


def _read_tiff(data: bytes, bands: int, member: str) -> np.ndarray:
    """A GeoTIFF patch as (bands, H, W), whichever way its samples are interleaved."""
    import tifffile

    image = tifffile.imread(io.BytesIO(data))
    if image.ndim == 3 and image.shape[0] == bands:  # bands stored as separate planes
        return image
    if image.ndim == 3 and image.shape[-1] == bands:  # bands interleaved per pixel
        return np.moveaxis(image, -1, 0)
    raise FormatError(f"{member}: expected a {bands}-band image, got an array of shape {image.shape}")


def _tiff_index(path: Path) -> dict[tuple[str, str], str]:
    return {(m.group(1), m.group(2)): member for m, _, member in zip_members(path, EUROSAT_PATTERN)}


def convert_eurosat_ms_sar(
    raw: Path, *, size: int = 32, max_per_class: int = 1000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """Pair each EuroSAT-MS patch with the EuroSAT-SAR patch of the same class folder and file name.

    Patches (64x64) are shrunk to ``size`` by area averaging; ``max_per_class`` (0 = all) patches
    per class are drawn with ``seed``. MS keeps the 13 Sentinel-2 bands as stored (uint16, B01..B12
    then B8A); SAR keeps its two bands (VV, VH) as stored.
    """
    ms_index, sar_index = _tiff_index(raw / EUROSAT_MS_ZIP), _tiff_index(raw / EUROSAT_SAR_ZIP)
    common = sorted(set(ms_index) & set(sar_index))
    if not common:
        raise FormatError(
            f"no patch appears in both zips under <class>/<name>.tif (MS e.g. {sorted(ms_index)[:2]}, "
            f"SAR e.g. {sorted(sar_index)[:2]}); the archive layout is not the expected one"
        )
    rng = np.random.default_rng(seed)
    chosen = []
    for name in EUROSAT_CLASSES:
        keys = [k for k in common if k[0] == name]
        if max_per_class and len(keys) > max_per_class:
            keys = [keys[i] for i in np.sort(rng.choice(len(keys), max_per_class, replace=False))]
        chosen.extend(keys)
    ms = np.empty((len(chosen), 13, size, size), dtype=np.uint16)
    sar = np.empty((len(chosen), 2, size, size), dtype=np.float32)
    with zipfile.ZipFile(raw / EUROSAT_MS_ZIP) as ms_zip, zipfile.ZipFile(raw / EUROSAT_SAR_ZIP) as sar_zip:
        for start in range(0, len(chosen), 512):  # in blocks: 27,000 float patches would not fit in memory
            block = chosen[start : start + 512]
            ms_block = np.stack([_read_tiff(ms_zip.read(ms_index[k]), 13, ms_index[k]) for k in block])
            sar_block = np.stack([_read_tiff(sar_zip.read(sar_index[k]), 2, sar_index[k]) for k in block])
            ms[start : start + len(block)] = np.clip(np.rint(area_resize(ms_block, size, size)), 0, 65535)
            sar[start : start + len(block)] = area_resize(sar_block, size, size)
    arrays = {
        "ms": ms,
        "sar": sar,
        "labels": np.array([EUROSAT_CLASSES.index(k[0]) for k in chosen], dtype=np.int64),
    }
    meta = {
        "class_names": EUROSAT_CLASSES,
        "unpaired": {"ms_only": len(ms_index) - len(common), "sar_only": len(sar_index) - len(common)},
        "ms_bands": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"],
        "sar_bands": ["VV", "VH"],
    }
    return arrays, meta


def eurosat_ms_sar() -> PairedDataset:
    """EuroSAT patches: ``ms`` (13 bands, reflectance = stored value / 10000) and ``sar`` (VV, VH as stored)."""
    arrays, meta = _load("eurosat_ms_sar")
    return from_arrays(
        {"ms": arrays["ms"] / np.float32(10000), "sar": arrays["sar"]},
        arrays["labels"],
        name="eurosat_ms_sar",
        class_names=meta["class_names"],
    )


EUROSAT_MS_SAR = DownloadSpec(
    name="eurosat_ms_sar",
    script="python data_scripts/get_eurosat_ms_sar.py",
    description="EuroSAT-MS (Sentinel-2, 13 bands) paired with EuroSAT-SAR (Sentinel-1, VV+VH), 10 land-cover classes",
    sources=(
        # Zenodo publishes an md5 for this file, no sha256; the sha256 is recorded on first download.
        Source(
            EUROSAT_MS_ZIP,
            "https://zenodo.org/records/7711810/files/EuroSAT_MS.zip?download=1",
            md5="091174add3c8e680a49244acf185b9f0",
            size=2065402329,
        ),
        # The kit knows no checksum for this file in advance: it is recorded on first download.
        Source(EUROSAT_SAR_ZIP, "https://huggingface.co/datasets/wangyi111/EuroSAT-SAR/resolve/main/EuroSAT-SAR.zip"),
    ),
    convert=convert_eurosat_ms_sar,
    notes=(
        "About 2.0 GB (MS) + 0.9 GB (SAR); the converted data is about 350 MB at the defaults. Patches are "
        "paired by class folder and file name; the "
        "converter stops with a clear error if the two archives share none."
    ),
    option_help={
        "size": "patch side after shrinking (source: 64)",
        "max_per_class": "patches drawn per class, 0 for all (27,000 in all)",
        "seed": "seed of the per-class draw",
    },
)


register_download(EUROSAT_MS_SAR, eurosat_ms_sar)
