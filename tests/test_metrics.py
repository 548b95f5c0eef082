"""NTD, CMD and the rank correlation: golden values from direct formulas, and their properties."""

import math

import numpy as np
import pytest
import torch

from cmkd_lab.analysis.metrics import (
    central_moment_discrepancy,
    non_target_divergence,
    non_target_log_probs,
    rank_correlation,
)


def _logits(seed, shape=(64, 5), scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _direct_ntd(teacher, student, labels, variant):
    """Per-sample NTD in numpy: drop the target column, softmax the rest, then the formula."""
    values = []
    for t, s, y in zip(teacher.numpy().astype(float), student.numpy().astype(float), labels.numpy()):
        t, s = np.delete(t, y), np.delete(s, y)
        p, q = np.exp(t - t.max()), np.exp(s - s.max())
        p, q = p / p.sum(), q / q.sum()
        m = (p + q) / 2

        def kl(a, b):
            return float(np.sum(a * np.log(a / b)))

        values.append(0.5 * (kl(p, m) + kl(q, m)) if variant == "js" else 0.5 * (kl(m, q) + kl(m, p)))
    return np.array(values)


@pytest.mark.parametrize("variant", ["js", "official"])
def test_ntd_matches_direct_formula(variant):
    teacher, student = _logits(0), _logits(1)
    labels = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    per_sample = non_target_divergence(teacher, student, labels, variant=variant, reduction="none")
    np.testing.assert_allclose(
        per_sample.numpy(), _direct_ntd(teacher, student, labels, variant), rtol=1e-9, atol=1e-12
    )
    mean = non_target_divergence(teacher, student, labels, variant=variant)
    assert mean.item() == pytest.approx(per_sample.mean().item())


def test_ntd_zero_for_identical_and_ignores_the_target_logit():
    logits = _logits(3)
    labels = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(4))
    assert non_target_divergence(logits, logits.clone(), labels).abs().max() < 1e-12
    # changing only the target logit leaves the non-target distribution, hence NTD, unchanged
    shifted = logits.clone()
    shifted[torch.arange(64), labels] += 7.0
    assert non_target_divergence(logits, shifted, labels).item() == pytest.approx(0.0, abs=1e-12)


def test_js_bounded_by_ln2_and_symmetric_official_is_not_bounded():
    # extreme, disjoint non-target distributions
    teacher = torch.tensor([[0.0, 60.0, -60.0, -60.0]] * 4)
    student = torch.tensor([[0.0, -60.0, 60.0, -60.0]] * 4)
    labels = torch.zeros(4, dtype=torch.long)
    js = non_target_divergence(teacher, student, labels, reduction="none")
    assert torch.all(js <= math.log(2) + 1e-12) and js[0].item() == pytest.approx(math.log(2), rel=1e-6)
    official = non_target_divergence(teacher, student, labels, variant="official")
    assert official.item() > math.log(2)
    a, b = _logits(5, (3, 50, 6)), _logits(6, (3, 50, 6))
    labels = torch.randint(0, 6, (3, 50), generator=torch.Generator().manual_seed(7))
    forward, backward = non_target_divergence(a, b, labels), non_target_divergence(b, a, labels)
    assert forward.shape == (3,)
    torch.testing.assert_close(forward, backward)
    assert torch.all(forward <= math.log(2))


def test_ntd_no_nan_on_extreme_logits():
    teacher = torch.tensor([[1e4, -1e4, 0.0, 1e4], [-1e4, 1e4, 1e4, -1e4]])
    value = non_target_divergence(teacher, -teacher, torch.tensor([0, 1]), reduction="none")
    assert torch.isfinite(value).all()


def test_ntd_needs_three_classes_and_valid_options():
    with pytest.raises(ValueError, match="at least 3 classes"):
        non_target_divergence(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="valid: js, official"):
        non_target_divergence(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), variant="jsd")
    log_probs = non_target_log_probs(torch.zeros(2, 4), torch.tensor([1, 3]))
    assert torch.isinf(log_probs[0, 1]) and torch.allclose(log_probs[0, [0, 2, 3]].exp(), torch.full((3,), 1 / 3))


def test_cmd_golden_zero_and_symmetric():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 4)), rng.gamma(2.0, size=(80, 4))
    expected = np.linalg.norm(x.mean(0) - y.mean(0)) + sum(
        np.linalg.norm(((x - x.mean(0)) ** k).mean(0) - ((y - y.mean(0)) ** k).mean(0)) for k in range(2, 6)
    )
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert central_moment_discrepancy(tx, ty).item() == pytest.approx(expected, rel=1e-10)
    assert central_moment_discrepancy(tx, ty).item() == pytest.approx(central_moment_discrepancy(ty, tx).item())
    assert central_moment_discrepancy(tx, tx.clone()).item() == 0.0
    # fewer moments, smaller (each term is a non-negative norm)
    assert central_moment_discrepancy(tx, ty, n_moments=2) < central_moment_discrepancy(tx, ty)
    batched = central_moment_discrepancy(torch.stack([tx[:80], ty]), torch.stack([ty, ty]))
    assert batched.shape == (2,) and batched[1].item() == 0.0
    with pytest.raises(ValueError, match="one dimension"):
        central_moment_discrepancy(tx, ty[:, :3])


def test_rank_correlation_interval():
    x = np.arange(30.0)
    result = rank_correlation(x, -x + np.random.default_rng(0).normal(scale=3, size=30), n_boot=300)
    assert result["rho"] < -0.8 and result["low"] <= result["rho"] <= result["high"] and result["high"] < 0
    with pytest.raises(ValueError):
        rank_correlation([1, 2], [3, 4])
