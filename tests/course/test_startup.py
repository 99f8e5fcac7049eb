"""What the course's commands import at start-up (``tests/benchmarks/bench_startup.py`` times them): pytest's
collection of the grading tests, ``python -m utils.course.grading`` and the grader's parent process import no torch;
the grader's worker, which runs the checks, imports torch but neither TransformerLens nor plotly until a notebook's
cells do. Nothing here is timed: each test asks a fresh interpreter which modules an import left in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils.paths import repo_root

PARTS = (
    "01_toy_models",
    "02a_sae_toy_models",
    "02b_sae_gelu_1l",
    "03_dead_latents",
    "04_latent_activations",
    "05_latent_effects",
)
HEAVY = ("torch", "transformer_lens", "plotly", "datasets", "transformers", "nbformat", "jupytext", "scipy")


def imported_after(code: str) -> set[str]:
    """The heavy top-level packages (of ``HEAVY``) in ``sys.modules`` after a fresh interpreter runs ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo_root(), capture_output=True, text=True, check=True, timeout=300
    ).stdout
    return set(json.loads(out.splitlines()[-1])) & set(HEAVY)


def test_the_grading_module_and_the_collection_of_grading_tests_import_no_torch():
    code = "import utils.course.grading\nfrom tests.grading import grading_test\n" + "".join(
        f"grading_test({part!r})\n" for part in PARTS
    )
    assert imported_after(code) == set()


def test_naming_a_notebooks_part_imports_no_torch():
    """``python -m utils.course.grading NOTEBOOK`` finds the part of a notebook before grading it."""
    assert imported_after("from utils.course.identify import known_parts\nassert known_parts()") == set()


def test_the_workers_checks_import_torch_but_no_transformer_lens_or_plotly():
    code = (
        "from utils.course.grading import _quiet_plots\n_quiet_plots()\nfrom utils.checks import exercises_of\n"
        + "".join(f"exercises_of({part!r})\n" for part in PARTS)
    )
    assert imported_after(code) == {"torch"}


def test_figures_are_silenced_once_plotly_is_imported():
    code = (
        "from utils.course.grading import _quiet_plots\n_quiet_plots()\n"
        "import sys\nassert 'plotly' not in sys.modules\n"
        "import plotly.graph_objects as go\nassert go.Figure().show() is None\n"
        "assert go.Figure.show.__qualname__.startswith('_quiet_plots')\n"
    )
    assert imported_after(code) == {"plotly"}


@pytest.mark.parametrize("part", PARTS)
def test_the_exercise_index_is_the_registry(part):
    """The exercises read from a check module's source are those its decorators register, in the same order."""
    from utils.checks import exercises_of
    from utils.course.exercise_index import exercise_index

    fields = lambda e: (e.id, e.title, e.objects, e.part, e.slug)  # noqa: E731
    assert [fields(e) for e in exercise_index(part)] == [fields(e) for e in exercises_of(part)]
