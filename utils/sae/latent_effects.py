"""What an SAE latent on a model's last MLP does to the output: the logit lenses and the exact effect.

After the last block's MLP, nothing but the final LayerNorm and the unembedding stands between the MLP's
hidden layer and the logits: ``resid_final = resid_mid + hook_post @ W_out + b_out``. A latent ``f`` firing
with activation ``a`` at a position adds ``a · W_dec[f] @ W_out`` to ``resid_final`` there and nowhere else,
so removing it changes only that position's next-token prediction, and the change has a closed form through
the final LayerNorm (:func:`ablation_effects`): one LayerNorm and unembedding per (position, latent), no
second forward pass. That holds for an SAE on the last block's MLP (``blocks.{n_layers - 1}.mlp.hook_post``,
the course's one-layer model's only MLP); :func:`check_closed_form` says so clearly for any other hook.

The pieces, each used by the prompt view (``utils.sae.prompt_view``) and the dashboard (``utils.dashboard``):

- :func:`final_residual`: one forward pass to the final residual stream, with the SAE's input on the way;
- ``SAE.encode_sparse``: each token's active latents, a chunk of tokens at a time;
- :func:`ablation_effects`: the loss change when a latent is removed at a position, and the tokens it moves most.

Three ways to say which tokens a latent promotes, from the cheapest to the exact one:

- :func:`logit_lens`: from the weights alone, the same for every context. Through the LayerNorm it keeps the
  centring and the weight ``w``, and leaves out the division by the token's scale ``σ`` *and how that scale
  changes with the latent*, a first-order term;
- :func:`first_order_lens`: the LayerNorm's Jacobian at the token's own residual stream, then ``W_U``: the exact
  derivative, one per context;
- :func:`exact_logit_effect`: the LayerNorm and unembedding redone on the stream without the latent.

Part 5 has the learner write the logit lens (exercises 5.1 and 5.2) and the exact loss effect (5.8), and reads the
first-order lens from here; ``utils.sae.prompt_view.patched_loss`` is the slow reference of the exact effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils.lm.activations import hook_layer
from utils.lm.fused_attention import fused_attention

__all__ = [
    "AblationEffects",
    "ablation_effects",
    "check_closed_form",
    "encode_sparse",
    "exact_logit_effect",
    "final_log_probs",
    "final_logits",
    "final_residual",
    "first_order_lens",
    "last_mlp_hook",
    "latent_columns",
    "latent_out_directions",
    "logit_lens",
    "next_token_loss",
    "sae_out_directions",
]


# ---------------------------------------------------------------------------------------------------------
# Where the closed form holds
# ---------------------------------------------------------------------------------------------------------


def last_mlp_hook(model) -> str:
    """The hidden layer of the model's last MLP, ``blocks.{n_layers - 1}.mlp.hook_post``: where the closed form
    holds."""
    return f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"


def check_closed_form(model, hook_name: str) -> None:
    """Raise a clear error unless ``hook_name`` is the last block's MLP (the only place the closed form is exact)."""
    if hook_name != last_mlp_hook(model):
        raise ValueError(
            f"the closed-form loss effect needs an SAE on {last_mlp_hook(model)!r} (the last block's MLP, whose "
            f"output reaches the logits through the final LayerNorm alone), got {hook_name!r}"
        )


def _mlp_W_out(model, hook_name: str) -> Float[Tensor, "d_mlp d_model"]:
    """``W_out`` of the MLP whose hidden layer is ``hook_name`` (``blocks.L.mlp.hook_post``)."""
    layer = hook_layer(hook_name)
    if layer is None or hook_name != f"blocks.{layer}.mlp.hook_post":
        raise ValueError(f"expected an MLP's hidden layer, 'blocks.<layer>.mlp.hook_post', got {hook_name!r}")
    return model.blocks[layer].mlp.W_out


# ---------------------------------------------------------------------------------------------------------
# Directions: what a latent writes
# ---------------------------------------------------------------------------------------------------------


def latent_out_directions(W_dec: Float[Tensor, "d_sae d_mlp"], W_out: Float[Tensor, "d_mlp d_model"]) -> Tensor:
    """What one unit of each latent writes to the residual stream: ``W_dec @ W_out`` [d_sae d_model]."""
    return W_dec @ W_out


def sae_out_directions(model, sae) -> Float[Tensor, "d_sae d_model"]:
    """What one unit of each of ``sae``'s latents writes to the final residual stream (checked: the last MLP)."""
    check_closed_form(model, sae.cfg.hook_name)
    return latent_out_directions(sae.W_dec, _mlp_W_out(model, sae.cfg.hook_name))


def logit_lens(
    model, W_dec: Float[Tensor, "d_sae d_mlp"], through_ln: bool = True, hook_name: str | None = None
) -> Float[Tensor, "d_sae d_vocab"]:
    """The decoder logit lens ``W_dec @ W_out @ W_U``, with ``W_out`` of the MLP at ``hook_name`` (default: the
    last one); with ``through_ln``, each direction first centred and scaled by the final LayerNorm's weight.

    That is what the LayerNorm does to a direction *orthogonal to the token's residual stream*, up to the positive
    factor ``1/σ``: it leaves out the first-order change of the LayerNorm's scale with the direction, which
    :func:`first_order_lens` keeps. The same for every context, so it can be read from the weights; on a latent's
    own top contexts it points roughly, not exactly, where the exact effect does (Part 5 measures how far)."""
    out = latent_out_directions(W_dec, _mlp_W_out(model, hook_name or last_mlp_hook(model)))
    if through_ln:
        out = (out - out.mean(-1, keepdim=True)) * model.ln_final.w
    return out @ model.W_U


def _final_ln_weight(model) -> Tensor | None:
    """The final LayerNorm's weight ``w`` (None for "LNPre", which has none); an error for any other normalisation."""
    kind = model.cfg.normalization_type
    if kind not in ("LN", "LNPre"):
        raise ValueError(f"the first-order lens is written for a final LayerNorm ('LN' or 'LNPre'), got {kind!r}")
    return model.ln_final.w if kind == "LN" else None


def first_order_lens(
    model, directions: Float[Tensor, "... d_model"], resid: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_vocab"]:
    """The logits that adding ``ε · direction`` to the final residual stream ``resid`` adds, per unit of ``ε``, to
    first order: the final LayerNorm's Jacobian at ``resid`` applied to the direction, then ``W_U``.

    With ``r_c`` and ``d_c`` the residual and the direction centred over ``d_model`` (``n`` coordinates), and
    ``σ² = mean(r_c²) + eps`` (TransformerLens puts ``eps`` inside the square root), the LayerNorm
    ``LN(r) = w ⊙ r_c / σ + b`` changes by ``(w / σ) ⊙ (d_c − (r_c·d_c) / (n σ²) · r_c)`` per unit of ``ε``: the
    first term is what :func:`logit_lens` keeps (up to ``1/σ``), the second how the scale ``σ`` changes with the
    direction. ``directions`` and ``resid`` broadcast against each other (one direction at many residuals, or one
    per residual); a direction is what one unit of a latent writes to the stream (:func:`sae_out_directions`).
    Linear in the direction, so ``a · first_order_lens(model, d, x)`` is the first-order effect of activation
    ``a``. No gradient is taken: the Jacobian is written out (``tests/course/test_latent_effects.py`` checks it
    against autograd's and against finite differences)."""
    w = _final_ln_weight(model)
    r_c = resid - resid.mean(-1, keepdim=True)
    d_c = directions - directions.mean(-1, keepdim=True)
    variance = r_c.pow(2).mean(-1, keepdim=True) + model.ln_final.eps  # σ², as the LayerNorm computes it
    along = (r_c * d_c).sum(-1, keepdim=True) / (r_c.shape[-1] * variance)  # how the scale changes: dσ/σ per unit
    change = (d_c - along * r_c) / variance.sqrt()
    return (change if w is None else change * w) @ model.W_U


# ---------------------------------------------------------------------------------------------------------
# The harvest: the final residual stream and the SAE's input, in one pass
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def final_residual(
    model, tokens: Int[Tensor, "batch seq"], hook_name: str | None = None
) -> tuple[Float[Tensor, "batch seq d_model"], Float[Tensor, "batch seq d_in"]]:
    """``(resid_final, sae_input)`` from one forward pass that stops before the final LayerNorm.

    ``resid_final`` is what the final LayerNorm and unembedding read (the closed form starts there);
    ``sae_input`` the activations at ``hook_name``, an SAE's ``cfg.hook_name`` (default: the last block's MLP,
    the only hook where the closed form holds: any other raises). The prompt view and the dashboard's
    contexts read a model through this; the statistics engine, which needs the SAE's input only, through
    ``utils.lm.activations.hook_activations``, which stops at the hook."""
    hook_name = hook_name or last_mlp_hook(model)
    check_closed_form(model, hook_name)
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, seq], got shape {tuple(tokens.shape)}")
    resid_name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with fused_attention(model):
        _, cache = model.run_with_cache(
            tokens.to(model.cfg.device), names_filter=[resid_name, hook_name], stop_at_layer=model.cfg.n_layers
        )
    return cache[resid_name], cache[hook_name]


# ---------------------------------------------------------------------------------------------------------
# Sparse codes of many tokens
# ---------------------------------------------------------------------------------------------------------


def encode_sparse(sae, x: Float[Tensor, "n d_in"], batch: int = 4096) -> tuple[Tensor, Tensor]:
    """``sae.encode_sparse(x, chunk=batch)``: kept for notebooks generated before December 2026, which call it
    here. New code calls ``sae.encode_sparse``, the one sparse encoder."""
    return sae.encode_sparse(x, chunk=batch)


def latent_columns(
    values: Float[Tensor, "n k"], indices: Int[Tensor, "n k"], latents: Int[Tensor, " m"]
) -> Float[Tensor, "n m"]:
    """The dense activations [n m] of a few latents, from sparse codes (``SAE.encode_sparse``)."""
    match = indices[:, :, None] == latents.to(indices.device)[None, None, :]
    return (values[:, :, None] * match).sum(1)


# ---------------------------------------------------------------------------------------------------------
# The closed-form loss effect
# ---------------------------------------------------------------------------------------------------------


def final_logits(
    model, resid: Float[Tensor, "... d_model"], W_U_t: Float[Tensor, "d_vocab d_model"] | None = None
) -> Float[Tensor, "... d_vocab"]:
    """Next-token logits from final residual vectors: the model's final LayerNorm and unembedding.

    ``W_U_t``: ``model.W_U.T.contiguous()``, for a caller that unembeds many times (``ablation_effects``): the
    unembedding is then the same ``F.linear`` that TransformerLens's ``Unembed`` runs, without copying the
    transposed weight on every call (as ``Unembed`` does, to match Hugging Face's layout)."""
    shape = resid.shape[:-1]
    flat = resid.reshape(1, -1, resid.shape[-1])  # TransformerLens's modules want [batch pos d_model]
    if W_U_t is None:
        return model.unembed(model.ln_final(flat)).reshape(*shape, -1)
    return F.linear(model.ln_final(flat), W_U_t, model.b_U).reshape(*shape, -1)


def final_log_probs(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Next-token log-probabilities from final residual vectors: the model's final LayerNorm and unembedding."""
    return final_logits(model, resid).log_softmax(-1)


@torch.no_grad()
def exact_logit_effect(
    model, resid: Float[Tensor, "... d_model"], contributions: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_vocab"]:
    """The logits that ``contributions`` (already part of ``resid``) add, exactly: ``logits(resid) −
    logits(resid − contributions)``, the final LayerNorm and unembedding redone (:func:`final_logits`).

    For latent ``f`` with activation ``a`` at a token, ``contributions = a · latent_out[f]`` gives what the latent
    adds to that token's logits (removing it, as :func:`ablation_effects` does, changes them by minus this). The
    change in log-probabilities is the change in logits minus one number per token (the change in the log-sum-exp),
    so it ranks the tokens the same way; to compare it with a lens, centre both over the vocabulary. For steering by
    ``c · d`` at a clean ``x``, pass ``resid = x + c · d``. ``resid`` and ``contributions`` broadcast."""
    resid, without = torch.broadcast_tensors(resid, resid - contributions)
    shape = resid.shape[:-1]
    normed = [model.ln_final(r.reshape(1, -1, r.shape[-1])) for r in (resid, without)]
    return ((normed[0] - normed[1]) @ model.W_U).reshape(*shape, -1)  # the unembedding's bias cancels


def next_token_loss(model, resid: Float[Tensor, "n d_model"], next_tokens: Int[Tensor, " n"]) -> Float[Tensor, " n"]:
    """The loss on ``next_tokens`` predicted from final residual vectors (the model's own loss, without its blocks)."""
    return -final_log_probs(model, resid).gather(-1, next_tokens[:, None])[:, 0]


def _logsumexp(logits: Float[Tensor, "n d_vocab"]) -> Float[Tensor, " n"]:
    """``logits.logsumexp(-1)``, read off ``log_softmax`` (``x_0 - log_softmax(x)_0``): the same to float rounding
    (2e-6 on gelu-1l-mini's logits), 1.5x faster on a CPU, where ``log_softmax`` is one vectorised kernel."""
    return logits[:, 0] - torch.log_softmax(logits, dim=-1)[:, 0]


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
    chunk: int = 512,
) -> AblationEffects:
    """The course's one closed-form loss effect: for each pair, remove ``acts · latent_out[latent]`` (a latent's
    contribution ``a · W_dec[f] @ W_out``, see :func:`sae_out_directions`) from ``resid[position]``, redo the
    final LayerNorm and unembedding (:func:`final_log_probs`), and measure the change in the loss on
    ``next_tokens[position]``, in chunks of ``chunk`` pairs (512: each chunk's ``[chunk, d_vocab]`` logits stay
    near the cache; 1.46x faster than 2,048 and 1.65x faster than 128 on gelu-1l-mini's 8,192 tokens, 2 idle cores,
    ``tests/benchmarks/README.md``). Exact when ``resid`` is the final residual
    stream and the SAE reads the last block's MLP. ``n_top=0`` skips the top tokens (the loss alone).

    Computed without a log-probability table: the change in log-probability is the change in logits minus one
    number per pair (the change in the log-sum-exp), so the loss needs the logits at the next token and two
    log-sum-exps (:func:`_logsumexp`), and the largest absolute changes are one ``topk`` of the changes' sizes
    (the same tokens and values as from the table, to float rounding)."""
    loss, tops, changes = [], [], []
    W_U_t = model.W_U.T.contiguous()  # once, not once per chunk (final_logits)
    n_top = min(n_top, model.cfg.d_vocab)
    for start in range(0, len(positions), chunk):
        pos, lat, a = positions[start : start + chunk], latents[start : start + chunk], acts[start : start + chunk]
        where, pair_row = torch.unique(pos, return_inverse=True)  # each position's clean pass once
        logits_clean = final_logits(model, resid[where], W_U_t)
        delta = final_logits(model, resid[pos] - a[:, None] * latent_out[lat], W_U_t)  # ablated logits, for now
        shift = (_logsumexp(delta) - _logsumexp(logits_clean)[pair_row])[:, None]  # the change in log-sum-exp
        delta -= logits_clean[pair_row]  # the change in logits
        loss.append(shift[:, 0] - delta.gather(1, next_tokens[pos][:, None])[:, 0])
        if n_top == 0:
            tops.append(torch.zeros(len(pos), 0, dtype=torch.long, device=delta.device))
            changes.append(torch.zeros(len(pos), 0, device=delta.device))
            continue
        best = (delta - shift).abs_().topk(n_top, dim=-1).indices  # the largest changes in log-probability
        tops.append(best)
        changes.append(delta.gather(1, best) - shift)
    if not loss:
        empty = torch.zeros(0, n_top, device=resid.device)
        return AblationEffects(torch.zeros(0, device=resid.device), empty.long(), empty)
    return AblationEffects(torch.cat(loss), torch.cat(tops), torch.cat(changes))
