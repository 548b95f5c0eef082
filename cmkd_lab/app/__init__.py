"""The kit as an application: :mod:`.cli` (``python -m cmkd_lab``), :mod:`.notebook` (notebook
parameters, headless runs), :mod:`.sweep` (grids on Dask), :mod:`.course` (instructor and student
copies), :mod:`.browser` (JupyterLab in Chromium, for tests and benchmarks), :mod:`.progress`
and :mod:`.io` (atomic writes)."""

import sys

# jsonschema (under nbformat and papermill) imports rfc3987_syntax where it is installed, only to
# check the "iri" string format, which no notebook schema uses; that import compiles a grammar
# (1.5 s on two cores, on every notebook run). Marking it absent makes jsonschema skip that check.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)
