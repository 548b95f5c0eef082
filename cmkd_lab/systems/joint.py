"""MFH Algorithm 1's joint fit: a teacher net on ``x_a`` and a student net on ``x_b`` trained
together with ``CE_a + CE_b + w·MSE(logits_a, logits_b)``."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.trainer import Head, StepResult, System
from ..losses import cross_entropy
from ..models import ModelSpec, build_model
from .distillation import _spec_record


@dataclass
class JointAgreement(System):
    """MFH Algorithm 1's joint fit: a teacher net on ``x_a`` and a student net on ``x_b`` trained
    together, ``CE_a + CE_b + agreement_weight · MSE(logits_a, logits_b)``.

    - Modules: ``"teacher"`` (built from the copy's seed s) and ``"student"`` (seed s + 1, so the
      two differ).
    - Data keys (per copy, B samples): ``x_a`` ``(B, *teacher_spec.input_shape)``, ``x_b``
      ``(B, *student_spec.input_shape)``, ``y`` ``(B,)`` shared by both.
    - Terms: ``"ce_a"``, ``"ce_b"`` (weight 1) and ``"mse"`` (the logits' squared difference,
      averaged over samples and classes; weight ``agreement_weight``).
    - Heads: ``"teacher"`` and ``"student"``, both on ``y``.

    Parameters
    ----------
    teacher_spec, student_spec : ModelSpec
        The two nets, sized, with the same number of classes.
    agreement_weight : float
        Weight of ``"mse"``.
    """

    teacher_spec: ModelSpec
    student_spec: ModelSpec
    agreement_weight: float = 1.0

    def build(self, seed):
        return {"teacher": build_model(self.teacher_spec, seed), "student": build_model(self.student_spec, seed + 1)}

    def step(self, modules, batch):
        logits_a, _ = modules["teacher"](batch["x_a"])
        logits_b, _ = modules["student"](batch["x_b"])
        terms = {
            "ce_a": cross_entropy(logits_a, batch["y"]),
            "ce_b": cross_entropy(logits_b, batch["y"]),
            "mse": ((logits_a - logits_b) ** 2).mean(),
        }
        return StepResult({"logits_a": logits_a, "logits_b": logits_b}, terms)

    def weights(self):
        return {"ce_a": 1.0, "ce_b": 1.0, "mse": self.agreement_weight}

    def heads(self):
        return {"teacher": Head("y", ("teacher",)), "student": Head("y", ("student",))}

    def predict(self, modules, batch):
        return {"teacher": modules["teacher"](batch["x_a"])[0], "student": modules["student"](batch["x_b"])[0]}

    def config(self):
        return {
            "system": "joint_agreement",
            "teacher": _spec_record(self.teacher_spec),
            "student": _spec_record(self.student_spec),
            "agreement_weight": self.agreement_weight,
        }
