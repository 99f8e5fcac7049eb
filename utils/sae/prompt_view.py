"""The prompt-centric view: for a prompt of your own, at each token, every latent ranked three ways.

- by **activation**: how strongly the latent fires here;
- by **activation quantile**: where that activation sits among the latent's firings on the corpus (from
  ``LatentStats``), so a latent that rarely fires this strongly stands out even if its scale is small;
- by **loss effect**: how much the next-token loss changes when the latent's contribution ``a * W_dec[f]``
  is removed from the MLP activation at that position and the forward pass is finished.

In a one-layer model the MLP writes straight into the final residual stream, so removing a latent at
position t changes only ``resid_final[t]``, by ``a * (W_dec[f] @ W_out)``: the effect is exact in closed form,
one LayerNorm and unembedding per (position, active latent), with no second forward pass
(``loss_effects``). ``patched_loss`` is the slow reference: a real forward pass with the hook patched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["PromptView", "loss_effects", "patched_loss", "prompt_view"]

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
        lines = [f"position {pos}: {self.pieces[pos]!r} -> next {nxt}, clean loss {float(self.loss[pos]):.3f}",
                 f"{'by activation':>22} | {'by quantile':>22} | {'by loss effect':>22}"]
        for row in zip(*cols.values()):
            lines.append(" | ".join(f"{latent:>6} {value:>+15.3f}" for latent, value in row))
        return "\n".join(lines)


def _check_one_layer(model, sae) -> None:
    """The closed form holds only if the SAE reads the MLP output of the model's last block."""
    last = f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"
    if sae.cfg.hook_name != last:
        raise ValueError(
            f"the closed-form loss effect needs an SAE on {last!r} (the last block's MLP), got {sae.cfg.hook_name!r}"
        )


@torch.no_grad()
def loss_effects(
    model,
    resid_final: Float[Tensor, "seq d_model"],
    deltas: Float[Tensor, "seq n d_model"],
    next_tokens: Int[Tensor, " seq"],
) -> Float[Tensor, "seq n"]:
    """Next-token loss with ``resid_final[t] - deltas[t, i]`` in place of ``resid_final[t]``, minus the clean loss.

    Exact for a one-layer model: each removal changes only the final residual at its own position.
    """
    from utils.sae.latent_effects import final_log_probs

    def loss(resid: Tensor) -> Tensor:  # [..., d_model] -> [...] next-token loss
        index = next_tokens.reshape(-1, *([1] * (resid.ndim - 2)), 1).expand(*resid.shape[:-1], 1)
        return -final_log_probs(model, resid).gather(-1, index)[..., 0]

    return loss(resid_final[:, None, :] - deltas) - loss(resid_final[:, None, :])


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


@torch.no_grad()
def prompt_view(model, sae, prompt: str | Int[Tensor, " seq"], stats=None, max_active: int | None = None) -> PromptView:
    """Activations, quantiles (needs ``stats``, else zeros) and exact loss effects of all latents on ``prompt``.

    A string is tokenized with a BOS token first, as the model was trained. Loss effects are computed for
    the latents active at each position (all others are 0: removing nothing changes nothing).
    """
    from utils.lm.token_text import token_pieces

    _check_one_layer(model, sae)
    if isinstance(prompt, str):
        tokens = model.to_tokens(prompt, prepend_bos=True)[0]
    else:
        tokens = torch.as_tensor(prompt).reshape(-1)
    tokens = tokens.to(model.cfg.device)
    resid_name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    logits, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, resid_name])
    post, resid = cache[sae.cfg.hook_name][0], cache[resid_name][0]
    acts = sae.encode(post.to(sae.W_enc.dtype)).float()
    seq, d_sae = acts.shape
    loss = torch.full((seq,), float("nan"))
    loss[:-1] = F.cross_entropy(logits[0, :-1].float(), tokens[1:], reduction="none").cpu()
    effect = torch.zeros(seq, d_sae)
    effect[-1] = float("nan")
    if seq > 1:
        k = max_active or max(int((acts[:-1] > 0).sum(-1).max()), 1)
        values, latents = acts[:-1].topk(k, dim=-1)  # [seq-1, k]
        # removing a * W_dec[f] from the MLP's hidden layer moves the residual by a * (W_dec[f] @ W_out)
        W_out = model.blocks[model.cfg.n_layers - 1].mlp.W_out
        deltas = values[..., None] * (sae.W_dec[latents].float() @ W_out.float())
        delta_loss = loss_effects(model, resid[:-1].float(), deltas, tokens[1:])
        delta_loss = torch.where(values > 0, delta_loss, torch.zeros_like(delta_loss))
        effect[:-1].scatter_(1, latents.cpu(), delta_loss.float().cpu())
    quantiles = torch.zeros(seq, d_sae)
    if stats is not None:
        quantiles = stats.quantile_of(torch.arange(d_sae), acts.cpu())
    return PromptView(
        tokens=tokens.cpu(), pieces=token_pieces(model.tokenizer, tokens.cpu()), acts=acts.cpu(),
        quantiles=quantiles, loss=loss, loss_effect=effect,
    )
