"""NTDH losses: masking weights, masked KD/DKD, RKD, PKT, SP and in-batch CRD.

Golden values come from direct formulas written here independently (numpy loops over samples,
or torch.nn.functional on 2-D inputs); properties check what masking may and may not change.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmkd_lab import losses
from cmkd_lab.losses import LOSSES, StepOutputs, make_loss

G = torch.Generator().manual_seed(0)
N, C, D_S, D_T = 12, 5, 6, 4
STUDENT = torch.randn(N, C, generator=G) * 2
TEACHER = torch.randn(N, C, generator=G) * 2
# the teacher is right on about half the samples
LABELS = torch.where(torch.arange(N) % 2 == 0, TEACHER.argmax(1), torch.randint(0, C, (N,), generator=G))
F_STUDENT = torch.randn(N, D_S, generator=G, dtype=torch.float64)
F_TEACHER = torch.randn(N, D_T, generator=G, dtype=torch.float64)
WRONG = TEACHER.argmax(1) != LABELS


def _huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d**2, d - 0.5)


def _direct_rkd(s, t):
    s, t = s.numpy(), t.numpy()
    n = len(s)

    def distances(f):
        d = np.array([[np.linalg.norm(f[i] - f[j]) for j in range(n)] for i in range(n)])
        return d / d[~np.eye(n, dtype=bool)].mean()

    def angles(f):
        out = np.zeros((n, n, n))
        for a in range(n):
            for i in range(n):
                for k in range(n):
                    u, v = f[i] - f[a], f[k] - f[a]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out[a, i, k] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out

    return _huber(distances(s), distances(t)).mean(1), _huber(angles(s), angles(t)).mean((1, 2))


def _direct_pkt(s, t, eps=1e-7):
    def conditional(f):
        f = f.numpy()
        unit = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
        sim = (unit @ unit.T + 1) / 2
        return sim / sim.sum(1, keepdims=True)

    p, q = conditional(t), conditional(s)
    return (p * np.log((p + eps) / (q + eps))).mean(1)


def _direct_sp(s, t):
    def gram(f):
        g = f.numpy() @ f.numpy().T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    return ((gram(t) - gram(s)) ** 2).sum(1) / len(s)


def _direct_crd(zs, zt, tau):
    zs, zt = F.normalize(zs, dim=1), F.normalize(zt, dim=1)
    logits = zs @ zt.T / tau
    index = torch.arange(len(zs))
    return F.cross_entropy(logits, index, reduction="none") + F.cross_entropy(logits.T, index, reduction="none")


def test_pssm_weights_follow_the_rule():
    weights = losses.pssm_weights(TEACHER, STUDENT, LABELS)
    cosine = F.cosine_similarity(TEACHER, STUDENT, dim=1)
    for i in range(N):
        if not WRONG[i]:
            assert weights[i] == 1.0
        else:
            assert weights[i] == (pytest.approx(((cosine[i] + 1) / 2).item()) if cosine[i] >= 0.996 else 0.0)
    assert WRONG.any() and (~WRONG).any(), "the fixture needs both kinds of samples"
    # a wrong teacher whose logits align with the student's keeps (almost) full weight
    aligned = losses.pssm_weights(torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([[0.0, 2.01, 1.0]]), torch.tensor([0]))
    assert aligned.item() == pytest.approx(1.0, abs=1e-4)
    assert not losses.pssm_weights(
        TEACHER.requires_grad_(False), STUDENT.clone().requires_grad_(True), LABELS
    ).requires_grad


def test_masked_kd_golden_against_kl_div_on_scaled_logits():
    weights = losses.pssm_weights(TEACHER, STUDENT, LABELS)
    w = weights[:, None]
    expected = F.kl_div(F.log_softmax(w * STUDENT / 0.7, 1), F.softmax(w * TEACHER / 0.7, 1), reduction="batchmean")
    value = losses.masked_kd_loss(STUDENT, TEACHER, weights, 0.7, "batchmean", t2_scale=False)  # NTDH's: no T²
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # all-ones weights give plain KD
    ones = losses.masked_kd_loss(STUDENT, TEACHER, torch.ones(N), 0.7, "batchmean")
    assert ones.item() == pytest.approx(losses.kd_loss(STUDENT, TEACHER, 0.7, "batchmean").item(), rel=1e-6)


def test_masking_changes_kd_and_dkd_only_on_samples_the_teacher_gets_wrong():
    # one sample per model slice: (N, 1, C) gives each sample's own loss
    s, t, y = STUDENT[:, None], TEACHER[:, None], LABELS[:, None]
    weights = losses.pssm_weights(t, s, y)
    plain = losses.kd_loss(s, t, 0.7, "batchmean")
    masked = losses.masked_kd_loss(s, t, weights, 0.7, "batchmean")
    assert torch.allclose(masked[~WRONG], plain[~WRONG])
    assert torch.all(masked[WRONG] < plain[WRONG]) and torch.allclose(masked[WRONG], torch.zeros(int(WRONG.sum())))
    for plain_term, masked_term in zip(
        losses.dkd_loss(s, t, y, 0.7), losses.dkd_loss(s, t, y, 0.7, sample_weights=weights)
    ):
        assert torch.allclose(masked_term[~WRONG], plain_term[~WRONG])
        assert torch.allclose(masked_term[WRONG], torch.zeros(int(WRONG.sum())))


def test_dkd_weighted_terms_against_a_direct_per_sample_computation():
    weights = torch.rand(N, generator=G)
    tckd, nckd = losses.dkd_loss(STUDENT, TEACHER, LABELS, 2.0, t2_scale=False, sample_weights=weights)
    per_tckd, per_nckd = losses.dkd_loss(STUDENT[:, None], TEACHER[:, None], LABELS[:, None], 2.0, t2_scale=False)
    assert tckd.item() == pytest.approx((weights * per_tckd).mean().item(), rel=1e-5)
    assert nckd.item() == pytest.approx((weights * per_nckd).mean().item(), rel=1e-5)


def test_relational_losses_golden_values():
    distance, angle = _direct_rkd(F_STUDENT, F_TEACHER)
    rkd_distance, rkd_angle = losses.rkd_loss(F_STUDENT, F_TEACHER)
    assert rkd_distance.item() == pytest.approx(distance.mean(), rel=1e-8)
    assert rkd_angle.item() == pytest.approx(angle.mean(), rel=1e-8)
    assert losses.pkt_loss(F_STUDENT, F_TEACHER).item() == pytest.approx(
        _direct_pkt(F_STUDENT, F_TEACHER).mean(), rel=1e-8
    )
    assert losses.sp_loss(F_STUDENT, F_TEACHER).item() == pytest.approx(
        _direct_sp(F_STUDENT, F_TEACHER).mean(), rel=1e-8
    )
    zs, zt = F_STUDENT[:, :4], F_TEACHER
    assert losses.crd_loss(zs, zt, 0.1).item() == pytest.approx(_direct_crd(zs, zt, 0.1).mean().item(), rel=1e-8)


def test_relational_masking_drops_exactly_the_wrong_anchors():
    """With weights ω, each relational loss is Σ ω_i ℓ_i / N over the per-anchor terms ℓ_i."""
    weights = torch.where(WRONG, 0.0, 1.0).double()
    distance, angle = _direct_rkd(F_STUDENT, F_TEACHER)
    per_anchor = {
        "rkd_distance": (lambda w: losses.rkd_loss(F_STUDENT, F_TEACHER, w)[0], distance),
        "rkd_angle": (lambda w: losses.rkd_loss(F_STUDENT, F_TEACHER, w)[1], angle),
        "pkt": (lambda w: losses.pkt_loss(F_STUDENT, F_TEACHER, w), _direct_pkt(F_STUDENT, F_TEACHER)),
        "sp": (lambda w: losses.sp_loss(F_STUDENT, F_TEACHER, w), _direct_sp(F_STUDENT, F_TEACHER)),
        "crd": (
            lambda w: losses.crd_loss(F_STUDENT[:, :4], F_TEACHER, 0.1, w),
            _direct_crd(F_STUDENT[:, :4], F_TEACHER, 0.1).numpy(),
        ),
    }
    for name, (loss, terms) in per_anchor.items():
        expected = (terms * (~WRONG).numpy()).sum() / N
        assert loss(weights).item() == pytest.approx(expected, rel=1e-8), name


def test_relational_losses_are_zero_when_student_equals_teacher_and_batch_over_models():
    features = torch.randn(3, 10, 4, generator=G)
    for value in (
        *losses.rkd_loss(features, features),
        losses.pkt_loss(features, features),
        losses.sp_loss(features, features),
    ):
        assert value.shape == (3,) and torch.allclose(value, torch.zeros(3), atol=1e-6)
    other = torch.randn(3, 10, 5, generator=G)
    stacked = losses.pkt_loss(features, other)
    assert stacked[1].item() == pytest.approx(losses.pkt_loss(features[1], other[1]).item(), rel=1e-6)


def test_new_registered_losses_train_through_their_terms():
    """Each new loss: terms and weights match; masking changes the total only through wrong samples."""
    step = StepOutputs(
        STUDENT[None],
        {"embedding": F_STUDENT.float()[None]},
        TEACHER[None],
        {"embedding": F_TEACHER.float()[None]},
        LABELS[None],
    )
    step_correct = StepOutputs(
        STUDENT[None][:, ~WRONG],
        {"embedding": F_STUDENT.float()[None][:, ~WRONG]},
        TEACHER[None][:, ~WRONG],
        {"embedding": F_TEACHER.float()[None][:, ~WRONG]},
        LABELS[None][:, ~WRONG],
    )
    options = {
        "kd": {"temperature": 0.7, "reduction": "batchmean"},
        "dkd": {"alpha": 1.0, "beta": 1.0, "temperature": 0.7},
        "fitnet": {},
        "rkd": {},
        "pkt": {},
        "sp": {},
        "crd": {"embed_dim": 3},
    }
    assert {"rkd", "pkt", "sp", "crd"} <= set(LOSSES.names())
    for name, option in options.items():
        plain, masked = make_loss(name, **option), make_loss(name, masking=True, **option)
        modules = plain.modules({"embedding": D_S}, {"embedding": D_T}, 0)
        assert modules.keys() == masked.modules({"embedding": D_S}, {"embedding": D_T}, 0).keys(), name
        terms = plain.terms(step, modules)
        assert set(terms) == set(plain.weights()), name
        assert all(v.shape == (1,) and torch.isfinite(v).all() for v in terms.values()), name
        masked_terms = masked.terms(step, modules)
        assert any(not torch.allclose(masked_terms[k], terms[k]) for k in terms if k != "ce"), name
        # on a batch where the teacher is always right, masking changes nothing
        correct_plain, correct_masked = plain.terms(step_correct, modules), masked.terms(step_correct, modules)
        for k in correct_plain:
            assert torch.allclose(correct_plain[k], correct_masked[k]), (name, k)


def test_kd_and_dkd_defaults_unchanged():
    assert make_loss("kd", temperature=1.0, reduction="mean").masking is False
    assert make_loss("dkd").masking is False
