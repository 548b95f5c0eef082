"""Download and convert EuroSAT-MS (Sentinel-2) paired with EuroSAT-SAR (Sentinel-1).

    python data_scripts/get_eurosat_ms_sar.py --help     # sources, sizes and conversion options
    python data_scripts/get_eurosat_ms_sar.py            # download (resumable), verify, convert

The same as `python -m cmkd_lab datasets download eurosat_ms_sar [options]`: both run
`cmkd_lab.datasets.download.run` on the registered spec. Afterwards
`cmkd_lab.datasets.load("eurosat_ms_sar")` works offline. Sources, checksums and the converter live in
cmkd_lab/datasets/eurosat_ms_sar.py (EUROSAT_MS_SAR).
"""

import sys

from cmkd_lab.datasets.download import DOWNLOADS, run

if __name__ == "__main__":
    sys.exit(run(DOWNLOADS.get("eurosat_ms_sar")))
