"""Model specs, named features, and stacked models against the same models run one by one."""

import pytest
import torch

from cmkd_lab.models import ModelSpec, StackedModels, build_model

SPECS = [
    ModelSpec("linear", (12,), 3),
    ModelSpec("mlp", (12,), 3, hidden=(16, 8)),
    ModelSpec("cnn1d", (3, 20), 4, hidden=(6, 8)),
    ModelSpec("cnn2d", (1, 16, 15), 5, hidden=(4, 6)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_stacked_forward_equals_each_model_alone(spec):
    seeds = [3, 4, 5]
    stacked = StackedModels.from_seeds(spec, seeds)
    x = torch.randn(len(seeds), 7, *spec.input_shape)
    logits, features = stacked.forward(x, features=spec.layer_names())
    assert logits.shape == (3, 7, spec.n_classes)
    for i, seed in enumerate(seeds):
        alone = build_model(spec, seed)
        expected, expected_features = alone(x[i], features=spec.layer_names())
        assert torch.allclose(logits[i], expected, atol=1e-5)
        for name in spec.layer_names():
            assert torch.allclose(features[name][i], expected_features[name], atol=1e-5), name
        assert torch.equal(stacked.module(i).head.weight, alone.head.weight)


def test_the_same_seed_gives_the_same_model_and_leaves_the_global_rng_alone():
    spec = SPECS[1]
    state = torch.random.get_rng_state()
    first, second = build_model(spec, 7), build_model(spec, 7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not torch.equal(build_model(spec, 8).head.weight, first.head.weight)


def test_features_are_reachable_by_layer_name():
    spec = SPECS[2]
    assert spec.layer_names() == ["conv1", "relu1", "pool1", "conv2", "relu2", "gap", "embedding", "logits"]
    _, features = build_model(spec, 0)(torch.randn(2, 3, 20), features=["conv2", "embedding"])
    assert features["conv2"].shape == (2, 8, 10) and features["embedding"].shape == (2, 8)


def test_bad_specs_and_layer_names_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown model kind 'transformer'; valid names: cnn1d, cnn2d, linear, mlp"):
        ModelSpec("transformer", (4,), 2)
    with pytest.raises(ValueError, match="channels, height, width"):
        ModelSpec("cnn2d", (16, 15), 2, hidden=(4,))
    with pytest.raises(ValueError, match="needs its conv channels"):
        ModelSpec("cnn1d", (3, 20), 2)
    with pytest.raises(ValueError, match="unknown layer.*fc9.*layers"):
        build_model(SPECS[1], 0)(torch.randn(2, 12), features=["fc9"])
