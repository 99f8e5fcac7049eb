"""Part 2 (sparse autoencoders): the figures.

Every function returns a plain ``plotly.graph_objects.Figure``; the notebook calls ``.show()``. Only
``go`` traces and ``make_subplots`` are used (no FigureWidget, no ipywidgets), so the figures render the
same in JupyterLab, VS Code and Colab. Tensors may live on any device and carry gradients: each function
detaches and moves them to the CPU itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from utils.parts.plot_rendering import use_offline_renderer

use_offline_renderer()  # figures that survive an HTML export, offline

__all__ = [
    "plot_cosine_heatmap",
    "plot_density_histogram",
    "plot_directions_2d",
    "plot_l0_tradeoff",
    "plot_recovery_bars",
    "plot_training_history",
]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
ARCH_COLORS = {"standard": "#1f77b4", "topk": "#d62728"}


def _cpu(t: Tensor) -> Tensor:
    return t.detach().float().cpu()


def plot_directions_2d(
    features: Float[Tensor, "feats 2"],
    latents: Float[Tensor, "d_sae 2"],
    *,
    alive: Sequence[bool] | Tensor | None = None,
    title: str = "True feature directions (colours) and the SAE's decoder directions (black)",
) -> go.Figure:
    """Arrows from the origin: each true feature direction (coloured, at its length) and each SAE decoder
    row (black, unit length; dotted and grey when ``alive`` marks the latent as never firing)."""
    features, latents = _cpu(features), _cpu(latents)
    alive = [True] * len(latents) if alive is None else [bool(a) for a in alive]
    lim = max(1.2, 1.1 * features.norm(dim=1).max().item())
    fig = go.Figure()
    for i, (x, y) in enumerate(features.tolist()):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=[0, x],
                y=[0, y],
                mode="lines+markers",
                line=dict(color=color, width=5),
                marker=dict(size=[0, 11], color=color),
                name=f"feature {i}",
                hovertemplate=f"feature {i}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
            )
        )
    for j, (x, y) in enumerate(latents.tolist()):
        style = dict(color="black", width=2) if alive[j] else dict(color="#aaa", width=1.5, dash="dot")
        fig.add_trace(
            go.Scatter(
                x=[0, x],
                y=[0, y],
                mode="lines+markers",
                line=style,
                marker=dict(size=[0, 6], color=style["color"]),
                name="SAE latents" if alive[j] else "dead latents",
                legendgroup="alive" if alive[j] else "dead",
                showlegend=j == alive.index(alive[j]),
                hovertemplate=f"latent {j}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
            )
        )
    axis = dict(range=[-lim, lim], zeroline=True, zerolinecolor="#ccc", showgrid=False, showticklabels=False)
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis, scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title, height=520, plot_bgcolor="white", margin=dict(t=60, l=20, r=20, b=20))
    return fig


def plot_cosine_heatmap(
    cos: Float[Tensor, "feats d_sae"],
    *,
    title: str = "Cosine similarity between each true feature and each SAE latent",
    sort_latents: bool = True,
    match: float = 0.9,
) -> go.Figure:
    """Heatmap of ``cos[i, j]`` (true feature ``i``, decoder row ``j``) on a red-blue scale centred on 0.

    With ``sort_latents``, latents whose best cosine exceeds ``match`` are grouped by the feature they match
    (so a recovery shows as a staircase); the rest go to the right, best-matching first.
    """
    cos = _cpu(cos)
    n_feats, d_sae = cos.shape
    order = list(range(d_sae))
    if sort_latents:
        best, which = cos.max(dim=0)
        key = [(which[j].item() if best[j] > match else n_feats, -best[j].item()) for j in range(d_sae)]
        order = sorted(range(d_sae), key=lambda j: key[j])
    fig = go.Figure(
        go.Heatmap(
            z=cos[:, order].numpy(),
            x=[str(j) for j in order],
            y=list(range(n_feats)),
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
            reversescale=True,
            colorbar=dict(title="cos"),
            hovertemplate="feature %{y}, latent %{x}: cos %{z:.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(
        type="category",
        title_text="SAE latent" + (" (sorted by best-matching feature)" if sort_latents else ""),
        showticklabels=d_sae <= 60,
    )
    fig.update_yaxes(autorange="reversed", title_text="true feature", dtick=1 if n_feats <= 30 else None)
    fig.update_layout(title=title, height=max(300, 18 * n_feats + 160), margin=dict(t=60, l=60, r=20, b=60))
    return fig


def plot_recovery_bars(
    best_cos: Mapping[str, Float[Tensor, " feats"]],
    *,
    threshold: float | None = 0.95,
    title: str = "Feature recovery: for each true feature, its best cosine similarity with any decoder direction",
) -> go.Figure:
    """Grouped bars, one group per true feature and one bar per SAE; a dashed line marks ``threshold``."""
    fig = go.Figure()
    for k, (name, values) in enumerate(best_cos.items()):
        values = _cpu(values)
        fig.add_trace(
            go.Bar(
                x=list(range(len(values))),
                y=values.numpy(),
                name=name,
                marker_color=PALETTE[k % len(PALETTE)],
                hovertemplate=f"{name}<br>feature %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    if threshold is not None:
        fig.add_hline(
            y=threshold,
            line=dict(color="black", dash="dash", width=1),
            annotation_text=f"{threshold}",
            annotation_position="top left",
        )
    fig.update_xaxes(title_text="true feature", dtick=1)
    fig.update_yaxes(title_text="best cosine similarity", range=[0, 1.05])
    fig.update_layout(
        title=title, barmode="group", height=400, plot_bgcolor="white", margin=dict(t=60, l=60, r=20, b=50)
    )
    return fig


def plot_l0_tradeoff(
    results: Sequence[Mapping],
    *,
    true_l0: float | None = None,
    title: str = "The sparsity-reconstruction trade-off",
) -> go.Figure:
    """Two panels against L0: reconstruction error (left, log scale) and features recovered (right).

    ``results`` holds one mapping per SAE with keys ``architecture`` ("standard" or "topk"), ``label``
    (e.g. "λ=0.3" or "k=2"), ``l0``, ``mse`` and ``recovered`` (fraction of true features recovered).
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=["reconstruction error (lower is better)", "true features recovered"],
    )
    for arch in dict.fromkeys(r["architecture"] for r in results):
        rows = sorted((r for r in results if r["architecture"] == arch), key=lambda r: r["l0"])
        color = ARCH_COLORS.get(arch, "#555")
        name = {"standard": "standard (L1 penalty)", "topk": "TopK"}.get(arch, arch)
        for col, key in [(1, "mse"), (2, "recovered")]:
            fig.add_trace(
                go.Scatter(
                    x=[r["l0"] for r in rows],
                    y=[r[key] for r in rows],
                    mode="lines+markers+text",
                    text=[r["label"] for r in rows],
                    textposition="top center",
                    textfont=dict(size=10, color=color),
                    line=dict(color=color),
                    marker=dict(size=8, color=color),
                    name=name,
                    legendgroup=arch,
                    showlegend=col == 1,
                    hovertemplate=f"{name} %{{text}}<br>L0 %{{x:.2f}}<br>{key} %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if true_l0 is not None:
        for col in (1, 2):
            fig.add_vline(x=true_l0, line=dict(color="#888", dash="dot"), row=1, col=col)
        fig.add_annotation(
            x=true_l0,
            y=1.0,
            yref="y2 domain",
            xref="x2",
            text="true L0",
            showarrow=False,
            xanchor="left",
            font=dict(size=10, color="#666"),
        )
    fig.update_xaxes(title_text="L0 (active latents per input)")
    fig.update_yaxes(type="log", title_text="MSE (sum over d_in)", row=1, col=1)
    fig.update_yaxes(range=[-0.05, 1.1], tickformat=".0%", title_text="fraction with best cos > 0.95", row=1, col=2)
    fig.update_layout(title=title, height=450, plot_bgcolor="white", margin=dict(t=80, l=60, r=20, b=50))
    return fig


def plot_training_history(
    histories: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
    keys: Sequence[str] = ("loss", "mse", "l0"),
    *,
    x_key: str = "step",
    log_y: Sequence[str] = ("loss", "mse"),
    title: str = "Training curves",
) -> go.Figure:
    """One panel per metric in ``keys`` against ``x_key``; ``histories`` is one history dict, or several by name."""
    if all(not isinstance(v, Mapping) for v in histories.values()):
        histories = {"": histories}  # a single run
    keys = [k for k in keys if any(k in h for h in histories.values())]
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=list(keys), horizontal_spacing=0.08)
    for n, (name, history) in enumerate(histories.items()):
        for col, key in enumerate(keys, start=1):
            if key not in history:
                continue
            fig.add_trace(
                go.Scatter(
                    x=list(history[x_key]),
                    y=list(history[key]),
                    mode="lines",
                    name=name or key,
                    line=dict(color=PALETTE[n % len(PALETTE)]),
                    legendgroup=name,
                    showlegend=bool(name) and col == 1,
                ),
                row=1,
                col=col,
            )
            if key in log_y:
                fig.update_yaxes(type="log", row=1, col=col)
    fig.update_xaxes(title_text=x_key)
    fig.update_layout(title=title, height=330, margin=dict(t=70, l=50, r=20, b=50), plot_bgcolor="white")
    return fig


def plot_density_histogram(
    densities: Mapping[str, Float[Tensor, " d_sae"]] | Float[Tensor, " d_sae"],
    *,
    dense_threshold: float = 0.1,
    bins: int = 60,
    title: str = "Latent density: the fraction of tokens on which each latent fires (log10)",
) -> go.Figure:
    """Overlaid histograms of ``log10(density)`` of each SAE's live latents; dead ones (density 0, whose
    log is −∞) are counted in the legend instead. A dotted line marks ``dense_threshold``."""
    if isinstance(densities, Tensor):
        densities = {"SAE": densities}
    logs = {name: _cpu(d) for name, d in densities.items()}
    live = [torch.log10(d[d > 0]) for d in logs.values()]
    lo = min((v.min().item() for v in live if len(v)), default=-6.0)
    lo = math.floor(min(lo, math.log10(dense_threshold) - 1))
    fig = go.Figure()
    for k, (name, d) in enumerate(logs.items()):
        values = torch.log10(d[d > 0])
        n_dead, n_dense = int((d == 0).sum()), int((d > dense_threshold).sum())
        fig.add_trace(
            go.Histogram(
                x=values.numpy(),
                xbins=dict(start=lo, end=0.0, size=-lo / bins),
                name=f"{name} ({len(d)} latents: {n_dead} dead, {n_dense} dense)",
                marker_color=PALETTE[k % len(PALETTE)],
                opacity=0.6,
            )
        )
    fig.add_vline(
        x=math.log10(dense_threshold),
        line=dict(color="black", dash="dot"),
        annotation_text=f"dense: > {dense_threshold:.0%} of tokens",
        annotation_position="top left",
    )
    fig.update_xaxes(title_text="log10(latent density)", range=[lo, 0.05])
    fig.update_yaxes(title_text="number of latents")
    fig.update_layout(
        title=title,
        barmode="overlay",
        height=420,
        plot_bgcolor="white",
        legend=dict(x=0.01, y=0.99),
        margin=dict(t=60, l=60, r=20, b=50),
    )
    return fig
