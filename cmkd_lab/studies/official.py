"""``rng="official"``: the Gaussian studies' runs drawn exactly as the official scripts draw them.

The official Gaussian scripts (MFH ``gauss/main.py``; NTDH ``gauss/main.py``) are deterministic.
Per run ``s``:

1. ``seed(s)`` seeds Python, NumPy and torch; the hyperplane ``randn(500)`` is drawn, then the
   training set (xs, x_b, x_a) from NumPy's global generator;
2. ``seed(s + 1)``, then the test set;
3. the teacher's ``nn.Linear(d_a, K)``, the KD student's and the No-KD student's
   ``nn.Linear(d_b, K)`` are built in that order, so their initial weights are consecutive
   draws of torch's generator seeded ``s + 1`` (training draws nothing: full-batch SGD).

NTDH's KD function also builds its CRD loss after the KD student and before the No-KD student
(whatever the KD mode): two ``nn.Linear(2, 8)`` embeddings and two ``(n_train, 8)`` uniform
memory banks (the CRD reference implementation's ``ContrastMemory``), so those draws are
replayed too. The data side lives in :func:`cmkd_lab.datasets.synthetic.numpy_generator`; this
module gives the nets. Rows then equal the official script's run for run, up to float
rounding between a batched and a one-model fit.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..experiment import Task
from ..models import ModelSpec, Net, seeded

CRD_FEATURE_DIM = 8  # NTDH's CRD options: feat_dim 8, s_dim = t_dim = 2 (the logits)
CRD_LOGIT_DIM = 2


def ntdh_crd_draws(n_train: int) -> Callable[[], None]:
    """What NTDH's CRD loss draws from torch's generator when it is built."""

    def draw() -> None:
        nn.Linear(CRD_LOGIT_DIM, CRD_FEATURE_DIM)
        nn.Linear(CRD_LOGIT_DIM, CRD_FEATURE_DIM)
        torch.rand(n_train, CRD_FEATURE_DIM)
        torch.rand(n_train, CRD_FEATURE_DIM)

    return draw


def official_inits(seed: int, teacher: ModelSpec, student: ModelSpec, kd_methods: Sequence[str] = ("kd",),
                   after_kd: Callable[[], None] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Initial weights of the teacher, each KD student and the No-KD student of run ``seed``,
    drawn in the official order from torch's generator seeded ``seed + 1`` (leaving the global
    generator as it was). ``after_kd`` replays what the script draws between the KD students
    and the No-KD student."""
    def draw() -> dict[str, Net]:
        nets = {"teacher": Net(teacher)}
        for method in kd_methods:
            nets[method] = Net(student)
        if after_kd is not None:
            after_kd()
        nets["no_kd"] = Net(student)
        return nets

    nets = seeded(draw, seed + 1)
    return {method: {k: v.detach().clone() for k, v in net.state_dict().items()} for method, net in nets.items()}


def with_official_inits(task: Task, kd_methods: Sequence[str] = ("kd",), after_kd: Callable[[], None] | None = None) -> Task:
    """``task`` (two-modality linear study: teacher on ``a``, students on ``b``) with the official
    initial weights of its run."""
    train = task.splits.train
    n_classes = train.n_classes
    teacher = ModelSpec("linear", tuple(train["a"].shape[1:]), n_classes)
    student = ModelSpec("linear", tuple(train["b"].shape[1:]), n_classes)
    return Task(task.splits, task.seed, task.settings, official_inits(task.seed, teacher, student, kd_methods, after_kd))
