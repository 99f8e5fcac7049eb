"""Which part a notebook is: from the ``metadata.sae_course.part`` field the generator writes, else from its
content (the part whose exercise objects it defines at the top level, the file name as a tie-break).

Used by class grading (``utils.course.grade_class``) and by ``python -m utils.course.grading NOTEBOOK``, so
that a notebook renamed by a learner, or a copy that lost its metadata, is still graded as its part.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from pathlib import Path

#: The notebook metadata key the generator writes (``metadata.sae_course.part``).
METADATA_KEY = "sae_course"


def defined_names(tree: ast.Module) -> set[str]:
    """The names a cell defines at its top level: functions, classes and simple assignments (``x = ...``)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def known_parts() -> list[str]:
    """Every part that has a master and a check module, in course order."""
    from utils.course.exercise_index import exercise_index
    from utils.paths import repo_root

    found = []
    # build_notebooks.parts()'s masters, globbed here: importing build_notebooks imports jupytext and nbformat
    for name in sorted(p.stem for p in (repo_root() / "solutions").glob("[0-9][0-9]*.py")):
        try:
            if exercise_index(name):
                found.append(name)
        except ImportError:
            continue
    return found


def top_level_names(sources: Iterable[str]) -> set[str]:
    """Names a notebook's code cells define at the top level (functions, classes, simple assignments)."""
    names: set[str] = set()
    for source in sources:
        source = "".join(source) if isinstance(source, list) else source  # raw JSON keeps a list of lines
        text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            tree = ast.parse(text)
        except SyntaxError:  # a broken cell still counts by its visible definitions
            names.update(re.findall(r"^(?:def|class)\s+(\w+)", text, flags=re.M))
            continue
        names |= defined_names(tree)
    return names


def _part_tokens(part: str) -> list[str]:
    """Spellings of a part in a file name: ``02a_sae_toy_models``, ``02a``, ``part2a``, ``part_2a``..."""
    number = part.split("_", 1)[0]
    short = number.lstrip("0") or "0"
    return [part, number, f"part{short}", f"part_{short}", f"part-{short}", f"part {short}", f"p{short}"]


def _name_mentions(stem: str, part: str) -> bool:
    low = stem.lower()
    return any(re.search(rf"(?<![0-9a-z]){re.escape(t)}(?![0-9a-z])", low) for t in _part_tokens(part))


def identify_part(nb, stem: str, parts: list[str]) -> tuple[str | None, str]:
    """The part of notebook ``nb`` (named ``stem``) and how it was found, or ``(None, why)``."""
    from utils.course.exercise_index import exercise_index

    declared = nb.get("metadata", {}).get(METADATA_KEY, {})
    declared = declared.get("part") if isinstance(declared, dict) else None
    if declared in parts:
        return declared, "metadata"
    defined = top_level_names(c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code")
    scores = []
    for part in parts:
        objects = {name for ex in exercise_index(part) for name in ex.objects}
        scores.append((len(objects & defined) / len(objects), _name_mentions(stem, part), part))
    scores.sort(reverse=True)
    best_score, _, best = scores[0]
    if best_score >= 0.5:
        return best, f"content ({best_score:.0%} of its exercise objects defined)"
    why = "not a course notebook: no part's exercise functions or classes are defined in it"
    if declared:
        why = f"its metadata names an unknown part {declared!r}, and " + why.removeprefix("not a course notebook: ")
    return None, why


def part_of_file(notebook: Path) -> tuple[str | None, str]:
    """The part of the notebook saved at ``notebook``, and how it was found (or why none was)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    return identify_part(nb, Path(notebook).stem, known_parts())
