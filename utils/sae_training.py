"""Training an SAE on a language model's activations: an activation buffer and a fast training loop.

- ``ActivationBuffer`` runs the model on token sequences, keeps a shuffled store of activations at one
  hook, and serves them in batches, refilling itself when half of it has been served.
- ``sae_training_step`` is one optimisation step with hand-written gradients (five matrix products and a
  few elementwise passes, no autograd graph): the same numbers as ``sae.loss(x).backward()``, faster.
- ``train_sae`` is the loop, about 40 lines over a ``TrainConfig``: Adam, learning-rate warm-up and decay,
  L1 warm-up, unit-norm decoder rows, dead-latent tracking, a tqdm bar with live metrics, optional
  checkpoints; one budget, tokens or seconds. Each phase is a named helper above it (``start_training``,
  ``plan_steps``, ``apply_schedules``, ``update_parameters``, ``log_record``, ``save_checkpoint``).
- ``Plugin`` is the one way to extend it: resampling (``utils.resampling``) and auxiliary losses plug in
  through its two hooks; the step function is chosen by ``TrainConfig.step_fn``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.activations import mlp_post_activations
from utils.cpu_allocator import heap_only
from utils.sae import SAE
from utils.sparse_topk import sparse_topk_training_step

__all__ = [
    "STEP_FNS",
    "ActivationBuffer",
    "Plugin",
    "TrainConfig",
    "TrainState",
    "autograd_training_step",
    "sae_training_step",
    "train_sae",
]


# ---------------------------------------------------------------------------------------------------
# Activations


class ActivationBuffer:
    """A shuffled store of ``buffer_tokens`` activations that serves ``[batch_size, d_in]`` batches.

    Consecutive tokens of one text have similar activations; training on them in order would give
    correlated, unrepresentative batches. So the buffer runs the model on many sequences, mixes all their
    tokens, and serves random batches. When half of it has been served, the served slots are refilled
    with fresh activations and the whole store is reshuffled; every activation is served at most once.

    ``tokens`` is one of:
    - an integer tensor ``[n_seqs, seq]`` of token ids (each row starting with BOS): cycled over in
      epochs, each epoch in a new random order;
    - a ``datasets.Dataset`` with a ``text`` column, or a list of strings: tokenized on the fly into rows
      of ``seq_len`` tokens (``utils.activations.tokenize_texts``), also cycled over;
    - any other iterable of ``[batch, seq]`` token tensors: used once; iteration stops when it runs out.

    The first position of every row is dropped (``drop_bos=True``): it always holds BOS, and with nothing
    before it to attend to, its activation is the same vector in every sequence, far from all others.
    Kept, that one point would take up a latent (or pull ``b_dec``) and make up 1/seq of the data.
    """

    def __init__(
        self,
        model,
        tokens: Int[Tensor, "n_seqs seq"] | Iterable,
        hook_name: str = "blocks.0.mlp.hook_post",
        buffer_tokens: int = 2**17,
        batch_size: int = 4096,
        seq_len: int = 128,
        model_batch_size: int = 64,
        drop_bos: bool = True,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        seed: int = 0,
        start_seq: int = 0,
    ) -> None:
        if buffer_tokens < 2 * batch_size:
            raise ValueError(f"buffer_tokens ({buffer_tokens}) must be at least 2 * batch_size ({2 * batch_size})")
        self.model, self.hook_name = model, hook_name
        self.batch_size, self.seq_len, self.model_batch_size = batch_size, seq_len, model_batch_size
        self.drop_bos, self.seed = drop_bos, seed
        self.device = torch.device(device) if device is not None else torch.device(model.cfg.device)
        self.seqs_consumed = start_seq  # how many token rows went through the model (to resume a run)
        self.harvest_seconds = 0.0  # time spent in the model, for throughput reports
        self._generator = torch.Generator().manual_seed(seed)
        self._rows = self._token_rows(tokens, start_seq)
        self._leftover: Tensor | None = None
        d_in = self._peek_d_in()
        self.activations: Float[Tensor, "buffer_tokens d_in"] = torch.empty(
            buffer_tokens, d_in, dtype=dtype, device=self.device
        )
        self._fill(torch.arange(buffer_tokens))
        self._order = torch.randperm(buffer_tokens, generator=self._generator)
        self._served = 0

    # --- token rows -----------------------------------------------------------------------------------

    def _token_rows(self, tokens, start_seq: int) -> Iterator[Int[Tensor, "batch seq"]]:
        """Batches of ``model_batch_size`` token rows; for tensors and texts, forever (epoch after epoch)."""
        if isinstance(tokens, Tensor):
            yield from self._tensor_rows(tokens, start_seq)
        elif _is_texts(tokens):
            from utils.activations import tokenize_texts

            chunk = 1024  # documents tokenized at a time
            while True:
                for start in range(0, len(tokens), chunk):
                    texts = tokens[start : start + chunk]
                    texts = texts["text"] if isinstance(texts, dict) else texts
                    rows = tokenize_texts(texts, self.model.tokenizer, seq_len=self.seq_len)
                    for i in range(0, len(rows), self.model_batch_size):
                        yield rows[i : i + self.model_batch_size]
        else:
            for batch in tokens:
                yield batch

    def _tensor_rows(self, tokens: Int[Tensor, "n_seqs seq"], start_seq: int) -> Iterator[Int[Tensor, "batch seq"]]:
        n = len(tokens)
        epoch, position = divmod(start_seq, n)
        while True:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            for i in range(position, n, self.model_batch_size):
                yield tokens[order[i : i + self.model_batch_size]]
            epoch, position = epoch + 1, 0

    def _peek_d_in(self) -> int:
        self._leftover = self._harvest_next()
        return self._leftover.shape[-1]

    def _harvest_next(self) -> Float[Tensor, "tokens d_in"]:
        rows = next(self._rows)  # StopIteration ends a finite source
        t0 = time.perf_counter()
        acts = mlp_post_activations(self.model, rows, self.hook_name)
        if self.drop_bos:
            acts = acts[:, 1:]
        self.harvest_seconds += time.perf_counter() - t0
        self.seqs_consumed += len(rows)
        return acts.reshape(-1, acts.shape[-1])

    # --- filling and serving --------------------------------------------------------------------------

    @torch.no_grad()
    def _fill(self, slots: Int[Tensor, " n"]) -> None:
        """Write fresh activations into ``self.activations[slots]``."""
        written = 0
        while written < len(slots):
            acts = self._leftover if self._leftover is not None else self._harvest_next()
            take = min(len(acts), len(slots) - written)
            self.activations[slots[written : written + take]] = acts[:take].to(self.activations.dtype)
            self._leftover = acts[take:] if take < len(acts) else None
            written += take

    def __iter__(self) -> ActivationBuffer:
        return self

    def __next__(self) -> Float[Tensor, "batch_size d_in"]:
        n = len(self.activations)
        if self._served + self.batch_size > n // 2:  # half served: refill those slots and reshuffle
            self._fill(self._order[: self._served])
            self._order = torch.randperm(n, generator=self._generator)
            self._served = 0
        slots = self._order[self._served : self._served + self.batch_size]
        self._served += self.batch_size
        return self.activations[slots].float()

    next = __next__  # buffer.next() reads well in a notebook

    @property
    def tokens_harvested(self) -> int:
        return self.seqs_consumed * (self.activations_per_row)

    @property
    def activations_per_row(self) -> int:
        return self.seq_len - 1 if self.drop_bos else self.seq_len


def _is_texts(tokens: Any) -> bool:
    try:
        import datasets

        if isinstance(tokens, datasets.Dataset):
            return True
    except ImportError:
        pass
    return isinstance(tokens, (list, tuple)) and len(tokens) > 0 and isinstance(tokens[0], str)


# ---------------------------------------------------------------------------------------------------
# One training step, with the gradients written out


class _Workspace:
    """Reusable [batch, d_sae] scratch tensors: allocating 64 MB afresh every step costs page faults."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        t = self.tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype or t.device != device:
            t = self.tensors[name] = torch.empty(shape, dtype=dtype, device=device)
        return t


@torch.no_grad()
def sae_training_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace: _Workspace | None = None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """Forward pass and gradients of ``sae.loss(x)["loss"]``, written into the parameters' ``.grad``.

    The same gradients as ``sae.loss(x)["loss"].backward()``, computed by hand. With ``B`` the batch size
    and ``lambda`` the L1 coefficient, ``loss = (1/B) sum_b ||x_hat_b - x_b||^2 + lambda (1/B) sum_b sum_j f_bj``:

        x_cent = x - b_dec                 pre = x_cent @ W_enc + b_enc        f = ReLU(pre)
        x_hat  = f @ W_dec + b_dec         e = x_hat - x

        dL/dx_hat = 2 e / B                                        [B, d_in]
        dL/dW_dec = f^T @ dL/dx_hat                                [d_sae, d_in]   (matrix product 3)
        dL/df     = dL/dx_hat @ W_dec^T + lambda / B               [B, d_sae]      (matrix product 4)
        dL/dpre   = dL/df where f > 0, else 0                      (ReLU; for topk, also 0 off the top k)
        dL/dW_enc = x_cent^T @ dL/dpre                             [d_in, d_sae]   (matrix product 5)
        dL/db_enc = sum_b dL/dpre
        dL/db_dec = sum_b dL/dx_hat - W_enc @ dL/db_enc            (b_dec enters x_hat, and x_cent with a minus)

    Autograd would also form ``dL/dx_cent = dL/dpre @ W_enc^T``, a sixth [B, d_in, d_sae] product, only to
    sum it over the batch for ``b_dec``; summing first turns it into a matrix-vector product.
    ``compute_dtype=torch.bfloat16`` runs the five products in bfloat16 (the parameters, the gradients and
    the error ``e`` stay float32); on CPUs with bf16 units that is about twice as fast.

    Returns detached ``mse``, ``l0``, ``fired`` (how many tokens each latent fired on) and, if
    ``compute_l1``, ``l1`` and ``loss``; all averaged over the batch like ``SAE.loss``.
    """
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    lam = sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient
    if sae.cfg.architecture == "topk":
        lam = 0.0
    cd = compute_dtype or W_enc.dtype
    ws = workspace or _Workspace()
    B, d_sae = x.shape[0], sae.cfg.d_sae
    W_enc_c, W_dec_c = W_enc.to(cd), W_dec.to(cd)  # no copy when cd is the parameters' dtype

    # Forward
    x_cent = (x - b_dec).to(cd)
    f = torch.addmm(b_enc.to(cd), x_cent, W_enc_c, out=ws.get("f", (B, d_sae), cd, x.device)).relu_()
    if sae.cfg.architecture == "topk":
        values, indices = f.topk(sae.cfg.k, dim=-1, sorted=False)
        f = ws.get("f_topk", (B, d_sae), cd, x.device).zero_().scatter_(-1, indices, values)
    x_hat = torch.addmm(b_dec.to(cd), f, W_dec_c)
    err = x_hat.float() - x

    # Backward
    d_x_hat = err * (2.0 / B)  # float32 [B, d_in]
    d_x_hat_c = d_x_hat.to(cd)
    grad_W_dec = f.T @ d_x_hat_c
    d_f = ws.get("d_f", (B, d_sae), cd, x.device)
    if lam:
        torch.addmm(torch.full((1,), lam / B, dtype=cd, device=x.device), d_x_hat_c, W_dec_c.T, out=d_f)
    else:
        torch.mm(d_x_hat_c, W_dec_c.T, out=d_f)
    # ReLU's backward, in place: keep d_f where f > 0, zero elsewhere
    d_pre = torch.ops.aten.threshold_backward.grad_input(d_f, f, 0, grad_input=d_f)
    grad_W_enc = x_cent.T @ d_pre
    grad_b_enc = d_pre.sum(0).float()
    grad_b_dec = d_x_hat.sum(0) - W_enc @ grad_b_enc

    for param, grad in ((W_enc, grad_W_enc), (b_enc, grad_b_enc), (W_dec, grad_W_dec), (b_dec, grad_b_dec)):
        grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
        if grad.stride() != param.stride():  # fused Adam pairs elements by memory order: match the layout
            grad = torch.empty_like(param).copy_(grad)
        param.grad = grad

    # How many tokens each latent fired on (in bfloat16, counts above 256 are rounded to 3 digits)
    fired = torch.gt(f, 0, out=ws.get("mask", (B, d_sae), cd, x.device)).sum(0).float()
    mse = err.pow(2).sum() / B
    out = {"mse": mse, "l0": fired.sum() / B, "fired": fired}
    if compute_l1:  # a full pass over f: only when it is logged
        out["l1"] = f.float().sum() / B
        out["loss"] = mse + lam * out["l1"]
    return out


# ---------------------------------------------------------------------------------------------------
# The same step through autograd (slower, same numbers): the reference, and the base for custom losses


def autograd_training_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace: _Workspace | None = None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """``sae_training_step``'s contract through ``sae.loss(x).backward()``: gradients into ``.grad``, detached metrics."""
    saved, sae.cfg.l1_coefficient = sae.cfg.l1_coefficient, sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=compute_dtype == torch.bfloat16):
            losses = sae.loss(x)
        for param in sae.parameters():
            param.grad = None
        losses["loss"].backward()
    finally:
        sae.cfg.l1_coefficient = saved
    with torch.no_grad():
        fired = (sae.encode(x) > 0).sum(0).float()
    return {key: value.detach().float() for key, value in losses.items()} | {"fired": fired}


StepFn = Callable[..., dict[str, Tensor]]
"""A training step: ``step_fn(sae, x, l1_coefficient, compute_dtype, workspace, compute_l1) -> out``.

It writes the gradients of its loss into the parameters' ``.grad`` (replacing what was there) and returns
detached ``mse``, ``l0`` and ``fired`` (``[d_sae]``, tokens each latent fired on in ``x``), plus ``l1`` and
``loss`` when ``compute_l1`` (the loop asks for them only on the steps it logs). It does not step the optimiser."""

STEP_FNS: dict[str, StepFn] = {"fused": sae_training_step, "autograd": autograd_training_step,
                               "sparse_topk": sparse_topk_training_step}  # (issue 14) TopK SAEs only


def resolve_step_fn(step_fn: str | StepFn, sae: SAE) -> StepFn:
    """``"auto"``: the sparse step (``utils.sparse_topk``) for a TopK SAE on a CPU, the fused dense one otherwise
    (on a GPU the dense products are cheap and the sparse step is not yet measured there)."""
    if step_fn == "auto":
        sparse = sae.cfg.architecture == "topk" and sae.W_enc.device.type == "cpu"
        step_fn = "sparse_topk" if sparse else "fused"
    return STEP_FNS[step_fn] if isinstance(step_fn, str) else step_fn


BF16_MIN_SPEEDUP = 1.2  # choose_bf16 picks bfloat16 only when it is clearly faster, not on noise


def choose_bf16(sae: SAE, step_fn: StepFn, batch_size: int, rounds: int = 5) -> bool:
    """``TrainConfig.bf16=None``: bfloat16 for the sparse TopK step's encoder product on a CPU that runs it faster.

    Only there, because only there was it measured to train as well: on Part 2b's SAE, the same tokens
    with a bfloat16 and a float32 encoder product gave explained variance and CE loss recovered within the
    seeds' spread, and no dead latents either way (``tests/benchmarks/bench_sae.py --quality-tokens``).
    Whether it is faster depends on the CPU, and not only on its flags: on the course's 2-core test
    machines, 3.2 to 4.1 times as fast on an AMD EPYC (family 26) and slower than float32 on an earlier one
    with the same ``avx512_bf16`` flag. So it is measured here, on this SAE's encoder product at this
    batch size (a fraction of a second), and bfloat16 is chosen if it is ``BF16_MIN_SPEEDUP`` times as fast.
    The choice is in every history record (``"bf16"``: 1 or 0)."""
    if step_fn is not sparse_topk_training_step or sae.W_enc.device.type != "cpu":
        return False
    fp32_s, bf16_s = encoder_product_seconds(sae, batch_size, rounds)
    return fp32_s >= BF16_MIN_SPEEDUP * bf16_s


@torch.no_grad()
def encoder_product_seconds(sae: SAE, batch_size: int, rounds: int = 5) -> tuple[float, float]:
    """Median seconds of the encoder's product (casts included, as the sparse step does them) in float32 and bfloat16."""
    x = torch.randn(batch_size, sae.cfg.d_in, generator=torch.Generator().manual_seed(0)).to(sae.W_enc.device)
    W_enc, b_enc = sae.W_enc.detach(), sae.b_enc.detach()
    products = {dtype: (lambda dtype=dtype: torch.addmm(b_enc.to(dtype), x.to(dtype), W_enc.to(dtype)))
                for dtype in (torch.float32, torch.bfloat16)}
    times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in products}
    for product in products.values():  # warm up (the first bfloat16 call sets up oneDNN's kernels)
        product()
    for _ in range(rounds):  # interleaved, so that a change in load slows both alike
        for dtype, product in products.items():
            t0 = time.perf_counter()
            product()
            times[dtype].append(time.perf_counter() - t0)
    return statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])


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
    step_fn: str | StepFn = "auto"  # "auto" (sparse_topk for TopK on CPU, else fused), "fused", "autograd", "sparse_topk", or a StepFn
    bf16: bool | None = None  # the step's matrix products in bfloat16 (parameters stay float32); None: see choose_bf16
    unit_norm_decoder: bool = True  # project the gradient and renormalise W_dec's rows after every step
    dead_window_tokens: int = 1_000_000  # a latent is dead if it has not fired on this many tokens
    log_every: int = 20  # steps between history records
    progress: bool = True  # a tqdm bar with live metrics
    checkpoint: str | Path | None = None  # a file to save to (and resume from)
    checkpoint_every: int = 200  # steps between checkpoints

    def __post_init__(self) -> None:
        if (self.n_tokens is None) == (self.seconds is None):
            raise ValueError("give exactly one budget: n_tokens or seconds")
        if isinstance(self.step_fn, str) and self.step_fn not in {"auto", *STEP_FNS}:
            raise ValueError(f"step_fn must be one of {sorted({'auto', *STEP_FNS})} or a function, got {self.step_fn!r}")


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


def is_log_step(state: TrainState) -> bool:
    """Log every ``log_every`` steps and on the last one."""
    return (state.step + 1) % state.cfg.log_every == 0 or (
        state.total_steps is not None and state.step + 1 >= state.total_steps
    )


def log_record(state: TrainState, x: Float[Tensor, "batch d_in"], out: dict[str, Tensor], tokens_per_s: float) -> dict:
    """One history record, from the step's output on its batch ``x``."""
    with torch.no_grad():
        variance = (x - x.mean(0)).pow(2).sum() / len(x)
    record = {"step": state.step, "tokens": state.tokens, "loss": float(out["loss"]), "mse": float(out["mse"]),
              "l1": float(out["l1"]), "l0": float(out["l0"]), "explained_variance": float(1 - out["mse"] / variance),
              "frac_alive": float((~state.dead_latents()).float().mean()), "lr": state.lr,
              "l1_coefficient": state.l1_coefficient, "tokens_per_s": tokens_per_s, "elapsed_s": state.elapsed_s,
              "bf16": float(state.bf16)}
    record |= state.pending_log
    state.pending_log = {}
    return record


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Save the training state to ``path`` atomically (a kill mid-save keeps the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = dict(sae=state.sae.state_dict(), optimizer=state.optimizer.state_dict(), step=state.step,
                 tokens=state.tokens, elapsed=state.elapsed_s, total_steps=state.total_steps,
                 tokens_since_fired=state.tokens_since_fired, history=state.history,
                 seqs_consumed=getattr(state.buffer, "seqs_consumed", None))
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
    from tqdm.auto import tqdm

    cfg = _config(cfg, overrides)
    step_fn = resolve_step_fn(cfg.step_fn, sae)
    x = next(buffer)
    bf16 = cfg.bf16 if cfg.bf16 is not None else choose_bf16(sae, step_fn, len(x))
    workspace, compute_dtype, l1_target = _Workspace(), torch.bfloat16 if bf16 else None, sae.cfg.l1_coefficient
    state = start_training(sae, buffer, cfg, x)
    state.bf16 = bf16
    bar = tqdm(total=state.total_steps, initial=state.step, disable=not cfg.progress, unit="step", mininterval=1.0)
    t_start = time.perf_counter() - state.elapsed_s
    t_last, step_at_last, first = time.perf_counter(), state.step, True
    # On a CPU, freed memory is kept for reuse while the loop runs (utils.cpu_allocator): no fresh pages per step
    with heap_only() if sae.W_enc.device.type == "cpu" else contextlib.nullcontext():
        while not budget_spent(state, time.perf_counter() - t_start):
            x = x if first else next(buffer)  # the first batch was read to set up (b_dec, the step count)
            first = False
            plan_steps(state, time.perf_counter() - t_start)
            bar.total = state.total_steps
            apply_schedules(state, l1_target)
            log_now = is_log_step(state)
            out = step_fn(sae, x, state.l1_coefficient, compute_dtype, workspace, compute_l1=log_now)
            for plugin in plugins:
                plugin.before_update(state, x, out)
            update_parameters(state)
            state.tokens_since_fired.add_(len(x)).masked_fill_(out["fired"] > 0, 0)
            for plugin in plugins:
                state.pending_log |= plugin.after_update(state, x, out) or {}
            state.step, state.tokens = state.step + 1, state.tokens + len(x)
            state.elapsed_s = time.perf_counter() - t_start
            if log_now:
                now = time.perf_counter()
                state.history.append(log_record(state, x, out, (state.step - step_at_last) * len(x) / (now - t_last)))
                t_last, step_at_last = now, state.step
                _show(bar, state.history[-1])
                if callback is not None:
                    callback(state.history[-1])
            bar.update(1)
            if cfg.checkpoint is not None and (state.step % cfg.checkpoint_every == 0 or budget_spent(state, 0.0)):
                save_checkpoint(state, Path(cfg.checkpoint))
    bar.close()
    return state.history


def _config(cfg: TrainConfig | int | None, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``overrides`` applied; an int is the token budget."""
    if isinstance(cfg, TrainConfig):
        budget = {"n_tokens": None, "seconds": None} if {"n_tokens", "seconds"} & overrides.keys() else {}
        return replace(cfg, **budget | overrides)
    unknown = overrides.keys() - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(f"train_sae got unknown settings {sorted(unknown)}; TrainConfig has {[f.name for f in fields(TrainConfig)]}")
    return TrainConfig(**({"n_tokens": cfg} if cfg is not None else {}) | overrides)


def _show(bar, record: dict[str, float]) -> None:
    """Live metrics on the progress bar."""
    bar.set_postfix(loss=f"{record['loss']:.4g}", mse=f"{record['mse']:.4g}", l0=f"{record['l0']:.1f}",
                    alive=f"{record['frac_alive']:.1%}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
