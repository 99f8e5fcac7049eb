"""The dashboard's data, typed: what ``utils.dashboard.data.build`` gathers and ``page.js`` draws.

Each class is one object of the page's JSON, its fields the JSON's keys (``page.page_html`` writes a
dataclass as the dict of its fields). Numbers are rounded where they are made: the page shows 2 to 4
digits, and a folder of 4,096 latents stays tens of MB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from utils.sae.latent_stats import LatentStats

__all__ = [
    "Context",
    "DashboardData",
    "DashboardMeta",
    "Effect",
    "Interval",
    "LatentPage",
    "Logits",
    "Match",
    "Neurons",
    "PromptLatents",
    "SearchEntry",
]

#: ``(id, value)``: a token and its logit, a neuron and its weight, a latent and its correlation...
Pair = tuple[int, float]


@dataclass
class Effect:
    """Removing the latent at the token before: the change in this token's loss, and the tokens whose
    log-probability moved most (ablated - clean), largest absolute changes first."""

    loss: float
    top: list[Pair]


@dataclass
class Context:
    """A window of text around one token where the latent fires: each token's text and the latent's
    activation on it, the window's centre, and, by the index of the predicted token, the ablation effects."""

    pieces: list[str]
    acts: list[float]
    centre: int
    effects: dict[int, Effect]


@dataclass
class Interval:
    """One equal-width activation interval ``(low, high]``: its share of the latent's firings and samples."""

    range: tuple[float, float]
    share: float
    samples: list[Context]


@dataclass
class Logits:
    """What one latent does to the logits: top and bottom tokens, and the histogram of all tokens over ``range``.

    ``kind`` says which numbers these are: ``"effect"``, the exact change in each token's logit where the latent
    fires, averaged over its top examples and centred over the vocabulary (what the model does with it), or
    ``"weights"``, the naive logit lens of its decoder direction (the weights alone, no context: a latent with no
    examples has only this). ``n_examples`` is how many examples the effect averages."""

    top: list[Pair]
    bottom: list[Pair]
    hist: list[int]
    range: tuple[float, float]
    kind: str = "weights"
    n_examples: int = 0


@dataclass
class Neurons:
    """How the decoder direction sits on the model's neurons: the largest neuron's share of its norm²,
    the largest decoder weights, and the neurons whose activations correlate most with the latent's."""

    share: float
    top: list[Pair]
    correlated: list[Pair]


@dataclass
class Match:
    """The latent of another SAE run with the nearest decoder direction."""

    latent: int
    cos: float


@dataclass
class LatentPage:
    """Everything the page shows about one latent."""

    density: float
    n_fired: int
    max_act: float
    hist: list[int]  # the engine's log-spaced activation histogram (DashboardMeta.hist_log10)
    top: list[Context]
    intervals: list[Interval]
    logits: Logits
    neurons: Neurons
    cofiring: list[Pair]  # the latents whose firing correlates most with this one's (phi coefficient)
    nearest: list[Pair]  # the latents with the nearest decoder directions (cosine)
    match: Match | None = None


@dataclass
class PromptLatents:
    """A prompt's view: its tokens' texts, and at each token every active latent as
    ``(latent, activation, quantile or None, loss effect)`` (position 0, BOS, has none)."""

    text: str
    pieces: list[str]
    latents: list[list[tuple[int, float, float | None, float]]]


@dataclass
class SearchEntry:
    """A latent in the index page's search: its density, top logit tokens and top contexts' centre tokens."""

    density: float
    logits: list[str]
    contexts: list[str]


@dataclass
class DashboardMeta:
    """What the dashboard is of, and how to read its histograms."""

    model: str
    run: str
    other_run: str | None
    architecture: str
    d_sae: int
    n_tokens: int
    hist_log10: tuple[float, float]  # the activation histograms' range, log10
    hist_bins: int


@dataclass
class DashboardData:
    """The dashboard of some latents of an SAE, as ``build`` returns it; ``stats`` are the engine's statistics
    it was built from (not exported; the live prompt view reads their quantiles)."""

    meta: DashboardMeta
    vocab: dict[int, str]
    latents: dict[int, LatentPage]
    prompts: list[PromptLatents]
    stats: LatentStats = field(repr=False)

    def payload(self, latents: list[int] | None = None, **extra_meta: Any) -> dict[str, Any]:
        """The page's JSON object, for ``latents`` (default all), with ``extra_meta`` added to its meta."""
        pages = self.latents if latents is None else {f: self.latents[f] for f in latents}
        return {"meta": asdict(self.meta) | extra_meta, "vocab": self.vocab, "latents": pages, "prompts": self.prompts}

    def __getitem__(self, key: str) -> Any:
        """``data["latents"]``, ``data["_stats"]``...: the dict this class replaced, for notebooks written on it."""
        if key not in _DICT_KEYS:
            raise KeyError(f"{key!r}: the dashboard's data has the attributes meta, vocab, latents, prompts and stats")
        return getattr(self, _DICT_KEYS[key])


#: The keys of the dict ``build`` returned before ``DashboardData``, and the attributes that hold them now.
_DICT_KEYS = {"meta": "meta", "vocab": "vocab", "latents": "latents", "prompts": "prompts", "_stats": "stats"}
