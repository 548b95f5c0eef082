"""The figure gallery: a static site of the executed notebooks, opened in the system Chromium."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from cmkd_lab.analysis import claims
from cmkd_lab.app import course
from cmkd_lab.app.browser import ConsoleLog, chromium, find_chromium
from cmkd_lab.app.notebook import run_notebook
from cmkd_lab.report import gallery

# small runs of a notebook with paper claims (MFH Fig. 2's two messages) and of one with checks only
RUNS = {
    "00_quickstart": {"n_runs": 2, "epochs": 30},
    "01_data_tour": {"n_seeds": 1, "datasets": ["segment"], "samples_per_class": 2},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory, monkeypatch_module):
    outputs = tmp_path_factory.mktemp("outputs")
    monkeypatch_module.setenv("CMKD_LAB_STATIC_FIGURES", "1" if find_chromium() else "0")  # PNG exports to link
    for stem, values in RUNS.items():
        run_notebook(stem, "quick", values, outputs)
    out = tmp_path_factory.mktemp("site")
    return outputs, out, gallery.build(outputs, out)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_executed_notebook_gets_a_page_and_plotly_js_is_there_once(site):
    outputs, out, pages = site
    assert [page.stem for page in pages] == list(RUNS)
    assert [p.name for p in out.rglob("plotly.min.js")] == ["plotly.min.js"]
    for page in pages:
        html = (out / page.stem / "index.html").read_text()
        assert html.count('src="../plotly.min.js"') == 1
        assert "plotly.js v" not in html, f"{page.stem}: plotly.js is inlined in the page"
        assert not re.search(r"""(src|href)=["']https?://""", html), f"{page.stem}: the page loads something remote"
        figures = sum(
            "application/vnd.plotly.v1+json" in output.get("data", {})
            for cell in nbformat.read(outputs / page.stem / f"{page.stem}.ipynb", 4).cells
            for output in cell.get("outputs", [])
        )
        assert figures >= 1 and html.count("Plotly.newPlot(") == figures


def test_pages_drop_the_solution_markers_and_keep_the_solutions(site):
    outputs, out, pages = site
    html = (out / "00_quickstart" / "index.html").read_text()
    assert course.BEGIN not in html and course.END not in html
    assert "gamma_kd_stops_hurting" in html and "KD still helps, by" in html  # a code and a written solution


def test_the_index_counts_paper_claims_only_and_lists_findings_and_checks_apart(site):
    outputs, out, pages = site
    by_stem = {page.stem: page for page in pages}
    index = (out / "index.html").read_text()
    quickstart = claims.load(outputs / "00_quickstart")
    assert set(quickstart["kind"]) == {"paper"}
    assert by_stem["00_quickstart"].verdicts == claims.counts(quickstart, "paper")
    assert sum(claims.counts(quickstart).values()) == 2
    tour = claims.load(outputs / "01_data_tour")
    assert set(tour["kind"]) == {"check"}
    assert by_stem["01_data_tour"].verdict == "no paper claim" and not any(by_stem["01_data_tour"].verdicts.values())
    card = index[index.index("01_data_tour</a>") :]
    checks = {verdict: count for verdict, count in claims.counts(tour, "check").items() if count}
    assert "paper claims: <b>no paper claim</b>" in card
    line = card[card.index("checks (a method does what it defines):") :]
    line = line[: line.index("</p>")]
    assert all(f"{count} {verdict}</span>" in line for verdict, count in checks.items())


@pytest.mark.parametrize(
    "paper, expected",
    [
        ({}, "no paper claim"),
        ({"held": 2}, "held"),
        ({"held": 1, "not resolved": 1}, "partly held"),
        ({"not held": 1, "not resolved": 3}, "not held"),
        ({"not resolved": 2}, "not resolved"),
    ],
)
def test_a_pages_verdict_reads_its_paper_claims_only(paper, expected):
    counts = {"paper": {v: paper.get(v, 0) for v in claims.VERDICTS}, "check": {"held": 5}}
    assert gallery.Page("x", "x", "x", counts).verdict == expected


def test_the_readme_states_the_rule_the_gallery_counts_by():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert claims.RULE in readme


def test_without_executed_notebooks_the_error_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m cmkd_lab run all"):
        gallery.build(tmp_path / "nothing", tmp_path / "site")


@pytest.mark.skipif(find_chromium() is None, reason="no system Chromium (apt-get install -y chromium); CI installs it")
def test_every_link_of_the_index_works_and_every_figure_renders(site):
    outputs, out, pages = site
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        console = ConsoleLog(page)
        page.goto((out / "index.html").as_uri())
        links = page.eval_on_selector_all("a", "anchors => anchors.map(a => a.href)")
        thumbnails = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
        assert thumbnails and all(thumbnails), "a thumbnail did not load"
        assert len(links) > 2 * len(pages)
        for link in dict.fromkeys(links):
            path = Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
            assert path.is_file() and path.is_relative_to(out), f"broken link {link}"
            if path.suffix == ".html":
                page.goto(link)
                page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
                drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                                         .filter(el => el.querySelector('.main-svg')).length""")
                assert drawn == page.locator(".js-plotly-plot").count() >= 1, f"{link}: a figure did not render"
                back = page.locator("nav a").get_attribute("href")
                assert (path.parent / back).resolve() == (out / "index.html").resolve()
            elif path.suffix == ".png":
                page.goto(link)
                assert page.evaluate("() => document.images.length === 1 && document.images[0].naturalWidth > 0")
        assert console.errors == [], console.errors
