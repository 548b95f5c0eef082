"""Model specs, named features, and stacked models against the same models run one by one."""

import pytest
import torch

from cmkd_lab.engine import Edit, Stack
from cmkd_lab.models import ModelSpec, build_model

SPECS = [
    ModelSpec("linear", (12,), 3),
    ModelSpec("mlp", (12,), 3, hidden=(16, 8)),
    ModelSpec("cnn1d", (3, 20), 4, hidden=(6, 8)),
    ModelSpec("cnn2d", (1, 16, 15), 5, hidden=(4, 6)),
    ModelSpec(
        "cnn2d", (2, 9, 8), 3, hidden=(4, 6, 8), batch_norm=True, residual=True, downsample="stride", dropout=0.2
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind + ("-residual" if s.residual else ""))
def test_stacked_forward_equals_each_model_alone(spec):
    seeds = [3, 4, 5]
    stacked = Stack.from_seeds(spec, seeds)
    x = torch.randn(len(seeds), 7, *spec.input_shape)
    logits, features = stacked(x, features=spec.layer_names())
    assert logits.shape == (3, 7, spec.n_classes)
    for i, seed in enumerate(seeds):
        alone = build_model(spec, seed).eval()
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
    with pytest.raises(ValueError, match="unknown downsample 'avg'; valid: pool, stride"):
        ModelSpec("cnn1d", (3, 20), 2, hidden=(4,), downsample="avg")
    with pytest.raises(ValueError, match="residual stages and downsampling apply to cnn1d/cnn2d"):
        ModelSpec("mlp", (3,), 2, hidden=(4,), residual=True)
    with pytest.raises(ValueError, match="kernel_size must be odd.*got 4"):  # a residual sum needs 'same' padding
        ModelSpec("cnn1d", (3, 20), 2, hidden=(4,), kernel_size=4, residual=True)
    with pytest.raises(ValueError, match="unknown layer.*fc9.*layers"):
        build_model(SPECS[1], 0)(torch.randn(2, 12), features=["fc9"])


def test_edits_replace_a_layer_output_per_copy():
    spec = SPECS[1]
    stacked = Stack.from_seeds(spec, [0, 1])
    x = torch.randn(2, 5, 12)
    replacement = torch.randn(2, 5, 8)
    logits, _ = stacked(x, edits={"embedding": Edit(lambda _output, new: new, (replacement,))})
    for i in range(2):
        expected, _ = build_model(spec, i).eval()(x[i], edits={"embedding": lambda _output, r=replacement[i]: r})
        assert torch.allclose(logits[i], expected, atol=1e-6)
        assert torch.allclose(expected, stacked.module(i).head(replacement[i]), atol=1e-6)


def test_any_module_stacks_and_copies_come_back_as_modules():
    stacked = Stack.from_seeds(lambda: torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)), [0, 1, 2])
    x = torch.randn(3, 6, 4)
    out = stacked(x)
    assert out.shape == (3, 6, 3)
    for i in range(3):
        assert torch.allclose(out[i], stacked.module(i)(x[i]), atol=1e-6)
    assert stacked.subset([2]).n_models == 1 and stacked.repeat(2).n_models == 6
    assert torch.equal(
        Stack.concat([stacked, stacked.subset([0])]).params["0.weight"][3], stacked.params["0.weight"][0]
    )
