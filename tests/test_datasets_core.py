"""The paired-data protocol: validation, seeded splits, synthetic generators, the registry."""

import numpy as np
import pytest
import torch

from cmkd_lab import datasets
from cmkd_lab.datasets import from_arrays, standardise
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
        ({"a": np.zeros((2, 1))}, ["x", "y"], None, r"got dtype <U1; pass relabel=True to encode them as 0..K-1"),
        ({"a": np.zeros((2, 1))}, [0, -1], None, r"found 2 distinct labels \[-1, 0\]\. Pass relabel=True"),
        (
            {"a": np.zeros((3, 1))},
            [1, 2, 3],
            None,
            r"0\.\.K-1 with every class present; found 3 distinct labels \[1, 2, 3\]",
        ),
        ({"a": np.zeros((3, 1))}, [0, 5, 10], None, r"labels \[0, 5, 10\]\. Pass relabel=True to map them to 0\.\.2"),
        ({"a": np.zeros((2, 0))}, [0, 1], None, r"modality 'a' has samples of shape \(0,\), which hold no values"),
        ({"a": np.zeros((2, 3, 0))}, [0, 1], None, r"samples of shape \(3, 0\)"),
        ({"a": np.zeros((2, 1))}, [0, 1], [1, 2, 3], "groups must have shape"),
        ({}, [0, 1], None, "non-empty dict"),
        ({"a": np.array([["u"], ["v"]])}, [0, 1], None, "must be numeric"),
    ],
)
def test_from_arrays_rejects_bad_input_clearly(modalities, labels, groups, message):
    with pytest.raises(ValueError, match=message):
        from_arrays(modalities, labels, groups)


def test_relabel_maps_any_labels_to_indices_and_keeps_their_names():
    ds = from_arrays({"a": np.zeros((4, 1))}, [10, 0, 5, 10], relabel=True)
    assert ds.labels.tolist() == [2, 0, 1, 2] and ds.class_names == ("0", "5", "10") and ds.n_classes == 3
    words = from_arrays({"a": np.zeros((3, 1))}, ["walk", "jog", "walk"], relabel=True)
    assert words.labels.tolist() == [1, 0, 1] and words.class_names == ("jog", "walk")
    assert toy().class_names == ("0", "1", "2")
    assert words.subset([0]).class_names == ("jog", "walk") and words.subset([0]).n_classes == 2
    assert words.select("a").class_names == ("jog", "walk")
    with pytest.raises(ValueError, match="pass relabel=True or class_names, not both"):
        from_arrays({"a": np.zeros((2, 1))}, [0, 1], relabel=True, class_names=["x", "y"])


def test_class_names_declare_classes_absent_from_the_data():
    ds = from_arrays({"a": np.zeros((3, 1))}, [0, 2, 2], class_names=np.array(["calm", "happy", "sad"]))
    assert ds.n_classes == 3 and ds.class_names == ("calm", "happy", "sad")
    with pytest.raises(ValueError, match=r"labels must index class_names, 0\.\.1; found labels \[0, 2\]"):
        from_arrays({"a": np.zeros((2, 1))}, [0, 2], class_names=["calm", "happy"])


def test_split_keeps_its_indices_for_a_seed():
    """Stratified splits must not move, so that recorded results stay reproducible."""
    ds = from_arrays({"i": np.arange(30)}, np.arange(30) % 3)
    splits = ds.split(0)
    assert splits.test["i"][:, 0].int().tolist() == [0, 14, 17, 21, 22]
    assert splits.val["i"][:, 0].int().tolist() == [2, 4, 5, 6, 25]
    assert ds.split(5, val_fraction=0).test["i"][:, 0].int().tolist() == [10, 14, 17, 18, 24]
    assert splits.test_groups() is None


@pytest.mark.parametrize("val_fraction, needed", [(0.15, 3), (0.0, 2)])
def test_split_names_a_class_too_small_for_every_part(val_fraction, needed):
    labels = np.r_[np.repeat([0, 1], 20), [2] * (needed - 1)]
    ds = from_arrays({"a": np.zeros(len(labels))}, labels, class_names=["x", "y", "rare"])
    message = (
        rf"class 2 \('rare'\) has {needed - 1} sample\(s\); "
        rf"a stratified split into {needed} parts needs at least {needed}"
    )
    with pytest.raises(ValueError, match=message):
        ds.split(0, val_fraction=val_fraction)
    from_arrays({"a": np.zeros(len(labels) + 1)}, np.r_[labels, 2]).split(0, val_fraction=val_fraction)


def test_group_split_names_a_class_in_too_few_groups():
    labels = np.r_[np.repeat([0, 1], 30), 2]
    ds = from_arrays({"a": np.zeros(61)}, labels, groups=np.r_[np.arange(60) % 10, 3])
    with pytest.raises(
        ValueError, match=r"class 2 has 1 sample\(s\) in only 1 group\(s\); a group-disjoint split into 3 parts"
    ):
        ds.split(0)


def test_groups_confounded_with_labels_are_refused():
    labels = np.repeat(np.arange(3), 20)
    with pytest.raises(ValueError, match="in only 1 group.*confounded with the labels"):
        from_arrays({"a": np.zeros(60)}, labels, groups=labels).split(0)
    # each class in 3 groups, yet half the groups go to test: some seed leaves the rare class out of training
    groups, labels = np.repeat(np.arange(6), 4), np.tile([0, 1, 0, 1], 6)
    labels[[0, 4, 8]] = 2
    ds = from_arrays({"a": np.zeros(24)}, labels, groups=groups)
    refused = 0
    for seed in range(2):  # test_fraction=0.5: two folds
        try:
            assert 2 in ds.split(seed, val_fraction=0.15, test_fraction=0.5).train.labels
        except ValueError as error:
            assert f"split of seed {seed} leaves class 2 out of training" in str(error)
            refused += 1
    assert refused


def test_group_splits_test_distinct_groups_per_seed():
    """30 subjects: seeds 0..6 hold out the 7 disjoint folds; seed 7 warns that they have run out."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 6)
    ds = from_arrays({"a": rng.standard_normal(180)}, np.tile(np.arange(3), 60), groups=groups)
    tests = []
    for seed in range(7):
        splits = ds.split(seed)
        assert not set(splits.val.groups) & set(splits.test_groups()) and not set(splits.train.groups) & set(
            splits.test_groups()
        )
        tests.append(set(splits.test_groups()))
    assert all(not a & b for i, a in enumerate(tests) for b in tests[i + 1 :])
    assert set().union(*tests) == set(range(30))
    with pytest.warns(UserWarning, match=r"give 7 distinct, disjoint test sets \(seeds 0\.\.6\); seed 7 reshuffles"):
        later = ds.split(7)
    assert set(later.test_groups()) != tests[0]


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
    assert (
        not groups["train"] & groups["test"]
        and not groups["train"] & groups["val"]
        and not groups["val"] & groups["test"]
    )


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


def test_standardise_uses_training_statistics_and_can_only_select():
    rng = np.random.default_rng(0)
    data = from_arrays({"a": rng.normal(5, 3, (90, 2, 4)), "b": rng.normal(size=(90, 3))}, np.arange(90) % 3)
    splits = data.split(0)
    z = standardise(splits, {"x": "a"}, per="feature")
    assert torch.allclose(z.train["x"].mean(0), torch.zeros(8), atol=1e-5)
    assert not torch.allclose(z.test["x"].mean(0), torch.zeros(8), atol=1e-3)  # test statistics are never used
    kept = standardise(splits, {"x": "a"}, per="feature", scale=False)
    assert torch.equal(kept.test["x"], splits.test["a"].flatten(1)) and kept.train.modality_names == ["x"]
