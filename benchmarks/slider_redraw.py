"""Slider to redraw in JupyterLab: how long each Explore slider takes to show its new figure.

For every notebook with an Explore section (or those named), at its quick-profile defaults with
``interactive = True``: open it in JupyterLab in the system Chromium, run all cells, then move
each slider one step to the right and time the key press until the Explore output shows a new
plotly figure. Prints a table per slider and its ratio to the 3 s target (2 cores).

    python benchmarks/slider_redraw.py [00_quickstart 03_ntdh_gaussian ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import nbformat
import pandas as pd
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from cmkd_lab.app.browser import NotebookPage, chromium, jupyter_lab, move_slider
from cmkd_lab.app.notebook import list_notebooks, parameterized_copy, resolve_notebook

TARGET_SECONDS = 3.0


def explore_notebooks() -> list[str]:
    """The notebooks whose Explore section shows sliders."""
    return [
        path.stem
        for path in list_notebooks()
        if any("explore(" in cell.source for cell in nbformat.read(path, as_version=4).cells)
    ]


def measure(stems: list[str], root: Path) -> pd.DataFrame:
    for stem in stems:
        parameterized_copy(
            resolve_notebook(stem),
            root / f"{stem}.ipynb",
            {"interactive": True, "output_dir": str(root / "outputs" / stem)},
        )
    rows = []
    with jupyter_lab(root, {"CMKD_LAB_STATIC_FIGURES": "0"}) as lab, chromium() as browser:
        for stem in stems:
            page = NotebookPage(browser, lab, f"{stem}.ipynb")
            run_seconds = page.run_all(timeout=1800)
            labels = page.page.eval_on_selector_all(
                ".widget-slider .widget-label", "labels => labels.map(l => l.textContent)"
            )
            for index, label in enumerate(labels):
                try:
                    seconds = move_slider(page, index, timeout=60)
                except PlaywrightTimeout:  # e.g. a combination the study refuses: the status says why
                    seconds = float("nan")
                rows.append(
                    {
                        "notebook": stem,
                        "slider": label,
                        "redraw_s": seconds,
                        "ratio_to_target": seconds / TARGET_SECONDS,
                        "notebook_run_s": run_seconds,
                    }
                )
                print(f"{stem} · {label}: {seconds:.2f} s", flush=True)
            page.close()
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="notebook stems (default: every notebook with an Explore section)")
    stems = parser.parse_args().notebooks or explore_notebooks()
    with tempfile.TemporaryDirectory(prefix="cmkd_lab_slider_") as root:
        table = measure(stems, Path(root))
    print(f"\nslider to redraw (target ≤ {TARGET_SECONDS:.0f} s on 2 cores; {os.cpu_count()} cores here)")
    print(table.round(2).to_string(index=False))
    print("\nper notebook (median, max):")
    print(table.groupby("notebook", sort=False)["redraw_s"].agg(["median", "max"]).round(2).to_string())


if __name__ == "__main__":
    main()
