"""``rng="official"``: the kit's Gaussian studies draw every run's data and initial weights as the
official scripts do, and its batched fits end where a plain one-model PyTorch loop ends.

The loop below follows the official order of draws (papers.md §1–2): ``seed(s)`` (NumPy and
torch), hyperplane ``randn(500)``, train xs / x_b / x_a; ``seed(s + 1)``, test set; then the
teacher's, the KD student's and the No-KD student's ``nn.Linear`` (NTDH builds its CRD loss
between the last two). Full-batch SGD, lr 0.1, last epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cmkd_lab.studies.mfh import gaussian as mfh
from cmkd_lab.studies.ntdh import gaussian as ntdh

EPOCHS, RUNS, N_TRAIN, N_TEST = 30, 2, 200, 1000


def draw(n, hyperplane, latent_dims, a_dims, a_latent, b_dims):
    """One official data draw from NumPy's global generator: xs, then x_b, then x_a."""
    xs = np.random.randn(n, latent_dims)
    y = (xs @ hyperplane[:latent_dims] > 0).astype(np.int64)
    x_b = np.random.randn(n, b_dims)
    x_b[:, :10] = xs[:, :10]
    x_a = np.random.randn(n, a_dims)
    x_a[:, a_latent] = xs[:, a_latent]
    return torch.Tensor(x_a), torch.Tensor(x_b), torch.LongTensor(y)


def official_run(seed, latent_dims, a_dims, a_latent, b_dims, temperature, reduction, crd_draws=False):
    np.random.seed(seed)
    torch.manual_seed(seed)
    hyperplane = np.random.randn(500)
    train_set = draw(N_TRAIN, hyperplane, latent_dims, a_dims, a_latent, b_dims)
    np.random.seed(seed + 1)
    torch.manual_seed(seed + 1)
    test = draw(N_TEST, hyperplane, latent_dims, a_dims, a_latent, b_dims)
    teacher = nn.Linear(a_dims, 2)
    kd_student = nn.Linear(b_dims, 2)
    if crd_draws:  # NTDH's CRD loss: two Linear(2, 8) embeddings and two (n_data, 8) memory banks
        nn.Linear(2, 8), nn.Linear(2, 8), torch.rand(N_TRAIN, 8), torch.rand(N_TRAIN, 8)
    no_kd = nn.Linear(b_dims, 2)
    inits = {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
             for name, net in (("teacher", teacher), ("kd", kd_student), ("no_kd", no_kd))}

    def fit(model, x, loss_of):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(EPOCHS):
            loss = loss_of(model(x))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    x_a, x_b, y = train_set
    fit(teacher, x_a, lambda out: F.cross_entropy(out, y))
    with torch.no_grad():
        soft = torch.softmax(teacher(x_a) / temperature, 1)
    kl = nn.KLDivLoss(reduction=reduction)
    fit(kd_student, x_b, lambda out: F.cross_entropy(out, y) + kl(torch.log_softmax(out / temperature, 1), soft))
    fit(no_kd, x_b, lambda out: F.cross_entropy(out, y))
    with torch.no_grad():
        accuracy = {name: (net(test[0] if name == "teacher" else test[1]).argmax(1) == test[2]).float().mean().item()
                    for name, net in (("teacher", teacher), ("kd", kd_student), ("no_kd", no_kd))}
    return train_set, test, inits, accuracy


def check_against_loop(tasks, table, setting, official):
    for task in tasks:
        train, test, inits, accuracy = official[task.seed]
        for split, arrays in ((task.splits.train, train), (task.splits.test, test)):
            assert torch.equal(split["a"], arrays[0]) and torch.equal(split["b"], arrays[1])
            assert torch.equal(split.labels, arrays[2])
        for method, state in inits.items():
            for name, value in state.items():
                assert torch.equal(task.init[method][f"head.{name}"], value), (method, name)
        rows = table[(table["seed"] == task.seed) & (table["metric"] == "test_acc") & (table[setting] == task.settings[setting])]
        kit = rows.set_index("method")["value"]
        for method, value in accuracy.items():
            assert kit[method] == pytest.approx(value, abs=2 / N_TEST), (task.seed, method)


def test_mfh_fig2_official_mode_equals_the_official_loop_run_for_run():
    overlap = 4
    p = mfh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[overlap], xs1_values=[10], rng="official")
    official = {s: official_run(s, 20, 25, list(range(10 - overlap, 20 - overlap)), 50, 1.0, "mean") for s in range(RUNS)}
    check_against_loop(mfh.fig2_tasks(p), mfh.run_fig2(p, progress=False).table, "gamma", official)


def test_mfh_fig3_official_mode_equals_the_official_loop_run_for_run():
    xs1 = 20
    p = mfh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[0], xs1_values=[xs1], rng="official")
    official = {s: official_run(s, 50, 50, list(range(xs1 + 10)), 50, 1.0, "mean") for s in range(RUNS)}
    check_against_loop(mfh.fig3_tasks(p), mfh.run_fig3(p, progress=False).table, "alpha", official)


def test_ntdh_gaussian_official_mode_equals_the_official_loop_run_for_run():
    overlap = 6
    p = ntdh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[overlap], rng="official")
    official = {s: official_run(s, 20, 25, list(range(10 - overlap, 20 - overlap)), 25, 0.7, "batchmean", crd_draws=True)
                for s in range(RUNS)}
    tasks = [ntdh.make_task(p, overlap, s, 2) for s in range(RUNS)]
    table = ntdh.run(p, class_counts=[2], progress=False).table
    check_against_loop(tasks, table, "gamma", official)
    beside = ntdh.official_script_table(table)  # the script's printed means at this γ beside the kit's
    assert list(beside["method"]) == ["teacher", "no_kd", "kd"] and beside["gamma"].eq(0.43).all()
    assert beside["kit"].notna().all() and beside["within_tolerance"].dtype == bool


def test_the_kit_generators_stay_the_default_and_differ_from_the_official_draws():
    kit = mfh.fig2_tasks(mfh.GaussianParameters.create(n_runs=1, epochs=1, overlaps=[4]))[0]
    official = mfh.fig2_tasks(mfh.GaussianParameters.create(n_runs=1, epochs=1, overlaps=[4], rng="official"))[0]
    assert not kit.init and set(official.init) == {"teacher", "kd", "no_kd"}
    assert not torch.equal(kit.splits.train["a"], official.splits.train["a"])
    with pytest.raises(ValueError, match="valid values: kit, official"):
        mfh.GaussianParameters.create(rng="numpy")
