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


def in_own_words(source: str) -> str:
    """An exercise cell's code as a learner's own solution would be: the same behaviour, not the reference's code
    to the letter (each top-level function or class ends with a ``pass``), so that grading reports it as passed
    rather than as "used the reference" (copied from the solutions)."""
    import ast

    tree = ast.parse(source)
    lines = source.splitlines()
    for node in sorted(tree.body, key=lambda n: n.lineno, reverse=True):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            indent = " " * node.body[0].col_offset
            lines.insert(node.end_lineno, f"{indent}pass  # (written in the learner's own words)")
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def solved_by_a_learner(nb):
    """A solution notebook (nbformat or its JSON as a dict) with every exercise cell in a learner's own words."""
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") == "code" and "exercise" in tags:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = in_own_words(source)
    return nb
