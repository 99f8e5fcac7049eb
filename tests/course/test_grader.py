"""The grader grades what it can: a learner's broken notebook costs only the exercises it breaks.

These tests take Part 1's generated notebooks, break them in the ways learners do, and grade them; for the
later parts, a wrong implementation pasted into the reference must cost exactly its own exercise.

No test here depends on the machine's speed: real notebooks are graded under the grader's default (generous)
time limits, and the time-limit tests use a notebook of trivial cells whose code loops forever, against a
short limit. No test reads the learner's ``notebooks/``: fresh notebooks are built into a temporary folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.course.parts import PARTS, solved_by_a_learner
from utils.checks import exercises_of
from utils.course.build_notebooks import Part, build, read_master
from utils.course.grading import FAILED, NOT_ATTEMPTED, PASSED, USED_REFERENCE, describe, grade_notebook
from utils.paths import repo_root

PART = PARTS[0]
EXERCISES = exercises_of(PART)


def short_timeouts(monkeypatch) -> None:
    """Short limits, only for notebooks whose every cell is trivial (a loop forever, or a def)."""
    monkeypatch.setenv("SAE_COURSE_CELL_TIMEOUT", "2")
    monkeypatch.setenv("SAE_COURSE_CHECK_TIMEOUT", "2")


def tiny_notebook(*sources: str):
    """A notebook of exercise cells with the given sources (nothing else: no imports, no set-up)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": ["exercise"]}) for src in sources]
    for k, cell in enumerate(nb.cells):
        cell["id"] = f"tiny-{k}"
    return nb


SINGLE = [ex for ex in EXERCISES if len(ex.objects) == 1]  # exercises whose check takes one object


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
        nb,
        exercise_cell(nb, ex.objects[0]),
        f"from tests.wrong.wrong_{part} import WRONG as _WRONG\n"
        f"{', '.join(ex.objects)}, = {f'({entry},)' if len(ex.objects) == 1 else entry}\n",
    )


def solution_notebook():
    """The reference solution, every exercise in a learner's own words (the reference's own code grades as "used
    the reference")."""
    return solved_by_a_learner(nbformat.read(Part(PART).solution_notebook, as_version=4))


def save(nb, folder: Path) -> Path:
    path = folder / f"{PART}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("part", PARTS)
def test_fresh_exercise_notebook_is_all_not_attempted(part: str, tmp_path: Path) -> None:
    """Each part's exercise notebook, built fresh from its master (never the learner's copy in notebooks/)."""
    path = tmp_path / f"{part}.ipynb"
    nbformat.write(build(read_master(Part(part)), part, solution=False), path)
    results = grade_notebook(path, part)
    assert set(results) == {ex.id for ex in exercises_of(part)}
    assert {r.status for r in results.values()} == {NOT_ATTEMPTED}, results


def test_a_solved_notebook_passes_every_exercise(tmp_path: Path) -> None:
    results = grade_notebook(save(solution_notebook(), tmp_path), PART)
    assert all(r.status == PASSED for r in results.values()), {
        k: r.message for k, r in results.items() if r.status != PASSED
    }


def test_the_reference_is_a_grade_of_its_own_never_passed(tmp_path: Path) -> None:
    """Skipping ahead with `X = reference("1.1")`, or pasting the solution's code, grades "used the reference"; the
    other exercises grade as they are (here: the solution notebook itself, whose code is the reference's)."""
    nb = solution_notebook()
    skipped, copied, own = EXERCISES[0], EXERCISES[1], EXERCISES[2]
    exercise_cell(nb, skipped.objects[0]).source = (
        f"from utils.course.reference import reference\n{', '.join(skipped.objects)} = reference({skipped.id!r})\n"
    )
    reference = nbformat.read(Part(PART).solution_notebook, as_version=4)
    exercise_cell(nb, copied.objects[0]).source = exercise_cell(reference, copied.objects[0]).source
    results = grade_notebook(save(nb, tmp_path), PART, only=[skipped.id, copied.id, own.id])
    assert results[skipped.id].status == USED_REFERENCE and "reference(" in results[skipped.id].message
    assert results[copied.id].status == USED_REFERENCE and "copied" in results[copied.id].message
    assert results[own.id].status == PASSED, results[own.id]
    assert "used the reference" in describe(results[skipped.id], skipped.title)


@pytest.mark.parametrize("part", PARTS[1:])
def test_a_pasted_wrong_implementation_fails_only_its_exercise(part: str, tmp_path: Path) -> None:
    """Later parts, graded like Part 1: the reference passes, and one wrong answer costs one exercise."""
    nb = solved_by_a_learner(nbformat.read(Part(part).solution_notebook, as_version=4))
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

    def wrong_implementation(cell, ex):
        paste_wrong_implementation(nb, PART, ex)

    break_(0, syntax_error, "SyntaxError")
    break_(1, renamed, "rename")
    break_(2, raises_at_definition, "RuntimeError")
    break_(4, wrong_implementation, "failed")
    broken[EXERCISES[5].id] = "ToyModel"  # 1.6 builds on 1.1's ToyModel, which the syntax error took away
    results = grade_notebook(save(nb, tmp_path), PART)

    for ex in EXERCISES:
        result = results[ex.id]
        if ex.id in broken:
            assert result.status == FAILED, f"{ex.id} should fail: {result}"
            assert broken[ex.id].lower() in result.message.lower(), f"{ex.id}: unhelpful message {result.message!r}"
        else:
            assert result.status == PASSED, f"{ex.id} should still pass: {result}"


def test_infinite_loops_hit_the_time_limits_and_cost_only_their_exercise(tmp_path: Path, monkeypatch) -> None:
    """A loop at a cell's top level hits the cell limit; a function that loops when called, the check limit."""
    short_timeouts(monkeypatch)
    at_definition, when_called, fine = SINGLE[0], SINGLE[1], SINGLE[2]
    nb = tiny_notebook(
        f"while True:\n    pass\ndef {at_definition.objects[0]}(*args, **kwargs):\n    pass\n",
        f"def {when_called.objects[0]}(*args, **kwargs):\n    while True:\n        pass\n",
        f"def {fine.objects[0]}(*args, **kwargs):\n    raise NotImplementedError()\n",
    )
    results = grade_notebook(save(nb, tmp_path), PART, only=[at_definition.id, when_called.id, fine.id])
    for ex in (at_definition, when_called):
        assert results[ex.id].status == FAILED and "infinite loop" in results[ex.id].message, results[ex.id]
    assert "could not be defined" in results[at_definition.id].message
    # the cell is named as a learner finds it, by its first line, not by a number JupyterLab does not show
    assert "the cell that starts `while True:`" in results[at_definition.id].message
    assert not re.search(r"\bcell \d", results[at_definition.id].message), results[at_definition.id].message
    assert results[fine.id].status == NOT_ATTEMPTED, results[fine.id]


@pytest.mark.slow
def test_a_hang_that_ignores_the_alarm_costs_one_exercise(tmp_path: Path, monkeypatch) -> None:
    short_timeouts(monkeypatch)
    victim, after = SINGLE[0], SINGLE[1]
    nb = tiny_notebook(
        f"def {victim.objects[0]}(*args, **kwargs):\n"
        "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    while True:\n        pass\n",
        f"def {after.objects[0]}(*args, **kwargs):\n    raise NotImplementedError()\n",
    )
    results = grade_notebook(save(nb, tmp_path), PART, only=[victim.id, after.id])
    assert results[victim.id].status == FAILED and "stopped answering" in results[victim.id].message
    assert results[after.id].status == NOT_ATTEMPTED, "a fresh worker grades the exercises after the hang"


def test_pytest_grades_the_learners_notebooks_and_nothing_else(tmp_path: Path) -> None:
    """`python -m pytest` as a learner runs it: Part 1 done with one exercise wrong, Part 2a untouched, and no
    notebook yet for the other parts. One line per exercise, each said once; none of the course's own tests."""
    nb = solution_notebook()
    ex = EXERCISES[0]
    paste_wrong_implementation(nb, PART, ex)
    save(nb, tmp_path)
    fresh = PARTS[1]
    nbformat.write(build(read_master(Part(fresh)), fresh, solution=False), tmp_path / f"{fresh}.ipynb")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--notebooks={tmp_path}", "-p", "no:randomly"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    total = sum(len(exercises_of(p)) for p in PARTS)
    fresh_count = len(exercises_of(fresh))
    assert f"1 failed, {len(EXERCISES) - 1} passed, {total - len(EXERCISES)} skipped" in out, out[-3000:]
    assert "tests/course" not in out and "test_grader" not in out, "the learner's run collected course tests"
    lines = [line for line in out.splitlines() if line.startswith(("✅", "❌", "⏭"))]
    assert len(lines) == total, lines
    failed = next(line for line in lines if line.startswith("❌"))
    assert failed.startswith(f"❌ Exercise {ex.id} ({ex.title}) failed: ") and failed.count(f"Exercise {ex.id}") == 1, (
        failed
    )
    assert sum("not attempted yet" in line for line in lines) == fresh_count
    assert sum("no notebook" in line for line in lines) == total - len(EXERCISES) - fresh_count
    assert "grading.py" not in out, "a skip names a line of the grader instead of the exercise"


def test_the_plain_report_reads_the_part_from_the_notebook_not_its_file_name(tmp_path: Path) -> None:
    """`python -m utils.course.grading NOTEBOOK`: a solved notebook saved under another name is graded as its
    part (from its metadata; from its content when a copy lost the metadata); a foreign one gets a clear error."""
    import json
    import subprocess
    import sys

    solved = solved_by_a_learner(json.loads((repo_root() / "solutions" / f"{PART}.ipynb").read_text(encoding="utf-8")))
    renamed = tmp_path / "my homework (1).ipynb"
    renamed.write_text(json.dumps(solved), encoding="utf-8")
    stripped = tmp_path / "exported.ipynb"
    stripped.write_text(json.dumps({**solved, "metadata": {}}), encoding="utf-8")
    first = EXERCISES[0]
    for path in (renamed, stripped):
        proc = subprocess.run(
            [sys.executable, "-m", "utils.course.grading", str(path), "--only", first.id],
            capture_output=True,
            text=True,
            cwd=repo_root(),
        )
        assert proc.returncode == 0 and f"Exercise {first.id}" in proc.stdout and "passed" in proc.stdout, proc.stderr
    foreign = tmp_path / "notes.ipynb"
    foreign.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "utils.course.grading", str(foreign)], capture_output=True, text=True, cwd=repo_root()
    )
    assert proc.returncode != 0 and "cannot tell which part this is" in proc.stderr
