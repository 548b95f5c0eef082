"""One pair's diagnosis (``python -m cmkd_lab diagnose DATASET --pair SRC>TGT``,
:func:`diagnose`): its signals, where they sit among the benchmark's pairs, the outcome each
predictor's rule predicts with that rule's leave-one-dataset-out reliability, the cost, and with
``measure=True`` the measured KD gain to check the prediction against.

The benchmark is the ``results.csv`` of a run of 07_when_does_cmkd_help (default:
``outputs/07_when_does_cmkd_help``). Each predictor's :class:`~.scoring.ThresholdRule` is fitted on
the benchmark's pairs of *other* datasets (a dataset in the benchmark is never its own training
data), and its reliability is its leave-one-dataset-out balanced accuracy on the benchmark; the
pair's predicted outcome is the most reliable rule's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...analysis.results import load_results
from ...datasets import load
from .benchmark import DiagnosisParameters, check_dataset, measure, pair_table, probe_signals, subsample, view_tasks
from .predictors import PREDICTORS, directions, predictor_names
from .report import signal_percentiles
from .scoring import MAJORITY, ThresholdRule, leave_one_dataset_out

NOTEBOOK = DiagnosisParameters.notebook
DEFAULT_BENCHMARK = Path("outputs") / NOTEBOOK
RELIABILITY_BOOT = 200  # bootstrap replicates of the reliability's interval (its point value does not depend on it)


@dataclass
class PairDiagnosis:
    """A pair's diagnosis: per predictor its value, cost, percentile, predicted outcome and the
    rule's reliability (``signals``); the prediction of the most reliable rule; the measured Δ
    (``measured``, with ``measure=True``)."""

    dataset: str
    pair: str
    method: str
    signals: pd.DataFrame
    prediction: str
    predicted_by: str
    reliability: float
    floor: float
    benchmark_pairs: int
    measured: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as plain lines (the CLI prints them)."""
        out = [f"{self.dataset}: {self.pair} (outcome predicted for {self.method}, from {self.benchmark_pairs} pairs)"]
        table = self.signals.copy()
        table["value"] = table["value"].map(lambda v: f"{v:.4g}")
        table["percentile"] = table["percentile"].map(lambda v: "" if np.isnan(v) else f"{v:.0f}%")
        table["reliability"] = table["reliability"].map(lambda v: "" if np.isnan(v) else f"{v:.2f}")
        table["cost_s"] = table["cost_s"].map(lambda v: f"{v:.3f}")
        out += table.to_string(index=False).splitlines()
        out.append(
            f"prediction: KD ({self.method}) {self.prediction} — by {self.predicted_by}'s rule, whose "
            f"leave-one-dataset-out balanced accuracy on the benchmark is {self.reliability:.2f} "
            f"(majority floor {self.floor:.2f}; 0.33 is chance over three outcomes)"
        )
        out += [f"note: {note}" for note in self.notes]
        if self.measured is not None:
            for row in self.measured.itertuples():
                agrees = "as predicted" if row.outcome == self.prediction else "NOT as predicted"
                out.append(
                    f"measured {row.method}: Δ = {row.delta:+.2f} points [{row.delta_low:+.2f}, {row.delta_high:+.2f}] "
                    f"over {row.n_seeds} seeds: {row.outcome}" + (f" ({agrees})" if row.method == self.method else "")
                )
        return out


def parse_pair(pair: str, modalities: list[str], dataset: str) -> tuple[str, str]:
    """``"SRC>TGT"`` → (teacher view, student view), two different modalities of the dataset."""
    parts = pair.split(">")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"--pair {pair!r} is not 'SRC>TGT' with two different modalities, e.g. 'accel>gyro'")
    unknown = [p for p in parts if p not in modalities]
    if unknown:
        raise ValueError(
            f"--pair {pair!r}: dataset {dataset!r} has no modality {unknown[0]!r}; "
            f"its modalities: {', '.join(modalities)}"
        )
    return parts[0], parts[1]


def load_benchmark(benchmark: str | Path | pd.DataFrame | None) -> pd.DataFrame:
    """The benchmark's pair table: given, or read from a run folder (or its ``results.csv``)."""
    if isinstance(benchmark, pd.DataFrame):
        return benchmark
    path = Path(benchmark or DEFAULT_BENCHMARK)
    path = path / "results.csv" if path.is_dir() or not path.suffix else path
    if not path.exists():
        raise FileNotFoundError(
            f"no benchmark at {path}: run `python -m cmkd_lab run {NOTEBOOK}` first (add --profile full for "
            "every pair), or pass --benchmark DIR of such a run"
        )
    return pair_table(load_results(path))


def diagnose(
    dataset: str,
    pair: str,
    *,
    benchmark: str | Path | pd.DataFrame | None = None,
    method: str = "kd",
    measure_gain: bool = False,
    profile: str = "quick",
    n_runs: int | None = None,
    log: Callable[[str], None] = print,
) -> PairDiagnosis:
    """Diagnose ordered pair ``pair`` (``"SRC>TGT"``) of registered dataset ``dataset``.

    Parameters
    ----------
    dataset : str
        A registered dataset (yours too, after ``python -m cmkd_lab datasets add``).
    pair : str
        ``"teacher view>student view"``.
    benchmark : path or DataFrame, optional
        The benchmark run (folder or ``results.csv``) or its pair table; default
        ``outputs/07_when_does_cmkd_help``.
    method : str
        The method whose outcome is predicted (one the benchmark measured).
    measure_gain : bool
        Also train teacher, No-KD and the benchmark's methods on the pair and report Δ.
    profile : {"quick", "full"}
        The probe's and the measurement's settings (:class:`~.benchmark.DiagnosisParameters`).
    n_runs : int, optional
        Seeds (default: the profile's).
    log : callable
        Where progress lines go.
    """
    full = load(dataset)  # an unknown name: a ValueError listing the registered ones
    pairs = load_benchmark(benchmark)
    methods = list(dict.fromkeys(pairs["method"]))
    if method not in methods:
        raise ValueError(f"the benchmark has no method {method!r}; it measured: {', '.join(methods)}")
    p = DiagnosisParameters.create(profile=profile, datasets=[dataset], methods=methods, n_runs=n_runs)
    data = subsample(full, p.max_samples)
    check_dataset(dataset, data)
    teacher_view, student_view = parse_pair(pair, data.modality_names, dataset)
    tasks = view_tasks(dataset, data, [(teacher_view, student_view)], p.seeds)
    sampled = f"{len(data)} of {len(full)} samples" if len(data) < len(full) else f"{len(data)} samples"
    log(f"diagnose: probing {dataset} {pair}: {sampled}, {p.n_runs} seeds, {p.probe_epochs} probe epochs")
    signals = probe_signals(tasks, p, progress=False)
    values = signals[signals["method"] == "signal"].groupby("metric")["value"].mean()
    costs = signals[signals["method"] == "signal_cost"].groupby("metric")["value"].mean()
    log(f"diagnose: scoring the rules on the benchmark ({len(pairs.drop_duplicates(['dataset', 'pair']))} pairs)")
    names = [n for n in predictor_names() if n in pairs and n in values]
    others = pairs[(pairs["dataset"] != dataset) & (pairs["method"] == method)]
    if others.empty:
        raise ValueError(f"the benchmark has no pair of a dataset other than {dataset!r} to learn rules from")
    reliability = leave_one_dataset_out(pairs, directions(names), method, n_boot=RELIABILITY_BOOT)[1].set_index(
        "model"
    )["balanced_accuracy"]
    rows = []
    for name in names:
        sign, value = PREDICTORS.get(name).direction, float(values[name])
        rule = ThresholdRule.fit(sign * others[name].to_numpy(dtype=float), others["outcome"].to_numpy())
        rows.append(
            {
                "predictor": name,
                "family": PREDICTORS.get(name).family,
                "value": value,
                "cost_s": float(costs[name]),
                "predicted": rule.predict(np.array([sign * value]))[0],
                "reliability": float(reliability.get(name, np.nan)),
            }
        )
    table = pd.DataFrame(rows).merge(
        signal_percentiles(pairs, values[names].to_dict())[["predictor", "percentile"]], on="predictor", how="left"
    )
    best = table.dropna(subset=["reliability"]).sort_values("reliability", ascending=False, kind="stable").iloc[0]
    notes = []
    if dataset in set(pairs["dataset"]):
        notes.append(f"{dataset!r} is in the benchmark: its own pairs were left out of every rule's training")
    diagnosis = PairDiagnosis(
        dataset,
        pair,
        method,
        table,
        best["predicted"],
        best["predictor"],
        float(best["reliability"]),
        float(reliability.get(MAJORITY, np.nan)),
        len(others),
        notes=notes,
    )
    if measure_gain:
        log(f"diagnose: measuring teacher, No-KD and {', '.join(methods)} on {pair} ({p.epochs} epochs)")
        measured = pair_table(measure(tasks, p, progress=False).table)
        diagnosis.measured = measured[["method", "delta", "delta_low", "delta_high", "n_seeds", "outcome"]]
    return diagnosis
