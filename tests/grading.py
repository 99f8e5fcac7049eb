"""The one grading test that every part's test file instantiates."""

from __future__ import annotations

import pytest

from utils.checks import exercises_of
from utils.grading import FAILED, NOT_ATTEMPTED, Result


def report(result: Result) -> None:
    """Turn a grading result into a pytest outcome: pass, skip (not attempted) or fail (with the message)."""
    if result.status == NOT_ATTEMPTED:
        pytest.skip(f"not attempted yet: {result.message}")
    if result.status == FAILED:
        pytest.fail(result.message, pytrace=False)


def grading_test(part: str):
    """A test, parametrised over the exercises of ``part``, that grades the learner's saved notebook."""
    exercises = exercises_of(part)

    @pytest.mark.parametrize("exercise", exercises, ids=[e.slug for e in exercises])
    def test_exercise(exercise, notebook_grades) -> None:
        report(notebook_grades(part)[exercise.id])

    test_exercise.__doc__ = f"Grades notebooks/{part}.ipynb, one test per exercise."
    return test_exercise
