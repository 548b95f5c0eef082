"""Notebook parameters and running notebooks headless.

Each notebook has one cell tagged ``parameters`` holding literals; the next cell builds its
parameters object (a dataclass from :mod:`cmkd_lab.studies`) with ``from_namespace(globals())``,
which checks types and choices and fills the values left at ``None`` from the chosen profile
(``quick`` for CI, ``full`` for paper scale). The same dataclass serves the Python API, the CLI
and papermill: a class names its notebook (``notebook = "<stem>"``), which registers it, so the
CLI checks ``-p`` values before any kernel starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ..analysis.results import load_results, summarize
from ..engine import DEVICES
from ..engine.registry import Registry
from .io import atomic_path, write_text

PROFILES = ("quick", "full")
BASE_CHOICES = {"device": DEVICES}  # what every notebook's parameter class checks, whatever its own choices
REPO_ROOT = Path(__file__).resolve().parents[2]
# the kernel's own log at ERROR: its start-up warning about plain TCP on localhost would print
# once per notebook (the cells' warnings still reach their outputs)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
_PARAMETER_CLASSES: Registry[type[NotebookParameters]] = Registry("notebook parameter class")


@dataclasses.dataclass(frozen=True)
class NotebookParameters:
    """Parameters every notebook has. Subclasses add fields; a field left at ``None`` takes
    its value from ``profile_defaults[profile]`` (and takes the new profile's in a copy made
    with :meth:`replace` ``(profile=...)``)."""

    profile: str = "quick"
    interactive: bool = False
    output_dir: str | None = None
    device: str = "auto"  # where every fit runs: "auto" (CUDA when present), "cpu" or "cuda"

    profile_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {"quick": {}, "full": {}}
    # name -> the allowed values, or a function returning them when they can grow (registered datasets)
    choices: ClassVar[Mapping[str, Sequence | Callable[[], Sequence]]] = {}
    notebook: ClassVar[str | None] = None  # the stem of the notebook these parameters belong to

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "notebook" in vars(cls):  # set on this class, not inherited from a registered one
            _PARAMETER_CLASSES.register(cls.notebook)(cls)

    @classmethod
    def parameter_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parameter_lines(cls) -> list[str]:
        """``name: type = default`` per parameter, with the profile values of a ``None`` default."""
        hints = typing.get_type_hints(cls)
        lines = []
        for name in cls.parameter_names():
            default = _default(cls, name)
            line = f"{name}: {_describe(hints[name])} = {default!r}"
            by_profile = [
                f"{p} {cls.profile_defaults[p][name]!r}" for p in PROFILES if name in cls.profile_defaults.get(p, {})
            ]
            if default is None and by_profile:
                line += f" ({', '.join(by_profile)})"
            lines.append(line)
        return lines

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> NotebookParameters:
        """Take this class's fields from a notebook's ``globals()``; ignore everything else."""
        return cls.create(**{name: namespace[name] for name in cls.parameter_names() if name in namespace})

    @classmethod
    def create(cls, **values: Any) -> NotebookParameters:
        """Validate names, types and choices, then resolve ``None`` fields from the profile."""
        valid = cls.parameter_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise cls._invalid(f"unknown parameter(s) {unknown}")
        profile = values.get("profile", "quick")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
        hints = typing.get_type_hints(cls)
        resolved, from_profile = {}, set()
        for name in valid:
            value = values.get(name, _default(cls, name))
            if value is None and name in cls.profile_defaults.get(profile, {}):
                value = cls.profile_defaults[profile][name]
                from_profile.add(name)
            resolved[name] = _accepts(value, hints[name])
            if resolved[name] is _REJECTED:
                raise cls._invalid(
                    f"parameter {name!r} must be {_describe(hints[name])}, got {value!r} ({type(value).__name__})"
                )
            allowed = cls.choices.get(name, BASE_CHOICES.get(name))
            if callable(allowed):
                allowed = allowed()
            if allowed is not None:
                chosen = resolved[name] if isinstance(resolved[name], (list, tuple)) else [resolved[name]]
                bad = [v for v in chosen if v not in allowed]
                if bad:
                    raise cls._invalid(
                        f"parameter {name!r}: {bad} not allowed; valid values: {', '.join(map(str, allowed))}"
                    )
        parameters = cls(**resolved)
        object.__setattr__(parameters, "_from_profile", frozenset(from_profile))  # what replace() resolves anew
        return parameters

    @classmethod
    def _invalid(cls, message: str) -> ValueError:
        """An error that ends with every valid parameter, its type and default."""
        listing = "\n  ".join(cls.parameter_lines())
        return ValueError(f"{message}\nvalid parameters of {cls.notebook or cls.__name__}:\n  {listing}")

    def output_path(self, stem: str) -> Path:
        """Where this notebook writes: ``output_dir`` or ``outputs/<stem>`` under the repository."""
        path = Path(self.output_dir) if self.output_dir else REPO_ROOT / "outputs" / stem
        path.mkdir(parents=True, exist_ok=True)
        return path

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> NotebookParameters:
        """A validated copy with ``changes`` applied (e.g. the Explore section's smaller settings).
        Values this object took from its profile are taken again from the copy's profile, so
        ``replace(profile="full")`` gives the full profile's values where none was given."""
        from_profile = {name: None for name in getattr(self, "_from_profile", ())}
        return type(self).create(**{**self.as_dict(), **from_profile, **changes})


def _default(cls, name: str):
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


_REJECTED = object()


def _accepts(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` takes it (ints pass as floats, lists as tuples), or ``_REJECTED``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            accepted = _accepts(value, option)
            if accepted is not _REJECTED:
                return accepted
        return _REJECTED
    if hint is type(None):
        return None if value is None else _REJECTED
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _REJECTED
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        items = [_accepts(v, item_hint) for v in value]
        return _REJECTED if any(i is _REJECTED for i in items) else tuple(items)
    if hint is Any:
        return value
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _REJECTED
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _REJECTED
    return value if isinstance(value, hint) else _REJECTED


def _describe(hint: Any) -> str:
    """A type hint as a class spells it: ``int | None``, ``tuple[str, ...]``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(map(_describe, args))
    if origin is not None:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _describe(a) for a in args)}]"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


# ----------------------------------------------------------------------------- running notebooks
def list_notebooks() -> list[Path]:
    """The notebook sequence, in order of file name."""
    return sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))


def resolve_notebook(name: str) -> Path:
    """A notebook by file name or stem (``00_quickstart`` or ``00_quickstart.ipynb``)."""
    for path in list_notebooks():
        if name in (path.name, path.stem):
            return path
    valid = ", ".join(p.stem for p in list_notebooks())
    raise ValueError(f"unknown notebook {name!r}; valid notebooks: {valid} (or 'all')")


def notebook_title(path: Path) -> str:
    """What a notebook shows: its first markdown heading, without the ``#`` and the number."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    headings = (
        line for c in cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("#")
    )
    heading = next(headings, None)
    if heading is None:
        raise ValueError(f"{path.name} has no markdown heading to say what it shows")
    return re.sub(r"^#+\s*(\d+\s*·\s*)?", "", heading)


def parameters_class(stem: str) -> type[NotebookParameters]:
    """The parameter class of notebook ``stem``, from any module under :mod:`cmkd_lab.studies`."""
    from .. import studies

    broken = {}  # a study module that fails to import must not block the other notebooks
    for module in pkgutil.walk_packages(studies.__path__, f"{studies.__name__}.", onerror=lambda name: None):
        try:
            importlib.import_module(module.name)
        except Exception as error:  # reported below, with the notebook that needed it
            broken[module.name] = f"{type(error).__name__}: {error}"
    if stem not in _PARAMETER_CLASSES:
        missing = [p.stem for p in list_notebooks() if p.stem not in _PARAMETER_CLASSES]
        failures = "".join(f"\n  {name} failed to import: {error}" for name, error in broken.items())
        raise ValueError(
            f"no parameter class for notebook {stem!r}; notebooks without one: {', '.join(missing) or 'none'} "
            '(set `notebook: ClassVar[str] = "<stem>"` on a NotebookParameters subclass in cmkd_lab.studies)' + failures
        )
    return _PARAMETER_CLASSES.get(stem)


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names and defaults of a notebook's ``parameters`` cell."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    return {name: info["default"] for name, info in found.items()}


class NotebookFailed(RuntimeError):
    """A notebook raised; the message carries the notebook's own error."""


def as_literal(value: Any) -> Any:
    """Tuples as lists: papermill writes a list into the parameters cell as a literal but a tuple
    as a string; the parameter classes take lists where they want tuples."""
    return [as_literal(v) for v in value] if isinstance(value, (list, tuple)) else value


def parameterized_copy(source: str | Path, target: str | Path, values: Mapping[str, Any]) -> Path:
    """Write ``source`` to ``target`` with ``values`` set in a cell after its parameters cell, as
    papermill sets them (for a notebook opened in JupyterLab or run by another client)."""
    import papermill

    notebook = papermill.iorw.load_notebook_node(str(source))  # papermill's loader adds the metadata it needs
    notebook = papermill.parameterize.parameterize_notebook(notebook, {k: as_literal(v) for k, v in values.items()})
    papermill.iorw.write_ipynb(notebook, str(target))
    return Path(target)


def run_notebook(
    name: str, profile: str = "quick", parameters: Mapping[str, Any] | None = None, out_dir: str | Path = "outputs"
) -> Path:
    """Execute a notebook headless; writes ``<out_dir>/<stem>/`` with the executed notebook,
    its figures, ``results.csv`` and ``run.json``. Returns that folder."""
    path = resolve_notebook(name)
    target = Path(out_dir).resolve() / path.stem
    values = {
        **{k: as_literal(v) for k, v in (parameters or {}).items()},
        "profile": profile,
        "interactive": False,
        "output_dir": str(target),
    }
    parameters_class(path.stem).create(**values)  # wrong names, types or choices fail here, before a kernel starts
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target.mkdir(parents=True, exist_ok=True)
    executed = target / path.name
    # no widget bars in the kernel; its progress lines go to this process's stderr
    environment = {
        "CMKD_LAB_QUIET": os.environ.get("CMKD_LAB_QUIET", "1"),
        "CMKD_LAB_PROGRESS": os.environ.get("CMKD_LAB_PROGRESS", "lines"),
    }
    previous = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    try:
        with atomic_path(executed) as temporary:
            try:
                papermill.execute_notebook(
                    str(path),
                    str(temporary),
                    parameters=values,
                    cwd=str(path.parent),
                    kernel_name="python3",
                    progress_bar=False,
                    log_output=False,
                    stderr_file=sys.stderr,
                    extra_arguments=KERNEL_ARGUMENTS,
                    shutdown_kernel=_kernel_shutdown(),
                )
            except PapermillExecutionError as error:
                failed = target / f"{path.stem}.failed.ipynb"
                os.replace(temporary, failed)
                raise NotebookFailed(
                    f"{path.stem} failed: {error.ename}: {error.evalue} (executed copy: {failed})"
                ) from None
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return target


def _kernel_shutdown() -> str:
    """How the kernel ends once every cell has run: killed at once (a graceful exit tears down
    torch and the run's tensors, 1–3 s per notebook), unless it exported static figures: then it
    exits gracefully, so its exit hook stops the Chromium it started in a session of its own."""
    from ..report.figures import static_export_requested

    return "graceful" if static_export_requested() else "immediate"


def write_summary(out_dir: str | Path) -> Path:
    """Combine every ``<out_dir>/*/results.csv`` into ``<out_dir>/summary.csv`` (mean, std, n)."""
    out_dir = Path(out_dir)
    frames = [summarize(load_results(p)) for p in sorted(out_dir.glob("*/results.csv"))]
    if not frames:
        raise FileNotFoundError(f"no results.csv under {out_dir}; run the notebooks first")
    summary = pd.concat(frames, ignore_index=True)
    with atomic_path(out_dir / "summary.csv") as temporary:
        summary.to_csv(temporary, index=False)
    write_text(out_dir / "summary.md", _markdown(summary))
    return out_dir / "summary.csv"


def _markdown(summary: pd.DataFrame) -> str:
    lines = [
        "# cmkd_lab results summary",
        "",
        "Mean, std and number of seeds per study, method, setting and metric.",
        "",
    ]
    for study, part in summary.groupby("study", sort=False):
        lines += [f"## {study}", "", "```", part.dropna(axis=1, how="all").to_string(index=False), "```", ""]
    return "\n".join(lines)
