"""Grids of notebook runs on Dask (`python -m cmkd_lab sweep`, `cmkd_lab.app.sweep.run_grid`), on a
local cluster of 2 workers: merging, resuming, failure isolation and refusing bad grids early."""

import ast
import contextlib
import importlib.util
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import papermill
import psutil
import pytest

from cmkd_lab.app import sweep
from cmkd_lab.app.cli import main, parse_grid
from cmkd_lab.app.notebook import as_literal, parameters_class
from cmkd_lab.app.sweep import plan_points, run_grid

# tiny runs: one seed, two epochs, few samples (a point is then mostly its kernel's start-up);
# n_train=-5 passes the parameter class but fails in the notebook: two bad points among 4 good ones
TINY = ["--grid", "n_runs=1", "--grid", "n_test=100"]
GRID = ["--grid", "n_train=-5,40,60", "--grid", "epochs=2,3"]
FAILURE = "ValueError: n_samples must be a non-negative integer, got -5"


def children() -> set[int]:
    """This process's descendants, less multiprocessing's resource tracker (one per process, for its lifetime)."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "multiprocessing.resource_tracker" not in " ".join(_cmdline(p))
    }


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # ended meanwhile
        return []


def wait_for_children_to_end(before: set[int], timeout_s: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while (left := children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@dataclass
class Swept:
    out: Path
    status: int
    stdout: str
    stderr: str
    leaked: set[int]
    files: dict[str, str]  # the sweep's own files as the sweep left them (later tests rerun it)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Swept:
    """The 6-point grid, run once through the command line on a local cluster of 2 workers."""
    out = tmp_path_factory.mktemp("sweep")
    before = children()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["sweep", "00_quickstart", *GRID, *TINY, "--workers", "2", "--out", str(out)])
    leaked = wait_for_children_to_end(before)
    files = {name: (out / name).read_text() for name in ["results.csv", "points.csv", "summary.csv", "summary.md"]}
    return Swept(out, status, stdout.getvalue(), stderr.getvalue(), leaked, files)


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_a_grid_runs_every_point_and_merges_one_table_with_the_grid_columns(swept):
    assert "6 points, 0 finished before, 6 to run" in swept.stdout and "4 ran, 0 skipped, 2 failed" in swept.stdout
    assert not swept.leaked, f"worker or kernel processes left running: {swept.leaked}"
    folders = sorted((swept.out / "points").iterdir())
    assert len(folders) == 6
    for folder in folders:
        params = json.loads((folder / "params.json").read_text())
        assert folder.name.startswith(f"n_train={params['grid']['n_train']}_epochs={params['grid']['epochs']}_")
        assert params["parameters"]["n_runs"] == 1 and params["parameters"]["profile"] == "quick"

    table = read_csv(swept.files["results.csv"])
    assert list(table.columns[:7]) == ["study", "method", "point", "n_train", "epochs", "n_runs", "n_test"]
    assert sorted(set(zip(table["n_train"], table["epochs"]))) == [(40, 2), (40, 3), (60, 2), (60, 3)]
    assert set(table["method"]) == {"teacher", "no_kd", "kd"} and set(table["seed"]) == {0}
    for point, rows in table.groupby("point", sort=False):  # each point's own table, with the grid columns added
        own = pd.read_csv(swept.out / "points" / point / "00_quickstart" / "results.csv")
        rows = rows.drop(columns=["point", "n_train", "epochs", "n_runs", "n_test"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, own)

    summary = read_csv(swept.files["summary.csv"])
    done = summary[summary["status"] == "ok"]
    assert len(done) == len(table) and (done["n"] == 1).all() and done["mean"].between(0, 1).all()  # one seed
    assert {"point", "n_train", "epochs", "method", "metric", "mean", "std"} <= set(summary.columns)
    assert "6 points: 4 ran, 0 skipped (finished before), 2 failed." in swept.files["summary.md"]


def test_a_failing_point_fails_alone_with_its_message_and_the_exit_status_says_so(swept):
    assert swept.status == 1
    points = read_csv(swept.files["points.csv"])
    assert sorted(points.loc[points["status"] == "failed", "n_train"]) == [-5, -5]
    assert sorted(points.loc[points["status"] == "ran", "n_train"]) == [40, 40, 60, 60]
    for row in points.itertuples():
        folder = Path(row.folder)
        if row.n_train == -5:
            assert FAILURE in (folder / "error.txt").read_text() and not (folder / "done.json").exists()
            assert f"failed: {row.point}: 00_quickstart failed: {FAILURE}" in swept.stderr
            assert f"- `{row.point}`: 00_quickstart failed: {FAILURE}" in swept.files["summary.md"]
        else:
            assert (folder / "done.json").exists() and not (folder / "error.txt").exists()
    failed = read_csv(swept.files["summary.csv"]).query("status == 'failed'")
    assert len(failed) == 2 and failed["error"].str.contains(FAILURE, regex=False).all()


def test_a_rerun_skips_every_finished_point_without_starting_a_cluster(swept, monkeypatch):
    monkeypatch.setattr(sweep, "_client", lambda *args: pytest.fail("a rerun of a finished grid started a cluster"))
    grid = {"n_train": [40, 60], "epochs": [2, 3], "n_runs": [1], "n_test": [100]}
    result = run_grid("00_quickstart", grid, out=swept.out)
    assert result.ok and result.points["status"].tolist() == ["skipped"] * 4
    assert (result.points["seconds"] > 0).all(), "a skipped point keeps the time its run took"
    assert (swept.out / "results.csv").read_text() == swept.files["results.csv"]
    assert result.grid_columns == {name: name for name in grid}
    pd.testing.assert_frame_equal(result.table, read_csv(swept.files["results.csv"]))


def test_a_rerun_tries_the_failed_points_again_and_only_them(swept, monkeypatch, capsys):
    retried = []
    monkeypatch.setattr(
        sweep,
        "_run_on_dask",
        lambda stem, profile, pending, *args: (
            retried.extend(pending)
            or {p.name: {"status": "failed", "seconds": 0.0, "error": "not run"} for p in pending}
        ),
    )
    assert main(["sweep", "00_quickstart", *GRID, *TINY, "--out", str(swept.out)]) == 1
    assert "6 points, 4 finished before, 2 to run" in capsys.readouterr().out
    assert [p.values["n_train"] for p in retried] == [-5, -5]


@pytest.mark.parametrize(
    "grid, message",
    [
        (
            ["n_rums=1,2"],
            "unknown parameter(s) ['n_rums']\nvalid parameters of 00_quickstart:\n  profile: str = 'quick'\n",
        ),
        (["reduction=batchmean,sum"], "parameter 'reduction': ['sum'] not allowed; valid values: batchmean, mean\n"),
        (
            ["epochs=10,ten"],
            "parameter 'epochs' must be int | None, got 'ten' (str)\nvalid parameters of 00_quickstart:",
        ),
        (["profile=quick,full"], "'profile' cannot be a grid parameter: the sweep sets it"),
        (["epochs"], "--grid takes NAME=V1,V2,...; got 'epochs'"),
        (["epochs=1,,2"], "an empty value in '1,,2'"),
        (["epochs=1", "epochs=2"], "--grid epochs is given twice"),
        (["temperature=2,2.0"], "are the same run; list each value once"),
    ],
)
def test_a_bad_grid_is_refused_before_any_task_starts(grid, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "_client", lambda *args: pytest.fail("a cluster started for a bad grid"))
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kwargs: pytest.fail("a notebook started"))
    argv = ["sweep", "00_quickstart", "--out", str(tmp_path / "sweep")]
    for spec in grid:
        argv += ["--grid", spec]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_grid_values_are_read_like_run_parameters():
    assert parse_grid(["epochs=100,200", "reduction=mean,'batchmean'", "overlaps=[0, 1],(2,)", "lr=1e-2"]) == {
        "epochs": [100, 200],
        "reduction": ["mean", "batchmean"],
        "overlaps": [[0, 1], (2,)],
        "lr": [0.01],
    }
    assert parse_grid(["datasets=['a,b'],['c']"]) == {"datasets": [["a,b"], ["c"]]}


def test_a_point_folder_is_named_by_its_resolved_parameters():
    first = plan_points("00_quickstart", {"temperature": [2, 4.0], "epochs": [5]})
    again = plan_points("00_quickstart.ipynb", {"temperature": [2.0, 4], "epochs": [5]})
    assert [p.name for p in first] == [p.name for p in again]
    assert first[0].name.startswith("temperature=2.0_epochs=5-") and first[0].values == {
        "temperature": 2.0,
        "epochs": 5,
    }
    full = plan_points("00_quickstart", {"temperature": [2.0], "epochs": [5]}, profile="full")
    assert full[0].name != first[0].name, "the profile changes the run, so the folder"
    with pytest.raises(ValueError, match="workers must be a whole number ≥ 1, got 0"):
        run_grid("00_quickstart", {"epochs": [5]}, workers=0)


def test_scheduler_joins_a_running_cluster_and_shows_its_dashboard_only_where_one_is_served():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with sweep._client(cluster.scheduler_address, workers=2) as client:
            assert client.submit(sum, [1, 2]).result() == 3
            assert len(client.scheduler_info()["workers"]) == 1, "joining a cluster starts no workers of its own"
            link = sweep._dashboard_link(client)
            assert (link is None) == (importlib.util.find_spec("bokeh") is None)


def test_every_resolved_parameter_reaches_the_notebook_as_the_literal_it_is():
    from papermill.translators import PythonTranslator

    point = plan_points("00_quickstart", {"epochs": [5]})[0]
    plain = {name: as_literal(value) for name, value in point.parameters.items()}  # what run_notebook passes on
    for name, value in plain.items():  # papermill writes a tuple as a string, a list as a list
        assert ast.literal_eval(PythonTranslator.translate(value)) == value, name
    again = parameters_class("00_quickstart").create(**plain).as_dict()
    assert {name: again[name] for name in point.parameters} == point.parameters
