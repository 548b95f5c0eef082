"""Label-free embedding losses (CMCD): a student learns from a frozen teacher's embeddings.

Registered in ``EMBEDDING_LOSSES`` (:func:`~cmkd_lab.losses.make_embedding_loss`): CMD
(similarity distillation, optionally against a queue of earlier teacher embeddings), CMC
(cross-modal InfoNCE) and L2 alignment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Dense, seeded
from .feature import feature_regression_loss
from .registry import EMBEDDING_LOSSES


# Contrastive cross-modality distillation (CMCD, arXiv 2405.03355): a student learns from a frozen
# teacher's embeddings without labels. Embeddings are (..., N, d); each loss L2-normalises them and
# returns the mean over samples (one value per leading index). Written for vmap: no .item(), no
# branching on tensor values, no in-place ops on inputs. The L2 alignment term is
# feature_regression_loss (a projector, then MSE), reused as is.
def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Each row of ``embeddings`` scaled to unit L2 norm (zero rows stay zero).

    Rows are first divided by their largest entry, a constant for the gradient: the direction
    does not depend on it, and F.normalize alone returns 0 for float32 rows above ~1e19, whose
    squared norm overflows to inf.

    Parameters
    ----------
    embeddings : Tensor, shape (..., N, d)

    Returns
    -------
    Tensor, shape (..., N, d)
    """
    largest = embeddings.detach().abs().amax(-1, keepdim=True)
    scale = torch.where(largest > 0, largest, torch.ones_like(largest))
    return F.normalize(embeddings / scale, dim=-1)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """One-directional InfoNCE with in-batch negatives: for query i, the cross-entropy of
    ``q̂_i · k̂_j / temperature`` over keys j with target j = i, averaged over queries.

    Parameters
    ----------
    queries, keys : Tensor, shape (..., N, d)
        Row i of each is a positive pair; both are L2-normalised (:func:`unit_rows`).
    temperature : float

    Returns
    -------
    Tensor, shape (...)
    """
    logits = unit_rows(queries) @ unit_rows(keys).transpose(-1, -2) / temperature
    return (torch.logsumexp(logits, -1) - torch.diagonal(logits, dim1=-2, dim2=-1)).mean(-1)


def cmc_loss(source: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric cross-modal InfoNCE (the CLIP loss): the mean of both directions of
    :func:`info_nce`. Also the self-supervised loss between two augmented views of one modality.

    Parameters
    ----------
    source, target : Tensor, shape (..., N, d)
        Row i of each is a positive pair.
    temperature : float

    Returns
    -------
    Tensor, shape (...)
    """
    return (info_nce(source, target, temperature) + info_nce(target, source, temperature)) / 2


def cmd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    anchors: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """CMD (SEED-like similarity distillation): the cross-entropy −Σ_j p_t(j|i) log p_s(j|i)
    between the teacher's and the student's softmax over their similarities to ``anchors``,
    averaged over samples i. The teacher's distribution is a fixed target: teacher and anchors
    are detached.

    Parameters
    ----------
    student, teacher : Tensor, shape (..., N, d)
    anchors : Tensor, shape (..., K, d)
        Teacher embeddings: the batch's, or a queue (:class:`EmbeddingQueue`).
    student_temperature, teacher_temperature : float
        The temperatures of the two softmaxes.

    Returns
    -------
    Tensor, shape (...)
    """
    anchors = unit_rows(anchors.detach()).transpose(-1, -2)
    teacher_probs = F.softmax(unit_rows(teacher.detach()) @ anchors / teacher_temperature, -1)
    student_log_probs = F.log_softmax(unit_rows(student) @ anchors / student_temperature, -1)
    return -(teacher_probs * student_log_probs).sum(-1).mean(-1)


class EmbeddingQueue(nn.Module):
    """A FIFO memory of the ``size`` most recent (unit-norm) teacher embeddings, for CMD's anchors.

    The state is one buffer ``queue`` ``(size, dim)``, started as seeded random unit vectors, and
    it is shifted rather than indexed by a pointer, so stacked copies run under
    ``vmap(functional_call)`` each update their own slice.

    Parameters
    ----------
    size : int
        How many embeddings it holds.
    dim : int
        Their width.
    seed : int
        Seeds the starting vectors.
    """

    def __init__(self, size: int, dim: int, seed: int):
        super().__init__()
        start = torch.randn(size, dim, generator=torch.Generator().manual_seed(int(seed)))
        self.register_buffer("queue", F.normalize(start, dim=-1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The anchors for this batch, ``embeddings`` ``(B, dim)`` (unit-normalised) then the
        queue; in train mode the batch then enters the queue and its oldest rows leave."""
        new = unit_rows(embeddings.detach())
        anchors = torch.cat([new, self.queue])
        if self.training:  # as BatchNorm's statistics: evaluating a loss must not change the state
            self.queue.copy_(anchors[: self.queue.shape[0]])
        return anchors


@dataclass(frozen=True, kw_only=True)
class EmbeddingLoss:
    """Base of the label-free distillation losses between a student's and a (frozen) teacher's
    embeddings, registered in ``EMBEDDING_LOSSES``.

    Parameters
    ----------
    weight : float
        Weight of the loss's term (named as the loss).
    """

    weight: float = 1.0

    name: ClassVar[str]

    def modules(self, student_dim: int, teacher_dim: int, seed: int) -> dict[str, nn.Module]:
        """The loss's own trainable (or stateful) parts for the copy of ``seed``; none by default."""
        return {}

    def terms(
        self, student: torch.Tensor, teacher: torch.Tensor, modules: Mapping[str, Callable]
    ) -> dict[str, torch.Tensor]:
        """Named loss terms at one step of one copy.

        Parameters
        ----------
        student : Tensor, shape (B, d_s)
        teacher : Tensor, shape (B, d_t)
            The teacher's embeddings of the paired samples.
        modules : mapping of str to callable
            The step's modules, those of :meth:`modules` among them.

        Returns
        -------
        dict of str to Tensor
            Each term a scalar.
        """
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """The weight of each term that ``terms()`` returns."""
        return {self.name: self.weight}

    def config(self) -> dict:
        """The loss's name and options, for the run record."""
        return {"loss": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


def _check_same_space(loss: str, student_dim: int, teacher_dim: int) -> None:
    """Similarity losses compare student and teacher embeddings directly: their widths must match."""
    if student_dim != teacher_dim:
        raise ValueError(
            f"embedding loss {loss!r} compares embeddings in one space, but the student's have "
            f"{student_dim} dimensions and the teacher's {teacher_dim}; project them, or use 'l2'"
        )


@EMBEDDING_LOSSES.register(
    "cmd", about="CMD: the student matches the teacher's softmax similarities to anchors (batch or queue)"
)
@dataclass(frozen=True, kw_only=True)
class CMD(EmbeddingLoss):
    """CMD (``"cmd"``, :func:`cmd_loss`): the student matches the teacher's softmax similarities to
    anchors, the batch's teacher embeddings or those and a queue of earlier ones.

    Reads student and teacher embeddings ``(B, d)`` of one width (a ValueError otherwise); term
    ``"cmd"``. With ``queue_size`` > 0 owns module ``"queue"`` (:class:`EmbeddingQueue`).

    Parameters
    ----------
    student_temperature, teacher_temperature : float
        The two softmaxes' temperatures (our reading: the paper does not fix them; a sharper
        teacher, as in SEED).
    queue_size : int
        0: the anchors are the batch's teacher embeddings; K > 0: the batch, then a queue of the
        K most recent earlier ones.
    weight : float
        Weight of ``"cmd"``.
    """

    student_temperature: float = 0.1
    teacher_temperature: float = 0.05
    queue_size: int = 0

    name: ClassVar[str] = "cmd"

    def __post_init__(self):
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0 (0: no queue), got {self.queue_size}")

    def modules(self, student_dim, teacher_dim, seed):
        _check_same_space(self.name, student_dim, teacher_dim)
        if not self.queue_size:
            return {}
        return {"queue": EmbeddingQueue(self.queue_size, teacher_dim, seed + 4_000_037)}  # its own stream

    def terms(self, student, teacher, modules):
        anchors = modules["queue"](teacher) if self.queue_size else teacher
        return {"cmd": cmd_loss(student, teacher, anchors, self.student_temperature, self.teacher_temperature)}


@EMBEDDING_LOSSES.register(
    "cmc", about="CMC: symmetric cross-modal InfoNCE between student and teacher embeddings (CLIP loss)"
)
@dataclass(frozen=True, kw_only=True)
class CMC(EmbeddingLoss):
    """CMC (``"cmc"``, :func:`cmc_loss`): symmetric cross-modal InfoNCE between student and teacher
    embeddings (the CLIP loss), in-batch negatives.

    Reads student and teacher embeddings ``(B, d)`` of one width (a ValueError otherwise); term
    ``"cmc"``.

    Parameters
    ----------
    temperature : float
        The similarity temperature.
    weight : float
        Weight of ``"cmc"``.
    """

    temperature: float = 0.07

    name: ClassVar[str] = "cmc"

    def modules(self, student_dim, teacher_dim, seed):
        _check_same_space(self.name, student_dim, teacher_dim)
        return {}

    def terms(self, student, teacher, modules):
        return {"cmc": cmc_loss(student, teacher, self.temperature)}


@EMBEDDING_LOSSES.register("l2", about="L2 alignment: MSE between linearly projected student and teacher embeddings")
@dataclass(frozen=True, kw_only=True)
class L2Alignment(EmbeddingLoss):
    """L2 alignment (``"l2"``): MSE between the linearly projected student embeddings and the
    teacher's (:func:`~cmkd_lab.losses.feature_regression_loss`).

    Reads student embeddings ``(B, d_s)`` and teacher embeddings ``(B, d_t)``; term ``"l2"``.
    Owns module ``"projector"`` (d_s → d_t).

    Parameters
    ----------
    weight : float
        Weight of ``"l2"``.
    """

    name: ClassVar[str] = "l2"

    def modules(self, student_dim, teacher_dim, seed):
        # its own stream, apart from the model's initialisation (as FitNet's projector)
        return {"projector": seeded(lambda: Dense(student_dim, teacher_dim), seed + 1_000_003)}

    def terms(self, student, teacher, modules):
        return {"l2": feature_regression_loss(modules["projector"](student), teacher)}
