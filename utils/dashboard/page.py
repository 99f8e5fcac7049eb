"""The dashboard's page: ``page.css`` and ``page.js`` (files of this package), inlined once into every exported
HTML file with the data as JSON.

No library, no font, no image and no request: the page draws its histograms as inline SVG from the JSON
it carries, so it works offline and from a ``file://`` address. ``#latent=123`` opens a latent,
``#prompt=0`` a prompt's view; ``#prompt=0&token=5`` opens token 5's latents.

Where scripts do not run (JupyterLab's HTML viewer until "Trust HTML", a browser with JavaScript off) the page
would be blank; its ``<noscript>`` message (:data:`NO_SCRIPT`) says so and how to open it.
"""

from __future__ import annotations

import dataclasses
import html
import json
from importlib.resources import files
from typing import Any

__all__ = ["CSS", "JS", "NO_SCRIPT", "iframe_html", "page_html", "payload_json"]

CSS = files("utils.dashboard").joinpath("page.css").read_text(encoding="utf-8")
JS = files("utils.dashboard").joinpath("page.js").read_text(encoding="utf-8")

#: What the page shows where its script cannot run: why it is empty, and the ways to open it that work.
NO_SCRIPT = (
    '<noscript><section id="no-script"><h2>This latent dashboard is drawn by JavaScript, which is off here</h2>'
    "<p>The data is in this file, and its script draws the pages offline, with no network. To see them:</p><ul>"
    "<li>in JupyterLab's HTML viewer, click <b>Trust HTML</b> in the toolbar above, or right-click the file in the "
    "file browser and choose <b>Open in New Browser Tab</b>;</li>"
    "<li>or open the file in a web browser on the computer that holds it (Firefox, Chrome, Edge, Safari): the "
    "<code>file://</code> address that <code>dashboard.links(path)</code> prints in the notebook;</li>"
    "<li>or, in the notebook, draw it there: <code>dashboard.show(data)</code>, or "
    "<code>browse(data, model, sae)</code> from <code>utils.dashboard.widget</code>.</li></ul></section></noscript>"
)


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of its fields, one level deep (``json`` turns the values in their turn).

    The dashboard's dataclasses hold their fields, and nothing else, in their ``__dict__``, in the order of the
    fields: that dict itself is returned (``json`` only reads it), 4x faster than listing the fields for each of
    the payload's few hundred thousand objects."""
    fields = getattr(type(obj), "__dataclass_fields__", None)
    own = getattr(obj, "__dict__", None)
    if fields is not None and own is not None and list(own) == list(fields):
        return own
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"cannot put a {type(obj).__name__} in the dashboard's JSON")


def payload_json(payload: dict[str, Any]) -> str:
    """``payload`` (plain values and the dataclasses of ``utils.dashboard.payload``) as compact JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_plain)


def page_html(payload: dict[str, Any]) -> str:
    """A complete HTML document carrying ``payload`` as JSON, with the CSS and JavaScript inlined once."""
    data = payload_json(payload).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Latent dashboard</title><style>{CSS}</style></head>"
        f'<body><header id="nav"></header><main id="app">{NO_SCRIPT}</main>'
        f'<script type="application/json" id="dashboard-data">{data}</script>'
        f"<script>{JS}</script></body></html>\n"
    )


def iframe_html(document: str, height: int = 720) -> str:
    """``document`` in an ``<iframe srcdoc>`` for a notebook: ``sandbox="allow-scripts"`` lets its script run and,
    with no ``allow-same-origin``, keeps that script away from the notebook around it."""
    return (
        f'<iframe srcdoc="{html.escape(document, quote=True)}" style="width:100%;height:{height}px;'
        f'border:1px solid #ddd" sandbox="allow-scripts"></iframe>'
    )
