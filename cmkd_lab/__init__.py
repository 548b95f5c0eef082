"""cmkd_lab: a study kit for cross-modal knowledge distillation.

Modules: ``datasets`` (paired data), ``models`` (model specs, stacked models), ``losses``
(distillation losses in a registry), ``training`` (the batched engine), ``experiment``
(teacher → student studies), ``results`` (tidy tables), ``figures`` (plotly), ``widgets``
(ipywidgets Explore sections), ``notebook`` (parameters and running notebooks).
"""

__version__ = "0.1.0"
