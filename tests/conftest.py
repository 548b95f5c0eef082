"""Shared fixtures: notebooks executed once per test session in the quick profile."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from cmkd_lab.analysis.results import load_results
from cmkd_lab.app.notebook import run_notebook

os.environ.setdefault("CMKD_LAB_QUIET", "1")
# Notebook runs in the suite write HTML figures only: PNG/SVG export through Chromium costs more
# than the fits (13 of 42 s for 02_mfh_gaussian); test_results_figures tests the export itself.
os.environ.setdefault("CMKD_LAB_STATIC_FIGURES", "0")


class ExecutedNotebooks:
    """Runs each notebook at most once per session (quick profile) and hands back its folder."""

    def __init__(self, root: Path):
        self.root = root
        self.folders: dict[str, Path] = {}

    def folder(self, stem: str) -> Path:
        if stem not in self.folders:
            self.folders[stem] = run_notebook(stem, "quick", {}, self.root)
        return self.folders[stem]

    def results(self, stem: str) -> pd.DataFrame:
        return load_results(self.folder(stem))


@pytest.fixture(scope="session")
def executed(tmp_path_factory) -> ExecutedNotebooks:
    return ExecutedNotebooks(tmp_path_factory.mktemp("executed"))
