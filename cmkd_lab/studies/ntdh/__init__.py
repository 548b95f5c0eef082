"""NTDH (Chen et al., arXiv 2409.02438): non-target divergence and the gain of cross-modal KD.

One module per notebook, sharing :mod:`.common` (papers.md §2):

- :mod:`.gaussian` (03_ntdh_gaussian): MFH's Fig. 2 generator, binary and K-class γ sweeps;
- :mod:`.multiclass_methods` (03_ntdh_multiclass_methods): the 4-class ``make_classification``
  study and the method table with and without masking;
- :mod:`.realpairs` (03_ntdh_realpairs): ordered view pairs of the real datasets.
"""
