"""Time the MFH full profile (Fig. 2, Fig. 3, Table 2 at the official settings) through the
same study functions the notebooks call. Target: under 2 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/mfh_full_profile.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("CMKD_LAB_QUIET", "1")

import pandas as pd  # noqa: E402

from cmkd_lab.studies.mfh import gaussian, table2  # noqa: E402


def main() -> None:
    pd.set_option("display.width", 200)
    gaussian_params = gaussian.GaussianParameters.create(profile="full")
    table2_params = table2.Table2Parameters.create(profile="full")
    timings = {}
    started = time.perf_counter()
    fig2 = gaussian.run_fig2(gaussian_params)
    timings["Fig. 2"] = time.perf_counter() - started
    started = time.perf_counter()
    fig3 = gaussian.run_fig3(gaussian_params)
    timings["Fig. 3"] = time.perf_counter() - started
    started = time.perf_counter()
    t2 = table2.run(table2_params)
    timings["Table 2"] = time.perf_counter() - started
    print(
        f"paper vs kit, tolerance ±{gaussian.PAPER_TOLERANCE} points (Fig. 2, Fig. 3), "
        f"±{table2.PAPER_TOLERANCE} points (Table 2)"
    )
    print(gaussian.fig2_paper_table(fig2.table).to_string(index=False))
    print(gaussian.fig3_paper_table(fig3.table).to_string(index=False))
    print(table2.paper_table(t2.table).to_string(index=False))
    print(table2.wide_table(t2.table).T.to_string())
    recovery = t2.table[t2.table["metric"] == "channel_recovery"].groupby("teacher_mode")["value"].agg(["mean", "min"])
    print("channel recovery:\n" + recovery.to_string())
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.1f} s")
    print(f"MFH full profile (Fig. 2 + Fig. 3 + Table 2): {sum(timings.values()):.1f} s")


if __name__ == "__main__":
    main()
