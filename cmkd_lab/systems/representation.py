"""Label-free representation learning (CMCD's three stages).

:class:`ContrastiveSSL` (an encoder from two augmented views, :func:`two_views`),
:class:`EmbeddingDistillation` (a target encoder from a frozen teacher's embeddings, any
registered embedding loss) and :class:`EncoderClassifier` (a linear head on an encoder: a probe
when the encoder is frozen, fine-tuning when it trains). An encoder is a
:class:`~cmkd_lab.models.Net` whose output layer gives the embedding (``n_classes`` = embedding
width).

Data keys: ``x`` and ``y``; ``teacher.embedding`` for embedding distillation; ``x.view1``,
``x.view2`` from :func:`two_views`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.trainer import Head, StepResult, System, build_seeded
from ..losses import EmbeddingLoss, cmc_loss, cross_entropy
from ..models import Dense, ModelSpec, Net, build_model
from .distillation import TEACHER_PREFIX, _spec_record


def two_views(noise: float = 0.1, drop: float = 0.2):
    """An ``augment`` for :func:`~cmkd_lab.engine.fit`: two views of each sample of ``x``, each
    with its own Gaussian noise and a random share of its values set to zero, drawn per copy
    from the engine's generators. Our reading of "augmented views" for vectors and sensor
    windows, where image crops do not apply.

    Parameters
    ----------
    noise : float
        Standard deviation of the added Gaussian noise.
    drop : float
        Probability that a value is set to zero.

    Returns
    -------
    callable
        ``augment(batch, generators)``: adds ``x.view1`` and ``x.view2``, shaped as ``x``
        ``(M, B, ...)``, to the batch.
    """

    def augment(batch, generators):
        x = batch["x"]

        def view():
            draws = [(torch.randn(x.shape[1:], generator=g), torch.rand(x.shape[1:], generator=g)) for g in generators]
            gaussian, uniform = (torch.stack(part).to(x.device) for part in zip(*draws))
            return torch.where(uniform < drop, torch.zeros_like(x), x + noise * gaussian)

        return {**batch, "x.view1": view(), "x.view2": view()}

    return augment


@dataclass
class ContrastiveSSL(System):
    """Stage 1: an encoder trained without labels, symmetric InfoNCE between the projections of
    two augmented views of each sample (SimCLR-like, in-batch negatives).

    - Modules: ``"encoder"`` (a :class:`~cmkd_lab.models.Net` whose output is the embedding,
      width ``encoder.n_classes``) and ``"projector"`` (linear, width → width), dropped after.
    - Data keys (per copy): ``x.view1`` and ``x.view2`` ``(B, *encoder.input_shape)``, which
      ``augment=two_views()`` makes from ``x``; no labels.
    - Terms: ``"infonce"`` (:func:`~cmkd_lab.losses.cmc_loss`).
    - Heads: none.

    Parameters
    ----------
    encoder : ModelSpec
        The encoder, sized; ``n_classes`` is the embedding width.
    temperature : float
        The InfoNCE temperature.
    """

    encoder: ModelSpec
    temperature: float = 0.1

    def build(self, seed):
        width = self.encoder.n_classes
        return build_seeded(
            {"encoder": lambda: Net(self.encoder), "projector": lambda: Dense(width, width)},
            seed,
            {"projector": 1_000_003},
        )

    def step(self, modules, batch):
        project = lambda x: modules["projector"](modules["encoder"](x)[0])  # noqa: E731
        return StepResult(
            {}, {"infonce": cmc_loss(project(batch["x.view1"]), project(batch["x.view2"]), self.temperature)}
        )

    def config(self):
        return {"system": "contrastive_ssl", "encoder": _spec_record(self.encoder), "temperature": self.temperature}


@dataclass
class EmbeddingDistillation(System):
    """Stage 2: a target ``encoder`` learns from a frozen teacher's embeddings of the paired source
    samples, without labels, by ``loss``.

    - Modules: ``"encoder"`` and the loss's own (CMD's ``"queue"``, L2's ``"projector"``).
    - Data keys (per copy): ``x`` ``(B, *encoder.input_shape)`` and ``teacher.embedding``
      ``(B, teacher_dim)``, computed beforehand from the paired source samples.
    - Terms: the loss's (``"cmd"``, ``"cmc"`` or ``"l2"``).
    - Heads: none.

    Parameters
    ----------
    encoder : ModelSpec
        The target encoder, sized; ``n_classes`` is its embedding width.
    loss : EmbeddingLoss
        A registered embedding loss (:func:`~cmkd_lab.losses.make_embedding_loss`).
    teacher_dim : int
        Width of the teacher's embeddings.
    """

    encoder: ModelSpec
    loss: EmbeddingLoss
    teacher_dim: int

    def build(self, seed):
        return {
            "encoder": build_model(self.encoder, seed),
            **self.loss.modules(self.encoder.n_classes, self.teacher_dim, seed),
        }

    def step(self, modules, batch):
        student = modules["encoder"](batch["x"])[0]
        return StepResult({}, self.loss.terms(student, batch[f"{TEACHER_PREFIX}embedding"], modules))

    def weights(self):
        return self.loss.weights()

    def config(self):
        return {"system": "embedding_distillation", "encoder": _spec_record(self.encoder), "loss": self.loss.config()}


@dataclass
class EncoderClassifier(System):
    """Stage 3: a linear head on an encoder, trained on labels. Start the encoder from an earlier
    stage (``init``); freeze it for a linear probe, train it too to fine-tune.

    - Modules: ``"encoder"`` and ``"head"`` (linear, embedding width → ``n_classes``).
    - Data keys (per copy): ``x`` ``(B, *encoder.input_shape)``, ``y`` ``(B,)``.
    - Terms: ``"ce"``.
    - Heads: ``"classifier"`` (labels ``y``, modules ``"encoder"`` and ``"head"``).

    Parameters
    ----------
    encoder : ModelSpec
        The encoder, sized; ``n_classes`` is its embedding width.
    n_classes : int
        The task's classes.
    """

    encoder: ModelSpec
    n_classes: int

    def build(self, seed):
        return build_seeded(
            {"encoder": lambda: Net(self.encoder), "head": lambda: Dense(self.encoder.n_classes, self.n_classes)},
            seed,
            {"head": 2_000_003},
        )

    def step(self, modules, batch):
        logits = self._logits(modules, batch)
        return StepResult({"logits": logits}, {"ce": cross_entropy(logits, batch["y"])})

    def _logits(self, modules, batch):
        return modules["head"](modules["encoder"](batch["x"])[0])

    def heads(self):
        return {"classifier": Head("y", ("encoder", "head"))}

    def predict(self, modules, batch):
        return {"classifier": self._logits(modules, batch)}

    def config(self):
        return {"system": "encoder_classifier", "encoder": _spec_record(self.encoder), "n_classes": self.n_classes}
