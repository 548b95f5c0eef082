"""Download and convert RAVDESS emotional speech: audio + face video frames.

    python data_scripts/get_ravdess.py --help     # sources, sizes and conversion options
    python data_scripts/get_ravdess.py            # download (resumable), verify, convert

The same as `python -m cmkd_lab datasets download ravdess [options]`: both run
`cmkd_lab.datasets.download.run` on the registered spec. Afterwards
`cmkd_lab.datasets.load("ravdess")` works offline. Sources, checksums and the converter live in
cmkd_lab/datasets/ravdess.py (RAVDESS).
"""

import sys

from cmkd_lab.datasets.download import DOWNLOADS, run

if __name__ == "__main__":
    sys.exit(run(DOWNLOADS.get("ravdess")))
