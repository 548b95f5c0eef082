"""Stacked fits on the CPU and, where a GPU exists, on CUDA: MFH Fig. 2 (60 linear teachers,
No-KD and KD students, 1000 full-batch epochs), the NTDH 100-run Gaussian sweep (binary and
4-class, 1000 epochs) and a stacked CNN study (DS-CMKD's quick severity study: BatchNorm 2-D CNNs).
Prints the seconds per device and the CPU / CUDA ratio; without CUDA it says so.

    .venv/bin/python benchmarks/devices.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("CMKD_LAB_QUIET", "1")

import torch  # noqa: E402

from cmkd_lab.studies.ds_cmkd import study as ds  # noqa: E402
from cmkd_lab.studies.mfh import gaussian  # noqa: E402
from cmkd_lab.studies.ntdh import gaussian as ntdh  # noqa: E402

STUDIES = {
    "MFH Fig. 2 (full profile)": lambda device: gaussian.run_fig2(
        gaussian.GaussianParameters.create(profile="full", device=device)
    ),
    "NTDH Gaussian sweep (full profile, 100 runs)": lambda device: ntdh.run(
        ntdh.GaussianParameters.create(profile="full", device=device)
    ),
    "DS-CMKD severity study (quick profile, 2-D CNNs)": lambda device: ds.run(ds.DSParameters.create(device=device)),
}


def seconds(run, device: str) -> float:
    started = time.perf_counter()
    run(device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name, run in STUDIES.items():
        times = {device: seconds(run, device) for device in devices}
        line = f"{name}: cpu {times['cpu']:.1f} s"
        if "cuda" in times:
            line += f", cuda {times['cuda']:.1f} s, cpu / cuda = {times['cpu'] / times['cuda']:.1f}x"
        else:
            line += "; cuda: not measured, no GPU here"
        print(line, flush=True)


if __name__ == "__main__":
    main()
