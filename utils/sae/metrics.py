"""How good is an SAE? The metrics practitioners report, as short vectorised functions.

- Sparsity: ``l0`` (active latents per token), ``latent_density`` (how often each latent fires),
  ``dead_latents`` and ``dense_latents``, ``log_latent_sparsity`` (SAELens's sparsity file).
- Reconstruction: ``explained_variance`` / ``fraction_of_variance_unexplained``.
- Faithfulness to the model: ``ce_loss_recovered`` and ``kl_divergence``, by splicing the SAE's
  reconstruction into the forward pass in place of the activations it reads.
  ``evaluate_sae`` computes all of them in one sweep over a token set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.lm.activations import hook_activations
from utils.sae.model import SAE

__all__ = [
    "ce_loss_recovered",
    "dead_latents",
    "dense_latents",
    "density_histogram",
    "evaluate_sae",
    "explained_variance",
    "fraction_of_variance_unexplained",
    "kl_divergence",
    "l0",
    "latent_density",
    "log_latent_sparsity",
]


# ---------------------------------------------------------------------------------------------------
# Sparsity


def l0(acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, ""]:
    """Average number of non-zero latents per token (over all leading dimensions)."""
    return (acts != 0).sum(dim=-1).float().mean()


@torch.no_grad()
def latent_density(
    sae: SAE, x: Float[Tensor, "... d_in"] | Iterable[Float[Tensor, "batch d_in"]], batch_size: int = 4096
) -> Float[Tensor, " d_sae"]:
    """Fraction of tokens on which each latent fires (activation > 0).

    ``x`` is a tensor of activations (any leading shape), or an iterable of ``[batch, d_in]`` batches.
    """
    counts = torch.zeros(sae.cfg.d_sae, device=sae.W_enc.device)
    n_tokens = 0
    for batch in _batches(x, batch_size):
        counts += (sae.encode(batch.to(sae.W_enc.device, sae.W_enc.dtype)) > 0).sum(0)
        n_tokens += len(batch)
    return counts / max(1, n_tokens)


def dead_latents(density: Float[Tensor, " d_sae"], threshold: float = 0.0) -> Tensor:
    """Boolean mask of latents whose density is at most ``threshold`` (default: never fired)."""
    return density <= threshold


def dense_latents(density: Float[Tensor, " d_sae"], threshold: float = 0.1) -> Tensor:
    """Boolean mask of latents firing on more than ``threshold`` of tokens (default 10%)."""
    return density > threshold


def log_latent_sparsity(density: Float[Tensor, " d_sae"], eps: float = 1e-10) -> Float[Tensor, " d_sae"]:
    """``log10(density + eps)``: what SAELens stores in ``sparsity.safetensors`` (dead latents get -10)."""
    return torch.log10(density + eps)


def density_histogram(density: Float[Tensor, " d_sae"], title: str = "Latent density", nbins: int = 60):
    """A plotly histogram of log10 latent densities; dead latents are counted in the title."""
    import plotly.express as px

    n_dead = int(dead_latents(density).sum())
    log_density = log_latent_sparsity(density)[density > 0].cpu().numpy()
    fig = px.histogram(x=log_density, nbins=nbins, title=f"{title} ({n_dead} dead latents not shown)")
    fig.update_layout(xaxis_title="log10(latent density)", yaxis_title="number of latents", showlegend=False)
    return fig


# ---------------------------------------------------------------------------------------------------
# Reconstruction


def explained_variance(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over all tokens (leading dimensions flattened).

    The variance is taken around the mean activation of the batch, as SAELens (>= 6.45) computes it: an SAE
    that outputs the mean explains 0%. Sums are in float64: the activations have a large mean.
    """
    x, x_hat = x.reshape(-1, x.shape[-1]).double(), x_hat.reshape(-1, x_hat.shape[-1]).double()
    residual = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return (1 - residual / total).float()


def fraction_of_variance_unexplained(
    x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]
) -> Float[Tensor, ""]:
    """``1 - explained_variance(x, x_hat)``."""
    return 1 - explained_variance(x, x_hat)


# ---------------------------------------------------------------------------------------------------
# Splicing the SAE into the model


def _splice_hook(replacement, skip_first: bool):
    """A forward hook that replaces the activations by ``replacement(acts)``; position 0 is left alone if asked."""

    def hook(acts: Tensor, hook=None) -> Tensor:
        new = replacement(acts).to(acts.dtype)
        if skip_first:
            new = torch.cat([acts[:, :1], new[:, 1:]], dim=1)
        return new

    return hook


@torch.no_grad()
def _spliced_logits(
    model, sae: SAE, tokens: Int[Tensor, "batch seq"], how: str, mean_acts: Tensor | None, skip_first: bool
) -> Tensor:
    if how == "clean":
        return model(tokens, return_type="logits")
    if how == "reconstructed":
        replace = lambda acts: sae(acts.to(sae.W_enc.dtype))[0]  # noqa: E731
    elif how == "zero":
        replace = torch.zeros_like
    elif how == "mean":
        replace = lambda acts: mean_acts.to(acts).expand_as(acts)  # noqa: E731
    else:
        raise ValueError(f"unknown splice {how!r}")
    hook = _splice_hook(replace, skip_first)
    return model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(sae.cfg.hook_name, hook)])


def _next_token_loss(
    logits: Float[Tensor, "batch seq vocab"], tokens: Int[Tensor, "batch seq"]
) -> Float[Tensor, "batch seq-1"]:
    log_probs = logits[:, :-1].float().log_softmax(-1)
    return -log_probs.gather(-1, tokens[:, 1:, None])[..., 0]


def _kl(clean_logits: Tensor, new_logits: Tensor) -> Float[Tensor, "batch seq"]:
    """KL(clean || new) at each position, in nats."""
    log_p, log_q = clean_logits.float().log_softmax(-1), new_logits.float().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@torch.no_grad()
def mean_activation(
    model, tokens: Int[Tensor, "batch seq"], hook_name: str, batch_size: int = 64
) -> Float[Tensor, " d_in"]:
    """The activation at ``hook_name`` averaged over all tokens except position 0 (BOS), for mean ablation."""
    total, count = None, 0
    for batch in _batches(tokens, batch_size):
        acts = hook_activations(model, batch, hook_name)[:, 1:]
        acts = acts.reshape(-1, acts.shape[-1]).double()
        total = acts.sum(0) if total is None else total + acts.sum(0)
        count += len(acts)
    return (total / count).float()


@torch.no_grad()
def ce_loss_recovered(
    model,
    sae: SAE,
    tokens: Int[Tensor, "batch seq"],
    ablation: Literal["zero", "mean"] = "zero",
    mean_acts: Float[Tensor, " d_in"] | None = None,
    batch_size: int = 32,
    skip_first: bool = True,
) -> dict[str, float]:
    """How much of the model's next-token loss survives replacing the activations by the SAE's reconstruction.

    Three forward passes over ``tokens``, each returning the mean next-token cross-entropy (nats/token):
    ``clean`` (untouched), ``reconstructed`` (activations at the SAE's hook replaced by ``x_hat``) and
    ``ablated`` (replaced by zeros, or by their mean activation ``mean_acts``). Then

        recovered = (ablated - reconstructed) / (ablated - clean)

    1 means the SAE is as good as the real activations, 0 as bad as ablating them. Position 0 (BOS) is left
    untouched in both splices (``skip_first``): the SAE was not trained on it (see ``ActivationBuffer``).
    With ``ablation="mean"`` and no ``mean_acts``, the mean is taken over ``tokens``.
    """
    if ablation == "mean" and mean_acts is None:
        mean_acts = mean_activation(model, tokens, sae.cfg.hook_name, batch_size)
    sums = {"clean": 0.0, "reconstructed": 0.0, "ablated": 0.0}
    count = 0
    for batch in _batches(tokens, batch_size):
        batch = batch.to(model.cfg.device)
        for name, how in (("clean", "clean"), ("reconstructed", "reconstructed"), ("ablated", ablation)):
            logits = _spliced_logits(model, sae, batch, how, mean_acts, skip_first)
            sums[name] += _next_token_loss(logits, batch).sum().item()
        count += batch[:, 1:].numel()
    out = {name: value / count for name, value in sums.items()}
    out["recovered"] = (out["ablated"] - out["reconstructed"]) / (out["ablated"] - out["clean"])
    return out


@torch.no_grad()
def kl_divergence(
    model, sae: SAE, tokens: Int[Tensor, "batch seq"], batch_size: int = 32, skip_first: bool = True
) -> float:
    """Mean over positions of KL(clean model || model with the SAE spliced in), in nats per token."""
    total, count = 0.0, 0
    for batch in _batches(tokens, batch_size):
        batch = batch.to(model.cfg.device)
        clean = _spliced_logits(model, sae, batch, "clean", None, skip_first)
        spliced = _spliced_logits(model, sae, batch, "reconstructed", None, skip_first)
        total += _kl(clean, spliced)[:, 1:].sum().item()  # position 0 is untouched: KL 0 there
        count += batch[:, 1:].numel()
    return total / count


# ---------------------------------------------------------------------------------------------------
# Everything at once


@torch.no_grad()
def evaluate_sae(
    model,
    sae: SAE,
    tokens: Int[Tensor, "batch seq"],
    batch_size: int = 32,
    mean_acts: Float[Tensor, " d_in"] | None = None,
    progress: bool = False,
) -> dict[str, float | Tensor]:
    """Every metric above on ``tokens`` in one sweep (four forward passes per batch).

    Activation-level metrics (L0, explained variance, MSE, densities) use all positions but the first
    (BOS); the loss-level ones follow ``ce_loss_recovered`` and ``kl_divergence``. Returns floats, plus
    ``density`` (a [d_sae] tensor) for the histogram and SAELens's sparsity file.
    """
    from tqdm.auto import tqdm

    if mean_acts is None:
        mean_acts = mean_activation(model, tokens, sae.cfg.hook_name, batch_size)
    hook = sae.cfg.hook_name
    d_in = sae.cfg.d_in
    fired = torch.zeros(sae.cfg.d_sae, device=sae.W_enc.device)
    sums = dict(clean=0.0, reconstructed=0.0, zero=0.0, mean=0.0, kl=0.0, l0=0.0, sq_err=0.0)
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_sq_x = 0.0
    n_acts, n_preds = 0, 0
    batches = list(_batches(tokens, batch_size))
    for batch in tqdm(batches, disable=not progress, desc="evaluating"):
        batch = batch.to(model.cfg.device)
        # Activation-level metrics
        x = hook_activations(model, batch, hook)[:, 1:].reshape(-1, d_in).to(sae.W_enc.dtype)
        x_hat, acts = sae(x)
        fired += (acts > 0).sum(0)
        sums["l0"] += (acts > 0).sum().item()
        sums["sq_err"] += (x - x_hat).double().pow(2).sum().item()
        sum_x += x.double().sum(0).cpu()
        sum_sq_x += x.double().pow(2).sum().item()
        n_acts += len(x)
        # Loss-level metrics
        clean = _spliced_logits(model, sae, batch, "clean", None, True)
        spliced = _spliced_logits(model, sae, batch, "reconstructed", None, True)
        sums["clean"] += _next_token_loss(clean, batch).sum().item()
        sums["reconstructed"] += _next_token_loss(spliced, batch).sum().item()
        sums["kl"] += _kl(clean, spliced)[:, 1:].sum().item()
        for how in ("zero", "mean"):
            logits = _spliced_logits(model, sae, batch, how, mean_acts, True)
            sums[how] += _next_token_loss(logits, batch).sum().item()
        n_preds += batch[:, 1:].numel()

    ce = {key: sums[key] / n_preds for key in ("clean", "reconstructed", "zero", "mean")}
    total_variance = sum_sq_x / n_acts - (sum_x / n_acts).pow(2).sum().item()  # as SAELens: E||x||^2 - ||E x||^2
    mse = sums["sq_err"] / n_acts
    density = fired / n_acts
    return {
        "n_tokens": n_acts,
        "l0": sums["l0"] / n_acts,
        "mse": mse,
        "explained_variance": 1 - mse / total_variance,
        "ce_clean": ce["clean"],
        "ce_reconstructed": ce["reconstructed"],
        "ce_zero_ablated": ce["zero"],
        "ce_mean_ablated": ce["mean"],
        "ce_loss_recovered_zero": (ce["zero"] - ce["reconstructed"]) / (ce["zero"] - ce["clean"]),
        "ce_loss_recovered_mean": (ce["mean"] - ce["reconstructed"]) / (ce["mean"] - ce["clean"]),
        "kl_divergence": sums["kl"] / n_preds,
        "frac_alive": float((density > 0).float().mean()),
        "frac_density_below_1e-5": float((density < 1e-5).float().mean()),
        "frac_dense": float(dense_latents(density).float().mean()),
        "density": density,
    }


def _batches(x, batch_size: int) -> Iterator[Tensor]:
    """Rows of a tensor in batches (leading dims flattened for activations), or an iterable's items as given."""
    if isinstance(x, Tensor):
        if x.dtype.is_floating_point:
            x = x.reshape(-1, x.shape[-1])
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]
    else:
        yield from x
