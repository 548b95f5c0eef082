"""The notebooks in JupyterLab, driven by Playwright against the system Chromium.

For the quickstart and one paper notebook, with their Explore sections on: every cell runs
without an error, every plotly figure renders, the widgets render, a slider redraws the Explore
figure, the browser console stays clean, and after a save and a reopen no widget fails to
display. The slider-to-redraw time is printed here and measured in
``benchmarks/slider_redraw.py``, not asserted.
"""

from __future__ import annotations

import pytest

from cmkd_lab.app.browser import (
    NotebookPage,
    chromium,
    error_outputs,
    find_chromium,
    jupyter_lab,
    move_slider,
    plotly_outputs,
)
from cmkd_lab.app.notebook import parameterized_copy, resolve_notebook

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="no system Chromium (apt-get install -y chromium); CI installs it"
)

# small runs: the browser tests check what renders and what a slider does, not the numbers
NOTEBOOKS = {
    "00_quickstart": {"n_runs": 3, "epochs": 60},
    "03_ntdh_gaussian": {"n_runs": 3, "epochs": 60, "overlaps": [0, 10]},
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    for stem, values in NOTEBOOKS.items():
        parameterized_copy(
            resolve_notebook(stem),
            root / f"{stem}.ipynb",
            {**values, "interactive": True, "output_dir": str(root / "outputs" / stem)},
        )
    with jupyter_lab(root, {"CMKD_LAB_STATIC_FIGURES": "0"}) as running:
        yield running


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_the_notebook_works_in_jupyterlab(stem, lab, browser):
    page = NotebookPage(browser, lab, f"{stem}.ipynb")
    try:
        _check_notebook(stem, page)
    finally:
        page.close()


def _check_notebook(stem: str, page: NotebookPage) -> None:
    seconds = page.run_all()
    saved = page.save()
    assert error_outputs(saved) == [], f"{stem}: cells failed in the browser"

    figures = plotly_outputs(saved)
    assert figures >= 2, f"{stem}: expected its figures in the saved notebook, found {figures}"
    rendered = page.drawn_figures()
    assert rendered >= figures, f"{stem}: {figures} plotly figures in the notebook, {rendered} drawn"

    sliders = page.count(".widget-slider")
    assert sliders >= 2, f"{stem}: the Explore sliders did not render ({sliders} found)"
    assert page.drawn_figures(inside_widgets=True) == 1, f"{stem}: no Explore figure"
    redraw = move_slider(page, index=0)  # fails (times out) when the figure is not redrawn
    print(f"{stem}: ran in {seconds:.1f} s in the browser; slider to redraw {redraw:.2f} s")

    widget_cells = [
        cell
        for cell in saved["cells"]
        if cell["cell_type"] == "code"
        and any(WIDGET_VIEW in output.get("data", {}) for output in cell.get("outputs", []))
    ]
    assert all("explore(" in "".join(cell["source"]) for cell in widget_cells), (
        f"{stem}: widget outputs outside the Explore section (a progress widget would not survive a reopen)"
    )

    page.save()
    page.reload()
    assert "Error displaying widget" not in page.text(), f"{stem}: a widget failed after save and reopen"
    assert page.count(".widget-slider") == sliders, f"{stem}: the Explore sliders did not come back"
    assert page.console.errors == [], f"{stem}: browser console errors: {page.console.errors}"
