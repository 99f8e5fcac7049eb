"""Turning text into token rows, and token rows into the activations at any hook point (the one harvest)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.lm.fused_attention import fused_attention

__all__ = ["hook_activations", "hook_layer", "mlp_post_activations", "token_batches", "tokenize_texts"]


def hook_layer(hook_name: str) -> int | None:
    """The block a TransformerLens hook name is in (``"blocks.0.mlp.hook_post"`` -> 0), or None (e.g.
    ``hook_embed``)."""
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(match.group(1)) if match else None


def _stop_layer(hook_name: str) -> int | None:
    """The block after the hook's block: running that far is enough to reach the hook."""
    layer = hook_layer(hook_name)
    return layer + 1 if layer is not None else None


class _ReachedHook(Exception):
    """Raised by ``mlp_post_activations``'s hook: the activations are in hand, the rest of the pass is not needed."""


@torch.no_grad()
def hook_activations(model, tokens: Int[Tensor, "batch seq"], hook_name: str) -> Float[Tensor, "batch seq d_hook"]:
    """The activations at ``hook_name`` for ``tokens``; the forward pass stops there.

    The course's one harvest: SAE training (``utils.sae.activation_buffer``), the metrics, the statistics
    engine and the dashboard all read a model through it, at the hook their SAE's config names. Stopping at
    the hook skips what comes after it in its block too (for ``hook_post``: the MLP's output projection),
    and attention runs fused where that is exact (``utils.lm.fused_attention``). Figures in
    ``tests/benchmarks/README.md`` (``bench_model.py``)."""
    if hook_name not in model.hook_dict:
        raise ValueError(
            f"the model has no hook point {hook_name!r}; its MLP activations are at "
            f"'blocks.<layer>.mlp.hook_post' (see model.hook_dict for all names)"
        )
    grabbed: list[Tensor] = []

    def keep_and_stop(activations: Tensor, hook) -> None:
        grabbed.append(activations)
        raise _ReachedHook

    with fused_attention(model), contextlib.suppress(_ReachedHook):
        model.run_with_hooks(
            tokens.to(model.cfg.device),
            fwd_hooks=[(hook_name, keep_and_stop)],
            stop_at_layer=_stop_layer(hook_name),
        )
    if not grabbed:
        raise RuntimeError(f"the forward pass never reached {hook_name!r}")
    return grabbed[0]


def mlp_post_activations(
    model, tokens: Int[Tensor, "batch seq"], hook_name: str = "blocks.0.mlp.hook_post"
) -> Float[Tensor, "batch seq d_mlp"]:
    """``hook_activations`` at an MLP's hidden layer (default: block 0's, where the course's SAEs read)."""
    return hook_activations(model, tokens, hook_name)


def tokenize_texts(
    texts: Iterable[str], tokenizer, seq_len: int = 128, max_seqs: int | None = None, chunk_size: int = 256
) -> Int[Tensor, "n_seqs seq_len"]:
    """Concatenate ``texts`` (EOS between them), cut into rows of ``seq_len - 1`` tokens, and put BOS first.

    Every row then starts like the model's training sequences; a leftover shorter than a row is dropped.
    """
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    body_len = seq_len - 1
    wanted = None if max_seqs is None else max_seqs * body_len
    stream: list[int] = []
    chunk: list[str] = []

    def flush() -> None:
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(eos)
        chunk.clear()

    for text in texts:
        chunk.append(text)
        if len(chunk) == chunk_size:
            flush()
            if wanted is not None and len(stream) >= wanted:
                break
    if chunk:
        flush()
    n_seqs = len(stream) // body_len if wanted is None else min(len(stream) // body_len, max_seqs)
    body = torch.tensor(stream[: n_seqs * body_len], dtype=torch.long).reshape(n_seqs, body_len)
    return torch.cat([torch.full((n_seqs, 1), bos, dtype=torch.long), body], dim=1)


def token_batches(
    tokens: Int[Tensor, "n_seqs seq"], batch_size: int, shuffle: bool = False, seed: int = 0
) -> Iterator[Int[Tensor, "batch seq"]]:
    """Yield ``tokens`` in batches of ``batch_size`` rows (the last one may be smaller), optionally shuffled."""
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed)) if shuffle else None
    for start in range(0, len(tokens), batch_size):
        rows = slice(start, start + batch_size)
        yield tokens[order[rows]] if order is not None else tokens[rows]
