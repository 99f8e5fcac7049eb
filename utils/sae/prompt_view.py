"""The prompt-centric view: for a prompt of your own, at each token, every latent ranked three ways.

- by **activation**: how strongly the latent fires here;
- by **activation quantile**: where that activation sits among the latent's firings on the corpus (from
  ``LatentStats``), so a latent that rarely fires this strongly stands out even if its scale is small;
- by **loss effect**: how much the next-token loss changes when the latent's contribution ``a * W_dec[f]``
  is removed from the MLP activation at that position and the forward pass is finished.

For an SAE on the last block's MLP (the course's one-layer model has no other), removing a latent at
position t changes only ``resid_final[t]``, by ``a * (W_dec[f] @ W_out)``: the effect is exact in closed
form, one LayerNorm and unembedding per (position, active latent), with no second forward pass
(``utils.sae.latent_effects.ablation_effects``, which the dashboard uses too). ``patched_loss`` is the slow
reference: a real forward pass with the hook patched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils.sae import latent_effects

__all__ = ["PromptView", "patched_loss", "prompt_view"]

RANKINGS = ("act", "quantile", "loss_effect")


@dataclass
class PromptView:
    """A prompt's latents: activations, quantiles and loss effects at every position ([seq, d_sae] each)."""

    tokens: Int[Tensor, " seq"]
    pieces: list[str]
    acts: Float[Tensor, "seq d_sae"]
    quantiles: Float[Tensor, "seq d_sae"]
    loss: Float[Tensor, " seq"]
    loss_effect: Float[Tensor, "seq d_sae"]

    def rank(self, pos: int, by: str = "act", n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` top ``(latent, value)`` at ``pos``; "loss_effect" ranks by size (either sign), largest first."""
        if by not in RANKINGS:
            raise ValueError(f"by must be one of {RANKINGS}, got {by!r}")
        values = {"act": self.acts, "quantile": self.quantiles, "loss_effect": self.loss_effect}[by][pos]
        score = values.abs() if by == "loss_effect" else values
        score = torch.nan_to_num(score, nan=-1.0)
        order = torch.argsort(score, descending=True, stable=True)[:n]
        return [(int(i), float(values[i])) for i in order]

    def table(self, pos: int, n: int = 8) -> str:
        """A plain-text table of the three rankings at ``pos``."""
        cols = {by: self.rank(pos, by, n) for by in RANKINGS}
        nxt = repr(self.pieces[pos + 1]) if pos + 1 < len(self.pieces) else "(end)"
        lines = [
            f"position {pos}: {self.pieces[pos]!r} -> next {nxt}, clean loss {float(self.loss[pos]):.3f}",
            f"{'by activation':>22} | {'by quantile':>22} | {'by loss effect':>22}",
        ]
        for row in zip(*cols.values()):
            lines.append(" | ".join(f"{latent:>6} {value:>+15.3f}" for latent, value in row))
        return "\n".join(lines)


@torch.no_grad()
def patched_loss(model, sae, tokens: Int[Tensor, " seq"], pos: int, latent: int) -> float:
    """The reference: next-token loss at ``pos`` after a real forward pass with ``a * W_dec[latent]`` removed there."""
    tokens = tokens.reshape(1, -1)

    def remove(post: Tensor, hook) -> Tensor:
        acts = sae.encode(post[0, pos])
        post = post.clone()
        post[0, pos] -= acts[latent] * sae.W_dec[latent]
        return post

    logits = model.run_with_hooks(tokens, fwd_hooks=[(sae.cfg.hook_name, remove)])
    return float(F.cross_entropy(logits[0, pos], tokens[0, pos + 1]))


def _prompt_tokens(model, prompt: str | Int[Tensor, " seq"]) -> Int[Tensor, " seq"]:
    """A string tokenized with a BOS token first (as the model was trained), or the given token ids."""
    if isinstance(prompt, str):
        return model.to_tokens(prompt, prepend_bos=True)[0]
    return torch.as_tensor(prompt).reshape(-1)


def _dense(values: Float[Tensor, "seq k"], indices: Int[Tensor, "seq k"], d_sae: int) -> Float[Tensor, "seq d_sae"]:
    """A sparse code (or per-latent values at its slots) written out over all latents, 0 elsewhere."""
    return torch.zeros(len(values), d_sae, dtype=values.dtype).scatter_add_(1, indices, values)


def _loss_effects(
    model,
    sae,
    resid: Float[Tensor, "seq d_model"],
    tokens: Int[Tensor, " seq"],
    values: Float[Tensor, "seq k"],
    indices: Int[Tensor, "seq k"],
) -> Float[Tensor, "seq k"]:
    """The closed-form loss effect of each active (position, latent) of the code but the last position's (it
    predicts nothing); 0 at padded slots."""
    effect = torch.zeros(values.shape, device=values.device)
    pos, slot = torch.nonzero(values[:-1] > 0, as_tuple=True)
    if len(pos):
        effects = latent_effects.ablation_effects(
            model,
            resid[:-1],
            tokens[1:],
            pos,
            indices[pos, slot],
            values[pos, slot],
            latent_effects.sae_out_directions(model, sae),
            n_top=0,
        )
        effect[pos, slot] = effects.loss.to(effect.dtype)
    return effect


@torch.no_grad()
def prompt_view(model, sae, prompt: str | Int[Tensor, " seq"], stats=None) -> PromptView:
    """Activations, quantiles (needs ``stats``, else zeros) and exact loss effects of all latents on ``prompt``.

    A string is tokenized with a BOS token first, as the model was trained. One forward pass
    (``latent_effects.final_residual``, at the SAE's own hook, which must be the last block's MLP), one sparse
    encode (``sae.encode_sparse``, any architecture); loss effects are computed for the latents active at each
    position (all others are 0: removing nothing changes nothing)."""
    from utils.lm.token_text import token_pieces

    tokens = _prompt_tokens(model, prompt).to(model.cfg.device)
    resid, x = latent_effects.final_residual(model, tokens[None], sae.cfg.hook_name)
    resid = resid[0].float()
    values, indices = sae.encode_sparse(x[0].to(sae.W_enc.dtype))
    values = values.float()
    loss = torch.full((len(tokens),), float("nan"))
    loss[:-1] = latent_effects.next_token_loss(model, resid[:-1], tokens[1:]).cpu()
    effect = _loss_effects(model, sae, resid, tokens, values, indices)
    d_sae = sae.cfg.d_sae
    acts = _dense(values.cpu(), indices.cpu(), d_sae)
    loss_effect = _dense(effect.cpu(), indices.cpu(), d_sae)
    loss_effect[-1] = float("nan")  # the last position predicts nothing
    quantiles = torch.zeros_like(acts) if stats is None else stats.quantile_of(torch.arange(d_sae), acts)
    return PromptView(
        tokens=tokens.cpu(),
        pieces=token_pieces(model.tokenizer, tokens.cpu()),
        acts=acts,
        quantiles=quantiles,
        loss=loss,
        loss_effect=loss_effect,
    )
