"""cmcd_modalities: one class latent, two fixed random maps, a knob that moves only the target."""

import numpy as np
import pytest
import torch

from cmkd_lab import datasets
from cmkd_lab.datasets.synthetic import cmcd_modalities

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
N_CLASSES = 4


def held_out_accuracy(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Logistic regression on standardised features, fitted on half and scored on the other half."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(
        features.numpy(), labels.numpy(), test_size=0.5, random_state=0, stratify=labels.numpy()
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    return model.score(x_test, y_test)


def class_means(data, modality: str) -> np.ndarray:
    return np.stack([data[modality][data.labels == k].mean(0).numpy() for k in range(data.n_classes)])


def test_shapes_labels_and_names():
    data = cmcd_modalities(0.25, seed=3, n_samples=202, source_dim=12, target_dim=20)
    assert data.modality_names == ["source", "target"]
    assert data.shape("source") == (12,) and data.shape("target") == (20,)
    assert data["source"].dtype == torch.float32 and data["target"].dtype == torch.float32
    assert data.name == "cmcd_alpha0.25" and cmcd_modalities(1, seed=0, n_samples=8).name == "cmcd_alpha1"
    counts = np.bincount(data.labels.numpy())
    assert len(counts) == N_CLASSES == data.n_classes and counts.max() - counts.min() <= 1  # balanced
    six = cmcd_modalities(0.5, seed=0, n_samples=6, n_classes=6)  # the smallest draw still has every class
    assert sorted(six.labels.tolist()) == list(range(6))


def test_only_the_target_moves_with_alpha_and_seeds_draw_new_samples():
    at = {alpha: cmcd_modalities(alpha, seed=0, n_samples=300) for alpha in ALPHAS}
    for alpha in ALPHAS[1:]:
        assert torch.equal(at[alpha]["source"], at[0.0]["source"])
        assert torch.equal(at[alpha].labels, at[0.0].labels)
        assert not torch.allclose(at[alpha]["target"], at[0.0]["target"])
    again = cmcd_modalities(0.5, seed=0, n_samples=300)
    assert torch.equal(again["target"], at[0.5]["target"])
    other_seed = cmcd_modalities(0.0, seed=1, n_samples=300)
    assert not torch.allclose(other_seed["source"], at[0.0]["source"])


def test_the_maps_and_class_means_are_fixed_across_seeds():
    first, second = (cmcd_modalities(0.3, seed=seed) for seed in (0, 1))
    other_maps = cmcd_modalities(0.3, seed=0, map_seed=1)
    for modality in ("source", "target"):
        reference = class_means(first, modality)
        # measured: about 0.07 between seeds (sampling error), about 2.6 between map seeds
        assert np.abs(class_means(second, modality) - reference).max() < 0.2
        assert np.abs(class_means(other_maps, modality) - reference).max() > 1.0


def test_target_accuracy_falls_to_chance_with_alpha_while_the_source_stays_high():
    # measured at seed 0: target 0.997, 0.986, 0.854, 0.478, 0.236; source 0.999 at every alpha
    target_accuracy = []
    for alpha in ALPHAS:
        data = cmcd_modalities(alpha, seed=0, n_samples=2000)
        target_accuracy.append(held_out_accuracy(data["target"], data.labels))
    assert target_accuracy[0] > 0.9
    assert all(later < earlier for earlier, later in zip(target_accuracy, target_accuracy[1:])), target_accuracy
    assert target_accuracy[-1] <= 1 / N_CLASSES + 0.1
    assert held_out_accuracy(data["source"], data.labels) > 0.9  # the same source array at every alpha


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match=r"alpha .* must lie in \[0, 1\]"):
        cmcd_modalities(alpha, seed=0)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="n_classes must lie in 2..latent_dim"):
        cmcd_modalities(0.5, seed=0, n_classes=9, latent_dim=8)
    with pytest.raises(ValueError, match="n_samples must be at least n_classes"):
        cmcd_modalities(0.5, seed=0, n_samples=3)


def test_registered_as_a_synthetic_dataset():
    listing = datasets.list_datasets().set_index("name")
    assert listing.loc["cmcd_modalities", "kind"] == "synthetic"
    assert "cmcd_modalities" not in datasets.real_dataset_names()
    loaded = datasets.load("cmcd_modalities", alpha=0.5, seed=0, n_samples=400)
    direct = cmcd_modalities(0.5, seed=0, n_samples=400)
    assert loaded.name == "cmcd_alpha0.5" and torch.equal(loaded["target"], direct["target"])
    assert len(datasets.load("cmcd_modalities", alpha=0.5, seed=0)) == 3000
    with pytest.raises(ValueError, match="unknown option.*'beta'.*valid options: alpha, seed"):
        datasets.load("cmcd_modalities", alpha=0.5, seed=0, beta=1)
