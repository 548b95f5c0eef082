"""Course mode: instructor and student copies of the notebooks, in nbgrader's conventions.

Each notebook ends with exercises and their worked solutions. A solution is a code or markdown
cell whose answer lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and whose first
line names its exercise (``# Exercise 2`` in code, ``**Exercise 2.**`` in markdown). A check cell
(tagged ``check``) tests an answer with :func:`check_answer`.

``python -m cmkd_lab course build --out DIR`` writes ``DIR/instructor/`` (the notebooks with
nbgrader cell metadata: solution cells, locked and graded check cells) and ``DIR/student/``
(the same with every solution replaced by nbgrader's prompt and all outputs cleared). An
instructor can put the student copies into nbgrader's ``source/`` folder as they are.

Checks that can fail: an exercise's answer is a seeded call of a kit function registered with
:func:`exercise`; its check cell calls :func:`check_answer`, which recomputes the reference from
the same registered call (memoised, so a notebook that ran the solution pays nothing more) and
compares at a tight tolerance. The reference lives in the kit, not in the notebook, so a student
copy holds it no more than nbgrader's hidden tests. ``tests/test_course.py`` feeds every
registered check plausible wrong answers (0, the sign-flipped value, the value at another
setting) and each must fail.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .io import write_text
from .notebook import list_notebooks, resolve_notebook

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_PROMPT = "# YOUR CODE HERE\nraise NotImplementedError()"
MARKDOWN_PROMPT = "YOUR ANSWER HERE"
CHECK_TAG = "check"
NBGRADER_SCHEMA = 3
_SOLUTION_HEADING = re.compile(r"^\s*(?:#|\*\*)\s*Exercise\s+(\d+)\b")
_EXERCISE_ITEM = re.compile(r"^(\d+)\.\s", re.MULTILINE)


@dataclass(frozen=True)
class Exercise:
    """A checked answer: ``compute(**settings) -> float`` (memoised), what it measures, the
    settings of "another setting" that a wrong answer might come from, and the tolerance."""

    notebook: str
    name: str
    what: str
    compute: Callable[..., float]
    other: dict
    rel_tol: float
    abs_tol: float


EXERCISES: dict[tuple[str, str], Exercise] = {}


def exercise(notebook: str, name: str, *, what: str, other: dict, rel_tol: float = 1e-6, abs_tol: float = 1e-9):
    """Register ``function(**settings) -> float`` as the answer ``name`` of a notebook's exercise.

    Its defaults are the exercise's setting; ``other`` holds keyword arguments of another setting
    (its value is one of the wrong answers the course test feeds the check). The function is
    memoised on its bound arguments (:func:`memoised`), so the solution's call and the check's
    reference share one run.
    """

    def register(function: Callable[..., float]) -> Callable[..., float]:
        key = (notebook, name)
        if key in EXERCISES:
            raise ValueError(f"exercise {name!r} of {notebook} is registered twice")
        unknown = sorted(set(other) - set(inspect.signature(function).parameters))
        if unknown:
            raise ValueError(f"exercise {name!r}: 'other' names unknown settings {unknown}")
        cached = memoised(function)
        EXERCISES[key] = Exercise(notebook, name, what, cached, dict(other), rel_tol, abs_tol)
        return cached

    return register


def memoised(function: Callable) -> Callable:
    """``function`` memoised on its bound arguments, defaults applied (lists as tuples): a call by
    keywords, by position or with a default left out is one key, so the exercises that read one
    sweep, and the notebook cell that shows it, share one run."""
    signature = inspect.signature(function)
    cached = functools.lru_cache(maxsize=None)(function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return cached(**{k: _hashable(v) for k, v in bound.arguments.items()})

    return call


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def registered_exercise(notebook: str, name: str) -> Exercise:
    """The registered exercise; an unknown one names those of the notebook."""
    _import_studies()
    if (notebook, name) not in EXERCISES:
        known = sorted(n for nb, n in EXERCISES if nb == notebook)
        raise ValueError(f"unknown exercise {name!r} of {notebook}; registered: {', '.join(known) or 'none'}")
    return EXERCISES[(notebook, name)]


def reference(notebook: str, name: str) -> float:
    """The exercise's answer, recomputed from its registered call."""
    return float(registered_exercise(notebook, name).compute())


def is_close(answer, expected: float, exercise: Exercise) -> bool:
    try:
        answer = float(answer)
    except (TypeError, ValueError):
        return False
    return math.isclose(answer, expected, rel_tol=exercise.rel_tol, abs_tol=exercise.abs_tol)


def check_answer(notebook: str, name: str, answer) -> None:
    """Pass when ``answer`` equals the registered reference within its tight tolerance."""
    entry = registered_exercise(notebook, name)
    expected = reference(notebook, name)
    if not is_close(answer, expected, entry):
        raise AssertionError(
            f"{entry.what}: your answer {answer!r} is not the value of the exercise's call; check its settings and seed"
        )
    print(f"✓ {entry.what}: {float(answer):.4g}")


def _import_studies() -> None:
    """Import every study module, so their exercises are registered."""
    import importlib
    import pkgutil

    from .. import studies

    for module in pkgutil.walk_packages(studies.__path__, studies.__name__ + "."):
        importlib.import_module(module.name)


def is_solution(cell) -> bool:
    return BEGIN in cell.source


def is_check(cell) -> bool:
    return CHECK_TAG in cell.metadata.get("tags", [])


def exercise_numbers(notebook) -> list[int]:
    """The numbers of the exercises listed in the notebook's ``## Exercises`` cell."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Exercises"):
            return [int(n) for n in _EXERCISE_ITEM.findall(cell.source)]
    return []


def solved_exercises(notebook) -> dict[int, list[str]]:
    """Exercise number → the kinds (``code``/``markdown``) of its solution cells."""
    solved: dict[int, list[str]] = {}
    for cell in notebook.cells:
        if is_solution(cell):
            match = _SOLUTION_HEADING.match(cell.source)
            if not match:
                raise ValueError(
                    f"a solution cell must start with '# Exercise N' or '**Exercise N.**': {cell.source[:60]!r}"
                )
            solved.setdefault(int(match.group(1)), []).append(cell.cell_type)
    return solved


def _strip_solution(source: str, prompt: str) -> str:
    """Replace each BEGIN/END region (markers included) by ``prompt``, keeping the text around it."""
    pattern = re.compile(rf"^([ \t]*){re.escape(BEGIN)}.*?^[ \t]*{re.escape(END)}[^\n]*", re.MULTILINE | re.DOTALL)
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced solution markers in {source[:60]!r}")
    return pattern.sub(lambda m: "\n".join(m.group(1) + line for line in prompt.splitlines()), source)


def _nbgrader(stem: str, cell, index: int) -> dict | None:
    if is_solution(cell):
        graded = cell.cell_type == "markdown"  # a written answer: graded by hand
        return {
            "solution": True,
            "grade": graded,
            "locked": False,
            "points": 1 if graded else None,
            "grade_id": f"{stem}-solution-{index}",
            "schema_version": NBGRADER_SCHEMA,
        }
    if is_check(cell):
        return {
            "solution": False,
            "grade": True,
            "locked": True,
            "points": 1,
            "grade_id": f"{stem}-check-{index}",
            "schema_version": NBGRADER_SCHEMA,
        }
    return None


def instructor_copy(notebook, stem: str):
    """The notebook with nbgrader metadata on its solution and check cells, outputs cleared."""
    copied = copy.deepcopy(notebook)
    for index, cell in enumerate(copied.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        metadata = _nbgrader(stem, cell, index)
        if metadata is not None:
            cell.metadata["nbgrader"] = {k: v for k, v in metadata.items() if v is not None}
    return copied


def student_copy(notebook, stem: str):
    """The instructor copy with every solution replaced by nbgrader's prompt."""
    copied = instructor_copy(notebook, stem)
    for cell in copied.cells:
        if is_solution(cell):
            prompt = CODE_PROMPT if cell.cell_type == "code" else MARKDOWN_PROMPT
            cell.source = _strip_solution(cell.source, prompt)
    return copied


def build(out: str | Path, notebooks: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Write ``out/instructor/*.ipynb`` and ``out/student/*.ipynb``; returns both lists of paths."""
    import nbformat  # here, not at the top: notebooks import this module for its checks only

    paths = list_notebooks() if notebooks is None else [resolve_notebook(n) for n in notebooks]
    out = Path(out)
    written: dict[str, list[Path]] = {"instructor": [], "student": []}
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        missing = sorted(set(exercise_numbers(notebook)) - set(solved_exercises(notebook)))
        if missing:
            raise ValueError(f"{path.stem}: exercises {missing} have no solution cell")
        for kind, make in (("instructor", instructor_copy), ("student", student_copy)):
            target = out / kind / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text(target, nbformat.writes(make(notebook, path.stem)))
            written[kind].append(target)
    return written
