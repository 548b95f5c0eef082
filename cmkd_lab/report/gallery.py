"""The figure gallery: a static site built from the executed notebooks under ``outputs/``.

``python -m cmkd_lab gallery [--outputs outputs] --out site`` writes
- ``site/index.html``: per notebook a thumbnail (its first exported figure), its one-line claim,
  how many of its paper claims held, did not hold or were not resolved (from ``claims.csv``, read
  with :func:`cmkd_lab.analysis.claims.load`), its findings and checks counted apart (they are
  never support for a paper), and links to everything below;
- ``site/<notebook>/index.html``: the executed notebook as HTML (nbconvert's lab template), its
  plotly figures interactive, plotly.js loaded once from ``site/plotly.min.js``, the nbgrader
  solution markers dropped (the solutions' content kept);
- ``site/<notebook>/``: the PNG/SVG exports for papers and slides, ``results.csv`` and
  ``claims.csv``.

The site needs no network: nothing is loaded from a CDN.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import claims
from ..app import course
from ..app.io import write_text
from ..app.notebook import list_notebooks, notebook_title

PLOTLY_MIME = "application/vnd.plotly.v1+json"
STATIC_EXPORTS = ("png", "svg")
TEMPLATE_DIR = Path(__file__).with_name("gallery_template") / "cmkd_lab"
_BADGE_COLORS = {"held": "#2E7D32", "not held": "#C62828", "not resolved": "#757575"}
_APART = {"finding": "the kit's own findings", "check": "checks (a method does what it defines)"}


@dataclass
class Page:
    """One notebook's entry in the gallery."""

    stem: str
    title: str
    claim: str
    counts: dict[str, dict[str, int]]  # kind -> verdict -> how many claims of that kind got it
    exports: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    thumbnail: str | None = None

    @property
    def verdicts(self) -> dict[str, int]:
        """How many paper claims held, did not hold, or were not resolved."""
        return self.counts.get("paper", {})

    @property
    def verdict(self) -> str:
        """Of the paper claims only: ``held`` when every one held, ``not held`` when none held and
        some did not, ``not resolved`` when the data decided none, ``partly held`` otherwise;
        ``no paper claim`` when there is none (findings and checks never count)."""
        counts = {k: v for k, v in self.verdicts.items() if v}
        if not counts:
            return "no paper claim"
        if set(counts) == {"held"}:
            return "held"
        if "held" not in counts:
            return "not held" if "not held" in counts else "not resolved"
        return "partly held"


def notebook_claim(notebook: dict, fallback: str) -> str:
    """The one-line claim a notebook states in its metadata (``cmkd_lab.claim``), else ``fallback``."""
    return notebook.get("metadata", {}).get("cmkd_lab", {}).get("claim") or fallback


def claim_counts(folder: Path) -> dict[str, dict[str, int]]:
    """Per kind of claim (paper, finding, check), how many of a notebook's claims got each verdict
    (:func:`cmkd_lab.analysis.claims.counts`); empty without a ``claims.csv``."""
    path = folder / "claims.csv"
    if not path.exists():
        return {}
    frame = claims.load(path)
    return {kind: claims.counts(frame, kind) for kind in claims.KINDS}


def without_solution_markers(notebook):
    """The notebook with every line that is only an nbgrader solution marker (``### BEGIN
    SOLUTION`` / ``### END SOLUTION``) dropped from its cells; the solutions' content stays."""
    markers = {course.BEGIN, course.END}
    for cell in notebook["cells"]:
        cell["source"] = "\n".join(line for line in cell["source"].split("\n") if line.strip() not in markers)
    return notebook


def _with_html_figures(notebook):
    """Give every plotly output an HTML rendering that draws it with the page's plotly.js."""
    import plotly.io as pio

    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get(PLOTLY_MIME)
            if figure is not None:
                output["data"] = {
                    "text/html": pio.to_html(
                        pio.from_json(json.dumps(figure)),
                        include_plotlyjs=False,
                        full_html=False,
                        config={"responsive": True},
                    )
                }
    return notebook


def notebook_html(path: Path) -> str:
    """The executed notebook as one HTML page that loads ``../plotly.min.js`` and nothing remote."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    notebook = _with_html_figures(without_solution_markers(nbformat.read(path, as_version=4)))
    # the template is a folder beside this module (set before the exporter looks templates up)
    config = Config({"TemplateExporter": {"extra_template_basedirs": [str(TEMPLATE_DIR.parent)]}})
    exporter = HTMLExporter(config=config, template_name=TEMPLATE_DIR.name)
    body, _ = exporter.from_notebook_node(notebook, resources={"gallery_index": "../index.html"})
    return body


def _page(stem: str, folder: Path, target: Path) -> Page:
    executed = folder / f"{stem}.ipynb"
    notebook = json.loads(executed.read_text())
    title = notebook_title(executed)
    exports = sorted(
        (p for p in folder.iterdir() if p.suffix.lstrip(".") in STATIC_EXPORTS),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    target.mkdir(parents=True, exist_ok=True)
    for file in [*exports, *(folder / name for name in ("results.csv", "claims.csv"))]:
        if file.exists():
            shutil.copy2(file, target / file.name)
    write_text(target / "index.html", notebook_html(executed))
    pngs = [p.name for p in exports if p.suffix == ".png"]
    return Page(
        stem=stem,
        title=title,
        claim=notebook_claim(notebook, title),
        counts=claim_counts(folder),
        exports=[p.name for p in exports],
        thumbnail=pngs[0] if pngs else None,
        tables=[name for name in ("results.csv", "claims.csv") if (folder / name).exists()],
    )


def build(outputs: str | Path = "outputs", out: str | Path = "site") -> list[Page]:
    """Write the gallery of every executed notebook under ``outputs`` into ``out``; returns its pages."""
    import plotly.offline

    outputs, out = Path(outputs), Path(out)
    stems = [p.stem for p in list_notebooks() if (outputs / p.stem / f"{p.stem}.ipynb").exists()]
    if not stems:
        raise FileNotFoundError(
            f"no executed notebooks under {outputs}/ (expected {outputs}/<name>/<name>.ipynb); "
            "run them first: python -m cmkd_lab run all"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "plotly.min.js", plotly.offline.get_plotlyjs())
    pages = [_page(stem, outputs / stem, out / stem) for stem in stems]
    write_text(out / "index.html", index_html(pages, api_reference=(out / "api" / "index.html").exists()))
    return pages


def _badges(verdicts: dict[str, int]) -> str:
    return " ".join(
        f"<span class='badge' style='background:{_BADGE_COLORS[name]}'>{count} {name}</span>"
        for name, count in verdicts.items()
        if count
    )


def _apart(page: Page) -> str:
    """The findings' and checks' verdicts, each on a line of its own."""
    return "".join(
        f"<p class='apart'>{html.escape(label)}: {_badges(page.counts[kind])}</p>"
        for kind, label in _APART.items()
        if any(page.counts.get(kind, {}).values())
    )


def _card(page: Page) -> str:
    link = f"{page.stem}/index.html"
    thumbnail = (
        f"<a href='{link}'><img src='{page.stem}/{html.escape(page.thumbnail)}' alt='{html.escape(page.title)}'></a>"
        if page.thumbnail
        else "<div class='no-thumbnail'>no PNG export (run --static, with a Chromium)</div>"
    )
    files = " · ".join(
        f"<a href='{page.stem}/{html.escape(name)}'>{html.escape(name)}</a>" for name in [*page.exports, *page.tables]
    )
    return f"""<article class="card">
  {thumbnail}
  <h2><a href="{link}">{html.escape(page.stem)}</a> · {html.escape(page.title)}</h2>
  {f'<p class="claim">{html.escape(page.claim)}</p>' if page.claim != page.title else ""}
  <p class="verdict">paper claims: <b>{html.escape(page.verdict)}</b> {_badges(page.verdicts)}</p>
  {_apart(page)}
  <p class="files">{files}</p>
</article>"""


def index_html(pages: list[Page], api_reference: bool = False) -> str:
    """The gallery's front page; with ``api_reference``, a link to the API reference in ``api/``
    (``python -m cmkd_lab docs``, which ``make run`` builds before the gallery)."""
    cards = "\n".join(_card(page) for page in pages)
    api_link = (
        " The <a href='api/index.html'>API reference</a>: every module of the kit, from its docstrings."
        if api_reference
        else ""
    )
    built = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cmkd_lab figure gallery</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1.2rem; }}
.card {{ border: 1px solid #ddd; border-radius: 8px; padding: 0.8rem; }}
.card img {{ width: 100%; border-radius: 4px; }}
.card h2 {{ font-size: 1.05rem; margin: 0.5rem 0; }}
.no-thumbnail {{ height: 120px; display: flex; align-items: center; justify-content: center;
                 background: #f4f4f4; color: #777; }}
.badge {{ color: white; border-radius: 4px; padding: 0 0.4em; font-size: 0.85em; }}
.apart {{ font-size: 0.9em; color: #555; margin: 0.2rem 0; }}
.files {{ font-size: 0.85em; word-break: break-all; }}
</style></head>
<body>
<h1>cmkd_lab figure gallery</h1>
<p>Every notebook as executed by <code>python -m cmkd_lab run all</code>, with its figures, tables and the
verdicts of its paper claims by the kit's one rule (<code>cmkd_lab.analysis.claims</code>: held · not held ·
not resolved, the data decide neither way). The kit's own findings and its checks are counted apart:
they are never support for a paper. Built {built}.{api_link}</p>
<div class="grid">
{cards}
</div>
</body></html>
"""
