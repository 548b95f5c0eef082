"""Time the MFH full profile (Fig. 2, Fig. 3, Table 2 at the official settings) through the
same study functions the notebooks call. Target: under 2 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/mfh_full_profile.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("CMKD_LAB_QUIET", "1")

import pandas as pd  # noqa: E402

from cmkd_lab.studies import mfh  # noqa: E402


def main() -> None:
    pd.set_option("display.width", 200)
    gaussian = mfh.GaussianParameters.create(profile="full")
    table2 = mfh.Table2Parameters.create(profile="full")
    timings = {}
    started = time.perf_counter()
    fig2 = mfh.run_fig2(gaussian)
    timings["Fig. 2"] = time.perf_counter() - started
    started = time.perf_counter()
    fig3 = mfh.run_fig3(gaussian)
    timings["Fig. 3"] = time.perf_counter() - started
    started = time.perf_counter()
    t2 = mfh.run_table2(table2)
    timings["Table 2"] = time.perf_counter() - started
    print(f"paper vs kit, tolerance ±{mfh.PAPER_TOLERANCE} points (Fig. 2, Fig. 3), ±3 points (Table 2)")
    print(mfh.paper_table(fig2.table, mfh.FIG2_PAPER, ["gamma", "method"]).to_string(index=False))
    print(mfh.paper_table(fig3.table, mfh.FIG3_PAPER, ["alpha", "method"]).to_string(index=False))
    print(mfh.table2_paper_table(t2.table).to_string(index=False))
    print(mfh.table2_wide(t2.table).T.to_string())
    recovery = t2.table[t2.table["metric"] == "channel_recovery"].groupby("teacher_mode")["value"].agg(["mean", "min"])
    print("channel recovery:\n" + recovery.to_string())
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.1f} s")
    print(f"MFH full profile (Fig. 2 + Fig. 3 + Table 2): {sum(timings.values()):.1f} s")


if __name__ == "__main__":
    main()
