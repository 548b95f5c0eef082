"""The paired-data protocol: N samples seen through named modalities, with labels and groups.

Every dataset in the kit, synthetic, real or brought by the user, is a :class:`PairedDataset`.
Splits are seeded, stratified by label, and group-disjoint whenever groups exist (for example
subjects), so that no subject is seen in training and tested on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split


@dataclass(frozen=True)
class PairedDataset:
    """N paired samples: ``modalities[name][i]`` for every name belongs to ``labels[i]``."""

    modalities: dict[str, torch.Tensor]
    labels: torch.Tensor
    groups: np.ndarray | None = None
    name: str = "dataset"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    @property
    def n_classes(self) -> int:
        return int(self.labels.max().item()) + 1 if len(self) else 0

    def shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one sample of ``modality``."""
        return tuple(self[modality].shape[1:])

    def __getitem__(self, modality: str) -> torch.Tensor:
        if modality not in self.modalities:
            raise ValueError(
                f"dataset {self.name!r} has no modality {modality!r}; "
                f"its modalities are {self.modality_names}"
            )
        return self.modalities[modality]

    def subset(self, index) -> "PairedDataset":
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return PairedDataset(
            modalities={k: v[index] for k, v in self.modalities.items()},
            labels=self.labels[index],
            groups=None if self.groups is None else self.groups[index.numpy()],
            name=self.name,
        )

    def select(self, *modality_names: str) -> "PairedDataset":
        """The same samples with only the named modalities."""
        return PairedDataset({m: self[m] for m in modality_names}, self.labels, self.groups, self.name)

    def split(self, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15) -> "Splits":
        """Seeded train/val/test split: stratified, group-disjoint when ``groups`` is set."""
        return split_dataset(self, seed, val_fraction, test_fraction)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "n_samples": len(self),
            "n_classes": self.n_classes,
            "modalities": {k: tuple(v.shape[1:]) for k, v in self.modalities.items()},
            "n_groups": None if self.groups is None else int(len(np.unique(self.groups))),
        }


@dataclass(frozen=True)
class Splits:
    """Train, validation and test parts of one dataset. ``val`` may be None (select="last")."""

    train: PairedDataset
    val: PairedDataset | None
    test: PairedDataset

    def parts(self) -> dict[str, PairedDataset]:
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in named.items() if v is not None}

    def map(self, function) -> "Splits":
        """The same splits with ``function(part)`` applied to each present part."""
        return Splits(function(self.train), None if self.val is None else function(self.val), function(self.test))


STANDARDISE_PER = ("channel", "feature")


def standardise(splits: Splits, modalities: Mapping[str, str] | list[str], per: str = "channel") -> Splits:
    """z-score modalities with the training split's statistics (never the test split's).

    ``modalities`` lists the modalities to keep, or maps new names to them (e.g.
    ``{"a": "pixels", "b": "zernike"}``). ``per="channel"`` takes one mean/std per channel
    (axis 1, pooled over samples and any trailing axes, e.g. time); ``per="feature"`` flattens
    each sample and takes one mean/std per feature. Constant inputs keep a std of 1e-6.
    """
    if per not in STANDARDISE_PER:
        raise ValueError(f"unknown standardisation {per!r}; valid: {', '.join(STANDARDISE_PER)}")
    names = dict(modalities) if isinstance(modalities, Mapping) else {m: m for m in modalities}
    stats = {}
    for new, old in names.items():
        train = splits.train[old] if per == "channel" else splits.train[old].flatten(1)
        axes = [0] + list(range(2, train.dim()))
        stats[new] = (train.mean(axes, keepdim=True)[0], train.std(axes, keepdim=True)[0].clamp_min(1e-6))

    def part(data: PairedDataset) -> PairedDataset:
        views = {}
        for new, old in names.items():
            values = data[old] if per == "channel" else data[old].flatten(1)
            views[new] = (values - stats[new][0]) / stats[new][1]
        return PairedDataset(views, data.labels, data.groups, data.name)

    return splits.map(part)


def from_arrays(
    modalities: Mapping[str, object],
    labels,
    groups=None,
    name: str | None = None,
) -> PairedDataset:
    """Build a :class:`PairedDataset` from arrays, checking them first.

    ``modalities`` maps a name to an array of shape ``(N, ...)``; ``labels`` holds N integers
    (class indices 0..K-1); ``groups`` (optional) holds N group ids, e.g. subjects.
    """
    if not isinstance(modalities, Mapping) or not modalities:
        raise ValueError("modalities must be a non-empty dict {name: array of shape (N, ...)}")
    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional (N,), got shape {label_array.shape}")
    n = label_array.shape[0]
    if n == 0:
        raise ValueError("a dataset needs at least one sample; labels is empty")
    if label_array.dtype.kind == "f":
        if not np.all(np.isfinite(label_array)) or np.any(label_array != np.round(label_array)):
            raise ValueError("labels must be integers (class indices); found non-integer values")
        label_array = label_array.astype(np.int64)
    if label_array.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (class indices), got dtype {label_array.dtype}")
    if label_array.min() < 0:
        raise ValueError("labels must be class indices >= 0; found a negative label")

    tensors = {}
    for modality, values in modalities.items():
        if not isinstance(modality, str) or not modality:
            raise ValueError(f"modality names must be non-empty strings, got {modality!r}")
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if array.dtype.kind not in "fiub":
            raise ValueError(f"modality {modality!r} must be numeric, got dtype {array.dtype}")
        if array.ndim == 0 or array.shape[0] != n:
            raise ValueError(
                f"modality {modality!r} has {array.shape[0] if array.ndim else 0} samples "
                f"but there are {n} labels; every modality needs one row per label"
            )
        array = array.astype(np.float32)
        if array.ndim == 1:
            array = array[:, None]
        if not np.all(np.isfinite(array)):
            bad = int((~np.isfinite(array.reshape(n, -1))).any(axis=1).sum())
            raise ValueError(f"modality {modality!r} contains NaN or infinite values in {bad} samples")
        tensors[modality] = torch.from_numpy(np.ascontiguousarray(array))

    group_array = None
    if groups is not None:
        group_array = np.asarray(groups)
        if group_array.shape != (n,):
            raise ValueError(f"groups must have shape ({n},) like labels, got {group_array.shape}")
    return PairedDataset(tensors, torch.from_numpy(label_array.astype(np.int64)), group_array, name or "custom")


def split_dataset(
    dataset: PairedDataset, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Splits:
    """Seeded stratified split; group-disjoint (every group in one part only) when groups exist."""
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"need 0 < test_fraction < 1, 0 <= val_fraction < 1 and their sum < 1; "
            f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    index = np.arange(len(dataset))
    labels = dataset.labels.numpy()
    if dataset.groups is None:
        rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
        if val_fraction == 0:
            train, val = rest, None
        else:
            train, val = train_test_split(
                rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=seed + 1
            )
    else:
        rest, test = _group_split(index, labels, dataset.groups, test_fraction, seed)
        if val_fraction == 0:
            train, val = rest, None
        else:
            train, val = _group_split(rest, labels, dataset.groups, val_fraction / (1 - test_fraction), seed + 1)
    return Splits(
        train=dataset.subset(np.sort(train)),
        val=None if val is None else dataset.subset(np.sort(val)),
        test=dataset.subset(np.sort(test)),
    )


def _group_split(index, labels, groups, fraction, seed):
    """Hold out about ``fraction`` of the groups, keeping class proportions as far as groups allow.

    StratifiedGroupKFold's shuffle only breaks ties between groups, so with balanced groups every
    seed would hold out the same ones; the seed therefore also picks which fold is held out.
    """
    group_ids = groups[index]
    n_groups = len(np.unique(group_ids))
    n_splits = int(round(1 / fraction))
    if n_groups < 2 or n_splits < 2:
        raise ValueError(f"cannot make a group-disjoint split of {n_groups} groups with fraction {fraction:.2f}")
    n_splits = min(n_splits, n_groups)
    folds = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(
        index, labels[index], group_ids))
    kept, held = folds[seed % n_splits]
    return index[kept], index[held]
