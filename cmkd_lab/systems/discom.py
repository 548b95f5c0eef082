"""DisCoM-KD (Ienco & Dantas, BMVC 2024): every single-modality classifier at once, from
unpaired batches, with invariant / informative / irrelevant features and a modality
discriminator behind gradient reversal."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.metrics import log_softmax
from ..engine.schedules import gradient_reversal
from ..engine.trainer import Head, StepResult, System, build_seeded
from ..losses import cross_entropy
from ..models import Dense, ModelSpec, Net
from .distillation import _spec_record

MODALITY_TARGETS = ("class_index", "as_released")
DISCOM_TERMS = ("cl", "aux", "mod", "adv", "orth")


def modality_loss(logits: torch.Tensor, modality: int, targets: str = "class_index") -> torch.Tensor:
    """Cross-entropy of modality logits whose rows all come from modality index ``modality``,
    averaged over rows.

    Parameters
    ----------
    logits : Tensor, shape (..., N, K)
        Scores of the K modalities.
    modality : int
        The index of the rows' modality.
    targets : {"class_index", "as_released"}
        ``"class_index"``: the paper's K-way loss, target ``modality`` for every row.
        ``"as_released"``: the official code's float targets shaped like the logits (all ones
        for the first modality, all zeros for the others), which PyTorch's cross-entropy reads
        as class probabilities: ``−Σ_c t_c log p_c``, i.e. ``−Σ_c log p_c`` for the first
        modality (smallest at uniform predictions) and 0 for every other one, so neither the
        discriminator nor the modality classifiers learn to tell the modalities apart.

    Returns
    -------
    Tensor, shape (...)
    """
    if targets not in MODALITY_TARGETS:
        raise ValueError(f"unknown modality_targets {targets!r}; valid: {', '.join(MODALITY_TARGETS)}")
    log_probs = log_softmax(logits)
    if targets == "class_index":
        return -log_probs[..., modality].mean(-1)
    fill = 1.0 if modality == 0 else 0.0
    return -(fill * log_probs).sum(-1).mean(-1)


class FeatureEncoder(nn.Module):
    """A :class:`~cmkd_lab.models.Net` whose output layer gives ``spec.n_classes`` features; with
    ``project``, followed by BatchNorm and ReLU (DisCoM-KD's Linear→BN→ReLU projection).
    ``forward(x)``: ``(B, *spec.input_shape)`` → ``(B, spec.n_classes)``."""

    def __init__(self, spec: ModelSpec, project: bool = False):
        super().__init__()
        self.net = Net(spec)
        self.norm = nn.BatchNorm1d(spec.n_classes) if project else None

    def forward(self, x):
        features = self.net(x)[0]
        return torch.relu(self.norm(features)) if self.norm is not None else features


def _with_outputs(spec: ModelSpec, width: int) -> ModelSpec:
    return dataclasses.replace(spec, n_classes=width)


@dataclass
class DisCoM(System):
    """DisCoM-KD (Ienco & Dantas, BMVC 2024): every single-modality classifier learnt at once,
    from unpaired batches of each modality, with disentangled features.

    Per modality m: an invariant encoder gives s ``(B, width)`` (Linear→BN→ReLU); a second
    encoder gives ``(B, 2·width)`` features whose halves are the informative d and the irrelevant
    u ``(B, width)`` each.

    - Modules: ``"invariant_<m>"``, ``"specific_<m>"``, ``"classifier_<m>"`` (on [s; d], the
      deployed model of m) per modality, and shared by all modalities ``"auxiliary"`` (classes,
      on s and on d), ``"discriminator"`` (modalities, on s behind gradient reversal of scale
      ``grl_scale``), ``"modality_d"`` and ``"modality_u"`` (modalities, on d and on u).
    - Data keys (per copy): ``x.<m>`` ``(B, *specs[m].input_shape)`` and ``y.<m>`` ``(B,)`` per
      modality; train with ``feeds={m: ["x.<m>", "y.<m>"]}`` so each modality is shuffled on its
      own (no pairing is used).
    - Terms, each averaged over the modalities: ``"cl"`` (CE of each classifier), ``"aux"`` (CE
      of the auxiliary classifier on s plus on d), ``"mod"`` (modality CE on d and on u, their
      mean), ``"adv"`` (modality CE of the discriminator), ``"orth"`` (mean cosine of (d, u) plus
      of (d, s)).
    - Heads: one per modality m, named m (labels ``y.<m>``; modules ``invariant_<m>``,
      ``specific_<m>``, ``classifier_<m>``).

    Parameters
    ----------
    specs : dict of str to ModelSpec
        Per modality (at least two), its backbone, sized; every ``n_classes`` the task's classes.
    width : int
        Width of s, d and u.
    cl_weight, aux_weight, mod_weight, adv_weight, orth_weight : float or sequence of float
        Weights of the five terms, each a number or one per copy (an ablation drops a term with 0).
    grl_scale : float
        Scale of the gradient reversal before the discriminator.
    modality_targets : {"class_index", "as_released"}
        The paper's class-index targets or the released code's (:func:`modality_loss`).
    """

    specs: dict[str, ModelSpec]
    width: int = 32
    cl_weight: float | Sequence[float] = 1.0
    aux_weight: float | Sequence[float] = 1.0
    mod_weight: float | Sequence[float] = 1.0
    adv_weight: float | Sequence[float] = 1.0
    orth_weight: float | Sequence[float] = 1.0
    grl_scale: float = 1.0
    modality_targets: str = "class_index"

    def __post_init__(self):
        if len(self.specs) < 2:
            raise ValueError(f"DisCoM needs at least two modalities, got {list(self.specs)}")
        classes = {spec.n_classes for spec in self.specs.values()}
        if len(classes) != 1:
            raise ValueError(f"every modality's spec must have the same n_classes, got {sorted(classes)}")
        if self.modality_targets not in MODALITY_TARGETS:
            raise ValueError(
                f"unknown modality_targets {self.modality_targets!r}; valid: {', '.join(MODALITY_TARGETS)}"
            )
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    @property
    def modalities(self) -> list[str]:
        """The modality names, in the order of ``specs`` (a modality's index in the modality losses)."""
        return list(self.specs)

    @property
    def n_classes(self) -> int:
        """The task's classes (every spec's ``n_classes``)."""
        return next(iter(self.specs.values())).n_classes

    def build(self, seed):
        width, k = self.width, len(self.specs)
        makers = {}
        for m, spec in self.specs.items():
            makers[f"invariant_{m}"] = lambda spec=spec: FeatureEncoder(_with_outputs(spec, width), project=True)
            makers[f"specific_{m}"] = lambda spec=spec: FeatureEncoder(_with_outputs(spec, 2 * width))
            makers[f"classifier_{m}"] = lambda: Dense(2 * width, self.n_classes)
        makers.update(
            {
                "auxiliary": lambda: Dense(width, self.n_classes),
                "discriminator": lambda: Dense(width, k),
                "modality_d": lambda: Dense(width, k),
                "modality_u": lambda: Dense(width, k),
            }
        )
        return build_seeded(makers, seed, {name: 1_000_003 * i for i, name in enumerate(makers)})

    def features(self, modules, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s, d, u), each ``(B, width)``, of modality ``modality``'s inputs ``x``
        ``(B, *specs[modality].input_shape)``."""
        s = modules[f"invariant_{modality}"](x)
        d, u = modules[f"specific_{modality}"](x).chunk(2, dim=-1)
        return s, d, u

    def step(self, modules, batch):
        sums = dict.fromkeys(DISCOM_TERMS, 0.0)
        outputs = {}
        for i, m in enumerate(self.modalities):
            s, d, u = self.features(modules, m, batch[f"x.{m}"])
            y = batch[f"y.{m}"]
            logits = modules[f"classifier_{m}"](torch.cat([s, d], dim=-1))
            outputs[m] = logits
            sums["cl"] = sums["cl"] + cross_entropy(logits, y)
            sums["aux"] = (
                sums["aux"] + cross_entropy(modules["auxiliary"](s), y) + cross_entropy(modules["auxiliary"](d), y)
            )
            sums["mod"] = sums["mod"] + 0.5 * (
                modality_loss(modules["modality_d"](d), i, self.modality_targets)
                + modality_loss(modules["modality_u"](u), i, self.modality_targets)
            )
            sums["adv"] = sums["adv"] + modality_loss(
                modules["discriminator"](gradient_reversal(s, self.grl_scale)), i, self.modality_targets
            )
            sums["orth"] = (
                sums["orth"] + F.cosine_similarity(d, u, dim=-1).mean(-1) + F.cosine_similarity(d, s, dim=-1).mean(-1)
            )
        k = len(self.modalities)
        return StepResult(outputs, {term: value / k for term, value in sums.items()})

    def weights(self):
        return {
            "cl": self.cl_weight,
            "aux": self.aux_weight,
            "mod": self.mod_weight,
            "adv": self.adv_weight,
            "orth": self.orth_weight,
        }

    def heads(self):
        return {m: Head(f"y.{m}", (f"invariant_{m}", f"specific_{m}", f"classifier_{m}")) for m in self.modalities}

    def predict(self, modules, batch):
        out = {}
        for m in self.modalities:
            s, d, _ = self.features(modules, m, batch[f"x.{m}"])
            out[m] = modules[f"classifier_{m}"](torch.cat([s, d], dim=-1))
        return out

    def config(self):
        return {
            "system": "discom",
            "specs": {m: _spec_record(s) for m, s in self.specs.items()},
            "width": self.width,
            **{f"{term}_weight": getattr(self, f"{term}_weight") for term in DISCOM_TERMS},
            "grl_scale": self.grl_scale,
            "modality_targets": self.modality_targets,
        }
