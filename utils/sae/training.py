"""Training an SAE on a language model's activations: ``TrainConfig``, the plug-in hooks and ``train_sae``.

- ``train_sae`` is the loop, a page over a ``TrainConfig`` that reads top to bottom: Adam, learning-rate
  warm-up and decay, L1 warm-up, unit-norm decoder rows, dead-latent tracking, a tqdm bar with live metrics,
  optional checkpoints; one budget, tokens or seconds. Each phase is a named helper above it
  (``start_training``, ``plan_steps``, ``apply_schedules``, ``update_parameters``, ``log_step``,
  ``save_checkpoint``...).
- The batches come from any iterator of ``[batch, d_in]`` tensors, usually an ``ActivationBuffer``
  (``utils.sae.activation_buffer``); the step that computes the gradients is chosen by ``TrainConfig.step_fn``
  and follows the step contract ``utils.sae.steps.StepFn``.
- ``Plugin`` is the one way to extend it: resampling (``utils.sae.resampling``) and auxiliary losses
  (``utils.sae.objectives``) plug in through its two hooks.
- What makes it fast on a CPU is switched by ``TrainConfig`` fields, each on by default where it helps:
  ``step_fn`` (the sparse TopK step), ``bf16`` (bfloat16 products where the CPU is faster in them) and
  ``keep_freed_memory`` (glibc keeps freed memory during the loop, ``utils.lm.cpu_allocator``, and gets its
  defaults back when the loop ends). The environment variable ``SAE_COURSE_KEEP_FREED_MEMORY`` overrides the
  last (0 or 1). Fused attention is the model's switch, not the loop's (``utils.lm.loading.load_model``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.lm.cpu_allocator import keep_freed_memory
from utils.sae.model import SAE
from utils.sae.steps import STEP_FNS, StepFn, Workspace, check_step_fn, choose_bf16, resolve_step_fn

__all__ = ["Plugin", "TrainConfig", "TrainState", "train_sae"]


# ---------------------------------------------------------------------------------------------------
# The loop: a config, a state, a plug-in interface, named helpers, and train_sae


@dataclass
class TrainConfig:
    """Everything that defines a training run except the SAE and the data. Give one budget: tokens or seconds."""

    n_tokens: int | None = None  # budget in tokens ...
    seconds: float | None = None  # ... or in seconds (the step count is estimated from the speed)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_warmup_frac: float = 0.01  # linear warm-up of the learning rate over this fraction of the steps
    lr_decay_frac: float = 0.2  # linear decay to 0 over the last fraction
    l1_warmup_frac: float = 0.05  # the L1 coefficient rises from 0 over this fraction (fewer latents die early)
    init_b_dec: str | None = "geometric_median"  # or "mean" of the first batch, or None (keep b_dec)
    step_fn: str | StepFn = (
        "auto"  # "auto" (sparse_topk for TopK on CPU, else fused), "fused", "autograd", "sparse_topk", or a StepFn
    )
    unit_norm_decoder: bool = True  # project the gradient and renormalise W_dec's rows after every step
    dead_window_tokens: int = 1_000_000  # a latent is dead if it has not fired on this many tokens
    log_every: int = 20  # steps between history records
    progress: bool = True  # a tqdm bar with live metrics
    checkpoint: str | Path | None = None  # a file to save to (and resume from)
    checkpoint_every: int = 200  # steps between checkpoints
    # Speed switches (with step_fn's "auto"); None lets train_sae decide. The README's table lists them all
    bf16: bool | None = None  # the step's matrix products in bfloat16 (parameters stay float32); None: see choose_bf16
    keep_freed_memory: bool | None = (
        None  # glibc keeps freed memory during the loop (utils.lm.cpu_allocator); None: on a CPU
    )

    def __post_init__(self) -> None:
        if (self.n_tokens is None) == (self.seconds is None):
            raise ValueError("give exactly one budget: n_tokens or seconds")
        if isinstance(self.step_fn, str):
            if self.step_fn not in {"auto", *STEP_FNS}:
                raise ValueError(
                    f"step_fn must be one of {sorted({'auto', *STEP_FNS})} or a function, got {self.step_fn!r}"
                )
        else:
            check_step_fn(self.step_fn)
        for name in ("bf16", "keep_freed_memory"):
            if getattr(self, name) not in (None, True, False):
                raise TypeError(f"{name} is True, False or None (let train_sae decide), got {getattr(self, name)!r}")


@dataclass
class TrainState:
    """What the loop carries from step to step. Plug-ins read it, and may change ``sae`` and ``optimizer``."""

    sae: SAE
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    buffer: Iterator[Float[Tensor, "batch d_in"]]
    tokens_since_fired: Int[Tensor, " d_sae"]  # per latent, tokens since it last fired (batch resolution)
    step: int = 0  # optimiser steps taken
    tokens: int = 0  # tokens trained on
    elapsed_s: float = 0.0
    total_steps: int | None = None  # None until a seconds budget has been converted into steps
    bf16: bool = False  # whether the step's products run in bfloat16 (TrainConfig.bf16, or choose_bf16's choice)
    lr: float = 0.0  # this step's learning rate and L1 coefficient (from the schedules)
    l1_coefficient: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    pending_log: dict[str, float] = field(default_factory=dict)  # plug-in metrics waiting for the next record

    def dead_latents(self, window_tokens: int | None = None) -> Bool[Tensor, " d_sae"]:
        """Latents that have not fired on the last ``window_tokens`` tokens (default: the config's window)."""
        return self.tokens_since_fired >= (window_tokens or self.cfg.dead_window_tokens)


class Plugin:
    """The one way to extend the loop (resampling, auxiliary losses): subclass and override either hook.

    - ``before_update(state, x, out)``: after the step function wrote the gradients, before the optimiser
      step. Add to the parameters' ``.grad`` here (``aux_loss.backward()`` accumulates), e.g. an auxiliary loss.
    - ``after_update(state, x, out)``: after the optimiser step, the decoder renormalisation and the firing
      count, before ``state.step`` is incremented. Change parameters and optimiser state here (resampling).
      Return a dict of numbers to add to the next history record (or None).
    ``x`` is this step's batch, ``out`` the step function's output.
    """

    def before_update(self, state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor]) -> None:
        pass

    def after_update(
        self, state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor]
    ) -> dict[str, float] | None:
        return None


def lr_schedule(step: int, total: int, warmup_frac: float, decay_frac: float) -> float:
    """1 after a linear warm-up over the first ``warmup_frac`` of the steps, down to 0 over the last ``decay_frac``."""
    warmup, decay = max(1, round(warmup_frac * total)), round(decay_frac * total)
    if step < warmup:
        return (step + 1) / warmup
    if decay and step >= total - decay:
        return max(0.0, (total - step) / decay)
    return 1.0


def l1_schedule(step: int, total: int, warmup_frac: float) -> float:
    """A linear warm-up from 0 to 1 over the first ``warmup_frac`` of the steps."""
    return min(1.0, (step + 1) / max(1, round(warmup_frac * total)))


@torch.no_grad()
def geometric_median(points: Float[Tensor, "n d"], iterations: int = 50, eps: float = 1e-6) -> Float[Tensor, " d"]:
    """The point minimising the summed distance to ``points`` (Weiszfeld's algorithm)."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=-1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() < eps * median.norm().clamp_min(1.0):
            return new
        median = new
    return median


def start_training(sae: SAE, buffer: Iterator, cfg: TrainConfig, x: Float[Tensor, "batch d_in"]) -> TrainState:
    """A fresh state (Adam, ``b_dec`` at the data's centre), or the one saved in ``cfg.checkpoint``."""
    device = sae.W_enc.device
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, fused=device.type in ("cpu", "cuda"))
    tokens_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=device)
    state = TrainState(sae, optimizer, cfg, buffer, tokens_since_fired)
    if cfg.n_tokens is not None:
        state.total_steps = math.ceil(cfg.n_tokens / len(x))
    if cfg.checkpoint is not None and Path(cfg.checkpoint).exists():
        load_checkpoint(state, Path(cfg.checkpoint))
    elif cfg.init_b_dec is not None:
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(x) if cfg.init_b_dec == "geometric_median" else x.mean(0))
    return state


def keeps_freed_memory(cfg: TrainConfig, sae: SAE) -> bool:
    """``TrainConfig.keep_freed_memory``, with None meaning on for an SAE on a CPU (where the page faults were
    measured)."""
    return cfg.keep_freed_memory if cfg.keep_freed_memory is not None else sae.W_enc.device.type == "cpu"


def next_batch(batches: Iterator[Float[Tensor, "batch d_in"]], state: TrainState | None) -> Float[Tensor, "batch d_in"]:
    """The next batch, or an error that says when the data ran out (``state`` is None before the first step)."""
    try:
        return next(batches)
    except StopIteration:
        when = "before the first step" if state is None else f"after {state.step:,} steps ({state.tokens:,} tokens)"
        raise RuntimeError(
            f"the batches ran out {when}; give train_sae more data (an ActivationBuffer on token "
            "rows or texts cycles over them) or a smaller budget"
        ) from None


@dataclass
class Stopwatch:
    """The run's clock: seconds since it began (a resumed run counts its earlier time too), and the speed between
    logs."""

    started: float
    last_log: float
    step_at_last_log: int

    @classmethod
    def resuming(cls, state: TrainState) -> Stopwatch:
        now = time.perf_counter()
        return cls(started=now - state.elapsed_s, last_log=now, step_at_last_log=state.step)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def tokens_per_s(self, state: TrainState, batch_size: int) -> float:
        """Tokens per second since the last log (or the start); the next call counts from now."""
        now = time.perf_counter()
        rate = (state.step - self.step_at_last_log) * batch_size / (now - self.last_log)
        self.last_log, self.step_at_last_log = now, state.step
        return rate


def progress_bar(state: TrainState):
    """A tqdm bar over the steps (its total is set once a seconds budget has been converted into steps)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=state.total_steps, initial=state.step, disable=not state.cfg.progress, unit="step", mininterval=1.0
    )


def plan_steps(state: TrainState, seconds_so_far: float) -> None:
    """For a seconds budget, set ``state.total_steps`` from the speed so far.

    First after 5 steps, then again at each log until the decay starts: the first steps' speed misses the
    buffer's refills (and any change in load), so the budget would be over- or under-used, or the decay cut short."""
    cfg, step = state.cfg, state.step
    if cfg.seconds is None or step < 5:
        return
    first = state.total_steps is None
    if first or (step % cfg.log_every == 0 and step < (1 - cfg.lr_decay_frac) * state.total_steps):
        state.total_steps = max(step + 1, int(cfg.seconds / (seconds_so_far / step)))


def budget_spent(state: TrainState, seconds_so_far: float) -> bool:
    """Whether the run is over: all planned steps taken, or (for a seconds budget) the time is up."""
    if state.total_steps is not None and state.step >= state.total_steps:
        return True
    return state.cfg.seconds is not None and seconds_so_far > state.cfg.seconds


def apply_schedules(state: TrainState, l1_target: float) -> None:
    """This step's learning rate and L1 coefficient, written into the state and the optimiser."""
    cfg, planned = state.cfg, state.total_steps or 10**9
    state.lr = cfg.lr * lr_schedule(state.step, planned, cfg.lr_warmup_frac, cfg.lr_decay_frac)
    state.l1_coefficient = l1_target * l1_schedule(state.step, planned, cfg.l1_warmup_frac)
    for group in state.optimizer.param_groups:
        group["lr"] = state.lr


def update_parameters(state: TrainState) -> None:
    """The optimiser step, with the unit-norm constraint on the decoder rows around it."""
    if state.cfg.unit_norm_decoder:
        state.sae.remove_gradient_parallel_to_decoder()
    state.optimizer.step()
    if state.cfg.unit_norm_decoder:
        state.sae.normalize_decoder()
    state.optimizer.zero_grad(set_to_none=True)


def count_firing(state: TrainState, fired: Float[Tensor, " d_sae"], batch_size: int) -> None:
    """Per latent, tokens since it last fired: ``batch_size`` more, or 0 for the latents that fired in this batch."""
    state.tokens_since_fired.add_(batch_size).masked_fill_(fired > 0, 0)


def is_log_step(state: TrainState) -> bool:
    """Log every ``log_every`` steps and on the last one."""
    return (state.step + 1) % state.cfg.log_every == 0 or (
        state.total_steps is not None and state.step + 1 >= state.total_steps
    )


def log_record(state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor], tokens_per_s: float) -> dict:
    """One history record, from the step's output on its batch ``x``."""
    with torch.no_grad():
        variance = (x - x.mean(0)).pow(2).sum() / len(x)
    record = {
        "step": state.step,
        "tokens": state.tokens,
        "loss": float(out["loss"]),
        "mse": float(out["mse"]),
        "l1": float(out["l1"]),
        "l0": float(out["l0"]),
        "explained_variance": float(1 - out["mse"] / variance),
        "frac_alive": float((~state.dead_latents()).float().mean()),
        "lr": state.lr,
        "l1_coefficient": state.l1_coefficient,
        "tokens_per_s": tokens_per_s,
        "elapsed_s": state.elapsed_s,
        "bf16": float(state.bf16),
    }
    record |= state.pending_log
    state.pending_log = {}
    return record


def log_step(
    state: TrainState,
    x: Float[Tensor, "batch d_in"],
    out: dict[str, Tensor],
    clock: Stopwatch,
    bar,
    callback: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Append this step's history record, show it on the bar and hand it to ``callback``."""
    record = log_record(state, x, out, clock.tokens_per_s(state, len(x)))
    state.history.append(record)
    _show(bar, record)
    if callback is not None:
        callback(record)


def tick(bar, state: TrainState) -> None:
    """One more step on the progress bar (whose total may have been re-planned)."""
    bar.total = state.total_steps
    bar.update(1)


def checkpoint_due(state: TrainState) -> bool:
    """Save every ``checkpoint_every`` steps and after the last one, if there is a checkpoint file."""
    cfg = state.cfg
    return cfg.checkpoint is not None and (state.step % cfg.checkpoint_every == 0 or budget_spent(state, 0.0))


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Save the training state to ``path`` atomically (a kill mid-save keeps the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = dict(
        sae=state.sae.state_dict(),
        optimizer=state.optimizer.state_dict(),
        step=state.step,
        tokens=state.tokens,
        elapsed=state.elapsed_s,
        total_steps=state.total_steps,
        tokens_since_fired=state.tokens_since_fired,
        history=state.history,
        seqs_consumed=getattr(state.buffer, "seqs_consumed", None),
    )
    torch.save(saved, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def load_checkpoint(state: TrainState, path: Path) -> None:
    """Restore what ``save_checkpoint`` saved into ``state`` (the SAE and optimiser in place)."""
    saved = torch.load(path, weights_only=False, map_location=state.sae.W_enc.device)
    state.sae.load_state_dict(saved["sae"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.step, state.tokens, state.elapsed_s = saved["step"], saved["tokens"], saved["elapsed"]
    state.total_steps, state.history = saved["total_steps"], saved["history"]
    state.tokens_since_fired = saved["tokens_since_fired"].to(state.sae.W_enc.device)


def train_sae(
    sae: SAE,
    buffer: Iterator[Float[Tensor, "batch d_in"]],
    cfg: TrainConfig | int | None = None,
    *,
    plugins: Sequence[Plugin] = (),
    callback: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> list[dict[str, float]]:
    """Train ``sae`` on batches from ``buffer``; returns the history (one record per ``log_every`` steps).

    ``cfg`` is a ``TrainConfig`` (or, for short calls, the token budget); keyword ``overrides`` replace its
    fields (``train_sae(sae, buffer, seconds=60, lr=3e-4)``). ``plugins`` extend the loop (see ``Plugin``);
    ``callback(record)`` sees each history record as it is logged, e.g. to plot live."""
    # Set up: the step function, a first batch to start from, the state (fresh or from the checkpoint)
    cfg = _config(cfg, overrides)
    step_fn = resolve_step_fn(cfg.step_fn, sae)
    batches = iter(buffer)
    first = next_batch(batches, None)
    state = start_training(sae, batches, cfg, first)
    state.bf16 = cfg.bf16 if cfg.bf16 is not None else choose_bf16(sae, step_fn, len(first))
    step_inputs = dict(compute_dtype=torch.bfloat16 if state.bf16 else None, workspace=Workspace())
    l1_target, clock = sae.cfg.l1_coefficient, Stopwatch.resuming(state)
    batches = itertools.chain([first], batches)
    # The loop; on leaving it, however it ends, the bar closes and glibc's allocator gets its defaults back
    with progress_bar(state) as bar, keep_freed_memory(keeps_freed_memory(cfg, sae)):
        while not budget_spent(state, clock.seconds()):
            # The batch, and this step's place in the schedules
            x = next_batch(batches, state)
            plan_steps(state, clock.seconds())
            apply_schedules(state, l1_target)
            log_now = is_log_step(state)
            # Forward and backward: the gradients in .grad, the metrics in out
            out = step_fn(sae, x, l1_coefficient=state.l1_coefficient, compute_l1=log_now, **step_inputs)
            for plugin in plugins:  # e.g. an auxiliary loss adds its gradients
                plugin.before_update(state, x, out)
            # The update: Adam, the decoder rows kept at unit norm, which latents fired
            update_parameters(state)
            count_firing(state, out["fired"], len(x))
            for plugin in plugins:  # e.g. resampling changes dead latents and their Adam state
                state.pending_log |= plugin.after_update(state, x, out) or {}
            state.step, state.tokens, state.elapsed_s = state.step + 1, state.tokens + len(x), clock.seconds()
            # Bookkeeping: a history record on log steps, the progress bar, a checkpoint when one is due
            if log_now:
                log_step(state, x, out, clock, bar, callback)
            tick(bar, state)
            if checkpoint_due(state):
                save_checkpoint(state, Path(cfg.checkpoint))
    return state.history


def _config(cfg: TrainConfig | int | None, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``overrides`` applied; an int is the token budget."""
    if isinstance(cfg, TrainConfig):
        budget = {"n_tokens": None, "seconds": None} if {"n_tokens", "seconds"} & overrides.keys() else {}
        return replace(cfg, **budget | overrides)
    unknown = overrides.keys() - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(
            f"train_sae got unknown settings {sorted(unknown)}; TrainConfig has {[f.name for f in fields(TrainConfig)]}"
        )
    return TrainConfig(**({"n_tokens": cfg} if cfg is not None else {}) | overrides)


def _show(bar, record: dict[str, float]) -> None:
    """Live metrics on the progress bar."""
    bar.set_postfix(
        loss=f"{record['loss']:.4g}",
        mse=f"{record['mse']:.4g}",
        l0=f"{record['l0']:.1f}",
        alive=f"{record['frac_alive']:.1%}",
        tok_s=f"{record['tokens_per_s']:.0f}",
        refresh=False,
    )
