"""Download and convert NYU Depth V2, labeled subset: aligned RGB + depth frames, scene types.

    python data_scripts/get_nyu_depth_v2.py --help     # sources, sizes and conversion options
    python data_scripts/get_nyu_depth_v2.py            # download (resumable), verify, convert

Afterwards `cmkd_lab.datasets.load("nyu_depth_v2")` works offline. Sources, checksums and the converter
live in cmkd_lab/datasets/remote.py (NYU_DEPTH_V2).
"""

import sys

from cmkd_lab.datasets.download import run
from cmkd_lab.datasets.remote import NYU_DEPTH_V2

if __name__ == "__main__":
    sys.exit(run(NYU_DEPTH_V2))
