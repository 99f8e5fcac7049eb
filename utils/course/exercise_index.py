"""The exercises of a part, read from its check module's source without importing it.

``utils.checks.exercises_of`` imports the part's check module, and with it torch (seconds on a busy laptop).
What pytest's collection, the grader's parent process and ``python -m utils.course.grading`` need of an exercise
is its id, title and objects, all written literally in its ``@exercise("1.2", "title", objects=[...])``
decorator: this module reads them from the syntax tree of ``utils/checks/part<part>.py``, so that those commands
start without torch. Only the worker, which runs the checks, imports them. ``tests/course/test_startup.py``
checks that both give the same exercises, and that these commands import no torch.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["ExerciseInfo", "exercise_index"]

CHECKS = Path(__file__).resolve().parents[1] / "checks"


@dataclass(frozen=True)
class ExerciseInfo:
    """An exercise as its decorator declares it: id ("1.2"), title, the learner objects the check takes."""

    id: str
    title: str
    objects: tuple[str, ...]
    part: str

    @property
    def slug(self) -> str:
        """A pytest-friendly name, e.g. ``1.2-generate_batch`` (as ``utils.checks.Exercise.slug``)."""
        return f"{self.id}-{self.objects[0]}"


@cache
def exercise_index(part: str) -> tuple[ExerciseInfo, ...]:
    """The exercises of ``part`` in notebook order (the order of the decorators in the module, as registered).

    Raises ``ImportError`` when the part has no check module, as importing it would."""
    path = CHECKS / f"part{part}.py"
    if not path.exists():
        raise ImportError(f"no check module utils.checks.part{part}")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Name)
                and decorator.func.id == "exercise"
            ):
                continue
            ex_id, title = (ast.literal_eval(arg) for arg in decorator.args)
            objects = next(ast.literal_eval(kw.value) for kw in decorator.keywords if kw.arg == "objects")
            found.append((node.lineno, ExerciseInfo(ex_id, title, tuple(objects), part)))
    return tuple(info for _, info in sorted(found, key=lambda pair: pair[0]))
