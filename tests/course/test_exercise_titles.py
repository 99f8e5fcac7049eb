"""One title per exercise: each exercise's heading in a part's master says exactly the title its check registers.

The grader reports an exercise by its registered title (``@exercise("3.2", "Dead in a window vs ultra-low
density")``); a learner looking for it in the notebook should find the same words in the heading.
"""

from __future__ import annotations

import re

import pytest

from tests.course.parts import PARTS
from utils.checks import exercises_of
from utils.course.build_notebooks import Part

HEADING = re.compile(r"^# ## Exercise (?P<id>\d+\.\d+): (?P<title>.+)$", re.M)


@pytest.mark.parametrize("part", PARTS)
def test_exercise_headings_are_the_registered_titles(part: str) -> None:
    headings = {m["id"]: m["title"].strip() for m in HEADING.finditer(Part(part).master.read_text(encoding="utf-8"))}
    registered = {ex.id: ex.title for ex in exercises_of(part)}
    assert registered, f"{part} registers no exercises"
    assert headings == registered, {
        ex_id: (headings.get(ex_id), registered.get(ex_id))
        for ex_id in sorted(set(headings) | set(registered))
        if headings.get(ex_id) != registered.get(ex_id)
    }
