"""What an SAE latent on a one-layer model's MLP does to the output: the logit lens and exact ablation.

The model is one block: ``resid_final = resid_mid + hook_post @ W_out + b_out``, then the final LayerNorm
and the unembedding. A latent ``f`` firing with activation ``a`` at a position adds ``a · W_dec[f] @ W_out``
to ``resid_final`` there and nowhere else, so removing it changes only that position's next-token
prediction, and the change has a closed form through the final LayerNorm (:func:`ablation_effects`).
Part 5 has the learner write each of these; the dashboard (``utils.dashboard``) uses them at scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "AblationEffects",
    "encode_sparse",
    "latent_columns",
    "HOOK",
    "ablation_effects",
    "final_log_probs",
    "final_residual",
    "latent_out_directions",
    "logit_lens",
]

HOOK = "blocks.0.mlp.hook_post"


def latent_out_directions(W_dec: Float[Tensor, "d_sae d_mlp"], W_out: Float[Tensor, "d_mlp d_model"]) -> Tensor:
    """What one unit of each latent writes to the residual stream: ``W_dec @ W_out`` [d_sae d_model]."""
    return W_dec @ W_out


def logit_lens(model, W_dec: Float[Tensor, "d_sae d_mlp"], through_ln: bool = True) -> Float[Tensor, "d_sae d_vocab"]:
    """The decoder logit lens ``W_dec @ W_out @ W_U``; with ``through_ln``, each direction first centred and
    scaled by the final LayerNorm's weight (what the LayerNorm does to a direction, up to a positive scale)."""
    out = latent_out_directions(W_dec, model.blocks[0].mlp.W_out)
    if through_ln:
        out = (out - out.mean(-1, keepdim=True)) * model.ln_final.w
    return out @ model.W_U


@torch.no_grad()
def final_residual(model, tokens: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor]:
    """``(resid_final [batch seq d_model], hook_post [batch seq d_mlp])`` from one forward pass (no unembedding)."""
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post", HOOK], stop_at_layer=1)
    return cache["blocks.0.hook_resid_post"], cache[HOOK]


@dataclass
class AblationEffects:
    """Exact effects of removing one latent at one position, for a list of (position, latent) pairs.

    ``loss``: change in the next-token loss (ablated - clean; > 0 means the latent helped the prediction);
    ``top_tokens``/``top_changes``: the tokens whose log-probability moved most when the latent is
    removed, and by how much (ablated - clean), largest absolute changes first."""

    loss: Float[Tensor, " pairs"]
    top_tokens: Int[Tensor, "pairs n_top"]
    top_changes: Float[Tensor, "pairs n_top"]


@torch.no_grad()
def ablation_effects(
    model,
    resid: Float[Tensor, "positions d_model"],
    next_tokens: Int[Tensor, " positions"],
    positions: Int[Tensor, " pairs"],
    latents: Int[Tensor, " pairs"],
    acts: Float[Tensor, " pairs"],
    latent_out: Float[Tensor, "d_sae d_model"],
    n_top: int = 3,
    chunk: int = 2048,
) -> AblationEffects:
    """For each pair, remove ``acts · latent_out[latent]`` from ``resid[position]``, redo the final LayerNorm and
    unembedding (:func:`final_log_probs`), and measure the change in the loss on ``next_tokens[position]``
    (exact for a one-layer model), in chunks of ``chunk`` pairs."""
    loss, tops, changes = [], [], []
    for start in range(0, len(positions), chunk):
        pos, lat, a = positions[start : start + chunk], latents[start : start + chunk], acts[start : start + chunk]
        logp_clean = final_log_probs(model, resid[pos])
        delta = final_log_probs(model, resid[pos] - a[:, None] * latent_out[lat]) - logp_clean
        loss.append(-delta.gather(1, next_tokens[pos][:, None])[:, 0])
        top = delta.abs().topk(n_top, dim=-1).indices
        tops.append(top)
        changes.append(delta.gather(1, top))
    if not loss:
        empty = torch.zeros(0, n_top)
        return AblationEffects(torch.zeros(0), empty.long(), empty)
    return AblationEffects(torch.cat(loss), torch.cat(tops), torch.cat(changes))


def final_log_probs(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Next-token log-probabilities from final residual vectors: the model's final LayerNorm and unembedding."""
    shape = resid.shape[:-1]
    flat = resid.reshape(1, -1, resid.shape[-1])  # TransformerLens's modules want [batch pos d_model]
    return model.unembed(model.ln_final(flat)).log_softmax(-1).reshape(*shape, -1)


@torch.no_grad()
def encode_sparse(sae, post: Float[Tensor, "n d_mlp"], batch: int = 4096) -> tuple[Tensor, Tensor]:
    """``(values, indices)`` [n k] of each token's k active latents (a TopK SAE), encoded in batches."""
    values, indices = [], []
    for start in range(0, len(post), batch):
        top = sae.encode(post[start : start + batch]).topk(sae.cfg.k, dim=-1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def latent_columns(values: Tensor, indices: Tensor, latents: Int[Tensor, " m"]) -> Float[Tensor, "n m"]:
    """The dense activations [n m] of a few latents, from the sparse codes of :func:`encode_sparse`."""
    match = indices[:, :, None] == latents.to(indices.device)[None, None, :]
    return (values[:, :, None] * match).sum(1)
