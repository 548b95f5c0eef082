"""Analysis: :mod:`.metrics` (NTD, CMD, rank correlation, modality distances, dimensional
structure, validation scores), :mod:`.saliency` (MFH Algorithm 1) and :mod:`.results` (tidy
tables, summaries, paper-vs-kit tables, run records). Import the module you need, e.g.
``from cmkd_lab.analysis import metrics``."""
