"""Command line: ``python -m cmkd_lab list``, ``python -m cmkd_lab run NOTEBOOK|all``,
``python -m cmkd_lab sweep NOTEBOOK --grid NAME=V1,V2`` (a grid of runs on Dask),
``python -m cmkd_lab datasets add|list|remove`` (the user's own datasets),
``python -m cmkd_lab datasets download NAME`` (fetch and convert one of the papers' datasets),
``python -m cmkd_lab diagnose DATASET --pair A>B`` (will KD help on this pair? every paper's signal
against the benchmark of 07_when_does_cmkd_help),
``python -m cmkd_lab gallery`` (a static site of the executed notebooks),
``python -m cmkd_lab docs`` (the API reference, from the docstrings) and
``python -m cmkd_lab course build`` (instructor and student copies)."""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

import pandas as pd

from ..report.figures import STATIC_ENV_VAR
from .notebook import (
    PROFILES,
    NotebookFailed,
    list_notebooks,
    notebook_title,
    parameters_class,
    resolve_notebook,
    run_notebook,
    write_summary,
)


def _literal(text: str):
    """``-p n_runs 5`` → 5, ``-p gammas [0,1]`` → [0, 1]; anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["epochs=100,200", "overlaps=[0,1],[2]"]`` → ``{"epochs": [100, 200], "overlaps": [[0, 1], [2]]}``:
    values split at the commas outside brackets and quotes, each read like a ``-p`` value."""
    grid = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        name = name.strip()
        if not name or not values.strip():
            raise ValueError(f"--grid takes NAME=V1,V2,...; got {spec!r}")
        if name in grid:
            raise ValueError(f"--grid {name} is given twice; list all its values in one --grid")
        grid[name] = [_literal(value.strip()) for value in _split_top_level(values)]
    return grid


def _split_top_level(text: str) -> list[str]:
    """``"[0,1],'a,b',3"`` → ``["[0,1]", "'a,b'", "3"]``."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if any(not part.strip() for part in parts):
        raise ValueError(f"an empty value in {text!r}; separate values with single commas")
    return parts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cmkd_lab",
        description="Run the cmkd_lab notebooks headless, one by one or over a grid on Dask; add your own datasets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the notebooks, what each shows, and its parameters with types and defaults")
    run = commands.add_parser("run", help="execute a notebook (or 'all') with papermill")
    run.add_argument("notebook", help="file name or stem of a notebook, or 'all' for the whole sequence")
    run.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a notebook parameter (a Python literal, else a string); repeatable",
    )
    run.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    run.add_argument(
        "--static",
        action="store_true",
        help="also export every figure as PNG through a Chromium (default: HTML figures only)",
    )
    sweep = commands.add_parser("sweep", help="execute a notebook over a grid of parameters, each point a task on Dask")
    sweep.add_argument("notebook", help="file name or stem of a notebook")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="NAME=V1,V2,...",
        help="a parameter and its values (each a Python literal, else a string); repeat for more "
        "parameters: the sweep runs every combination",
    )
    sweep.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    sweep.add_argument(
        "--out",
        help="the sweep folder (default: outputs/sweeps/NOTEBOOK in the repository); a rerun "
        "skips the points finished there",
    )
    where = sweep.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="join a running Dask cluster (e.g. tcp://host:8786) instead of starting a local one",
    )
    where.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster (default: 2)")
    datasets = commands.add_parser("datasets", help="your own datasets, which every notebook takes by name")
    actions = datasets.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add", help="store an .npz file's arrays as a dataset (all but labels and groups are modalities)"
    )
    add.add_argument("name", help="the dataset's name (letters, digits, '_', '-'); not a built-in dataset's")
    add.add_argument("file", help="an .npz file of named arrays, one row per sample (numpy.savez)")
    add.add_argument("--labels", default="labels", help="the array of labels (default: labels)")
    add.add_argument("--groups", help="the array of groups (e.g. subjects) that splits keep together")
    add.add_argument(
        "--relabel",
        action="store_true",
        help="labels are any values (strings, 1..K): map them to 0..K-1, their sorted values become class names",
    )
    add.add_argument("--description", default="", help="what the data is, for `datasets list`")
    add.add_argument("--replace", action="store_true", help="overwrite a user dataset of that name")
    actions.add_parser("list", help="every registered dataset, built-in and yours, and whether it can be loaded now")
    remove = actions.add_parser("remove", help="delete one of your datasets")
    remove.add_argument("name")
    download = actions.add_parser(
        "download",
        help="download and convert one of the papers' datasets (network needed; the same as its "
        "data_scripts/get_NAME.py); `datasets download NAME --help` lists its sources and options",
    )
    download.add_argument("name", help="the dataset, as `datasets list` names it (kind: download)")
    download.add_argument("options", nargs=argparse.REMAINDER, help="passed on to the download (see NAME --help)")
    diagnose = commands.add_parser(
        "diagnose",
        help="will cross-modal KD help on a pair? its signals, where they sit among the benchmark's pairs, "
        "and the predicted outcome with its held-out reliability",
    )
    diagnose.add_argument("dataset", help="a registered dataset (`datasets list`; yours after `datasets add`)")
    diagnose.add_argument("--pair", required=True, metavar="SRC>TGT", help="teacher modality > student modality")
    diagnose.add_argument(
        "--benchmark",
        help="a run folder of 07_when_does_cmkd_help (or its results.csv); default outputs/07_when_does_cmkd_help",
    )
    diagnose.add_argument("--method", default="kd", help="the method whose outcome is predicted (default: kd)")
    diagnose.add_argument(
        "--measure", action="store_true", help="also train teacher, No-KD and the methods, and report the measured Δ"
    )
    diagnose.add_argument("--profile", choices=PROFILES, default="quick", help="the probe's settings (default: quick)")
    diagnose.add_argument("--runs", type=int, help="seeds (default: the profile's)")
    gallery = commands.add_parser("gallery", help="build a static site of the executed notebooks, figures and verdicts")
    gallery.add_argument("--outputs", default="outputs", help="where `run` wrote the notebooks (default: outputs)")
    gallery.add_argument("--out", default="site", help="the site folder (default: site)")
    docs = commands.add_parser("docs", help="write the API reference (HTML from the docstrings, by pdoc) into OUT/api/")
    docs.add_argument("--out", default="site", help="the site folder (default: site)")
    course = commands.add_parser("course", help="teaching: instructor and student copies of the notebooks")
    course_actions = course.add_subparsers(dest="action", required=True)
    course_build = course_actions.add_parser(
        "build",
        help="write DIR/instructor/ (with solutions) and DIR/student/ (solutions replaced by prompts), "
        "both with nbgrader cell metadata",
    )
    course_build.add_argument("notebooks", nargs="*", help="notebook names or stems (default: all)")
    course_build.add_argument("--out", required=True, help="the course folder")
    return parser


def _datasets(args: argparse.Namespace) -> int:
    from ..datasets import download, list_datasets, user

    if args.action == "download":
        spec = download.DOWNLOADS.get(args.name)  # an unknown name: a ValueError listing the valid ones
        return download.run(spec, args.options, prog=f"python -m cmkd_lab datasets download {args.name}")
    if args.action == "add":
        data = user.add(
            args.name,
            args.file,
            labels=args.labels,
            groups=args.groups,
            relabel=args.relabel,
            description=args.description,
            replace=args.replace,
        )
        shapes = ", ".join(f"{m} {data.shape(m)}" for m in data.modality_names)
        groups = "" if data.groups is None else f", {data.summary()['n_groups']} groups"
        print(
            f"added {args.name!r} ({user.user_root() / args.name}): {len(data)} samples, {data.n_classes} classes"
            f"{groups}; modalities {shapes}"
        )
        print(f"use it by name, e.g. python -m cmkd_lab run 03_ntdh_realpairs -p datasets \"['{args.name}']\"")
    elif args.action == "list":
        print(list_datasets().to_string(index=False))
        print(f"\nuser datasets folder: {user.user_root()} (set {user.ENV_VAR} to use another)")
    else:
        print(f"removed {args.name!r} ({user.remove(args.name)})")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import run_grid

    started = time.perf_counter()
    result = run_grid(
        args.notebook,
        parse_grid(args.grid),
        profile=args.profile,
        out=args.out,
        scheduler=args.scheduler,
        workers=args.workers,
    )
    counts = result.points["status"].value_counts()
    print(
        f"  {counts.get('ran', 0)} ran, {counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed "
        f"in {time.perf_counter() - started:.1f} s -> {result.folder}/results.csv, summary.md",
        flush=True,
    )
    for row in result.failed.itertuples():
        print(f"failed: {row.point}: {row.error}", file=sys.stderr)
    return 0 if result.ok else 1


def _run(args: argparse.Namespace) -> int:
    """Run one notebook or all, with a line per notebook and a final table of what went where."""
    parameters = {name: _literal(value) for name, value in args.parameter}
    paths = list_notebooks() if args.notebook == "all" else [resolve_notebook(args.notebook)]
    if args.notebook == "all" and parameters:
        raise ValueError("-p applies to one notebook; run notebooks one by one to set parameters")
    if args.static:
        os.environ[STATIC_ENV_VAR] = "1"  # the kernels inherit it
    rows = []
    for number, path in enumerate(paths, 1):
        started = time.perf_counter()
        print(f"[{number}/{len(paths)}] running {path.stem} ({args.profile}) ...", flush=True)
        try:
            folder = run_notebook(path.stem, args.profile, parameters, args.out)
        except NotebookFailed as error:
            print(f"  FAILED: {error}", file=sys.stderr, flush=True)
            rows.append(
                {
                    "notebook": path.stem,
                    "status": "failed",
                    "seconds": time.perf_counter() - started,
                    "folder": str(Path(args.out).resolve() / path.stem),
                    "written": "see the .failed.ipynb",
                }
            )
            continue
        seconds = time.perf_counter() - started
        print(f"  done in {seconds:.1f} s -> {folder}", flush=True)
        rows.append(
            {
                "notebook": path.stem,
                "status": "ok",
                "seconds": seconds,
                "folder": str(folder),
                "written": written_files(folder),
            }
        )
    if args.notebook == "all" and any(row["status"] == "ok" for row in rows):
        print(f"summary: {write_summary(args.out)}")
    print("\n" + pd.DataFrame(rows).round({"seconds": 1}).to_string(index=False))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


def written_files(folder: Path) -> str:
    """``"notebook, 5 figures (html, png), results.csv, run.json"``: what a run left in its folder."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    figures = {p.rsplit(".", 1)[0] for p in names if p.endswith(".html")}
    kinds = sorted({p.rsplit(".", 1)[1] for p in names if p.rsplit(".", 1)[0] in figures})
    parts = ["notebook" if f"{folder.name}.ipynb" in names else "no notebook"]
    if figures:
        parts.append(f"{len(figures)} figure{'s' * (len(figures) != 1)} ({', '.join(kinds)})")
    parts += [name for name in ("results.csv", "claims.csv", "run.json") if name in names]
    return ", ".join(parts)


def _diagnose(args: argparse.Namespace) -> int:
    from ..studies.diagnosis.diagnose import diagnose

    started = time.perf_counter()
    result = diagnose(
        args.dataset,
        args.pair,
        benchmark=args.benchmark,
        method=args.method,
        measure_gain=args.measure,
        profile=args.profile,
        n_runs=args.runs,
        log=lambda line: print(line, flush=True),
    )
    print("\n".join(result.lines()))
    print(f"diagnose: done in {time.perf_counter() - started:.1f} s")
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from ..report.gallery import build

    pages = build(args.outputs, args.out)
    for page in pages:
        print(
            f"{page.stem}: {page.verdict}; {len(page.exports)} exports -> {Path(args.out) / page.stem / 'index.html'}"
        )
    print(f"gallery: {Path(args.out).resolve() / 'index.html'} ({len(pages)} notebooks)")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from ..report.api_docs import build

    print(f"API reference: {build(args.out).resolve()}")
    return 0


def _course(args: argparse.Namespace) -> int:
    from .course import build

    written = build(args.out, args.notebooks or None)
    for kind, paths in written.items():
        print(f"{kind}: {len(paths)} notebooks in {Path(args.out).resolve() / kind}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            return _datasets(args)
        if args.command == "list":
            for path in list_notebooks():
                print(f"{path.stem} — {notebook_title(path)}")
                print("".join(f"    {line}\n" for line in parameters_class(path.stem).parameter_lines()))
            return 0
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "gallery":
            return _gallery(args)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "docs":
            return _docs(args)
        if args.command == "course":
            return _course(args)
        return _run(args)
    except (ValueError, OSError, ImportError, NotebookFailed) as error:  # OSError: e.g. no scheduler at --scheduler
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
