"""What a contributor relies on: the README's Contributing examples run as written, and the API
reference builds from the docstrings.

Each example (a ``###`` subsection of "Contributing") runs in a fresh process in an empty folder,
so what it registers (a loss, a dataset, a notebook's parameter class) never reaches the other
tests. Its plain ``python`` blocks run as one script; a block marked ``python file=NAME`` is
written to NAME first; blocks marked ``python cell`` (``cell=parameters``: the tagged parameters
cell) become the code cells of a notebook, after a markdown heading, which papermill runs.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cmkd_lab.app import cli
from cmkd_lab.app.notebook import KERNEL_ARGUMENTS, notebook_parameters
from cmkd_lab.report import api_docs, gallery

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = ("Add a loss", "Add a system", "Add a dataset", "Add a notebook")
MAX_LINES = 20  # lines of code per example, blank lines not counted
MAX_CPU_SECONDS = 10.0  # per example script on one thread (each measured at 3.5-4.5 s)


def contributing_examples() -> dict[str, list[tuple[str, str]]]:
    """Each ``###`` subsection of the README's "Contributing" section: its ``python`` blocks as
    (what follows ``python`` on the fence line, code)."""
    section = README.read_text().split("\n## Contributing\n", 1)[1].split("\n## ", 1)[0]
    examples = {}
    for part in section.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        examples[title.strip()] = [
            (info.strip(), code)
            for info, code in re.findall(r"^```python([^\n]*)\n(.*?)^```$", body, re.MULTILINE | re.DOTALL)
        ]
    return examples


def test_the_contributing_section_has_the_four_examples_each_short():
    examples = contributing_examples()
    assert tuple(examples) == EXAMPLES
    for title, blocks in examples.items():
        lines = sum(1 for _, code in blocks for line in code.splitlines() if line.strip())
        assert blocks and lines <= MAX_LINES, f"{title}: {lines} lines of code"


@pytest.mark.parametrize("title", EXAMPLES)
def test_the_example_runs_as_written(title, tmp_path):
    blocks = contributing_examples()[title]
    for info, code in blocks:
        if info.startswith("file="):
            (tmp_path / info.removeprefix("file=")).write_text(code)
    script = "\n".join(code for info, code in blocks if not info)
    if script:
        (tmp_path / "example.py").write_text(script)
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "CMKD_LAB_QUIET": "1"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "example.py"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert done.returncode == 0, f"{title} failed:\n{done.stderr[-3000:]}"
        cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        assert cpu_seconds < MAX_CPU_SECONDS, f"{title}: {cpu_seconds:.1f} s of CPU"
    cells = [(info, code) for info, code in blocks if info.split("=")[0] == "cell"]
    if cells:
        _run_notebook_example(title, cells, tmp_path)


def _run_notebook_example(title: str, cells: list[tuple[str, str]], folder: Path) -> None:
    """Build the notebook from the cell blocks, run it with papermill in ``folder`` with another
    profile, and check that it validated every parameter of its cell."""
    import papermill

    code_cells = [
        nbformat.v4.new_code_cell(code, metadata={"tags": [info.removeprefix("cell=")]} if "=" in info else {})
        for info, code in cells
    ]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(f"# {title}"), *code_cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = folder / "notebook.ipynb"
    nbformat.write(notebook, path)
    executed = papermill.execute_notebook(
        str(path),
        str(folder / "executed.ipynb"),
        parameters={"profile": "full"},
        cwd=str(folder),
        progress_bar=False,
        extra_arguments=KERNEL_ARGUMENTS,
    )
    shown = executed.cells[-1].outputs[-1]["data"]["text/plain"]  # the validated parameters object
    assert "profile='full'" in shown
    assert set(re.findall(r"(\w+)=", shown)) == set(notebook_parameters(path)), "one literal per parameter"


def test_the_api_reference_indexes_the_public_subpackages(tmp_path, monkeypatch, capsys):
    packages = [api_docs.ROOT_PACKAGE] + [f"{api_docs.ROOT_PACKAGE}.{name}" for name in api_docs.PUBLIC_SUBPACKAGES]
    monkeypatch.setattr(api_docs, "public_modules", lambda: packages)  # the package pages only: fast
    assert cli.main(["docs", "--out", str(tmp_path)]) == 0
    folder = tmp_path / api_docs.API_FOLDER
    assert f"API reference: {folder / 'index.html'}" in capsys.readouterr().out
    index = (folder / "index.html").read_text()
    for name in packages:
        page = f"{name.replace('.', '/')}.html"
        assert f'href="{page}"' in index and (folder / page).is_file(), name
    assert (folder / "search.js").stat().st_size > 0
    losses_page = (folder / "cmkd_lab" / "losses.html").read_text()
    assert "Build a registered loss by name" in losses_page  # make_loss's docstring
    engine_page = (folder / "cmkd_lab" / "engine.html").read_text()
    assert 'id="gradient_reversal"' in engine_page  # a name the engine loads only on first use


def test_the_api_reference_covers_every_public_module():
    package = README.parent / api_docs.ROOT_PACKAGE
    files = {
        ".".join(path.relative_to(README.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
    }
    public = {name for name in files if not any(part.startswith("_") for part in name.split("."))}
    assert set(api_docs.public_modules()) == public


def test_the_gallery_index_links_the_api_reference_only_when_it_was_built():
    assert "href='api/index.html'" in gallery.index_html([], api_reference=True)
    assert "api/index.html" not in gallery.index_html([])
