"""Synthetic paired data: plain functions of their knobs and a seed.

The modality Venn picture (MFH): the decisive latent features are shared by both modalities
(modality-general), seen by one only (modality-specific), and each modality adds noise features.
"""

from __future__ import annotations

import numpy as np

from .core import PairedDataset, from_arrays


def venn_ratios(shared: int, a_specific: int, b_specific: int) -> dict[str, float]:
    """α (a-specific), β (b-specific) and γ (shared) fractions of the decisive features."""
    total = shared + a_specific + b_specific
    if total <= 0:
        raise ValueError("at least one decisive feature is needed (shared + a_specific + b_specific > 0)")
    return {"alpha": a_specific / total, "beta": b_specific / total, "gamma": shared / total}


def gaussian_venn(
    n_samples: int = 600,
    shared: int = 10,
    a_specific: int = 10,
    b_specific: int = 10,
    a_noise: int = 5,
    b_noise: int = 20,
    n_classes: int = 2,
    seed: int = 0,
    task_seed: int = 0,
) -> PairedDataset:
    """Two Gaussian modalities whose decisive features overlap by ``shared`` dimensions.

    Decisive latent ``z ~ N(0, I)`` of ``shared + a_specific + b_specific`` dims; labels are
    ``1[z·h > 0]`` (two classes) or ``argmax(z H)`` (more), with ``h``/``H`` drawn from
    ``task_seed`` so that all samples of one task share it. Modality ``a`` is
    ``[z_shared, z_a_specific, noise(a_noise)]`` and ``b`` is ``[z_shared, z_b_specific, noise(b_noise)]``.
    """
    for knob, value in dict(shared=shared, a_specific=a_specific, b_specific=b_specific,
                            a_noise=a_noise, b_noise=b_noise).items():
        if int(value) != value or value < 0:
            raise ValueError(f"{knob} must be a non-negative integer, got {value!r}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    n_decisive = shared + a_specific + b_specific
    venn_ratios(shared, a_specific, b_specific)
    task = np.random.default_rng(task_seed)
    directions = task.standard_normal((n_decisive, 1 if n_classes == 2 else n_classes))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_samples, n_decisive))
    scores = z @ directions
    labels = (scores[:, 0] > 0).astype(np.int64) if n_classes == 2 else scores.argmax(axis=1)
    z_shared, z_a, z_b = np.split(z, [shared, shared + a_specific], axis=1)
    x_a = np.concatenate([z_shared, z_a, rng.standard_normal((n_samples, a_noise))], axis=1)
    x_b = np.concatenate([z_shared, z_b, rng.standard_normal((n_samples, b_noise))], axis=1)
    return from_arrays({"a": x_a, "b": x_b}, labels, name="gaussian_venn")


def _register() -> None:
    from . import register_dataset

    register_dataset(
        "gaussian_venn",
        kind="synthetic",
        description="two Gaussian modalities with a tunable modality Venn diagram (shared/specific/noise dims)",
    )(gaussian_venn)


_register()

__all__ = ["gaussian_venn", "venn_ratios"]
