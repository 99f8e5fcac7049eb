"""The exported dashboard in headless Chromium, network off: every component drawn, no request leaves the page,
following a latent from the prompt view opens its page, no token shows as empty text, a latent not in the export
says so, the page says what to do where scripts are off, and the widget's page draws in its sandboxed iframe.

Chromium is driven over the DevTools protocol (``websocket-client``); DNS is mapped to nothing and the proxy
points at a closed port, so a request could not succeed, and the protocol's network events show whether one was
even tried. The widget's sandboxed iframe is another renderer (an out-of-process frame): the client attaches to it
with ``Target.setAutoAttach`` and sends it commands with its ``sessionId``. Set ``SAE_DASHBOARD_SCREENSHOT=path.png``
to keep the screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.course.dashboard_fixtures import PROMPTS, SCRIPT_LATENTS, bundled, small_dashboard

websocket = pytest.importorskip("websocket")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")

COMPONENTS = [
    "density",
    "activation-histogram",
    "logits",
    "logit-histogram",
    "neurons",
    "correlated-latents",
    "nearest-latents",
    "match",
    "top-contexts",
    "interval-samples",
]


class DevTools:
    """A minimal DevTools-protocol client: commands, and the events seen while waiting for replies."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []

    def __call__(self, method: str, session: str | None = None, **params):
        """Send a command (to the frame of ``session``, else the page) and return its result."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        self.ws.send(json.dumps(message | ({"sessionId": session} if session else {})))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str, session: str | None = None):
        result = self("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, session: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression, session)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture(scope="module")
def browser():
    user_dir = tempfile.mkdtemp(prefix="chromium-")
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={user_dir}",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            "--window-size=1280,1600",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(user_dir) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and process.poll() is None, "Chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the local DevTools port, no proxy
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools("Network.enable")
        tools("Page.enable")
        yield tools
        tools.ws.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(user_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from utils import dashboard

    data, latents = small_dashboard()
    folder = tmp_path_factory.mktemp("dashboard")
    path = dashboard.export_html(data, folder / "dashboard.html")
    index = dashboard.export_folder(data, folder / "all", per_file=4)
    return path, index, data, latents


@pytest.fixture(scope="module")
def exported_standard(exported):
    """The L1 SAE's dashboard, beside the TopK one (so that the last test sees its requests too)."""
    from utils import dashboard

    data, latents = small_dashboard("standard")
    return dashboard.export_html(data, exported[0].parent / "standard.html"), data, latents


def _open(browser, url: str, ready: str) -> None:
    """Go to url and wait until the page shows the element ``ready`` (a CSS selector)."""
    browser("Page.navigate", url=url)
    browser.wait_for(
        f"location.href === {json.dumps(url)} && document.readyState === 'complete' && "
        f"!!document.querySelector({json.dumps(ready)})"
    )


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_every_component_is_drawn(browser, exported, exported_standard, architecture):
    path, data, latents = (exported[0], *exported[2:]) if architecture == "topk" else exported_standard
    f = latents[0]
    _open(browser, f"{path.as_uri()}#latent={f}", f"#latent-title[data-latent='{f}']")
    state = browser.evaluate(
        """(() => {
        const text = id => (document.getElementById(id) || {textContent: ''}).textContent.trim().length;
        return {title: document.querySelector('#latent-title').dataset.latent,
                heading: document.querySelector('#latent-title').textContent,
                components: Object.fromEntries(%s.map(id => [id, text(id)])),
                bars: document.querySelectorAll('#activation-histogram rect').length,
                logitBars: document.querySelectorAll('#logit-histogram rect').length,
                shaded: [...document.querySelectorAll('#top-contexts .tok')].filter(t => t.style.background).length,
                underlined: document.querySelectorAll('#top-contexts .tok[data-effect]').length,
                hover: [...document.querySelectorAll('#top-contexts .tok[data-effect]')].every(
                    t => t.title.includes('largest log-prob changes')),
                contexts: document.querySelectorAll('#top-contexts .ctx').length,
                samples: document.querySelectorAll('#interval-samples .ctx').length};
    })()""".replace("%s", json.dumps(COMPONENTS))
    )
    assert state["title"] == str(f) and architecture in state["heading"]
    assert all(n > 20 for n in state["components"].values()), state["components"]
    assert state["bars"] == data.meta.hist_bins and state["logitBars"] == 30
    assert state["contexts"] == len(data.latents[f].top) > 0 and state["samples"] > 0
    assert state["shaded"] >= state["contexts"], "each top context shades at least its centre token"
    assert state["underlined"] > 0 and state["hover"], "ablation effects are underlined, with the changes on hover"
    shot = base64.b64decode(browser("Page.captureScreenshot", format="png")["data"])
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000, "a blank page compresses to a few KB"
    if os.environ.get("SAE_DASHBOARD_SCREENSHOT") and architecture == "topk":
        Path(os.environ["SAE_DASHBOARD_SCREENSHOT"]).write_bytes(shot)


def test_following_a_latent_from_the_prompt_view_opens_its_page(browser, exported):
    path, _, data, latents = exported
    view = data.prompts[0]
    token = next(i for i, found in enumerate(view.latents) if any(r[0] in latents for r in found))
    _open(browser, f"{path.as_uri()}#prompt=0&token={token}", "#prompt-latents")
    n_rows = browser.evaluate("document.querySelectorAll('#prompt-latents tr').length - 1")
    assert n_rows == len(view.latents[token]) > 0, "the token's latents are all listed"
    box = browser.evaluate("""(() => {
        const a = [...document.querySelectorAll('#prompt-latents a.latent-link')][0];
        a.scrollIntoView(); const r = a.getBoundingClientRect();
        return {x: r.x + r.width / 2, y: r.y + r.height / 2, latent: a.dataset.latent};
    })()""")
    for kind in ("mousePressed", "mouseReleased"):
        browser("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)
    opened = browser.wait_for(
        "document.querySelector('#latent-title') && document.querySelector('#latent-title').dataset.latent"
    )
    assert opened == box["latent"] and int(opened) in latents


def test_ranking_by_loss_effect_reorders_the_list(browser, exported):
    path, _, _, _ = exported
    _open(browser, f"{path.as_uri()}#prompt=0&token=3&rank=loss", "#prompt-latents")
    effects = browser.evaluate(
        "[...document.querySelectorAll('#prompt-latents tr td:last-child')].map(t => +t.textContent)"
    )
    assert effects and [abs(e) for e in effects] == sorted((abs(e) for e in effects), reverse=True)


def test_index_searches_by_top_tokens_and_opens_the_latent(browser, exported):
    _, index, data, latents = exported
    f = latents[1]
    word = data.vocab[data.latents[f].logits.top[0][0]]
    _open(browser, f"{index.as_uri()}#q={urllib.request.quote(word)}", "#search-results")
    found = browser.evaluate(
        "[...document.querySelectorAll('#search-results a.latent-link')].map(a => a.dataset.latent)"
    )
    assert str(f) in found
    href = browser.evaluate(f"document.querySelector('#search-results a[data-latent=\"{f}\"]').href")
    _open(browser, href, f"#latent-title[data-latent='{f}']")
    assert browser.evaluate("document.querySelector('#latent-title').dataset.latent") == str(f)


def _click(browser, selector: str) -> None:
    """A real mouse click on the first element matching ``selector`` (scrolled into view)."""
    box = browser.evaluate(f"""(() => {{
        const a = document.querySelector({json.dumps(selector)}); a.scrollIntoView();
        const r = a.getBoundingClientRect(); return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
    }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        browser("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)


SHOWN_TOKENS = """(() => ({
    tokens: [...document.querySelectorAll('.tok')].map(t => t.textContent),
    marks: [...document.querySelectorAll('.tok.cont')].map(t => [t.textContent, t.getBoundingClientRect().width]),
    logits: [...document.querySelectorAll('#logits td:first-child')].map(t => t.textContent),
    tooltips: [...document.querySelectorAll('.tok[data-effect]')].map(t => t.title),
    search: [...document.querySelectorAll('#search-results td:nth-child(n+3)')].map(t => t.textContent),
    notes: [...document.querySelectorAll('.muted')].map(t => t.textContent).join(' ')}))()"""


def test_no_token_shows_as_empty_text(browser, exported):
    """Where a token holds part of a character: the Arabic latents' logits, contexts and tooltips, the prompt
    views (Cyrillic and Chinese), and the index's search, as Chromium draws them."""
    path, index, _, _ = exported
    seen = {"labels": 0, "marks": 0}
    views = [(f"{path.as_uri()}#latent={f}", f"#latent-title[data-latent='{f}']") for f in SCRIPT_LATENTS]
    views += [(f"{path.as_uri()}#prompt={i}", "#prompt-tokens") for i in range(len(PROMPTS))]
    views += [(f"{index.as_uri()}#q=", "#search-results")]
    for url, ready in views:
        _open(browser, url, ready)
        shown = browser.evaluate(SHOWN_TOKENS)
        assert all(shown["tokens"]) and all(shown["search"]), url
        assert not [t for t in shown["logits"] + shown["search"] if t in ('""', "")], url
        assert not [t for t in shown["tooltips"] if '""' in t or "\ufffd" in t], url
        assert all(text == "\u00b7" and width > 2 for text, width in shown["marks"]), "the mark is drawn, and seen"
        seen["marks"] += len(shown["marks"])
        labels = [t for t in shown["logits"] + shown["search"] if "\u27e8" in t]
        seen["labels"] += len(labels)
        assert not labels or "a byte of a character" in shown["notes"], "a page with byte labels says what they are"
    _open(browser, f"{path.as_uri()}#latent={SCRIPT_LATENTS[0]}", "#logits")
    logits = browser.evaluate(SHOWN_TOKENS)["logits"]
    assert sum("\u27e8" in t for t in logits) >= 5, "the Arabic latent's top logits show their bytes"
    assert seen["marks"] > 0 and seen["labels"] > 0


def test_an_empty_piece_of_an_older_export_still_shows_the_mark(browser, exported):
    """Exports made before readable_pieces carry "" where a token holds the rest of a character."""
    from utils.dashboard.page import page_html, payload_json

    path, _, data, latents = exported
    payload = json.loads(payload_json(data.payload()))
    context = payload["latents"][str(latents[0])]["top"][0]
    context["pieces"][0] = ""
    older = path.parent / "older.html"
    older.write_text(page_html(payload), encoding="utf-8")
    _open(browser, f"{older.as_uri()}#latent={latents[0]}", "#top-contexts .tok")
    first = browser.evaluate(
        "(() => { const t = document.querySelector('#top-contexts .tok'); return [t.textContent, t.className]; })()"
    )
    assert first == ["\u00b7", "tok cont"] or first == ["\u00b7", "tok centre cont"]


def test_latents_not_in_the_export_say_so_in_the_prompt_view(browser, exported):
    path, _, data, latents = exported
    view = data.prompts[0]
    token = next(i for i, found in enumerate(view.latents) if any(r[0] not in latents for r in found))
    absent = sum(r[0] not in latents for r in view.latents[token])
    _open(browser, f"{path.as_uri()}#prompt=0&token={token}", "#prompt-latents")
    note = " ".join(browser.evaluate("document.querySelector('#prompt-missing').textContent").split())
    assert f"{absent} of these {len(view.latents[token])} latents (in grey) are not in this export" in note
    assert browser.evaluate("document.querySelectorAll('#prompt-latents a.latent-missing').length") == absent
    f = browser.evaluate("document.querySelector('#prompt-latents a.latent-missing').dataset.latent")
    _click(browser, "#prompt-latents a.latent-missing")
    message = browser.wait_for(
        f"document.querySelector('#missing[data-latent=\"{f}\"]') && document.querySelector('#missing').textContent"
    )
    assert f"Latent {f} is not in this export. To see its page, build the dashboard with it in latents=" in " ".join(
        message.split()
    )


def test_without_javascript_the_page_says_what_to_do(browser, exported):
    """JupyterLab's HTML viewer runs no script until "Trust HTML": the page then shows its <noscript> message."""
    path, _, _, latents = exported
    browser("Page.navigate", url="about:blank")
    browser("Emulation.setScriptExecutionDisabled", value=True)
    try:
        _open(browser, path.as_uri(), "#no-script")
        shown = browser.evaluate(
            "(() => { const m = document.querySelector('#no-script'); "
            "return {text: m.innerText, height: m.getBoundingClientRect().height}; })()"
        )
    finally:
        browser("Emulation.setScriptExecutionDisabled", value=False)
    assert "Trust HTML" in shown["text"] and "file://" in shown["text"] and shown["height"] > 50
    browser("Page.navigate", url="about:blank")  # load the page anew, scripts on
    _open(browser, f"{path.as_uri()}#latent={latents[0]}", "#latent-title")
    assert browser.evaluate("document.querySelector('#no-script') === null"), "with scripts on, the message is gone"


def test_the_relative_link_opens_the_page_from_the_notebook_folder(browser, exported):
    """dashboard.links' relative link, in a page in the notebook's folder, opens the dashboard (as JupyterLab
    resolves it: against the notebook's folder)."""
    from utils import dashboard

    path, _, _, latents = exported
    notebook_dir = path.parent / "notebooks"
    notebook_dir.mkdir(exist_ok=True)
    found = dashboard.links(path, latent=latents[1], notebook_dir=notebook_dir)
    host = notebook_dir / "links.html"
    host.write_text(
        f'<!DOCTYPE html><html><meta charset="utf-8"><body>{found._repr_html_()}</body></html>', encoding="utf-8"
    )
    _open(browser, host.as_uri(), "a.dashboard-relative")
    assert browser.evaluate("document.querySelector('a.dashboard-relative').href") == found.uri
    assert browser.evaluate("document.querySelector('a.dashboard-file').href") == found.uri
    _click(browser, "a.dashboard-relative")
    assert browser.wait_for(
        "document.querySelector('#latent-title') && document.querySelector('#latent-title').dataset.latent"
    ) == str(latents[1])


def _iframe_session(browser, seen: int, timeout: float = 20.0) -> str:
    """The session of the newest out-of-process iframe attached after ``seen`` events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attached = [e["params"] for e in browser.events[seen:] if e.get("method") == "Target.attachedToTarget"]
        frames = [a["sessionId"] for a in attached if a["targetInfo"]["type"] == "iframe"]
        if frames:
            return frames[-1]
        browser.evaluate("1")  # read the events that came in meanwhile
        time.sleep(0.1)
    raise AssertionError("the iframe did not attach")


def test_the_widget_draws_its_page_and_says_which_latents_it_lacks(browser, exported):
    """The widget's HTML put in a page as ipywidgets' HTML view does (innerHTML, no sanitising): its sandboxed
    iframe draws the live prompt view, and a latent of the prompt that is not in the export says so."""
    from utils.dashboard.widget import DashboardBrowser

    path, _, data, latents = exported
    model, sae, _, _ = bundled()
    widget = DashboardBrowser(data, model, sae)
    widget.prompt.value = PROMPTS[0]
    widget.run.click()
    host = path.parent / "widget.html"
    host.write_text(
        "<!DOCTYPE html><html><body><div id='widget'></div><script>document.getElementById('widget')"
        f".innerHTML = {json.dumps(widget.page.value)};</script></body></html>",
        encoding="utf-8",
    )
    browser("Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=False, flatten=True)
    seen = len(browser.events)
    _open(browser, host.as_uri(), "iframe")
    frame = _iframe_session(browser, seen)
    assert browser.wait_for("document.body && document.body.dataset.view", session=frame) == "prompt"
    view = data.prompts[0]  # the same prompt, analysed live
    token = next(i for i, found in enumerate(view.latents) if any(r[0] not in latents for r in found))
    browser.evaluate(f"document.querySelector('.ptok[data-token=\"{token}\"]').click()", session=frame)
    note = browser.wait_for(
        "document.querySelector('#prompt-missing') && document.querySelector('#prompt-missing').textContent",
        session=frame,
    )
    assert "latents (in grey) are not in this export: build the dashboard with them in latents=" in note
    browser.evaluate("document.querySelector('#prompt-latents a.latent-missing').click()", session=frame)
    message = browser.wait_for(
        "document.querySelector('#missing') && document.querySelector('#missing').textContent", session=frame
    )
    message = " ".join(message.split())
    assert "is not in this export. To see its page, build the dashboard with it in latents=" in message
    present = next(r[0] for found in view.latents for r in found if r[0] in latents)
    found = next(i for i, row in enumerate(view.latents) if any(r[0] == present for r in row))
    browser.evaluate(f"location.hash = 'prompt=0&token={found}'", session=frame)
    browser.wait_for(
        f"!!document.querySelector('#prompt-latents a.latent-link[data-latent=\"{present}\"]')", session=frame
    )
    browser.evaluate(f"document.querySelector('a.latent-link[data-latent=\"{present}\"]').click()", session=frame)
    opened = browser.wait_for(
        "document.querySelector('#latent-title') && document.querySelector('#latent-title').dataset.latent",
        session=frame,
    )
    assert opened == str(present), "a latent of the export opens its page inside the widget's iframe"


def test_no_request_left_the_page(browser, exported):
    """Run last in this module: every network event of the tests above is a file:// load of our own pages."""
    path, _, _, _ = exported
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests, "the network events were not recorded"
    allowed = (path.parent.as_uri(),)
    assert all(url.startswith(allowed) for url in requests), [u for u in requests if not u.startswith(allowed)]
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
