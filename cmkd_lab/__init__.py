"""cmkd_lab: a study kit for cross-modal knowledge distillation.

Subpackages by role: ``datasets`` (paired data), ``models`` (model specs and layers),
``losses`` (distillation losses in registries, a module per family), ``engine`` (the batched
training loop, stacks of models, registries), ``systems`` (what the engine trains: distillation,
joint, representation, DisCoM-KD, fusion), ``analysis`` (metrics, saliency, tidy results),
``report`` (plotly figures, Explore widgets, the gallery), ``app`` (the CLI, notebook
parameters and runs, sweeps, course mode) and ``studies`` (the study runner and the code of
each notebook).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``cmkd_lab.diagnose``: :func:`cmkd_lab.studies.diagnosis.diagnose.diagnose`, imported on
    first use (it brings torch; ``import cmkd_lab`` stays light)."""
    if name == "diagnose":
        from .studies.diagnosis.diagnose import diagnose

        return diagnose
    raise AttributeError(f"module 'cmkd_lab' has no attribute {name!r}")
