"""The kit as an application: :mod:`.cli` (``python -m cmkd_lab``), :mod:`.notebook` (notebook
parameters, headless runs), :mod:`.sweep` (grids on Dask), :mod:`.course` (instructor and student
copies), :mod:`.browser` (JupyterLab in Chromium, for tests and benchmarks), :mod:`.progress`
and :mod:`.io` (atomic writes)."""
