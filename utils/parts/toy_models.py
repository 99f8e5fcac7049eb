"""Part 1 (toy models of superposition): what the learner should not have to write.

- :class:`ToyModelConfig`: the shape of a batch of toy models (instances, features, hidden dimensions).
- :class:`ToyTrainConfig` and :func:`train`: one Adam loop that trains every instance at once.
- Helpers that build the per-instance ``importance`` and ``feature_probability`` tensors.
- :func:`per_feature_loss`: how well each feature is reconstructed, for plots.

Every tensor carries an instance axis, ``inst``: a "model" here is really ``n_inst`` independent toy
models, stacked so that one matrix multiply trains them all. Instances never interact: the loss is a
sum of per-instance losses, so each instance's gradient is the one it would get if trained alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "ToyModelConfig",
    "ToyTrainConfig",
    "importance_decay",
    "log_spaced_probabilities",
    "per_feature_loss",
    "probability_from_sparsity",
    "train",
]


@dataclass(frozen=True)
class ToyModelConfig:
    """The shape of a stack of toy models: ``n_inst`` instances, each mapping ``n_feats`` → ``d_hidden`` →
    ``n_feats``."""

    n_inst: int
    n_feats: int
    d_hidden: int


@dataclass(frozen=True)
class ToyTrainConfig:
    """How to train: Adam with a learning rate that warms up briefly, then decays on a cosine to ``lr * lr_end``."""

    steps: int = 5_000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup_frac: float = 0.02
    lr_end: float = 0.05  # the final learning rate, as a fraction of ``lr``
    log_every: int = 100

    def lr_at(self, step: int) -> float:
        warmup = max(1, int(self.warmup_frac * self.steps))
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.lr_end + (1 - self.lr_end) * cosine)


def train(
    model: nn.Module,
    make_batch: Callable[[int], Float[Tensor, "batch inst feats"]],
    loss_fn: Callable[[Tensor, Tensor, Tensor], Float[Tensor, ""]],
    importance: Float[Tensor, "inst feats"],
    cfg: ToyTrainConfig = ToyTrainConfig(),
    *,
    target_fn: Callable[[Tensor], Tensor] | None = None,
    progress: bool = True,
) -> list[float]:
    """Train every instance of ``model`` at once; returns the loss per instance, every ``log_every`` steps.

    Each step draws ``batch = make_batch(cfg.batch_size)`` of shape ``[batch inst feats]``, computes
    ``loss_fn(model(batch), target, importance)`` with ``target = batch`` (reconstruction) or
    ``target_fn(batch)`` (e.g. ``batch.abs()``), and takes one Adam step.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n_inst = importance.shape[0]
    history: list[float] = []
    bar = tqdm(range(cfg.steps), disable=not progress, mininterval=0.5)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        batch = make_batch(cfg.batch_size)
        target = batch if target_fn is None else target_fn(batch)
        loss = loss_fn(model(batch), target, importance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            history.append(loss.item() / n_inst)
            bar.set_postfix(loss_per_inst=f"{history[-1]:.4g}", lr=f"{cfg.lr_at(step):.2g}")
    return history


def importance_decay(n_inst: int, n_feats: int, base: float) -> Float[Tensor, "inst feats"]:
    """Importance ``base ** i`` for feature ``i``, the same in every instance (Elhage et al. use 0.7 and 0.9)."""
    return (base ** torch.arange(n_feats, dtype=torch.float32)).expand(n_inst, n_feats).clone()


def probability_from_sparsity(sparsity: Sequence[float] | Tensor, n_feats: int) -> Float[Tensor, "inst feats"]:
    """Per-instance sparsity ``S`` (one value per instance) → feature probability ``1 - S`` for every feature."""
    sparsity = torch.as_tensor(sparsity, dtype=torch.float32)
    return (1 - sparsity)[:, None].expand(-1, n_feats).clone()


def log_spaced_probabilities(
    n_inst: int, n_feats: int, high: float = 1.0, low: float = 0.01
) -> Float[Tensor, "inst feats"]:
    """Feature probabilities from ``high`` (instance 0, dense) down to ``low`` (last instance, sparse), log-spaced."""
    p = torch.logspace(math.log10(high), math.log10(low), n_inst)
    return p[:, None].expand(-1, n_feats).clone()


@torch.no_grad()
def per_feature_loss(
    model: nn.Module,
    make_batch: Callable[[int], Float[Tensor, "batch inst feats"]],
    *,
    target_fn: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 10_000,
) -> Float[Tensor, "inst feats"]:
    """Mean squared error of each output feature (no importance weighting), on one large fresh batch."""
    batch = make_batch(batch_size)
    target = batch if target_fn is None else target_fn(batch)
    return ((model(batch) - target) ** 2).mean(0)
