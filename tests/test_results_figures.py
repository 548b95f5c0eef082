"""Tidy results, summaries, paper-vs-kit tables, figure builders and export."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from cmkd_lab.analysis.results import RunLog, mean_std_table, paper_vs_kit, save_results, summarize, tidy_rows
from cmkd_lab.report import figures


def table():
    rows = []
    for gamma in (0.0, 1.0):
        for method, base in (("no_kd", 0.6), ("kd", 0.55 + 0.1 * gamma)):
            rows += tidy_rows("demo", method, {"gamma": gamma}, [0, 1, 2], "test_acc", [base, base + 0.02, base - 0.02])
    return pd.DataFrame(rows)


def test_tidy_rows_and_summaries():
    t = table()
    assert list(t.columns) == ["study", "method", "gamma", "seed", "metric", "value"]
    summary = summarize(t)
    kd_at_1 = summary[(summary.method == "kd") & (summary.gamma == 1.0)].iloc[0]
    assert kd_at_1["mean"] == pytest.approx(0.65) and kd_at_1["std"] == pytest.approx(0.02) and kd_at_1["n"] == 3
    pivot = mean_std_table(t, index="gamma")
    assert pivot.loc[1.0, "kd"] == "65.00 ± 2.00"
    with pytest.raises(ValueError, match="must match"):
        tidy_rows("demo", "kd", [{"gamma": 0}], [0, 1], "test_acc", [0.5, 0.5])


def test_paper_vs_kit_flags_values_outside_the_tolerance():
    kit = summarize(table())
    paper = pd.DataFrame({"method": ["kd", "kd"], "gamma": [0.0, 1.0], "metric": "test_acc", "paper": [55.5, 60.0]})
    compared = paper_vs_kit(kit, paper, on=["method", "gamma", "metric"], tolerance=1.0)
    assert compared["within_tolerance"].tolist() == [True, False]
    assert compared["difference"].round(6).tolist() == [-0.5, 5.0]


def test_save_results_writes_table_and_run_record_whole(tmp_path):
    log = RunLog()
    log.add(study="demo", method="kd", wall_time_s=1.5, seeds=np.array([0, 1]))
    save_results(table(), tmp_path, log, {"profile": "quick"})
    assert pd.read_csv(tmp_path / "results.csv").shape == (12, 6)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["parameters"] == {"profile": "quick"} and record["fits"][0]["seeds"] == [0, 1]
    assert record["environment"]["versions"]["torch"].startswith("2.")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part") or ".part." in p]
    with pytest.raises(ValueError, match="missing \\['metric'\\]"):
        save_results(table().drop(columns="metric"), tmp_path)


def test_figure_builders_return_figures_with_bands_and_error_bars():
    summary = summarize(table())
    paper = pd.DataFrame({"method": ["kd"], "gamma": [1.0], "paper": [66.0]})
    fig = figures.metric_vs_knob(summary, x="gamma", reference=paper, title="demo")
    data = fig.to_dict()["data"]
    names = [trace.get("name") for trace in data]
    assert "KD student" in names and "No-KD student" in names and "KD student (paper)" in names
    bands = [trace for trace in data if trace.get("fill") == "toself"]
    assert len(bands) == 2 and len(bands[0]["x"]) == 4
    bars = figures.grouped_bars(summary, x="gamma").to_dict()["data"]
    assert [b["type"] for b in bars] == ["bar", "bar"] and bars[0]["error_y"]["array"] is not None
    heat = figures.heatmap(pd.DataFrame([[1.0, -1.0]], index=["r"], columns=["c1", "c2"])).to_dict()["data"][0]
    assert heat["type"] == "heatmap" and heat["x"] == ["c1", "c2"]
    points = figures.embedding_2d(np.zeros((4, 2)), [0, 1, 0, 1]).to_dict()["data"]
    assert len(points) == 2
    with pytest.raises(ValueError, match="shape \\(N, 2\\)"):
        figures.embedding_2d(np.zeros((4, 3)), [0, 1, 0, 1])


def test_export_writes_html_and_static_files_when_chromium_is_there(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(figures.STATIC_ENV_VAR, "1")
    fig = figures.grouped_bars(summarize(table()), x="gamma")
    written = figures.save_figure(fig, tmp_path, "bars", static=("png", "svg"))
    assert (tmp_path / "bars.html").stat().st_size > 1000 and (tmp_path / "plotly.min.js").exists()
    if os.environ.get("CI"):
        assert figures.find_chromium(), "CI installs Chromium (make chromium) so static export is tested"
    if figures.find_chromium():
        assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (tmp_path / "bars.svg").read_bytes()[:500]
        assert set(written) == {"html", "png", "svg"}
    else:
        assert "no Chromium found" in capsys.readouterr().out and set(written) == {"html"}


def test_export_without_chromium_prints_one_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(figures.STATIC_ENV_VAR, "1")
    monkeypatch.setattr(figures, "find_chromium", lambda: None)
    written = figures.save_figure(figures.grouped_bars(summarize(table()), x="gamma"), tmp_path, "bars")
    assert set(written) == {"html"} and not (tmp_path / "bars.png").exists()
    assert capsys.readouterr().out.count("\n") == 1


def test_bands_say_what_they_are_and_have_the_stated_width():
    summary = pd.DataFrame(
        {"method": ["kd"] * 2, "gamma": [0.0, 1.0], "mean": [0.6, 0.7], "std": [0.1, 0.2], "n": [10, 10]}
    )
    assert np.allclose(figures.band_half_width(summary, "std"), [0.1, 0.2])
    assert np.allclose(figures.band_half_width(summary, "se"), np.array([0.1, 0.2]) / np.sqrt(10))
    assert np.allclose(figures.band_half_width(summary, "ci95"), 2.2622 * np.array([0.1, 0.2]) / np.sqrt(10), atol=1e-4)
    with pytest.raises(ValueError, match="valid: std, se, ci95"):
        figures.band_half_width(summary, "iqr")
    fig = figures.metric_vs_knob(summary, x="gamma", band="ci95", title="Fig. 2")
    assert "95 % confidence interval" in fig.layout.title.text and fig.layout.xaxis.title.text == "γ"
    upper = fig.data[0].y[:2]  # the band's upper edge, in points
    assert np.allclose(upper, 100 * (summary["mean"] + figures.band_half_width(summary, "ci95")))


def test_paired_delta_shows_every_run_and_panels_keep_their_own_axes():
    rng = np.random.default_rng(0)
    points = pd.DataFrame(
        {"gamma": np.repeat([0.0, 1.0], 5), "seed": np.tile(range(5), 2), "delta": rng.normal(0.01, 0.01, 10)}
    )
    fig = figures.paired_delta(points, x="gamma")
    runs, mean = fig.data
    assert len(runs.x) == 10 and np.allclose(sorted(runs.y), sorted(100 * points["delta"]))
    assert np.allclose(mean.y, 100 * points.groupby("gamma")["delta"].mean())
    summary = pd.DataFrame(
        {
            "metric": ["ntd", "ntd", "cmd_input", "cmd_input"],
            "gamma": [0, 1, 0, 1],
            "mean": [0.1, 0.05, 8.0, 7.0],
            "std": [0.01] * 4,
            "n": [5] * 4,
        }
    )
    panels = figures.metric_panels(summary, x="gamma")
    assert [a.text for a in panels.layout.annotations] == ["NTD (non-target divergence)", "CMD of the inputs x_a, x_b"]
    assert {trace.yaxis for trace in panels.data} == {"y", "y2"}


@pytest.mark.parametrize("setting", [None, "0"])
def test_static_export_happens_only_on_request(tmp_path, monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv(figures.STATIC_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(figures.STATIC_ENV_VAR, setting)
    written = figures.save_figure(figures.grouped_bars(summarize(table()), x="gamma"), tmp_path, "bars")
    assert set(written) == {"html"} and not (tmp_path / "bars.png").exists()
