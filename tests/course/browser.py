"""Export an executed notebook to HTML and look at it in headless Chromium with the network off.

Used by the figure tests: every plotly figure in the notebook's outputs must be drawn on the page (the DOM
has a drawn plot for each, and the screenshot shows plotly's colours), and formulas must be typeset by a
local MathJax (Debian's ``libjs-mathjax``, MathJax 2.7, which nbconvert's template speaks) where one is
installed; ``.ci/run`` installs both Chromium and it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
OFFLINE = [  # no request leaves the machine: every host name fails to resolve, and no proxy answers
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--proxy-server=127.0.0.1:9",
    "--disable-extensions",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
]


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium; .ci/run does it)")


def figure_count(nb) -> int:
    """How many plotly figures the executed notebook's outputs hold."""
    return sum(
        PLOTLY_MIME in out.get("data", {}) for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
    )


def cell_seconds(nb) -> list[tuple[float, int]]:
    """``(seconds, cell index)`` of each executed code cell, slowest first (nbclient records the timing)."""
    from datetime import datetime

    times = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and start and end:
            seconds = (
                datetime.fromisoformat(end.replace("Z", "+00:00"))
                - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()
            times.append((seconds, i))
    return sorted(times, reverse=True)


def export_html(nb, path: Path) -> Path:
    """``nbconvert --to html`` as a teacher runs it, with MathJax from the local copy when there is one."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    if LOCAL_MATHJAX.exists():
        exporter.mathjax_url = f"file://{LOCAL_MATHJAX}?config=TeX-AMS_CHTML-full,Safe"
    body, _ = exporter.from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")
    return path


def _chromium(page: Path, *extra: str, height: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *OFFLINE, f"--window-size=1280,{height}", "--virtual-time-budget=20000", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=page.parent,
    )


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, offline."""
    proc = _chromium(page, "--dump-dom", height=2000)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, height: int) -> np.ndarray:
    """A screenshot of the top ``height`` pixels of the page, as an ``[h, w, 3]`` uint8 array."""
    out = page.with_suffix(".png")
    proc = _chromium(page, f"--screenshot={out}", height=height)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return read_png(out)


def drawn_figures(dom: str) -> int:
    """Plotly figures that plotly.js actually drew on the page (it marks each drawn div ``js-plotly-plot``)."""
    return len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', dom))


def typeset_formulas(dom: str) -> int:
    """Formulas MathJax typeset (MathJax 2's CommonHTML output wraps each in a ``mjx-chtml`` span)."""
    return len(re.findall(r'class="mjx-chtml\b', dom))


def plotly_coloured_pixels(image: np.ndarray) -> int:
    """Pixels in plotly's first default colour (#636efa), allowing for anti-aliasing."""
    return int((np.abs(image.astype(int) - np.array([0x63, 0x6E, 0xFA])).max(axis=-1) < 24).sum())


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) without an imaging library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, 1 + width * channels)
    rows = np.zeros((height, width * channels), dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = rows[y - 1] if y else np.zeros_like(line)
        if kind == 0:
            rows[y] = line
        elif kind == 2:
            rows[y] = (line + prev) % 256
        elif kind == 1:
            rows[y] = (np.cumsum(line.reshape(width, channels), axis=0) % 256).reshape(-1)
        else:  # average, paeth: depend on the decoded pixel to the left, so decode pixel by pixel
            out = np.zeros_like(line)
            for x in range(len(line)):
                a = out[x - channels] if x >= channels else 0
                b, c = prev[x], (prev[x - channels] if x >= channels else 0)
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                out[x] = (line[x] + pred) % 256
            rows[y] = out
    return rows.reshape(height, width, channels)[..., :3].astype(np.uint8)
