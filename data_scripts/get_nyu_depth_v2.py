"""Download and convert NYU Depth V2, labeled subset: aligned RGB + depth frames, scene types.

    python data_scripts/get_nyu_depth_v2.py --help     # sources, sizes and conversion options
    python data_scripts/get_nyu_depth_v2.py            # download (resumable), verify, convert

The same as `python -m cmkd_lab datasets download nyu_depth_v2 [options]`: both run
`cmkd_lab.datasets.download.run` on the registered spec. Afterwards
`cmkd_lab.datasets.load("nyu_depth_v2")` works offline. Sources, checksums and the converter live in
cmkd_lab/datasets/nyu_depth_v2.py (NYU_DEPTH_V2).
"""

import sys

from cmkd_lab.datasets.download import DOWNLOADS, run

if __name__ == "__main__":
    sys.exit(run(DOWNLOADS.get("nyu_depth_v2")))
