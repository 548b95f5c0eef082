"""Paired clean and degraded images: a high- and a low-quality modality of the same samples.

DS-CMKD (papers.md §4) distils from a high-quality modality into a low-quality one, and says its
gains grow with the gap between them. Here the gap is a knob: each image is seen ``"clean"``
and ``"degraded"``, the second made worse by ``severity`` in [0, 1] (0: identical) through

- ``downsample``: area-downsampled to a (1 − 0.75·severity) share of each side, then bilinearly
  upsampled back (the detail is gone, the size is kept);
- ``noise``: Gaussian noise of std severity × the images' pixel std;
- ``occlusion``: a square of side severity × half the shorter side, at a random place in each
  image, set to the images' mean pixel.

The random parts (noise, occlusion places) come from ``seed``. Registered datasets:
``digits_degraded`` (scikit-learn's 8×8 digits, 1797 images, 10 classes; ships with
scikit-learn) and ``mfeat_degraded`` (mfeat's pixel view as 16×15 images, 2000, 10 classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .core import PairedDataset, from_arrays, run_state

DEGRADATIONS = ("downsample", "noise", "occlusion")
KEEP_AT_FULL_SEVERITY = 0.25  # downsampling keeps this share of each side at severity 1
OCCLUSION_AT_FULL_SEVERITY = 0.5  # the square's side, as a share of the shorter side, at severity 1
DEGRADED_DATASETS = ("digits_degraded", "mfeat_degraded")


def _checked(severity: float, kinds: Sequence[str]) -> tuple[str, ...]:
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must lie in [0, 1] (0: no degradation), got {severity!r}")
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in DEGRADATIONS]
    if unknown:
        raise ValueError(f"unknown degradation(s) {unknown}; valid: {', '.join(DEGRADATIONS)}")
    return kinds


def degrade(images: torch.Tensor, severity: float, seed: int, kinds: Sequence[str] = DEGRADATIONS) -> torch.Tensor:
    """``images`` ``(N, C, H, W)`` made worse by ``severity`` through ``kinds`` (in the order of
    :data:`DEGRADATIONS`); the same ``seed`` gives the same noise and occlusions."""
    kinds = _checked(severity, kinds)
    images = torch.as_tensor(images, dtype=torch.float32)
    n, channels, height, width = images.shape
    generator = torch.Generator().manual_seed(run_state(seed, "degrade", "pool"))
    mean, std = images.mean(), images.std()
    out = images
    if "downsample" in kinds:
        keep = 1 - (1 - KEEP_AT_FULL_SEVERITY) * severity
        small = (max(1, round(height * keep)), max(1, round(width * keep)))
        if small != (height, width):
            out = F.interpolate(
                F.interpolate(out, size=small, mode="area"), size=(height, width), mode="bilinear", align_corners=False
            )
    if "noise" in kinds:
        out = out + severity * std * torch.randn(out.shape, generator=generator)
    if "occlusion" in kinds:
        side = round(severity * OCCLUSION_AT_FULL_SEVERITY * min(height, width))
        if side > 0:
            top = torch.randint(0, height - side + 1, (n, 1, 1), generator=generator)
            left = torch.randint(0, width - side + 1, (n, 1, 1), generator=generator)
            rows, columns = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
            inside = (rows >= top) & (rows < top + side) & (columns >= left) & (columns < left + side)
            out = torch.where(inside.unsqueeze(1), mean, out)
    return out


def degraded_pair(
    images, labels, severity: float, seed: int, name: str, kinds: Sequence[str] = DEGRADATIONS
) -> PairedDataset:
    """A :class:`PairedDataset` of ``"clean"`` ``images`` ``(N, C, H, W)`` and their
    ``"degraded"`` copies (:func:`degrade`)."""
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    degraded = degrade(images, severity, seed, kinds)
    return from_arrays(
        {"clean": images.numpy(), "degraded": degraded.numpy()}, np.asarray(labels), name=f"{name}@{severity:g}"
    )


def digits_degraded(severity: float = 0.5, seed: int = 0, kinds: Sequence[str] = DEGRADATIONS) -> PairedDataset:
    """scikit-learn's 8×8 digits (1797 images, 10 classes, pixels 0..16 scaled to 0..1), clean and degraded."""
    from sklearn.datasets import load_digits  # deferred: a slow import

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return degraded_pair(images, digits.target, severity, seed, "digits", kinds)


def mfeat_degraded(severity: float = 0.5, seed: int = 0, kinds: Sequence[str] = DEGRADATIONS) -> PairedDataset:
    """mfeat's pixel view as 1×16×15 images (2000, 10 classes, pixels 0..6 scaled to 0..1), clean and degraded."""
    from .real import mfeat

    data = mfeat("pixels", pixels_as_image=True)
    images = data["pixels"] / max(float(data["pixels"].max()), 1e-6)
    return degraded_pair(images, data.labels.numpy(), severity, seed, "mfeat", kinds)


def _register() -> None:
    from . import register_dataset
    from .cache import is_prepared

    register_dataset(
        "digits_degraded",
        kind="synthetic",
        description="scikit-learn's 8x8 digits, clean and degraded (downsampling, noise, occlusion) by a severity knob",
    )(digits_degraded)
    register_dataset(
        "mfeat_degraded",
        kind="synthetic",
        description=(
            "mfeat's pixel view as 16x15 images, clean and degraded (downsampling, noise, occlusion) by a severity knob"
        ),
        is_available=lambda: is_prepared("mfeat"),
    )(mfeat_degraded)


_register()
