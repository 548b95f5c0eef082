"""Command line: ``python -m cmkd_lab list``, ``python -m cmkd_lab run NOTEBOOK|all``,
``python -m cmkd_lab sweep NOTEBOOK --grid NAME=V1,V2`` (a grid of runs on Dask) and
``python -m cmkd_lab datasets add|list|remove`` (the user's own datasets)."""

from __future__ import annotations

import argparse
import ast
import sys
import time

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
        description="Run the cmkd_lab notebooks headless, one by one or over a grid on Dask; add your own datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the notebooks, what each shows, and its parameters with types and defaults")
    run = commands.add_parser("run", help="execute a notebook (or 'all') with papermill")
    run.add_argument("notebook", help="file name or stem of a notebook, or 'all' for the whole sequence")
    run.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a notebook parameter (a Python literal, else a string); repeatable")
    run.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    sweep = commands.add_parser("sweep", help="execute a notebook over a grid of parameters, each point a task on Dask")
    sweep.add_argument("notebook", help="file name or stem of a notebook")
    sweep.add_argument("--grid", action="append", default=[], required=True, metavar="NAME=V1,V2,...",
                       help="a parameter and its values (each a Python literal, else a string); repeat for more "
                            "parameters: the sweep runs every combination")
    sweep.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    sweep.add_argument("--out", help="the sweep folder (default: outputs/sweeps/NOTEBOOK in the repository); a rerun "
                                     "skips the points finished there")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="join a running Dask cluster (e.g. tcp://host:8786) instead of starting a local one")
    where.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster (default: 2)")
    datasets = commands.add_parser("datasets", help="your own datasets, which every notebook takes by name")
    actions = datasets.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="store an .npz file's arrays as a dataset (all but labels and groups are modalities)")
    add.add_argument("name", help="the dataset's name (letters, digits, '_', '-'); not a built-in dataset's")
    add.add_argument("file", help="an .npz file of named arrays, one row per sample (numpy.savez)")
    add.add_argument("--labels", default="labels", help="the array of labels (default: labels)")
    add.add_argument("--groups", help="the array of groups (e.g. subjects) that splits keep together")
    add.add_argument("--relabel", action="store_true",
                     help="labels are any values (strings, 1..K): map them to 0..K-1, their sorted values become class names")
    add.add_argument("--description", default="", help="what the data is, for `datasets list`")
    add.add_argument("--replace", action="store_true", help="overwrite a user dataset of that name")
    actions.add_parser("list", help="every registered dataset, built-in and yours, and whether it can be loaded now")
    remove = actions.add_parser("remove", help="delete one of your datasets")
    remove.add_argument("name")
    return parser


def _datasets(args: argparse.Namespace) -> None:
    from .datasets import list_datasets, user

    if args.action == "add":
        data = user.add(args.name, args.file, labels=args.labels, groups=args.groups, relabel=args.relabel,
                        description=args.description, replace=args.replace)
        shapes = ", ".join(f"{m} {data.shape(m)}" for m in data.modality_names)
        groups = "" if data.groups is None else f", {data.summary()['n_groups']} groups"
        print(f"added {args.name!r} ({user.user_root() / args.name}): {len(data)} samples, {data.n_classes} classes"
              f"{groups}; modalities {shapes}")
        print(f"use it by name, e.g. python -m cmkd_lab run 03_ntdh_realpairs -p datasets \"['{args.name}']\"")
    elif args.action == "list":
        print(list_datasets().to_string(index=False))
        print(f"\nuser datasets folder: {user.user_root()} (set {user.ENV_VAR} to use another)")
    else:
        print(f"removed {args.name!r} ({user.remove(args.name)})")


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import run_grid

    started = time.perf_counter()
    result = run_grid(args.notebook, parse_grid(args.grid), profile=args.profile, out=args.out,
                      scheduler=args.scheduler, workers=args.workers)
    counts = result.points["status"].value_counts()
    print(f"  {counts.get('ran', 0)} ran, {counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed "
          f"in {time.perf_counter() - started:.1f} s -> {result.folder}/results.csv, summary.md", flush=True)
    for row in result.failed.itertuples():
        print(f"failed: {row.point}: {row.error}", file=sys.stderr)
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            _datasets(args)
            return 0
        if args.command == "list":
            for path in list_notebooks():
                print(f"{path.stem} — {notebook_title(path)}")
                print("".join(f"    {line}\n" for line in parameters_class(path.stem).parameter_lines()))
            return 0
        if args.command == "sweep":
            return _sweep(args)
        parameters = {name: _literal(value) for name, value in args.parameter}
        paths = list_notebooks() if args.notebook == "all" else [resolve_notebook(args.notebook)]
        if args.notebook == "all" and parameters:
            raise ValueError("-p applies to one notebook; run notebooks one by one to set parameters")
        for path in paths:
            started = time.perf_counter()
            print(f"running {path.stem} ({args.profile}) ...", flush=True)
            folder = run_notebook(path.stem, args.profile, parameters, args.out)
            print(f"  done in {time.perf_counter() - started:.1f} s -> {folder}", flush=True)
        if args.notebook == "all":
            print(f"summary: {write_summary(args.out)}")
        return 0
    except (ValueError, OSError, ImportError, NotebookFailed) as error:  # OSError: e.g. no scheduler at --scheduler
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
