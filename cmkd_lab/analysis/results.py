"""Tidy results: one row per (study, method, settings…, seed, metric, value), and their summaries.

Every notebook saves its table as ``results.csv`` beside a ``run.json`` that records the
parameters, each fit's configuration and wall time, and the library versions.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..app.io import atomic_path, write_text

ID_COLUMNS = ("study", "method")
VALUE_COLUMNS = ("seed", "metric", "value")
TRACKED_PACKAGES = ("cmkd_lab", "torch", "numpy", "pandas", "scikit-learn", "plotly", "papermill")


def tidy_rows(
    study: str,
    method: str,
    settings: Sequence[Mapping] | Mapping,
    seeds: Sequence[int],
    metric: str,
    values: Iterable[float],
) -> list[dict]:
    """Rows for one metric of one method: ``settings`` is one dict for all seeds or one per seed."""
    values = [float(v) for v in values]
    if isinstance(settings, Mapping):
        settings = [settings] * len(values)
    if not (len(settings) == len(seeds) == len(values)):
        raise ValueError(f"got {len(settings)} settings, {len(seeds)} seeds and {len(values)} values; they must match")
    return [
        {"study": study, "method": method, **dict(s), "seed": int(seed), "metric": metric, "value": v}
        for s, seed, v in zip(settings, seeds, values)
    ]


def setting_columns(table: pd.DataFrame) -> list[str]:
    """The columns that describe a setting (everything but study, method, seed, metric, value)."""
    return [c for c in table.columns if c not in ID_COLUMNS + VALUE_COLUMNS]


def summarize(table: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, std (ddof=1; 0 for one seed) and number of seeds per group (default: all but seed/value)."""
    if by is None:
        by = [c for c in table.columns if c not in ("seed", "value")]
    by = [c for c in by if table[c].notna().any()]
    grouped = table.groupby(list(by), sort=False, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    return summary


def mean_std(mean: float, std: float, scale: float = 1.0, digits: int = 2, n: int | None = None) -> str:
    """``"71.20 ± 1.30"``: a mean and std, scaled (e.g. 100 for percentages); ``"71.20 (n = 1)"``
    for a single value (``n=1``), which has no spread to show."""
    if n == 1:
        return f"{mean * scale:.{digits}f} (n = 1)"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def mean_std_cells(summary: pd.DataFrame, scale: float = 100.0, digits: int = 2) -> list[str]:
    """``"mean ± std"`` for each row of a :func:`summarize` output (percent by default)."""
    return [mean_std(m, s, scale, digits, n) for m, s, n in zip(summary["mean"], summary["std"], summary["n"])]


def mean_std_table(
    table: pd.DataFrame, index: Sequence[str] | str, columns: str = "method", scale: float = 100.0, digits: int = 2
) -> pd.DataFrame:
    """A readable pivot with "mean ± std" cells (percent by default)."""
    index = [index] if isinstance(index, str) else list(index)
    summary = summarize(table, by=index + [columns])
    summary["cell"] = mean_std_cells(summary, scale, digits)
    order = list(dict.fromkeys(summary[columns]))
    pivot = summary.pivot(index=index, columns=columns, values="cell")
    return pivot[order]


def paper_vs_kit(
    kit: pd.DataFrame, paper: pd.DataFrame, on: Sequence[str], tolerance: float, scale: float = 100.0
) -> pd.DataFrame:
    """Put published values beside the kit's mean ± std and say whether each lies within ``tolerance``.

    ``kit`` is a :func:`summarize` output (fractions); ``paper`` has the ``on`` columns and
    ``paper`` (in the paper's units, e.g. percent). ``tolerance`` is in the paper's units.
    """
    merged = paper.merge(kit, on=list(on), how="left")
    merged["kit"] = merged["mean"] * scale
    merged["kit_std"] = merged["std"] * scale
    merged["difference"] = merged["kit"] - merged["paper"]
    merged["within_tolerance"] = merged["difference"].abs() <= tolerance
    return merged[list(on) + ["paper", "kit", "kit_std", "difference", "within_tolerance"]]


def environment() -> dict:
    """Library versions and the machine, for the run record."""
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": versions}


@dataclass
class RunLog:
    """What was run: each fit's configuration, seeds and wall time, plus the environment."""

    fits: list[dict] = field(default_factory=list)
    splits: list[dict] = field(default_factory=list)  # per task of real data: seed, sizes, test groups
    started: float = field(default_factory=time.time)

    def add(self, **record) -> None:
        self.fits.append(record)

    def to_dict(self, parameters: Mapping | None = None) -> dict:
        return {
            "parameters": dict(parameters or {}),
            "environment": environment(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_time_s": time.time() - self.started,
            "fits": self.fits,
            "splits": self.splits,
        }


def save_results(
    table: pd.DataFrame, out_dir: str | Path, log: RunLog | None = None, parameters: Mapping | None = None
) -> Path:
    """Write ``results.csv`` and ``run.json`` into ``out_dir`` (each written whole or not at all)."""
    missing = [c for c in ID_COLUMNS + VALUE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"a results table needs the columns {list(ID_COLUMNS + VALUE_COLUMNS)}; missing {missing}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "results.csv") as temporary:
        table.to_csv(temporary, index=False)
    record = (log or RunLog()).to_dict(parameters)
    write_text(out_dir / "run.json", json.dumps(record, indent=2, default=_jsonable))
    return out_dir / "results.csv"


def load_results(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}; run the notebook first (python -m cmkd_lab run ...)")
    return pd.read_csv(path)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
