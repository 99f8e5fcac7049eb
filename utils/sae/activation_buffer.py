"""A shuffled store of a model's activations at one hook, served in batches for SAE training.

``ActivationBuffer`` runs the model on token sequences, keeps a shuffled store of activations at one
hook, and serves them in batches, refilling itself when half of it has been served.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.lm.activations import hook_activations, tokenize_texts

__all__ = ["ActivationBuffer"]


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
      of ``seq_len`` tokens (``utils.lm.activations.tokenize_texts``), also cycled over;
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
            chunk = 1024  # documents tokenized at a time
            while True:
                for start in range(0, len(tokens), chunk):
                    texts = tokens[start : start + chunk]
                    texts = texts["text"] if isinstance(texts, dict) else texts
                    rows = tokenize_texts(texts, self.model.tokenizer, seq_len=self.seq_len)
                    for i in range(0, len(rows), self.model_batch_size):
                        yield rows[i : i + self.model_batch_size]
        else:
            yield from tokens

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
        acts = hook_activations(self.model, rows, self.hook_name)
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
