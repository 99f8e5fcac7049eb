"""Grading a class: a folder of mixed notebooks (any parts, any names, broken and foreign ones) into one table."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.course.parts import PARTS, solved_by_a_learner
from utils.checks import exercises_of
from utils.course import build_notebooks as bn
from utils.course import grade_class as gc
from utils.course import handout
from utils.course.grading import FAILED, NOT_ATTEMPTED, PASSED, USED_REFERENCE, Result
from utils.course.sandbox import sandbox_unavailable
from utils.paths import repo_root

PART = PARTS[0]


def generated(part: str, *, solution: bool) -> nbformat.NotebookNode:
    """A fresh exercise notebook, or a solved one (the solution in a learner's own words)."""
    nb = bn.build(bn.read_master(bn.Part(part)), part, solution=solution)
    return solved_by_a_learner(nb) if solution else nb


def save(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def without_metadata(nb) -> nbformat.NotebookNode:
    """A copy as another tool might re-save it: no course metadata, and no cell tags."""
    nb = nbformat.from_dict(nb)
    nb.metadata.pop(gc.METADATA_KEY, None)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    return nb


def foreign_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import math\nprint(math.pi)\ndef my_homework():\n    return 1")]
    return nb


@pytest.mark.parametrize("part", PARTS)
def test_generated_notebooks_declare_their_part(part) -> None:
    for solution in (False, True):
        assert generated(part, solution=solution).metadata[gc.METADATA_KEY]["part"] == part


@pytest.mark.parametrize("part", PARTS)
def test_part_is_identified_from_content_when_metadata_is_lost(part) -> None:
    for solution in (False, True):
        found, how = gc.identify_part(without_metadata(generated(part, solution=solution)), "untitled", PARTS)
        assert found == part and how.startswith("content"), (found, how)


def test_foreign_and_unknown_notebooks_are_not_given_a_part() -> None:
    assert gc.identify_part(foreign_notebook(), "01_toy_models", PARTS)[0] is None
    nb = foreign_notebook()
    nb.metadata[gc.METADATA_KEY] = {"part": "99_nonexistent"}
    part, why = gc.identify_part(nb, "x", PARTS)
    assert part is None and "99_nonexistent" in why


@pytest.mark.parametrize(
    ("relative", "part", "learner"),
    [
        ("alice/01_toy_models.ipynb", "01_toy_models", "alice"),
        ("alice/sub/whatever.ipynb", "01_toy_models", "alice"),
        ("bob_01_toy_models.ipynb", "01_toy_models", "bob"),
        ("Carol Smith - part2a.ipynb", "02a_sae_toy_models", "Carol Smith"),
        ("dave 02b (1).ipynb", "02b_sae_gelu_1l", "dave"),
        ("01_toy_models.ipynb", "01_toy_models", "01_toy_models"),
        ("erin.ipynb", None, "erin"),
        ("Copy of frank (2).ipynb", None, "frank"),
    ],
)
def test_learner_names(relative, part, learner, tmp_path) -> None:
    assert gc.learner_of(tmp_path / relative, tmp_path, part) == learner


def test_checkpoint_copies_are_skipped(tmp_path) -> None:
    save(foreign_notebook(), tmp_path / "a" / "x.ipynb")
    save(foreign_notebook(), tmp_path / "a" / ".ipynb_checkpoints" / "x-checkpoint.ipynb")
    assert gc.find_notebooks(tmp_path) == [tmp_path / "a" / "x.ipynb"]


def fake_grade(path, part, *, only, sandbox=True):
    """Stands in for the real grader: every exercise fails with a message naming the notebook."""
    return {i: Result(i, FAILED, f"<b>{Path(path).name}</b> & co") for i in only}


def test_table_covers_every_notebook_with_fake_grades(tmp_path) -> None:
    """The table's shape and escaping, without running any notebook."""
    folder = tmp_path / "class"
    save(generated(PARTS[0], solution=False), folder / "ann" / "p1.ipynb")
    save(without_metadata(generated(PARTS[-1], solution=True)), folder / "ben.ipynb")
    (folder / "broken.ipynb").write_text("{ not json", encoding="utf-8")
    save(foreign_notebook(), folder / "foreign.ipynb")
    subs = [gc.read_submission(p, folder, PARTS) for p in gc.find_notebooks(folder)]
    gc.grade_all(subs, jobs=2, progress=False, grade=fake_grade)
    table = gc.rows(subs, folder)
    statuses = {(r["learner"], r["status"]) for r in table}
    assert ("ann", FAILED) in statuses and ("ben", FAILED) in statuses
    assert ("broken", gc.BROKEN) in statuses and ("foreign", gc.FOREIGN) in statuses
    n_exercises = len(exercises_of(PARTS[0])) + len(exercises_of(PARTS[-1]))
    assert len(table) == n_exercises + 2
    page = gc.render_html(subs, folder)
    assert "<b>p1.ipynb</b>" not in page and "&lt;b&gt;p1.ipynb&lt;/b&gt; &amp; co" in page
    assert not re.search(r"<script|<link|src=\"http", page), "the page must be self-contained"


def test_grading_a_mixed_folder_end_to_end(tmp_path) -> None:
    """The command itself: real grading of renamed, stripped, broken and foreign notebooks, two at a time.

    The grader's default time limits are kept: nothing here loops, and a loaded CI machine imports slowly."""
    folder = tmp_path / "class"
    save(generated(PART, solution=True), folder / "alice" / "my work.ipynb")  # renamed, metadata kept
    save(without_metadata(generated(PART, solution=False)), folder / "bob_part1.ipynb")  # renamed, metadata lost
    syntax = generated(PART, solution=True)
    cell = next(c for c in syntax.cells if "exercise" in c.metadata.get("tags", []))
    cell.source += "\n    this is not python("
    save(syntax, folder / "carol.ipynb")  # a syntax error in the first exercise
    (folder / "dave.ipynb").write_text('{"cells": [', encoding="utf-8")  # truncated file
    (folder / "erin.ipynb").write_bytes(b"\x00\xff binary")
    save(foreign_notebook(), folder / "frank.ipynb")
    first_two = [e.id for e in exercises_of(PART)[:2]]
    skipped = generated(PART, solution=True)  # skipped ahead past the first exercise with the course's reference
    first = exercises_of(PART)[0]
    cell = next(c for c in skipped.cells if "exercise" in c.metadata.get("tags", []) and first.objects[0] in c.source)
    cell.source = f"from utils.course.reference import reference\n{first.objects[0]} = reference({first.id!r})\n"
    save(skipped, folder / "gina.ipynb")
    out_csv, out_html = tmp_path / "grades.csv", tmp_path / "grades.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "utils.course.grade_class",
            str(folder),
            "--csv",
            str(out_csv),
            "--html",
            str(out_html),
            "--jobs",
            "2",
            "--only",
            ",".join(first_two),
            *([] if sandbox_unavailable(repo_root()) is None else ["--no-sandbox"]),
        ],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Grading" in proc.stderr  # the progress bar
    with open(out_csv, encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    by = {(r["learner"], r["exercise"]): r for r in table}
    for ex_id in first_two:
        assert by[("alice", ex_id)]["status"] == PASSED
        assert by[("bob", ex_id)]["status"] == NOT_ATTEMPTED
    assert by[("carol", first_two[0])]["status"] == FAILED and "SyntaxError" in by[("carol", first_two[0])]["message"]
    assert by[("carol", first_two[1])]["status"] == PASSED, "a broken cell costs only its own exercise"
    assert by[("dave", "")]["status"] == gc.BROKEN and by[("erin", "")]["status"] == gc.BROKEN
    assert by[("frank", "")]["status"] == gc.FOREIGN
    assert by[("gina", first_two[0])]["status"] == USED_REFERENCE and by[("gina", first_two[1])]["status"] == PASSED
    page = out_html.read_text(encoding="utf-8")
    assert all(name in page for name in ("alice", "bob", "carol", "dave", "erin", "frank")) and "SyntaxError" in page
    assert 'class="used-the-reference"' in page and "used the reference (skipped ahead" in page


def test_without_a_sandbox_class_grading_stops_unless_asked(tmp_path, monkeypatch, capsys) -> None:
    """Where the sandbox cannot start, no learner's code runs with the teacher's rights unless the teacher says
    so: the run stops before grading anything, saying why and what to do; ``--no-sandbox`` goes on."""
    save(generated(PART, solution=True), tmp_path / "alice.ipynb")
    graded = []
    monkeypatch.setattr(gc, "sandbox_unavailable", lambda root: "bubblewrap does not run here (a test)")
    monkeypatch.setattr(gc, "grade_all", lambda submissions, **kw: graded.append(kw))
    out = tmp_path / "grades.csv"
    assert gc.main([str(tmp_path), "--csv", str(out), "--no-progress"]) == 2
    said = capsys.readouterr().err
    assert "bubblewrap does not run here (a test)" in said and "--no-sandbox" in said and "your rights" in said
    assert graded == [] and not out.exists()
    assert gc.main([str(tmp_path), "--csv", str(out), "--no-progress", "--no-sandbox"]) == 0
    assert graded and graded[0]["sandbox"] is False


def test_bad_folder_is_a_clear_error(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "utils.course.grade_class", str(tmp_path / "nope"), "--csv", "x.csv"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# Handing out: learner notebooks without Solution blocks, and the solutions on their own.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", PARTS)
def test_handout_has_no_solution_and_solutions_hold_every_exercise(part) -> None:
    files = handout.notebooks(bn.Part(part))
    learner, answers = files[f"{part}.ipynb"], files[f"{part}_solutions.ipynb"]
    assert not any("<summary>Solution" in c.source for c in learner.cells)
    assert not any("# BEGIN SOLUTION" in c.source for c in learner.cells)
    exercise_nb = generated(part, solution=False)
    kept = [c.source for c in exercise_nb.cells if "solution" not in c.metadata.get("tags", [])]
    assert len(learner.cells) == len(kept), "only the Solution blocks are dropped"
    for got, course in zip((c.source for c in learner.cells), kept):
        if got != course:  # a sentence about the solutions: the handout's version of it, and nothing else
            sentences = [(c, h) for c, h in bn.COURSE_TEXT.values() if c in course]
            assert sentences and all(h in got and c not in got for c, h in sentences), got[:300]
    master = bn.read_master(bn.Part(part))
    references = [bn.drop_markers(c.source) for c in master.cells if "exercise" in bn.tags(c)]
    assert [c.source for c in answers.cells if "exercise" in c.metadata.get("tags", [])] == references
    assert gc.identify_part(answers, "x", PARTS)[0] == part


def test_handout_command_writes_the_course_and_the_answers(tmp_path) -> None:
    assert handout.main([str(tmp_path), PART]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers", "course"]
    assert sorted(p.name for p in (tmp_path / "answers").iterdir()) == [f"{PART}_solutions.ipynb"]
    assert sorted(p.name for p in (tmp_path / "course" / "notebooks").iterdir()) == [f"{PART}.ipynb"]
