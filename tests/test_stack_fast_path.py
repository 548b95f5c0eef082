"""The batched fast path of :class:`Stack` for plain linear/MLP nets against the generic
``vmap(functional_call)`` path: the same outputs by layer name, the same gradients on the same
stacked parameters, the same fits; every other module goes the generic path."""

import pytest
import torch
from torch import nn
from torch.func import vmap

from cmkd_lab.engine import Edit, Stack, TrainConfig, fit
from cmkd_lab.engine import stack as stack_module
from cmkd_lab.engine.stack import call_copy, fast_path
from cmkd_lab.losses import make_loss
from cmkd_lab.models import ModelSpec
from cmkd_lab.systems import Distillation, train_classifier

FAST = [
    ModelSpec("linear", (25,), 2),
    ModelSpec("mlp", (12,), 3, hidden=(16,)),
    ModelSpec("mlp", (3, 4), 4, hidden=(16, 8)),  # a sample of two dims: the flatten comes first
]
GENERIC = [
    ModelSpec("cnn1d", (3, 10), 3, hidden=(4,)),
    ModelSpec("mlp", (12,), 3, hidden=(16,), batch_norm=True),
    ModelSpec("mlp", (12,), 3, hidden=(16,), dropout=0.5),
]
ATOL = 1e-6


def inputs(spec, n_models=3, n=20, seed=0):
    return torch.randn(n_models, n, *spec.input_shape, generator=torch.Generator().manual_seed(seed))


def forbid_generic_path(monkeypatch):
    """Make the generic path fail, so a call that succeeds took the fast path."""

    def generic(*args, **kwargs):
        raise AssertionError("the generic vmap(functional_call) path ran")

    monkeypatch.setattr(stack_module, "functional_call", generic)


def outputs_and_gradients(stack, run):
    """``run(params)`` → (logits, features); a loss over all of them, backpropagated to fresh copies
    of the stack's parameters; returns the outputs and each parameter's gradient."""
    params = {k: v.clone().requires_grad_(True) for k, v in stack.params.items()}
    logits, features = run(params)
    loss = logits.square().sum() + sum(value.sin().sum() for value in features.values())
    loss.backward()
    return logits, features, {k: v.grad for k, v in params.items()}


def assert_same(fast, generic):
    (logits, features, grads), (logits_g, features_g, grads_g) = fast, generic
    assert torch.allclose(logits, logits_g, rtol=0, atol=ATOL)
    assert list(features) == list(features_g)  # the same layers, in Net's order
    for name in features:
        assert features[name].shape == features_g[name].shape, name
        assert torch.allclose(features[name], features_g[name], rtol=0, atol=ATOL), name
    assert set(grads) == set(grads_g)
    for name in grads:
        assert torch.allclose(grads[name], grads_g[name], rtol=1e-5, atol=ATOL), name  # sums over rows: float32 order


@pytest.mark.parametrize("spec", FAST, ids=lambda s: f"{s.kind}{s.hidden}")
def test_stack_call_gives_the_same_outputs_and_gradients_on_both_paths(spec, monkeypatch):
    stack = Stack.from_seeds(spec, [0, 1, 2])
    x = inputs(spec)
    assert stack.has_fast_path

    def run(params):
        return Stack(stack.base, params)(x, features=spec.layer_names())

    with fast_path(False):
        assert not stack.has_fast_path
        generic = outputs_and_gradients(stack, run)
    forbid_generic_path(monkeypatch)
    fast = outputs_and_gradients(stack, run)
    assert fast[0].shape == (3, 20, spec.n_classes) and fast[1]["embedding"].shape == (3, 20, spec.embedding_dim)
    assert_same(fast, generic)
    # shared inputs (a broadcast view) and chunked prediction take the fast path too
    expected = torch.cat([generic[0][:, :7], generic[0][:, 7:]], 1)
    assert torch.allclose(Stack(stack.base, stack.params).predict(x, chunk=7), expected.detach(), rtol=0, atol=ATOL)
    shared = stack(stack.broadcast(x[0]))[0]
    for i in range(3):
        assert torch.allclose(shared[i], stack.module(i)(x[0])[0], atol=1e-5)


@pytest.mark.parametrize("spec", FAST, ids=lambda s: f"{s.kind}{s.hidden}")
@pytest.mark.parametrize("shared_input", [False, True], ids=["per-copy-input", "shared-input"])
def test_a_copy_called_inside_vmap_gives_the_same_outputs_and_gradients_on_both_paths(spec, shared_input, monkeypatch):
    """The engine's steps call one copy inside ``vmap`` (:func:`call_copy`); the fast path runs the
    kernels on the stacked tensors behind the copy's, also for an input vmap does not batch."""
    stack = Stack.from_seeds(spec, [3, 4, 5])
    x = inputs(spec, seed=1)[0] if shared_input else inputs(spec, seed=1)

    def run(params):
        one = lambda p, x: call_copy(stack.base, p, {}, (x,), {"features": spec.layer_names()})  # noqa: E731
        return vmap(one, in_dims=(0, None if shared_input else 0))(params, x)

    with fast_path(False):
        generic = outputs_and_gradients(stack, run)
    forbid_generic_path(monkeypatch)
    assert_same(outputs_and_gradients(stack, run), generic)


def fit_both_ways(run, monkeypatch):
    with fast_path(False):
        generic = run()
    with monkeypatch.context() as patch:
        forbid_generic_path(patch)  # every step, validation and chance check went the fast path
        fast = run()
    return fast, generic


def assert_same_fits(fast, generic):
    assert set(fast.modules) == set(generic.modules)
    for name, stack in fast.modules.items():
        for key, value in stack.state().items():
            assert torch.allclose(value, generic.modules[name].state()[key], rtol=0, atol=1e-5), (name, key)
    assert set(fast.history) == set(generic.history)
    for term, values in fast.history.items():
        assert values.shape == generic.history[term].shape
        assert abs(values - generic.history[term]).max() <= 1e-5, term
    for head, epochs in fast.selected_epoch.items():
        assert (epochs == generic.selected_epoch[head]).all()


@pytest.mark.parametrize(
    "spec, config",
    [
        (FAST[0], TrainConfig(epochs=40, lr=0.1)),
        (FAST[2], TrainConfig(epochs=6, lr=0.01, optimizer="adam", batch_size=8, select="best_val")),
    ],
    ids=["linear-sgd-fullbatch", "mlp-adam-minibatch-best-val"],
)
def test_a_fit_ends_with_the_same_weights_and_log_on_both_paths(spec, config, monkeypatch):
    x = inputs(spec, n_models=4, n=40, seed=2)
    y = (x.flatten(2)[..., : spec.n_classes].argmax(-1)).long()
    val = (inputs(spec, n_models=4, n=30, seed=3), torch.randint(0, spec.n_classes, (4, 30)))

    def run():
        return train_classifier(spec, x, y, seeds=[0, 1, 2, 3], config=config, val=val, progress=False)

    fast, generic = fit_both_ways(run, monkeypatch)
    assert_same_fits(fast, generic)
    initial = Stack.from_seeds(spec, [0]).params["head.weight"][0]
    assert not torch.allclose(fast.modules["student"].params["head.weight"][0], initial)  # it trained


def test_distillation_from_a_frozen_teacher_run_at_every_step_is_the_same_on_both_paths(monkeypatch):
    """An uncached teacher (a frozen stack called inside the step, without gradients) and KD."""
    teacher_spec, spec = ModelSpec("mlp", (6,), 3, hidden=(8,)), ModelSpec("linear", (5,), 3)
    teacher = Stack.from_seeds(teacher_spec, [7, 8, 9])
    x_teacher, x = inputs(teacher_spec, n=30, seed=4), inputs(spec, n=30, seed=5)
    data = {"x": x, "x_teacher": x_teacher, "y": teacher.predict(x_teacher).argmax(-1)}
    system = Distillation(spec, make_loss("kd", temperature=2.0, reduction="batchmean"), teacher, cache_teacher=False)

    def run():
        return fit(system, data, seeds=[0, 1, 2], config=TrainConfig(epochs=15, lr=0.1), progress=False)

    fast, generic = fit_both_ways(run, monkeypatch)
    assert {"ce", "kd", "total"} <= set(fast.history)
    assert_same_fits(fast, generic)


@pytest.mark.parametrize("spec", GENERIC, ids=["cnn1d", "mlp-batchnorm", "mlp-dropout"])
def test_models_the_fast_path_does_not_know_go_the_generic_path(spec, monkeypatch):
    stack = Stack.from_seeds(spec, [0, 1])
    x = inputs(spec, n_models=2, n=6)
    assert not stack.has_fast_path
    logits, _ = stack(x)
    for i in range(2):
        assert torch.allclose(logits[i], stack.module(i)(x[i])[0], atol=1e-5)
    forbid_generic_path(monkeypatch)
    with pytest.raises(AssertionError, match="generic"):
        stack(x)
    with pytest.raises(AssertionError, match="generic"):
        vmap(lambda p, b, x: call_copy(stack.base, p, b, (x,), {}))(stack.params, stack.buffers, x)


def test_other_modules_and_edited_calls_go_the_generic_path(monkeypatch):
    spec = FAST[1]
    net_stack = Stack.from_seeds(spec, [0, 1])
    other = Stack.from_seeds(lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), [0, 1])
    x = inputs(spec, n_models=2, n=5)
    replacement = torch.zeros(2, 5, spec.embedding_dim)
    edit = {"embedding": Edit(lambda _output, new: new, (replacement,))}
    expected = net_stack(x, edits=edit)[0]
    assert torch.allclose(expected, net_stack.params["head.bias"].unsqueeze(1).expand(2, 5, 3))
    assert not other.has_fast_path
    forbid_generic_path(monkeypatch)
    for call in (lambda: other(x), lambda: net_stack(x, edits=edit)):
        with pytest.raises(AssertionError, match="generic"):
            call()


def test_the_fast_path_checks_layer_names_as_net_does_and_the_switch_restores_itself():
    stack = Stack.from_seeds(FAST[1], [0])
    with pytest.raises(ValueError, match=r"unknown layer.*fc9.*layers"):
        stack(inputs(FAST[1], n_models=1), features=["fc9"])
    with pytest.raises(RuntimeError, match="inside"):
        with fast_path(False):
            raise RuntimeError("inside")
    assert stack_module.FAST_PATH and stack.has_fast_path
