"""Plotly figures in one style, built from tidy summaries; every builder returns a ``go.Figure``.

Export: interactive HTML always; PNG/SVG through kaleido on request (``$CMKD_LAB_STATIC_FIGURES=1``,
which ``python -m cmkd_lab run --static`` sets) when a Chromium is available, otherwise one
printed line says why the static file was not written. Static export is off by default: one
Chromium render per figure cost more than the fits of a full-profile MFH run (14 s of 99 s).
"""

from __future__ import annotations

import atexit
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..app.io import atomic_path

TEMPLATE = "plotly_white"
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]
METHOD_COLORS = {"teacher": "#4C72B0", "no_kd": "#8C8C8C", "kd": "#DD8452"}
METHOD_NAMES = {"teacher": "Teacher", "no_kd": "No-KD student", "kd": "KD student"}
# Readable names of the other columns and values that reach legends and axes.
NAMES = {
    "gamma": "γ",
    "alpha": "α",
    "beta": "β",
    "delta": "KD − No-KD",
    "ntd": "NTD (non-target divergence)",
    "cmd_input": "CMD of the inputs x_a, x_b",
    "cmd_output": "CMD of the output softmaxes",
    "n_classes": "classes",
}
BANDS = {
    "std": "band: ± 1 standard deviation over runs",
    "se": "band: ± 1 standard error of the mean over runs",
    "ci95": "band: 95 % confidence interval of the mean over runs (t)",
}
MANY_POINTS = 40  # lines with more points than this are drawn without markers
STATIC_FORMATS = ("png", "svg")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
STATIC_ENV_VAR = "CMKD_LAB_STATIC_FIGURES"  # "1": also export PNG/SVG (default: HTML figures only)


def color_for(name: str, position: int) -> str:
    return METHOD_COLORS.get(name, PALETTE[position % len(PALETTE)])


def display_name(name) -> str:
    return METHOD_NAMES.get(name, NAMES.get(name, str(name)))


def band_half_width(summary: pd.DataFrame, band: str) -> np.ndarray:
    """Half-width of the band around each ``mean`` of a :func:`~cmkd_lab.analysis.results.summarize`
    table (columns ``std`` and ``n``): one std, one standard error, or the 95 % t interval."""
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; valid: {', '.join(BANDS)}")
    std = summary["std"].to_numpy(dtype=float)
    if band == "std":
        return std
    n = summary["n"].to_numpy(dtype=float) if "n" in summary else np.full(len(summary), np.nan)
    if np.isnan(n).any():
        raise ValueError(f"band {band!r} needs the number of runs per point (column 'n', as summarize() gives)")
    se = std / np.sqrt(np.maximum(n, 1))
    if band == "se":
        return se
    from scipy.stats import t  # deferred: a slow import most figures never need

    return np.where(n > 1, t.ppf(0.975, np.maximum(n - 1, 1)) * se, 0.0)


def with_caption(title: str, caption: str) -> str:
    """A title with a smaller caption line under it."""
    return f"{title}<br><sup>{caption}</sup>" if title else f"<sup>{caption}</sup>"


def _band_trace(xs: np.ndarray, mean: np.ndarray, half_width: np.ndarray, color: str, **options) -> go.Scatter:
    """A filled band ``mean ± half_width`` along ``xs`` in a light shade of ``color``, kept out of the legend."""
    return go.Scatter(
        x=np.concatenate([xs, xs[::-1]]).tolist(),
        y=np.concatenate([mean + half_width, (mean - half_width)[::-1]]).tolist(),
        mode="lines",
        fill="toself",
        fillcolor=_rgba(color, 0.18),
        line=dict(width=0),
        hoverinfo="skip",
        showlegend=False,
        **options,
    )


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def style(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    """The kit's one look: template, fonts, margins, titles."""
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend_title_text="",
        font=dict(size=13),
        margin=dict(l=60, r=20, t=60, b=50),
    )
    return fig


def metric_vs_knob(
    summary: pd.DataFrame,
    x: str,
    color: str = "method",
    scale: float = 100.0,
    title: str = "",
    x_title: str | None = None,
    y_title: str = "test accuracy (%)",
    reference: pd.DataFrame | None = None,
    band: str = "std",
    names: dict | None = None,
) -> go.Figure:
    """Lines of ``mean`` against ``x``, one per ``color`` value, with a band (``band``: "std",
    "se" or "ci95", see :data:`BANDS`; the caption under the title says which).

    ``reference`` (optional) has columns ``x``, ``color`` and ``paper``: published values,
    drawn as open markers in the same colour (already in the plotted units). ``names`` renames
    ``color`` values in the legend (default: :func:`display_name`).
    """
    fig = go.Figure()
    label = (lambda v: names.get(v, display_name(v))) if names else display_name  # noqa: E731
    for i, (name, part) in enumerate(summary.groupby(color, sort=False)):
        part = part.sort_values(x)
        xs, mean, std = part[x].to_numpy(), part["mean"].to_numpy() * scale, band_half_width(part, band) * scale
        c = color_for(name, i)
        fig.add_trace(_band_trace(xs, mean, std, c, legendgroup=str(name)))
        fig.add_trace(
            go.Scatter(
                x=xs.tolist(),
                y=mean.tolist(),
                mode="lines" if len(xs) > MANY_POINTS else "lines+markers",
                name=label(name),
                line=dict(color=c, width=2),
                legendgroup=str(name),
            )
        )
        if reference is not None:
            ref = reference[reference[color] == name].sort_values(x)
            if len(ref):
                fig.add_trace(
                    go.Scatter(
                        x=ref[x].tolist(),
                        y=ref["paper"].tolist(),
                        mode="markers",
                        name=f"{label(name)} (paper)",
                        marker=dict(color=c, symbol="circle-open", size=10, line=dict(width=2)),
                        legendgroup=str(name),
                    )
                )
    fig = style(fig, with_caption(title, BANDS[band]), x_title or display_name(x), y_title)
    return fig.update_layout(margin=dict(t=80))


def paired_delta(
    points: pd.DataFrame,
    x: str,
    color: str | None = None,
    title: str = "",
    x_title: str | None = None,
    y_title: str = "KD − No-KD (points)",
) -> go.Figure:
    """Each run's paired difference ``delta`` (a fraction; one row of ``points`` per run) as a
    small marker at its ``x``, and per ``x`` the mean with its 95 % confidence interval (t),
    with the zero line: the effect itself, not two wide accuracy bands that hide it."""
    fig = go.Figure()
    groups = points.groupby(color, sort=True) if color else [(None, points)]
    n_groups = points[color].nunique() if color else 1
    span = np.diff(np.sort(points[x].unique())).min() if points[x].nunique() > 1 else 1.0
    for i, (name, part) in enumerate(groups):
        c = PALETTE[i % len(PALETTE)] if color else METHOD_COLORS["kd"]
        shift = (i - (n_groups - 1) / 2) * 0.12 * span
        legend = f"{display_name(color)} = {name}" if color else "per run"
        jitter = np.random.default_rng(i).uniform(-0.04, 0.04, len(part)) * span
        fig.add_trace(
            go.Scatter(
                x=(part[x].to_numpy(dtype=float) + shift + jitter).tolist(),
                y=(100 * part["delta"]).tolist(),
                mode="markers",
                name=f"{legend}: one run" if color else "one run",
                legendgroup=str(name),
                marker=dict(color=_rgba(c, 0.35), size=5),
                hoverinfo="y",
            )
        )
        summary = part.groupby(x)["delta"].agg(mean="mean", std="std", n="count").reset_index()
        summary["std"] = summary["std"].fillna(0.0)
        half = band_half_width(summary, "ci95")
        fig.add_trace(
            go.Scatter(
                x=(summary[x].to_numpy(dtype=float) + shift).tolist(),
                y=(100 * summary["mean"]).tolist(),
                mode="lines+markers",
                name=f"{legend}: mean" if color else "mean over runs",
                legendgroup=str(name),
                line=dict(color=c, width=2),
                marker=dict(size=8),
                error_y=dict(type="data", array=(100 * half).tolist(), visible=True, thickness=1.5),
            )
        )
    fig = style(
        fig,
        with_caption(title, "markers: each run's paired difference; bars: 95 % confidence interval of the mean (t)"),
        x_title or display_name(x),
        y_title,
    )
    fig.update_layout(margin=dict(t=80))
    return zero_line(fig)


def metric_panels(
    summary: pd.DataFrame,
    x: str,
    panel: str = "metric",
    scale: float = 1.0,
    title: str = "",
    x_title: str | None = None,
    band: str = "ci95",
) -> go.Figure:
    """One panel per ``panel`` value (each with its own y-axis, titled by its readable name),
    ``mean`` against ``x`` with a band: quantities of different sizes never share an axis."""
    from plotly.subplots import make_subplots

    values = list(dict.fromkeys(summary[panel]))
    fig = make_subplots(
        rows=1, cols=len(values), subplot_titles=[display_name(v) for v in values], horizontal_spacing=0.08
    )
    for i, value in enumerate(values, start=1):
        part = summary[summary[panel] == value].sort_values(x)
        xs, mean = part[x].to_numpy(), part["mean"].to_numpy() * scale
        half = band_half_width(part, band) * scale
        c = PALETTE[(i - 1) % len(PALETTE)]
        fig.add_trace(_band_trace(xs, mean, half, c), 1, i)
        fig.add_trace(
            go.Scatter(
                x=xs.tolist(),
                y=mean.tolist(),
                mode="lines+markers",
                line=dict(color=c, width=2),
                name=display_name(value),
                showlegend=False,
            ),
            1,
            i,
        )
        fig.update_xaxes(title_text=x_title or display_name(x), row=1, col=i)
    fig = style(fig, with_caption(title, BANDS[band]), x_title or display_name(x), "")
    return fig.update_layout(margin=dict(t=100))


def grouped_bars(
    summary: pd.DataFrame,
    x: str,
    color: str = "method",
    scale: float = 100.0,
    title: str = "",
    x_title: str | None = None,
    y_title: str = "test accuracy (%)",
) -> go.Figure:
    """Bars of ``mean`` per ``x`` category, grouped by ``color``, with ±``std`` error bars."""
    fig = go.Figure()
    for i, (name, part) in enumerate(summary.groupby(color, sort=False)):
        fig.add_trace(
            go.Bar(
                x=part[x].astype(str).tolist(),
                y=(part["mean"] * scale).tolist(),
                name=display_name(name),
                marker_color=color_for(name, i),
                error_y=dict(type="data", array=(part["std"] * scale).tolist(), visible=True),
            )
        )
    fig.update_layout(barmode="group")
    return style(
        fig,
        with_caption(title, "error bars: ± 1 standard deviation over runs"),
        display_name(x) if x_title is None else x_title,
        y_title,
    ).update_layout(margin=dict(t=80))


def heatmap(
    values: pd.DataFrame,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    colorbar_title: str = "",
    text_format: str = ".2f",
    colorscale: str = "RdBu",
    midpoint: float | None = None,
) -> go.Figure:
    """A labelled heatmap of a 2-D table (index → rows, columns → columns), values written in cells."""
    fig = go.Figure(
        go.Heatmap(
            z=values.to_numpy(dtype=float).tolist(),
            x=[str(c) for c in values.columns],
            y=[str(i) for i in values.index],
            colorscale=colorscale,
            zmid=midpoint,
            texttemplate=f"%{{z:{text_format}}}",
            colorbar=dict(title=colorbar_title),
        )
    )
    return style(fig, title, x_title, y_title)


def embedding_2d(
    points: np.ndarray, labels: Sequence, title: str = "", kinds: Sequence | None = None, label_title: str = "class"
) -> go.Figure:
    """A 2-D scatter of embedded samples coloured by label (and marker symbol by ``kinds``)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}")
    frame = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "label": [str(v) for v in labels]})
    frame["kind"] = [str(k) for k in kinds] if kinds is not None else ""
    symbols = ["circle", "diamond", "square", "x", "triangle-up"]
    fig = go.Figure()
    for _i, ((label, kind), part) in enumerate(frame.groupby(["label", "kind"], sort=True)):
        label_index = sorted(frame["label"].unique()).index(label)
        kind_index = sorted(frame["kind"].unique()).index(kind)
        fig.add_trace(
            go.Scatter(
                x=part["x"].tolist(),
                y=part["y"].tolist(),
                mode="markers",
                name=f"{label} {kind}".strip(),
                marker=dict(
                    color=PALETTE[label_index % len(PALETTE)],
                    symbol=symbols[kind_index % len(symbols)],
                    size=6,
                    opacity=0.75,
                ),
            )
        )
    fig.update_layout(legend_title_text=label_title)
    return style(fig, title, "dimension 1", "dimension 2")


def image_mosaic(images: np.ndarray, columns: int, title: str = "", gap: int = 1) -> go.Figure:
    """Grey-scale images ``(K, H, W)`` tiled ``columns`` per row with ``gap`` blank pixels between."""
    images = np.asarray(images, dtype=float)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (K, H, W), got {images.shape}")
    count, height, width = images.shape
    rows = -(-count // columns)
    canvas = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        canvas[r * (height + gap) : r * (height + gap) + height, c * (width + gap) : c * (width + gap) + width] = image
    fig = go.Figure(go.Heatmap(z=canvas[::-1].tolist(), colorscale="gray_r", showscale=False, hoverongaps=False))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return style(fig, title, "", "")


def find_chromium() -> str | None:
    """A Chromium/Chrome executable for kaleido, or None."""
    configured = os.environ.get("BROWSER_PATH")
    if configured and Path(configured).exists():
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def save_figure(
    fig: go.Figure, out_dir: str | Path, name: str, static: Sequence[str] = ("png",), scale: float = 2.0
) -> dict[str, Path]:
    """Write ``name.html`` always (plotly.min.js beside it, so it opens offline), and each
    ``static`` format when ``$CMKD_LAB_STATIC_FIGURES`` is "1" and a Chromium is available.

    Returns the paths written. Without Chromium a one-line note says how to get static files.
    """
    unknown = set(static) - set(STATIC_FORMATS)
    if unknown:
        raise ValueError(f"unknown static format(s) {sorted(unknown)}; valid: {', '.join(STATIC_FORMATS)}")
    out_dir = Path(out_dir)
    written = {}
    with atomic_path(out_dir / f"{name}.html") as temporary:
        fig.write_html(temporary, include_plotlyjs="directory", full_html=True)
    written["html"] = out_dir / f"{name}.html"
    if not static or not static_export_requested():
        return written
    chromium = find_chromium()
    if chromium is None:
        print(
            f"note: {name}: no Chromium found, so no {'/'.join(static)} was written "
            "(install one: apt-get install -y chromium); the HTML figure is there."
        )
        return written
    _start_export_server(chromium)
    for fmt in static:
        target = out_dir / f"{name}.{fmt}"
        with atomic_path(target) as temporary, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            fig.write_image(str(temporary), format=fmt, scale=scale if fmt == "png" else 1.0)
        written[fmt] = target
    return written


def static_export_requested() -> bool:
    return os.environ.get(STATIC_ENV_VAR, "0") == "1"


_export_server_started = False


def _start_export_server(chromium: str) -> None:
    """One Chromium for all exports of this process (a fresh one per figure costs seconds)."""
    global _export_server_started
    if _export_server_started:
        return
    import kaleido

    os.environ.setdefault("BROWSER_PATH", chromium)
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server)
    _export_server_started = True


# ----------------------------------------------------------------------------- gains and divergences
def zero_line(fig: go.Figure) -> go.Figure:
    """A dotted line at y = 0, for gains that can be negative."""
    fig.add_hline(y=0, line_dash="dot", line_color="#555")
    return fig


def delta_vs_ntd(
    points: pd.DataFrame, color: str, title: str = "", subtitle: str = "", hover: str | None = None
) -> go.Figure:
    """Δ = KD − No-KD (points) against NTD: one marker per row of ``points`` (columns ``ntd``,
    ``delta`` as a fraction, ``color``, and ``hover`` if given), coloured by ``color``."""
    fig = go.Figure()
    for i, (name, part) in enumerate(points.groupby(color, sort=True)):
        fig.add_trace(
            go.Scatter(
                x=part["ntd"].tolist(),
                y=(100 * part["delta"]).tolist(),
                mode="markers",
                name=f"{display_name(color)} = {name:.2f}"
                if isinstance(name, float)
                else f"{display_name(color)} = {name}",
                marker=dict(color=PALETTE[i % len(PALETTE)], size=8, opacity=0.75),
                text=part[hover].tolist() if hover else None,
            )
        )
    fig = style(
        fig,
        f"{title}<br><sup>{subtitle}</sup>" if subtitle else title,
        "non-target divergence, teacher vs No-KD student (nats)",
        "KD − No-KD (points)",
    )
    fig.update_layout(margin=dict(t=80))
    return zero_line(fig)


def non_target_bars(
    classes: Sequence,
    teacher: Sequence[float],
    student: Sequence[float],
    title: str = "",
    student_name: str = "student",
) -> go.Figure:
    """One sample's non-target distributions (probabilities over ``classes``), teacher's and
    student's side by side on a shared axis."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("teacher", student_name), shared_yaxes=True)
    names = [f"class {c}" for c in classes]
    fig.add_trace(go.Bar(x=names, y=list(teacher), marker_color=METHOD_COLORS["teacher"], name="teacher"), 1, 1)
    fig.add_trace(go.Bar(x=names, y=list(student), marker_color=METHOD_COLORS["no_kd"], name=student_name), 1, 2)
    fig = style(fig, title, "", "probability among non-target classes")
    fig.update_layout(showlegend=False, margin=dict(t=90))
    return fig


def venn_diagram(ratios: pd.DataFrame, title: str = "Modality Venn diagram per setting") -> go.Figure:
    """One stacked bar per setting: a-specific (α) | shared (γ) | b-specific (β) share of the
    decisive features, so the overlap sits in the middle like the intersection of two circles.

    ``ratios`` has columns ``setting``, ``alpha``, ``beta``, ``gamma``.
    """
    parts = [
        ("alpha", "a-specific (α, teacher only)", "#4C72B0"),
        ("gamma", "shared (γ, modality-general)", "#55A868"),
        ("beta", "b-specific (β, student only)", "#DD8452"),
    ]
    fig = go.Figure()
    for column, name, colour in parts:
        values = ratios[column].astype(float)
        fig.add_trace(
            go.Bar(
                y=ratios["setting"].astype(str).tolist(),
                x=values.tolist(),
                name=name,
                orientation="h",
                marker_color=colour,
                text=[f"{v:.2f}" if v > 0.04 else "" for v in values],
                textposition="inside",
            )
        )
    fig.update_layout(
        barmode="stack",
        yaxis=dict(autorange="reversed"),
        xaxis=dict(range=[0, 1]),
        legend=dict(orientation="h", y=-0.25, traceorder="normal"),
    )
    style(fig, title, "share of the decisive features", "")
    return fig.update_layout(margin=dict(l=80, r=20, t=60, b=80))
