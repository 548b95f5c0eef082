"""The kit's trainable systems (see :class:`cmkd_lab.engine.System`), one module per family.

- :mod:`.distillation`: :class:`Distillation` (a student trained with any registered loss; with
  ``loss="ce"`` the No-KD student and the teacher's own training) and :func:`train_classifier`;
- :mod:`.joint`: :class:`JointAgreement`, MFH Algorithm 1's joint fit;
- :mod:`.representation`: CMCD's label-free stages, :class:`ContrastiveSSL` (with
  :func:`two_views`), :class:`EmbeddingDistillation` and :class:`EncoderClassifier`;
- :mod:`.discom`: :class:`DisCoM` (disentangled, adversarial, unpaired);
- :mod:`.sumfusion`: :class:`SumFusion` (a multimodal teacher, features summed).
"""

from .distillation import TEACHER_PREFIX, Distillation, teacher_outputs, train_classifier
from .joint import JointAgreement
from .representation import ContrastiveSSL, EmbeddingDistillation, EncoderClassifier, two_views
from .discom import DISCOM_TERMS, MODALITY_TARGETS, DisCoM, FeatureEncoder, modality_loss
from .sumfusion import SumFusion

__all__ = [
    "TEACHER_PREFIX",
    "Distillation",
    "teacher_outputs",
    "train_classifier",
    "JointAgreement",
    "ContrastiveSSL",
    "EmbeddingDistillation",
    "EncoderClassifier",
    "two_views",
    "DISCOM_TERMS",
    "MODALITY_TARGETS",
    "DisCoM",
    "FeatureEncoder",
    "modality_loss",
    "SumFusion",
]
