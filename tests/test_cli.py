"""The command line and notebook parameters: listing, running, and clear errors."""

import re
import subprocess
import sys

import pandas as pd
import papermill
import pytest

from cmkd_lab.app.cli import main
from cmkd_lab.app.notebook import list_notebooks, notebook_parameters, notebook_title, parameters_class
from cmkd_lab.report.figures import find_chromium
from cmkd_lab.studies.quickstart import QuickstartParameters

NOTEBOOKS = list_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_parameter_class_with_its_parameter_names(path):
    in_class, in_notebook = set(parameters_class(path.stem).parameter_names()), set(notebook_parameters(path))
    assert not in_class - in_notebook, f"missing from the notebook's parameters cell: {sorted(in_class - in_notebook)}"
    assert not in_notebook - in_class, (
        f"unknown to {parameters_class(path.stem).__name__}: {sorted(in_notebook - in_class)}"
    )


def test_a_notebook_without_a_parameter_class_is_a_clear_error():
    with pytest.raises(ValueError, match="no parameter class for notebook '99_nothing'; notebooks without one: none"):
        parameters_class("99_nothing")


def test_list_shows_each_notebook_with_its_purpose_and_parameter_defaults(capsys):
    assert main(["list"]) == 0
    blocks = [block.splitlines() for block in capsys.readouterr().out.strip().split("\n\n")]
    listed = {lines[0]: lines[1:] for lines in blocks}
    assert list(listed) == [f"{p.stem} — {notebook_title(p)}" for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        title = notebook_title(path)
        assert title and not title.startswith(("#", path.stem[:2])), title
        lines = listed[f"{path.stem} — {title}"]
        assert [line.split(":")[0].strip() for line in lines] == parameters_class(path.stem).parameter_names()
        assert all(" = " in line for line in lines), "every parameter shows its default"
    quickstart = listed["00_quickstart — Quickstart: a teacher on one modality, a student on another"]
    assert quickstart[:5] == [
        "    profile: str = 'quick'",
        "    interactive: bool = False",
        "    output_dir: str | None = None",
        "    device: str = 'auto'",
        "    n_runs: int | None = None (quick 10, full 20)",
    ]
    assert "    reduction: str = 'batchmean'" in quickstart
    assert (
        "    datasets: tuple[str, ...] = ('mfeat', 'watch', 'segment')"
        in listed["01_data_tour — Data tour: real paired data, and which pairs are worth distilling"]
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "99_nothing"], "unknown notebook '99_nothing'; valid notebooks: 00_quickstart"),
        (
            ["run", "00_quickstart", "-p", "n_rums", "3"],
            "unknown parameter(s) ['n_rums']\nvalid parameters of 00_quickstart:\n  profile: str = 'quick'\n",
        ),
        (["run", "all", "-p", "n_runs", "3"], "-p applies to one notebook"),
    ],
)
def test_bad_runs_fail_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_writes_the_executed_notebook_figures_and_results(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmkd_lab",
            "run",
            "00_quickstart.ipynb",
            "--out",
            str(tmp_path),
            "-p",
            "n_runs",
            "2",
            "-p",
            "epochs",
            "20",
            "--static",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert re.search(
        r"quickstart: kd and no_kd \(4 models\): started \(20 epochs\)\n.*: done, 20/20 in \d+\.\d s",
        completed.stderr,
        flags=re.S,
    ), completed.stderr  # the kernel's progress reaches the terminal
    assert "without encryption" not in completed.stderr  # the kernel's start-up log stays quiet
    assert "[1/1] running 00_quickstart (quick) ..." in completed.stdout
    table = completed.stdout.split("\n\n")[-1]  # the final table: what was written where
    assert re.search(
        rf"00_quickstart\s+ok\s+\d+\.\d\s+{re.escape(str(tmp_path / '00_quickstart'))}\s+notebook, \d+ figures", table
    ), completed.stdout
    folder = tmp_path / "00_quickstart"
    table = pd.read_csv(folder / "results.csv")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert {"00_quickstart.ipynb", "accuracy.html", "run.json"} <= {p.name for p in folder.iterdir()}
    assert (folder / "accuracy.png").exists() == bool(find_chromium())  # --static: PNG export where a Chromium is


@pytest.mark.parametrize(
    "parameter, message",
    [
        (["n_runs", "ten"], "parameter 'n_runs' must be int | None, got 'ten' (str)\n"),
        (["overlaps", "[0, 'x']"], "parameter 'overlaps' must be tuple[int, ...], got [0, 'x'] (list)\n"),
        (["reduction", "sum"], "parameter 'reduction': ['sum'] not allowed; valid values: batchmean, mean\n"),
    ],
)
def test_bad_parameters_fail_before_a_kernel_starts(parameter, message, tmp_path, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kwargs: started.append(args))
    assert main(["run", "02_mfh_gaussian", "--out", str(tmp_path), "-p", *parameter]) == 2
    error = capsys.readouterr().err
    assert not started and not (tmp_path / "02_mfh_gaussian").exists()
    assert message in error
    assert "valid parameters of 02_mfh_gaussian:\n  profile: str = 'quick'\n" in error
    assert (
        "\n  n_runs: int | None = None (quick 10, full 10)\n  epochs: int | None = None (quick 300, full 1000)\n"
        in error
    )


def test_parameters_are_validated_and_profiles_fill_the_rest():
    quick = QuickstartParameters.create(profile="quick")
    full = QuickstartParameters.create(profile="full", epochs=50)
    assert (quick.n_runs, quick.epochs) == (10, 300) and (full.n_runs, full.epochs) == (20, 50)
    assert QuickstartParameters.create(temperature=2).temperature == 2.0
    with pytest.raises(ValueError, match="unknown profile 'medium'; valid profiles: quick, full"):
        QuickstartParameters.create(profile="medium")
    with pytest.raises(ValueError, match="parameter 'n_runs' must be int \\| None, got 'three'"):
        QuickstartParameters.create(n_runs="three")
    with pytest.raises(ValueError, match="parameter 'interactive' must be bool"):
        QuickstartParameters.create(interactive=1)
    with pytest.raises(ValueError, match="not allowed; valid values: batchmean, mean"):
        QuickstartParameters.create(reduction="sum")
    with pytest.raises(
        ValueError,
        match=r"unknown parameter\(s\) \['n_rums'\]\nvalid parameters of 00_quickstart:\n  profile: str = 'quick'\n",
    ):
        QuickstartParameters.create(n_rums=3)


def test_notebook_tools_load_without_jsonschemas_iri_grammar():
    """The kit marks rfc3987_syntax absent before nbformat loads: jsonschema then skips the IRI
    format check (which no notebook schema uses) instead of compiling its grammar, and notebooks
    still validate."""
    code = (
        "import sys, cmkd_lab.app, nbformat; "
        "nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')])); "
        "print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is None)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "True"


def test_the_kernel_is_killed_at_once_unless_it_started_a_chromium(monkeypatch):
    from cmkd_lab.app.notebook import _kernel_shutdown
    from cmkd_lab.report.figures import STATIC_ENV_VAR

    monkeypatch.setenv(STATIC_ENV_VAR, "0")
    assert _kernel_shutdown() == "immediate"
    monkeypatch.setenv(STATIC_ENV_VAR, "1")  # its exit hook must stop the export's Chromium
    assert _kernel_shutdown() == "graceful"
