"""Train ``gelu-1l-mini``: a one-layer GELU transformer in gelu-1l's architecture family, on CPU.

nanoGPT-style: the configuration is a small dataclass, the data is packed into BOS-led sequences,
and the loop (AdamW, linear warm-up then cosine decay, optional bf16 autocast) reads top to bottom.
The command line lives in ``data/build/train_model.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from utils.lm.loading import new_model


@dataclass
class LMTrainConfig:
    """Model shape (gelu-1l's family, scaled down) and optimisation settings."""

    # model: gelu-1l is n_layers=1, d_model=512, n_heads=8, d_mlp=2048, act_fn="gelu", LN, n_ctx=1024
    d_vocab: int = 8192
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 256
    seed: int = 0
    # optimisation
    total_tokens: int = 24_000_000
    batch_size: int = 32  # sequences of n_ctx tokens per step
    lr: float = 2e-3
    min_lr_frac: float = 0.1  # the cosine decays to lr * min_lr_frac
    warmup_steps: int = 200
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    bf16: bool = True  # torch.autocast("cpu", dtype=torch.bfloat16) for the forward pass

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.n_ctx

    @property
    def total_steps(self) -> int:
        return max(1, self.total_tokens // self.tokens_per_step)


def model_config(cfg: LMTrainConfig) -> dict:
    """Keyword arguments for ``HookedTransformerConfig`` (what ``config.json`` holds)."""
    return dict(
        n_layers=1,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        n_ctx=cfg.n_ctx,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        tokenizer_prepends_bos=True,
        default_prepend_bos=True,
        original_architecture="neel",
        model_name="gelu-1l-mini",
        seed=cfg.seed,
    )


def make_model(cfg: LMTrainConfig, tokenizer=None) -> HookedTransformer:
    """A freshly initialised ``gelu-1l-mini`` (fp32, CPU)."""
    return new_model(model_config(cfg), tokenizer=tokenizer)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def tokenize_docs(texts: list[str], tokenizer, bos_id: int) -> np.ndarray:
    """One long stream ``BOS doc BOS doc ...`` of token ids (uint16)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out = np.empty(sum(len(x) + 1 for x in ids), dtype=np.uint16)
    i = 0
    for x in ids:
        out[i] = bos_id
        out[i + 1 : i + 1 + len(x)] = x
        i += len(x) + 1
    return out


def pack(stream: np.ndarray, n_ctx: int, bos_id: int) -> Int[torch.Tensor, "seq n_ctx"]:
    """Cut the stream into pieces of ``n_ctx - 1`` tokens and put BOS in front of each, so every row starts with BOS."""
    n = len(stream) // (n_ctx - 1)
    body = torch.from_numpy(stream[: n * (n_ctx - 1)].astype(np.int64)).view(n, n_ctx - 1)
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.int64), body], dim=1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: LMTrainConfig) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr * min_lr_frac``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: HookedTransformer, cfg: LMTrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and LayerNorm parameters)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [dict(params=decay, weight_decay=cfg.weight_decay), dict(params=no_decay, weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def next_token_loss(model: HookedTransformer, tokens: Int[torch.Tensor, "batch seq"], bf16: bool) -> torch.Tensor:
    """Mean cross-entropy (nats) of predicting ``tokens[:, 1:]``; the loss itself is computed in fp32."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits: Float[torch.Tensor, "batch seq d_vocab"] = model(tokens, return_type="logits")
    # Score every position against the next token; the last one has no target (ignore_index). This avoids
    # slicing the (large) logits tensor, whose backward pass would allocate and fill a second copy of it.
    targets = F.pad(tokens[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


def train_step(
    model: HookedTransformer, opt: torch.optim.Optimizer, tokens: torch.Tensor, cfg: LMTrainConfig, step: int
) -> float:
    """One optimiser step on a batch of packed sequences; returns the loss."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    loss = next_token_loss(model, tokens, cfg.bf16)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: HookedTransformer, seqs: torch.Tensor, batch_size: int = 64, bf16: bool = False) -> float:
    """Mean next-token cross-entropy (nats per token) over all sequences."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        batch = seqs[i : i + batch_size]
        n = batch[:, 1:].numel()
        total += next_token_loss(model, batch, bf16).item() * n
        count += n
    model.train()
    return total / count


def save_checkpoint(path: Path, model, opt, cfg: LMTrainConfig, step: int, elapsed: float) -> None:
    """Model + optimiser + step, written atomically (so a kill mid-save keeps the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        dict(
            model=model.state_dict(),
            opt=opt.state_dict(),
            cfg=asdict(cfg),
            step=step,
            elapsed=elapsed,
            rng=torch.get_rng_state(),
        ),
        tmp,
    )
    tmp.replace(path)


def train(
    model: HookedTransformer,
    train_seqs: torch.Tensor,
    cfg: LMTrainConfig,
    val_seqs: torch.Tensor | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    ckpt_every: int = 100,
    eval_every: int = 500,
    log=print,
    progress: bool = True,
) -> dict:
    """Train for ``cfg.total_steps`` steps on random batches (epochs of shuffled sequences); returns a summary."""
    from tqdm.auto import tqdm

    opt = make_optimizer(model, cfg)
    start, elapsed = 0, 0.0
    if resume and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"])
        log(f"resumed from {checkpoint} at step {start}")
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(train_seqs) // cfg.batch_size
    perm = None
    model.train()
    bar = tqdm(range(start, cfg.total_steps), initial=start, total=cfg.total_steps, disable=not progress, mininterval=5)
    t0, ema = time.time(), None
    for step in bar:
        epoch, i = divmod(step, steps_per_epoch)
        if perm is None or i == 0 or step == start:  # the permutation of an epoch is a function of the epoch only
            perm = torch.randperm(len(train_seqs), generator=gen.manual_seed(cfg.seed + epoch))
        batch = train_seqs[perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
        loss = train_step(model, opt, batch, cfg, step)
        ema = loss if ema is None else 0.98 * ema + 0.02 * loss
        now = elapsed + time.time() - t0
        bar.set_postfix(
            loss=f"{ema:.3f}",
            lr=f"{lr_at(step, cfg):.1e}",
            tok_s=f"{(step + 1 - start) * cfg.tokens_per_step / (time.time() - t0):.0f}",
        )
        if (step + 1) % 50 == 0:
            log(
                f"step {step + 1}/{cfg.total_steps} loss {ema:.4f} lr {lr_at(step, cfg):.2e} "
                f"tokens {(step + 1) * cfg.tokens_per_step:,} elapsed {now:.0f}s"
            )
        if val_seqs is not None and (step + 1) % eval_every == 0:
            log(f"step {step + 1} validation CE {evaluate(model, val_seqs[:256], bf16=cfg.bf16):.4f}")
        if checkpoint is not None and ((step + 1) % ckpt_every == 0 or step + 1 == cfg.total_steps):
            save_checkpoint(checkpoint, model, opt, cfg, step + 1, now)
    elapsed += time.time() - t0
    return dict(
        steps=cfg.total_steps, tokens=cfg.total_steps * cfg.tokens_per_step, wall_s=elapsed, final_train_loss_ema=ema
    )
