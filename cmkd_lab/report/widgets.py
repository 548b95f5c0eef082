"""Explore sections: sliders that re-run a study function and redraw its figure.

The callback is the same pure function the headless path calls; the widget only collects
values, times the run and shows the figure it returns.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping

import plotly.graph_objects as go


def slider(kind: str, value, low, high, step, description: str):
    """An int or float slider that fires on release (so each change runs once)."""
    import ipywidgets as widgets

    make = {"int": widgets.IntSlider, "float": widgets.FloatSlider}[kind]
    return make(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        layout={"width": "420px"},
    )


def explore(controls: Mapping[str, object], redraw: Callable[..., go.Figure], title: str = ""):
    """Show ``controls`` (name → widget) and the figure ``redraw(**values)`` returns; redraw on change."""
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output()
    status = widgets.HTML()

    def update(**values):
        started = time.perf_counter()
        status.value = "<i>running…</i>"
        try:
            figure = redraw(**values)
        except ValueError as error:  # a combination of knobs the study refuses: say why, keep the last figure
            status.value = f"<small style='color:#C44E52'>not run: {html.escape(str(error))}</small>"
            return
        output.clear_output(wait=True)
        with output:
            figure.show()
        status.value = f"<small>re-ran in {time.perf_counter() - started:.2f} s</small>"

    widgets.interactive_output(update, dict(controls))
    panel = widgets.VBox([widgets.HTML(f"<b>{title}</b>"), *controls.values(), status, output])
    display(panel)
    return panel
