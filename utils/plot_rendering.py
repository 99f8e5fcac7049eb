"""How the course's figures are shown: offline, in every front end a learner or teacher uses.

Plotly's default in a Jupyter kernel emits only its JSON mimetype, which JupyterLab and VS Code draw but an
``nbconvert --to html`` export drops. In a notebook kernel the course uses ``"plotly_mimetype+notebook"``:
each figure carries both the mimetype (JupyterLab, VS Code) and HTML drawn by a plotly.js that the
``notebook`` renderer embeds once per notebook, in the first figure's output, with no network (so an
HTML export shows every figure offline). On Colab, whose outputs are separate frames, plotly's own
``"colab"`` renderer is kept. Scripts and the grader are left alone (the grader does not draw).

Importing :mod:`utils.plot_toy_models` or :mod:`utils.plot_saes` calls :func:`use_offline_renderer`.
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
    """Pick plotly's renderer for this front end; returns the one chosen (None: left as it was)."""
    import plotly.io as pio

    if "google.colab" in sys.modules:
        pio.renderers.default = "colab"
    elif _in_notebook_kernel():
        pio.renderers.default = NOTEBOOK_RENDERER
    else:
        return None
    return pio.renderers.default
