"""``rng="official"``: the kit's Gaussian studies draw every run's data and initial weights as the
official scripts do, and its batched fits end where a plain one-model PyTorch loop ends.

The loops below follow the official orders of draws (papers.md §1–2, :mod:`cmkd_lab.studies.official`).
Fig. 2/3 and NTDH: ``seed(s)`` (NumPy and torch), hyperplane ``randn(500)``, train xs / x_b / x_a;
``seed(s + 1)``, test set; then the teacher's, the KD student's and the No-KD student's
``nn.Linear`` (NTDH builds its CRD loss between the last two). Table 2: one loop per teacher
mode, each ``seed(s)``, train and test sets (xs / x_a / x_b), regular teacher, Algorithm 1's
pair and permutations (alg1 only), fresh draw, No-KD, regular KD, channel choice, MG teacher,
MG KD student. Full-batch SGD, lr 0.1, last epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cmkd_lab.studies.mfh import gaussian as mfh
from cmkd_lab.studies.mfh import table2
from cmkd_lab.studies.ntdh import gaussian as ntdh

EPOCHS, RUNS, N_TRAIN, N_TEST = 30, 2, 200, 1000


def sgd_fit(model, x, loss_of, parameters=None, lr=0.1, momentum=0.0):
    """Full-batch SGD for ``EPOCHS`` epochs, as the official scripts train."""
    optimizer = torch.optim.SGD(model.parameters() if parameters is None else parameters, lr=lr, momentum=momentum)
    for _ in range(EPOCHS):
        loss = loss_of(model(x))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def kd_objective(teacher, x_teacher, y, temperature=1.0, reduction="mean"):
    """CE + KL(softmax(t/T) ‖ softmax(s/T)), the official KD loss (weights 1 and 1, no T²)."""
    with torch.no_grad():
        soft = torch.softmax(teacher(x_teacher) / temperature, 1)
    kl = nn.KLDivLoss(reduction=reduction)
    return lambda out: F.cross_entropy(out, y) + kl(torch.log_softmax(out / temperature, 1), soft)


def accuracy_of(net, x, y):
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


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
    inits = {name: state(net) for name, net in (("teacher", teacher), ("kd", kd_student), ("no_kd", no_kd))}

    x_a, x_b, y = train_set
    sgd_fit(teacher, x_a, lambda out: F.cross_entropy(out, y))
    sgd_fit(kd_student, x_b, kd_objective(teacher, x_a, y, temperature, reduction))
    sgd_fit(no_kd, x_b, lambda out: F.cross_entropy(out, y))
    accuracy = {
        name: accuracy_of(net, test[0] if name == "teacher" else test[1], test[2])
        for name, net in (("teacher", teacher), ("kd", kd_student), ("no_kd", no_kd))
    }
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
        rows = table[
            (table["seed"] == task.seed) & (table["metric"] == "test_acc") & (table[setting] == task.settings[setting])
        ]
        kit = rows.set_index("method")["value"]
        for method, value in accuracy.items():
            assert kit[method] == pytest.approx(value, abs=2 / N_TEST), (task.seed, method)


def test_mfh_fig2_official_mode_equals_the_official_loop_run_for_run():
    overlap = 4
    p = mfh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[overlap], xs1_values=[10], rng="official")
    official = {
        s: official_run(s, 20, 25, list(range(10 - overlap, 20 - overlap)), 50, 1.0, "mean") for s in range(RUNS)
    }
    check_against_loop(mfh.fig2_tasks(p), mfh.run_fig2(p, progress=False).table, "gamma", official)


def test_mfh_fig3_official_mode_equals_the_official_loop_run_for_run():
    xs1 = 20
    p = mfh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[0], xs1_values=[xs1], rng="official")
    official = {s: official_run(s, 50, 50, list(range(xs1 + 10)), 50, 1.0, "mean") for s in range(RUNS)}
    check_against_loop(mfh.fig3_tasks(p), mfh.run_fig3(p, progress=False).table, "alpha", official)


def test_ntdh_gaussian_official_mode_equals_the_official_loop_run_for_run():
    overlap = 6
    p = ntdh.GaussianParameters.create(n_runs=RUNS, epochs=EPOCHS, overlaps=[overlap], rng="official")
    official = {
        s: official_run(s, 20, 25, list(range(10 - overlap, 20 - overlap)), 25, 0.7, "batchmean", crd_draws=True)
        for s in range(RUNS)
    }
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


# ----------------------------------------------------------------------------- MFH Table 2
XS1, CHANNELS, ALG1_REPEATS = 10, 50, 2


def table2_draw(n, xs2):
    """One data draw of the Table 2 script from NumPy's global generator: xs, then x_a, then x_b."""
    xs = np.random.randn(n, XS1 + xs2)
    y = (xs @ np.ones(XS1 + xs2) > 0).astype(np.int64)
    x_a = np.random.randn(n, CHANNELS)
    x_a[:, : XS1 + xs2] = xs
    x_b = np.random.randn(n, CHANNELS)
    x_b[:, :xs2] = xs[:, :xs2]
    return torch.Tensor(x_a), torch.Tensor(x_b), torch.as_tensor(y)


def algorithm1_loop(x_a, x_b, y, xs2):
    """Algorithm 1 as the script runs it: joint pair, then per repeat a permutation of every x_b
    channel (scores unused here), then of every x_a channel; the xs2 best x_a channels, best first."""
    joint_teacher, joint_student = nn.Linear(CHANNELS, 2), nn.Linear(CHANNELS, 2)
    inits = {"alg1_teacher": state(joint_teacher), "alg1_student": state(joint_student)}
    optimizer = torch.optim.SGD([*joint_teacher.parameters(), *joint_student.parameters()], lr=0.01, momentum=0.9)
    for _ in range(EPOCHS):
        logits_a, logits_b = joint_teacher(x_a), joint_student(x_b)
        loss = F.cross_entropy(logits_a, y) + F.cross_entropy(logits_b, y) + F.mse_loss(logits_a, logits_b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scores, permutations = np.zeros((ALG1_REPEATS, CHANNELS)), []
    with torch.no_grad():
        target = joint_student(x_b)
        for repeat in range(ALG1_REPEATS):
            for _ in range(CHANNELS):
                torch.randperm(len(y))
            drawn = []
            for channel in range(CHANNELS):
                perm = torch.randperm(len(y))
                permuted = x_a.clone()
                permuted[:, channel] = x_a[perm, channel]
                scores[repeat, channel] = F.mse_loss(joint_teacher(permuted), target).item()
                drawn.append(perm)
            permutations.append(torch.stack(drawn))
    mean = scores.mean(0)
    mean = (mean - mean.min()) / (mean.max() - mean.min())
    return (-mean).argsort()[:xs2], inits, torch.stack(permutations)


def table2_loop(seed, xs2, mode, as_released=False):
    """One run of one teacher mode's loop of gauss/main_modify_gamma.py (30 epochs, 2 repeats)."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    train, test = table2_draw(N_TRAIN, xs2), table2_draw(N_TEST, xs2)
    (x_a, x_b, y), (test_a, test_b, test_y) = train, test
    out = {"train": train, "test": test}
    teacher = nn.Linear(CHANNELS, 2)
    out["teacher"] = state(teacher)
    sgd_fit(teacher, x_a, lambda logits: F.cross_entropy(logits, y))
    accuracy = {"teacher": accuracy_of(teacher, test_a, test_y)}
    if mode == "alg1":
        channels, alg1_inits, out["alg1_permutations"] = algorithm1_loop(x_a, x_b, y, xs2)
        out.update(alg1_inits)
    fresh = out["fresh"] = table2_draw(N_TRAIN, xs2)
    x_a, x_b, y = fresh
    no_kd, kd_student = nn.Linear(CHANNELS, 2), nn.Linear(CHANNELS, 2)
    out["no_kd"], out["kd"] = state(no_kd), state(kd_student)
    sgd_fit(no_kd, x_b, lambda logits: F.cross_entropy(logits, y))
    if as_released:  # the released call: student on x_a, teacher fed x_b, tested on x_b
        sgd_fit(kd_student, x_a, kd_objective(teacher, x_b, y))
    else:
        sgd_fit(kd_student, x_b, kd_objective(teacher, x_a, y))
    accuracy.update(no_kd=accuracy_of(no_kd, test_b, test_y), kd=accuracy_of(kd_student, test_b, test_y))
    if mode == "random":
        channels = np.random.randint(0, CHANNELS, xs2)
    elif mode == "gt":
        channels = np.arange(xs2)
    out["channels"] = torch.as_tensor(channels)
    mg_teacher, mg_kd = nn.Linear(xs2, 2), nn.Linear(CHANNELS, 2)
    out["mg_teacher"], out["mg_kd"] = state(mg_teacher), state(mg_kd)
    sgd_fit(mg_teacher, x_a[:, channels], lambda logits: F.cross_entropy(logits, y))
    sgd_fit(mg_kd, x_b, kd_objective(mg_teacher, x_a[:, channels], y))
    accuracy.update(
        mg_teacher=accuracy_of(mg_teacher, test_a[:, channels], test_y), mg_kd=accuracy_of(mg_kd, test_b, test_y)
    )
    out["accuracy"] = accuracy
    return out


def assert_same_state(kit, official):
    assert kit.keys() == {f"head.{name}" for name in official}
    for name, value in official.items():
        assert torch.equal(kit[f"head.{name}"], value), name


def kit_accuracy(table, task, method, mode):
    rows = table[
        (table["metric"] == "test_acc")
        & (table["seed"] == task.seed)
        & (table["gamma"] == task.settings["gamma"])
        & (table["method"] == method)
        & (table["teacher_mode"] == mode)
    ]
    assert len(rows) == 1, (task.seed, method, mode)
    return rows["value"].iloc[0]


@pytest.mark.filterwarnings("ignore:.*ended at chance")  # 30 epochs leave a random MG teacher near chance
def test_mfh_table2_official_mode_equals_the_official_loop_run_for_run():
    p = table2.Table2Parameters.create(
        n_runs=RUNS, epochs=EPOCHS, alg1_epochs=EPOCHS, alg1_repeats=ALG1_REPEATS, xs2_values=[5, 20], rng="official"
    )
    tasks = table2.make_tasks(p)
    table = table2.run(p, progress=False).table
    assert [t.seed for t in tasks.teacher] == [42, 43, 42, 43]
    xs2_of_task = [xs2 for xs2 in p.xs2_values for _ in range(RUNS)]
    for teacher_task, student_task, official, xs2 in zip(tasks.teacher, tasks.student, tasks.official, xs2_of_task):
        loops = {mode: table2_loop(teacher_task.seed, xs2, mode) for mode in table2.TEACHER_MODES}
        alg1 = loops["alg1"]  # the regular nets come from the alg1 loop
        for split, arrays in (
            (teacher_task.splits.train, alg1["train"]),
            (teacher_task.splits.test, alg1["test"]),
            (student_task.splits.train, alg1["fresh"]),
            (student_task.splits.test, alg1["test"]),
        ):
            assert torch.equal(split["a"], arrays[0]) and torch.equal(split["b"], arrays[1])
            assert torch.equal(split.labels, arrays[2])
        for name in ("teacher", "alg1_teacher", "alg1_student"):
            assert_same_state(teacher_task.init[name], alg1[name])
        for name in ("no_kd", "kd"):
            assert_same_state(student_task.init[name], alg1[name])
        assert torch.equal(official.alg1_permutations, alg1["alg1_permutations"])
        assert torch.equal(official.random_channels, loops["random"]["channels"])
        for method in ("teacher", "no_kd", "kd"):
            assert kit_accuracy(table, teacher_task, method, "regular") == pytest.approx(
                alg1["accuracy"][method], abs=2 / N_TEST
            )
        for mode, loop in loops.items():
            mg = official.modality_general[mode]
            assert_same_state(mg["kd"], loop["mg_kd"])
            weight = mg["teacher"]["head.weight"]  # the Linear(xs2, 2) packed into the first xs2 input slots
            assert torch.equal(weight[:, :xs2], loop["mg_teacher"]["weight"]) and not weight[:, xs2:].any()
            assert torch.equal(mg["teacher"]["head.bias"], loop["mg_teacher"]["bias"])
            for method in ("teacher", "kd"):
                assert kit_accuracy(table, teacher_task, method, mode) == pytest.approx(
                    loop["accuracy"][f"mg_{method}"], abs=2 / N_TEST
                ), (mode, method)
        setting = (table["seed"] == teacher_task.seed) & (table["gamma"] == teacher_task.settings["gamma"])
        scores = table[setting & (table["metric"] == "alg1_score")].set_index("channel")["value"].sort_index()
        assert np.argsort(-scores.to_numpy(), kind="stable")[:xs2].tolist() == loops["alg1"]["channels"].tolist()
        recovery = table[setting & (table["metric"] == "channel_recovery") & (table["teacher_mode"] == "alg1")]["value"]
        assert recovery.tolist() == pytest.approx(
            [len(np.intersect1d(loops["alg1"]["channels"], np.arange(xs2))) / xs2]
        )


def test_mfh_table2_official_mode_as_released_regular_kd_without_algorithm1():
    """Without alg1 the regular nets are the random/gt loop's; the released call feeds the teacher x_b."""
    p = table2.Table2Parameters.create(
        n_runs=1, epochs=EPOCHS, xs2_values=[10], teacher_modes=["gt"], rng="official", regular_kd_as_released=True
    )
    task = table2.make_tasks(p).student[0]
    table = table2.run(p, progress=False).table
    loop = table2_loop(task.seed, 10, "gt", as_released=True)
    for name in ("no_kd", "kd"):
        assert_same_state(task.init[name], loop[name])
    for method in ("teacher", "no_kd", "kd"):
        assert kit_accuracy(table, task, method, "regular") == pytest.approx(loop["accuracy"][method], abs=2 / N_TEST)
    assert kit_accuracy(table, task, "kd", "gt") == pytest.approx(loop["accuracy"]["mg_kd"], abs=2 / N_TEST)


def test_table2_kit_draws_stay_the_default():
    kit = table2.make_tasks(table2.Table2Parameters.create(n_runs=2, xs2_values=[10]))
    official = table2.make_tasks(table2.Table2Parameters.create(n_runs=2, xs2_values=[10], rng="official"))
    assert kit.official is None and not any(t.init for t in kit.teacher + kit.student)
    assert [t.seed for t in kit.teacher] == [42, 45] and [t.seed for t in official.teacher] == [42, 43]
    assert set(official.teacher[0].init) == {"teacher", "alg1_teacher", "alg1_student"}
    assert set(official.student[0].init) == {"no_kd", "kd"}
    assert not torch.equal(kit.teacher[0].splits.train["a"], official.teacher[0].splits.train["a"])
    with pytest.raises(ValueError, match="valid values: kit, official"):
        table2.Table2Parameters.create(rng="numpy")
