"""Links to an exported dashboard page, for a notebook: one that JupyterLab opens, one for a plain browser.

A notebook's kernel and the learner's browser need not share a disk (JupyterLab on a server, Colab), so a
single ``file://`` address is not enough. :func:`links` offers both, labelled:

- **from JupyterLab**: the file's path relative to the notebook's folder. JupyterLab resolves a relative link
  in a cell's output against the notebook's folder and serves the file (under ``files/``); a click opens it in
  a JupyterLab tab, whose HTML viewer runs the page's script once "Trust HTML" is clicked in its toolbar, and
  the browser's "open link in new tab" opens it as a plain page, with its script running.
- **in a browser on the computer that holds the file**: its ``file://`` address, to paste into the address bar
  (a browser does not follow a ``file://`` link from a page served over http, such as a notebook).

The object :func:`links` returns displays as HTML in a notebook and prints as two labelled lines.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import quote

__all__ = ["DashboardLinks", "links"]


@dataclass(frozen=True)
class DashboardLinks:
    """The two ways to open one exported page: ``relative`` (to the notebook's folder, "/"-separated; None where
    there is no relative path, another drive on Windows) and ``uri`` (``file://``), each with ``fragment``."""

    path: Path
    relative: str | None
    fragment: str = ""

    @property
    def href(self) -> str | None:
        """The relative link, URL-quoted (a space is ``%20``), with the fragment."""
        return None if self.relative is None else quote(self.relative) + self.fragment

    @property
    def uri(self) -> str:
        """The ``file://`` address, with the fragment."""
        return self.path.as_uri() + self.fragment

    def _size(self) -> str:
        return f"{self.path.stat().st_size / 1024:.0f} KB" if self.path.exists() else "missing"

    def __str__(self) -> str:
        lines = [f"Latent dashboard: {self.path.name} ({self._size()}). Open it:"]
        if self.relative is not None:
            lines.append(
                f'  from JupyterLab (relative to this notebook\'s folder; click "Trust HTML" in the tab it '
                f"opens):\n    {self.relative}{self.fragment}"
            )
        lines.append(f"  in a web browser on this computer (paste into the address bar):\n    {self.uri}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        note = 'style="color:#777"'
        rows = [f"<b>Latent dashboard</b> <code>{html.escape(self.path.name)}</code> ({self._size()}). Open it:"]
        if self.href is not None:
            rows.append(
                f'from JupyterLab: <a class="dashboard-relative" href="{html.escape(self.href, quote=True)}">'
                f"{html.escape(self.relative + self.fragment)}</a> <span {note}>(opens in a JupyterLab tab: "
                f'click "Trust HTML" in its toolbar; or open the link in a new browser tab)</span>'
            )
        uri = html.escape(self.uri, quote=True)
        rows.append(
            f'in a web browser on this computer: <a class="dashboard-file" href="{uri}">{uri}</a> <span {note}>'
            "(copy it into the address bar: browsers do not follow file:// links from a notebook)</span>"
        )
        return '<div class="dashboard-links">' + "<br>\n".join(rows) + "</div>"


def _relative(path: Path, folder: Path) -> str | None:
    """``path`` relative to ``folder``, "/"-separated (``../out/page.html``); None where none exists."""
    try:
        return PurePath(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # Windows: another drive
        return None


def links(path: str | Path, latent: int | None = None, notebook_dir: str | Path | None = None) -> DashboardLinks:
    """The links to an exported page (``dashboard.export_html``'s path), opening ``latent`` if given.

    ``notebook_dir`` is the notebook's folder, the kernel's working folder unless given: JupyterLab resolves the
    relative link from there. Raises ``FileNotFoundError`` for a path that is not there, so that a notebook
    never prints a link that leads nowhere."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: write it first (dashboard.export_html(data, path))")
    folder = Path.cwd() if notebook_dir is None else Path(notebook_dir)
    return DashboardLinks(path, _relative(path, folder.resolve()), "" if latent is None else f"#latent={int(latent)}")
