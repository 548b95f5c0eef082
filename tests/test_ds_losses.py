"""DS-CMKD's losses (our reading) and the dimensional-structure diagnostics: golden values,
the zero cases, invariances, gradients that reduce each term, vmap, and the registered loss."""

import math

import numpy as np
import pytest
import torch
from torch.func import vmap

from cmkd_lab.analysis import metrics
from cmkd_lab.engine import TrainConfig, fit
from cmkd_lab.losses import StepOutputs, channel_independence_loss, make_loss, spatial_uniformity_loss
from cmkd_lab.models import ModelSpec
from cmkd_lab.systems import Distillation

G = torch.Generator().manual_seed(0)
FEATURES = torch.randn(16, 4, generator=G, dtype=torch.float64) @ torch.tensor(
    [[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 1.0, -0.8], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)
MAP = torch.randn(3, 2, 4, 5, generator=G, dtype=torch.float64) * 2
LOGITS = torch.randn(16, 3, generator=G)
LABELS = torch.arange(16) % 3

# Computed with numpy below (independent formulas) and pinned.
GOLDEN = {
    "channel_independence": 0.1077639550,
    "spatial_uniformity": 1.2784165247,
    "mean_abs_correlation": 0.2988860554,
    "spatial_entropy_channel0": 1.5313240342,
    "effective_rank": 3.7124407188,
}


def _numpy_correlation(features):
    f = np.asarray(features, dtype=float)
    z = (f - f.mean(0)) / np.sqrt(f.var(0) + metrics.CORRELATION_EPS)
    return z.T @ z / len(f)


def _numpy_entropy(feature_map):
    flat = np.asarray(feature_map, dtype=float).reshape(*feature_map.shape[:2], -1)
    p = np.exp(flat - flat.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return -(p * np.log(p)).sum(-1)  # (N, C)


def test_golden_values_against_direct_formulas():
    correlation = _numpy_correlation(FEATURES)
    off = correlation[~np.eye(4, dtype=bool)]
    entropy = _numpy_entropy(MAP)
    singular = np.linalg.svd(FEATURES.numpy() - FEATURES.numpy().mean(0), compute_uv=False)
    p = singular / singular.sum()
    direct = {
        "channel_independence": (off**2).mean(),
        "spatial_uniformity": (math.log(20) - entropy).mean(),
        "mean_abs_correlation": np.abs(off).mean(),
        "spatial_entropy_channel0": entropy[:, 0].mean(),
        "effective_rank": np.exp(-(p * np.log(p)).sum()),
    }
    kit = {
        "channel_independence": channel_independence_loss(FEATURES),
        "spatial_uniformity": spatial_uniformity_loss(MAP),
        "mean_abs_correlation": metrics.mean_abs_correlation(FEATURES),
        "spatial_entropy_channel0": metrics.spatial_entropy(MAP)[0],
        "effective_rank": metrics.effective_rank(FEATURES),
    }
    assert set(kit) == set(GOLDEN) == set(direct), "every golden value must be checked and every check needs one"
    for name, value in kit.items():
        assert float(value) == pytest.approx(GOLDEN[name], rel=1e-6), name
        assert float(value) == pytest.approx(direct[name], rel=1e-9), name


def test_zero_and_one_cases():
    hadamard = torch.tensor(
        [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64
    )  # orthogonal, zero-mean
    independent = hadamard.repeat(5, 1)
    assert float(channel_independence_loss(independent)) == pytest.approx(0.0, abs=1e-12)
    assert float(metrics.mean_abs_correlation(independent)) == pytest.approx(0.0, abs=1e-12)
    one_signal = torch.stack([FEATURES[:, 0], 3 * FEATURES[:, 0] + 2, -FEATURES[:, 0]], dim=1)
    assert float(channel_independence_loss(one_signal)) == pytest.approx(1.0, abs=1e-4)  # eps in the variance
    flat = torch.full((4, 3, 5, 6), 2.5)
    assert float(spatial_uniformity_loss(flat)) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(metrics.spatial_entropy(flat), torch.full((3,), math.log(30)))
    peaked = torch.zeros(1, 1, 5, 6).index_put(
        (torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), torch.tensor([3])), torch.tensor(100.0)
    )
    assert float(spatial_uniformity_loss(peaked)) == pytest.approx(math.log(30), rel=1e-4)  # the maximum
    rank_one = FEATURES[:, :1] * torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    assert float(metrics.effective_rank(rank_one)) == pytest.approx(1.0, abs=1e-6)
    assert float(metrics.effective_rank(independent)) == pytest.approx(3.0, rel=1e-9)


def test_no_nan_on_constant_channels_and_extreme_maps():
    constant = torch.cat([FEATURES[:, :2], torch.ones(16, 1, dtype=torch.float64)], 1)
    assert torch.isfinite(channel_independence_loss(constant)) and torch.isfinite(
        metrics.mean_abs_correlation(constant)
    )
    assert (
        torch.isfinite(spatial_uniformity_loss(MAP * 1e6)) and torch.isfinite(metrics.spatial_entropy(MAP * 1e6)).all()
    )


def test_invariances():
    scale, shift = (
        torch.tensor([[0.5, 7.0, 2.0, 30.0]], dtype=torch.float64),
        torch.tensor([[5.0, -3.0, 0.0, 1e3]], dtype=torch.float64),
    )
    assert float(channel_independence_loss(FEATURES * scale + shift)) == pytest.approx(
        float(channel_independence_loss(FEATURES)), rel=1e-3
    )
    assert float(channel_independence_loss(FEATURES * -1)) == pytest.approx(
        float(channel_independence_loss(FEATURES)), rel=1e-9
    )
    # uniformity: a constant added to a channel's map changes nothing (the softmax's shift invariance) ...
    per_channel = torch.randn(3, 2, 1, 1, generator=G, dtype=torch.float64) * 10
    assert float(spatial_uniformity_loss(MAP + per_channel)) == pytest.approx(
        float(spatial_uniformity_loss(MAP)), rel=1e-9
    )
    # ... but scaling does: a sharper map is less uniform, a map scaled towards 0 becomes flat
    assert spatial_uniformity_loss(MAP * 3) > spatial_uniformity_loss(MAP) > spatial_uniformity_loss(MAP * 0.1)
    # the pooled form: a map's channels are compared through their spatial means
    stacked_map = FEATURES[:, :, None, None].expand(16, 4, 3, 3)
    assert float(channel_independence_loss(stacked_map, n_spatial=2)) == pytest.approx(
        float(channel_independence_loss(FEATURES))
    )


def test_a_gradient_step_reduces_each_term():
    for loss, start in ((channel_independence_loss, FEATURES.clone()), (spatial_uniformity_loss, MAP.clone())):
        x = start.requires_grad_(True)
        before = loss(x)
        (gradient,) = torch.autograd.grad(before, x)
        assert float(loss(x.detach() - 0.1 * gradient / gradient.norm())) < float(before)


def test_the_losses_run_under_vmap_one_model_at_a_time():
    features = torch.randn(3, 16, 4, generator=G)
    maps = torch.randn(3, 8, 2, 4, 4, generator=G)
    assert torch.allclose(
        vmap(channel_independence_loss)(features), torch.stack([channel_independence_loss(f) for f in features])
    )
    assert torch.allclose(vmap(spatial_uniformity_loss)(maps), torch.stack([spatial_uniformity_loss(m) for m in maps]))
    assert torch.allclose(
        channel_independence_loss(features), vmap(channel_independence_loss)(features)
    )  # leading axes


def _step(map_layer="relu1", teacher_layer=None):
    features = {"embedding": FEATURES.float(), "relu1": MAP.float().repeat(6, 1, 1, 1)[:16]}
    teacher = {"embedding": FEATURES.float()[:, :2]} if teacher_layer else {}
    return StepOutputs(LOGITS, features, LOGITS.flip(1), teacher, LABELS)


def test_the_registered_ds_loss_names_and_weighs_its_terms():
    out = _step()
    plain = make_loss("ds", guide="none")  # DS without a teacher (the default guide is "kd")
    assert not plain.needs_teacher and plain.student_layers == ("embedding", "relu1") and plain.teacher_layers == ()
    terms = plain.terms(out, {})
    assert set(terms) == set(plain.weights()) == {"ce", "independence", "uniformity"}
    assert float(terms["independence"]) == pytest.approx(
        float(channel_independence_loss(out.student_features["embedding"]))
    )
    assert float(terms["uniformity"]) == pytest.approx(float(spatial_uniformity_loss(out.student_features["relu1"])))
    kd = make_loss("ds", guide="kd", kd_weight=0.5)
    assert kd.needs_teacher and set(kd.terms(out, {})) == {"ce", "independence", "uniformity", "kd"}
    assert kd.weights()["kd"] == 0.5
    fitnet = make_loss("ds", guide="fitnet")
    modules = fitnet.modules({"embedding": 4}, {"embedding": 2}, seed=0)
    assert set(fitnet.terms(_step(teacher_layer="embedding"), modules)) == {"ce", "independence", "uniformity", "hint"}
    assert fitnet.teacher_layers == ("embedding",)
    only_independence = make_loss("ds", guide="none", map_layer=None)
    assert set(only_independence.terms(out, {})) == set(only_independence.weights()) == {"ce", "independence"}


def test_bad_ds_options_fail_clearly():
    with pytest.raises(ValueError, match="unknown DS guide 'crd'; valid: none, kd, fitnet"):
        make_loss("ds", guide="crd")
    with pytest.raises(ValueError, match="not a \\(channels, height, width\\) map"):
        make_loss("ds", map_layer="embedding").terms(_step(), {})
    with pytest.raises(
        ValueError, match="unknown option\\(s\\) \\['beta'\\] for loss 'ds'; valid options: .*independence_weight"
    ):
        make_loss("ds", beta=1.0)


@pytest.mark.filterwarnings("ignore:.*ended at chance")  # three epochs on noise: the point is the equality
def test_per_model_weights_sweep_in_one_batched_fit_and_log_every_term():
    """CE (weights 0) and DS (weights 1) as one stacked fit: each copy ends where its own fit ends."""
    spec = ModelSpec("cnn2d", (1, 6, 6), 3, (4, 4), batch_norm=True)
    x, y = torch.randn(48, 1, 6, 6, generator=G), torch.arange(48) % 3
    config = TrainConfig(epochs=3, lr=0.05, optimizer="adam", batch_size=16)
    both = make_loss("ds", guide="none", independence_weight=(0.0, 2.0), uniformity_weight=(0.0, 2.0))
    data = {"x": x.expand(2, *x.shape), "y": y.expand(2, *y.shape)}
    batched = fit(Distillation(spec, both), data, seeds=[0, 0], config=config, progress=False)
    assert {"ce", "independence", "uniformity", "total"} <= set(batched.history)
    assert batched.history["total"][-1, 0] == pytest.approx(
        batched.history["ce"][-1, 0], rel=1e-6
    )  # CE's DS weights are 0
    for i, weight in enumerate((0.0, 2.0)):
        alone = fit(
            Distillation(spec, make_loss("ds", guide="none", independence_weight=weight, uniformity_weight=weight)),
            {"x": x[None], "y": y[None]},
            seeds=[0],
            config=config,
            progress=False,
        )
        assert np.allclose(batched.history["total"][:, i], alone.history["total"][:, 0], rtol=1e-4, atol=1e-5)


def test_structure_diagnostics_pool_maps_and_read_any_layer():
    maps = torch.randn(2, 16, 4, 3, 3, generator=G)
    pooled = maps.mean((-2, -1))
    on_map = metrics.structure_diagnostics(maps, maps)
    on_pooled = metrics.structure_diagnostics(pooled, maps)
    assert set(on_map) == {"channel_corr", "spatial_entropy", "effective_rank"}
    for name in on_map:
        assert on_map[name].shape == (2,) and torch.allclose(on_map[name], on_pooled[name])
    assert torch.allclose(on_map["spatial_entropy"], metrics.spatial_entropy(maps.double()).mean(-1))
