"""Modality-distance estimates: the domain classifier's TV lower bound and the unbiased MMD²."""

import math

import numpy as np
import pytest
import torch

from cmkd_lab.analysis.metrics import domain_tv_lower_bound, mmd
from cmkd_lab.datasets.synthetic import cmcd_modalities

SHIFTS = (0.5, 1.0, 2.0, 4.0)


def gaussians(shift: float, n: int = 2000, dims: int = 8, seed: int = 0, n_b: int | None = None):
    """N(0, I) and N(shift·e_1, I) samples."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dims))
    b = rng.standard_normal((n if n_b is None else n_b, dims))
    b[:, 0] += shift
    return a, b


def direct_mmd(a: np.ndarray, b: np.ndarray, bandwidth: float) -> float:
    """The unbiased MMD² term by term."""

    def k(x, y):
        return math.exp(-float(np.sum((x - y) ** 2)) / (2 * bandwidth**2))

    m, n = len(a), len(b)
    within_a = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_b = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(x, y) for x in a for y in b) / (m * n)
    return within_a + within_b - 2 * across


def test_mmd_matches_the_direct_formula_and_the_median_heuristic():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.5
    assert mmd(a, b, bandwidth=1.3) == pytest.approx(direct_mmd(a, b, 1.3), rel=1e-10)
    pooled = np.concatenate([a, b])
    distances = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(12) for j in range(i + 1, 12)]
    median = sorted(distances)[(len(distances) - 1) // 2]  # torch's median: the lower middle value
    assert mmd(a, b) == pytest.approx(direct_mmd(a, b, median), rel=1e-10)


def test_mmd_matches_its_population_value_for_shifted_gaussians():
    # E exp(-|x - y|²/2σ²) = (σ²/(σ²+2))^{d/2} exp(-|μ|²/(2(σ²+2))) for x ~ N(0, I), y ~ N(μ, I)
    a, b = gaussians(1.0, n=2000, dims=2)
    population = 2 * (1 / 3) * (1 - math.exp(-1 / 6))  # σ = 1, d = 2, |μ| = 1: 0.102
    assert mmd(a, b, bandwidth=1.0) == pytest.approx(population, abs=0.03)  # sampling sd measured ≈ 0.013


def test_same_distribution_gives_about_zero():
    a, b = gaussians(0.0)
    # measured over 30 draws of 1000 per side: TV bound ≤ 0.07 (mean 0.017), |MMD²| ≤ 8e-4
    assert domain_tv_lower_bound(a, b) <= 0.1
    assert abs(mmd(a, b)) < 0.002
    # unequal sizes: balancing keeps a majority-class guess from scoring above chance
    a, b = gaussians(0.0, n=500, n_b=4000)
    assert domain_tv_lower_bound(a, b) <= 0.1


def test_well_separated_gaussians_give_large_distances():
    a, b = gaussians(4.0)
    assert domain_tv_lower_bound(a, b) >= 0.9
    assert mmd(a, b) > 0.2  # measured 0.41; two samples of one Gaussian give |MMD²| < 0.001


def test_tv_bound_is_tight_when_the_best_classifier_is_linear():
    # for a mean shift δ between unit Gaussians the Bayes classifier is a hyperplane, and TV = 2Φ(δ/2) - 1
    for shift in SHIFTS:
        true_tv = math.erf(shift / (2 * math.sqrt(2)))
        assert domain_tv_lower_bound(*gaussians(shift)) == pytest.approx(true_tv, abs=0.06), shift


def test_both_grow_with_the_mean_shift():
    tv = [domain_tv_lower_bound(*gaussians(shift)) for shift in SHIFTS]
    squared_mmd = [mmd(*gaussians(shift)) for shift in SHIFTS]
    for values in (tv, squared_mmd):
        assert all(later > earlier for earlier, later in zip(values, values[1:])), values


def test_seeded_symmetric_and_accepts_tensors_or_arrays():
    a, b = gaussians(1.0, n=600)
    assert domain_tv_lower_bound(a, b, seed=3) == domain_tv_lower_bound(a, b, seed=3)
    assert domain_tv_lower_bound(torch.from_numpy(a).float(), torch.from_numpy(b).float(), seed=3) == pytest.approx(
        domain_tv_lower_bound(a, b, seed=3), abs=0.01
    )
    assert mmd(a, b) == pytest.approx(mmd(b, a), rel=1e-9)
    assert mmd(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(mmd(a, b), rel=1e-12)


@pytest.mark.parametrize("estimate", [domain_tv_lower_bound, mmd])
def test_bad_inputs_give_clear_errors(estimate):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same width d, got 3 and 4"):
        estimate(rng.standard_normal((10, 3)), rng.standard_normal((10, 4)))
    with pytest.raises(ValueError, match="at least 4 samples per side, got 10 and 3"):
        estimate(rng.standard_normal((10, 3)), rng.standard_normal((3, 3)))
    with pytest.raises(ValueError, match=r"feature matrices \(N, d\)"):
        estimate(rng.standard_normal(10), rng.standard_normal(10))


def test_bad_options_give_clear_errors():
    a, b = gaussians(0.0, n=20)
    with pytest.raises(ValueError, match="test_fraction must lie strictly between 0 and 1"):
        domain_tv_lower_bound(a, b, test_fraction=1.0)
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        mmd(a, b, bandwidth=0.0)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        mmd(np.zeros((5, 2)), np.zeros((5, 2)))


def test_cmcd_target_moves_away_with_alpha_but_not_with_the_seed():
    def target(alpha, seed):
        return cmcd_modalities(alpha, seed=seed, n_samples=2000)["target"]

    # measured: 0.62 between alpha 0 and 1 (a linear classifier's bound; the true TV is larger), 0.006 between seeds
    assert domain_tv_lower_bound(target(0.0, 0), target(1.0, 0)) >= 0.5
    assert domain_tv_lower_bound(target(0.0, 0), target(0.0, 1)) <= 0.1
