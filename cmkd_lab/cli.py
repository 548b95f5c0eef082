"""Command line: ``python -m cmkd_lab list``, ``python -m cmkd_lab run NOTEBOOK|all`` and
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cmkd_lab",
                                     description="Run the cmkd_lab notebooks headless; add your own datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the notebooks, what each shows, and its parameters with types and defaults")
    run = commands.add_parser("run", help="execute a notebook (or 'all') with papermill")
    run.add_argument("notebook", help="file name or stem of a notebook, or 'all' for the whole sequence")
    run.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a notebook parameter (a Python literal, else a string); repeatable")
    run.add_argument("--out", default="outputs", help="output folder (default: outputs)")
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
    except (ValueError, FileNotFoundError, ImportError, NotebookFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
