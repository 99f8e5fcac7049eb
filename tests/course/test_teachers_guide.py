"""The facilitator guide's generated pages: built from the course, complete, and in sync with it."""

from __future__ import annotations

import pytest

from tests.course.parts import PARTS
from utils.checks import exercises_of
from utils.course import teachers_guide as tg
from utils.paths import repo_root


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("3–4 h", (3, 4)),
        ("2-3 h", (2, 3)),
        ("2 h", (2, 2)),
        ("90 min", (1.5, 1.5)),
        ("1.5 to 2 hours", (1.5, 2)),
        ("", None),
    ],
)
def test_parse_hours(text, hours) -> None:
    assert tg.parse_hours(text) == hours


def test_every_part_has_a_time() -> None:
    hours = tg.part_hours()
    missing = [p for p in PARTS if p not in hours]
    assert not missing, f"no learner time found for {missing} (utils/course/syllabus.py or the README's Parts table)"


@pytest.mark.parametrize("part", PARTS)
def test_master_structure_matches_the_checks(part) -> None:
    """The guide reads exercises from the master's headers: they must be the checks' exercises, with times."""
    title, goals, sections, exercises = tg.read_structure(part)
    assert title.startswith("Part ")
    assert [e.id for e in exercises] == [e.id for e in exercises_of(part)]
    assert all(e.minutes for e in exercises), "every exercise header states its time"
    assert {i for i, _ in goals} == {e.id for e in exercises}, "the 'What you will do' table lists every exercise"
    assert [i for _, ids in sections for i in ids] == [e.id for e in exercises], "each exercise is before a checkpoint"


def info(name: str, low: float) -> tg.PartInfo:
    ex = [tg.ExerciseInfo("9.1", "x", 30, 1, 1), tg.ExerciseInfo("9.2", "y", 30, 1, 1)]
    return tg.PartInfo(name, f"Part {name}", (low, low + 1), [], [("Training", ["9.1"]), ("Summary", ["9.2"])], ex)


def test_plan_fills_days_in_order_and_leaves_out_what_does_not_fit() -> None:
    parts = [info("a", 3), info("b", 2), info("c", 3), info("d", 4), info("e", 1)]
    one = tg.plan(parts, 1)
    assert [p.name for _, p in one[0]] == ["a", "b"]
    two = tg.plan(parts, 2)
    assert [[p.name for _, p in day] for day in two] == [["a", "b"], ["c"]]
    page = tg.schedule_page(parts)
    assert "Not in this schedule" in page and "[Part d](d.md)" in page


def test_clock_skips_breaks() -> None:
    assert tg._clock(0) == "09:00" and tg._clock(90) == "11:00" and tg._clock(90, ending=True) == "10:30"
    assert tg._clock(180, ending=True) == "12:30" and tg._clock(180) == "13:30" and tg._clock(359) == "16:59"


def test_mistake_in_words_falls_back_to_a_comment_then_the_name() -> None:
    class Documented:
        """Forgot the bias.

        More words."""

    def commented(x):
        return x + 1  # added one instead of nothing

    def sum_over_batch(x):
        return x

    assert tg.first_line(Documented) == "Forgot the bias."
    assert tg.first_line(commented) == "Added one instead of nothing."

    class StoreKeepsBOS:
        pass

    assert tg.first_line(sum_over_batch) == "Sum over batch."
    assert tg.first_line(StoreKeepsBOS) == "`StoreKeepsBOS` (no description yet)"


def test_generated_pages_are_in_sync() -> None:
    """Rerun `python -m utils.course.teachers_guide` after changing a master, a check or a wrong implementation."""
    files = tg.generated_files()
    assert set(files) == {tg.guide_dir() / f"{p}.md" for p in PARTS} | {tg.guide_dir() / "schedule.md"}
    stale = [
        p.name
        for p, text in files.items()
        if not p.exists() or tg._numbers_blurred(p.read_text(encoding="utf-8")) != tg._numbers_blurred(text)
    ]
    assert not stale, f"stale teachers' guide pages {stale}: run `python -m utils.course.teachers_guide`"
    for part in PARTS:
        page = files[tg.guide_dir() / f"{part}.md"]
        assert "PASSES this wrong" not in page and "the check crashed" not in page
        assert page.count("\n  > ") >= 2 * len(exercises_of(part)), "two mistakes and messages per exercise"


def test_guide_is_linked_from_the_readme() -> None:
    readme = (repo_root() / "README.md").read_text(encoding="utf-8")
    assert "solutions/teachers/README.md" in readme
