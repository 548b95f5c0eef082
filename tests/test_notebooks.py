"""Notebook conventions, and the quickstart executed headless with assertions on its results."""

import json

import pytest

from cmkd_lab.app.notebook import list_notebooks, notebook_parameters

NOTEBOOKS = list_notebooks()
COMMON_PARAMETERS = {"profile", "interactive", "output_dir"}


def test_the_sequence_starts_with_the_quickstart():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_quickstart.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert not [c for c in code if c.get("outputs") or c.get("execution_count")], "commit notebooks without outputs"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    parameters_cell = cells[tagged[0]]
    for line in "".join(parameters_cell["source"]).splitlines():
        statement = line.split("#")[0].strip()
        assert not statement or "=" in statement, f"the parameters cell holds assignments only: {line!r}"
    following = "".join(next(c for c in cells[tagged[0] + 1 :] if c["cell_type"] == "code")["source"])
    assert "from_namespace(globals())" in following, "the cell after the parameters validates them"
    assert COMMON_PARAMETERS <= set(notebook_parameters(path))
    defaults = notebook_parameters(path)
    assert defaults["profile"] in ("'quick'", '"quick"') and defaults["interactive"] == "False"
    assert cells[0]["cell_type"] == "markdown", "a notebook opens with what it shows"


def test_quickstart_records_teacher_and_students_for_every_seed(executed):
    table = executed.results("00_quickstart")
    assert set(table["method"]) == {"teacher", "no_kd", "kd"}
    assert (table.groupby(["setting", "method"])["seed"].nunique() == 10).all() and table["setting"].nunique() == 2
    assert table["value"].between(0, 1).all() and set(table["metric"]) == {"test_acc"}
    means = table.groupby("method")["value"].mean()
    # In both settings the teacher's modality sees 16 decisive features, the student's fewer (16 or 6).
    assert means["teacher"] > means["no_kd"] + 0.03
    folder = executed.folder("00_quickstart")
    assert (folder / "00_quickstart.ipynb").exists() and (folder / "accuracy.html").exists()
    record = json.loads((folder / "run.json").read_text())
    assert record["parameters"]["profile"] == "quick" and len(record["fits"]) == 6  # 2 settings x 3 methods
