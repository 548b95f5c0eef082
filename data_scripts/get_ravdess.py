"""Download and convert RAVDESS emotional speech: audio + face video frames.

    python data_scripts/get_ravdess.py --help     # sources, sizes and conversion options
    python data_scripts/get_ravdess.py            # download (resumable), verify, convert

Afterwards `cmkd_lab.datasets.load("ravdess")` works offline. Sources, checksums and the converter
live in cmkd_lab/datasets/remote.py (RAVDESS).
"""

import sys

from cmkd_lab.datasets.download import run
from cmkd_lab.datasets.remote import RAVDESS

if __name__ == "__main__":
    sys.exit(run(RAVDESS))
