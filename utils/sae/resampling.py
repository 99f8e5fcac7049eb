"""Dead latents and resampling: find latents that stopped firing, and give them a new direction.

A latent is *dead* if it has not fired on the last ``window`` tokens (Bricken et al., 2023, "Towards
Monosemanticity", and Gao et al., 2024, both count the window in tokens). Resampling re-initialises the
dead latents mid-training; the two recipes here differ only in where the new directions come from:

- ``resample_simple``: random unit directions;
- ``resample_anthropic`` (Bricken et al., 2023, appendix "Neuron Resampling"): inputs the SAE reconstructs
  badly, drawn with probability proportional to the *square* of their loss, with replacement.

Both set the decoder row to the unit direction, the encoder column to that direction times 0.2 times the
mean encoder norm of the alive latents, the encoder bias to zero, and reset Adam's moments for exactly
the rows and columns they touched. They only use the parameter names ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` and ``encode``/``decode``, which SAELens's SAEs
share, so they work on a SAELens SAE too (SAELens itself has no resampling). ``ResampleOnSchedule``
plugs either into ``utils.sae.training.train_sae``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.sae.training import Plugin, TrainState

__all__ = [
    "ENCODER_SCALE",
    "ResampleOnSchedule",
    "loss_per_input",
    "resample_anthropic",
    "resample_simple",
    "reset_adam_moments",
    "sample_by_squared_loss",
    "set_latents",
]

ENCODER_SCALE = 0.2  # the new encoder column's norm, as a fraction of the alive latents' mean encoder norm


@torch.no_grad()
def reset_adam_moments(optimizer: torch.optim.Optimizer, sae, latents: Bool[Tensor, " d_sae"]) -> None:
    """Zero Adam's ``exp_avg`` and ``exp_avg_sq`` for ``latents``' columns of W_enc, rows of W_dec and entries of b_enc.

    Left alone, the old moments would push the fresh parameters back the way the dead latent was going;
    everything else (other latents, ``b_dec``, the step count) keeps its state."""
    for param, index in ((sae.W_enc, (slice(None), latents)), (sae.W_dec, (latents,)), (sae.b_enc, (latents,))):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


@torch.no_grad()
def set_latents(sae, optimizer, latents: Bool[Tensor, " d_sae"], directions: Float[Tensor, "n d_in"]) -> None:
    """Give ``latents`` the unit ``directions``: decoder rows, scaled encoder columns, zero bias, fresh Adam moments."""
    alive_norm = sae.W_enc[:, ~latents].norm(dim=0).mean() if (~latents).any() else torch.tensor(1.0)
    directions = F.normalize(directions.to(sae.W_dec.dtype), dim=-1)
    sae.W_dec[latents] = directions
    sae.W_enc[:, latents] = (directions * ENCODER_SCALE * alive_norm).T
    sae.b_enc[latents] = 0.0
    if optimizer is not None:
        reset_adam_moments(optimizer, sae, latents)


@torch.no_grad()
def resample_simple(sae, optimizer, dead: Bool[Tensor, " d_sae"], generator: torch.Generator) -> int:
    """Give every dead latent a random unit direction (drawn with ``generator``); returns how many."""
    n = int(dead.sum())
    if n:
        directions = torch.randn(n, sae.W_dec.shape[1], generator=generator).to(sae.W_dec.device)
        set_latents(sae, optimizer, dead, directions)
    return n


@torch.no_grad()
def loss_per_input(sae, x: Float[Tensor, "n d_in"]) -> Float[Tensor, " n"]:
    """Each input's squared reconstruction error ``||x - x_hat||^2``."""
    return (sae.decode(sae.encode(x)) - x).pow(2).sum(-1)


def sample_by_squared_loss(losses: Float[Tensor, " n"], n: int, generator: torch.Generator) -> Int[Tensor, " n"]:
    """``n`` indices drawn with replacement, index ``b`` with probability ``losses[b]^2 / sum(losses^2)``."""
    return torch.multinomial(losses.pow(2), n, replacement=True, generator=generator)


@torch.no_grad()
def resample_anthropic(
    sae, optimizer, dead: Bool[Tensor, " d_sae"], inputs: Float[Tensor, "pool d_in"], generator: torch.Generator
) -> int:
    """Point each dead latent at an input it reconstructs badly (drawn by squared loss), centred by ``b_dec``."""
    n = int(dead.sum())
    if n:
        chosen = inputs[sample_by_squared_loss(loss_per_input(sae, inputs), n, generator)]
        set_latents(sae, optimizer, dead, chosen - sae.b_dec)
    return n


class ResampleOnSchedule(Plugin):
    """A ``train_sae`` plug-in: after each step in ``steps``, resample the latents dead over ``window_tokens``.

    ``resample(sae, optimizer, dead, generator)`` is ``resample_simple``'s signature; for
    ``resample_anthropic`` give ``pool_batches``: that many batches are drawn from the training buffer as
    its pool of inputs (Anthropic used 819,200 inputs; see Part 3 for the course's size)."""

    def __init__(
        self, resample: Callable, steps: Sequence[int], window_tokens: int, pool_batches: int = 0, seed: int = 0
    ) -> None:
        self.resample, self.steps, self.window_tokens = resample, set(steps), window_tokens
        self.pool_batches, self.generator = pool_batches, torch.Generator().manual_seed(seed)

    def after_update(self, state: TrainState, x, out) -> dict[str, float] | None:
        if state.step + 1 not in self.steps:
            return None
        dead = state.dead_latents(self.window_tokens)
        args = (state.sae, state.optimizer, dead)
        if self.pool_batches:
            args += (torch.cat([next(state.buffer) for _ in range(self.pool_batches)]),)
        n = self.resample(*args, self.generator)
        state.tokens_since_fired[dead] = 0  # a resampled latent gets a fresh window
        return {"resampled": float(n)}
