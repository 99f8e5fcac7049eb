"""Skip ahead: a cell that needs an unfinished exercise stops with one line, and the reference fills in."""

from __future__ import annotations

import pytest

from utils.course.grading import stub_namespace
from utils.course.reference import ExerciseNeeded, continue_line, needs, reference


def test_a_cell_needing_an_unfinished_exercise_stops_with_one_line_naming_it_and_the_way_on() -> None:
    stubs = stub_namespace("01_toy_models")
    with pytest.raises(ExerciseNeeded) as caught:
        needs("1.1", "1.2", where=stubs)
    message = str(caught.value)
    assert "Exercise 1.1" in message and 'ToyModel = reference("1.1")' in message and "\n" not in message
    assert caught.value._render_traceback_() == [f"⏭  {message}"], "IPython should show one line, no traceback"
    with pytest.raises(ExerciseNeeded, match="is not run yet"):
        needs("1.1", where={})


def test_the_reference_passes_where_the_stub_stopped() -> None:
    stubs = stub_namespace("01_toy_models")
    stubs["ToyModel"] = reference("1.1")
    stubs["generate_batch"] = reference("1.2")
    needs("1.1", "1.2", where=stubs)  # no exception: the cell goes on
    assert continue_line("2.8") == 'l0, feature_density = reference("2.8")'
    with pytest.raises(KeyError):
        reference("9.9")
