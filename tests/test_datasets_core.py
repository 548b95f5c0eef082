"""The paired-data protocol: validation, seeded splits, synthetic generators, the registry."""

import numpy as np
import pytest
import torch

from cmkd_lab import datasets
from cmkd_lab.datasets import from_arrays
from cmkd_lab.datasets.synthetic import gaussian_venn, mfh_overlap, mfh_table2, mfh_teacher_specific


def toy(n=120, groups=False):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n // 3)
    return from_arrays(
        {"a": rng.standard_normal((n, 4)), "b": rng.standard_normal((n, 2, 5))},
        labels,
        groups=np.arange(n) % 12 if groups else None,
        name="toy",
    )


def test_from_arrays_builds_the_protocol():
    ds = toy()
    assert set(ds.modalities) == {"a", "b"} and ds.shape("b") == (2, 5)
    assert ds.labels.dtype == torch.long and len(ds) == 120 and ds.n_classes == 3 and ds.groups is None


@pytest.mark.parametrize(
    "modalities, labels, groups, message",
    [
        ({"a": np.zeros((5, 2))}, np.zeros(4, int), None, "has 5 samples but there are 4 labels"),
        ({"a": np.array([[0.0], [np.nan]])}, [0, 1], None, "NaN or infinite values in 1 samples"),
        ({"a": np.zeros((2, 1))}, [0.5, 1.0], None, "labels must be integers"),
        ({"a": np.zeros((2, 1))}, ["x", "y"], None, "labels must be integers"),
        ({"a": np.zeros((2, 1))}, [0, -1], None, "negative label"),
        ({"a": np.zeros((2, 1))}, [0, 1], [1, 2, 3], "groups must have shape"),
        ({}, [0, 1], None, "non-empty dict"),
        ({"a": np.array([["u"], ["v"]])}, [0, 1], None, "must be numeric"),
    ],
)
def test_from_arrays_rejects_bad_input_clearly(modalities, labels, groups, message):
    with pytest.raises(ValueError, match=message):
        from_arrays(modalities, labels, groups)


def test_split_is_seeded_disjoint_and_stratified():
    ds = toy()
    first, again, other = ds.split(3), ds.split(3), ds.split(4)
    assert torch.equal(first.test.labels, again.test.labels)
    assert torch.equal(first.train.modalities["a"], again.train.modalities["a"])
    assert not torch.equal(first.train.modalities["a"], other.train.modalities["a"])
    rows = {name: {tuple(r) for r in part["a"].numpy().round(6)} for name, part in first.parts().items()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert sum(len(p) for p in first.parts().values()) == len(ds)
    for part in first.parts().values():
        counts = np.bincount(part.labels.numpy(), minlength=3)
        assert counts.max() - counts.min() <= 1


def test_split_is_group_disjoint_when_groups_exist():
    splits = toy(groups=True).split(0)
    groups = {name: set(part.groups) for name, part in splits.parts().items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"] and not groups["val"] & groups["test"]


def test_registry_lists_and_loads_with_clear_errors():
    listing = datasets.list_datasets()
    assert {"name", "kind", "available", "needs_download"} <= set(listing.columns)
    assert "gaussian_venn" in set(listing["name"])
    ds = datasets.load("gaussian_venn", n_samples=50, seed=1)
    assert len(ds) == 50
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid names: .*gaussian_venn"):
        datasets.load("nope")
    with pytest.raises(ValueError, match="unknown option.*'colour'.*valid options: n_samples"):
        datasets.load("gaussian_venn", colour=1)
    with pytest.raises(ValueError, match="no modality 'c'; its modalities are"):
        ds["c"]


def test_gaussian_venn_plants_the_shared_features_in_both_modalities():
    ds = gaussian_venn(100, shared=3, a_specific=2, b_specific=4, a_noise=1, b_noise=0, seed=5)
    assert ds.shape("a") == (6,) and ds.shape("b") == (7,)
    assert torch.equal(ds["a"][:, :3], ds["b"][:, :3])
    assert not torch.equal(ds["a"][:, 3:5], ds["b"][:, 3:5])
    assert torch.equal(gaussian_venn(100, seed=5)["a"], gaussian_venn(100, seed=5)["a"])


@pytest.mark.parametrize("overlap", [0, 4, 10])
def test_mfh_fig2_generator_layout(overlap):
    splits, ratios = mfh_overlap(overlap, seed=0)
    a, b = splits.train["a"], splits.train["b"]
    assert a.shape == (200, 25) and b.shape == (200, 50) and len(splits.test) == 1000
    shared = list(range(10 - overlap, 10))
    assert torch.equal(a[:, shared], b[:, shared])
    assert ratios["gamma"] == pytest.approx(overlap / (20 - overlap))
    assert ratios["alpha"] == ratios["beta"] == pytest.approx((10 - overlap) / (20 - overlap))


def test_mfh_fig3_and_table2_generator_layouts():
    splits, ratios = mfh_teacher_specific(20, seed=1)
    assert torch.equal(splits.train["a"][:, :10], splits.train["b"][:, :10])
    assert ratios == pytest.approx({"alpha": 20 / 30, "beta": 0.0, "gamma": 10 / 30})
    splits, ratios = mfh_table2(15, seed=42)
    a, b, y = splits.train["a"], splits.train["b"], splits.train.labels
    assert torch.equal(a[:, :15], b[:, :15])
    assert torch.equal(y, (a[:, :25].sum(1) > 0).long())
    assert ratios["gamma"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="overlap must lie in 0..10"):
        mfh_overlap(11, seed=0)
