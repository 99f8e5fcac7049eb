"""The dashboard's page: ``page.css`` and ``page.js`` (files of this package), inlined once into every exported
HTML file with the data as JSON.

No library, no font, no image and no request: the page draws its histograms as inline SVG from the JSON
it carries, so it works offline and from a ``file://`` address. ``#latent=123`` opens a latent,
``#prompt=0`` a prompt's view; ``#prompt=0&token=5`` opens token 5's latents.
"""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import files
from typing import Any

__all__ = ["CSS", "JS", "page_html", "payload_json"]

CSS = files("utils.dashboard").joinpath("page.css").read_text(encoding="utf-8")
JS = files("utils.dashboard").joinpath("page.js").read_text(encoding="utf-8")


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of its fields, one level deep (``json`` turns the values in their turn)."""
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
        f'<body><header id="nav"></header><main id="app"></main>'
        f'<script type="application/json" id="dashboard-data">{data}</script>'
        f"<script>{JS}</script></body></html>\n"
    )
