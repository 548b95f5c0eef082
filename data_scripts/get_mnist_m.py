"""Download and build MNIST-M as NTDH's experiment uses it: MNIST digits blended over BSDS500 crops.

    python data_scripts/get_mnist_m.py --help     # sources, sizes and conversion options
    python data_scripts/get_mnist_m.py            # download (resumable), verify, convert

The same as `python -m cmkd_lab datasets download mnist_m [options]`: both run
`cmkd_lab.datasets.download.run` on the registered spec. Afterwards
`cmkd_lab.datasets.load("mnist_m")` works offline, with the views `mnist` and `mnist_m`. Without a
network, the offline stand-in `mnist_m_procedural` (procedural backgrounds instead of BSDS500)
needs no script. Sources and the converter live in cmkd_lab/datasets/mnist_m.py (MNIST_M_DOWNLOAD).
"""

import sys

from cmkd_lab.datasets.download import DOWNLOADS, run

if __name__ == "__main__":
    sys.exit(run(DOWNLOADS.get("mnist_m")))
