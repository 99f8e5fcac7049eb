"""The grader grades what it can: a learner's broken notebook costs only the exercises it breaks.

These tests take Part 1's generated notebooks, break them in the ways learners do, and grade them; for the
later parts, a wrong implementation pasted into the reference must cost exactly its own exercise.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.course.parts import PARTS
from utils.build_notebooks import Part
from utils.checks import exercises_of
from utils.grading import FAILED, NOT_ATTEMPTED, PASSED, grade_notebook
from utils.paths import repo_root

PART = PARTS[0]
EXERCISES = exercises_of(PART)


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch):
    monkeypatch.setenv("SAE_COURSE_CELL_TIMEOUT", "3")
    monkeypatch.setenv("SAE_COURSE_CHECK_TIMEOUT", "4")


def exercise_cell(nb, name: str):
    """The exercise-tagged cell that defines ``name``."""
    pattern = re.compile(rf"^(def|class) {re.escape(name)}\b", re.M)
    return next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []) and pattern.search(c.source))


def add_cell_after(nb, cell, source: str) -> None:
    new = nbformat.v4.new_code_cell(source, metadata={"tags": ["exercise"]})
    new["id"] = f"added-{len(nb.cells)}"
    nb.cells.insert(nb.cells.index(cell) + 1, new)


def paste_wrong_implementation(nb, part: str, ex) -> None:
    """What a learner's wrong answer looks like to the grader: the exercise's objects redefined, after its cell."""
    entry = f"_WRONG[{ex.id!r}][0]"
    add_cell_after(
        nb, exercise_cell(nb, ex.objects[0]),
        f"from tests.wrong.wrong_{part} import WRONG as _WRONG\n"
        f"{', '.join(ex.objects)}, = {f'({entry},)' if len(ex.objects) == 1 else entry}\n",
    )


def solution_notebook():
    return nbformat.read(Part(PART).solution_notebook, as_version=4)


def save(nb, folder: Path) -> Path:
    path = folder / f"{PART}.ipynb"
    nbformat.write(nb, path)
    return path


def test_fresh_exercise_notebook_is_all_not_attempted() -> None:
    """Part 1 here; every part's fresh notebook is graded (all skipped) by the default `pytest` run itself."""
    results = grade_notebook(Part(PART).exercise_notebook, PART)
    assert set(results) == {ex.id for ex in EXERCISES}
    assert {r.status for r in results.values()} == {NOT_ATTEMPTED}, results


def test_solution_notebook_passes_every_exercise() -> None:
    results = grade_notebook(Part(PART).solution_notebook, PART)
    assert all(r.status == PASSED for r in results.values()), {k: r.message for k, r in results.items() if r.status != PASSED}


@pytest.mark.parametrize("part", PARTS[1:])
def test_a_pasted_wrong_implementation_fails_only_its_exercise(part: str, tmp_path: Path) -> None:
    """Later parts, graded like Part 1: the reference passes, and one wrong answer costs one exercise."""
    nb = nbformat.read(Part(part).solution_notebook, as_version=4)
    victim = exercises_of(part)[-1]
    paste_wrong_implementation(nb, part, victim)
    path = tmp_path / f"{part}.ipynb"
    nbformat.write(nb, path)
    results = grade_notebook(path, part)
    assert results[victim.id].status == FAILED and "failed" in results[victim.id].message.lower(), results[victim.id]
    assert all(r.status == PASSED for k, r in results.items() if k != victim.id), {
        k: r.message for k, r in results.items() if k != victim.id and r.status != PASSED
    }


def test_broken_notebook_gets_a_message_per_broken_exercise_and_the_rest_still_grade(tmp_path: Path) -> None:
    nb = solution_notebook()
    broken = {}  # exercise id -> what its message must mention

    def break_(k: int, how, needle: str) -> None:
        exercise = EXERCISES[k]
        how(exercise_cell(nb, exercise.objects[0]), exercise)
        broken[exercise.id] = needle

    def syntax_error(cell, ex):
        cell.source += "\ndef oops(:\n    pass\n"

    def renamed(cell, ex):
        cell.source = re.sub(rf"^(def|class) {ex.objects[0]}\b", rf"\1 my_{ex.objects[0]}", cell.source, flags=re.M)

    def raises_at_definition(cell, ex):
        cell.source = "import torch\nW = torch.zeros(3) @ torch.zeros(4)\n" + cell.source

    def loops_forever_when_called(cell, ex):
        add_cell_after(nb, cell, f"def {ex.objects[0]}(*args, **kwargs):\n    while True:\n        pass\n")

    def wrong_implementation(cell, ex):
        paste_wrong_implementation(nb, PART, ex)

    def loops_forever_at_definition(cell, ex):
        cell.source = "while True:\n    pass\n" + cell.source

    break_(0, syntax_error, "SyntaxError")
    break_(1, renamed, "rename")
    break_(2, raises_at_definition, "RuntimeError")
    break_(3, loops_forever_when_called, "infinite loop")
    break_(4, wrong_implementation, "failed")
    break_(5, loops_forever_at_definition, "infinite loop")
    results = grade_notebook(save(nb, tmp_path), PART)

    for ex in EXERCISES:
        result = results[ex.id]
        if ex.id in broken:
            assert result.status == FAILED, f"{ex.id} should fail: {result}"
            assert broken[ex.id].lower() in result.message.lower(), f"{ex.id}: unhelpful message {result.message!r}"
        else:
            assert result.status == PASSED, f"{ex.id} should still pass: {result}"


@pytest.mark.slow
def test_a_hang_that_ignores_the_alarm_costs_one_exercise(tmp_path: Path) -> None:
    nb = solution_notebook()
    victim = EXERCISES[1]
    add_cell_after(
        nb, exercise_cell(nb, victim.objects[0]),
        f"def {victim.objects[0]}(*args, **kwargs):\n"
        "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    while True:\n        pass\n",
    )
    results = grade_notebook(save(nb, tmp_path), PART, timeout=20)
    assert results[victim.id].status == FAILED and "stopped answering" in results[victim.id].message
    assert all(r.status == PASSED for k, r in results.items() if k != victim.id)


@pytest.mark.slow
def test_pytest_grades_a_notebook_folder_end_to_end(tmp_path: Path) -> None:
    nb = solution_notebook()
    ex = EXERCISES[0]
    paste_wrong_implementation(nb, PART, ex)
    save(nb, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"tests/test_{PART}.py", "--notebooks", str(tmp_path), "-q", "-p", "no:randomly"],
        cwd=repo_root(), capture_output=True, text=True, timeout=300,
    )
    assert f"1 failed, {len(EXERCISES) - 1} passed" in proc.stdout, proc.stdout[-3000:]
    assert f"Exercise {ex.id}" in proc.stdout
