"""The exported dashboard in headless Chromium, network off: every component drawn, no request leaves the page,
and following a latent from the prompt view opens its page.

Chromium is driven over the DevTools protocol (``websocket-client``); DNS is mapped to nothing and the proxy
points at a closed port, so a request could not succeed, and the protocol's network events show whether one was
even tried. Set ``SAE_DASHBOARD_SCREENSHOT=path.png`` to keep the screenshot.
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

from tests.course.dashboard_fixtures import small_dashboard

websocket = pytest.importorskip("websocket")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")

COMPONENTS = ["density", "activation-histogram", "logits", "logit-histogram", "neurons", "correlated-latents",
              "nearest-latents", "match", "top-contexts", "interval-samples"]


class DevTools:
    """A minimal DevTools-protocol client: commands, and the events seen while waiting for replies."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []

    def __call__(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str):
        result = self("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


@pytest.fixture(scope="module")
def browser():
    user_dir = tempfile.mkdtemp(prefix="chromium-")
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={user_dir}", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
         "--window-size=1280,1600", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    browser.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete' && "
                     f"!!document.querySelector({json.dumps(ready)})")


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_every_component_is_drawn(browser, exported, exported_standard, architecture):
    path, data, latents = (exported[0], *exported[2:]) if architecture == "topk" else exported_standard
    f = latents[0]
    _open(browser, f"{path.as_uri()}#latent={f}", f"#latent-title[data-latent='{f}']")
    state = browser.evaluate("""(() => {
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
    })()""" % json.dumps(COMPONENTS))
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
    opened = browser.wait_for("document.querySelector('#latent-title') && document.querySelector('#latent-title').dataset.latent")
    assert opened == box["latent"] and int(opened) in latents


def test_ranking_by_loss_effect_reorders_the_list(browser, exported):
    path, _, data, _ = exported
    _open(browser, f"{path.as_uri()}#prompt=0&token=3&rank=loss", "#prompt-latents")
    effects = browser.evaluate("[...document.querySelectorAll('#prompt-latents tr td:last-child')].map(t => +t.textContent)")
    assert effects and [abs(e) for e in effects] == sorted((abs(e) for e in effects), reverse=True)


def test_index_searches_by_top_tokens_and_opens_the_latent(browser, exported):
    _, index, data, latents = exported
    f = latents[1]
    word = data.vocab[data.latents[f].logits.top[0][0]]
    _open(browser, f"{index.as_uri()}#q={urllib.request.quote(word)}", "#search-results")
    found = browser.evaluate("[...document.querySelectorAll('#search-results a.latent-link')].map(a => a.dataset.latent)")
    assert str(f) in found
    href = browser.evaluate(f"document.querySelector('#search-results a[data-latent=\"{f}\"]').href")
    _open(browser, href, f"#latent-title[data-latent='{f}']")
    assert browser.evaluate("document.querySelector('#latent-title').dataset.latent") == str(f)


def test_no_request_left_the_page(browser, exported):
    """Run last in this module: every network event of the tests above is a file:// load of our own pages."""
    path, index, _, _ = exported
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests, "the network events were not recorded"
    allowed = (path.parent.as_uri(),)
    assert all(url.startswith(allowed) for url in requests), [u for u in requests if not u.startswith(allowed)]
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
