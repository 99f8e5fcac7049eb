"""The latent dashboard: one page per latent and a prompt-centric view, offline, for any SAE the course trains.

``dashboard.build(model, sae, tokens)`` gathers the data (``data``; its types in ``payload``),
``dashboard.export_html`` / ``export_folder`` write self-contained pages (``page``, with ``page.css`` and
``page.js``), ``dashboard.links(path)`` gives the links that open one from a notebook (``page_links``: from JupyterLab,
and as a ``file://`` address), ``dashboard.show`` displays one in a notebook, and ``dashboard.widget.browse`` is an
ipywidgets browser with a live prompt view.
"""

from utils.dashboard.data import (
    STATS_OPTIONS,
    build,
    export_folder,
    export_html,
    latent_stats,
    prompt_view,
    show,
    to_json,
)
from utils.dashboard.page_links import DashboardLinks, links
from utils.dashboard.payload import DashboardData, LatentPage, PromptLatents

__all__ = [
    "STATS_OPTIONS",
    "DashboardData",
    "DashboardLinks",
    "LatentPage",
    "PromptLatents",
    "build",
    "export_folder",
    "export_html",
    "latent_stats",
    "links",
    "prompt_view",
    "show",
    "to_json",
]
