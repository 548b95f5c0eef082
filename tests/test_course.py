"""Course mode: every exercise has a worked solution; student copies keep none of it and fail
their checks until the solutions are pasted back; instructor copies run and pass their checks."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from cmkd_lab.app import course
from cmkd_lab.app.cli import main
from cmkd_lab.app.notebook import KERNEL_ARGUMENTS, NOTEBOOK_DIR, list_notebooks, parameterized_copy

STEMS = [path.stem for path in list_notebooks()]
EXECUTED = "00_quickstart"  # the course copies run end to end for this notebook (the cheapest)
SMALL_RUN = {"n_runs": 2, "epochs": 30}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    assert main(["course", "build", "--out", str(out)]) == 0
    return out


def _read(folder, stem):
    return nbformat.read(folder / f"{stem}.ipynb", as_version=4)


def _split_solution(cell) -> tuple[set[str], set[str]]:
    """The stripped lines inside a cell's solution markers, and those outside them."""
    inside, lines = False, (set(), set())
    for line in cell.source.splitlines():
        if course.BEGIN in line or course.END in line:
            inside = course.BEGIN in line
        elif line.strip():
            lines[0 if inside else 1].add(line.strip())
    return lines


@pytest.mark.parametrize("stem", STEMS)
def test_every_exercise_has_a_worked_solution_and_the_notebook_a_check(stem):
    notebook = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    exercises = course.exercise_numbers(notebook)
    assert exercises, f"{stem}: no numbered exercises"
    assert set(exercises) <= set(course.solved_exercises(notebook)), f"{stem}: an exercise has no solution"
    assert any(course.is_check(cell) for cell in notebook.cells), f"{stem}: no check cell"
    assert all(cell.cell_type == "code" for cell in notebook.cells if course.is_check(cell))


@pytest.mark.parametrize("stem", STEMS)
def test_no_solution_survives_in_a_student_copy(stem, built):
    source = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    student = _read(built / "student", stem)
    text = "\n".join(cell.source for cell in student.cells)
    assert course.BEGIN not in text and course.END not in text
    assert len(student.cells) == len(source.cells)
    for theirs, mine in zip(source.cells, student.cells):
        if not course.is_solution(theirs):
            assert mine.source == theirs.source
            continue
        solution, around = _split_solution(theirs)
        kept = {line.strip() for line in mine.source.splitlines()}
        leaked = (solution - around) & kept
        assert not leaked, f"{stem}: solution text left in the student copy: {sorted(leaked)}"
    assert all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in student.cells
        if cell.cell_type == "code"
    )
    graded = [cell.metadata.nbgrader for cell in student.cells if "nbgrader" in cell.metadata]
    assert len({g["grade_id"] for g in graded}) == len(graded), "grade ids must be unique"
    assert all(g["schema_version"] == course.NBGRADER_SCHEMA for g in graded)
    checks = [cell for cell in student.cells if course.is_check(cell)]
    assert checks and all(c.metadata.nbgrader["grade"] and c.metadata.nbgrader["locked"] for c in checks)
    prompts = [cell.source for cell in student.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert prompts and all(course.CODE_PROMPT in p or course.MARKDOWN_PROMPT in p for p in prompts)


@pytest.mark.parametrize("stem", STEMS)
def test_the_instructor_copy_is_the_notebook_the_suite_runs(stem, built):
    """The suite executes notebooks/ (nbval and the parameter runs), so the instructor copies'
    checks pass there; here: the copies hold exactly that code."""
    source = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    instructor = _read(built / "instructor", stem)
    assert [c.source for c in instructor.cells] == [c.source for c in source.cells]


def _execute(notebook, tmp_path):
    path = tmp_path / "copy.ipynb"
    nbformat.write(notebook, path)
    parameterized_copy(path, path, {**SMALL_RUN, "output_dir": str(tmp_path / "outputs"), "device": "cpu"})
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    return client.execute()


def _check_errors(notebook) -> list[str | None]:
    """Per check cell: its error name, or None when it passed."""
    return [
        next((o["ename"] for o in cell.outputs if o["output_type"] == "error"), None)
        for cell in notebook.cells
        if course.is_check(cell)
    ]


def test_the_student_copy_fails_its_checks_until_the_solutions_are_pasted_back(built, tmp_path):
    instructor = _read(built / "instructor", EXECUTED)
    student = _read(built / "student", EXECUTED)
    ran = _execute(student, tmp_path)
    assert all(error is not None for error in _check_errors(ran)), _check_errors(ran)

    for mine, theirs in zip(student.cells, instructor.cells):  # a student pastes the solutions back
        if mine.metadata.get("nbgrader", {}).get("solution"):
            mine.source = theirs.source
    assert [c.source for c in student.cells] == [c.source for c in instructor.cells]
    ran = _execute(student, tmp_path)
    assert _check_errors(ran) == [None] * len(_check_errors(ran))
    errors = [o["ename"] for c in ran.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    assert errors == []
    passed = "".join(o.get("text", "") for c in ran.cells if course.is_check(c) for o in c.outputs)
    assert passed.count("✓") >= len(_check_errors(ran))


def test_strip_keeps_the_code_around_a_solution():
    source = f"# Exercise 1: x\nsetup = 1\n    {course.BEGIN}\n    answer = setup + 1\n    {course.END}\nprint(answer)"
    stripped = course._strip_solution(source, course.CODE_PROMPT)
    assert (
        stripped == "# Exercise 1: x\nsetup = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(answer)"
    )
    with pytest.raises(ValueError, match="unbalanced"):
        course._strip_solution(f"{course.BEGIN}\nx = 1", course.CODE_PROMPT)


course._import_studies()  # registers every study's exercises
REGISTERED = sorted(course.EXERCISES)
_CHECK_CALL = re.compile(r"course\.check_answer\(\s*\"([^\"]+)\",\s*\"([^\"]+)\"")


@pytest.mark.parametrize("notebook, name", REGISTERED, ids=[f"{nb}:{n}" for nb, n in REGISTERED])
def test_every_check_fails_on_plausible_wrong_answers(notebook, name):
    entry = course.EXERCISES[(notebook, name)]
    expected = course.reference(notebook, name)
    at_another_setting = float(entry.compute(**entry.other))
    assert course.is_close(expected, expected, entry)
    for wrong in (0.0, -expected, at_another_setting):
        assert not course.is_close(wrong, expected, entry), f"{notebook}:{name} accepts the wrong answer {wrong}"
    with pytest.raises(AssertionError, match="not the value of the exercise's call"):
        course.check_answer(notebook, name, at_another_setting)


@pytest.mark.parametrize("stem", STEMS)
def test_every_check_cell_checks_a_registered_answer_and_every_answer_is_checked(stem):
    notebook = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    checks = "\n".join(cell.source for cell in notebook.cells if course.is_check(cell))
    called = set(_CHECK_CALL.findall(checks))
    assert called, f"{stem}: no check cell calls course.check_answer"
    assert all(key in course.EXERCISES for key in called), sorted(called - set(course.EXERCISES))
    assert {key for key in course.EXERCISES if key[0] == stem} <= called
    assert "check_within" not in checks and "check_sign" not in checks


def test_memoised_calls_share_one_run_however_the_settings_are_passed():
    calls = []

    @course.memoised
    def sweep(n_runs: int, epochs: int = 10, overlaps: tuple = (0, 10)):
        calls.append((n_runs, epochs, overlaps))
        return object()

    first = sweep(2)
    assert sweep(n_runs=2) is first and sweep(2, 10) is first and sweep(2, epochs=10, overlaps=[0, 10]) is first
    assert sweep(3) is not first and calls == [(2, 10, (0, 10)), (3, 10, (0, 10))]


def test_an_unknown_exercise_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown exercise 'nope' of 00_quickstart; registered:"):
        course.check_answer("00_quickstart", "nope", 1.0)
