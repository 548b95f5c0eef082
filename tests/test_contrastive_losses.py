"""CMCD's label-free embedding losses (InfoNCE, CMC, CMD, L2 alignment) and their registry.

Golden values come from direct numpy loops over samples written here; properties check the
CLIP form, CMD's minimum, the temperature limits and extreme inputs; two small fits check that
the CMD queue and the L2 projector live and train inside the kit's engine.
"""

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cmkd_lab import losses
from cmkd_lab.engine import StepResult, System, TrainConfig, fit
from cmkd_lab.losses import EMBEDDING_LOSSES, EmbeddingQueue, cmc_loss, cmd_loss, info_nce, make_embedding_loss

# Hand-written: three samples in two dimensions, and four anchors (K ≠ N, to catch a swapped axis).
QUERIES = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]])
KEYS = torch.tensor([[0.5, 1.0], [2.0, -1.0], [-0.5, -0.5]])
ANCHORS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [0.5, -2.0]])


# ----------------------------------------------------------------------------- direct formulas
def _unit(rows):
    return [np.asarray(r, dtype=np.float64) / np.linalg.norm(r) for r in np.asarray(rows, dtype=np.float64)]


def _log_sum_exp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _direct_info_nce(queries, keys, temperature):
    q, k = _unit(queries), _unit(keys)
    per_query = []
    for i in range(len(q)):
        logits = [float(q[i] @ k[j]) / temperature for j in range(len(k))]
        per_query.append(_log_sum_exp(logits) - logits[i])
    return sum(per_query) / len(per_query)


def _direct_cmd(student, teacher, anchors, student_temperature, teacher_temperature):
    s, t, a = _unit(student), _unit(teacher), _unit(anchors)
    per_sample = []
    for i in range(len(s)):
        teacher_logits = [float(t[i] @ a[j]) / teacher_temperature for j in range(len(a))]
        student_logits = [float(s[i] @ a[j]) / student_temperature for j in range(len(a))]
        teacher_norm, student_norm = _log_sum_exp(teacher_logits), _log_sum_exp(student_logits)
        per_sample.append(
            -sum(math.exp(tl - teacher_norm) * (sl - student_norm) for tl, sl in zip(teacher_logits, student_logits))
        )
    return sum(per_sample) / len(per_sample)


def test_golden_values_against_direct_loops():
    values = {
        "info_nce": (info_nce(QUERIES, KEYS, 0.5), _direct_info_nce(QUERIES, KEYS, 0.5)),
        "info_nce_reverse": (info_nce(KEYS, QUERIES, 0.5), _direct_info_nce(KEYS, QUERIES, 0.5)),
        "cmc": (
            cmc_loss(QUERIES, KEYS, 0.5),
            (_direct_info_nce(QUERIES, KEYS, 0.5) + _direct_info_nce(KEYS, QUERIES, 0.5)) / 2,
        ),
        "cmd_anchors": (cmd_loss(QUERIES, KEYS, ANCHORS, 0.5, 0.25), _direct_cmd(QUERIES, KEYS, ANCHORS, 0.5, 0.25)),
        "cmd_batch": (cmd_loss(QUERIES, KEYS, KEYS, 0.1, 0.05), _direct_cmd(QUERIES, KEYS, KEYS, 0.1, 0.05)),
    }
    for name, (value, expected) in values.items():
        assert value.shape == () and value.item() == pytest.approx(expected, abs=1e-5), name
    # the two InfoNCE directions differ on these inputs, so the symmetric mean is a real check
    assert abs(values["info_nce"][1] - values["info_nce_reverse"][1]) > 0.01


def loss_with(loss, arguments, student, teacher):
    return loss(student, teacher, *arguments)


def test_a_leading_model_axis_gives_each_model_its_own_value_also_under_vmap():
    student = torch.stack([QUERIES, KEYS.flip(0)])
    teacher = torch.stack([KEYS, QUERIES])
    anchors = torch.stack([ANCHORS, ANCHORS.roll(1, 0)])
    for loss, arguments in ((info_nce, (0.5,)), (cmc_loss, (0.5,))):
        stacked = loss(student, teacher, *arguments)
        mapped = vmap(functools.partial(loss_with, loss, arguments))(student, teacher)
        alone = torch.stack([loss(student[i], teacher[i], *arguments) for i in range(2)])
        assert stacked.shape == (2,) and torch.allclose(stacked, alone) and torch.allclose(mapped, alone)
    stacked = cmd_loss(student, teacher, anchors, 0.5, 0.25)
    mapped = vmap(lambda s, t, a: cmd_loss(s, t, a, 0.5, 0.25))(student, teacher, anchors)
    alone = torch.stack([cmd_loss(student[i], teacher[i], anchors[i], 0.5, 0.25) for i in range(2)])
    assert stacked.shape == (2,) and torch.allclose(stacked, alone) and torch.allclose(mapped, alone)


# ----------------------------------------------------------------------------- properties
def test_cmc_equals_the_clip_loss_computed_directly():
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(10, 5, generator=g) * 3, torch.randn(10, 5, generator=g)
    temperature = 0.07
    logits = F.normalize(source, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    labels = torch.arange(10)
    clip = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(cmc_loss(source, target, temperature), clip, atol=1e-5)
    assert torch.allclose(info_nce(source, target, temperature), F.cross_entropy(logits, labels), atol=1e-5)


def test_cmd_is_minimal_when_the_student_reproduces_the_teachers_similarities():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(8, 4, generator=g)
    temperature = 0.2
    target = F.softmax(F.normalize(teacher, dim=-1) @ F.normalize(teacher, dim=-1).T / temperature, -1)
    entropy = -(target * target.log()).sum(-1).mean()
    student = teacher.clone().requires_grad_(True)
    at_teacher = cmd_loss(student, teacher, teacher, temperature, temperature)
    assert at_teacher.item() == pytest.approx(entropy.item(), abs=1e-5)
    at_teacher.backward()
    assert student.grad.abs().max() < 1e-5  # a stationary point: p_student = p_teacher
    for _ in range(5):
        perturbed = teacher + 0.1 * torch.randn(8, 4, generator=g)
        assert cmd_loss(perturbed, teacher, teacher, temperature, temperature) > entropy + 1e-4
    # a student that only scales the teacher's embeddings changes nothing: the loss normalises them
    assert cmd_loss(3 * teacher, teacher, teacher, temperature, temperature).item() == pytest.approx(
        entropy.item(), abs=1e-5
    )


def test_cmd_sends_no_gradient_to_the_teacher_or_the_anchors():
    student, teacher, anchors = (x.clone().requires_grad_(True) for x in (QUERIES, KEYS, ANCHORS))
    cmd_loss(student, teacher, anchors, 0.1, 0.05).backward()
    assert teacher.grad is None and anchors.grad is None and student.grad.abs().sum() > 0


def test_temperature_limits():
    g = torch.Generator().manual_seed(2)
    student, teacher, anchors = (torch.randn(n, 6, generator=g) for n in (9, 9, 11))
    # teacher temperature → 0: the target is one-hot on the teacher's most similar anchor
    similarities = F.normalize(teacher, dim=-1) @ F.normalize(anchors, dim=-1).T
    top_two = similarities.topk(2, -1).values
    assert (top_two[:, 0] - top_two[:, 1]).min() > 1e-3  # no near-tie that the limit would blur
    student_logits = F.normalize(student, dim=-1) @ F.normalize(anchors, dim=-1).T / 0.1
    one_hot = F.cross_entropy(student_logits, similarities.argmax(-1))
    assert cmd_loss(student, teacher, anchors, 0.1, 1e-6).item() == pytest.approx(one_hot.item(), abs=1e-5)
    assert abs(cmd_loss(student, teacher, anchors, 0.1, 1.0).item() - one_hot.item()) > 0.1
    # temperature → ∞: every key equally likely, InfoNCE → ln N
    assert info_nce(student, teacher, 1e6).item() == pytest.approx(math.log(9), abs=1e-5)
    assert cmc_loss(student, teacher, 1e6).item() == pytest.approx(math.log(9), abs=1e-5)


EXTREME_INPUTS = {
    "huge": (QUERIES * 1e30, KEYS * 1e30),
    "zero_student": (torch.zeros(3, 2), KEYS),
    "zero_teacher": (QUERIES, torch.zeros(3, 2)),
    "all_zero": (torch.zeros(3, 2), torch.zeros(3, 2)),
    "tiny": (QUERIES * 1e-30, KEYS),
}


@pytest.mark.parametrize("temperature", [1e-4, 0.07])
@pytest.mark.parametrize("case", sorted(EXTREME_INPUTS))
def test_no_nan_or_inf_on_extreme_inputs_values_or_gradients(case, temperature):
    raw_student, teacher = EXTREME_INPUTS[case]
    anchors = torch.cat([teacher, ANCHORS])
    for name, loss in {
        "info_nce": lambda s: info_nce(s, teacher, temperature),
        "cmc": lambda s: cmc_loss(s, teacher, temperature),
        "cmd": lambda s: cmd_loss(s, teacher, anchors, temperature, temperature / 2),
    }.items():
        student = raw_student.clone().requires_grad_(True)
        value = loss(student)
        value.backward()
        assert torch.isfinite(value), name
        assert torch.isfinite(student.grad).all(), name


def test_huge_embeddings_keep_their_direction():
    """float32 F.normalize alone turns rows above ~1e19 into zeros; the losses keep the direction."""
    assert info_nce(QUERIES * 1e30, KEYS * 1e30, 0.5).item() == pytest.approx(
        info_nce(QUERIES, KEYS, 0.5).item(), abs=1e-5
    )
    assert cmd_loss(QUERIES * 1e30, KEYS, ANCHORS * 1e30, 0.5, 0.25).item() == pytest.approx(
        cmd_loss(QUERIES, KEYS, ANCHORS, 0.5, 0.25).item(), abs=1e-5
    )


# ----------------------------------------------------------------------------- the queue
def test_the_queue_is_a_seeded_fifo_of_unit_teacher_embeddings():
    queue = EmbeddingQueue(4, 2, seed=3)
    assert list(queue.parameters()) == [] and queue.queue.shape == (4, 2)
    assert torch.allclose(queue.queue.norm(dim=-1), torch.ones(4))
    assert torch.equal(queue.queue, EmbeddingQueue(4, 2, seed=3).queue)
    assert not torch.allclose(queue.queue, EmbeddingQueue(4, 2, seed=4).queue)
    start = queue.queue.clone()
    anchors = queue(KEYS * 5)
    assert torch.allclose(anchors, torch.cat([F.normalize(KEYS, dim=-1), start]))
    assert torch.allclose(queue.queue, torch.cat([F.normalize(KEYS, dim=-1), start[:1]]))  # newest first, oldest out
    five = torch.cat([QUERIES, KEYS[:2]])
    queue(five)  # a batch larger than the queue keeps its first rows
    assert torch.allclose(queue.queue, F.normalize(five, dim=-1)[:4])
    queue.eval()
    before = queue.queue.clone()
    queue(ANCHORS)
    assert torch.equal(queue.queue, before)  # evaluating reads the queue, it does not write it


def test_the_queue_updates_each_stacked_copy_under_vmap():
    copies = [EmbeddingQueue(3, 2, seed) for seed in (0, 1)]
    params, buffers = stack_module_state(copies)
    start = buffers["queue"].clone()
    new = torch.stack([QUERIES[:2], KEYS[:2]])
    anchors = vmap(lambda p, b, x: functional_call(copies[0], (p, b), (x,)))(params, buffers, new)
    assert anchors.shape == (2, 5, 2)
    for i in range(2):
        assert torch.allclose(buffers["queue"][i], torch.cat([F.normalize(new[i], dim=-1), start[i][:1]]))


# ----------------------------------------------------------------------------- the registry
# What each registered loss's terms should be, from the pure functions; a missing name fails.
TERMS_DIRECTLY = {
    "cmd": lambda student, teacher, modules: {"cmd": cmd_loss(student, teacher, teacher, 0.1, 0.05)},
    "cmc": lambda student, teacher, modules: {"cmc": cmc_loss(student, teacher, 0.07)},
    "l2": lambda student, teacher, modules: {
        "l2": losses.feature_regression_loss(modules["projector"](student), teacher)
    },
}


@pytest.mark.parametrize("name", EMBEDDING_LOSSES.names())
def test_every_registered_embedding_loss_says_what_it_is_and_gives_its_terms(name):
    assert EMBEDDING_LOSSES.info(name)["about"]
    loss = make_embedding_loss(name, weight=0.5)
    modules = loss.modules(2, 2, seed=0)
    terms = loss.terms(QUERIES, KEYS, modules)
    assert set(terms) == set(loss.weights()) and all(w == 0.5 for w in loss.weights().values())
    for term, expected in TERMS_DIRECTLY[name](QUERIES, KEYS, modules).items():
        assert torch.allclose(terms[term], expected), term
    assert loss.config()["loss"] == name and loss.config()["weight"] == 0.5


def test_the_registered_options_and_their_defaults():
    assert EMBEDDING_LOSSES.names() == ["cmc", "cmd", "l2"]
    assert make_embedding_loss("cmd").config() == {
        "loss": "cmd",
        "weight": 1.0,
        "student_temperature": 0.1,
        "teacher_temperature": 0.05,
        "queue_size": 0,
    }
    assert make_embedding_loss("cmc").config() == {"loss": "cmc", "weight": 1.0, "temperature": 0.07}
    assert make_embedding_loss("cmd").modules(3, 3, 0) == {} and make_embedding_loss("cmc").modules(3, 3, 0) == {}
    projector = make_embedding_loss("l2").modules(5, 3, seed=0)["projector"]
    assert (projector.in_features, projector.out_features) == (5, 3)
    assert torch.equal(projector.weight, make_embedding_loss("l2").modules(5, 3, seed=0)["projector"].weight)
    assert not torch.equal(projector.weight, make_embedding_loss("l2").modules(5, 3, seed=1)["projector"].weight)


def test_make_embedding_loss_errors_list_the_valid_names_and_options():
    with pytest.raises(ValueError, match="unknown embedding loss 'clip'; valid names: cmc, cmd, l2"):
        make_embedding_loss("clip")
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['temperature'\] for embedding loss 'cmd'; valid options: "
        "weight, student_temperature, teacher_temperature, queue_size",
    ):
        make_embedding_loss("cmd", temperature=0.1)
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['queue_size'\] for embedding loss 'cmc'; valid options: "
        "weight, temperature",
    ):
        make_embedding_loss("cmc", queue_size=8)
    with pytest.raises(ValueError, match="queue_size must be >= 0"):
        make_embedding_loss("cmd", queue_size=-1)
    for name in ("cmd", "cmc"):
        with pytest.raises(
            ValueError, match="student's have 4 dimensions and the teacher's 3; project them, or use 'l2'"
        ):
            make_embedding_loss(name).modules(4, 3, seed=0)


# ----------------------------------------------------------------------------- inside the engine
class EmbeddingDistillation(System):
    """A linear student on ``x`` learning the teacher embeddings given as data (``teacher``)."""

    def __init__(self, loss, student_dim, teacher_dim=3):
        self.loss, self.student_dim, self.teacher_dim = loss, student_dim, teacher_dim

    def build(self, seed):
        return {
            "student": nn.Linear(4, self.student_dim),
            **self.loss.modules(self.student_dim, self.teacher_dim, seed),
        }

    def step(self, modules, batch):
        return StepResult({}, self.loss.terms(modules["student"](batch["x"]), batch["teacher"], modules))

    def weights(self):
        return self.loss.weights()


SEEDS = [0, 1, 2]


def _embedding_data(n=16):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 4, generator=g)
    teacher = x @ torch.randn(4, 3, generator=g)  # a linear student can reproduce it
    return {"x": x.expand(len(SEEDS), -1, -1), "teacher": teacher.expand(len(SEEDS), -1, -1)}


def test_the_cmd_queue_trains_inside_the_engine_one_per_copy():
    data = _embedding_data()
    loss = make_embedding_loss("cmd", queue_size=8)
    config = TrainConfig(epochs=20, lr=0.05, optimizer="adam", batch_size=4, device="cpu")
    result = fit(EmbeddingDistillation(loss, 3), data, seeds=SEEDS, config=config, progress=False)
    assert set(result.modules) == {"student", "queue"} and set(result.history) == {"cmd", "total"}
    assert (result.history["cmd"][-1] < 0.5 * result.history["cmd"][0]).all()
    queues = result.modules["queue"].buffers["queue"]
    seen = F.normalize(data["teacher"][0], dim=-1)
    for i, seed in enumerate(SEEDS):
        assert not torch.allclose(queues[i], loss.modules(3, 3, seed)["queue"].queue)
        # 16 samples in batches of 4: the queue ends holding the last two batches, 8 distinct teacher rows
        nearest = torch.cdist(queues[i], seen).min(-1)
        assert (nearest.values < 1e-5).all() and len(set(nearest.indices.tolist())) == 8
        for j in range(i):
            assert not torch.allclose(queues[i], queues[j])  # each copy shuffles with its own seed


def test_the_l2_projector_is_owned_by_the_loss_and_trains():
    data = _embedding_data()
    loss = make_embedding_loss("l2")
    config = TrainConfig(epochs=10, lr=0.05, optimizer="adam", batch_size=4, device="cpu")
    result = fit(EmbeddingDistillation(loss, 5), data, seeds=SEEDS, config=config, progress=False)
    assert set(result.modules) == {"student", "projector"} and set(result.history) == {"l2", "total"}
    assert (result.history["l2"][-1] < result.history["l2"][0]).all()
    for i, seed in enumerate(SEEDS):
        start = loss.modules(5, 3, seed)["projector"]
        assert not torch.allclose(result.modules["projector"].params["weight"][i], start.weight)
