"""Skip ahead: go on past an exercise you have not done, with the course's reference solution.

A cell that builds on exercises starts with ``needs("1.1", "1.2", where=globals())``. If one of them is
not done yet (or fails its check), the cell stops at once with one line saying which exercise it needs and
the one line that continues with the reference, e.g. ``ToyModel = reference("1.1")``. Nothing half-runs,
so no plot shows an untrained model as if it were a result.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from utils.paths import repo_root


class ReferenceUnavailable(RuntimeError):
    """``reference()`` was called where the reference solutions are not (a handout, a teacher's sandboxed grading)."""


class ExerciseNeeded(RuntimeError):
    """A cell needs an exercise that is not done yet; the message says how to continue without it."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this one line instead of a traceback
        return [f"⏭  {self}"]


def _check_parts() -> list[str]:
    """Every part that has a checks module (``utils/checks/partNN_name.py``), in course order."""
    return [
        module.stem.removeprefix("part")
        for module in sorted((Path(__file__).parent.parent / "checks").glob("part*.py"))
    ]


def _exercise(exercise_id: str):
    """The registered exercise ``exercise_id`` ("2.6") and its part's name."""
    from utils.checks import exercises_of

    for part in _check_parts():
        for ex in exercises_of(part):
            if ex.id == exercise_id:
                return ex, part
    raise KeyError(f"no exercise {exercise_id!r} in the course")


def all_exercise_ids() -> list[str]:
    """Every exercise id of the course, in course order (read from the checks' source: no torch import)."""
    from utils.course.exercise_index import exercise_index

    return [ex.id for part in _check_parts() for ex in exercise_index(part)]


def _solutions_notebook(part: str) -> Path:
    return repo_root() / "solutions" / f"{part}.ipynb"


def released(exercise_id: str) -> bool:
    """Whether ``reference(exercise_id)`` can hand the exercise out here: always in the full course; in a
    handout (``utils.course.handout``) only for the exercises the teacher released."""
    _, part = _exercise(exercise_id)
    path = _solutions_notebook(part)
    if not path.is_file():
        return False
    try:
        listed = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("sae_course", {})
    except ValueError:
        return False
    return "released" not in listed or exercise_id in listed["released"]


@functools.cache
def _reference_namespace(part: str) -> dict[str, Any]:
    """The objects of the part's reference solution, from its generated solution notebook (no jupytext)."""
    from utils.course.grading import notebook_cells, run_cells

    cells = [c for c in notebook_cells(repo_root() / "solutions" / f"{part}.ipynb") if c.tags & {"setup", "exercise"}]
    namespace, errors = run_cells(cells, filename=f"solutions/{part}.ipynb", cell_timeout=600)
    if errors:
        raise RuntimeError(f"the reference solution of {part} did not run: {errors}")
    return namespace


def reference(exercise_id: str):
    """The reference solution's object(s) of an exercise: ``ActivationStore = reference("2.6")``.

    One object is returned as itself; several as a tuple in the exercise's order
    (``l0, feature_density = reference("2.8")``)."""
    ex, part = _exercise(exercise_id)
    if not _solutions_notebook(part).is_file():
        raise ReferenceUnavailable(
            f"the course's reference solutions are not in this copy of the course (a handout without them, or a "
            f"teacher's grading run), so Exercise {exercise_id} cannot be skipped with reference(): solve it, or ask "
            f"your teacher to release it"
        )
    if not released(exercise_id):
        raise ReferenceUnavailable(
            f"Exercise {exercise_id} is not released in this handout, so it cannot be skipped with reference(): "
            f"solve it, or ask your teacher to release it"
        )
    namespace = _reference_namespace(part)
    objects = tuple(namespace[name] for name in ex.objects)
    for obj in objects:
        HANDED_OUT[id(obj)] = exercise_id  # graded "used the reference", never "passed"
    return objects[0] if len(objects) == 1 else objects


#: ``id()`` of every object ``reference`` handed out in this process -> its exercise.
HANDED_OUT: dict[int, str] = {}


def continue_line(exercise_id: str) -> str:
    """The one line that replaces an exercise's objects by the reference."""
    ex, _ = _exercise(exercise_id)
    return f'{", ".join(ex.objects)} = reference("{exercise_id}")'


#: Exercise id -> the ids of the objects that last passed its check (redefining an object checks it again).
_PASSED: dict[str, tuple[int, ...]] = {}


def needs(*exercise_ids: str, where: dict[str, Any]) -> None:
    """Stop this cell, with one line, if any of ``exercise_ids`` is not done (its check fails on ``where``'s objects).

    Checks run quietly and take well under a second each."""
    from utils.checks import CheckFailure, NotAttempted

    for exercise_id in exercise_ids:
        ex, _ = _exercise(exercise_id)
        missing = [name for name in ex.objects if name not in where]
        if missing:
            state = f"is not run yet (no `{missing[0]}`)"
        else:
            objects = tuple(where[name] for name in ex.objects)
            if _PASSED.get(exercise_id) == tuple(map(id, objects)):
                continue  # these very objects passed before: no need to check them again
            try:
                ex.check(*objects, quiet=True)
                _PASSED[exercise_id] = tuple(map(id, objects))
                continue
            except NotAttempted:
                state = "is not done yet"
            except CheckFailure:
                state = "does not pass its check yet"
        if released(exercise_id):
            then = f"To go on with the reference solution, run `{continue_line(exercise_id)}` (then this cell again)."
        else:
            then = "Its reference solution is not in this copy of the course: solve it first, or ask your teacher."
        raise ExerciseNeeded(f"This cell needs Exercise {ex.id} ({ex.title}), which {state}. {then}")
