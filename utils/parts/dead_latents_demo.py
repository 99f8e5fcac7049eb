"""Part 3's training comparisons: the runs, their settings, the bundled results over seeds, and their figures.

Every comparison in Part 3 is run over several seeds by ``data/build/dead_latent_runs.py``, which calls the
functions here and writes ``data/dead_latents/runs.json`` (final metrics and subsampled curves only). The notebook
loads that file (``load_bundled_runs``) and runs one seed live with the same functions and settings, so that the
learner sees it happen and the solution can check that the live run lands where the bundled ones did.

- The cause of death: a learning rate too large for the SAE. ``ToySettings`` and ``GeluSettings`` hold every
  number of the two comparisons (a toy SAE with 48 known features; an L1 SAE with 1,024 latents on
  ``gelu-1l-mini``'s MLP), and ``low_lr``, the learning rate at which the same SAE keeps its latents.
- ``toy_run`` / ``gelu_run``: one training run, no resampling, simple or Anthropic's, with the resampling
  functions handed in (the notebook passes the learner's own; the build script the library's).
- ``beyond_run``: TopK with and without the auxiliary loss, and Anthropic's 2024 recipe, on the same data.
- ``DeathTracker``: a plug-in that records, per latent, whether it fired on the first batch, when it was first
  dead over the window and whether it fired again afterwards; the measurements behind Part 3's explanations.
- ``summarise``, ``seed_figure``, ``curves_figure``: means and spreads over seeds, and the figures.

Sized for a 2-core CPU: a toy run takes a few seconds, a ``gelu-1l-mini`` run tens of seconds.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from utils.paths import data_dir
from utils.sae.model import SAE, SAEConfig
from utils.sae.training import Plugin, TrainConfig, TrainState, train_sae

__all__ = [
    "GELU",
    "METHODS",
    "RUNS_FILE",
    "TOY",
    "BeyondSettings",
    "DeathTracker",
    "GeluSettings",
    "ToySettings",
    "beyond_resampling",
    "beyond_run",
    "curves_figure",
    "format_stat",
    "gelu_comparison",
    "gelu_data",
    "gelu_run",
    "load_bundled_runs",
    "make_aux_loss",
    "print_summary",
    "seed_figure",
    "shuffled_batches",
    "summarise",
    "toy_comparison",
    "toy_run",
]

METHODS = ("none", "simple", "anthropic")
RUNS_FILE = "dead_latents/runs.json"  # under data/, written by data/build/dead_latent_runs.py


# ---------------------------------------------------------------------------------------------------
# Settings: every number of the comparisons, in one place (the notebook prints them from here)


@dataclass(frozen=True)
class ToySettings:
    """The toy comparison: 48 true features in 16 dimensions, an L1 SAE with exactly 48 latents."""

    n_feats: int = 48
    d_in: int = 16
    p: float = 0.04  # each feature is present on this fraction of inputs, with a value uniform in [0, 1)
    offset: float = (
        4.0  # every input is shifted by a constant vector of this norm (b_dec starts at its geometric median)
    )
    l1_coefficient: float = 0.3
    lr: float = 0.1  # too large: a quarter of the latents die (low_lr keeps them)
    low_lr: float = 0.01
    lr_decay_frac: float = 1.0  # the learning rate falls linearly from its peak to 0 over the whole run
    steps: int = 800
    batch_size: int = 512
    resample_at: tuple[float, ...] = (0.6, 0.75, 0.9)  # fractions of the run
    window_tokens: int = 10_000  # dead = not fired on this many inputs
    pool_batches: int = 4  # Anthropic's resampling: its pool, in batches
    log_every: int = 10

    def train_config(self, lr: float | None = None) -> TrainConfig:
        return TrainConfig(
            n_tokens=self.steps * self.batch_size,
            lr=self.lr if lr is None else lr,
            lr_decay_frac=self.lr_decay_frac,
            dead_window_tokens=self.window_tokens,
            log_every=self.log_every,
            progress=False,
        )

    @property
    def resample_steps(self) -> list[int]:
        return [round(self.steps * f) for f in self.resample_at]


@dataclass(frozen=True)
class GeluSettings:
    """The comparison on ``gelu-1l-mini``: an L1 SAE with 1,024 latents on ``blocks.0.mlp.hook_post``."""

    d_sae: int = 1024
    l1_coefficient: float = 1.0
    lr: float = 1e-2  # too large: about a quarter of the latents die in the first steps (low_lr keeps them)
    low_lr: float = 3e-3
    lr_decay_frac: float = 1.0
    steps: int = 150
    batch_size: int = 2048
    resample_at: tuple[float, ...] = (0.4, 0.6)
    window_tokens: int = 40_960  # 20 steps of 2,048 tokens
    pool_batches: int = 4
    n_train_seqs: int = 512  # rows of 128 tokens harvested once and reused (BOS positions dropped)
    n_eval_seqs: int = 256  # held-out rows for dead fraction, L0 and explained variance
    n_ce_seqs: int = 32  # of those, the rows for CE loss recovered
    log_every: int = 5

    def train_config(self, lr: float | None = None, **overrides) -> TrainConfig:
        settings = dict(
            n_tokens=self.steps * self.batch_size,
            lr=self.lr if lr is None else lr,
            lr_decay_frac=self.lr_decay_frac,
            dead_window_tokens=self.window_tokens,
            log_every=self.log_every,
            progress=False,
        )
        return TrainConfig(**settings | overrides)

    @property
    def resample_steps(self) -> list[int]:
        return [round(self.steps * f) for f in self.resample_at]


@dataclass(frozen=True)
class BeyondSettings:
    """TopK (with and without Gao et al.'s auxiliary loss) and Anthropic's 2024 recipe, on section 7's data and
    steps."""

    k: int = 32
    k_aux: int = 256  # half of d_in = 512, as Gao et al. suggest
    aux_coefficient: float = 1 / 32
    april_l1_coefficient: float = 5.0  # Conerly et al.'s lambda, for inputs scaled to E||x|| = sqrt(d_in)
    april_low_lr: float = 1e-3
    april_decoder_norm: float = 0.1
    gelu: GeluSettings = field(default_factory=GeluSettings)


TOY, GELU, BEYOND = ToySettings(), GeluSettings(), BeyondSettings()


def make_aux_loss(settings: BeyondSettings = BEYOND):
    """The auxiliary loss exactly as the runs use it (its window is the runs' dead window)."""
    from utils.sae.objectives import AuxKLoss

    return AuxKLoss(
        k_aux=settings.k_aux, coefficient=settings.aux_coefficient, window_tokens=settings.gelu.window_tokens
    )


# ---------------------------------------------------------------------------------------------------
# Measuring: per-latent deaths and revivals, final metrics


class DeathTracker(Plugin):
    """Per latent: fired on the first batch; the step it was first dead over ``window_tokens``; whether it fired
    again after being dead. Put it before a resampling plug-in, so that it sees the dead before they are reset."""

    def __init__(self, window_tokens: int) -> None:
        self.window_tokens = window_tokens
        self.fired_first: Bool[Tensor, " d_sae"] | None = None
        self.first_dead_step: Tensor | None = None
        self.revived: Bool[Tensor, " d_sae"] | None = None

    def after_update(self, state: TrainState, x, out) -> None:
        since = state.tokens_since_fired
        if self.fired_first is None:
            self.fired_first = since == 0
            self.first_dead_step = torch.full_like(since, -1)
            self.revived = torch.zeros_like(self.fired_first)
        ever_dead = self.first_dead_step >= 0
        self.revived |= ever_dead & (since == 0)
        newly = (since >= self.window_tokens) & ~ever_dead
        self.first_dead_step[newly] = state.step

    def summary(self) -> dict:
        died = self.first_dead_step[self.first_dead_step >= 0]
        return {
            "silent_on_first_batch": int((~self.fired_first).sum()),
            "ever_dead": len(died),
            "fired_again": int(self.revived.sum()),
            "median_step_first_dead": float(died.float().median()) if len(died) else None,
        }


def shuffled_batches(data: Float[Tensor, "n d"], batch_size: int, seed: int = 0) -> Iterator[Float[Tensor, "batch d"]]:
    """Batches of ``data`` in a new random order each epoch, forever (only whole batches)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.randperm(len(data), generator=generator).split(batch_size):
            if len(index) == batch_size:
                yield data[index]


@torch.no_grad()
def _activation_metrics(sae: SAE, x: Float[Tensor, "n d_in"]) -> dict[str, float]:
    """Dead fraction (no firing on any of ``x``), L0 and explained variance on held-out activations."""
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    sq_err, l0 = 0.0, 0.0
    for batch in x.split(8192):
        x_hat, acts = sae(batch)
        fired |= (acts > 0).any(0)
        l0 += (acts > 0).sum().item()
        sq_err += (batch - x_hat).double().pow(2).sum().item()
    variance = (x - x.mean(0)).double().pow(2).sum().item()
    return {"dead": 1 - fired.float().mean().item(), "l0": l0 / len(x), "explained_variance": 1 - sq_err / variance}


def _curves(history: list[dict]) -> dict[str, list[float]]:
    return {key: [round(float(record.get(key, 0.0)), 5) for record in history] for key in ("step", "frac_alive", "mse")}


def _plugins(method: str, settings, plugin_cls, resample_simple, resample_anthropic, seed: int) -> list[Plugin]:
    if method == "none":
        return []
    if method == "simple":
        return [plugin_cls(resample_simple, settings.resample_steps, settings.window_tokens, seed=seed)]
    if method == "anthropic":
        return [
            plugin_cls(
                resample_anthropic,
                settings.resample_steps,
                settings.window_tokens,
                pool_batches=settings.pool_batches,
                seed=seed,
            )
        ]
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _library_resamplers(plugin_cls, resample_simple, resample_anthropic):
    from utils.sae import resampling

    return (
        plugin_cls or resampling.ResampleOnSchedule,
        resample_simple or resampling.resample_simple,
        resample_anthropic or resampling.resample_anthropic,
    )


# ---------------------------------------------------------------------------------------------------
# The toy comparison


@contextlib.contextmanager
def one_thread():
    """Torch on one thread for the block (the toy's products are tiny: a second thread only waits, and on a
    busy machine it makes a run of seconds take a minute); the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def toy_data(settings: ToySettings = TOY, seed: int = 0):
    """Random unit feature directions, and a sampler of inputs: each feature present with probability p, value
    U[0, 1), plus a constant ``offset`` (of that norm, along the all-ones direction), so the data is not centred."""
    s = settings
    features = F.normalize(torch.randn(s.n_feats, s.d_in, generator=torch.Generator().manual_seed(seed)), dim=-1)
    shift = s.offset * F.normalize(torch.ones(s.d_in), dim=0)

    def sample(n: int, generator: torch.Generator) -> Float[Tensor, "n d_in"]:
        values = torch.rand(n, s.n_feats, generator=generator) * (torch.rand(n, s.n_feats, generator=generator) < s.p)
        return values @ features + shift

    return features, sample


def toy_run(
    method: str,
    seed: int,
    settings: ToySettings = TOY,
    *,
    lr: float | None = None,
    plugin_cls=None,
    resample_simple: Callable | None = None,
    resample_anthropic: Callable | None = None,
) -> dict:
    """One toy run: ``method`` in ``METHODS``, with the resampling functions handed in (default: the library's).
    Returns the dead fraction, features recovered (some decoder row at cosine > 0.9), L0 and explained variance
    on 16,384 held-out inputs, how many latents each resampling revived, and the training curves."""
    s = settings
    plugin_cls, resample_simple, resample_anthropic = _library_resamplers(
        plugin_cls, resample_simple, resample_anthropic
    )
    features, sample = toy_data(s, seed)
    held_out = sample(16_384, torch.Generator().manual_seed(10_000 + seed))
    sae = SAE(SAEConfig(d_in=s.d_in, d_sae=s.n_feats, l1_coefficient=s.l1_coefficient, seed=seed))
    generator = torch.Generator().manual_seed(1_000 + seed)
    batches = iter(lambda: sample(s.batch_size, generator), None)
    tracker = DeathTracker(s.window_tokens)
    plugins = [tracker, *_plugins(method, s, plugin_cls, resample_simple, resample_anthropic, seed)]
    with one_thread():
        history = train_sae(sae, batches, s.train_config(lr), plugins=plugins)
        metrics = _activation_metrics(sae, held_out)
    cos = F.normalize(sae.W_dec.detach(), dim=-1) @ features.T
    return (
        {"method": method, "seed": seed, "lr": s.lr if lr is None else lr}
        | metrics
        | {
            "recovered": int((cos.max(0).values > 0.9).sum()),
            "resampled": [int(r["resampled"]) for r in history if "resampled" in r],
            "deaths": tracker.summary(),
            "curves": _curves(history),
        }
    )


# ---------------------------------------------------------------------------------------------------
# The comparison on gelu-1l-mini


def gelu_data(settings: GeluSettings = GELU, progress: bool = True) -> dict:
    """The model, its MLP activations on ``n_train_seqs`` training rows and ``n_eval_seqs`` validation rows (BOS
    positions dropped), and the validation token rows; harvested once, with a progress bar."""
    from tqdm.auto import tqdm

    from utils.lm.activations import mlp_post_activations, tokenize_texts
    from utils.lm.loading import load_model, load_text_dataset

    model = load_model("gelu-1l-mini", device="cpu")
    texts = load_text_dataset(model, "train")["text"][:4000]
    train = tokenize_texts(texts, model.tokenizer, max_seqs=settings.n_train_seqs)
    held = tokenize_texts(
        load_text_dataset(model, "validation")["text"], model.tokenizer, max_seqs=settings.n_eval_seqs
    )
    rows = [("train", batch) for batch in train.split(64)] + [("eval", batch) for batch in held.split(64)]
    acts: dict[str, list[Tensor]] = {"train": [], "eval": []}
    for split, batch in tqdm(rows, desc="harvesting MLP activations", unit="batch", disable=not progress):
        acts[split].append(mlp_post_activations(model, batch)[:, 1:].reshape(-1, model.cfg.d_mlp))
    return {
        "model": model,
        "train_acts": torch.cat(acts["train"]),
        "eval_acts": torch.cat(acts["eval"]),
        "eval_tokens": held,
    }


def _evaluate(sae: SAE, data: dict, settings: GeluSettings) -> dict[str, float]:
    from utils.sae.metrics import ce_loss_recovered

    ce = ce_loss_recovered(data["model"], sae, data["eval_tokens"][: settings.n_ce_seqs])["recovered"]
    return _activation_metrics(sae, data["eval_acts"]) | {"ce_loss_recovered": ce}


def gelu_run(
    method: str,
    seed: int,
    data: dict,
    settings: GeluSettings = GELU,
    *,
    lr: float | None = None,
    plugin_cls=None,
    resample_simple: Callable | None = None,
    resample_anthropic: Callable | None = None,
    progress: bool = False,
) -> dict:
    """One L1 SAE on ``gelu-1l-mini``'s activations (``gelu_data``), ``method`` in ``METHODS``. Returns the dead
    fraction, L0 and explained variance on the held-out activations, CE loss recovered, the resamplings, the
    per-latent death record and the curves."""
    s = settings
    plugin_cls, resample_simple, resample_anthropic = _library_resamplers(
        plugin_cls, resample_simple, resample_anthropic
    )
    d_in = data["train_acts"].shape[1]
    sae = SAE(SAEConfig(d_in=d_in, d_sae=s.d_sae, l1_coefficient=s.l1_coefficient, seed=seed))
    tracker = DeathTracker(s.window_tokens)
    plugins = [tracker, *_plugins(method, s, plugin_cls, resample_simple, resample_anthropic, seed)]
    cfg = s.train_config(lr, progress=progress)
    history = train_sae(sae, shuffled_batches(data["train_acts"], s.batch_size, seed), cfg, plugins=plugins)
    return (
        {"method": method, "seed": seed, "lr": cfg.lr}
        | _evaluate(sae, data, s)
        | {
            "resampled": [int(r["resampled"]) for r in history if "resampled" in r],
            "deaths": tracker.summary(),
            "curves": _curves(history),
        }
    )


# ---------------------------------------------------------------------------------------------------
# Beyond resampling: TopK + AuxK, Anthropic's 2024 recipe


def beyond_run(
    name: str,
    seed: int,
    data: dict,
    settings: BeyondSettings = BEYOND,
    *,
    lr: float | None = None,
    progress: bool = False,
) -> dict:
    """One run on section 7's data and steps: ``name`` is "topk", "topk + aux loss" or "2024 recipe".

    TopK runs use section 7's learning rate and schedule; the 2024 recipe (``utils.sae.objectives.train_april_2024``)
    its own schedule at ``lr`` (default: section 7's). The AuxK run also returns the loss's own ``summary()``; every
    run returns its ``DeathTracker`` record and the decoder norms of its dead and alive latents. ``progress``: a
    progress bar over the steps."""
    from utils.sae.objectives import activation_scale, init_decoder_norm, train_april_2024

    g = settings.gelu
    lr = g.lr if lr is None else lr
    d_in = data["train_acts"].shape[1]
    batches = shuffled_batches(data["train_acts"], g.batch_size, seed)
    tracker = DeathTracker(g.window_tokens)
    extra: dict = {}
    if name == "2024 recipe":
        sae = SAE(SAEConfig(d_in=d_in, d_sae=g.d_sae, l1_coefficient=settings.april_l1_coefficient, seed=seed))
        init_decoder_norm(sae, settings.april_decoder_norm)
        scale = activation_scale(data["train_acts"][:8192])
        history = train_april_2024(sae, batches, scale, g.train_config(lr, progress=progress), plugins=[tracker])
        extra["input_scale"] = scale
    elif name in ("topk", "topk + aux loss"):
        sae = SAE(SAEConfig(d_in=d_in, d_sae=g.d_sae, architecture="topk", k=settings.k, seed=seed))
        plugins: list[Plugin] = [tracker]
        if name == "topk + aux loss":
            aux = make_aux_loss(settings)
            plugins.append(aux)
        history = train_sae(sae, batches, g.train_config(lr, progress=progress), plugins=plugins)
        if name == "topk + aux loss":
            extra["aux"] = aux.summary()
    else:
        raise ValueError(f"name must be 'topk', 'topk + aux loss' or '2024 recipe', got {name!r}")
    metrics = _evaluate(sae, data, g)
    with torch.no_grad():
        fired = torch.zeros(g.d_sae, dtype=torch.bool)
        for batch in data["eval_acts"].split(8192):
            fired |= (sae.encode(batch) > 0).any(0)
        norms = sae.W_dec.norm(dim=-1)
    extra["decoder_norm_dead"] = float(norms[~fired].mean()) if (~fired).any() else None
    extra["decoder_norm_alive"] = float(norms[fired].mean())
    return (
        {"name": name, "seed": seed, "lr": lr}
        | metrics
        | extra
        | {"deaths": tracker.summary(), "curves": _curves(history)}
    )


# ---------------------------------------------------------------------------------------------------
# The bundled runs, their summaries and figures


def load_bundled_runs() -> dict:
    """``data/dead_latents/runs.json``: the settings and results of every run over seeds (see its build script)."""
    path = data_dir() / RUNS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python data/build/dead_latent_runs.py` to build it")
    return json.loads(path.read_text())


def summarise(runs: Sequence[dict], key: str, by: str = "method") -> dict[str, dict[str, float]]:
    """Per group (``by``: "method" or "name"), the mean, standard deviation, min, max and values of ``key`` over
    seeds."""
    groups: dict[str, list[float]] = {}
    for run in runs:
        groups.setdefault(run[by], []).append(float(run[key]))
    return {
        name: {
            "mean": statistics.fmean(v),
            "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v),
            "max": max(v),
            "values": v,
            "n": len(v),
        }
        for name, v in groups.items()
    }


def format_stat(stat: dict[str, float], fmt: str) -> str:
    """``mean ± sd [min, max]`` of one ``summarise`` entry, each number in format ``fmt``."""
    return f"{stat['mean']:{fmt}} ± {stat['sd']:{fmt}} [{stat['min']:{fmt}}, {stat['max']:{fmt}}]"


def print_summary(runs: Sequence[dict], keys: Sequence[tuple[str, str]], *, by: str = "method") -> None:
    """One line per group: for each ``(key, format)``, the mean ± standard deviation [min, max] over seeds."""
    stats = {key: summarise(runs, key, by) for key, _ in keys}
    for name in dict.fromkeys(run[by] for run in runs):
        n = stats[keys[0][0]][name]["n"]
        print(
            f"{name:>20} ({n} seeds): " + ", ".join(f"{key} {format_stat(stats[key][name], fmt)}" for key, fmt in keys)
        )


def seed_figure(
    runs: Sequence[dict],
    keys: Sequence[tuple[str, str]],
    *,
    by: str = "method",
    live: Sequence[dict] = (),
    title: str = "",
):
    """One panel per ``(key, label)``: each seed as a dot, the mean with a bar of one standard deviation either
    side, per group; ``live`` runs (this session's) as open diamonds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from utils.parts.plot_rendering import use_offline_renderer

    use_offline_renderer()
    names = list(dict.fromkeys(run[by] for run in runs))
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[label for _, label in keys])
    for col, (key, label) in enumerate(keys, start=1):
        stats = summarise(runs, key, by)
        for i, name in enumerate(names):
            values = stats[name]["values"]
            fig.add_trace(
                go.Scatter(
                    x=[name] * len(values),
                    y=values,
                    mode="markers",
                    marker=dict(color="#1f77b4", size=7, opacity=0.6),
                    name="one seed (bundled)",
                    legendgroup="seed",
                    showlegend=col == 1 and i == 0,
                    hovertemplate=f"{name}<br>{label}: %{{y:.4g}}<extra></extra>",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=[name],
                    y=[stats[name]["mean"]],
                    mode="markers",
                    marker=dict(color="black", size=11, symbol="line-ew-open", line=dict(width=3)),
                    error_y=dict(type="data", array=[stats[name]["sd"]], color="black", thickness=1.5),
                    name="mean ± 1 sd",
                    legendgroup="mean",
                    showlegend=col == 1 and i == 0,
                    hovertemplate=f"{name}: mean %{{y:.4g}}<extra></extra>",
                )
            )
        mine = [run for run in live if key in run]
        if mine:
            fig.add_trace(
                go.Scatter(
                    x=[run[by] for run in mine],
                    y=[run[key] for run in mine],
                    mode="markers",
                    marker=dict(color="#d62728", size=12, symbol="diamond-open", line=dict(width=2)),
                    name="your live run",
                    legendgroup="live",
                    showlegend=col == 1,
                    hovertemplate=f"your run<br>{label}: %{{y:.4g}}<extra></extra>",
                )
            )
    fig.update_layout(title=title, height=380, width=max(520, 330 * len(keys)), template="plotly_white")
    return fig


def curves_figure(runs: Sequence[dict], *, by: str = "method", live: Sequence[dict] = (), title: str = ""):
    """Fraction of latents alive (over the window) and training MSE against the step: every bundled seed thin,
    ``live`` runs thick, one colour per group."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from utils.parts.plot_rendering import use_offline_renderer

    use_offline_renderer()
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    names = list(dict.fromkeys([run[by] for run in runs] + [run[by] for run in live]))
    fig = make_subplots(rows=1, cols=2, subplot_titles=["fraction of latents alive", "training MSE (log scale)"])
    for group, width, opacity in ((runs, 1, 0.45), (live, 3, 1.0)):
        for run in group:
            color = colors[names.index(run[by]) % len(colors)]
            first = not any(r[by] == run[by] for r in group[: group.index(run)])
            label = f"{run[by]}{' (your run)' if width == 3 else ''}"
            for col, key in ((1, "frac_alive"), (2, "mse")):
                fig.add_trace(
                    go.Scatter(
                        x=run["curves"]["step"],
                        y=run["curves"][key],
                        mode="lines",
                        line=dict(color=color, width=width),
                        opacity=opacity,
                        name=label,
                        legendgroup=label,
                        showlegend=col == 1 and first,
                        hovertemplate=f"{label}, seed {run['seed']}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=380, width=950, template="plotly_white")
    return fig


def settings_dict(settings) -> dict:
    """A settings dataclass as JSON-ready numbers (the build script stores them beside the runs)."""
    return json.loads(json.dumps(asdict(settings)))


# ---------------------------------------------------------------------------------------------------
# The earlier version's entry points, for notebooks saved from it (the cohort of December 2026)


def _flat(run: dict) -> dict:
    """A run as the earlier version returned it: its curves' lists beside its metrics."""
    return run["curves"] | {k: v for k, v in run.items() if k not in ("curves", "deaths", "resampled")}


def toy_comparison(plugin_cls, resample_simple: Callable, resample_anthropic: Callable, **_earlier_settings) -> dict:
    """Seed 0 of the toy comparison's three methods, at today's settings (``TOY``; the earlier version's keyword
    settings are accepted and not used): per method, the curves and the final metrics."""
    fns = dict(plugin_cls=plugin_cls, resample_simple=resample_simple, resample_anthropic=resample_anthropic)
    return {method: _flat(toy_run(method, 0, **fns)) for method in METHODS}


def gelu_comparison(plugin_cls, resample_simple: Callable, resample_anthropic: Callable, **_earlier_settings) -> dict:
    """Seed 0 of the ``gelu-1l-mini`` comparison's three methods at today's settings (``GELU``), with the data, so
    that ``beyond_resampling`` can reuse it."""
    data = gelu_data(GELU)
    fns = dict(plugin_cls=plugin_cls, resample_simple=resample_simple, resample_anthropic=resample_anthropic)
    runs = {method: _flat(gelu_run(method, 0, data, **fns)) for method in METHODS}
    return data | {"runs": runs, "settings": settings_dict(GELU)}


def beyond_resampling(gelu: dict, **_earlier_settings) -> dict[str, dict]:
    """Seed 0 of TopK without and with the auxiliary loss and of the 2024 recipe, on ``gelu_comparison``'s data."""
    return {name: _flat(beyond_run(name, 0, gelu)) for name in ("topk", "topk + aux loss", "2024 recipe")}
