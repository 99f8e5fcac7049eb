"""Figures survive the trip to every front end: an executed notebook exported with ``nbconvert --to html`` and
opened in headless Chromium with the network off shows every plotly figure, and its formulas are typeset.

Here a small notebook; the slow suite does the same for every executed solution notebook
(``test_notebooks_execute.py``). See :mod:`utils.parts.plot_rendering` for the renderer the course picks.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.course import browser
from utils.paths import repo_root

CELLS = [
    ("markdown", "# Figures offline\n\nA formula: $W^\\top W x$, and $$\\hat x = \\mathrm{ReLU}(W^\\top W x + b).$$"),
    ("code", "import plotly.graph_objects as go\nfrom utils import plot_toy_models  # picks the course's renderer"),
    ("code", "go.Figure(go.Bar(y=[3, 1, 2]), layout=dict(height=300, margin=dict(t=10))).show()"),
    ("code", "go.Figure(go.Scatter(y=[1, 3, 2], line=dict(width=8)), layout=dict(height=300)).show()"),
]


def executed_small_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in CELLS]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root())}}).execute()
    return nb


def check_exported_figures(nb, folder: Path, *, screenshot_height: int = 0) -> None:
    """Every figure of the executed ``nb`` is drawn in its HTML export, offline; formulas typeset."""
    browser.need_chromium()
    expected = browser.figure_count(nb)
    html_outputs = "".join(
        str(out.get("data", {}).get("text/html", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.get("outputs", [])
    )
    assert html_outputs.count("* plotly.js v") == 1, "plotly.js should be embedded exactly once per notebook"
    page = browser.export_html(nb, folder / "export.html")
    dom = browser.rendered_dom(page)
    assert browser.drawn_figures(dom) == expected, f"{browser.drawn_figures(dom)} of {expected} figures drawn offline"
    if browser.LOCAL_MATHJAX.exists() and "$" in "".join(c.source for c in nb.cells if c.cell_type == "markdown"):
        assert browser.typeset_formulas(dom) > 0, "no formula was typeset by the local MathJax"
    if screenshot_height:
        image = browser.screenshot(page, screenshot_height)
        assert browser.plotly_coloured_pixels(image) > 500, "the screenshot shows no plotly figure"


def test_small_notebook_figures_show_in_an_offline_html_export(tmp_path: Path) -> None:
    browser.need_chromium()
    nb = executed_small_notebook()
    assert browser.figure_count(nb) == 2
    assert len(browser.cell_seconds(nb)) == 3, "nbclient should record each code cell's timing"
    for cell in nb.cells[2:]:
        (figure,) = [o for o in cell.outputs if browser.PLOTLY_MIME in o.get("data", {})]
        assert "text/html" in figure["data"], "each figure carries HTML too (what nbconvert keeps)"
    check_exported_figures(nb, tmp_path, screenshot_height=900)
