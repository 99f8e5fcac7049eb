"""Pytest set-up shared by the learner's grading tests and the course's own tests.

``pytest`` grades the notebooks in ``notebooks/`` (or ``--notebooks DIR``). Each notebook is graded once
per session, in a worker process, for just the exercises selected (``-k`` narrows it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.grading import grade_notebook
from utils.paths import repo_root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--notebooks",
        default=str(repo_root() / "notebooks"),
        help="folder of the notebooks to grade (default: notebooks/, the learner's copies)",
    )


def _selected_ids(session: pytest.Session, part: str) -> list[str]:
    """The exercise ids of ``part`` among the tests this session runs (after -k/-m selection)."""
    ids = []
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        exercise = params.get("exercise")
        if exercise is not None and getattr(item.module, "PART", None) == part:
            ids.append(exercise.id)
    return ids


@pytest.fixture(scope="session")
def notebook_grades(request: pytest.FixtureRequest):
    """``notebook_grades(part)`` → results by exercise id for the learner's notebook of ``part``."""
    cache: dict[str, dict] = {}
    folder = Path(request.config.getoption("--notebooks"))

    def grades(part: str) -> dict:
        if part not in cache:
            cache[part] = grade_notebook(folder / f"{part}.ipynb", part, only=_selected_ids(request.session, part))
        return cache[part]

    return grades

