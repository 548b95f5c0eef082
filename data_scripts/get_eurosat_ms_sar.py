"""Download and convert EuroSAT-MS (Sentinel-2) paired with EuroSAT-SAR (Sentinel-1).

    python data_scripts/get_eurosat_ms_sar.py --help     # sources, sizes and conversion options
    python data_scripts/get_eurosat_ms_sar.py            # download (resumable), verify, convert

Afterwards `cmkd_lab.datasets.load("eurosat_ms_sar")` works offline. Sources, checksums and the converter
live in cmkd_lab/datasets/remote.py (EUROSAT_MS_SAR).
"""

import sys

from cmkd_lab.datasets.download import run
from cmkd_lab.datasets.remote import EUROSAT_MS_SAR

if __name__ == "__main__":
    sys.exit(run(EUROSAT_MS_SAR))
