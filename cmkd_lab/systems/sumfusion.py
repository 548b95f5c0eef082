"""A multimodal teacher on paired samples: one encoder per modality, the features summed (the
DisCoM-KD code's SUM fusion)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.trainer import Head, StepResult, System, build_seeded
from ..losses import cross_entropy
from ..models import Dense, ModelSpec
from .discom import FeatureEncoder, _with_outputs
from .distillation import _spec_record


@dataclass
class SumFusion(System):
    """A multimodal teacher on paired samples: one encoder per modality, the features summed, one
    linear classifier (the official DisCoM-KD code's SUM fusion).

    - Modules: ``"encoder_<m>"`` per modality m (a :class:`~cmkd_lab.systems.FeatureEncoder`
      giving ``width`` features) and ``"classifier"`` (linear, ``width`` → classes).
    - Data keys (per copy, B paired samples): ``x.<m>`` ``(B, *specs[m].input_shape)`` per
      modality, ``y`` ``(B,)``.
    - Terms: ``"ce"``.
    - Heads: ``"fusion"`` (labels ``y``, every module).

    Parameters
    ----------
    specs : dict of str to ModelSpec
        Per modality, its encoder's backbone, sized (``n_classes``: the task's classes).
    width : int
        Features per encoder.
    """

    specs: dict[str, ModelSpec]
    width: int = 64

    def build(self, seed):
        n_classes = next(iter(self.specs.values())).n_classes
        makers = {
            f"encoder_{m}": lambda spec=spec: FeatureEncoder(_with_outputs(spec, self.width))
            for m, spec in self.specs.items()
        }
        makers["classifier"] = lambda: Dense(self.width, n_classes)
        return build_seeded(makers, seed, {name: 1_000_003 * i for i, name in enumerate(makers)})

    def _logits(self, modules, batch):
        fused = sum(modules[f"encoder_{m}"](batch[f"x.{m}"]) for m in self.specs)
        return modules["classifier"](fused)

    def step(self, modules, batch):
        logits = self._logits(modules, batch)
        return StepResult({"logits": logits}, {"ce": cross_entropy(logits, batch["y"])})

    def heads(self):
        return {"fusion": Head("y", (*[f"encoder_{m}" for m in self.specs], "classifier"))}

    def predict(self, modules, batch):
        return {"fusion": self._logits(modules, batch)}

    def config(self):
        return {
            "system": "sum_fusion",
            "specs": {m: _spec_record(s) for m, s in self.specs.items()},
            "width": self.width,
        }
