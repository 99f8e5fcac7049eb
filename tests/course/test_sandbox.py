"""The grading sandbox starts wherever the teacher's Python lives, and shows the learner's code nothing else.

CI installs the course into a virtual environment under ``/tmp``, and many teachers keep theirs under
``/home``: the sandbox's own empty ``/tmp`` and ``/home`` must not hide it (when they did, class grading fell
back to running every notebook unsandboxed)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from utils.course.sandbox import bwrap_path
from utils.paths import repo_root

needs_bwrap = pytest.mark.skipif(bwrap_path() is None, reason="no working bubblewrap here")


def _venv_under(folder: Path) -> Path:
    """A virtual environment in ``folder`` that sees this one's packages (a ``.pth`` file): its prefix, the
    interpreter the sandbox must bind, is inside ``folder``."""
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(folder.glob("lib/python*/site-packages"))
    (site / "course.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return folder / "bin" / "python"


@needs_bwrap
@pytest.mark.parametrize("under", ["/tmp", "/home"])
def test_the_sandbox_starts_with_a_python_under_tmp_or_home(under: str, tmp_path_factory) -> None:
    base = Path(under)
    if not base.is_dir():
        pytest.skip(f"no {under} here")
    folder = (
        Path(tmp_path_factory.mktemp("venv"))
        if under == "/tmp"
        else base / f"sae-course-test-{tmp_path_factory.getbasetemp().name}"
    )
    try:
        python = _venv_under(folder / "venv")
        probe = (
            "from pathlib import Path; from utils.course.sandbox import sandbox_unavailable as u; print(u(Path(%r)))"
        )
        done = subprocess.run(
            [str(python), "-c", probe % str(repo_root())], cwd=repo_root(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "None", f"the sandbox did not start for a Python in {folder}: {done.stdout}"
    finally:
        if under == "/home":
            subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_only_package_folders_of_the_path_are_shown_to_the_learner(tmp_path) -> None:
    """A folder of the teacher's that is on ``sys.path`` (the working folder, PYTHONPATH) is not bound into the
    sandbox; the Python installation and its site-packages are."""
    private = tmp_path / "teachers-notes"
    private.mkdir()
    probe = (
        "from pathlib import Path; from utils.course.sandbox import _read_only_paths as r; "
        f"print('\\n'.join(r(Path({str(repo_root())!r}))[0]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=private,
        env={"PYTHONPATH": f"{repo_root()}:{private}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    binds = done.stdout.split()
    assert not any(str(private).startswith(b) or b.startswith(str(private)) for b in binds), binds
    assert any(Path(sysconfig.get_paths()["purelib"]).resolve().is_relative_to(b) for b in binds), binds
    assert str(repo_root() / "utils") in binds and str(repo_root()) not in binds
