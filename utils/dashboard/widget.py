"""An ipywidgets browser for the dashboard, with a live prompt-centric view of the learner's own prompt.

It uses only what ipywidgets 7.7 (Colab) and 8 share: ``Text``, ``IntText``, ``Button``, ``HTML``,
``HBox``/``VBox``, ``observe(..., names="value")``, ``on_click`` and ``model_id``.

Why it shows without "Trust HTML": the page is the exported HTML page in an ``<iframe srcdoc
sandbox="allow-scripts">`` (``page.iframe_html``) inside an ``HTML`` widget, and a widget's HTML is drawn by the
front end's widget manager, not by the notebook's HTML output that JupyterLab sanitises in an untrusted
notebook. The page's script runs inside the iframe, in JupyterLab, VS Code and Colab alike.

Where it cannot show: without ipywidgets, :func:`browse` returns a :class:`WidgetsMissing`, which says so and
draws the page without the prompt box (as ``dashboard.show`` does); in a front end with no widget manager
(nbconvert's HTML, a plain console) the browser's text form says what to open instead.
"""

from __future__ import annotations

import html

from utils import dashboard
from utils.dashboard.page import iframe_html, page_html

__all__ = ["DashboardBrowser", "WidgetsMissing", "browse"]

#: The browser's text form, shown by a front end that cannot draw widgets.
NO_FRONT_END = (
    "[latent dashboard browser: an ipywidgets widget, which this front end cannot draw. Run the notebook "
    "in JupyterLab, VS Code or Colab, or open the exported page: print(dashboard.links(path))]"
)

#: What :func:`browse` says where ipywidgets is not installed.
NO_WIDGETS = (
    "The dashboard browser needs ipywidgets, which is not installed here: install it (%pip install "
    "ipywidgets) and restart the kernel. Meanwhile, here is the page without the box for your own "
    "prompt (dashboard.show(data) draws it too)."
)


class DashboardBrowser:
    """A latent number box, a prompt box and the dashboard page; a new prompt is analysed live."""

    def __init__(self, data: dashboard.DashboardData, model=None, sae=None, height: int = 720):
        import ipywidgets as widgets  # here, not at import: browse() turns its absence into a message

        self.data, self.model, self.sae, self.height = data, model, sae, height
        self.latent = widgets.IntText(value=int(next(iter(data.latents), 0)), description="latent")
        self.prompt = widgets.Text(value="", placeholder="your prompt", description="prompt")
        self.run = widgets.Button(description="analyse prompt", disabled=model is None or sae is None)
        self.page = widgets.HTML()
        self.latent.observe(lambda change: self.show_latent(change["new"]), names="value")
        self.run.on_click(lambda _: self.show_prompt(self.prompt.value))
        self.widget = widgets.VBox([widgets.HBox([self.latent, self.prompt, self.run]), self.page])
        self.show_latent(self.latent.value)

    def _render(self, hash_: str, new_prompts: tuple[dashboard.PromptLatents, ...] = ()) -> None:
        """Show the page opened at ``hash_``, with ``new_prompts`` before the dashboard's own."""
        payload = self.data.payload(start=hash_)
        payload["prompts"] = [*new_prompts, *payload["prompts"]]
        self.page.value = iframe_html(page_html(payload), self.height)

    def show_latent(self, f: int) -> None:
        """Show latent f's page (the page says so where f is not in the data, and how to add it)."""
        self._render(f"latent={int(f)}")

    def show_prompt(self, prompt: str) -> None:
        """Analyse ``prompt`` now (all latents, exact loss effects) and show its view."""
        if prompt:
            self._render("prompt=0", (dashboard.prompt_view(self.model, self.sae, prompt, self.data.stats),))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The widget for a front end with a widget manager, and :data:`NO_FRONT_END` as the text form.

        Written out rather than taken from ipywidgets, whose 7.7 (Colab) and 8 display widgets differently."""
        view = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
        return {"text/plain": NO_FRONT_END, "application/vnd.jupyter.widget-view+json": view}


class WidgetsMissing:
    """What :func:`browse` returns without ipywidgets: :data:`NO_WIDGETS`, and the page in the notebook."""

    def __init__(self, data: dashboard.DashboardData, height: int = 720):
        self.data, self.height = data, height

    def __repr__(self) -> str:
        return NO_WIDGETS

    def _repr_html_(self) -> str:
        message = f'<p id="no-widgets" style="color:#a11">{html.escape(NO_WIDGETS)}</p>'
        return message + iframe_html(page_html(self.data.payload()), self.height)


def browse(data: dashboard.DashboardData, model=None, sae=None, height: int = 720) -> DashboardBrowser | WidgetsMissing:
    """The browser for ``data``; pass the model and SAE to analyse new prompts live. Without ipywidgets, a
    message and the page without the prompt box."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return WidgetsMissing(data, height)
    return DashboardBrowser(data, model, sae, height)
