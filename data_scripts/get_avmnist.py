"""Download and convert AV-MNIST: MNIST digits paired with Free Spoken Digit Dataset recordings.

    python data_scripts/get_avmnist.py --help     # sources, sizes and conversion options
    python data_scripts/get_avmnist.py            # download (resumable), verify, convert

Afterwards `cmkd_lab.datasets.load("avmnist")` works offline. Sources, checksums and the converter
live in cmkd_lab/datasets/remote.py (AVMNIST).
"""

import sys

from cmkd_lab.datasets.download import run
from cmkd_lab.datasets.remote import AVMNIST

if __name__ == "__main__":
    sys.exit(run(AVMNIST))
