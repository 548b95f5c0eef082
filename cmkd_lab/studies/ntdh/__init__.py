"""NTDH (Chen et al., arXiv 2409.02438): non-target divergence and the gain of cross-modal KD.

One module per notebook, sharing :mod:`.common` (papers.md §2):

- :mod:`.gaussian` (03_ntdh_gaussian): MFH's Fig. 2 generator, binary and K-class γ sweeps;
- :mod:`.multiclass_methods` (03_ntdh_multiclass_methods): the 4-class ``make_classification``
  study, the method table with and without masking, and the channel-masking tool;
- :mod:`.realpairs` (03_ntdh_realpairs): ordered view pairs of the real datasets.
- :mod:`.mnist_m` (03_ntdh_mnist_m): NTDH's MNIST → MNIST-M in both directions, with the teacher's
  hidden channels masked by NTD saliency.

:mod:`.masking` is NTDH's channel-masking tool as a step any teacher/student pair can run: the
teacher's input channels ranked by NTD saliency, teachers kept to ``mask_dim`` of them per
registered mode (:data:`MASKING_MODES`: ``alg1``, ``reverse``, ``random``) as teacher-input variants
of :func:`~cmkd_lab.studies.runner.run_teacher_student`.
"""

from .masking import MASKING_MODES as MASKING_MODES
from .masking import ChannelMasking as ChannelMasking
from .masking import ChannelSaliency as ChannelSaliency
from .masking import ntd_saliency as ntd_saliency
from .masking import run_channel_masking as run_channel_masking
