"""Golden values and properties of the losses (pure functions and the registry)."""

import math

import pytest
import torch
import torch.nn.functional as F

from cmkd_lab import losses
from cmkd_lab.losses import LOSSES, StepOutputs, make_loss

STUDENT = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, -0.3, 1.5], [-2.0, 1.0, 0.0, 3.0]])
TEACHER = torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.5, -0.5, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
LABELS = torch.tensor([0, 3, 2])
PROJECTOR = (torch.tensor([[0.5, -0.5, 0.0, 1.0], [1.0, 0.0, 0.5, -1.0]]), torch.tensor([0.1, -0.2]))

# Computed once with torch.nn.functional (F.cross_entropy, F.kl_div) and mdistiller's DKD formula.
GOLDEN = {
    "cross_entropy": 1.3464303016662598,
    "kd_batchmean_T2": 0.27913883328437805,
    "kd_mean_T2": 0.06978470832109451,
    "kd_batchmean_T2_t2": 1.1165553331375122,
    "dkd_tckd_T4": 0.3603755235671997,
    "dkd_nckd_T4": 1.0339168310165405,
    "feature_regression": 6.137916564941406,
}
# The weighted total of each registered loss on the fixed step below, with the options given.
REGISTRY_OPTIONS = {
    "ce": {},
    "kd": {"temperature": 2.0, "reduction": "batchmean"},
    "dkd": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0},
    "fitnet": {},
    "rkd": {},
    "pkt": {},
    "sp": {},
    "crd": {},
    "ds": {"map_layer": None, "guide": "none"},  # this step has no feature map: the independence term only
}
REGISTRY_GOLDEN = {
    "ce": GOLDEN["cross_entropy"],
    "kd": GOLDEN["cross_entropy"] + GOLDEN["kd_batchmean_T2_t2"],  # T² by default (losses.T2_SCALE)
    "dkd": GOLDEN["cross_entropy"] + GOLDEN["dkd_tckd_T4"] + 8.0 * GOLDEN["dkd_nckd_T4"],
    "fitnet": GOLDEN["cross_entropy"] + GOLDEN["feature_regression"],
    # Recorded from the kit (default weights; CRD's embedding heads from seed 0); the terms
    # themselves are checked against direct formulas in tests/test_ntdh_losses.py.
    "rkd": 3.385488510131836,
    "pkt": 1202.1165771484375,
    "sp": 1035.330810546875,
    "crd": 3.8917763233184814,
    # CE + channel independence of the student's features (the term's own golden values and
    # properties: tests/test_ds_losses.py)
    "ds": 2.0463078022003174,
}


def test_golden_values_of_the_pure_functions():
    values = {
        "cross_entropy": losses.cross_entropy(STUDENT, LABELS),
        "kd_batchmean_T2": losses.kd_loss(STUDENT, TEACHER, 2.0, "batchmean", t2_scale=False),
        "kd_mean_T2": losses.kd_loss(STUDENT, TEACHER, 2.0, "mean", t2_scale=False),
        "kd_batchmean_T2_t2": losses.kd_loss(STUDENT, TEACHER, 2.0, "batchmean", t2_scale=True),
        "dkd_tckd_T4": losses.dkd_loss(STUDENT, TEACHER, LABELS, 4.0)[0],
        "dkd_nckd_T4": losses.dkd_loss(STUDENT, TEACHER, LABELS, 4.0)[1],
        "feature_regression": losses.feature_regression_loss(F.linear(STUDENT, *PROJECTOR), TEACHER[:, :2]),
    }
    assert set(values) == set(GOLDEN), "every golden value must be checked and every check needs a golden value"
    for name, value in values.items():
        assert value.item() == pytest.approx(GOLDEN[name], rel=1e-5), name


def test_every_registered_loss_has_a_golden_total():
    step = StepOutputs(STUDENT, {"embedding": STUDENT}, TEACHER, {"embedding": TEACHER[:, :2]}, LABELS)
    for name in LOSSES.names():
        assert name in REGISTRY_GOLDEN, f"registered loss {name!r} has no golden value"
        loss = make_loss(name, **REGISTRY_OPTIONS[name])
        modules = loss.modules({"embedding": 4}, {"embedding": 2}, 0)
        if name == "fitnet":
            modules = {"projector": lambda features: F.linear(features, *PROJECTOR)}
        terms = loss.terms(step, modules)
        weights = loss.weights()
        assert set(terms) == set(weights), f"{name}: every term needs a weight"
        total = sum(float(torch.as_tensor(weights[k])) * v for k, v in terms.items())
        assert total.item() == pytest.approx(REGISTRY_GOLDEN[name], rel=1e-5), name


def test_kd_matches_torch_kl_div_for_both_reductions():
    for reduction in ("batchmean", "mean"):
        expected = F.kl_div(F.log_softmax(STUDENT / 3, 1), F.softmax(TEACHER / 3, 1), reduction=reduction)
        assert losses.kd_loss(STUDENT, TEACHER, 3.0, reduction, t2_scale=False).item() == pytest.approx(
            expected.item(), rel=1e-5
        )


def test_kd_is_non_negative_and_zero_when_student_equals_teacher():
    logits = torch.randn(5, 64, 7)
    assert torch.all(losses.kd_loss(logits, torch.randn(5, 64, 7), 1.5, "batchmean") >= 0)
    assert torch.allclose(losses.kd_loss(logits, logits, 1.5, "batchmean"), torch.zeros(5), atol=1e-6)
    tckd, nckd = losses.dkd_loss(logits, logits, torch.randint(0, 7, (5, 64)), 4.0)
    assert torch.allclose(tckd, torch.zeros(5), atol=1e-6) and torch.allclose(nckd, torch.zeros(5), atol=1e-6)


def test_t2_scaling_scales_the_gradient_by_t_squared():
    def gradient(t2):
        student = STUDENT.clone().requires_grad_(True)
        losses.kd_loss(student, TEACHER, 4.0, "batchmean", t2_scale=t2).backward()
        return student.grad

    assert torch.allclose(gradient(True), 16.0 * gradient(False), rtol=1e-5)


def test_dkd_terms_add_up_to_a_direct_computation():
    """TCKD + NCKD decompose KD: KL = TCKD + (1 - p_t^target) · NCKD, per sample (DKD paper, Eq. 3)."""
    T = 2.0
    tckd, nckd = losses.dkd_loss(STUDENT.unsqueeze(1), TEACHER.unsqueeze(1), LABELS.unsqueeze(1), T, t2_scale=False)
    p_teacher_target = F.softmax(TEACHER / T, 1).gather(1, LABELS[:, None]).squeeze(1)
    kl = losses.kl_divergence(F.log_softmax(TEACHER / T, 1), F.log_softmax(STUDENT / T, 1))
    assert torch.allclose(tckd + (1 - p_teacher_target) * nckd, kl, atol=1e-5)


def test_per_model_losses_equal_single_model_losses():
    stacked_s, stacked_t = torch.randn(4, 10, 3), torch.randn(4, 10, 3)
    labels = torch.randint(0, 3, (4, 10))
    temperatures = torch.tensor([0.5, 1.0, 2.0, 4.0])
    stacked = losses.kd_loss(stacked_s, stacked_t, temperatures, "batchmean", t2_scale=True)
    for i in range(4):
        single = losses.kd_loss(stacked_s[i], stacked_t[i], float(temperatures[i]), "batchmean", t2_scale=True)
        assert stacked[i].item() == pytest.approx(single.item(), rel=1e-5)
    assert torch.allclose(losses.cross_entropy(stacked_s, labels)[2], F.cross_entropy(stacked_s[2], labels[2]))


def test_no_nan_on_extreme_logits():
    student = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], requires_grad=True)
    teacher = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 0.0, -1e4]])
    labels = torch.tensor([0, 2])
    terms = [
        losses.cross_entropy(student, labels),
        losses.kd_loss(student, teacher, 1.0, "batchmean"),
        *losses.dkd_loss(student, teacher, labels, 4.0),
    ]
    total = sum(terms)
    total.backward()
    assert all(torch.isfinite(t) for t in terms)
    assert torch.all(torch.isfinite(student.grad))


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid names: .*kd"):
        make_loss("hinton")
    with pytest.raises(ValueError, match="needs explicit option.*reduction"):
        make_loss("kd", temperature=1.0)
    with pytest.raises(ValueError, match="unknown option.*temprature.*valid options"):
        make_loss("kd", temprature=1.0, reduction="mean")
    with pytest.raises(ValueError, match="valid: batchmean, mean"):
        make_loss("kd", temperature=1.0, reduction="sum")


def test_kd_reduction_mean_is_the_batchmean_divided_by_classes():
    ratio = losses.kd_loss(STUDENT, TEACHER, 1.0, "batchmean") / losses.kd_loss(STUDENT, TEACHER, 1.0, "mean")
    assert ratio.item() == pytest.approx(STUDENT.shape[1])
    assert math.isclose(GOLDEN["kd_batchmean_T2"] / GOLDEN["kd_mean_T2"], 4.0, rel_tol=1e-5)


def test_kd_and_dkd_share_one_t2_convention():
    """Every KD loss scales by T² unless told otherwise (``losses.T2_SCALE``): a temperature changes
    how soft the targets are, not how much the term weighs."""
    T = 4.0
    unscaled = losses.kd_loss(STUDENT, TEACHER, T, "batchmean", t2_scale=False).item()
    assert losses.kd_loss(STUDENT, TEACHER, T, "batchmean").item() == pytest.approx(T**2 * unscaled, rel=1e-5)
    masked = losses.masked_kd_loss(STUDENT, TEACHER, torch.ones(len(STUDENT)), T, "batchmean")
    assert masked.item() == pytest.approx(T**2 * unscaled, rel=1e-5)
    unscaled_dkd = losses.dkd_loss(STUDENT, TEACHER, LABELS, T, t2_scale=False)
    for scaled, plain in zip(losses.dkd_loss(STUDENT, TEACHER, LABELS, T), unscaled_dkd):
        assert scaled.item() == pytest.approx(T**2 * plain.item(), rel=1e-5)
    kd = make_loss("kd", temperature=T, reduction="batchmean")
    assert kd.t2_scale is make_loss("dkd").t2_scale is losses.T2_SCALE


def test_every_notebook_offers_the_kd_reductions_of_the_losses():
    from cmkd_lab.app.notebook import list_notebooks, parameters_class

    offered = {path.stem: parameters_class(path.stem).choices.get("reduction") for path in list_notebooks()}
    offered = {stem: tuple(choices) for stem, choices in offered.items() if choices is not None}
    assert len(offered) >= 4 and all(choices == losses.KD_REDUCTIONS for choices in offered.values()), offered


def test_a_per_model_temperature_follows_the_logits_device():
    """A temperature per model given on the CPU scales logits that live elsewhere (the meta device
    stands in for CUDA, which this machine lacks): every tensor is built on the logits' device."""
    student, teacher = torch.randn(2, 5, 3, device="meta"), torch.randn(2, 5, 3, device="meta")
    labels = torch.zeros(2, 5, dtype=torch.long, device="meta")
    temperatures = torch.tensor([1.0, 2.0])
    assert losses.kd_loss(student, teacher, temperatures, "batchmean", t2_scale=True).device.type == "meta"
    tckd, nckd = losses.dkd_loss(student, teacher, labels, temperatures, t2_scale=True)
    assert tckd.device.type == nckd.device.type == "meta"


def test_the_no_kd_baseline_is_named_apart_from_the_base_class():
    from cmkd_lab.models import ModelSpec
    from cmkd_lab.systems import Distillation

    assert LOSSES.get("ce") is losses.Vanilla and losses.Vanilla is not losses.Distiller
    assert issubclass(losses.Vanilla, losses.Distiller)
    assert losses.Distiller not in [LOSSES.get(name) for name in LOSSES.names()]
    assert isinstance(Distillation(ModelSpec("linear", (4,), 2)).loss, losses.Vanilla)
    assert set(make_loss("ce").terms(StepOutputs(STUDENT, {}, None, {}, LABELS), {})) == {"ce"}
