"""Part 1 (toy models of superposition): the figures.

Every function returns a plain ``plotly.graph_objects.Figure``; the notebook calls ``.show()``. Only
``go`` traces and ``make_subplots`` are used (no FigureWidget, no ipywidgets), so the figures render the
same in JupyterLab, VS Code and Colab. Inputs are tensors with an instance axis first (``inst ...``);
each instance gets its own subplot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from utils.parts.plot_rendering import use_offline_renderer

use_offline_renderer()  # figures that survive an HTML export, offline

__all__ = [
    "plot_feature_dimensionality",
    "plot_feature_heatmap",
    "plot_features_in_2d",
    "plot_neuron_weights",
    "plot_norms_and_superposition",
    "plot_wtw",
]

#: One colour per feature index (cycled), light enough to tell apart on a white background.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _titles(titles: Sequence[str] | None, n: int) -> list[str]:
    return list(titles) if titles is not None else [f"instance {i}" for i in range(n)]


def plot_features_in_2d(
    W: Float[Tensor, "inst 2 feats"],
    titles: Sequence[str] | None = None,
    *,
    colors: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    max_cols: int = 4,
    title: str = "Feature directions W_i in the 2D hidden space",
) -> go.Figure:
    """Each feature's column ``W[:, i]`` drawn as an arrow from the origin, one square subplot per instance."""
    W = W.detach().float().cpu()
    n_inst, d, n_feats = W.shape
    if d != 2:
        raise ValueError(f"plot_features_in_2d needs a 2D hidden space, got d_hidden={d}")
    rows, cols = _grid(n_inst, max_cols)
    colors = list(colors) if colors is not None else [PALETTE[i % len(PALETTE)] for i in range(n_feats)]
    names = list(names) if names is not None else [f"feature {i}" for i in range(n_feats)]
    lim = max(1.2, 1.1 * W.norm(dim=1).max().item())
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=_titles(titles, n_inst), horizontal_spacing=0.04, vertical_spacing=0.12
    )
    for k in range(n_inst):
        r, c = k // cols + 1, k % cols + 1
        for i in range(n_feats):
            x, y = W[k, 0, i].item(), W[k, 1, i].item()
            fig.add_trace(
                go.Scatter(
                    x=[0, x],
                    y=[0, y],
                    mode="lines+markers",
                    line=dict(color=colors[i], width=2),
                    marker=dict(size=[0, 9], color=colors[i]),
                    name=names[i],
                    legendgroup=names[i],
                    showlegend=k == 0,
                    hovertemplate=f"{names[i]}<br>W=(%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
                ),
                row=r,
                col=c,
            )
        axis = dict(range=[-lim, lim], zeroline=True, zerolinecolor="#ccc", showgrid=False, showticklabels=False)
        fig.update_xaxes(**axis, row=r, col=c)
        fig.update_yaxes(**axis, scaleanchor=f"x{k + 1 if k else ''}", scaleratio=1, row=r, col=c)
    fig.update_layout(title=title, height=260 * rows + 60, plot_bgcolor="white", margin=dict(t=80, l=20, r=20, b=20))
    return fig


def plot_wtw(
    W: Float[Tensor, "inst hidden feats"],
    titles: Sequence[str] | None = None,
    *,
    max_cols: int = 4,
    title: str = "WᵀW: how much each feature's output reads from every other feature",
) -> go.Figure:
    """Heatmaps of ``WᵀW`` (``[feats feats]``) per instance, on a shared red-blue scale centred on 0."""
    W = W.detach().float().cpu()
    n_inst = W.shape[0]
    wtw = torch.einsum("ihf,ihg->ifg", W, W)
    zmax = max(1.0, wtw.abs().max().item())
    rows, cols = _grid(n_inst, max_cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=_titles(titles, n_inst), horizontal_spacing=0.03, vertical_spacing=0.1
    )
    for k in range(n_inst):
        fig.add_trace(
            go.Heatmap(
                z=wtw[k].numpy(),
                zmin=-zmax,
                zmax=zmax,
                colorscale="RdBu",
                reversescale=True,
                showscale=k == 0,
                hovertemplate="out %{y} ← in %{x}: %{z:.2f}<extra></extra>",
            ),
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=title, height=230 * rows + 80, margin=dict(t=80, l=20, r=20, b=20))
    return fig


def plot_norms_and_superposition(
    norms: Float[Tensor, "inst feats"],
    superposition: Float[Tensor, "inst feats"],
    titles: Sequence[str] | None = None,
    *,
    title: str = "Feature norm ‖W_i‖ (bar length), coloured by superposition Σ_{j≠i}(Ŵ_i·W_j)²",
) -> go.Figure:
    """Horizontal bars per instance: length ``‖W_i‖``; colour from black (orthogonal) to yellow (superposition ≥ 1)."""
    norms, superposition = norms.detach().float().cpu(), superposition.detach().float().cpu()
    n_inst, n_feats = norms.shape
    fig = make_subplots(
        rows=1, cols=n_inst, subplot_titles=_titles(titles, n_inst), shared_yaxes=True, horizontal_spacing=0.015
    )
    for k in range(n_inst):
        fig.add_trace(
            go.Bar(
                y=list(range(n_feats)),
                x=norms[k].numpy(),
                orientation="h",
                marker=dict(
                    color=superposition[k].clamp(0, 1).numpy(),
                    colorscale="Viridis",
                    cmin=0,
                    cmax=1,
                    showscale=k == 0,
                    colorbar=dict(title="superposition", len=0.8),
                ),
                customdata=superposition[k].numpy(),
                hovertemplate="feature %{y}<br>norm %{x:.2f}<br>superposition %{customdata:.2f}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=k + 1,
        )
    fig.update_yaxes(autorange="reversed", title_text="feature (most important at the top)", row=1, col=1)
    fig.update_xaxes(range=[0, max(1.3, norms.max().item() * 1.05)])
    fig.update_layout(title=title, height=420, bargap=0.15, margin=dict(t=80, l=60, r=20, b=30))
    return fig


def plot_neuron_weights(
    W: Float[Tensor, "inst hidden feats"],
    titles: Sequence[str] | None = None,
    *,
    max_cols: int = 4,
    title: str = "Each neuron's weights on each feature (rows: neurons, columns: features)",
) -> go.Figure:
    """Heatmaps of ``W`` per instance, neurons as rows and features as columns, red-blue centred on 0."""
    W = W.detach().float().cpu()
    n_inst, d_hidden, n_feats = W.shape
    zmax = W.abs().max().item()
    rows, cols = _grid(n_inst, max_cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=_titles(titles, n_inst), horizontal_spacing=0.04, vertical_spacing=0.14
    )
    for k in range(n_inst):
        fig.add_trace(
            go.Heatmap(
                z=W[k].numpy(),
                zmin=-zmax,
                zmax=zmax,
                colorscale="RdBu",
                reversescale=True,
                showscale=k == 0,
                x=list(range(n_feats)),
                y=list(range(d_hidden)),
                hovertemplate="neuron %{y}, feature %{x}: %{z:.2f}<extra></extra>",
            ),
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_yaxes(autorange="reversed", dtick=1)
    fig.update_yaxes(title_text="neuron", col=1)
    fig.update_xaxes(title_text="feature", row=rows)
    fig.update_layout(
        title=title, height=max(220, 28 * d_hidden + 110) * rows + 60, margin=dict(t=80, l=50, r=20, b=40)
    )
    return fig


def plot_feature_heatmap(
    values: Float[Tensor, "inst feats"],
    row_labels: Sequence[str],
    *,
    title: str,
    colorbar_title: str = "",
    zmin: float = 0.0,
    zmax: float = 1.0,
) -> go.Figure:
    """One heatmap of a per-feature quantity: one row per instance, one column per feature."""
    values = values.detach().float().cpu()
    fig = go.Figure(
        go.Heatmap(
            z=values.numpy(),
            y=list(row_labels),
            x=list(range(values.shape[1])),
            zmin=zmin,
            zmax=zmax,
            colorscale="Viridis",
            colorbar=dict(title=colorbar_title),
            texttemplate="%{z:.2f}",
            hovertemplate="%{y}, feature %{x}: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="feature (most important on the left)", dtick=1)
    fig.update_layout(title=title, height=60 * values.shape[0] + 150, margin=dict(t=60, l=110, r=20, b=40))
    return fig


#: Fractions where feature dimensionalities cluster, and the geometry behind each (Elhage et al., 2022,
#: "The Geometry of Superposition"): k features sharing a d-dimensional subspace have dimensionality d/k.
GUIDE_LINES: dict[float, str] = {  # value -> label
    1.0: "1: own dimension",
    3 / 4: "3/4: tetrahedron",
    2 / 3: "2/3: triangle",
    1 / 2: "1/2: digon (antipodal pair)",
    2 / 5: "2/5: pentagon",
    3 / 8: "3/8: square antiprism",
    1 / 3: "1/3: hexagon",
}


def plot_feature_dimensionality(
    dims: Float[Tensor, "inst feats"],
    feature_probability: Float[Tensor, " inst"],
    *,
    dims_per_feature: Float[Tensor, " inst"] | None = None,
    title: str = "Feature dimensionality D_i against sparsity",
) -> go.Figure:
    """Scatter of every feature's dimensionality against ``1 / (1 - S)`` (log scale), with guide lines.

    ``dims_per_feature`` (optional, e.g. ``d_hidden / ‖W‖_F²`` per instance) is drawn as a line.
    """
    dims = dims.detach().float().cpu()
    inv = 1 / feature_probability.detach().float().cpu()
    n_feats = dims.shape[1]
    # a little horizontal jitter, so that features stacked on the same fraction stay visible
    jitter = torch.exp(0.03 * torch.linspace(-1, 1, n_feats))
    xs = (inv[:, None] * jitter[None, :]).flatten()
    fig = go.Figure()
    shifts = {2 / 5: 5, 3 / 8: -2, 1 / 3: -8}  # keep the three close labels from overlapping
    for value, label in GUIDE_LINES.items():
        fig.add_hline(
            y=value,
            line=dict(color="#bbb", dash="dot", width=1),
            annotation_text=label,
            annotation_position="right",
            annotation_font_size=10,
            annotation_yshift=shifts.get(value, 0),
        )
    fig.add_trace(
        go.Scatter(
            x=xs.numpy(),
            y=dims.flatten().numpy(),
            mode="markers",
            name="one feature",
            marker=dict(size=5, color="#1f77b4", opacity=0.6),
            hovertemplate="1/(1-S)=%{x:.1f}<br>D=%{y:.3f}<extra></extra>",
        )
    )
    if dims_per_feature is not None:
        fig.add_trace(
            go.Scatter(
                x=inv.numpy(),
                y=dims_per_feature.detach().float().cpu().numpy(),
                mode="lines+markers",
                name="d_hidden / ‖W‖²_F",
                line=dict(color="black", width=1.5),
            )
        )
    fig.update_xaxes(type="log", title_text="1 / (1 − S)  (sparser →)")
    fig.update_yaxes(range=[-0.03, 1.08], title_text="dimensionality D_i")
    fig.update_layout(
        title=title,
        height=560,
        plot_bgcolor="white",
        margin=dict(t=60, l=60, r=190, b=50),
        legend=dict(x=0.72, y=0.98, bgcolor="rgba(255,255,255,0.8)"),
    )
    return fig
