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
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples: ``(..., N, C)``, ``(..., N)`` → ``(...)``."""
    log_probs = log_softmax(logits)
    return -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(-1)


@dataclass(frozen=True)
class StepOutputs:
    """What a distillation loss sees at one step (model axis first when stacked)."""

    student_logits: torch.Tensor
    student_features: dict[str, torch.Tensor]
    teacher_logits: torch.Tensor | None
    teacher_features: dict[str, torch.Tensor]
    labels: torch.Tensor


@dataclass(frozen=True)
class Distiller:
    """Base of every registered loss: ``terms()`` returns named loss terms.

    ``ce_weight`` weighs the student's cross-entropy, the one term every loss has; subclasses add
    their own weighted terms and a registry ``name``.
    Weights may be one number or one per model (a sequence), so one stacked fit can sweep them.
    A loss that owns trainable parts (a projector, embedding heads) builds them in ``modules()``;
    the system trains them with the student and keeps them in the result.
    """

    ce_weight: float | Sequence[float] = 1.0

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False

    @property
    def hosts_baseline(self) -> bool:
        """Whether a No-KD student may train in the same fit as this loss's students, with every
        term but "ce" weighted 0 (``Distillation.ce_only``). Only for losses whose terms are
        finite for any inputs: a zero weight then adds exact zeros to its gradient."""
        return False

    @property
    def student_layers(self) -> tuple[str, ...]:
        return ()

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return ()

    def modules(self, student_dims: dict[str, int], teacher_dims: dict[str, int], seed: int) -> dict[str, nn.Module]:
        """The loss's own trainable modules for the copy of ``seed``, by name; none by default.
        ``*_dims`` give the flattened width of each student/teacher layer the loss reads."""
        return {}

    def terms(self, out: StepOutputs, modules: Mapping[str, Callable]) -> dict[str, torch.Tensor]:
        return {"ce": cross_entropy(out.student_logits, out.labels)}

    def weights(self) -> dict[str, float | Sequence[float]]:
        """The weight of each term that ``terms()`` returns."""
        return {"ce": self.ce_weight}

    def config(self) -> dict:
        return {"loss": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


LOSSES: Registry[type[Distiller]] = Registry("loss")


@LOSSES.register("ce", about="cross-entropy only: the student without distillation")
@dataclass(frozen=True)
class Vanilla(Distiller):
    """The no-KD baseline: the student (or a teacher) trained on its labels alone."""

    name: ClassVar[str] = "ce"


def make_loss(name: str, **options) -> Distiller:
    """Build a registered loss by name; unknown names or options raise a ValueError listing the valid ones."""
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
    """Build a registered embedding loss by name; unknown names or options raise a ValueError listing the valid ones."""
    cls = EMBEDDING_LOSSES.get(name)
    check_options(f"embedding loss {name!r}", cls, options)
    return cls(**options)
