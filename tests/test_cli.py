"""The command line and notebook parameters: listing, running, and clear errors."""

import subprocess
import sys

import pandas as pd
import pytest

from cmkd_lab.cli import main
from cmkd_lab.studies.quickstart import QuickstartParameters


def test_list_names_every_notebook_with_its_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "00_quickstart" in out and "profile, interactive, output_dir" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "99_nothing"], "unknown notebook '99_nothing'; valid notebooks: 00_quickstart"),
        (["run", "00_quickstart", "-p", "n_rums", "3"], "unknown parameter(s) ['n_rums'] for 00_quickstart; valid parameters: profile"),
        (["run", "all", "-p", "n_runs", "3"], "-p applies to one notebook"),
    ],
)
def test_bad_runs_fail_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_writes_the_executed_notebook_figures_and_results(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "cmkd_lab", "run", "00_quickstart.ipynb", "--out", str(tmp_path),
         "-p", "n_runs", "2", "-p", "epochs", "20"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    folder = tmp_path / "00_quickstart"
    table = pd.read_csv(folder / "results.csv")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert {"00_quickstart.ipynb", "accuracy.html", "run.json"} <= {p.name for p in folder.iterdir()}


def test_a_wrong_type_fails_inside_the_notebook_with_the_parameter_named(tmp_path):
    assert main(["run", "00_quickstart", "--out", str(tmp_path), "-p", "n_runs", "'three'"]) == 2
    assert (tmp_path / "00_quickstart" / "00_quickstart.failed.ipynb").exists()
    assert not (tmp_path / "00_quickstart" / "00_quickstart.ipynb").exists()


def test_parameters_are_validated_and_profiles_fill_the_rest():
    quick = QuickstartParameters.create(profile="quick")
    full = QuickstartParameters.create(profile="full", epochs=50)
    assert (quick.n_runs, quick.epochs) == (3, 300) and (full.n_runs, full.epochs) == (10, 50)
    assert QuickstartParameters.create(temperature=2).temperature == 2.0
    with pytest.raises(ValueError, match="unknown profile 'medium'; valid profiles: quick, full"):
        QuickstartParameters.create(profile="medium")
    with pytest.raises(ValueError, match="parameter 'n_runs' must be int or None, got 'three'"):
        QuickstartParameters.create(n_runs="three")
    with pytest.raises(ValueError, match="parameter 'interactive' must be bool"):
        QuickstartParameters.create(interactive=1)
    with pytest.raises(ValueError, match="not allowed; valid values: batchmean, mean"):
        QuickstartParameters.create(reduction="sum")
    with pytest.raises(ValueError, match="unknown parameter.*'n_rums'.*valid parameters: profile"):
        QuickstartParameters.create(n_rums=3)
