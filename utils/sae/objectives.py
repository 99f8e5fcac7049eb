"""Training objectives that keep latents alive without resampling, as ``train_sae`` extensions.

- ``AuxKLoss``: TopK's auxiliary loss on dead latents (Gao et al., 2024, "Scaling and evaluating sparse
  autoencoders", section 2.4 and appendix A.2), a ``Plugin`` that adds its gradients before the optimiser step.
- ``decoder_norm_l1_step``: Anthropic's 2024 recipe (Conerly et al., "Circuits Updates, April 2024"): the
  L1 penalty weighted by each latent's decoder norm, to be trained with ``unit_norm_decoder=False``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from utils.sae.model import SAE
from utils.sae.training import Plugin, TrainState

__all__ = ["AuxKLoss", "decoder_norm_l1_step", "init_decoder_norm"]


class AuxKLoss(Plugin):
    """Gao et al.'s auxiliary loss: the dead latents' top ``k_aux`` activations must reconstruct the residual.

    With ``e = x - x_hat`` (detached), ``e_hat`` the decoding (without ``b_dec``) of the ``k_aux`` largest
    pre-activations among the latents dead over ``window_tokens``, the loss is
    ``coefficient * ||e - e_hat||^2 / ||e - mean(e)||^2`` (normalised by the residual's variance, as in
    their code), summed over the batch. Gao et al.: ``k_aux = 512``, ``coefficient = 1/32``, dead after
    10M tokens."""

    def __init__(self, k_aux: int = 512, coefficient: float = 1 / 32, window_tokens: int = 10_000_000) -> None:
        self.k_aux, self.coefficient, self.window_tokens = k_aux, coefficient, window_tokens
        self.last = 0.0

    def before_update(self, state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor]) -> None:
        dead = state.dead_latents(self.window_tokens)
        if not dead.any():
            self.last = 0.0
            return
        sae = state.sae
        with torch.no_grad():
            residual = x - sae.decode(sae.encode(x))
        with torch.enable_grad():
            pre = torch.relu((x - sae.b_dec.detach()) @ sae.W_enc[:, dead] + sae.b_enc[dead])
            values, indices = pre.topk(min(self.k_aux, int(dead.sum())), dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, indices, values)
            e_hat = acts @ sae.W_dec[dead]
            variance = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
            loss = self.coefficient * (e_hat - residual).pow(2).sum(-1).mean() / variance
            loss.backward()  # accumulates onto the step's gradients
        self.last = float(loss.detach())

    def after_update(self, state: TrainState, x, out) -> dict[str, float]:
        return {"aux_loss": self.last}


@torch.no_grad()
def init_decoder_norm(sae: SAE, norm: float = 0.1) -> None:
    """Conerly et al.'s initialisation: decoder rows of norm ``norm`` in random directions, encoder = decoder^T."""
    sae.W_dec.mul_(norm / sae.W_dec.norm(dim=-1, keepdim=True))
    sae.W_enc.copy_(sae.W_dec.T)


def decoder_norm_l1_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    *,
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace=None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """A step (``utils.sae.steps.StepFn``) for ``loss = ||x - x_hat||^2 + lambda * sum_j f_j ||W_dec[j]||``
    (batch-averaged), by autograd. It runs in the parameters' dtype (``compute_dtype`` is not used) and always
    returns ``l1`` and ``loss`` (they come with the backward pass)."""
    lam = sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient
    for param in sae.parameters():
        param.grad = None
    x_hat, acts = sae(x)
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    (mse + lam * l1).backward()
    fired = (acts > 0).sum(0).float().detach()
    out = {"mse": mse.detach(), "l0": fired.sum() / len(x), "fired": fired}
    return out | {"l1": l1.detach(), "loss": (mse + lam * l1).detach()}
