"""A handout hides the solutions: the learner distribution holds no reference code of an unreleased exercise,
``reference()`` hands out exactly the released ones, its text says so, and a learner can still check their work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import utils.course.build_notebooks as bn
import utils.course.handout as handout
from tests.course.parts import solved_by_a_learner
from utils.checks import exercises_of
from utils.course.handout import given_away, notebook_sources, reference_lines

PART = "01_toy_models"
RELEASED = "1.1"


@pytest.fixture(scope="module")
def handout_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("handout")
    assert handout.main([str(dest), "--release", RELEASED, PART]) == 0
    return dest


def _files_text(folder: Path) -> str:
    """Every file's text, notebooks as their cell sources (their JSON escapes quotes)."""
    return "\n".join(notebook_sources(p) if p.suffix == ".ipynb" else p.read_text(encoding="utf-8", errors="replace")
                     for p in folder.rglob("*") if p.is_file())  # fmt: skip


def test_the_distribution_holds_no_unreleased_reference_code(handout_dir) -> None:
    course = handout_dir / "course"
    assert not (course / "tests" / "course").exists() and not (course / "tests" / "wrong").exists()
    assert not (course / ".ci").exists()
    assert sorted(p.name for p in (course / "solutions").iterdir()) == [f"{PART}.ipynb", "README.md"]
    released = json.loads((course / "solutions" / f"{PART}.ipynb").read_text())
    assert released["metadata"]["sae_course"]["released"] == [RELEASED]
    shipped = _files_text(course / "notebooks") + _files_text(course / "solutions") + _files_text(course / "tests")
    lines = reference_lines(PART)
    assert sum(map(len, lines.values())) > 20, "the test must look for real reference lines"
    released = lines[RELEASED]
    assert released and all(line in shipped for line in released), "the released exercise is shipped"
    for exercise_id, reference in lines.items():
        leaked = [line for line in reference if line in shipped and line not in released]
        if exercise_id != RELEASED:
            assert not leaked, f"Exercise {exercise_id}'s reference code is in the handout: {leaked[:3]}"


def test_a_later_part_that_starts_from_earlier_answers_is_named(tmp_path, capsys) -> None:
    """Part 2a's set-up cells define Part 1's toy model and batch generator: handing both out says so."""
    assert handout.main([str(tmp_path), PART, "02a_sae_toy_models"]) == 0
    out = capsys.readouterr().out
    assert "note: Exercise 1.2's reference code is in notebooks/02a_sae_toy_models.ipynb" in out
    away = given_away(tmp_path / "course", [PART], set())
    assert away["1.2"] == ["notebooks/02a_sae_toy_models.ipynb"]
    assert set(away) < {ex.id for ex in exercises_of(PART)}, away  # not every exercise: Part 2a starts from some


def test_the_text_matches_the_handout(handout_dir) -> None:
    for part in (PART,):
        nb = json.loads((handout_dir / "course" / "notebooks" / f"{part}.ipynb").read_text())
        text = "\n".join("".join(c["source"]) for c in nb["cells"])
        assert "<summary>Solution" not in text and "# BEGIN SOLUTION" not in text
        assert bn.COURSE_TEXT["peek"][0] not in text and bn.COURSE_TEXT["peek"][1] in text
        assert "{{course." not in text
        assert nb["metadata"]["sae_course"]["part"] == part  # the teacher's grader recognises it
    readme = (handout_dir / "course" / "README.md").read_text()
    assert readme.startswith("> **This copy of the course is a handout.**") and f"({RELEASED})" in readme


def _run_in(course: Path, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SAE_COURSE_ROOT"} | {"PYTHONPATH": str(course)}
    return subprocess.run([sys.executable, "-c", code], cwd=course / "notebooks", env=env, text=True,
                          capture_output=True, timeout=300)  # fmt: skip


def test_reference_hands_out_exactly_the_released_exercises(handout_dir) -> None:
    code = f"""
import utils.paths, utils.course.reference as r
assert utils.paths.repo_root().name == "course", utils.paths.repo_root()
model = r.reference({RELEASED!r})
print("released:", model.__name__)
try:
    r.reference("1.2")
except r.ReferenceUnavailable as e:
    print("unreleased:", e)
try:
    r.needs("1.3", where={{}})
except r.ExerciseNeeded as e:
    print("needs:", e)
"""
    proc = _run_in(handout_dir / "course", code)
    assert proc.returncode == 0, proc.stderr
    assert "released: ToyModel" in proc.stdout
    assert "unreleased: Exercise 1.2 is not released in this handout" in proc.stdout
    assert "needs:" in proc.stdout and "reference(" not in proc.stdout.split("needs:")[1]
    assert "ask your teacher" in proc.stdout.split("needs:")[1]


def test_unknown_release_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        handout.main([str(tmp_path), "--release", "1.1,9.9", PART])
    assert "9.9" in capsys.readouterr().err


@pytest.mark.slow
def test_a_learner_checks_their_work_in_the_handout(handout_dir, tmp_path) -> None:
    """``python -m pytest`` in the distribution: the handout notebook grades 'not attempted', a solved one passes."""
    course = handout_dir / "course"
    solved = solved_by_a_learner(json.loads(bn.Part(PART).solution_notebook.read_text()))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / f"{PART}.ipynb").write_text(json.dumps(solved))
    env = {k: v for k, v in os.environ.items() if k != "SAE_COURSE_ROOT"} | {"PYTHONPATH": str(course)}
    for folder, expected in ((course / "notebooks", "not attempted"), (mine, "passed")):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", f"tests/test_{PART}.py", "-q", "-p", "no:cacheprovider",
             "--notebooks", str(folder)],
            cwd=course, env=env, text=True, capture_output=True, timeout=900,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if "Exercise 1." in line]
        assert len(lines) == len(exercises_of(PART)), proc.stdout[-2000:]
        assert all(expected in line.lower() for line in lines), proc.stdout[-2000:]
