"""Where the time of a full-profile notebook run goes, and the ratio to a one-model-at-a-time loop.

Targets (2 CPU cores, end to end with HTML figures: kernel start, fits, figures, files):
- MFH Fig. 2 + Fig. 3 + Table 2 (``02_mfh_gaussian`` and ``02_mfh_table2``, full profile): ≤ 30 s;
- the NTDH 100-run Gaussian sweep (``03_ntdh_gaussian``, full profile): ≤ 30 s.

Each notebook runs twice through ``python -m cmkd_lab run`` machinery: with PNG export and
without it (the difference is the export's cost). Its ``run.json`` gives the batched fits' wall
time per method; the rest is the kernel, imports, data, metrics, figures, exercises and files.
The baseline is a plain PyTorch loop, one linear model at a time (as the official scripts
train), timed on a few models of the same shape and scaled to the number of models the notebook
trains. The floor column times each linear fit, as the kit now merges them (Fig. 2 and Fig. 3's
teachers in one fit, every Table 2 student in one fit…), as hand-batched tensor code (no vmap,
no per-copy modules, the fastest layouts): what PyTorch's CPU kernels allow on this machine.
The official scripts' own wall time is printed beside, as recorded when they were run on this
kind of machine (MFH's gauss scripts about 20 min, NTDH's about 10 min); it is not re-measured.

    python benchmarks/speed_breakdown.py [--only mfh|ntdh] [--loop-models 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from cmkd_lab.app.notebook import run_notebook

TARGETS = {"mfh": ["02_mfh_gaussian", "02_mfh_table2"], "ntdh": ["03_ntdh_gaussian"]}
TARGET_SECONDS = 30.0
OFFICIAL_SCRIPT_SECONDS = {"mfh": 20 * 60.0, "ntdh": 10 * 60.0}  # recorded, not measured by this script


def timed_run(stem: str, out: Path, static: bool) -> tuple[float, dict]:
    os.environ["CMKD_LAB_STATIC_FIGURES"] = "1" if static else "0"
    started = time.perf_counter()
    folder = run_notebook(stem, "full", {"device": "cpu"}, out / ("static" if static else "html"))
    return time.perf_counter() - started, json.loads((folder / "run.json").read_text())


def plain_loop_seconds(n_features: int, n_train: int, epochs: int, models: int) -> float:
    """Seconds per model of a plain loop: one linear model, full-batch SGD lr 0.1, CE."""
    torch.set_num_threads(1)
    x, y = torch.randn(n_train, n_features), torch.randint(0, 2, (n_train,))
    started = time.perf_counter()
    for seed in range(models):
        torch.manual_seed(seed)
        model = nn.Linear(n_features, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(epochs):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return (time.perf_counter() - started) / models


FLOOR_STEPS = 50  # steps timed per fit for the floor, scaled to its epochs


def floor_seconds(fit_record: dict) -> float | None:
    """The fit's time at the floor of PyTorch's CPU kernels: the same copies, rows, widths and
    loss terms as one hand-batched linear step (no vmap, no per-copy modules; W xᵀ with xᵀ
    contiguous, softmaxes over a contiguous class axis), timed and scaled to its epochs. ``None``
    for fits that are not of one linear model (Algorithm 1's joint pair)."""
    system = fit_record["system"]
    if system.get("system") != "distillation" or system["spec"]["kind"] != "linear":
        return None
    epochs = fit_record["train_config"]["epochs"]
    # a fit logged in parts (several methods or studies): its first part names every part's copies
    copies = sum(fit_record["copies"].values()) if "copies" in fit_record else fit_record["n_models"]
    (width,), classes = system["spec"]["input_shape"], system["spec"]["n_classes"]
    rows = fit_record["n_samples"]
    kd = system["loss"]["loss"] == "kd"
    torch.set_num_threads(fit_record.get("threads") or 1)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(copies, width, rows, generator=generator)
    labels = torch.randint(0, classes, (copies, 1, rows), generator=generator)
    teacher = torch.randn(copies, classes, rows, generator=generator).log_softmax(1)
    weight = torch.zeros(copies, classes, width, requires_grad=True)
    bias = torch.zeros(copies, classes, 1, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=0.1)

    def step():
        logits = torch.baddbmm(bias, weight, x_t)
        loss = -logits.log_softmax(1).gather(1, labels).mean() * copies
        if kd:
            loss = loss + (teacher.exp() * (teacher - logits.log_softmax(1))).sum(1).mean() * copies
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(FLOOR_STEPS):
        step()
    return (time.perf_counter() - started) / FLOOR_STEPS * epochs


def breakdown(name: str, stems: list[str], out: Path, loop_models: int) -> pd.DataFrame:
    rows, n_models, total, total_html, floor_total = [], 0, 0.0, 0.0, 0.0
    for stem in stems:
        with_png, record = timed_run(stem, out, static=True)
        without_png, _ = timed_run(stem, out, static=False)
        fits = pd.DataFrame(
            [
                {
                    "method": f["method"] + (f" (in the {f['in_fit_of']} fit)" if "in_fit_of" in f else ""),
                    "models": f["n_models"],
                    "epochs": f["train_config"]["epochs"],
                    "seconds": f["wall_time_s"],
                    "floor": floor_seconds(f) if "in_fit_of" not in f else 0.0,
                }
                for f in record["fits"]
            ]
        )
        per_method = fits.groupby("method", sort=False).agg(
            fits=("seconds", "size"), models=("models", "sum"), seconds=("seconds", "sum"), floor=("floor", "sum")
        )
        for method, row in per_method.iterrows():
            rows.append(
                {
                    "notebook": stem,
                    "part": f"fits: {method}",
                    "fits": row["fits"],
                    "models": row["models"],
                    "seconds": row["seconds"],
                    "floor": row["floor"] or None,
                }
            )
        floor_total += fits["floor"].fillna(fits["seconds"]).sum()
        study_other = record["wall_time_s"] - fits["seconds"].sum()
        rows.append({"notebook": stem, "part": "study, outside fits (data, metrics)", "seconds": study_other})
        rows.append(
            {
                "notebook": stem,
                "part": "kernel, imports, figures, exercises, files",
                "seconds": without_png - record["wall_time_s"],
            }
        )
        rows.append({"notebook": stem, "part": "PNG export", "seconds": with_png - without_png})
        rows.append({"notebook": stem, "part": "end to end (with PNG)", "seconds": with_png})
        n_models += int(fits["models"].sum())
        total, total_html = total + with_png, total_html + without_png
    epochs = 1000
    loop = plain_loop_seconds(25, 200, epochs, loop_models) * n_models
    print(
        f"\n{' + '.join(stems)}: {total_html:.1f} s end to end with HTML figures "
        f"(target ≤ {TARGET_SECONDS:.0f} s: ratio {total_html / TARGET_SECONDS:.2f}), {total:.1f} s with PNG export "
        f"too; {n_models} models"
    )
    print(
        f"a plain one-model-at-a-time loop ({epochs} epochs, timed on {loop_models} models, scaled): "
        f"{loop:.0f} s for the same models, {loop / total_html:.0f}x the kit's end-to-end time"
    )
    fits_total = sum(r["seconds"] for r in rows if str(r["part"]).startswith("fits:"))
    print(
        f"the fits: {fits_total:.1f} s; at the floor of PyTorch's CPU kernels (hand-batched linear steps, no vmap; "
        f"fits that are not one linear model counted as measured): {floor_total:.1f} s "
        f"(fits / floor = {fits_total / floor_total:.2f})"
    )
    official = OFFICIAL_SCRIPT_SECONDS[name]
    print(
        f"the official scripts (recorded: {official / 60:.0f} min) / the kit's end to end: "
        f"{official / total_html:.0f}x; "
        f"the kit (HTML figures) / the 30 s target: {total_html / TARGET_SECONDS:.2f}"
    )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(TARGETS), help="one target (default: both)")
    parser.add_argument("--loop-models", type=int, default=3, help="models the plain loop is timed on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cmkd_lab_speed_") as out:
        for name in [args.only] if args.only else TARGETS:
            table = breakdown(name, TARGETS[name], Path(out), args.loop_models)
            with pd.option_context("display.width", 200):
                print(table.round(2).to_string(index=False, na_rep=""))


if __name__ == "__main__":
    main()
