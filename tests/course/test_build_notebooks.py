"""The generator: stubs replace solutions, solutions stay in sync, and hand edits are caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.course.parts import PARTS
from utils import build_notebooks as bn
from utils.checks import exercises_of
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


@pytest.mark.parametrize("broken", ["# BEGIN SOLUTION\nx = 1\n", "x = 1\n# END SOLUTION\n", "# BEGIN SOLUTION\n# BEGIN SOLUTION\n"])
def test_unbalanced_markers_are_an_error(broken: str) -> None:
    with pytest.raises(ValueError, match="SOLUTION"):
        bn.strip_solution(broken)


@pytest.mark.parametrize("part", PARTS)
def test_solution_notebooks_are_in_sync_with_their_masters(part: str) -> None:
    p = bn.Part(part)
    expected = bn.generated_files(p)[p.solution_notebook]
    assert p.solution_notebook.read_text(encoding="utf-8") == expected, (
        f"{p.solution_notebook.name} is stale or hand-edited: run `python -m utils.build_notebooks`"
    )


@pytest.mark.parametrize("part", PARTS)
def test_exercise_notebook_keeps_no_solution(part: str) -> None:
    p = bn.Part(part)
    master = bn.read_master(p)
    exercise_nb = bn.build(master, part, solution=False)
    text = "\n".join(c.source for c in exercise_nb.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert text.count("raise NotImplementedError()") >= len(exercises_of(part))


@pytest.mark.parametrize("part", PARTS)
def test_every_exercise_has_header_hint_and_a_check_right_after(part: str) -> None:
    cells = bn.read_master(bn.Part(part)).cells
    checked = set()
    for i, cell in enumerate(cells):
        if "exercise" not in bn.tags(cell):
            continue
        after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
        assert "check" in bn.tags(after), f"{part}: the code cell after exercise cell {i} is not a check cell"
        before = []
        for c in reversed(cells[:i]):
            if c.cell_type == "code" and bn.tags(c) & {"check", "exercise"}:
                break
            if c.cell_type == "markdown":
                before.append(c.source)
        intro = "\n".join(before)
        assert "🔴" in intro and "<details>" in intro and "minutes" in intro, (
            f"{part}: exercise cell {i} lacks a header with difficulty and time, or a <details> hint"
        )
        checked |= {name for ex in exercises_of(part) if ex.check.__name__ + "(" in after.source for name in [ex.id]}
    missing = {ex.id for ex in exercises_of(part)} - checked
    assert not missing, f"{part}: exercises {sorted(missing)} have no check cell calling their check"


def test_check_mode_catches_stale_and_hand_edited_notebooks(tmp_path: Path, monkeypatch) -> None:
    for folder in ("utils", "data", "notebooks", "solutions"):
        (tmp_path / folder).mkdir()
    master = tmp_path / "solutions" / "01_toy_models.py"
    shutil.copy(repo_root() / "solutions" / f"{PARTS[0]}.py", master)
    monkeypatch.setenv("SAE_COURSE_ROOT", str(tmp_path))
    assert bn.main([]) == 0
    assert bn.main(["--check"]) == 0

    master.write_text(master.read_text(encoding="utf-8") + "\n# %%\nprint('edited master')\n", encoding="utf-8")
    assert bn.main(["--check"]) == 1, "--check passed after the master was edited without regenerating"
    assert bn.main([]) == 0 and bn.main(["--check"]) == 0

    notebook = tmp_path / "solutions" / "01_toy_models.ipynb"
    notebook.write_text(notebook.read_text(encoding="utf-8").replace("import", "import  ", 1), encoding="utf-8")
    assert bn.main(["--check"]) == 1, "--check passed after a generated notebook was edited by hand"
