"""The one grading test that every part's test file instantiates."""

from __future__ import annotations

import pytest

from utils.checks import exercises_of
from utils.course.grading import FAILED, NOT_ATTEMPTED, USED_REFERENCE, describe


def grading_test(part: str):
    """A test, parametrised over the exercises of ``part``, that grades the learner's saved notebook."""
    exercises = exercises_of(part)

    @pytest.mark.parametrize("exercise", exercises, ids=[e.slug for e in exercises])
    def test_exercise(exercise, notebook_grades, grade_lines) -> None:
        results = notebook_grades(part)
        if results is None:
            line = (
                f"⏭  Exercise {exercise.id} ({exercise.title}): no notebook {part}.ipynb yet "
                "(make it with `python -m utils.course.build_notebooks`)."
            )
            grade_lines.append(line)
            pytest.skip(line)
        result = results[exercise.id]
        line = describe(result, exercise.title)
        grade_lines.append(line)
        if result.status in (NOT_ATTEMPTED, USED_REFERENCE):
            pytest.skip(line)
        if result.status == FAILED:
            pytest.fail(line, pytrace=False)

    test_exercise.__doc__ = f"Grades notebooks/{part}.ipynb, one test per exercise."
    return test_exercise
