"""Grids of notebook runs on Dask distributed: ``python -m cmkd_lab sweep`` and :func:`run_grid`.

Each grid point is one headless run of a notebook (:func:`~cmkd_lab.app.notebook.run_notebook`)
in a Dask task. By default the tasks go to a local cluster of worker processes (one thread
each); given a scheduler address they go to any Dask cluster (SSH, SLURM, Kubernetes). Every
point is checked against the notebook's parameter class before any task starts.

A sweep folder holds one folder per point, named by its grid values and a hash of all its
resolved parameters (the same run always lands in the same folder)::

    <out>/points/<grid values>-<hash>/params.json   what the point runs
                                      /<notebook>/   the executed notebook, results.csv, run.json
                                      /done.json     written last: the point finished, a rerun skips it
                                      /error.txt     why the point failed; a rerun tries it again
    <out>/results.csv   every finished point's results, with ``point`` and one column per grid parameter
    <out>/points.csv    one row per point: status (ran, skipped, failed), seconds, error
    <out>/summary.csv   mean, std and n per point × method × setting × metric; a row per failed point
    <out>/summary.md    the same, readable, with the failures and their errors

Workers write into ``<out>``, so every worker must see it at the same path (one machine, or a
file system the machines share).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import os
import re
import socket
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.results import ID_COLUMNS, load_results, mean_std, summarize
from .io import atomic_path, write_text
from .notebook import REPO_ROOT, NotebookFailed, parameters_class, resolve_notebook, run_notebook
from .progress import progress_bar

POINTS_DIR = "points"
PARAMS_FILE = "params.json"
DONE_FILE = "done.json"
ERROR_FILE = "error.txt"
SET_BY_THE_SWEEP = ("profile", "interactive", "output_dir")  # one profile per sweep; never interactive


@dataclass(frozen=True)
class GridPoint:
    """One run of a grid: its grid values (as the parameter class took them) and its folder name."""

    values: Mapping[str, Any]
    parameters: Mapping[str, Any]  # every resolved parameter, profile included
    name: str  # "<grid values>-<hash of the notebook and all parameters>"


@dataclass
class SweepResult:
    """What :func:`run_grid` returns; the same tables are in the sweep folder."""

    notebook: str
    folder: Path
    grid_columns: dict[str, str]  # grid parameter -> its column in ``table``
    points: pd.DataFrame  # one row per point: point, grid columns, status, seconds, error, folder
    table: pd.DataFrame  # results.csv: every finished point's rows
    summary: pd.DataFrame  # summary.csv

    @property
    def failed(self) -> pd.DataFrame:
        return self.points[self.points["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return self.failed.empty


# ----------------------------------------------------------------------------- planning
def plan_points(notebook: str, grid: Mapping[str, Sequence], profile: str = "quick") -> list[GridPoint]:
    """The Cartesian product of ``grid``, each point validated by the notebook's parameter class.

    Raises ``ValueError`` naming the valid parameters on an unknown name, a wrong type or a value
    outside its choices, so a bad grid fails before any task starts.
    """
    stem = resolve_notebook(notebook).stem
    cls = parameters_class(stem)
    if not grid:
        raise ValueError(
            f"an empty grid; give at least one parameter and its values, e.g. epochs=[100, 200]\n"
            f"valid parameters of {stem}:\n  " + "\n  ".join(cls.parameter_lines())
        )
    for name, values in grid.items():
        if name in SET_BY_THE_SWEEP:
            raise ValueError(
                f"{name!r} cannot be a grid parameter: the sweep sets it (choose the profile with "
                f"profile=/--profile); grid parameters of {stem}: "
                + ", ".join(n for n in cls.parameter_names() if n not in SET_BY_THE_SWEEP)
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)) or not len(values):
            raise ValueError(f"grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    points, seen = [], {}
    for combination in itertools.product(*grid.values()):
        chosen = dict(zip(grid, combination))
        resolved = cls.create(**chosen, profile=profile).as_dict()
        parameters = {k: v for k, v in resolved.items() if k not in ("interactive", "output_dir")}
        values = {name: resolved[name] for name in grid}
        digest = hashlib.sha256(
            json.dumps({"notebook": stem, "parameters": parameters}, sort_keys=True, default=str).encode()
        ).hexdigest()[:12]
        if digest in seen:
            raise ValueError(f"grid points {seen[digest]} and {values} are the same run; list each value once")
        seen[digest] = values
        points.append(GridPoint(values, parameters, f"{_readable(values)}-{digest}"))
    return points


def _readable(values: Mapping[str, Any]) -> str:
    """``epochs=100_lr=0.1``: a point's grid values as a folder name (the hash keeps it unique)."""

    def text(value: Any) -> str:
        return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    joined = "_".join(f"{name}={text(value)}" for name, value in values.items())
    return re.sub(r"[^A-Za-z0-9._=+-]+", "+", joined)[:80].strip("+")


def is_finished(folder: Path, stem: str) -> bool:
    """A point whose run completed: ``done.json`` (written last) and its ``results.csv``."""
    return (folder / DONE_FILE).exists() and (folder / stem / "results.csv").exists()


# ----------------------------------------------------------------------------- one point, in a worker
def run_point(stem: str, profile: str, parameters: Mapping[str, Any], folder: str) -> dict:
    """Run one point (all its resolved parameters, as params.json records them) into ``folder``:
    a Dask task. Never raises: a failure is written to ``error.txt`` and returned, so the other
    points go on."""
    folder = Path(folder)
    (folder / ERROR_FILE).unlink(missing_ok=True)
    os.environ.setdefault("CMKD_LAB_PROGRESS", "off")  # N kernels' progress lines would bury the sweep's bar
    started = time.perf_counter()
    try:
        run_notebook(stem, profile, parameters, folder)
    except Exception as error:
        seconds = time.perf_counter() - started
        message = str(error) if isinstance(error, NotebookFailed) else f"{type(error).__name__}: {error}"
        details = "" if isinstance(error, NotebookFailed) else "\n" + traceback.format_exc()
        write_text(folder / ERROR_FILE, f"{message}\n{details}")
        return {"status": "failed", "seconds": seconds, "error": message}
    seconds = time.perf_counter() - started
    write_text(
        folder / DONE_FILE,
        json.dumps(
            {"seconds": seconds, "host": socket.gethostname(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            indent=2,
        ),
    )
    return {"status": "ran", "seconds": seconds, "error": None}


# ----------------------------------------------------------------------------- the sweep
def run_grid(
    notebook: str,
    grid: Mapping[str, Sequence],
    profile: str = "quick",
    out: str | Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    progress: bool | None = None,
) -> SweepResult:
    """Run every point of ``grid`` (parameter -> list of values) of ``notebook`` on Dask.

    ``scheduler``: the address of a running Dask scheduler (``tcp://host:8786``) to join;
    without it a local cluster of ``workers`` processes runs the points. ``out``: the sweep
    folder (default ``outputs/sweeps/<notebook>`` in the repository). Points finished before are skipped; a
    failing point is recorded and the others go on (see :attr:`SweepResult.failed`).
    ``progress``: True a bar, False none, None from the environment (:mod:`cmkd_lab.app.progress`).
    """
    if scheduler is None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a whole number ≥ 1, got {workers!r}")
    stem = resolve_notebook(notebook).stem
    points = plan_points(stem, grid, profile)  # every point checked before a cluster starts
    folder = Path(out) if out is not None else REPO_ROOT / "outputs" / "sweeps" / stem
    for point in points:
        params_file = folder / POINTS_DIR / point.name / PARAMS_FILE
        if not params_file.exists():
            write_text(
                params_file,
                json.dumps(
                    {"notebook": stem, "grid": point.values, "parameters": point.parameters}, indent=2, default=str
                ),
            )
    records = {
        p.name: {"status": "skipped", "seconds": _seconds(folder / POINTS_DIR / p.name), "error": None}
        for p in points
        if is_finished(folder / POINTS_DIR / p.name, stem)
    }
    pending = [p for p in points if p.name not in records]
    print(
        f"sweep {stem} ({profile}): {len(points)} points, {len(records)} finished before, {len(pending)} to run "
        f"-> {folder}",
        flush=True,
    )
    if pending:
        records.update(_run_on_dask(stem, profile, pending, folder, scheduler, workers, progress))
    return _collect(stem, profile, points, records, folder)


def _run_on_dask(
    stem: str,
    profile: str,
    pending: list[GridPoint],
    folder: Path,
    scheduler: str | None,
    workers: int,
    progress: bool | None,
) -> dict[str, dict]:
    from distributed import as_completed

    records = {}
    with _client(scheduler, workers) as client:
        link = _dashboard_link(client)
        print(
            f"dashboard: {link}" if link else "dashboard: none (pip install bokeh for the Dask dashboard)", flush=True
        )
        futures = {
            client.submit(
                run_point,
                stem,
                profile,
                dict(p.parameters),
                str((folder / POINTS_DIR / p.name).resolve()),
                key=f"{stem}-{p.name}",
            ): p.name
            for p in pending
        }
        for future in progress_bar(
            _Completed(list(futures), as_completed), f"sweep {stem}", enabled=progress, unit="point"
        ):
            name = futures[future]
            try:
                records[name] = future.result()
            except Exception as error:  # the task itself never raises: a lost worker or connection
                message = f"{type(error).__name__}: {error}"
                write_text(folder / POINTS_DIR / name / ERROR_FILE, message + "\n")
                records[name] = {"status": "failed", "seconds": float("nan"), "error": message}
            if records[name]["status"] == "failed":
                print(f"point {name} failed: {records[name]['error'].splitlines()[0]}", flush=True)
    return records


class _Completed:
    """Futures in the order they finish, with a length for the progress bar."""

    def __init__(self, futures: list, as_completed):
        self.futures, self.as_completed = futures, as_completed

    def __len__(self) -> int:
        return len(self.futures)

    def __iter__(self) -> Iterator:
        return iter(self.as_completed(self.futures))


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int):
    """A client of the cluster at ``scheduler``, or of a local cluster closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    # localhost only, so no network is needed; any free port, so sweeps side by side don't clash
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _dashboard_link(client) -> str | None:
    """The dashboard's address, where the scheduler serves one (it needs bokeh)."""
    try:
        served = client.run_on_scheduler(_has_bokeh)
    except Exception:  # a scheduler that refuses to run functions: assume it serves one
        served = True
    return client.dashboard_link if served and "dashboard" in client.scheduler_info().get("services", {}) else None


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _seconds(folder: Path) -> float:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return float(json.loads((folder / DONE_FILE).read_text())["seconds"])
    return float("nan")


# ----------------------------------------------------------------------------- merging
def _collect(
    stem: str, profile: str, points: list[GridPoint], records: Mapping[str, dict], folder: Path
) -> SweepResult:
    """Merge the finished points into results.csv; write points.csv, summary.csv and summary.md."""
    tables = {
        p.name: load_results(folder / POINTS_DIR / p.name / stem)
        for p in points
        if records[p.name]["status"] != "failed"
    }
    taken = set().union(*(t.columns for t in tables.values())) | {"point"}
    columns = {name: f"grid_{name}" if name in taken else name for name in points[0].values}
    cells = {p.name: {columns[k]: _cell(v) for k, v in p.values.items()} for p in points}

    frames = []
    for name, table in tables.items():
        frame = table.assign(point=name, **cells[name])
        first = [*ID_COLUMNS, "point", *columns.values()]
        frames.append(frame[first + [c for c in table.columns if c not in first]])
    if frames:
        with atomic_path(folder / "results.csv") as temporary:
            pd.concat(frames, ignore_index=True).to_csv(temporary, index=False)
        table = load_results(folder / "results.csv")  # as a reader of the file will see it
    else:
        (folder / "results.csv").unlink(missing_ok=True)
        table = pd.DataFrame()

    point_rows = pd.DataFrame(
        [
            {"point": p.name, **cells[p.name], **records[p.name], "folder": str(folder / POINTS_DIR / p.name)}
            for p in points
        ]
    )
    with atomic_path(folder / "points.csv") as temporary:
        point_rows.to_csv(temporary, index=False)

    summary = summarize(table).assign(status="ok", error=None) if not table.empty else pd.DataFrame()
    failed = point_rows[point_rows["status"] == "failed"]
    if not failed.empty:
        failures = failed[["point", *columns.values(), "status", "error"]].assign(
            error=failed["error"].str.split("\n").str[0]
        )
        summary = pd.concat([summary, failures], ignore_index=True)
    with atomic_path(folder / "summary.csv") as temporary:
        summary.to_csv(temporary, index=False)
    write_text(folder / "summary.md", _markdown(stem, profile, summary, point_rows))
    return SweepResult(stem, folder, columns, point_rows, table, summary)


def _cell(value: Any) -> Any:
    """A grid value as a table cell: tuples as text, so the table and its CSV agree."""
    return str(value) if isinstance(value, (list, tuple)) else value


def _markdown(stem: str, profile: str, summary: pd.DataFrame, points: pd.DataFrame) -> str:
    counts = points["status"].value_counts()
    lines = [
        f"# Sweep of {stem} ({profile} profile)",
        "",
        f"{len(points)} points: {counts.get('ran', 0)} ran, {counts.get('skipped', 0)} skipped (finished before), "
        f"{counts.get('failed', 0)} failed.",
        "",
    ]
    done = summary[summary["status"] == "ok"] if not summary.empty else summary
    if not done.empty:
        shown = done.drop(columns=["status", "error"]).dropna(axis=1, how="all")
        shown = shown.assign(
            **{"mean ± std": [mean_std(m, s, 1.0, 4, n) for m, s, n in zip(shown["mean"], shown["std"], shown["n"])]}
        )
        lines += [
            "## Mean ± std over seeds per point, method, setting and metric",
            "",
            "```",
            shown.drop(columns=["mean", "std"]).to_string(index=False),
            "```",
            "",
        ]
    failed = points[points["status"] == "failed"]
    if not failed.empty:
        lines += ["## Failed points", ""]
        for row in failed.itertuples():
            lines += [f"- `{row.point}`: {row.error}", f"  (folder: {row.folder})"]
        lines.append("")
    return "\n".join(lines)
