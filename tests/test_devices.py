"""The GPU path: a sweep trained on CUDA ends where the same sweep on the CPU ends.

Runs only where CUDA exists (it skips with the reason elsewhere; CI has no GPU). Every notebook
takes ``device`` and every fit records it: ``tests/test_notebook_parameters.py`` checks that on
the CPU for all notebooks.
"""

from __future__ import annotations

import pytest
import torch

from cmkd_lab.studies.mfh import gaussian

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_cpu_and_cuda_give_the_same_test_accuracies_over_a_sweep():
    """MFH Fig. 2 at 6 γ × 5 runs, teacher / No-KD / KD: each model's test accuracy within 0.5
    points on the two devices (float rounding differs, so a few test samples may flip)."""
    tables = {}
    for device in ("cpu", "cuda"):
        p = gaussian.GaussianParameters.create(n_runs=5, epochs=300, device=device)
        table = gaussian.run_fig2(p, progress=False).table
        tables[device] = table.set_index(["method", "gamma", "seed"])["value"].sort_index()
    assert tables["cpu"].index.equals(tables["cuda"].index)
    assert (tables["cpu"] - tables["cuda"]).abs().max() <= 0.005
