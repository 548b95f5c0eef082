"""How informative is each modality on its own? A linear probe per view.

The gap between two views' accuracies is what makes a teacher/student pair interesting
(papers.md, "Real paired data"): a strong teacher view and a weak student view.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..analysis.results import tidy_rows
from .core import PairedDataset


def flatten(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1)


def spectrum(values: np.ndarray) -> np.ndarray:
    """Magnitude of the real FFT along the last (time) axis, per channel: shift-invariant."""
    return flatten(np.abs(np.fft.rfft(values, axis=-1)))


FEATURES = {"flatten": flatten, "spectrum": spectrum}


def view_accuracy(
    dataset: PairedDataset,
    seeds: Iterable[int] = range(5),
    views: Iterable[str] | None = None,
    features: str = "flatten",
    max_iter: int = 2000,
    study: str = "view_accuracy",
) -> pd.DataFrame:
    """Test accuracy of StandardScaler + LogisticRegression fitted on each view alone.

    For every seed the dataset is split with ``dataset.split(seed)`` (stratified; group-disjoint
    when the dataset has groups); the probe is fitted on the train part (the validation part is
    not used: the probe has no knob to select) and scored on the test part. ``features`` turns a
    view into the probe's input: "flatten" (the values as they are) or "spectrum" (FFT magnitude
    over the last axis, for time series such as watch windows, where a linear probe on raw
    samples is not shift-invariant). A tidy results table (see :mod:`cmkd_lab.analysis.results`): one
    row per (view, seed) with study ``study``, method "linear_probe", setting columns dataset,
    view and features, metric "test_acc".
    """
    from sklearn.linear_model import LogisticRegression  # deferred: a slow import most callers never need
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; valid: {', '.join(FEATURES)}")
    to_features = FEATURES[features]
    views = list(dataset.modality_names if views is None else views)
    rows = []
    for seed in seeds:
        splits = dataset.split(int(seed))
        y_train = splits.train.labels.numpy()
        y_test = splits.test.labels.numpy()
        for view in views:
            x_train = to_features(splits.train[view].numpy())
            x_test = to_features(splits.test[view].numpy())
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
            with threadpool_limits(limits=1):  # tiny fits: extra BLAS threads only contend for the cores
                probe.fit(x_train, y_train)
            accuracy = float(np.mean(probe.predict(x_test) == y_test))
            settings = {"dataset": dataset.name, "view": view, "features": features}
            rows.extend(tidy_rows(study, "linear_probe", settings, [int(seed)], "test_acc", [accuracy]))
    return pd.DataFrame(rows)


__all__ = ["view_accuracy", "FEATURES"]
