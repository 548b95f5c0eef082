"""The engine: each stacked copy ends where training it alone would; systems of several modules;
stages (init, freeze, label-free, augmentation); feeding; selection; logging; devices; errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cmkd_lab.analysis.metrics import PADDING_LABEL, accuracy, weighted_f1
from cmkd_lab.datasets import Splits, from_arrays
from cmkd_lab.engine import Head, Ramp, Stack, StepResult, System, TrainConfig, build_seeded, fit, gradient_reversal
from cmkd_lab.losses import make_loss
from cmkd_lab.models import ModelSpec, build_model
from cmkd_lab.studies.runner import Task, run_teacher_student
from cmkd_lab.systems import Distillation, train_classifier

SEEDS = [0, 1, 2, 3]


def data(n_models, n=64, shape=(10,), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_models, n, *shape, generator=g)
    y = (x.flatten(2)[..., :classes].argmax(-1)).long()
    return x, y


def assert_same_stacks(batched: Stack, alone: Stack, index: int, atol=1e-5):
    for name, value in batched.state().items():
        expected = alone.state()[name][0]
        assert torch.allclose(value[index].to(expected.dtype), expected, atol=atol), name


def assert_same_fits(batched, alone, index, atol=1e-5):
    assert set(batched.modules) == set(alone.modules)
    for module in batched.modules:
        assert_same_stacks(batched.modules[module], alone.modules[module], index, atol)


@pytest.mark.parametrize(
    "spec, config",
    [
        (ModelSpec("linear", (10,), 3), TrainConfig(epochs=30, lr=0.1)),
        (ModelSpec("mlp", (10,), 3, hidden=(8,)), TrainConfig(epochs=8, lr=0.01, optimizer="adam", batch_size=16)),
        (ModelSpec("cnn1d", (2, 5), 3, hidden=(4, 4)), TrainConfig(epochs=5, lr=0.05, momentum=0.9, batch_size=20)),
        (
            ModelSpec("cnn2d", (1, 8, 7), 3, hidden=(4, 6), batch_norm=True),
            TrainConfig(epochs=4, lr=0.05, momentum=0.9, batch_size=16),
        ),
        (
            ModelSpec("cnn2d", (2, 8, 8), 3, hidden=(4, 6, 6), batch_norm=True, residual=True, downsample="stride"),
            TrainConfig(epochs=3, lr=0.01, optimizer="adam", batch_size=24),
        ),
    ],
    ids=[
        "linear-sgd-fullbatch",
        "mlp-adam-minibatch",
        "cnn1d-momentum-minibatch",
        "cnn2d-batchnorm",
        "cnn2d-residual-strided-batchnorm",
    ],
)
def test_batched_fit_equals_fitting_each_model_alone(spec, config):
    x, y = data(len(SEEDS), shape=spec.input_shape)
    batched = train_classifier(spec, x, y, seeds=SEEDS, config=config, progress=False)
    for i, seed in enumerate(SEEDS):
        alone = train_classifier(spec, x[i], y[i], seeds=[seed], config=config, progress=False)
        assert_same_fits(batched, alone, i, atol=2e-5)


def test_batchnorm_keeps_running_statistics_per_copy_and_uses_them_in_eval_mode():
    spec = ModelSpec("cnn2d", (1, 8, 7), 3, hidden=(4,), batch_norm=True)
    x, y = data(2, shape=spec.input_shape)
    x[1] = 3 * x[1] + 2  # the second copy sees other statistics
    result = train_classifier(spec, x, y, seeds=[0, 0], config=TrainConfig(epochs=3, lr=0.01), progress=False)
    stack = result.modules["student"]
    means = stack.buffers["encoder.bn1.running_mean"]
    assert not torch.allclose(means[0], means[1]) and int(stack.buffers["encoder.bn1.num_batches_tracked"][0]) == 3
    for i in range(2):
        net = stack.module(i)
        assert not net.training
        expected, _ = net(x[i])  # eval mode: running statistics, so one sample alone gives the same logits
        assert torch.allclose(stack.predict(x)[i], expected, atol=1e-5)
        assert torch.allclose(net(x[i][:1])[0], expected[:1], atol=1e-5)


def test_dropout_trains_and_is_off_in_eval_mode():
    spec = ModelSpec("mlp", (10,), 3, hidden=(32,), dropout=0.5)
    x, y = data(2)
    result = train_classifier(spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=40, lr=0.1), progress=False)
    assert result.history["ce"][-1].mean() < result.history["ce"][0].mean()
    stack = result.modules["student"]
    assert torch.equal(stack.predict(x), stack.predict(x))  # no dropout at inference


def test_kd_fit_equals_a_plain_pytorch_loop():
    """Against an ordinary nn.Module + torch.optim loop, without the kit's engine."""
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(3)
    teacher = train_classifier(spec, x, y, seeds=[10, 11, 12], config=TrainConfig(epochs=20), progress=False)
    teacher_logits = teacher.modules["student"].predict(x)
    kd = make_loss("kd", temperature=2.0, reduction="mean", kd_weight=0.5)
    students = train_classifier(
        spec,
        x,
        y,
        seeds=[0, 1, 2],
        config=TrainConfig(epochs=50, lr=0.1),
        loss=kd,
        teacher=teacher.modules["student"],
        x_teacher=x,
        progress=False,
    )
    for i in range(3):
        net = build_model(spec, i)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(50):
            optimizer.zero_grad()
            logits, _ = net(x[i])
            kl = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(teacher_logits[i] / 2, 1), reduction="mean")
            (F.cross_entropy(logits, y[i]) + 0.5 * 2**2 * kl).backward()  # T², the kit's convention
            optimizer.step()
        assert torch.allclose(students.modules["student"].params["head.weight"][i], net.head.weight, atol=1e-5)


def test_teacher_run_per_batch_equals_cached_teacher_outputs():
    spec = ModelSpec("mlp", (10,), 3, hidden=(6,))
    x, y = data(2)
    teacher = train_classifier(spec, x, y, seeds=[5, 6], config=TrainConfig(epochs=5), progress=False).modules[
        "student"
    ]
    kd = make_loss("kd", temperature=2.0, reduction="batchmean")
    config = TrainConfig(epochs=6, batch_size=16, lr=0.05)
    runs = [
        fit(
            Distillation(spec, kd, teacher, cache_teacher=cache),
            {"x": x, "y": y, "x_teacher": x},
            seeds=[0, 1],
            config=config,
            progress=False,
        )
        for cache in (True, False)
    ]
    for name, value in runs[0].modules["student"].state().items():
        assert torch.allclose(value, runs[1].modules["student"].state()[name], atol=1e-6), name
    assert runs[1].record["frozen_modules"] == ["teacher"] and "teacher" not in runs[1].modules


ROW_MASKED_LOSSES = [
    ("ce", {}),
    ("kd", {"temperature": 4.0, "reduction": "batchmean"}),
    ("fitnet", {}),
    ("ds", {"map_layer": None}),
]


@pytest.mark.parametrize("name, options", ROW_MASKED_LOSSES)
def test_copies_of_different_sizes_share_a_fit_and_train_as_alone(name, options):
    """``rows=``: each copy's slice padded to the longest, every term weighing the copy's own rows,
    so each copy ends where a fit on its own samples alone ends: parameters and logged terms."""
    sizes, seeds = [30, 45, 38], [3, 4, 5]
    spec, teacher_spec = ModelSpec("mlp", (6,), 3, hidden=(8,)), ModelSpec("mlp", (5,), 3, hidden=(7,))
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 6, generator=g) for n in sizes]
    ys = [torch.randint(0, 3, (n,), generator=g) for n in sizes]
    teacher_xs = [torch.randn(n, 5, generator=g) for n in sizes]
    teacher = Stack.from_seeds(teacher_spec, seeds)
    loss = make_loss(name, **options)
    config = TrainConfig(epochs=30, lr=0.01, optimizer="adam")

    def padded(tensors, value=0):
        return torch.stack([F.pad(t, (0, 0) * (t.dim() - 1) + (0, max(sizes) - len(t)), value=value) for t in tensors])

    data = {"x": padded(xs), "y": padded(ys, PADDING_LABEL), "x_teacher": padded(teacher_xs)}
    together = fit(Distillation(spec, loss, teacher), data, seeds=seeds, config=config, rows=sizes, progress=False)
    assert together.record["rows"] == sizes
    for i in range(len(sizes)):
        alone = fit(
            Distillation(spec, loss, teacher.subset([i])),
            {"x": xs[i][None], "y": ys[i][None], "x_teacher": teacher_xs[i][None]},
            seeds=[seeds[i]],
            config=config,
            progress=False,
        )
        assert_same_fits(together, alone, i)
        for term, values in alone.history.items():
            np.testing.assert_allclose(together.history[term][:, i], values[:, 0], rtol=1e-5, atol=1e-6)


def test_rows_need_full_batch_a_system_that_weighs_rows_and_a_count_per_copy():
    x, y = data(2, n=20)
    spec = ModelSpec("mlp", (10,), 3, hidden=(4,))
    with pytest.raises(ValueError, match="needs full-batch training"):
        fit(Distillation(spec), {"x": x, "y": y}, seeds=[0, 1], config=TrainConfig(batch_size=8), rows=[20, 12])
    with pytest.raises(ValueError, match="does not weigh rows"):
        fit(
            Distillation(spec, make_loss("rkd")),
            {"x": x, "y": y, "teacher.logits": torch.zeros(2, 20, 3), "teacher.embedding": torch.zeros(2, 20, 4)},
            seeds=[0, 1],
            config=TrainConfig(),
            rows=[20, 12],
        )
    with pytest.raises(ValueError, match="does not weigh rows"):
        fit(
            Distillation(ModelSpec("mlp", (10,), 3, hidden=(4,), batch_norm=True)),
            {"x": x, "y": y},
            seeds=[0, 1],
            config=TrainConfig(),
            rows=[20, 12],
        )
    task = Task(Splits(from_arrays({"a": x[0], "b": x[0]}, y[0]), None, from_arrays({"a": x[1], "b": x[1]}, y[1])), 0)
    shared = {"study": "s", "teacher_modality": "a", "student_modality": "b", "share_sizes": True}
    for match, options in [
        ("loss\\(es\\) \\['rkd'\\] read the whole batch", {"losses": {"rkd": make_loss("rkd")}}),
        ("full-batch training", {"teacher_config": TrainConfig(batch_size=8)}),
    ]:
        with pytest.raises(ValueError, match=f"share_sizes: .*{match}"):
            run_teacher_student([task], **shared, **options)
    with pytest.raises(ValueError, match="a count in 1..20"):
        fit(Distillation(spec), {"x": x, "y": y}, seeds=[0, 1], config=TrainConfig(), rows=[20, 21])


def test_metrics_leave_padding_rows_out():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [9.0, 0.0]]])
    labels = torch.tensor([[0, 0, 0, PADDING_LABEL]])
    assert accuracy(logits, labels).item() == pytest.approx(2 / 3)
    assert weighted_f1(logits, labels).item() == pytest.approx(weighted_f1(logits[:, :3], labels[:, :3]).item())


def test_loss_owned_modules_train_batch_exactly_and_are_kept():
    spec_t, spec_s = ModelSpec("mlp", (10,), 3, hidden=(6,)), ModelSpec("mlp", (10,), 3, hidden=(5,))
    x, y = data(2)
    teacher = train_classifier(spec_t, x, y, seeds=[5, 6], config=TrainConfig(epochs=5), progress=False).modules[
        "student"
    ]
    config = TrainConfig(epochs=10, batch_size=16, optimizer="adam", lr=0.01)
    for name, owned in (("fitnet", {"projector"}), ("crd", {"embed_student", "embed_teacher"})):
        loss = make_loss(name)
        batched = train_classifier(
            spec_s, x, y, seeds=[0, 1], config=config, loss=loss, teacher=teacher, x_teacher=x, progress=False
        )
        alone = train_classifier(
            spec_s,
            x[1],
            y[1],
            seeds=[1],
            config=config,
            loss=loss,
            teacher=teacher.subset([1]),
            x_teacher=x[1],
            progress=False,
        )
        assert set(batched.modules) == {"student"} | owned
        assert_same_fits(batched, alone, 1)
        start = loss.modules({"embedding": 5}, {"embedding": 6}, 0)
        for module in owned:  # the kept module is the trained one, not its initialisation
            assert not torch.allclose(batched.modules[module].params["weight"][0], start[module].weight)
    assert set(batched.history) == {"ce", "crd", "total"}


# ----------------------------------------------------------------------------- a system of several modules
class TwoEncodersAdversarial(System):
    """Two modality encoders, a shared classifier, and a modality discriminator behind gradient
    reversal: the shape of DisCoM-KD's alignment, small."""

    def __init__(self, width=6):
        self.width = width

    def build(self, seed):
        width = self.width
        return build_seeded(
            {
                "encoder_a": lambda: nn.Sequential(nn.Linear(10, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()),
                "encoder_b": lambda: nn.Sequential(nn.Linear(7, width), nn.ReLU()),
                "classifier": lambda: nn.Linear(width, 3),
                "discriminator": lambda: nn.Linear(width, 2),
            },
            seed,
            offsets={"encoder_b": 1, "classifier": 2, "discriminator": 3},
        )

    def step(self, modules, batch):
        s_a, s_b = modules["encoder_a"](batch["x_a"]), modules["encoder_b"](batch["x_b"])
        logits_a, logits_b = modules["classifier"](s_a), modules["classifier"](s_b)
        shared = torch.cat([s_a, s_b])
        domain = torch.cat([torch.zeros(len(s_a), dtype=torch.long), torch.ones(len(s_b), dtype=torch.long)])
        adversarial = F.cross_entropy(modules["discriminator"](gradient_reversal(shared)), domain)
        terms = {
            "ce_a": F.cross_entropy(logits_a, batch["y_a"]),
            "ce_b": F.cross_entropy(logits_b, batch["y_b"]),
            "adv": adversarial,
        }
        return StepResult({"logits_a": logits_a}, terms)

    def weights(self):
        return {"adv": 0.5}

    def heads(self):
        return {"a": Head("y_a", ("encoder_a",)), "b": Head("y_b", ("encoder_b",))}

    def predict(self, modules, batch):
        return {
            "a": modules["classifier"](modules["encoder_a"](batch["x_a"])),
            "b": modules["classifier"](modules["encoder_b"](batch["x_b"])),
        }


def two_modality_data(n_models, n=48, seed=0):
    x_a, y = data(n_models, n=n, shape=(10,), seed=seed)
    x_b = x_a[..., :7] + 0.3 * data(n_models, n=n, shape=(7,), seed=seed + 1)[0]
    return {"x_a": x_a, "y_a": y, "x_b": x_b, "y_b": y.clone()}


def test_two_encoders_with_a_discriminator_behind_gradient_reversal_stack_exactly():
    """≥ 4 seeds, unpaired feeding (each modality shuffled by its own generator), per-head
    selection on weighted F1: the stack equals the same system trained alone per seed."""
    train, val = two_modality_data(len(SEEDS)), two_modality_data(len(SEEDS), seed=5)
    config = TrainConfig(
        epochs=6, lr=0.01, optimizer="adam", batch_size=16, select="best_val", select_metric="weighted_f1"
    )
    feeds = {"a": ["x_a", "y_a"], "b": ["x_b", "y_b"]}
    batched = fit(TwoEncodersAdversarial(), train, seeds=SEEDS, config=config, val=val, feeds=feeds, progress=False)
    assert set(batched.modules) == {"encoder_a", "encoder_b", "classifier", "discriminator"}
    assert set(batched.history) >= {"ce_a", "ce_b", "adv", "total", "val_weighted_f1/a", "val_weighted_f1/b"}
    for i, seed in enumerate(SEEDS):
        alone = fit(
            TwoEncodersAdversarial(),
            {k: v[i : i + 1] for k, v in train.items()},
            seeds=[seed],
            config=config,
            val={k: v[i : i + 1] for k, v in val.items()},
            feeds=feeds,
            progress=False,
        )
        assert_same_fits(batched, alone, i)
        for head in ("a", "b"):
            assert batched.selected_epoch[head][i] == alone.selected_epoch[head][0]
    # per head, the kept encoder is the one of its best validation epoch
    for head in ("a", "b"):
        scores = batched.history[f"val_weighted_f1/{head}"]
        assert np.array_equal(batched.selected_epoch[head], scores.argmax(0) + 1)


def test_gradient_reversal_is_identity_forward_and_negates_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    y = gradient_reversal(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))


def test_unpaired_feeding_shuffles_each_group_with_its_own_generator():
    train = two_modality_data(2)
    train["y_b"] = train["y_a"].roll(5, dims=1)  # pairs no longer aligned: must not matter to feeding
    config = TrainConfig(epochs=2, lr=0.01, batch_size=16)
    paired = fit(TwoEncodersAdversarial(), train, seeds=[0, 1], config=config, progress=False)
    unpaired = fit(
        TwoEncodersAdversarial(),
        train,
        seeds=[0, 1],
        config=config,
        progress=False,
        feeds={"a": ["x_a", "y_a"], "b": ["x_b", "y_b"]},
    )
    assert not torch.allclose(
        paired.modules["encoder_b"].params["0.weight"], unpaired.modules["encoder_b"].params["0.weight"]
    )
    with pytest.raises(ValueError, match="disjoint groups"):
        fit(TwoEncodersAdversarial(), train, seeds=[0, 1], config=config, feeds={"a": ["x_a", "y_a"]})


def test_an_epoch_feeds_every_row_of_the_largest_group_and_wraps_the_smaller():
    train = {key: value[:, :16] if key.endswith("_a") else value for key, value in two_modality_data(1, n=40).items()}
    train["x_b"][..., 0] = torch.arange(40.0)  # each row of b carries its index
    seen_b, seen_a = [], []

    def record(batch, generators):
        seen_a.append(batch["x_a"].shape[1])
        seen_b.extend(batch["x_b"][0, :, 0].long().tolist())
        return batch

    fit(
        TwoEncodersAdversarial(),
        train,
        seeds=[0],
        config=TrainConfig(epochs=1, lr=0.01, batch_size=8),
        feeds={"a": ["x_a", "y_a"], "b": ["x_b", "y_b"]},
        augment=record,
        progress=False,
    )
    assert sorted(seen_b) == list(range(40)), "the later, larger group is fed whole each epoch"
    assert seen_a == [8] * 5, "the smaller group wraps around: every step sees a full batch of it"


def test_a_one_row_last_batch_joins_the_batch_before():
    """17 rows in batches of 8 train as 8 + 9: BatchNorm cannot train on one row, and no row is dropped."""
    spec = ModelSpec("mlp", (10,), 3, hidden=(8,), batch_norm=True)
    x, y = data(2, n=17)
    sizes = []

    def record(batch, generators):
        sizes.append(batch["x"].shape[1])
        return batch

    result = fit(
        Distillation(spec),
        {"x": x, "y": y},
        seeds=[0, 1],
        config=TrainConfig(epochs=2, lr=0.1, batch_size=8),
        augment=record,
        progress=False,
    )
    assert sizes == [8, 9, 8, 9] and np.isfinite(result.history["ce"]).all()


# ----------------------------------------------------------------------------- stages
class Autoencoder(System):
    """A label-free stage: reconstruct the input through an encoder and a decoder."""

    def build(self, seed):
        return {"encoder": nn.Linear(10, 4), "decoder": nn.Linear(4, 10)}

    def step(self, modules, batch):
        return StepResult(
            {}, {"reconstruction": ((modules["decoder"](modules["encoder"](batch["x"])) - batch["x"]) ** 2).mean()}
        )


class Probe(System):
    """A linear probe on an encoder."""

    def build(self, seed):
        return {"encoder": nn.Linear(10, 4), "head": nn.Linear(4, 3)}

    def step(self, modules, batch):
        return StepResult({}, {"ce": F.cross_entropy(modules["head"](modules["encoder"](batch["x"])), batch["y"])})

    def heads(self):
        return {"probe": Head("y", ("head",))}

    def predict(self, modules, batch):
        return {"probe": modules["head"](modules["encoder"](batch["x"]))}


def test_stages_label_free_then_probe_on_a_frozen_encoder_with_augmentation():
    x, y = data(3)
    seen = []

    def augment(batch, generators):
        noise = torch.stack([torch.randn(batch["x"].shape[1:], generator=g) for g in generators])
        seen.append(noise[:, 0, 0].clone())
        return {**batch, "x": batch["x"] + 0.1 * noise}

    ssl = fit(
        Autoencoder(),
        {"x": x},
        seeds=[0, 1, 2],
        config=TrainConfig(epochs=30, lr=0.05),
        augment=augment,
        progress=False,
    )
    assert ssl.history["reconstruction"][-1].mean() < ssl.history["reconstruction"][0].mean()
    assert not torch.equal(seen[0], seen[1])  # a fresh augmentation every step
    probe = fit(
        Probe(),
        {"x": x, "y": y},
        seeds=[0, 1, 2],
        config=TrainConfig(epochs=20, lr=0.1),
        init={"encoder": ssl.modules["encoder"]},
        freeze=["encoder"],
        progress=False,
    )
    assert torch.equal(probe.modules["encoder"].params["weight"], ssl.modules["encoder"].params["weight"])
    assert probe.record["frozen_modules"] == ["encoder"]
    fine_tuned = fit(
        Probe(),
        {"x": x, "y": y},
        seeds=[0, 1, 2],
        config=TrainConfig(epochs=20, lr=0.1),
        init={"encoder": ssl.modules["encoder"]},
        progress=False,
    )
    assert not torch.equal(fine_tuned.modules["encoder"].params["weight"], ssl.modules["encoder"].params["weight"])
    # seeded: the same call gives the same numbers, augmentation included
    again = fit(
        Autoencoder(),
        {"x": x},
        seeds=[0, 1, 2],
        config=TrainConfig(epochs=30, lr=0.05),
        augment=augment,
        progress=False,
    )
    assert torch.equal(again.modules["encoder"].params["weight"], ssl.modules["encoder"].params["weight"])


# ----------------------------------------------------------------------------- logs, selection, records
def test_every_loss_term_is_logged_per_epoch_by_name():
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(2)
    teacher = train_classifier(spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=3), progress=False).modules[
        "student"
    ]
    result = train_classifier(
        spec,
        x,
        y,
        seeds=[0, 1],
        config=TrainConfig(epochs=7),
        loss=make_loss("dkd"),
        teacher=teacher,
        x_teacher=x,
        progress=False,
    )
    assert set(result.history) == {"ce", "tckd", "nckd", "total"}
    assert all(v.shape == (7, 2) for v in result.history.values())
    frame = result.history_frame()
    assert set(frame["term"]) == {"ce", "tckd", "nckd", "total"} and len(frame) == 4 * 7 * 2
    total = result.history["ce"] + result.history["tckd"] + 8.0 * result.history["nckd"]
    assert np.allclose(total, result.history["total"], atol=1e-5)


@pytest.mark.parametrize("metric", ["accuracy", "weighted_f1"])
def test_best_val_selects_the_epoch_with_the_best_validation_metric(metric):
    spec = ModelSpec("mlp", (10,), 3, hidden=(16,))
    x, y = data(3, n=40)
    x_val, y_val = data(3, n=200, seed=1)
    config = TrainConfig(epochs=60, lr=0.5, select="best_val", select_metric=metric)
    result = train_classifier(spec, x, y, seeds=[0, 1, 2], config=config, val=(x_val, y_val), progress=False)
    scores = result.history[f"val_{metric}"]
    assert np.array_equal(result.selected_epoch["student"], scores.argmax(0) + 1)
    score = {
        "accuracy": lambda z: (z.argmax(-1) == y_val).double().mean(-1),
        "weighted_f1": lambda z: weighted_f1(z, y_val),
    }
    assert np.allclose(score[metric](result.modules["student"].predict(x_val)).numpy(), scores.max(0))
    last = train_classifier(
        spec, x, y, seeds=[0, 1, 2], config=TrainConfig(epochs=60, lr=0.5), val=(x_val, y_val), progress=False
    )
    assert np.allclose(
        (last.modules["student"].predict(x_val).argmax(-1) == y_val).double().mean(-1).numpy(),
        last.history["val_accuracy"][-1],
    )


def test_same_parameters_give_the_same_numbers():
    spec = ModelSpec("mlp", (10,), 3, hidden=(8,))
    x, y = data(2)
    config = TrainConfig(epochs=4, batch_size=10)
    first = train_classifier(spec, x, y, seeds=[0, 1], config=config, progress=False)
    second = train_classifier(spec, x, y, seeds=[0, 1], config=config, progress=False)
    assert all(torch.equal(v, second.modules["student"].params[k]) for k, v in first.modules["student"].params.items())
    record = first.record
    assert record["train_config"]["batch_size"] == 10 and record["wall_time_s"] > 0
    assert record["device"] == "cpu" and record["threads"] == 1 and record["system"]["system"] == "distillation"


def test_the_engine_sets_its_thread_policy_and_restores_the_callers():
    """Small steps run on one thread, large ones on the caller's threads; an explicit count wins."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    class Spy(Probe):
        def step(self, modules, batch):
            seen.append(torch.get_num_threads())
            return super().step(modules, batch)

    try:
        for n_models, n, threads in ((1, 64, None), (2, 2500, None), (1, 64, 2)):
            x, y = data(n_models, n=n)
            fit(
                Spy(),
                {"x": x, "y": y},
                seeds=range(n_models),
                config=TrainConfig(epochs=1, device="cpu", threads=threads),
                progress=False,
            )
        assert seen == [1, 2, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_smoke():
    spec = ModelSpec("cnn2d", (1, 8, 7), 3, hidden=(4,), batch_norm=True)
    x, y = data(2, shape=spec.input_shape)
    config = TrainConfig(epochs=3, lr=0.05, device="cuda")
    result = train_classifier(spec, x, y, seeds=[0, 1], config=config, progress=False)
    assert result.record["device"].startswith("cuda") and result.modules["student"].device.type == "cuda"
    cpu = train_classifier(
        spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=3, lr=0.05, device="cpu"), progress=False
    )
    assert torch.allclose(
        result.modules["student"].params["head.weight"].cpu(), cpu.modules["student"].params["head.weight"], atol=1e-4
    )


def test_clear_errors_before_training_starts():
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(2)
    config = TrainConfig()
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; valid names: adam, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown select rule 'best_test'; valid: last, best_val"):
        TrainConfig(select="best_test")
    with pytest.raises(ValueError, match="unknown validation metric 'auc'; valid names: accuracy, weighted_f1"):
        TrainConfig(select_metric="auc")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="needs a validation split"):
        train_classifier(spec, x, y, seeds=[0, 1], config=TrainConfig(select="best_val"), progress=False)
    with pytest.raises(ValueError, match="distils from a teacher"):
        train_classifier(spec, x, y, seeds=[0, 1], config=config, loss=make_loss("kd", temperature=1, reduction="mean"))
    with pytest.raises(ValueError, match="sample shape"):
        train_classifier(ModelSpec("linear", (11,), 3), x, y, seeds=[0, 1], config=config)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        train_classifier(ModelSpec("linear", (10,), 2), x, y, seeds=[0, 1], config=config)
    with pytest.raises(ValueError, match="cannot freeze \\['decoder'\\]"):
        fit(Probe(), {"x": x, "y": y}, seeds=[0, 1], config=config, freeze=["decoder"])
    with pytest.raises(ValueError, match="init\\['encoder'\\] holds 3 copies but there are 2 seeds"):
        fit(
            Probe(),
            {"x": x, "y": y},
            seeds=[0, 1],
            config=config,
            init={"encoder": Stack.from_seeds(lambda: nn.Linear(10, 4), [0, 1, 2])},
        )
    with pytest.raises(ValueError, match="every entry needs \\(models=2, samples"):
        fit(Probe(), {"x": x[0], "y": y}, seeds=[0, 1], config=config)
    with pytest.raises(ValueError, match="data\\['y'\\] has shape \\(64,\\); every entry needs \\(models=2, samples"):
        fit(Probe(), {"x": x, "y": y[0]}, seeds=[0, 1], config=config)  # checked before the thread policy reads shapes
    with pytest.raises(ValueError, match="optimizer 'adam' takes lr, weight_decay, not momentum"):
        TrainConfig(optimizer="adam", momentum=0.9)


def test_the_readme_system_example_runs_as_written():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Write a system", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(code, namespace)
    result = namespace["result"]
    assert sorted(result.modules) == ["classifier", "discriminator", "enc_a", "enc_b"]
    assert result.history["adv"].shape == (20, 4) and np.isfinite(result.history["total"]).all()


def test_a_fit_that_ends_at_chance_warns_and_records_it():
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(2)
    x[1] = torch.randn(64, 10) * 1e-3  # copy 1 sees no signal: it cannot leave chance
    y[1] = torch.arange(64) % 3
    with pytest.warns(UserWarning, match="seed 1 ended at chance"):
        result = train_classifier(spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=30), progress=False)
    assert len(result.record["warnings"]) == 1 and "standardise" in result.record["warnings"][0]
    assert result.record["chance_copies"] == [1]
    # a part of the fit keeps the warnings about its own copies only, renumbered
    assert result.subset([0]).record["warnings"] == [] and result.subset([0]).record["chance_copies"] == []
    part = result.subset([1, 0])
    assert part.record["warnings"] == result.record["warnings"] and part.record["chance_copies"] == [0]


class _Decay(System):
    """One scalar p per copy and the term p², weighted by a warm-up ramp."""

    def __init__(self, weight):
        self.weight = weight

    def build(self, seed):
        module = nn.Module()
        module.p = nn.Parameter(torch.ones(()))
        return {"p": module}

    def step(self, modules, batch):
        return StepResult({}, {"square": modules["p"].params["p"] ** 2 + 0 * batch["x"].sum()})

    def weights(self):
        return {"square": self.weight}


def test_a_warm_up_ramp_scales_its_term_by_epoch_over_length():
    lr, epochs, length = 0.1, 6, 4
    result = fit(
        _Decay(Ramp([1.0, 2.0], length)),
        {"x": torch.zeros(2, 3, 1)},
        seeds=[0, 1],
        config=TrainConfig(epochs=epochs, lr=lr),
    )
    for copy, value in enumerate([1.0, 2.0]):
        expected = 1.0
        for epoch in range(1, epochs + 1):  # SGD on w·p²: p ← p·(1 − 2·lr·w_epoch)
            expected *= 1 - 2 * lr * value * min(epoch / length, 1.0)
        assert result.modules["p"].params["p"][copy].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="epochs >= 1"):
        Ramp(1.0, 0)
