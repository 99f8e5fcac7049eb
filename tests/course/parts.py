"""What the course's own tests iterate over: every part with a master, its exercises and its wrong answers."""

from __future__ import annotations

import importlib
from types import ModuleType

from utils.checks import Exercise, exercises_of
from utils.course.build_notebooks import parts

PARTS = [p.name for p in parts()]


def wrong_module(part: str) -> ModuleType:
    """``tests/wrong/wrong_NN_name.py``: realistic wrong implementations of each exercise of a part."""
    return importlib.import_module(f"tests.wrong.wrong_{part}")


def all_exercises() -> list[tuple[str, Exercise]]:
    return [(part, ex) for part in PARTS for ex in exercises_of(part)]


def as_tuple(entry) -> tuple:
    """A wrong entry is the object itself (one-object exercises) or a tuple in the exercise's object order."""
    return entry if isinstance(entry, tuple) else (entry,)
