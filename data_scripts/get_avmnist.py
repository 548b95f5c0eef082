"""Download and convert AV-MNIST: MNIST digits paired with Free Spoken Digit Dataset recordings.

    python data_scripts/get_avmnist.py --help     # sources, sizes and conversion options
    python data_scripts/get_avmnist.py            # download (resumable), verify, convert

The same as `python -m cmkd_lab datasets download avmnist [options]`: both run
`cmkd_lab.datasets.download.run` on the registered spec. Afterwards
`cmkd_lab.datasets.load("avmnist")` works offline. Sources, checksums and the converter live in
cmkd_lab/datasets/avmnist.py (AVMNIST).
"""

import sys

from cmkd_lab.datasets.download import DOWNLOADS, run

if __name__ == "__main__":
    sys.exit(run(DOWNLOADS.get("avmnist")))
