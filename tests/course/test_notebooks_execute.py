"""Every solution notebook runs top to bottom offline with no errors (CI: `pytest -m slow`).

Speed is measured, not asserted (a timed test would flake): each run's wall time is appended to
``$SAE_COURSE_TIMINGS`` (default: a file in the temp folder), which .ci/run prints beside each part's
budget from the README. Each executed notebook is then exported to HTML and opened in headless Chromium
offline: every figure must be drawn there (see ``test_figures_export.py``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.course.browser import cell_seconds
from tests.course.parts import PARTS
from tests.course.test_figures_export import check_exported_figures
from utils.course.build_notebooks import Part
from utils.course.syllabus import info

TIMINGS = Path(os.environ.get("SAE_COURSE_TIMINGS", Path(tempfile.gettempdir()) / "sae-course-notebook-times.txt"))


@pytest.mark.slow
@pytest.mark.parametrize("part", PARTS)
def test_solution_notebook_executes_offline(part: str, tmp_path) -> None:
    p = Part(part)
    nb = nbformat.read(p.solution_notebook, as_version=4)
    os.environ["HF_HUB_OFFLINE"] = "1"
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(p.exercise_notebook.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    minutes = (time.perf_counter() - start) / 60
    slowest = ", ".join(f"cell {i} {t:.0f} s" for t, i in cell_seconds(nb)[:3])
    with TIMINGS.open("a", encoding="utf-8") as log:
        log.write(
            f"{part}: solution notebook executed in {minutes:.1f} min on {os.cpu_count()} CPU cores "
            f"(utils/course/syllabus.py says {info(part).run_time if info(part) else '?'}); slowest cells: {slowest}\n"
        )
    nbformat.write(nb, tmp_path / f"{part}.executed.ipynb")
    check_exported_figures(nb, tmp_path)  # every figure drawn in the offline HTML export
