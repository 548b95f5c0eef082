"""Will cross-modal KD help on this pair? A diagnosis from all five papers' signals, scored as
transferability metrics are scored (07_when_does_cmkd_help, ``python -m cmkd_lab diagnose``).

- :mod:`.predictors`: the registered signals (:data:`~.predictors.PREDICTORS`), each read on a
  :class:`~.predictors.Probe` of quick models before any student is distilled;
- :mod:`.benchmark`: the benchmark's tasks (every ordered pair of every dataset, seeds), the probe,
  the measured outcomes (Δ of KD and more methods over No-KD) and the pair table;
- :mod:`.scoring`: rank correlations with cluster-bootstrap intervals over datasets,
  leave-one-dataset-out rules and the claims.
"""
