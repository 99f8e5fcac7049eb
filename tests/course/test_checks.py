"""Every check passes on the reference, and fails on the untouched stub and on every wrong implementation."""

from __future__ import annotations

import re

import pytest

from tests.course.parts import PARTS, all_exercises, as_tuple, wrong_module
from utils.checks import CheckFailure, NotAttempted
from utils.grading import reference_namespace, stub_namespace

EXERCISES = all_exercises()
IDS = [f"{part}:{ex.slug}" for part, ex in EXERCISES]
SEEDS = [0, 1, 2]


def objects(namespace: dict, exercise) -> tuple:
    return tuple(namespace[name] for name in exercise.objects)


def test_every_part_has_exercises() -> None:
    assert PARTS, "no master files found in solutions/"
    for part in PARTS:
        assert any(p == part for p, _ in EXERCISES), f"{part} registers no exercises"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_reference_passes(part, exercise, seed) -> None:
    exercise.check(*objects(reference_namespace(part), exercise), seed=seed, quiet=True)


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_stub_is_not_attempted(part, exercise) -> None:
    with pytest.raises(NotAttempted, match="not attempted yet"):
        exercise.check(*objects(stub_namespace(part), exercise), quiet=True)


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_each_wrong_implementation_fails(part, exercise) -> None:
    wrongs = wrong_module(part).WRONG.get(exercise.id, [])
    assert len(wrongs) >= 2, f"exercise {exercise.id} needs at least two wrong implementations, has {len(wrongs)}"
    for entry in wrongs:
        label = ", ".join(getattr(o, "__name__", repr(o)) for o in as_tuple(entry))
        with pytest.raises(CheckFailure) as failure:
            exercise.check(*as_tuple(entry), quiet=True)
        assert not isinstance(failure.value, NotAttempted), f"{label} was reported as not attempted"
        message = str(failure.value)
        assert len(message) > len(f"Exercise {exercise.id} () failed: ") + 20, f"{label}: message too terse: {message!r}"
        marked = [o for o in as_tuple(entry) if hasattr(o, "expected_message")]
        assert marked, f"{label}: mark the wrong object with @mistake(regex) (tests/wrong/__init__.py)"
        for wrong in marked:
            assert (wrong.__doc__ or "").strip(), f"{wrong.__name__}: its docstring should state the mistake it models"
            assert re.search(wrong.expected_message, message), (
                f"{wrong.__name__} ({wrong.__doc__.strip().splitlines()[0]}) failed for another reason than its own "
                f"mistake: {message!r} does not match {wrong.expected_message!r}"
            )


@pytest.mark.parametrize("part", PARTS)
def test_wrong_modules_name_only_real_exercises(part) -> None:
    known = {ex.id for p, ex in EXERCISES if p == part}
    assert set(wrong_module(part).WRONG) <= known
