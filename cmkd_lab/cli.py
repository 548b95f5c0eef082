"""Command line: ``python -m cmkd_lab list`` and ``python -m cmkd_lab run NOTEBOOK|all``."""

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
    parser = argparse.ArgumentParser(prog="python -m cmkd_lab", description="Run the cmkd_lab notebooks headless.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the notebooks, what each shows, and its parameters with types and defaults")
    run = commands.add_parser("run", help="execute a notebook (or 'all') with papermill")
    run.add_argument("notebook", help="file name or stem of a notebook, or 'all' for the whole sequence")
    run.add_argument("--profile", choices=PROFILES, default="quick", help="quick (CI scale) or full (paper scale)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a notebook parameter (a Python literal, else a string); repeatable")
    run.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
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
    except (ValueError, FileNotFoundError, NotebookFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
