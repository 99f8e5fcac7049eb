"""Every cell that uses an exercise's work stops with one line when the exercise is not done, in every part.

A learner who skips an exercise (or runs "Run All" on a fresh notebook) must meet ``needs(...)``'s message,
which names the exercise and the line that goes on with the reference, not a bare ``NotImplementedError`` from
deep inside a helper. This reads each master: a code cell (not an exercise, check or set-up cell) that calls an
exercise's object, or a function or class defined from one in an earlier cell, must call ``needs`` with those
exercises at its top level before its first statement that is not a definition."""

from __future__ import annotations

import ast

import pytest

from tests.course.parts import PARTS
from utils.course.build_notebooks import Part, read_master, tags
from utils.course.exercise_index import exercise_index


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _needs_ids(node: ast.stmt) -> set[str] | None:
    """The exercise ids of a top-level ``needs("1.1", ..., where=globals())`` statement, else None."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        call = node.value
        if isinstance(call.func, ast.Name) and call.func.id == "needs":
            return {a.value for a in call.args if isinstance(a, ast.Constant)}
    return None


def unguarded(part: str) -> list[tuple[int, list[str], str]]:
    """(cell index, the exercises it needs but does not name before using them, its first line) per bad cell."""
    owner = {name: ex.id for ex in exercise_index(part) for name in ex.objects}
    carried: dict[str, set[str]] = {}  # a function or class defined from exercise objects -> their exercises
    bad = []
    for i, cell in enumerate(read_master(Part(part)).cells):
        if cell.cell_type != "code" or tags(cell) & {"exercise", "setup"}:
            continue
        tree = ast.parse(cell.source)
        named: set[str] = set()
        missing: set[str] = set()
        for node in tree.body:
            ids = _needs_ids(node)
            if ids is not None:
                named |= ids
                continue
            needed = {owner[n] for n in _loads(node) if n in owner}
            for name in _loads(node):
                needed |= carried.get(name, set())
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if needed:
                    carried.setdefault(node.name, set()).update(needed)
                continue  # a definition runs nothing yet
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                missing |= needed - named
        if missing and not tags(cell) & {"check", "solution-only"}:
            order = [ex.id for ex in exercise_index(part)]
            bad.append((i, sorted(missing, key=order.index), cell.source.splitlines()[0][:60]))
    return bad


@pytest.mark.parametrize("part", PARTS)
def test_cells_that_use_an_exercise_say_so_when_it_is_not_done(part) -> None:
    assert not unguarded(part), (
        f"these cells use exercises without `needs(...)` first (cell index, exercises, first line): {unguarded(part)}"
    )


def test_the_guard_test_sees_a_missing_guard(monkeypatch) -> None:
    """The analysis itself: a cell calling an exercise's object through a helper, unguarded, is found."""
    import nbformat

    import tests.course.test_skip_ahead_guards as me

    exercise = exercise_index("01_toy_models")[0]
    cells = [
        nbformat.v4.new_code_cell(f"def helper():\n    return {exercise.objects[0]}"),
        nbformat.v4.new_code_cell("x = helper()"),
        nbformat.v4.new_code_cell(f'needs("{exercise.id}", where=globals())\ny = helper()'),
    ]
    monkeypatch.setattr(me, "read_master", lambda part: nbformat.v4.new_notebook(cells=cells))
    assert [(i, ids) for i, ids, _ in me.unguarded("01_toy_models")] == [(1, [exercise.id])]
