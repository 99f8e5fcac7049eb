"""Training objectives that keep latents alive without resampling, as ``train_sae`` extensions.

- ``AuxKLoss``: TopK's auxiliary loss on dead latents (Gao et al., 2024, "Scaling and evaluating sparse
  autoencoders", section 2.4 and appendix A.2), a ``Plugin`` that adds its gradients before the optimiser step,
  and counts what it did: on how many steps it was active, how many latents it trained, how many of those
  fired again (``AuxKLoss.summary``).
- Anthropic's 2024 recipe (Conerly et al., "Circuits Updates, April 2024", "Update on how we train SAEs"), as
  its pieces: ``activation_scale`` and ``scaled_batches`` (inputs scaled so that ``E||x|| = sqrt(d_in)``),
  ``init_decoder_norm`` (decoder rows of norm 0.1, encoder = decoder transpose), ``april_2024_step`` (no
  pre-encoder bias, the L1 penalty weighted by each latent's decoder norm), ``ClipGradNorm`` (gradient norm
  clipped to 1) and ``fold_april_2024`` (back to this course's SAE and the unscaled inputs); ``train_april_2024``
  runs them together. ``decoder_norm_l1_step`` is the decoder-norm-weighted penalty on the course's own forward
  pass (with the pre-encoder bias), kept for code written against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from utils.sae.model import SAE
from utils.sae.training import Plugin, TrainConfig, TrainState, train_sae

__all__ = [
    "AuxKLoss",
    "ClipGradNorm",
    "activation_scale",
    "april_2024_step",
    "decoder_norm_l1_step",
    "fold_april_2024",
    "init_decoder_norm",
    "scaled_batches",
    "train_april_2024",
]


# ---------------------------------------------------------------------------------------------------
# TopK's auxiliary loss


class AuxKLoss(Plugin):
    """Gao et al.'s auxiliary loss: the dead latents' top ``k_aux`` activations must reconstruct the residual.

    With ``e = x - x_hat`` (detached), ``e_hat`` the decoding (without ``b_dec``) of the ``k_aux`` largest
    pre-activations among the latents dead over ``window_tokens``, the loss is
    ``coefficient * ||e - e_hat||^2 / ||e - mean(e)||^2`` (normalised by the residual's variance, as in
    their code), summed over the batch. Gao et al.: ``k_aux = 512``, ``coefficient = 1/32``, dead after
    10M tokens.

    It records what it did, so that a run can say whether it mattered: ``steps`` seen, ``active_steps`` (steps
    with at least one dead latent, where it added a gradient), ``trained`` (the latents it ever trained: dead
    on an active step) and ``revived`` (those of them that later fired in the SAE's own forward pass). A
    revived latent fired again after the auxiliary loss trained it; whether it would have fired again anyway
    is a question for a run without the loss (``utils.parts.dead_latents_demo`` compares the two)."""

    def __init__(self, k_aux: int = 512, coefficient: float = 1 / 32, window_tokens: int = 10_000_000) -> None:
        self.k_aux, self.coefficient, self.window_tokens = k_aux, coefficient, window_tokens
        self.last = 0.0
        self.steps = self.active_steps = 0
        self.trained: Bool[Tensor, " d_sae"] | None = None
        self.revived: Bool[Tensor, " d_sae"] | None = None

    def before_update(self, state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor]) -> None:
        if self.trained is None:
            self.trained = torch.zeros_like(state.tokens_since_fired, dtype=torch.bool)
            self.revived = torch.zeros_like(self.trained)
        self.steps += 1
        dead = state.dead_latents(self.window_tokens)
        if not dead.any():
            self.last = 0.0
            return
        self.active_steps += 1
        self.trained |= dead
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
        # After the loop's firing count: a trained latent whose counter is back at 0 fired on this batch
        self.revived |= self.trained & (state.tokens_since_fired == 0)
        return {
            "aux_loss": self.last,
            "aux_active_steps": float(self.active_steps),
            "aux_dead": float(state.dead_latents(self.window_tokens).sum()),
        }

    def summary(self) -> dict[str, int]:
        """What the loss did over the run: steps, active steps, latents trained, latents revived, its window."""
        trained = int(self.trained.sum()) if self.trained is not None else 0
        revived = int(self.revived.sum()) if self.revived is not None else 0
        return {
            "steps": self.steps,
            "active_steps": self.active_steps,
            "latents_trained": trained,
            "latents_revived": revived,
            "window_tokens": self.window_tokens,
        }


# ---------------------------------------------------------------------------------------------------
# Anthropic's 2024 recipe (Conerly et al., April 2024)


@torch.no_grad()
def activation_scale(x: Float[Tensor, "n d_in"]) -> float:
    """The constant ``c`` with ``E||c x|| = sqrt(d_in)`` on the sample ``x`` (Conerly et al. normalise the dataset
    by one scalar, so that one ``lambda`` and learning rate suit every model and layer)."""
    return math.sqrt(x.shape[-1]) / float(x.norm(dim=-1).mean())


def scaled_batches(
    batches: Iterator[Float[Tensor, "batch d_in"]], scale: float
) -> Iterator[Float[Tensor, "batch d_in"]]:
    """The batches multiplied by ``scale`` (``activation_scale``); keeps the iterator's other attributes out of it."""
    for x in batches:
        yield x * scale


@torch.no_grad()
def init_decoder_norm(sae: SAE, norm: float = 0.1) -> None:
    """Conerly et al.'s initialisation: decoder rows of norm ``norm`` in random directions, encoder = decoder^T."""
    sae.W_dec.mul_(norm / sae.W_dec.norm(dim=-1, keepdim=True))
    sae.W_enc.copy_(sae.W_dec.T)


def april_2024_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    *,
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace=None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """A step (``utils.sae.steps.StepFn``) for Conerly et al.'s 2024 objective, by autograd:

        f = ReLU(x W_enc + b_enc)         (no pre-encoder bias: b_dec is not subtracted from x)
        x_hat = f W_dec + b_dec
        loss = ||x - x_hat||^2 + lambda * sum_j f_j ||W_dec[j]||      (batch-averaged)

    The SAE's parameters mean what this formula says while it trains; ``fold_april_2024`` turns them into the
    course's ``SAE`` (whose encoder subtracts ``b_dec``) afterwards. Runs in the parameters' dtype
    (``compute_dtype`` is not used) and always returns ``l1`` and ``loss``."""
    lam = sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient
    for param in sae.parameters():
        param.grad = None
    acts = torch.relu(x @ sae.W_enc + sae.b_enc)
    x_hat = acts @ sae.W_dec + sae.b_dec
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    (mse + lam * l1).backward()
    fired = (acts > 0).sum(0).float().detach()
    return {
        "mse": mse.detach(),
        "l0": fired.sum() / len(x),
        "fired": fired,
        "l1": l1.detach(),
        "loss": (mse + lam * l1).detach(),
    }


class ClipGradNorm(Plugin):
    """Clip the gradient of all the SAE's parameters to a total norm of ``max_norm`` (Conerly et al.: 1), before the
    optimiser step. Put it after every plug-in that adds gradients (an auxiliary loss), so that it clips the sum."""

    def __init__(self, max_norm: float = 1.0) -> None:
        self.max_norm = max_norm
        self.clipped_steps = 0

    def before_update(self, state: TrainState, x, out) -> None:
        params = [p for p in state.sae.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        self.clipped_steps += int(norm > self.max_norm)


@torch.no_grad()
def fold_april_2024(sae: SAE, scale: float) -> None:
    """Turn an SAE trained by ``april_2024_step`` on inputs scaled by ``scale`` into the course's ``SAE`` on raw inputs.

    Trained: ``f = ReLU(scale x W_enc + b_enc)``, ``x_hat = (f W_dec + b_dec) / scale``. The course's SAE computes
    ``ReLU((x - b_dec') W_enc' + b_enc')`` and ``f W_dec' + b_dec'``; the same function of ``x`` for
    ``W_enc' = scale W_enc``, ``b_enc' = b_enc + b_dec W_enc``, ``W_dec' = W_dec / scale``,
    ``b_dec' = b_dec / scale``."""
    sae.b_enc.add_(sae.b_dec @ sae.W_enc)
    sae.W_enc.mul_(scale)
    sae.W_dec.div_(scale)
    sae.b_dec.div_(scale)


def train_april_2024(
    sae: SAE, batches: Iterator[Float[Tensor, "batch d_in"]], scale: float, cfg: TrainConfig, plugins=()
) -> list[dict[str, float]]:
    """Train ``sae`` with Anthropic's 2024 recipe on ``batches`` scaled by ``scale``, then fold it back (in place).

    ``cfg`` gives the budget and the learning rate; the recipe's own settings replace its fields: no learning-rate
    warm-up, a linear decay to 0 over the last 20%, ``lambda`` (``sae.cfg.l1_coefficient``) warmed up over the first
    5%, Adam (0.9, 0.999), no unit-norm constraint on the decoder, ``b_dec`` started at 0, gradient norm clipped to 1,
    no resampling. Initialise the SAE with ``init_decoder_norm`` first."""
    recipe = dict(
        step_fn=april_2024_step,
        unit_norm_decoder=False,
        init_b_dec=None,
        lr_warmup_frac=0.0,
        lr_decay_frac=0.2,
        l1_warmup_frac=0.05,
        betas=(0.9, 0.999),
    )
    history = train_sae(sae, scaled_batches(batches, scale), cfg, plugins=[*plugins, ClipGradNorm(1.0)], **recipe)
    fold_april_2024(sae, scale)
    return history


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
    (batch-averaged) on the course's own forward pass (the encoder subtracts ``b_dec``), by autograd. It runs in
    the parameters' dtype (``compute_dtype`` is not used) and always returns ``l1`` and ``loss`` (they come with
    the backward pass). Conerly et al.'s forward pass has no pre-encoder bias: that is ``april_2024_step``."""
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
