"""The batched engine: each model ends where training it alone would; selection; logging; errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmkd_lab.losses import make_loss
from cmkd_lab.models import ModelSpec, build_model
from cmkd_lab.training import TeacherOutputs, TrainConfig, fit

SEEDS = [0, 1, 2, 3]


def data(n_models, n=64, shape=(10,), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_models, n, *shape, generator=g)
    y = (x.flatten(2)[..., :classes].argmax(-1)).long()
    return x, y


def assert_same_models(batched, alone, index, atol=1e-5):
    for name, value in batched.models.params.items():
        assert torch.allclose(value[index], alone.models.params[name][0], atol=atol), name


@pytest.mark.parametrize(
    "spec, config",
    [
        (ModelSpec("linear", (10,), 3), TrainConfig(epochs=30, lr=0.1)),
        (ModelSpec("mlp", (10,), 3, hidden=(8,)), TrainConfig(epochs=8, lr=0.01, optimizer="adam", batch_size=16)),
        (ModelSpec("cnn1d", (2, 5), 3, hidden=(4, 4)), TrainConfig(epochs=5, lr=0.05, momentum=0.9, batch_size=20)),
    ],
    ids=["linear-sgd-fullbatch", "mlp-adam-minibatch", "cnn1d-momentum-minibatch"],
)
def test_batched_fit_equals_fitting_each_model_alone(spec, config):
    x, y = data(len(SEEDS), shape=spec.input_shape)
    batched = fit(spec, x, y, seeds=SEEDS, config=config, progress=False)
    for i, seed in enumerate(SEEDS):
        alone = fit(spec, x[i], y[i], seeds=[seed], config=config, progress=False)
        assert_same_models(batched, alone, i)


def test_kd_fit_equals_a_plain_pytorch_loop():
    """Against an ordinary nn.Module + torch.optim loop, without the kit's engine."""
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(3)
    teacher = fit(spec, x, y, seeds=[10, 11, 12], config=TrainConfig(epochs=20), progress=False)
    outputs = TeacherOutputs.of(teacher.models, x)
    kd = make_loss("kd", temperature=2.0, reduction="mean", kd_weight=0.5)
    students = fit(spec, x, y, seeds=[0, 1, 2], config=TrainConfig(epochs=50, lr=0.1), loss=kd, teacher=outputs,
                   progress=False)
    for i in range(3):
        net = build_model(spec, i)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(50):
            optimizer.zero_grad()
            logits, _ = net(x[i])
            kl = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(outputs.logits[i] / 2, 1), reduction="mean")
            (F.cross_entropy(logits, y[i]) + 0.5 * kl).backward()
            optimizer.step()
        assert torch.allclose(students.models.params["head.weight"][i], net.head.weight, atol=1e-5)


def test_distillation_with_a_projector_batches_exactly():
    spec_t, spec_s = ModelSpec("mlp", (10,), 3, hidden=(6,)), ModelSpec("mlp", (10,), 3, hidden=(5,))
    x, y = data(2)
    teacher = fit(spec_t, x, y, seeds=[5, 6], config=TrainConfig(epochs=5), progress=False)
    fitnet = make_loss("fitnet")
    outputs = TeacherOutputs.of(teacher.models, x, fitnet.teacher_layers)
    config = TrainConfig(epochs=10, batch_size=16, optimizer="adam", lr=0.01)
    batched = fit(spec_s, x, y, seeds=[0, 1], config=config, loss=fitnet, teacher=outputs, progress=False)
    alone = fit(spec_s, x[1], y[1], seeds=[1], config=config, loss=fitnet,
                teacher=TeacherOutputs(outputs.logits[1:], {k: v[1:] for k, v in outputs.features.items()}), progress=False)
    assert_same_models(batched, alone, 1)
    assert set(batched.history) == {"ce", "hint", "total"}


def test_every_loss_term_is_logged_per_epoch_by_name():
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(2)
    teacher = TeacherOutputs.of(fit(spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=3), progress=False).models, x)
    result = fit(spec, x, y, seeds=[0, 1], config=TrainConfig(epochs=7), loss=make_loss("dkd"), teacher=teacher,
                 progress=False)
    assert set(result.history) == {"ce", "tckd", "nckd", "total"}
    assert all(v.shape == (7, 2) for v in result.history.values())
    frame = result.history_frame()
    assert set(frame["term"]) == {"ce", "tckd", "nckd", "total"} and len(frame) == 4 * 7 * 2
    total = result.history["ce"] + result.history["tckd"] + 8.0 * result.history["nckd"]
    assert np.allclose(total, result.history["total"], atol=1e-5)


def test_best_val_selects_the_epoch_with_the_best_validation_accuracy():
    spec = ModelSpec("mlp", (10,), 3, hidden=(16,))
    x, y = data(3, n=40)
    x_val, y_val = data(3, n=200, seed=1)
    result = fit(spec, x, y, seeds=[0, 1, 2], config=TrainConfig(epochs=60, lr=0.5, select="best_val"),
                 val=(x_val, y_val), progress=False)
    val_acc = result.history["val_acc"]
    assert np.array_equal(result.selected_epoch, val_acc.argmax(0) + 1)
    assert np.allclose(result.accuracy(x_val, y_val), val_acc.max(0))
    last = fit(spec, x, y, seeds=[0, 1, 2], config=TrainConfig(epochs=60, lr=0.5), val=(x_val, y_val), progress=False)
    assert np.allclose(last.accuracy(x_val, y_val), val_acc[-1])


def test_same_parameters_give_the_same_numbers():
    spec = ModelSpec("mlp", (10,), 3, hidden=(8,))
    x, y = data(2)
    config = TrainConfig(epochs=4, batch_size=10)
    first = fit(spec, x, y, seeds=[0, 1], config=config, progress=False)
    second = fit(spec, x, y, seeds=[0, 1], config=config, progress=False)
    assert all(torch.equal(first.models.params[k], second.models.params[k]) for k in first.models.params)
    assert first.record["train_config"]["batch_size"] == 10 and first.record["wall_time_s"] > 0


def test_clear_errors_before_training_starts():
    spec = ModelSpec("linear", (10,), 3)
    x, y = data(2)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; valid names: adam, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown select rule 'best_test'; valid: last, best_val"):
        TrainConfig(select="best_test")
    with pytest.raises(ValueError, match="needs a validation split"):
        fit(spec, x, y, seeds=[0, 1], config=TrainConfig(select="best_val"), progress=False)
    with pytest.raises(ValueError, match="distils from a teacher"):
        fit(spec, x, y, seeds=[0, 1], config=TrainConfig(), loss=make_loss("kd", temperature=1, reduction="mean"))
    with pytest.raises(ValueError, match="sample shape"):
        fit(ModelSpec("linear", (11,), 3), x, y, seeds=[0, 1], config=TrainConfig())
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        fit(ModelSpec("linear", (10,), 2), x, y, seeds=[0, 1], config=TrainConfig())
