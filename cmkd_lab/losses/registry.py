"""The loss registries and the base class every distillation loss extends.

``LOSSES`` holds the distillation losses a student trains with (``make_loss(name, **options)``),
``EMBEDDING_LOSSES`` the label-free embedding losses (``make_embedding_loss``); each family
module registers its own. :class:`Distiller` is the base class of every loss; :class:`Vanilla`,
registered as ``"ce"``, is the no-KD baseline (cross-entropy only: the student without
distillation), named apart from the base as mdistiller names it; :class:`StepOutputs` is what a
loss sees at one step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..analysis.metrics import log_softmax
from ..engine.registry import Registry, check_options

if TYPE_CHECKING:
    from .embedding import EmbeddingLoss


# The base class's one term lives beside it: every family module imports this one, so a home in
# logit.py would make the two import each other.
def weighted_sample_mean(
    per_sample: torch.Tensor, sample_weights: torch.Tensor | None = None, row_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the sample axis, each sample weighted if weights are given.

    Weighted: Σ ω_i ℓ_i / N (not / Σ ω_i), so ω = 0 removes a sample as NTDH's masking intends and
    ω = 1 everywhere gives the plain mean. With a ``row_mask`` (:attr:`StepOutputs.row_mask`) N is
    the number of rows it marks, n, and the other rows (padding) drop out: Σ m_i ω_i ℓ_i / n, whose
    gradient is the g/n of the plain mean over the n samples alone.

    Parameters
    ----------
    per_sample : Tensor, shape (..., N)
        ℓ_i, a loss per sample.
    sample_weights : Tensor, shape (..., N), optional
        ω_i; None: the plain mean.
    row_mask : Tensor, shape (..., N), optional
        1 on the rows that are samples, 0 on padding rows; None: every row is a sample.

    Returns
    -------
    Tensor, shape (...)
    """
    if sample_weights is not None:
        per_sample = sample_weights * per_sample
    if row_mask is None:
        return per_sample.mean(-1)
    return (row_mask * per_sample).sum(-1) / row_mask.sum(-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, row_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over samples.

    Parameters
    ----------
    logits : Tensor, shape (..., N, C)
    labels : Tensor of int, shape (..., N)
        Class indices in ``0..C-1``; with ``row_mask``, a padding row may be labelled
        :data:`~cmkd_lab.analysis.metrics.PADDING_LABEL`.
    row_mask : Tensor, shape (..., N), optional
        The rows that are samples (:func:`weighted_sample_mean`); None: every row.

    Returns
    -------
    Tensor, shape (...)
        The mean over the N samples (a scalar for one model).
    """
    log_probs = log_softmax(logits)
    if row_mask is not None:
        labels = labels.clamp_min(0)  # a padding row's label: any class, masked out
    return -weighted_sample_mean(log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1), row_mask=row_mask)


@dataclass(frozen=True)
class StepOutputs:
    """What a distillation loss sees at one step: one copy's batch of B samples (inside
    :func:`~cmkd_lab.engine.fit`), or M copies with a model axis first (``(M, B, ...)``).

    Attributes
    ----------
    student_logits : Tensor, shape (B, C)
    student_features : dict of str to Tensor
        The student layers the loss asked for (``student_layers``): ``(B, D)`` for an embedding,
        ``(B, channels, L)`` or ``(B, channels, H, W)`` for a convolutional map.
    teacher_logits : Tensor, shape (B, C), or None
        None for a loss that needs no teacher.
    teacher_features : dict of str to Tensor
        The teacher layers the loss asked for (``teacher_layers``), shaped as the student's.
    labels : Tensor of int, shape (B,)
    row_mask : Tensor, shape (B,), or None
        Where copies of one fit hold different numbers of samples (``fit(..., rows=...)``): 1 on
        each of the copy's samples, 0 on its padding rows; every mean over samples is then taken
        over the copy's own (:func:`weighted_sample_mean`). None: every row is a sample.
    """

    student_logits: torch.Tensor
    student_features: dict[str, torch.Tensor]
    teacher_logits: torch.Tensor | None
    teacher_features: dict[str, torch.Tensor]
    labels: torch.Tensor
    row_mask: torch.Tensor | None = None


@dataclass(frozen=True)
class Distiller:
    """Base of every registered distillation loss: :meth:`terms` returns named loss terms.

    Subclasses are frozen dataclasses with a registry ``name``; they add their own weighted
    terms to the cross-entropy every loss has. Every weight is one number or one per model (a
    sequence of M), so one stacked fit can sweep it. A loss that owns trainable parts (a
    projector, embedding heads) builds them in :meth:`modules`; the system trains them with the
    student and keeps them in the result.

    Parameters
    ----------
    ce_weight : float or sequence of float
        Weight of the student's cross-entropy, term ``"ce"``.
    """

    ce_weight: float | Sequence[float] = 1.0

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    # whether every term averages over the samples StepOutputs.row_mask marks, so copies with
    # different numbers of samples may share a fit (padded); a loss of batch-level statistics
    # that ignores them must leave this False
    weighs_rows: ClassVar[bool] = False

    @property
    def hosts_baseline(self) -> bool:
        """Whether a No-KD student may train in the same fit as this loss's students, with every
        term but "ce" weighted 0 (``Distillation.ce_only``). Only for losses whose terms are
        finite for any inputs: a zero weight then adds exact zeros to its gradient."""
        return False

    @property
    def student_layers(self) -> tuple[str, ...]:
        """The student layers :meth:`terms` reads (``StepOutputs.student_features``); none by default."""
        return ()

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        """The teacher layers :meth:`terms` reads (``StepOutputs.teacher_features``); none by default."""
        return ()

    def modules(self, student_dims: dict[str, int], teacher_dims: dict[str, int], seed: int) -> dict[str, nn.Module]:
        """The loss's own trainable modules for the copy of ``seed``, by name; none by default.

        Parameters
        ----------
        student_dims, teacher_dims : dict of str to int
            The flattened width (e.g. C·H·W) of each layer in ``student_layers`` /
            ``teacher_layers``.
        seed : int
            The copy's seed.
        """
        return {}

    def terms(self, out: StepOutputs, modules: Mapping[str, Callable]) -> dict[str, torch.Tensor]:
        """The loss's named terms at one step.

        Parameters
        ----------
        out : StepOutputs
            Student and teacher logits ``(B, C)``, their features, labels ``(B,)``.
        modules : mapping of str to callable
            The modules of the step, those of :meth:`modules` among them.

        Returns
        -------
        dict of str to Tensor
            Each term a scalar (``(M,)`` with a model axis), ``"ce"`` first; :meth:`weights`
            weighs each.
        """
        return {"ce": cross_entropy(out.student_logits, out.labels, out.row_mask)}

    def weights(self) -> dict[str, float | Sequence[float]]:
        """The weight of each term that ``terms()`` returns."""
        return {"ce": self.ce_weight}

    def config(self) -> dict:
        """The loss's name and options, for the run record."""
        return {"loss": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


LOSSES: Registry[type[Distiller]] = Registry("loss")


@LOSSES.register("ce", about="cross-entropy only: the student without distillation")
@dataclass(frozen=True)
class Vanilla(Distiller):
    """The no-KD baseline (``"ce"``): the student (or a teacher) trained on its labels alone.

    Reads the student's logits ``(B, C)`` and labels ``(B,)``; one term, ``"ce"``.

    Parameters
    ----------
    ce_weight : float or sequence of float
        Weight of the cross-entropy.
    """

    name: ClassVar[str] = "ce"
    weighs_rows: ClassVar[bool] = True


def make_loss(name: str, **options) -> Distiller:
    """Build a registered loss by name.

    Parameters
    ----------
    name : str
        A name in ``LOSSES`` (``"ce"``, ``"kd"``, ``"dkd"``, ``"fitnet"``, ``"rkd"``, …).
    **options
        The loss's constructor options; those without a default (e.g. KD's ``temperature`` and
        ``reduction``) must be given.

    Returns
    -------
    Distiller

    Raises
    ------
    ValueError
        For an unknown name or option (listing the valid ones) or a missing required option.
    """
    cls = LOSSES.get(name)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss {name!r}; valid options: {', '.join(sorted(valid))}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in options
    ]
    if required:
        raise ValueError(f"loss {name!r} needs explicit option(s): {', '.join(required)}")
    return cls(**options)


EMBEDDING_LOSSES: Registry[type[EmbeddingLoss]] = Registry("embedding loss")


def make_embedding_loss(name: str, **options) -> EmbeddingLoss:
    """Build a registered embedding loss by name.

    Parameters
    ----------
    name : str
        A name in ``EMBEDDING_LOSSES`` (``"cmd"``, ``"cmc"``, ``"l2"``).
    **options
        The loss's constructor options.

    Returns
    -------
    EmbeddingLoss

    Raises
    ------
    ValueError
        For an unknown name or option, listing the valid ones.
    """
    cls = EMBEDDING_LOSSES.get(name)
    check_options(f"embedding loss {name!r}", cls, options)
    return cls(**options)
