"""The generator: stubs replace solutions, solutions stay in sync, and hand edits are caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from tests.course.parts import PARTS
from utils.checks import exercises_of
from utils.course import build_notebooks as bn
from utils.paths import repo_root

METHOD = '''\
class Model:
    def forward(self, x):
        """Doubles x."""
        y = 2
        # BEGIN SOLUTION
        return x * y
        # END SOLUTION
'''


def test_stub_replaces_solution_and_keeps_signature_and_docstring() -> None:
    stub = bn.strip_solution(METHOD)
    assert "return x * y" not in stub
    assert '"""Doubles x."""' in stub and "def forward(self, x):" in stub and "y = 2" in stub
    assert "        raise NotImplementedError()" in stub.splitlines()
    assert bn.drop_markers(METHOD).count("SOLUTION") == 0 and "return x * y" in bn.drop_markers(METHOD)


@pytest.mark.parametrize(
    "broken", ["# BEGIN SOLUTION\nx = 1\n", "x = 1\n# END SOLUTION\n", "# BEGIN SOLUTION\n# BEGIN SOLUTION\n"]
)
def test_unbalanced_markers_are_an_error(broken: str) -> None:
    with pytest.raises(ValueError, match="SOLUTION"):
        bn.strip_solution(broken)


@pytest.mark.parametrize("part", PARTS)
def test_solution_notebooks_are_in_sync_with_their_masters(part: str) -> None:
    p = bn.Part(part)
    expected = bn.generated_files(p)[p.solution_notebook]
    assert p.solution_notebook.read_text(encoding="utf-8") == expected, (
        f"{p.solution_notebook.name} is stale or hand-edited: run `python -m utils.course.build_notebooks`"
    )


@pytest.mark.parametrize("part", PARTS)
def test_exercise_notebook_keeps_no_solution(part: str) -> None:
    p = bn.Part(part)
    master = bn.read_master(p)
    exercise_nb = bn.build(master, part, solution=False)
    text = "\n".join(c.source for c in exercise_nb.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert text.count("raise NotImplementedError()") >= len(exercises_of(part))
    # The reference answer is there only as a collapsed block generated from the master, after each exercise.
    exercise_cells = [c for c in master.cells if "exercise" in bn.tags(c)]
    generated = exercise_nb.cells
    for cell in exercise_cells:
        stub = bn.strip_solution(cell.source)
        k = next(i for i, c in enumerate(generated) if c.cell_type == "code" and c.source == stub)
        block = generated[k + 1]
        assert block.cell_type == "markdown" and block.source.startswith("<details><summary>Solution</summary>")
        assert bn.drop_markers(cell.source).strip() in block.source
    hand_written = [c for c in master.cells if c.cell_type == "markdown" and "<summary>Solution" in c.source]
    assert not hand_written, f"{part}: write no Solution block by hand; the generator adds one from the code"


@pytest.mark.parametrize("part", PARTS)
def test_every_exercise_has_header_hint_and_a_check_right_after(part: str) -> None:
    """Each exercise: a "## Exercise N.M" header with difficulty, time and a <details> hint, then its code
    cell, then its check. An exercise that fills in another method of a class written in an earlier
    exercise cell ("fill in SAE.loss above") has its check right after its header instead."""
    cells = bn.read_master(bn.Part(part)).cells
    for i, cell in enumerate(cells):
        if "exercise" in bn.tags(cell):
            after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
            assert "check" in bn.tags(after), f"{part}: the code cell after exercise cell {i} is not a check cell"
    for ex in exercises_of(part):
        header = next(
            (i for i, c in enumerate(cells) if c.cell_type == "markdown" and f"## Exercise {ex.id}:" in c.source), None
        )
        assert header is not None, f"{part}: no markdown header '## Exercise {ex.id}: ...'"
        intro, j = [], header
        while cells[j].cell_type == "markdown":
            intro.append(cells[j].source)
            j += 1
        text = "\n".join(intro)
        assert "🔴" in text and "<details>" in text and "minutes" in text, (
            f"{part}: exercise {ex.id} lacks a header with difficulty and time, or a <details> hint"
        )
        code = [c for c in cells[j:] if c.cell_type == "code"][:2]
        check = code[1] if "exercise" in bn.tags(code[0]) else code[0]
        assert "check" in bn.tags(check) and ex.check.__name__ + "(" in check.source, (
            f"{part}: exercise {ex.id}'s check ({ex.check.__name__}) is not called in the check cell right after it"
        )


def fake_repo(tmp_path: Path, monkeypatch) -> Path:
    """A repository root in ``tmp_path`` holding Part 1's master only; returns the master's path."""
    for folder in ("utils", "data", "notebooks", "solutions"):
        (tmp_path / folder).mkdir()
    (tmp_path / "utils" / "paths.py").touch()  # what utils.paths.repo_root looks for
    master = tmp_path / "solutions" / "01_toy_models.py"
    shutil.copy(repo_root() / "solutions" / f"{PARTS[0]}.py", master)
    monkeypatch.setenv("SAE_COURSE_ROOT", str(tmp_path))
    return master


def test_check_mode_catches_stale_and_hand_edited_notebooks(tmp_path: Path, monkeypatch, capsys) -> None:
    master = fake_repo(tmp_path, monkeypatch)
    assert bn.main([]) == 0
    assert bn.main(["--check"]) == 0

    master.write_text(master.read_text(encoding="utf-8") + "\n# %%\nprint('edited master')\n", encoding="utf-8")
    assert bn.main(["--check"]) == 1, "--check passed after the master was edited without regenerating"
    assert bn.main([]) == 0 and bn.main(["--check"]) == 0

    notebook = tmp_path / "solutions" / "01_toy_models.ipynb"
    notebook.write_text(notebook.read_text(encoding="utf-8").replace("import", "import  ", 1), encoding="utf-8")
    capsys.readouterr()
    assert bn.main(["--check"]) == 1, "--check passed after a generated notebook was edited by hand"
    assert "For maintainers" in capsys.readouterr().err


def test_regenerating_leaves_a_learners_edited_notebook_alone_unless_forced(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    master = fake_repo(tmp_path, monkeypatch)
    assert bn.main([]) == 0
    learner = tmp_path / "notebooks" / "01_toy_models.ipynb"

    # Untouched since generated (even re-saved with the same cells): a master edit regenerates it.
    master.write_text(master.read_text(encoding="utf-8") + "\n# %%\nprint('edited master')\n", encoding="utf-8")
    assert bn.main([]) == 0 and "edited master" in learner.read_text(encoding="utf-8")

    # The learner fills in an exercise: regenerating leaves it alone and names the notebook it left.
    nb = nbformat.read(learner, as_version=4)
    cell = next(c for c in nb.cells if "exercise" in bn.tags(c))
    cell.source = cell.source.replace("raise NotImplementedError()", "return 42  # my work")
    nbformat.write(nb, learner)
    mine = learner.read_text(encoding="utf-8")
    master.write_text(master.read_text(encoding="utf-8") + "\n# %%\nprint('edited again')\n", encoding="utf-8")
    capsys.readouterr()
    assert bn.main([]) == 1
    assert learner.read_text(encoding="utf-8") == mine, "the generator overwrote the learner's edited notebook"
    err = capsys.readouterr().err
    assert f"left {learner} alone" in err and "--force" in err
    assert "edited again" in (tmp_path / "solutions" / "01_toy_models.ipynb").read_text(encoding="utf-8")

    assert bn.main(["--force"]) == 0
    assert "my work" not in learner.read_text(encoding="utf-8") and "edited again" in learner.read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize("part", PARTS)
def test_colab_cell_installs_not_editable_keeping_colabs_torch_and_does_nothing_elsewhere(
    part: str, tmp_path: Path, monkeypatch
) -> None:
    """The first code cell of each learner notebook, run as Colab would run it (commands recorded, not run)."""
    import importlib.metadata
    import os
    import subprocess
    import sys
    import types

    nb = nbformat.reads(bn.generated_files(bn.Part(part))[bn.Part(part).exercise_notebook], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "colab" in bn.tags(cell), f"{part}: the first code cell is not the Colab set-up cell"
    source = cell.source.replace("/content", str(tmp_path))
    commands: list[list[str]] = []

    def fake_run(command, check=False, **kwargs):
        commands.append(list(command))
        if command[:2] == ["git", "clone"]:
            Path(command[-1]).mkdir()
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.delenv("SAE_COURSE_ROOT", raising=False)
    exec(source, {})  # not on Colab: nothing happens
    assert commands == [] and "SAE_COURSE_ROOT" not in os.environ

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(source, {})
    clone, install = commands
    assert clone[:2] == ["git", "clone"] and clone[-1] == str(tmp_path / "sae-course")
    assert (
        install[:4] == [sys.executable, "-m", "pip", "install"] and "-e" not in install and "--editable" not in install
    )
    constraints = Path(install[install.index("-c") + 1]).read_text()
    assert constraints.strip() == f"torch=={importlib.metadata.version('torch')}"
    assert install[-1] == str(tmp_path / "sae-course") and os.environ["SAE_COURSE_ROOT"] == str(tmp_path / "sae-course")
    exec(source, {})  # re-running the cell does not clone or install again
    assert len(commands) == 2


@pytest.mark.parametrize("part", PARTS)
def test_each_part_takes_its_times_from_the_syllabus(part: str) -> None:
    """utils/course/syllabus.py holds each part's times once: the README table and the notebook intro both use it."""
    import re

    from utils.course import syllabus

    entry = syllabus.info(part)
    assert entry is not None and not entry.planned, f"utils/course/syllabus.py has no entry for {part}: add one"
    master = bn.Part(part).master.read_text(encoding="utf-8")
    minutes = sum(int(m) for m in re.findall(r"spend up to (\d+) minutes", master))
    assert entry.exercise_minutes == minutes, (
        f"{part}: its exercises add up to {minutes} minutes; update utils/course/syllabus.py"
    )
    assert "{{syllabus.learner_time}}" in master and "{{syllabus.run_time}}" in master, (
        f"{part}: the intro should state its times with {{{{syllabus.learner_time}}}} and {{{{syllabus.run_time}}}}"
    )
    built = bn.build(bn.read_master(bn.Part(part)), part, solution=False)
    text = "\n".join(c.source for c in built.cells)
    assert "{{syllabus." not in text and entry.learner_time in text and entry.run_time in text


def test_readme_parts_table_is_the_syllabus() -> None:
    from utils.course import syllabus

    readme = (repo_root() / "README.md").read_text(encoding="utf-8")
    assert syllabus.readme_table() in readme, (
        "README's Parts table is stale: paste the output of `python -m utils.course.syllabus`"
    )
    with pytest.raises(KeyError, match="unknown placeholder"):
        syllabus.fill("{{syllabus.nonsense}}", PARTS[0])
    with pytest.raises(KeyError, match="no entry"):
        syllabus.fill("{{syllabus.title}}", "99_nothing")


@pytest.mark.parametrize("part", PARTS)
def test_master_prose_is_clean_and_each_exercise_heading_starts_its_cell(part: str) -> None:
    """No control characters (a "\\times" written in a plain Python string becomes a TAB), and no
    "## Exercise" heading buried inside the previous markdown cell."""
    import re

    text = bn.Part(part).master.read_text(encoding="utf-8")
    bad = [
        (n, repr(line)) for n, line in enumerate(text.splitlines(), 1) if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line)
    ]
    assert not bad, f"{part}: control characters in the master at {bad[:3]}"
    for cell in bn.read_master(bn.Part(part)).cells:
        if cell.cell_type == "markdown":
            buried = [line for line in cell.source.splitlines()[1:] if line.startswith("## Exercise ")]
            assert not buried, f"{part}: {buried[0]!r} should start its own markdown cell"
