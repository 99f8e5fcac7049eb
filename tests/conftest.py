"""Pytest set-up shared by the learner's grading tests and the course's own tests.

``python -m pytest`` collects only ``tests/test_NN_name.py`` (see ``testpaths`` in pyproject.toml): it grades
the learner's notebooks in ``notebooks/`` (or ``--notebooks DIR``) and nothing else. The course's own tests
run with ``python -m pytest tests/course``.

Grading: every selected part's notebook is graded once per session, all parts at once (one worker process
per notebook, in parallel), for just the exercises selected (``-k`` narrows it). The run ends with one line
per exercise ("Your grades"), and pytest's own failure sections and summary are left out for grading runs,
so that each thing is said once.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from utils.paths import repo_root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--notebooks",
        default=str(repo_root() / "notebooks"),
        help="folder of the notebooks to grade (default: notebooks/, the learner's copies)",
    )
    parser.addoption(
        "--sandbox",
        action="store_true",
        help="grade each notebook in the sandbox a teacher's class grading uses (slower to start)",
    )


def _grading_target(item: pytest.Item) -> tuple[str, object] | None:
    """``(part, exercise)`` if ``item`` grades one exercise of a learner's notebook, else None."""
    exercise = getattr(getattr(item, "callspec", None), "params", {}).get("exercise")
    part = getattr(getattr(item, "module", None), "PART", None)
    return (part, exercise) if exercise is not None and part is not None else None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pure grading run, let the "Your grades" lines be the report: no failure sections, no summary."""
    if items and all(_grading_target(item) for item in items):
        config.option.tbstyle = "no"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.reportchars = "E"  # a grader error (not a learner's failure) still gets its summary line
        config.stash[_GRADING_RUN] = True


_GRADING_RUN = pytest.StashKey[bool]()
_LINES = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def notebook_grades(request: pytest.FixtureRequest):
    """``notebook_grades(part)`` → results by exercise id for the learner's notebook of ``part``, or None
    when that notebook does not exist (a part added to the course after the learner's notebooks were made).

    On first use it starts grading every part this session selects, each in its own worker, in parallel."""
    from utils.course.grading import grade_notebook

    folder = Path(request.config.getoption("--notebooks"))
    strict = request.config.getoption("--sandbox")
    wanted: dict[str, list[str]] = {}
    for item in request.session.items:
        target = _grading_target(item)
        if target:
            wanted.setdefault(target[0], []).append(target[1].id)
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(wanted), os.cpu_count() or 2)))
    futures: dict[str, Future] = {
        part: pool.submit(grade_notebook, folder / f"{part}.ipynb", part, only=ids, sandbox=strict)
        for part, ids in wanted.items()
        if (folder / f"{part}.ipynb").exists()
    }
    yield lambda part: futures[part].result() if part in futures else None
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def grade_lines(request: pytest.FixtureRequest) -> list[str]:
    """Where grading tests put their one line each, for the "Your grades" summary."""
    return request.config.stash.setdefault(_LINES, [])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_LINES, [])
    if not lines:
        return
    terminalreporter.section(f"Your grades ({config.getoption('--notebooks')})")
    for line in lines:
        terminalreporter.line(line)
