"""An ipywidgets browser for the dashboard, with a live prompt-centric view of the learner's own prompt.

It uses only what ipywidgets 7.7 (Colab) and 8 share: ``Text``, ``IntText``, ``Button``, ``HTML``,
``HBox``/``VBox``, ``observe(..., names="value")`` and ``on_click``. The page itself is the exported HTML
page in an ``<iframe srcdoc>``, whose scripts run in JupyterLab, VS Code and Colab alike.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from utils import dashboard
from utils.dashboard.page import page_html

__all__ = ["DashboardBrowser", "browse"]


class DashboardBrowser:
    """A latent number box, a prompt box and the dashboard page; a new prompt is analysed live."""

    def __init__(self, data: dashboard.DashboardData, model=None, sae=None, height: int = 720):
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
        self.page.value = (f'<iframe srcdoc="{html.escape(page_html(payload), quote=True)}" style="width:100%;'
                           f'height:{self.height}px;border:1px solid #ddd" sandbox="allow-scripts"></iframe>')

    def show_latent(self, f: int) -> None:
        """Show latent f's page (or say it is not in the data)."""
        self._render(f"latent={int(f)}")

    def show_prompt(self, prompt: str) -> None:
        """Analyse ``prompt`` now (all latents, exact loss effects) and show its view."""
        if prompt:
            self._render("prompt=0", (dashboard.prompt_view(self.model, self.sae, prompt, self.data.stats),))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def browse(data: dashboard.DashboardData, model=None, sae=None) -> DashboardBrowser:
    """The browser for ``data``; pass the model and SAE to analyse new prompts live."""
    return DashboardBrowser(data, model, sae)
