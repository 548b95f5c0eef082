"""The paired-data protocol: N samples seen through named modalities, with labels and groups.

Every dataset in the kit, synthetic, real or brought by the user, is a :class:`PairedDataset`.
Splits are seeded, stratified by label, and group-disjoint whenever groups exist (for example
subjects), so that no subject is seen in training and tested on. Group splits hold out one fold of
a fixed group k-fold per seed, so seeds 0..k-1 test on disjoint groups.

Every seeded draw of data (a synthetic generator's samples, a split, a subset of a split) takes its
randomness from :func:`run_seeds`: one :class:`numpy.random.SeedSequence` per run and stream, spawned
into one child per part, so runs, streams and the parts of a run never share random numbers.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

RUN_PARTS = ("task", "train", "val", "test", "fresh", "pool")  # a part's stream is its position: add new ones last
"""The independent draws of one run: ``task`` (what all its parts share, e.g. MFH's hyperplane),
the ``train``, ``val`` and ``test`` splits, ``fresh`` (a second training draw, MFH Table 2) and
``pool`` (samples that :func:`split_dataset` then splits)."""
SPLIT_PARTS = ("train", "val", "test")


def run_seeds(seed: int, stream: str) -> dict[str, np.random.SeedSequence]:
    """One seed sequence per part of :data:`RUN_PARTS` for run ``seed`` of ``stream`` (the name of
    a generator or of what is drawn, e.g. ``"mfh_overlap"``, ``"split"``): the children of
    ``SeedSequence([seed, crc32(stream)])``.

    Different seeds, streams or parts hash to unrelated states, so no run draws numbers another
    run (or another part of the same run) also draws: run s's test set is not run s + 1's training
    set, as it is when run s tests on the generator seeded s + 1.
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"a run's seed must be a non-negative integer, got {seed!r}")
    root = np.random.SeedSequence([int(seed), zlib.crc32(stream.encode())])
    return dict(zip(RUN_PARTS, root.spawn(len(RUN_PARTS))))


def run_generator(seed: int, stream: str, part: str) -> np.random.Generator:
    """NumPy's generator for ``part`` (one of :data:`RUN_PARTS`) of run ``seed`` of ``stream``."""
    return np.random.default_rng(_part(seed, stream, part))


def run_state(seed: int, stream: str, part: str) -> int:
    """A 32-bit seed for ``part`` of run ``seed`` of ``stream``, for libraries that take an integer
    (scikit-learn's ``random_state``, ``torch.Generator().manual_seed``)."""
    return int(_part(seed, stream, part).generate_state(1)[0])


def _part(seed: int, stream: str, part: str) -> np.random.SeedSequence:
    if part not in RUN_PARTS:
        raise ValueError(f"unknown part {part!r} of a run; valid: {', '.join(RUN_PARTS)}")
    return run_seeds(seed, stream)[part]


@dataclass(frozen=True)
class PairedDataset:
    """N paired samples: ``modalities[name][i]`` for every name belongs to ``labels[i]``.

    ``class_names[c]`` names class ``c``; it defaults to "0".."K-1" for labels 0..K-1.
    """

    modalities: dict[str, torch.Tensor]
    labels: torch.Tensor
    groups: np.ndarray | None = None
    name: str = "dataset"
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        n_classes = int(self.labels.max().item()) + 1 if len(self) else 0
        object.__setattr__(self, "class_names", tuple(map(str, self.class_names)) or tuple(map(str, range(n_classes))))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one sample of ``modality``."""
        return tuple(self[modality].shape[1:])

    def __getitem__(self, modality: str) -> torch.Tensor:
        if modality not in self.modalities:
            raise ValueError(
                f"dataset {self.name!r} has no modality {modality!r}; its modalities are {self.modality_names}"
            )
        return self.modalities[modality]

    def subset(self, index) -> PairedDataset:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return PairedDataset(
            modalities={k: v[index] for k, v in self.modalities.items()},
            labels=self.labels[index],
            groups=None if self.groups is None else self.groups[index.numpy()],
            name=self.name,
            class_names=self.class_names,
        )

    def select(self, *modality_names: str) -> PairedDataset:
        """The same samples with only the named modalities."""
        return PairedDataset(
            {m: self[m] for m in modality_names}, self.labels, self.groups, self.name, self.class_names
        )

    def split(self, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Splits:
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

    def test_groups(self) -> list | None:
        """The distinct groups of the test part, sorted (for a run log); None without groups."""
        return None if self.test.groups is None else np.unique(self.test.groups).tolist()

    def parts(self) -> dict[str, PairedDataset]:
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in named.items() if v is not None}

    def map(self, function) -> Splits:
        """The same splits with ``function(part)`` applied to each present part."""
        return Splits(function(self.train), None if self.val is None else function(self.val), function(self.test))


STANDARDISE_PER = ("channel", "feature")


def standardise(
    splits: Splits, modalities: Mapping[str, str] | list[str], per: str = "channel", scale: bool = True
) -> Splits:
    """z-score modalities with the training split's statistics (never the test split's).

    ``modalities`` lists the modalities to keep, or maps new names to them (e.g.
    ``{"a": "pixels", "b": "zernike"}``). ``per="channel"`` takes one mean/std per channel
    (axis 1, pooled over samples and any trailing axes, e.g. time); ``per="feature"`` flattens
    each sample and takes one mean/std per feature. Constant inputs keep a std of 1e-6.
    ``scale=False`` keeps, renames and (per feature) flattens the modalities without z-scoring,
    for data already on a common scale: the studies' ``standardize`` parameter.
    """
    if per not in STANDARDISE_PER:
        raise ValueError(f"unknown standardisation {per!r}; valid: {', '.join(STANDARDISE_PER)}")
    names = dict(modalities) if isinstance(modalities, Mapping) else {m: m for m in modalities}
    stats = {}
    for new, old in names.items():
        train = splits.train[old] if per == "channel" else splits.train[old].flatten(1)
        axes = [0] + list(range(2, train.dim()))
        stats[new] = (train.mean(axes, keepdim=True)[0], train.std(axes, keepdim=True)[0].clamp_min(1e-6))
        if not scale:
            stats[new] = (torch.zeros_like(stats[new][0]), torch.ones_like(stats[new][1]))

    def part(data: PairedDataset) -> PairedDataset:
        views = {}
        for new, old in names.items():
            values = data[old] if per == "channel" else data[old].flatten(1)
            views[new] = (values - stats[new][0]) / stats[new][1]
        return PairedDataset(views, data.labels, data.groups, data.name, data.class_names)

    return splits.map(part)


def from_arrays(
    modalities: Mapping[str, object],
    labels,
    groups=None,
    name: str | None = None,
    *,
    relabel: bool = False,
    class_names=None,
) -> PairedDataset:
    """Build a :class:`PairedDataset` from arrays, checking them first.

    ``modalities`` maps a name to an array of shape ``(N, ...)``; ``labels`` holds N class indices
    0..K-1, every class present; ``groups`` (optional) holds N group ids, e.g. subjects.
    ``relabel=True`` accepts any labels (strings, 1..K, {0, 5, 10}) and maps their sorted distinct
    values to 0..K-1, keeping the values as ``class_names``. ``class_names`` (optional) names
    classes 0..K-1 and lets some of them be absent from the data (e.g. a subset of subjects).
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
    if relabel:
        if class_names is not None:
            raise ValueError(
                "pass relabel=True or class_names, not both: relabel=True names the classes after their labels"
            )
        class_names, label_array = np.unique(label_array, return_inverse=True)
    elif label_array.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be integers (class indices), got dtype {label_array.dtype}; pass relabel=True "
            f"to encode them as 0..K-1 (their sorted values become class_names)"
        )
    present = np.unique(label_array)
    if class_names is None and not np.array_equal(present, np.arange(len(present))):
        raise ValueError(
            f"labels must be the class indices 0..K-1 with every class present; found {len(present)} distinct "
            f"labels {_listed(present)}. Pass relabel=True to map them to 0..{len(present) - 1} (the labels "
            f"become class_names), or class_names=[...] if some classes are absent from the data"
        )
    if class_names is not None and not 0 <= present[0] <= present[-1] < len(class_names):
        raise ValueError(f"labels must index class_names, 0..{len(class_names) - 1}; found labels {_listed(present)}")

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
        if 0 in array.shape[1:]:
            raise ValueError(
                f"modality {modality!r} has samples of shape {array.shape[1:]}, which hold no values; "
                f"give it at least one feature or leave it out"
            )
        if not np.all(np.isfinite(array)):
            bad = int((~np.isfinite(array.reshape(n, -1))).any(axis=1).sum())
            raise ValueError(f"modality {modality!r} contains NaN or infinite values in {bad} samples")
        tensors[modality] = torch.from_numpy(np.ascontiguousarray(array))

    group_array = None
    if groups is not None:
        group_array = np.asarray(groups)
        if group_array.shape != (n,):
            raise ValueError(f"groups must have shape ({n},) like labels, got {group_array.shape}")
    labels_tensor = torch.from_numpy(label_array.astype(np.int64))
    return PairedDataset(
        tensors, labels_tensor, group_array, name or "custom", () if class_names is None else class_names
    )


def _listed(values, limit: int = 10) -> str:
    """``[0, 5, 10]``, or the first ``limit`` values and how many there are."""
    shown = ", ".join(str(value) for value in values[:limit])
    return f"[{shown}]" if len(values) <= limit else f"[{shown}, ...] ({len(values)} in all)"


SPLIT_STREAM = "split"


def split_dataset(dataset: PairedDataset, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Splits:
    """Seeded stratified split; group-disjoint (every group in one part only) when groups exist.

    Every class must be able to appear in every part. The test and validation parts are shuffled
    with the ``"test"`` and ``"val"`` parts of :func:`run_seeds` (stream ``"split"``), so no seed
    shuffles with another seed's state (as when seed s drew its validation part with the state
    s + 1 that seed s + 1 drew its test part with). With groups, seeds 0..k-1 test on the k
    disjoint folds of one group k-fold (k about ``1 / test_fraction``); later seeds warn.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"need 0 < test_fraction < 1, 0 <= val_fraction < 1 and their sum < 1; "
            f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    _check_class_sizes(dataset, n_parts=2 if val_fraction == 0 else 3)
    index = np.arange(len(dataset))
    labels = dataset.labels.numpy()
    if dataset.groups is None:
        from sklearn.model_selection import train_test_split  # deferred: a slow import most callers never need

        rest, test = train_test_split(
            index, test_size=test_fraction, stratify=labels, random_state=run_state(seed, SPLIT_STREAM, "test")
        )
        if val_fraction == 0:
            train, val = rest, None
        else:
            train, val = train_test_split(
                rest,
                test_size=val_fraction / (1 - test_fraction),
                stratify=labels[rest],
                random_state=run_state(seed, SPLIT_STREAM, "val"),
            )
    else:
        rest, test, n_folds = _group_fold(index, labels, dataset.groups, test_fraction, seed, "test")
        if seed >= n_folds:
            warnings.warn(
                f"dataset {dataset.name!r}: its groups give {n_folds} distinct, disjoint test sets (seeds "
                f"0..{n_folds - 1}); seed {seed} reshuffles the groups, so its test groups overlap an earlier "
                f"seed's. Use at most {n_folds} seeds, or a smaller test_fraction for more folds",
                stacklevel=2,
            )
        if val_fraction == 0:
            train, val = rest, None
        else:
            train, val, _ = _group_fold(rest, labels, dataset.groups, val_fraction / (1 - test_fraction), seed, "val")
        left_out = np.setdiff1d(labels, labels[train])
        if len(left_out):
            raise ValueError(
                f"the group-disjoint split of seed {seed} leaves {_class(dataset, left_out[0])} out of training: "
                f"all its groups went to validation or test, so it is never learnt. Its groups are too few or "
                f"confounded with the labels; use groups that cut across the classes, smaller val/test "
                f"fractions, or split without groups"
            )
    return Splits(
        train=dataset.subset(np.sort(train)),
        val=None if val is None else dataset.subset(np.sort(val)),
        test=dataset.subset(np.sort(test)),
    )


def _class(dataset: PairedDataset, label) -> str:
    name = dataset.class_names[label]
    return f"class {label}" if name == str(label) else f"class {label} ({name!r})"


def _check_class_sizes(dataset: PairedDataset, n_parts: int) -> None:
    """Every class needs a sample (with groups, a group) for each of the ``n_parts`` parts."""
    labels = dataset.labels.numpy()
    for label in np.unique(labels):
        members = labels == label
        if dataset.groups is None and members.sum() < n_parts:
            raise ValueError(
                f"{_class(dataset, label)} has {members.sum()} sample(s); a stratified split into {n_parts} parts "
                f"needs at least {n_parts} samples per class so that it appears in every part. Add samples of "
                f"this class, merge it into another or drop it"
            )
        if dataset.groups is None:
            continue
        n_groups = len(np.unique(dataset.groups[members]))
        if n_groups < n_parts:
            raise ValueError(
                f"{_class(dataset, label)} has {members.sum()} sample(s) in only {n_groups} group(s); a "
                f"group-disjoint split into {n_parts} parts needs every class in at least {n_parts} groups. If "
                f"the groups follow the classes (e.g. one subject per class), they are confounded with the "
                f"labels: use groups that cut across the classes, or split without groups. Otherwise add groups "
                f"with this class, merge it into another or drop it"
            )


def _group_fold(index, labels, groups, fraction, seed, part):
    """Hold out one of k (about ``1 / fraction``) stratified group folds for ``part`` ("test" or
    "val"); returns (kept, held, k).

    Seeds 0..k-1 hold out the k folds of one fixed assignment (drawn from ``part`` of run 0 of
    stream ``"split"``), so they hold out disjoint groups; seed s >= k holds out fold s mod k of the
    assignment drawn from run s // k.
    """
    group_ids = groups[index]
    n_groups = len(np.unique(group_ids))
    n_splits = int(round(1 / fraction))
    if n_groups < 2 or n_splits < 2:
        raise ValueError(f"cannot make a group-disjoint split of {n_groups} groups with fraction {fraction:.2f}")
    n_splits = min(n_splits, n_groups)
    from sklearn.model_selection import StratifiedGroupKFold  # deferred, as above

    shuffle = run_state(seed // n_splits, SPLIT_STREAM, part)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=shuffle)
    kept, held = list(folds.split(index, labels[index], group_ids))[seed % n_splits]
    return index[kept], index[held], n_splits
