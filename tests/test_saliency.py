"""Algorithm 1 (cmkd_lab.analysis.saliency): closed form = forward pass, recovery of planted channels, edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmkd_lab.analysis.saliency import (
    algorithm1,
    channel_mask,
    channel_means,
    channel_recovery,
    joint_fit,
    mean_replacement,
    min_max,
    permutation_saliency,
    top_channels,
)
from cmkd_lab.datasets.synthetic import mfh_table2
from cmkd_lab.engine import Edit, Stack, TrainConfig
from cmkd_lab.models import ModelSpec


def _table2_stack(xs2=10, runs=4):
    draws = [mfh_table2(xs2, 42 + 3 * r)[0].train for r in range(runs)]
    return (
        torch.stack([d["a"] for d in draws]),
        torch.stack([d["b"] for d in draws]),
        torch.stack([d.labels for d in draws]),
    )


@pytest.mark.parametrize(
    "kind, hidden, layer", [("linear", (), "input"), ("mlp", (8,), "embedding"), ("mlp", (8,), "relu1")]
)
def test_closed_form_equals_forward_pass(kind, hidden, layer):
    xa, xb, y = _table2_stack(runs=2)
    teacher_spec = ModelSpec(kind, (50,), 2, hidden)
    joint = joint_fit(
        teacher_spec,
        xa,
        ModelSpec("linear", (50,), 2),
        xb,
        y,
        seeds=[0, 1],
        config=TrainConfig(epochs=20, lr=0.01, momentum=0.9),
    )
    teacher, student = joint.modules["teacher"], joint.modules["student"]
    fast = permutation_saliency(teacher, xa, student, xb, layer=layer, repeats=3, seed=5)
    slow = permutation_saliency(teacher, xa, student, xb, layer=layer, repeats=3, seed=5, closed_form=False)
    assert fast.shape == (2, 50 if layer == "input" else 8)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)


def test_hidden_layer_not_feeding_head_runs_the_network():
    xa, xb, y = _table2_stack(runs=2)
    spec = ModelSpec("mlp", (50,), 2, (8, 6))
    joint = joint_fit(
        spec, xa, ModelSpec("linear", (50,), 2), xb, y, seeds=[0, 1], config=TrainConfig(epochs=5, lr=0.01)
    )
    scores = permutation_saliency(joint.modules["teacher"], xa, joint.modules["student"], xb, layer="fc1", repeats=2)
    assert scores.shape == (2, 8) and torch.isfinite(scores).all()


def test_algorithm1_recovers_the_shared_channels():
    xa, xb, y = _table2_stack(xs2=10, runs=4)
    spec = ModelSpec("linear", (50,), 2)
    saliency = algorithm1(
        spec, xa, spec, xb, y, seeds=range(4), repeats=10, config=TrainConfig(epochs=300, lr=0.01, momentum=0.9)
    )
    recovery = channel_recovery(saliency.modality_general(10), range(10))
    assert recovery.mean() >= 0.9, recovery
    assert saliency.scores.min() == 0 and saliency.scores.max() == 1
    assert set(saliency.joint.history) == {"ce_a", "ce_b", "mse", "total"}


def test_min_max_top_and_recovery():
    scores = torch.tensor([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    normalised = min_max(scores)
    torch.testing.assert_close(normalised[0], torch.tensor([1.0, 0.0, 0.5]))
    assert torch.equal(normalised[1], torch.zeros(3))
    top = top_channels(scores[:1], 2)
    assert sorted(top[0].tolist()) == [0, 2]
    np.testing.assert_allclose(channel_recovery(top, [0, 1]), [0.5])
    assert channel_mask(top, 3).tolist() == [[True, False, True]]
    with pytest.raises(ValueError):
        top_channels(scores, 4)


def test_mean_replacement_edit():
    spec = ModelSpec("mlp", (4,), 3, (5,))
    models = Stack.from_seeds(spec, [0, 1])
    x = torch.randn(2, 9, 4)
    means = channel_means(models, x, "embedding")
    nothing = mean_replacement(torch.zeros(2, 5, dtype=torch.bool), means)
    torch.testing.assert_close(models.forward(x, edits={"embedding": nothing})[0], models.forward(x)[0])
    everything = mean_replacement(torch.ones(2, 5, dtype=torch.bool), means)
    logits = models.forward(x, edits={"embedding": everything})[0]
    assert torch.allclose(logits, logits[:, :1].expand_as(logits))  # every sample sees the same embedding
    with pytest.raises(ValueError, match="edit logits"):
        models.forward(x, edits={"logits": Edit(lambda h: h)})
