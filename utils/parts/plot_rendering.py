"""How the course's figures are shown: offline, in every front end a learner or teacher uses.

Plotly's default in a Jupyter kernel emits only its JSON mimetype, which JupyterLab and VS Code draw but an
``nbconvert --to html`` export drops. In a notebook kernel the course uses ``"plotly_mimetype+notebook"``:
each figure carries both the mimetype (JupyterLab, VS Code) and HTML drawn by a plotly.js that the
``notebook`` renderer embeds once per notebook, in the first figure's output, with no network (so an
HTML export shows every figure offline). On Colab, whose outputs are separate frames, plotly's own
``"colab"`` renderer is kept. Scripts and the grader are left alone (the grader does not draw).

Importing :mod:`utils.parts.plot_toy_models` or :mod:`utils.parts.plot_saes` calls :func:`use_offline_renderer`.
"""

from __future__ import annotations

import sys

NOTEBOOK_RENDERER = "plotly_mimetype+notebook"


def _in_notebook_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def use_offline_renderer() -> str | None:
    """Pick plotly's renderer for this front end; returns the one chosen (None: left as it was).

    Calling it again is harmless: the default is set only when it changes, because setting it (even to the same
    value) makes plotly activate the renderer again, and the ``notebook`` renderer would embed plotly.js again."""
    import plotly.io as pio

    if "google.colab" in sys.modules:
        chosen = "colab"
    elif _in_notebook_kernel():
        if _plotly_major() < 6:  # plotly 5's "notebook" renderer needs require.js, which an HTML export lacks
            if PLOTLY5_RENDERER not in pio.renderers:
                pio.renderers[PLOTLY5_RENDERER] = _plotly5_offline_renderer()
            chosen = f"plotly_mimetype+{PLOTLY5_RENDERER}"
        else:
            chosen = NOTEBOOK_RENDERER
    else:
        return None
    if pio.renderers.default != chosen:
        pio.renderers.default = chosen
    return pio.renderers.default


PLOTLY5_RENDERER = "course_notebook"


def _plotly_major() -> int:
    import plotly

    return int(plotly.__version__.split(".")[0])


def _plotly5_offline_renderer():
    """Plotly 6's "notebook" renderer for plotly 5: plotly.js embedded once, as a plain script, and figures
    that call ``Plotly.newPlot`` directly. Plotly 5's own renderer loads plotly.js through require.js, which
    JupyterLab, Notebook 7 and nbconvert's HTML export do not have, so an export showed no figure."""
    from plotly.io import to_html
    from plotly.io._base_renderers import HtmlRenderer
    from plotly.offline import get_plotlyjs

    class OfflineNotebookRenderer(HtmlRenderer):
        def __init__(self) -> None:
            super().__init__(connected=False, full_html=False, requirejs=False, global_init=False)

        def activate(self) -> None:
            from IPython.display import display_html

            # plotly.js registers itself with require.js when a page has it (classic Notebook 6): hide
            # `define` while it runs, so that it sets window.Plotly in every front end.
            display_html(
                "<script type='text/javascript'>window.PlotlyConfig = {MathJaxConfig: 'local'};"
                "(function () { var define_ = window.define; window.define = undefined; try {"
                f"{get_plotlyjs()}"
                "\n} finally { window.define = define_; } })();</script>",
                raw=True,
            )

        def to_mimebundle(self, fig_dict) -> dict[str, str]:
            html = to_html(
                fig_dict,
                config=self.config,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            return {"text/html": html}

    return OfflineNotebookRenderer()
