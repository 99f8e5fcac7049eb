"""A learner distribution that really hides the solutions: for an exam, or a workshop where the teacher reveals them.

    python -m utils.course.handout DIR                          # every part, nothing released
    python -m utils.course.handout DIR --release 1.1,1.2 01_toy_models   # one part; these may be skipped

writes two folders:

- ``DIR/course/``: what learners get (copy it, zip it). The course package, the offline data, the install
  script, the learner's grading tests (``tests/test_NN_name.py``) and, in ``notebooks/``, each part's learner
  notebook without its collapsed Solution blocks and with its text saying so. There is no ``solutions/``
  folder, unless exercises are released: then ``solutions/NN_name.ipynb`` holds the set-up cells and the
  released exercises' reference code only, and ``reference()`` hands out exactly those (any other exercise
  says it is not released). The course's own tests, the wrong implementations used to test the checks and the
  CI scripts are left out.
- ``DIR/answers/``: ``NN_name_solutions.ipynb``, every exercise's reference code after the set-up cells, for
  the teacher to share at a checkpoint or after the day.

Grading stays on the teacher's side, from the teacher's full copy of the course
(``python -m utils.course.grade_class``). What a handout does not hide: the course's library implements, as any
SAE library would, what several exercises ask for (``utils.sae``), and each check holds the formula it
compares against; a learner who reads the package can find them. The teachers' guide says so.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import nbformat

from utils.course.build_notebooks import MARKER, Part, build, drop_markers, parts, read_master, render, tags
from utils.course.identify import defined_names
from utils.paths import repo_root

#: What a learner distribution holds, relative to the course root (folders are copied whole, minus caches).
SHIPPED = ("utils", "data", "README.md", "environment.yml", "pyproject.toml", "install.py", "LICENSE")
#: The learner's grading tests under ``tests/``; the course's own tests (``tests/course``, ``tests/wrong``,
#: ``tests/benchmarks``) hold solved notebooks and wrong answers and are not shipped.
LEARNER_TESTS = ("__init__.py", "conftest.py", "grading.py", "test_[0-9][0-9]*.py")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".ipynb_checkpoints")

README_NOTE = """\
> **This copy of the course is a handout.** Its notebooks have no Solution blocks and it has no reference
> solutions, {released}. Your teacher grades your notebooks; `python -m pytest` still checks your work
> as you go.

"""


SOLUTIONS_NOTE = """\
# No solutions in this handout

This copy of the course has no reference solutions, {released}. Your teacher shares the answers.
"""


def _released_text(release: set[str]) -> str:
    if not release:
        return "so skipping ahead with `reference()` is not available"
    return f"except those of the exercises your teacher released ({', '.join(sorted(release))}), for `reference()`"


def released_solutions(part, release: set[str]) -> nbformat.NotebookNode | None:
    """The solution notebook a handout ships for ``part``: set-up cells and the released exercises' reference
    code only (None if none of its exercises is released). ``utils.course.reference`` reads the released list
    from its metadata."""
    from utils.checks import exercises_of

    exercises = [ex for ex in exercises_of(part.name) if ex.id in release]
    if not exercises:
        return None
    names = {name for ex in exercises for name in ex.objects}
    nb = nbformat.v4.new_notebook(
        metadata={"sae_course": {"part": part.name, "released": sorted(ex.id for ex in exercises)}}
    )
    for cell in read_master(part).cells:
        cell_tags = tags(cell)
        if cell.cell_type != "code":
            continue
        if "setup" in cell_tags:
            nb.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"tags": ["setup"]}))
        elif "exercise" in cell_tags and _defines_any(cell.source, names):
            nb.cells.append(nbformat.v4.new_code_cell(drop_markers(cell.source), metadata={"tags": ["exercise"]}))
    for k, cell in enumerate(nb.cells):
        cell["id"] = f"{part.name[:2]}r-{k:03d}"
    return nb


def _defines_any(source: str, names: set[str]) -> bool:
    return bool(defined_names(ast.parse(source)) & names)


def reference_lines(part: str) -> dict[str, list[str]]:
    """Each exercise's distinctive reference lines, by exercise id: the lines between its solution markers that
    are long enough not to occur by chance and that the learner's notebook does not show anyway."""
    from utils.checks import exercises_of

    master = read_master(Part(part))
    shown = "\n".join(c.source for c in build(master, part, solution=False, handout=True).cells
                      if "solution" not in c.metadata.get("tags", []))  # fmt: skip
    by_id = {}
    for ex in exercises_of(part):
        lines = []
        for cell in master.cells:
            if "exercise" not in tags(cell) or not _defines_any(cell.source, set(ex.objects)):
                continue
            inside = False
            for line in cell.source.splitlines():
                if MARKER.match(line):
                    inside = "BEGIN" in line
                    continue
                text = line.strip()
                if inside and len(text) >= 25 and not text.startswith("#") and text not in shown:
                    lines.append(text)
        by_id[ex.id] = lines
    return by_id


def notebook_sources(path: Path) -> str:
    """The cell sources of a notebook file, joined (its JSON escapes quotes; the code is what counts)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return ""
    return "\n".join("".join(c.get("source", "")) for c in cells)


def given_away(folder: Path, parts: list[str], release: set[str]) -> dict[str, list[str]]:
    """Unreleased exercises of ``parts`` whose reference code is in ``folder``'s notebooks anyway, with the files:
    a later part's set-up cells that hand out an earlier part's answers (Part 2a starts from Part 1's toy model).
    A line that a released exercise shares does not count."""
    texts = {p: notebook_sources(p) for p in folder.rglob("*.ipynb")}
    lines_by_part = {part: reference_lines(part) for part in parts}
    shared = {li for lines in lines_by_part.values() for i, ls in lines.items() if i in release for li in ls}
    found: dict[str, list[str]] = {}
    for lines in lines_by_part.values():
        for exercise_id, own in lines.items():
            own = [li for li in own if li not in shared]
            if exercise_id in release or not own:
                continue
            where = sorted(str(p.relative_to(folder)) for p, text in texts.items() if any(li in text for li in own))
            if where:
                found[exercise_id] = where
    return found


def _copy_course(root: Path, dest: Path, release: set[str]) -> None:
    for name in SHIPPED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORED)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    (dest / "tests").mkdir()
    for pattern in LEARNER_TESTS:
        for src in sorted((root / "tests").glob(pattern)):
            shutil.copy2(src, dest / "tests" / src.name)
    readme = dest / "README.md"
    if readme.is_file():
        note = README_NOTE.format(released=_released_text(release))
        readme.write_text(note + readme.read_text(encoding="utf-8"), encoding="utf-8")


def unknown_exercises(release: Iterable[str]) -> list[str]:
    """The ids in ``release`` that are no exercise of the course."""
    from utils.course.reference import all_exercise_ids

    known = set(all_exercise_ids())
    return sorted(set(release) - known)


def notebooks(part: Part) -> dict[str, nbformat.NotebookNode]:
    """Notebooks for handing out, by file name: the learner's without its collapsed Solution blocks (for
    exams, or workshops where the teacher reveals the answers), and ``NN_name_solutions.ipynb``: each
    exercise's header and reference code (after the set-up cells, so that it runs), to hand out afterwards."""
    master = read_master(part)
    learner = build(master, part.name, solution=False, handout=True)
    learner.cells = [c for c in learner.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    answers = nbformat.v4.new_notebook(
        metadata={**learner.metadata, "sae_course": {"part": part.name, "solutions": True}}
    )
    title = next((c.source.splitlines()[0] for c in master.cells if c.cell_type == "markdown"), part.name)
    answers.cells.append(nbformat.v4.new_markdown_cell(f"{title}: solutions"))
    header = ""
    for cell in master.cells:
        if cell.cell_type == "markdown":
            header = next((line for line in cell.source.splitlines() if line.startswith("## ")), header)
        elif "setup" in tags(cell):
            answers.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"tags": ["setup"]}))
        elif "exercise" in tags(cell):
            if header:
                answers.cells.append(nbformat.v4.new_markdown_cell(header))
                header = ""
            answers.cells.append(nbformat.v4.new_code_cell(drop_markers(cell.source), metadata={"tags": ["exercise"]}))
    for nb, prefix in ((learner, "h"), (answers, "s")):
        for k, cell in enumerate(nb.cells):
            cell["id"] = f"{part.name[:2]}{prefix}-{k:03d}"
    return {f"{part.name}.ipynb": learner, f"{part.name}_solutions.ipynb": answers}


def write_handout(dest: Path, parts: list, release: set[str]) -> list[Path]:
    """Write ``dest/course`` (the learner distribution) and ``dest/answers`` for ``parts``; returns what it wrote.

    ``dest/course`` must not exist yet (a distribution is made whole, never merged into an old one)."""
    course, answers = dest / "course", dest / "answers"
    if course.exists():
        raise FileExistsError(f"{course} exists already: remove it or choose another folder")
    unknown = unknown_exercises(release)
    if unknown:
        raise ValueError(f"--release names no exercise of the course: {', '.join(unknown)}")
    _copy_course(repo_root(), course, release)
    written = [course]
    (course / "notebooks").mkdir()
    (course / "solutions").mkdir()  # also how utils.paths.repo_root recognises a copy of the course
    (course / "solutions" / "README.md").write_text(SOLUTIONS_NOTE.format(released=_released_text(release)))
    answers.mkdir(parents=True, exist_ok=True)
    for part in parts:
        files = notebooks(part)
        path = course / "notebooks" / f"{part.name}.ipynb"
        path.write_text(render(files[f"{part.name}.ipynb"]), encoding="utf-8")
        path = answers / f"{part.name}_solutions.ipynb"
        path.write_text(render(files[f"{part.name}_solutions.ipynb"]), encoding="utf-8")
        written.append(path)
        solutions = released_solutions(part, release)
        if solutions is not None:
            path = course / "solutions" / f"{part.name}.ipynb"
            path.write_text(render(solutions), encoding="utf-8")
            written.append(path)
    for exercise_id, where in given_away(course, [p.name for p in parts], release).items():
        print(
            f"note: Exercise {exercise_id}'s reference code is in {', '.join(where)} (a later part starts from "
            f"it): hand that part out once Exercise {exercise_id} is done"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="where to write course/ (for learners) and answers/ (for you)")
    parser.add_argument(
        "--release",
        default="",
        metavar="IDS",
        help="exercises learners may skip with reference(), e.g. 1.1,1.2 (default: none)",
    )
    parser.add_argument("parts", nargs="*", help="part names (default: all), e.g. 01_toy_models")
    args = parser.parse_intermixed_args(argv)
    chosen = [p for p in parts() if not args.parts or p.name in args.parts]
    if args.parts and len(chosen) != len(args.parts):
        parser.error(f"unknown part among {args.parts}; known: {[p.name for p in parts()]}")
    release = {r.strip() for r in args.release.split(",") if r.strip()}
    try:
        written = write_handout(args.dest, chosen, release)
    except (FileExistsError, ValueError) as e:
        parser.error(str(e))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
