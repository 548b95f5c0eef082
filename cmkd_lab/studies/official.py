"""``rng="official"``: the Gaussian studies' runs drawn exactly as the official scripts draw them.

The official Gaussian scripts are deterministic: each run seeds Python, NumPy and torch, draws
its data from NumPy's global generator and its nets' initial weights (and Algorithm 1's
permutations) from torch's. The data side lives in :mod:`cmkd_lab.datasets.synthetic`
(:func:`~cmkd_lab.datasets.synthetic.official_generator`); this module replays the torch side
(:func:`replay`). Training draws nothing (full-batch SGD), so rows then equal the official
script's run for run, up to float rounding between a batched and a one-model fit.

**MFH Fig. 2 / Fig. 3 (``gauss/main.py``), NTDH's Gaussian study (``gauss/main.py``).** Per run ``s``:

1. ``seed(s)``; the hyperplane ``randn(500)`` is drawn, then the training set (xs, x_b, x_a);
2. ``seed(s + 1)``, then the test set;
3. the teacher's ``nn.Linear(d_a, K)``, the KD student's and the No-KD student's
   ``nn.Linear(d_b, K)`` are built in that order, so their initial weights are consecutive
   draws of torch's generator seeded ``s + 1``.

NTDH's KD function also builds its CRD loss after the KD student and before the No-KD student
(whatever the KD mode): two ``nn.Linear(2, 8)`` embeddings and two ``(n_train, 8)`` uniform
memory banks (the CRD reference implementation's ``ContrastMemory``), so those draws are
replayed too (:func:`official_inits`).

These runs overlap: ``seed(s + 1)`` starts both run s's test set and run s + 1's hyperplane and
training set, so every latent row of run s + 1's training set is a row of run s's test set
(offset by the hyperplane's draws): the runs are not independent, while a ± or an interval
over them assumes they are. The kit's own draws (``rng="kit"``) share no sample between runs.

**MFH Table 2 (``gauss/main_modify_gamma.py``).** For each xs2 the script runs its loop three
times, once per teacher mode (``random``, ``gt``, ``alg1``), over runs ``s = 42 + r``
(r = 0..9; the kit's own runs use 42 + 3r). Its runs share no sample: each reseeds NumPy with its own
seed and draws its three sets from that one stream. Per run, in each of those calls:

1. ``seed(s)`` (Python, NumPy, torch);
2. NumPy: the training set (xs, then x_a, then x_b), then the test set, without reseeding;
3. torch: the regular teacher's ``Linear(50, 2)``;
4. ``alg1`` call only: Algorithm 1's joint teacher ``Linear(50, 2)``, then its joint student
   ``Linear(50, 2)`` (trained on the regular teacher's draw), then for each of the 100 repeats
   one ``randperm(n_train)`` per channel of x_b (50; those scores only feed the x_b recovery
   the script prints) and then one per channel of x_a (50): every channel of every repeat has a
   permutation of its own;
5. NumPy: the fresh training draw (same order), on which everything below trains;
6. torch: the No-KD student's ``Linear(50, 2)``, then the regular KD student's (the script
   trains it with the modalities swapped: student on x_a, teacher fed x_b);
7. the modality-general (MG) teacher's channels of x_a, in order: ``random``: NumPy's
   ``randint(0, 50, xs2)`` (repeats possible); ``gt``: 0..xs2 − 1; ``alg1``: the xs2 channels
   of highest mean score, highest first;
8. torch: the MG teacher's ``Linear(xs2, 2)`` on those channels, then its KD student's
   ``Linear(50, 2)``.

The regular teacher is the same in the three calls; No-KD, regular KD and the MG nets are the
same in the ``random`` and ``gt`` calls but not in the ``alg1`` call, where Algorithm 1's draws
come first. :func:`mfh_table2_nets` replays one call's torch draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..models import ModelSpec, Net, seeded
from .runner import Task

CRD_FEATURE_DIM = 8  # NTDH's CRD options: feat_dim 8, s_dim = t_dim = 2 (the logits)
CRD_LOGIT_DIM = 2
TABLE2_CHANNELS = 50  # MFH Table 2: x_a and x_b are both 50-d, two classes

Draw = tuple[str | None, Callable[[], object]]


def replay(seed: int, draws: Sequence[Draw]) -> dict[str, object]:
    """Each ``(name, draw)`` of ``draws`` called in order on torch's generator seeded ``seed``
    (the global generator is left as it was): what the named ones return, by name, a net as a
    copy of its initial state dict. Unnamed draws only advance the generator."""

    def run() -> dict[str, object]:
        drawn = {}
        for name, draw in draws:
            value = draw()
            if name is not None:
                drawn[name] = (
                    {k: v.detach().clone() for k, v in value.state_dict().items()}
                    if isinstance(value, nn.Module)
                    else value
                )
        return drawn

    return seeded(run, seed)


def _net(spec: ModelSpec) -> Callable[[], Net]:
    return lambda: Net(spec)


def ntdh_crd_draws(n_train: int) -> Callable[[], None]:
    """What NTDH's CRD loss draws from torch's generator when it is built."""

    def draw() -> None:
        nn.Linear(CRD_LOGIT_DIM, CRD_FEATURE_DIM)
        nn.Linear(CRD_LOGIT_DIM, CRD_FEATURE_DIM)
        torch.rand(n_train, CRD_FEATURE_DIM)
        torch.rand(n_train, CRD_FEATURE_DIM)

    return draw


def official_inits(
    seed: int,
    teacher: ModelSpec,
    student: ModelSpec,
    kd_methods: Sequence[str] = ("kd",),
    after_kd: Callable[[], None] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Initial weights of the teacher, each KD student and the No-KD student of run ``seed`` of
    the Fig. 2/3 and NTDH scripts, drawn in their order from torch's generator seeded
    ``seed + 1``. ``after_kd`` replays what the script draws between the KD students and the
    No-KD student."""
    draws: list[Draw] = [("teacher", _net(teacher)), *((method, _net(student)) for method in kd_methods)]
    if after_kd is not None:
        draws.append((None, after_kd))
    draws.append(("no_kd", _net(student)))
    return replay(seed + 1, draws)


def with_official_inits(
    task: Task, kd_methods: Sequence[str] = ("kd",), after_kd: Callable[[], None] | None = None
) -> Task:
    """``task`` (two-modality linear study: teacher on ``a``, students on ``b``) with the official
    initial weights of its run."""
    train = task.splits.train
    n_classes = train.n_classes
    teacher = ModelSpec("linear", tuple(train["a"].shape[1:]), n_classes)
    student = ModelSpec("linear", tuple(train["b"].shape[1:]), n_classes)
    return Task(
        task.splits, task.seed, task.settings, official_inits(task.seed, teacher, student, kd_methods, after_kd)
    )


def algorithm1_permutations(
    n_samples: int, repeats: int, channels: int = TABLE2_CHANNELS
) -> Callable[[], torch.Tensor]:
    """What the Table 2 script's Algorithm 1 draws from torch's generator: per repeat one
    ``randperm(n_samples)`` per channel of x_b, then one per channel of x_a. The draw returns
    x_a's, ``(repeats, channels, n_samples)``."""

    def draw() -> torch.Tensor:
        kept = []
        for _ in range(repeats):
            for _ in range(channels):  # x_b's channels: they only score x_b
                torch.randperm(n_samples)
            kept.append(torch.stack([torch.randperm(n_samples) for _ in range(channels)]))
        return torch.stack(kept)

    return draw


def mfh_table2_nets(seed: int, shared: int, n_train: int, algorithm1_repeats: int | None = None) -> dict[str, object]:
    """What one call of the Table 2 script draws from torch's generator in run ``seed`` (seeded
    ``seed``; the data come from NumPy alone), as state dicts: ``"teacher"`` (regular),
    ``"no_kd"``, ``"kd"`` (regular KD), ``"mg_teacher"`` (``Linear(shared, 2)``) and ``"mg_kd"``.
    With ``algorithm1_repeats`` it is the ``alg1`` call, which draws Algorithm 1's
    ``"alg1_teacher"``, ``"alg1_student"`` and ``"alg1_permutations"``
    (:func:`algorithm1_permutations`) after the regular teacher; without, the ``random`` or
    ``gt`` call (the two draw the same)."""
    full = ModelSpec("linear", (TABLE2_CHANNELS,), 2)
    draws: list[Draw] = [("teacher", _net(full))]
    if algorithm1_repeats is not None:
        draws += [
            ("alg1_teacher", _net(full)),
            ("alg1_student", _net(full)),
            ("alg1_permutations", algorithm1_permutations(n_train, algorithm1_repeats)),
        ]
    draws += [
        ("no_kd", _net(full)),
        ("kd", _net(full)),
        ("mg_teacher", _net(ModelSpec("linear", (shared,), 2))),
        ("mg_kd", _net(full)),
    ]
    return replay(seed, draws)
