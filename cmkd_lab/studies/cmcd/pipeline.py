"""CMCD's three stages (papers.md §3), batched over seeds and settings, for any paired data.

Per :class:`Transfer` (one seed's data, and the setting values it stands for):

1. **SSL** on the source modality's unlabeled training samples: :class:`~cmkd_lab.systems.ContrastiveSSL`
   gives the teacher encoder.
2. **Distil** on ``n_paired`` paired, unlabeled samples into a target encoder:
   :class:`~cmkd_lab.systems.EmbeddingDistillation` with CMD, CMC or L2 alignment.
3. **Linear probe** (encoder frozen) and **fine-tune** (encoder trained) on ``n_labeled`` labeled
   target samples: :class:`~cmkd_lab.systems.EncoderClassifier`, started from stage 2.

Baselines: ``no_distill`` (a random target encoder, probed), ``target_ssl`` (the target encoder
from SSL on the paired target samples, probed and fine-tuned) and ``finetune_only`` (the random
encoder fine-tuned). Every method's stage-3 model starts its head from the same seed, so methods
are compared seed by seed. All tasks of equal shapes train together: one fit per stage and method,
each through the study's :class:`~cmkd_lab.studies.runner.StudyRunner` (:func:`run_transfers`).

Rows (``stage`` ``probe`` | ``finetune``): ``test_acc`` on the target test split, and the
modality distance between the teacher's embedding of the source test samples and that stage's
target embedding of the paired target test samples (both as unit vectors), estimated two ways: ``tv_lower_bound``
(a held-out linear domain classifier: TV ≥ |2·acc − 1|) and ``mmd`` (unbiased MMD², Gaussian kernel).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ...analysis.metrics import accuracy, domain_tv_lower_bound, mmd
from ...analysis.results import tidy_rows
from ...datasets import Splits, standardise
from ...datasets.core import run_generator
from ...engine import FitResult, Stack, TrainConfig
from ...losses import make_embedding_loss, unit_rows
from ...models import ModelSpec
from ...systems import TEACHER_PREFIX, ContrastiveSSL, EmbeddingDistillation, EncoderClassifier, two_views
from ..runner import StudyRunner, repeat_models

DISTILLERS = ("cmd", "cmc", "l2")
METHODS = DISTILLERS + ("no_distill", "target_ssl", "finetune_only")
STAGES = ("probe", "finetune")
# which stages each method reports: a random encoder is probed (no_distill) or fine-tuned (finetune_only)
METHOD_STAGES = {
    **{m: STAGES for m in DISTILLERS + ("target_ssl",)},
    "no_distill": ("probe",),
    "finetune_only": ("finetune",),
}


@dataclass(frozen=True)
class Transfer:
    """One seed's data for the three stages, as ``(N, ...)`` tensors."""

    source_unlabeled: torch.Tensor  # stage 1
    source_paired: torch.Tensor  # stage 2, paired row by row with target_paired
    target_paired: torch.Tensor
    target_labeled: torch.Tensor  # stage 3
    labels: torch.Tensor
    source_test: torch.Tensor  # evaluation, paired row by row
    target_test: torch.Tensor
    test_labels: torch.Tensor
    n_classes: int
    seed: int
    settings: dict = field(default_factory=dict)

    def shape_key(self) -> tuple:
        tensors = (self.source_unlabeled, self.source_paired, self.target_paired, self.target_labeled, self.target_test)
        return tuple(tuple(t.shape) for t in tensors) + (self.n_classes,)


def make_transfer(
    splits: Splits, source: str, target: str, *, n_paired: int, n_labeled: int, seed: int, settings: dict
) -> Transfer:
    """A :class:`Transfer` from a seeded split: SSL on every training sample's source; ``n_paired``
    training samples (a seeded draw, labels unused) to distil on; ``n_labeled`` other training
    samples, as even across classes as the classes allow, to probe and fine-tune on; the test split."""
    train = splits.train
    n_classes = max(part.n_classes for part in splits.parts().values())
    order = run_generator(seed, "cmcd_transfer", "train").permutation(len(train))
    labels = train.labels.numpy()[order]
    if n_labeled < n_classes:
        raise ValueError(f"n_labeled = {n_labeled} cannot hold one sample of each of {n_classes} classes")
    # the labeled set: round-robin over classes in the seeded order, so every class has ⌊m/K⌋ or more
    rank_in_class = np.zeros(len(order), dtype=int)
    for k in range(n_classes):
        rank_in_class[labels == k] = np.arange((labels == k).sum())
    labeled = order[np.lexsort((np.arange(len(order)), rank_in_class))[:n_labeled]]
    rest = order[~np.isin(order, labeled)]
    if n_paired > len(rest):
        raise ValueError(
            f"n_paired = {n_paired} but only {len(rest)} training samples remain after the "
            f"{n_labeled} labeled ones; lower n_paired or n_labeled"
        )
    paired = rest[:n_paired]
    return Transfer(
        source_unlabeled=train[source],
        source_paired=train[source][paired],
        target_paired=train[target][paired],
        target_labeled=train[target][labeled],
        labels=train.labels[labeled],
        source_test=splits.test[source],
        target_test=splits.test[target],
        test_labels=splits.test.labels,
        n_classes=n_classes,
        seed=seed,
        settings=settings,
    )


@dataclass(frozen=True)
class Stages:
    """How each stage trains, and the loss settings (temperatures are our reading: the paper
    does not fix them). The CMCD notebooks' parameter classes are Stages too."""

    embedding_dim: int = 16
    ssl_epochs: int = 30
    distill_epochs: int = 60
    head_epochs: int = 100
    lr: float = 1e-3
    head_lr: float = 1e-2
    batch_size: int = 128
    ssl_temperature: float = 0.1
    cmd_student_temperature: float = 0.1
    cmd_teacher_temperature: float = 0.05
    cmc_temperature: float = 0.07
    queue_size: int = 0
    augment_noise: float = 0.1
    augment_drop: float = 0.2
    device: str = "auto"  # where every stage trains (see TrainConfig)

    def loss(self, name: str):
        options = {
            "cmd": {
                "student_temperature": self.cmd_student_temperature,
                "teacher_temperature": self.cmd_teacher_temperature,
                "queue_size": self.queue_size,
            },
            "cmc": {"temperature": self.cmc_temperature},
            "l2": {},
        }
        return make_embedding_loss(name, **options[name])

    def representation_config(self, epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, lr=self.lr, optimizer="adam", batch_size=self.batch_size, device=self.device)

    def head_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.head_epochs, lr=self.head_lr, optimizer="adam", device=self.device)


# what stage 1 (the SSL teachers) depends on: variants of the later stages must keep these
SSL_SETTINGS = (
    "embedding_dim",
    "ssl_epochs",
    "lr",
    "batch_size",
    "ssl_temperature",
    "augment_noise",
    "augment_drop",
    "device",
)


def run_transfers(
    runner: StudyRunner,
    transfers: Sequence[Transfer],
    *,
    source_net: ModelSpec,
    target_net: ModelSpec,
    stages: Stages = Stages(),
    methods: Sequence[str] = METHODS,
    variants: Mapping[str, Stages] | None = None,
) -> None:
    """Every method of ``methods`` on every transfer, as fits of ``runner``: the SSL teachers first
    (one per distinct seed and source data, so settings that move only the target share them),
    then one batched fit per stage and method per group of equal shapes.

    Parameters
    ----------
    runner : StudyRunner
        Runs and logs every fit (``ssl_teacher``, each distiller, ``target_ssl``, ``probe``,
        ``finetune``) and collects the rows, of study ``runner.study``.
    transfers : sequence of Transfer
        One seed's data each (tensors ``(N, ...)``); transfers of equal shapes train together.
    source_net, target_net : ModelSpec
        Templates of the source (teacher) and target encoders, sized to each modality's sample
        shape with ``stages.embedding_dim`` outputs.
    stages : Stages
        How each stage trains, and the losses' settings.
    methods : sequence of str
        Of :data:`METHODS`; an unknown name raises, listing them.
    variants : mapping of str to Stages, optional
        Names → stage settings that differ from ``stages`` after stage 1 only (e.g. CMD's queue
        or temperatures): stages 2 and 3 run once per variant, all from the same SSL teachers;
        each row then carries its ``variant``. A variant that changes a setting of
        :data:`SSL_SETTINGS` raises.

    Returns
    -------
    None
        Rows (``stage`` ``probe`` | ``finetune``; ``test_acc``, ``tv_lower_bound``, ``mmd`` per
        seed) and fits go to ``runner``; read them with ``runner.result()``.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}")
    for name, variant in (variants or {}).items():
        moved = [s for s in SSL_SETTINGS if getattr(variant, s) != getattr(stages, s)]
        if moved:
            raise ValueError(f"variant {name!r} changes {moved}, which the shared SSL teachers depend on")
    teachers = _train_teachers(runner, transfers, source_net, stages)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, transfer in enumerate(transfers):
        groups[transfer.shape_key()].append(i)
    for members in groups.values():
        group_teacher = Stack.concat([teachers[i] for i in members])
        for name, variant in (variants or {None: stages}).items():
            group = [
                transfers[i]
                if name is None
                else replace(transfers[i], settings={**transfers[i].settings, "variant": name})
                for i in members
            ]
            _run_group(runner, group, group_teacher, target_net, variant, methods)


def stacked(transfers: Sequence[Transfer], name: str) -> torch.Tensor:
    """Field ``name`` of every transfer, stacked: ``(M, N, ...)``."""
    return torch.stack([getattr(t, name) for t in transfers])


def _train_teachers(
    runner: StudyRunner, transfers: Sequence[Transfer], source_net: ModelSpec, stages: Stages
) -> list[Stack]:
    """Stage 1: an SSL teacher (one copy) per transfer, trained once per distinct (seed, source data)."""
    keys = [(t.seed, _digest(t.source_unlabeled)) for t in transfers]
    by_shape: dict[tuple, dict] = defaultdict(dict)
    for transfer, key in zip(transfers, keys):
        by_shape[tuple(transfer.source_unlabeled.shape)].setdefault(key, transfer.source_unlabeled)
    teacher_of = {}
    for shape, distinct in by_shape.items():
        result = runner.fit(
            "ssl_teacher",
            ContrastiveSSL(source_net.sized(shape[1:], stages.embedding_dim), stages.ssl_temperature),
            {"x": torch.stack(list(distinct.values()))},
            seeds=[seed for seed, _ in distinct],
            config=stages.representation_config(stages.ssl_epochs),
            augment=two_views(stages.augment_noise, stages.augment_drop),
            description="source SSL (teachers)",
        )
        for i, key in enumerate(distinct):
            teacher_of[key] = result.modules["encoder"].subset([i])
    return [teacher_of[key] for key in keys]


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.contiguous().numpy().tobytes()).hexdigest()


def _run_group(
    runner: StudyRunner,
    transfers: Sequence[Transfer],
    teacher: Stack,
    target_net: ModelSpec,
    stages: Stages,
    methods: Sequence[str],
) -> None:
    """Stages 2 and 3 of ``methods`` on transfers of equal shapes, from their SSL ``teacher``."""
    seeds = [t.seed for t in transfers]
    target_spec = target_net.sized(tuple(transfers[0].target_paired.shape[1:]), stages.embedding_dim)
    representation = stages.representation_config
    encoders = {}
    with torch.no_grad():
        teacher_paired = teacher(stacked(transfers, "source_paired"))[0]
        teacher_test = teacher(stacked(transfers, "source_test"))[0]
    # stage 2: each distiller, and SSL on the paired target samples, gives a target encoder
    for name in DISTILLERS:
        if name in methods:
            encoders[name] = runner.fit(
                name,
                EmbeddingDistillation(target_spec, stages.loss(name), stages.embedding_dim),
                {"x": stacked(transfers, "target_paired"), f"{TEACHER_PREFIX}embedding": teacher_paired},
                seeds=seeds,
                config=representation(stages.distill_epochs),
                description=f"distil ({name})",
            ).modules["encoder"]
    if "target_ssl" in methods:
        encoders["target_ssl"] = runner.fit(
            "target_ssl",
            ContrastiveSSL(target_spec, stages.ssl_temperature),
            {"x": stacked(transfers, "target_paired")},
            seeds=seeds,
            config=representation(stages.ssl_epochs),
            augment=two_views(stages.augment_noise, stages.augment_drop),
            description="target SSL",
        ).modules["encoder"]
    random_encoder = Stack.from_seeds(target_spec, seeds)
    for name in ("no_distill", "finetune_only"):
        if name in methods:
            encoders[name] = random_encoder
    # stage 3: every encoder probed (frozen) in one fit, fine-tuned in another
    for stage in STAGES:
        chosen = [m for m in encoders if stage in METHOD_STAGES[m]]
        if not chosen:
            continue
        k = len(chosen)
        result = runner.fit(
            stage,
            EncoderClassifier(target_spec, transfers[0].n_classes),
            {
                "x": repeat_models(stacked(transfers, "target_labeled"), k),
                "y": repeat_models(stacked(transfers, "labels"), k),
            },
            seeds=seeds * k,
            config=stages.head_config(),
            init={"encoder": Stack.concat([encoders[m] for m in chosen])},
            freeze=["encoder"] if stage == "probe" else [],
            description=f"{stage} ({', '.join(chosen)})",
        )
        runner.add(_stage_rows(runner.study, stage, chosen, result, transfers, teacher_test))


def _stage_rows(
    study: str,
    stage: str,
    methods: Sequence[str],
    result: FitResult,
    transfers: Sequence[Transfer],
    teacher_test: torch.Tensor,
) -> list[dict]:
    """Test accuracy and modality distances of each method's stage-3 model, one row per seed;
    ``teacher_test``: the teacher's embeddings of the source test samples ``(M, N, D)``."""
    k, seeds = len(methods), [t.seed for t in transfers]
    x = repeat_models(stacked(transfers, "target_test"), k)
    logits = result.predict({"x": x})["classifier"]
    test_acc = accuracy(logits, repeat_models(stacked(transfers, "test_labels"), k)).numpy()
    with torch.no_grad():  # directions: CMD and CMC match embeddings up to their length
        student_test, teacher_test = unit_rows(result.modules["encoder"](x)[0]), unit_rows(teacher_test)
    stage_settings = [{**t.settings, "stage": stage} for t in transfers]
    rows = []
    for i, method in enumerate(methods):
        block = slice(i * len(transfers), (i + 1) * len(transfers))
        tv = [
            domain_tv_lower_bound(teacher_test[j], student_test[block][j], seed=seeds[j]) for j in range(len(transfers))
        ]
        gap = [mmd(teacher_test[j], student_test[block][j]) for j in range(len(transfers))]
        for metric, values in (("test_acc", test_acc[block]), ("tv_lower_bound", tv), ("mmd", gap)):
            rows += tidy_rows(study, method, stage_settings, seeds, metric, values)
    return rows


def transfers_from_splits(
    splits: Mapping[int, Splits],
    source: str,
    target: str,
    *,
    n_paired: int,
    n_labeled: int,
    settings: dict,
    standardize: bool = True,
) -> list[Transfer]:
    """One transfer per seed → split, each modality standardised with training-split statistics
    unless ``standardize`` is False."""
    return [
        make_transfer(
            standardise(split, [source, target], scale=standardize),
            source,
            target,
            n_paired=n_paired,
            n_labeled=n_labeled,
            seed=seed,
            settings=settings,
        )
        for seed, split in splits.items()
    ]
