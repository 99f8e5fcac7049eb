"""Training an SAE on a language model's activations: an activation buffer and a fast training loop.

- ``ActivationBuffer`` runs the model on token sequences, keeps a shuffled store of activations at one
  hook, and serves them in batches, refilling itself when half of it has been served.
- ``sae_training_step`` is one optimisation step with hand-written gradients (five matrix products and a
  few elementwise passes, no autograd graph): the same numbers as ``sae.loss(x).backward()``, faster.
- ``train_sae`` is the loop: Adam, learning-rate warm-up and decay, L1 warm-up, unit-norm decoder rows,
  dead-feature tracking, a tqdm bar with live metrics, optional checkpoints. One budget: tokens or seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.activations import mlp_post_activations
from utils.sae import SAE

__all__ = ["ActivationBuffer", "sae_training_step", "train_sae"]


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
    Kept, that one point would take up a feature (or pull ``b_dec``) and make up 1/seq of the data.
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

    Returns detached ``mse``, ``l0``, ``fired`` (how many tokens each feature fired on) and, if
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

    # How many tokens each feature fired on (in bfloat16, counts above 256 are rounded to 3 digits)
    fired = torch.gt(f, 0, out=ws.get("mask", (B, d_sae), cd, x.device)).sum(0).float()
    mse = err.pow(2).sum() / B
    out = {"mse": mse, "l0": fired.sum() / B, "fired": fired}
    if compute_l1:  # a full pass over f: only when it is logged
        out["l1"] = f.float().sum() / B
        out["loss"] = mse + lam * out["l1"]
    return out


# ---------------------------------------------------------------------------------------------------
# The loop


def _schedule(step: int, total: int, warmup_frac: float, decay_frac: float) -> float:
    """1 after a linear warm-up over the first ``warmup_frac`` of the steps, down to 0 over the last ``decay_frac``."""
    warmup, decay = max(1, round(warmup_frac * total)), round(decay_frac * total)
    if step < warmup:
        return (step + 1) / warmup
    if decay and step >= total - decay:
        return max(0.0, (total - step) / decay)
    return 1.0


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


def train_sae(
    sae: SAE,
    buffer: Iterator[Float[Tensor, "batch d_in"]],
    n_tokens: int | None = None,
    *,
    seconds: float | None = None,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    lr_warmup_frac: float = 0.01,
    lr_decay_frac: float = 0.2,
    l1_warmup_frac: float = 0.05,
    init_b_dec: str | None = "geometric_median",
    bf16: bool = False,
    fused: bool = True,
    dead_window_tokens: int = 1_000_000,
    log_every: int = 20,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
) -> list[dict[str, float]]:
    """Train ``sae`` on batches from ``buffer`` for ``n_tokens`` tokens or ``seconds`` seconds (give one).

    - Adam; the learning rate warms up linearly over the first ``lr_warmup_frac`` of the steps and decays
      linearly to 0 over the last ``lr_decay_frac`` (the decay removes most of the noise of the last steps).
    - The L1 coefficient warms up from 0 over the first ``l1_warmup_frac`` (fewer features die early on).
    - After every step the decoder rows are renormalised, the gradient part parallel to them having been
      removed first (``SAE.remove_gradient_parallel_to_decoder``).
    - ``init_b_dec``: ``"geometric_median"`` or ``"mean"`` of the first batch, or ``None`` (keep it).
    - A feature is *dead* if it has not fired on the last ``dead_window_tokens`` tokens; the bar shows the
      fraction alive. (Part 3 of the course is about reviving dead features.)
    - ``bf16``: matrix products in bfloat16 (``sae_training_step``); ``fused=False`` uses ``sae.loss`` and
      autograd instead of the hand-written gradients (slower, same numbers).
    - ``seconds``: the number of steps is estimated from the speed so far (after 5 steps, then again at each
      log until the decay starts), and the loop also stops when the time is up, so the schedules still end
      where they should.
    - ``checkpoint``: a file to save the training state to every ``checkpoint_every`` steps and at the end;
      if it exists when training starts, training resumes from it.
    - ``callback(record)`` is called with each logged record (a dict), e.g. to plot live.

    Returns the history: one dict per ``log_every`` steps with ``step``, ``tokens``, ``loss``, ``mse``,
    ``l1``, ``l0``, ``explained_variance`` (on the batch), ``frac_alive``, ``lr``, ``l1_coefficient``,
    ``tokens_per_s`` and ``elapsed_s``.
    """
    from tqdm.auto import tqdm

    if (n_tokens is None) == (seconds is None):
        raise ValueError("give exactly one budget: n_tokens or seconds")
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    device = sae.W_enc.device
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))
    workspace = _Workspace()
    compute_dtype = torch.bfloat16 if bf16 else None
    l1_target = sae.cfg.l1_coefficient
    tokens_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=device)
    history: list[dict[str, float]] = []
    step, tokens, elapsed = 0, 0, 0.0

    x = next(buffer)
    batch_size = x.shape[0]
    total_steps = math.ceil(n_tokens / batch_size) if n_tokens is not None else None

    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)
        sae.load_state_dict(state["sae"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens, elapsed, total_steps = state["step"], state["tokens"], state["elapsed"], state["total_steps"]
        tokens_since_fired, history = state["tokens_since_fired"].to(device), state["history"]
    elif init_b_dec is not None:
        with torch.no_grad():
            centre = geometric_median(x) if init_b_dec == "geometric_median" else x.mean(0)
            sae.b_dec.copy_(centre)

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        state = dict(sae=sae.state_dict(), optimizer=optimizer.state_dict(), step=step, tokens=tokens,
                     elapsed=elapsed, total_steps=total_steps, tokens_since_fired=tokens_since_fired,
                     history=history, seqs_consumed=getattr(buffer, "seqs_consumed", None))
        torch.save(state, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)  # atomic: a kill mid-save keeps the previous checkpoint

    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", mininterval=1.0)
    t_start, t_last, step_at_last = time.perf_counter() - elapsed, time.perf_counter(), step
    while total_steps is None or step < total_steps:
        if step > 0 or history:
            x = next(buffer)
        if total_steps is None and step == 5:  # a seconds budget: fix the number of steps from the speed so far
            per_step = (time.perf_counter() - t_start) / step
            total_steps = max(step + 1, int(seconds / per_step))
            bar.reset(total=total_steps)
            bar.update(step)
        elif seconds is not None and step > 5 and step % log_every == 0 and step < (1 - lr_decay_frac) * total_steps:
            # Re-estimate until the decay starts: the first steps' speed misses the buffer's refills (and any
            # change in load), so the budget would be over- or under-used, or the decay cut short.
            per_step = (time.perf_counter() - t_start) / step
            total_steps = max(step + 1, int(seconds / per_step))
            bar.total = total_steps
        planned = total_steps or 10**9
        lr_now = lr * _schedule(step, planned, lr_warmup_frac, lr_decay_frac)
        l1_now = l1_target * min(1.0, (step + 1) / max(1, round(l1_warmup_frac * planned)))
        for group in optimizer.param_groups:
            group["lr"] = lr_now

        if fused:
            log_now = (step + 1) % log_every == 0 or (total_steps is not None and step + 1 >= total_steps)
            out = sae_training_step(sae, x, l1_now, compute_dtype, workspace, compute_l1=log_now)
        else:
            sae.cfg.l1_coefficient = l1_now
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                losses = sae.loss(x)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            sae.cfg.l1_coefficient = l1_target
            with torch.no_grad():
                fired = torch.count_nonzero(sae.encode(x), dim=0)
            out = {k: v.detach() for k, v in losses.items()} | {"fired": fired}
        sae.remove_gradient_parallel_to_decoder()
        optimizer.step()
        sae.normalize_decoder()
        optimizer.zero_grad(set_to_none=True)

        tokens_since_fired.add_(batch_size).masked_fill_(out["fired"] > 0, 0)
        step, tokens = step + 1, tokens + batch_size

        last = total_steps is not None and step >= total_steps
        if step % log_every == 0 or last:
            now = time.perf_counter()
            elapsed = now - t_start
            with torch.no_grad():
                variance = (x - x.mean(0)).pow(2).sum() / batch_size
            record = {
                "step": step,
                "tokens": tokens,
                "loss": float(out["mse"] + l1_now * out["l1"]) if sae.cfg.architecture == "standard" else float(out["mse"]),
                "mse": float(out["mse"]),
                "l1": float(out["l1"]),
                "l0": float(out["l0"]),
                "explained_variance": float(1 - out["mse"] / variance),
                "frac_alive": float((tokens_since_fired < dead_window_tokens).float().mean()),
                "lr": lr_now,
                "l1_coefficient": l1_now,
                "tokens_per_s": (step - step_at_last) * batch_size / (now - t_last),
                "elapsed_s": elapsed,
            }
            t_last, step_at_last = now, step
            history.append(record)
            bar.set_postfix(
                loss=f"{record['loss']:.4g}", mse=f"{record['mse']:.4g}", l0=f"{record['l0']:.1f}",
                alive=f"{record['frac_alive']:.1%}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False,
            )
            if callback is not None:
                callback(record)
        bar.update(1)
        if checkpoint is not None and (step % checkpoint_every == 0 or last):
            elapsed = time.perf_counter() - t_start
            save_checkpoint()
        if seconds is not None and time.perf_counter() - t_start > seconds:
            break
    bar.close()
    return history
