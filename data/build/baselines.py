"""Held-out cross-entropy of ``gelu-1l-mini`` against unigram and bigram baselines.

    python data/build/baselines.py

All three are scored on exactly the same targets: every next-token prediction inside the packed
validation sequences (``n_ctx`` tokens, each starting with BOS), as in ``lm_training.evaluate``.
The baselines are fitted on the same packed train split:

- unigram: add-one (Laplace) smoothed token frequencies;
- bigram: interpolated Kneser-Ney (absolute discount ``D = n1 / (n1 + 2 n2)``, continuation
  unigram with add-one smoothing so no token gets probability zero).

Writes ``data/models/gelu-1l-mini/baselines.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_training import evaluate, pack
from train_model import MODEL_DIR, token_stream

from utils.lm.loading import load_model


def transitions(seqs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(previous token, next token) for every prediction the model makes in ``seqs``."""
    return seqs[:, :-1].reshape(-1).numpy(), seqs[:, 1:].reshape(-1).numpy()


def unigram_ce(train: torch.Tensor, val: torch.Tensor, vocab: int) -> float:
    """Cross-entropy (nats/token) of an add-one smoothed unigram model."""
    _, nxt = transitions(train)
    counts = np.bincount(nxt, minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[transitions(val)[1]].mean())


def bigram_kn_ce(train: torch.Tensor, val: torch.Tensor, vocab: int) -> tuple[float, float]:
    """Cross-entropy (nats/token) of an interpolated Kneser-Ney bigram model; also returns the discount."""
    prev, nxt = transitions(train)
    counts = np.bincount(prev.astype(np.int64) * vocab + nxt, minlength=vocab * vocab).reshape(vocab, vocab)
    n1, n2 = (counts == 1).sum(), (counts == 2).sum()
    discount = n1 / (n1 + 2 * n2)
    context_count = counts.sum(1).astype(np.float64)  # c(v)
    followers = (counts > 0).sum(1).astype(np.float64)  # N1+(v .)
    continuation = (counts > 0).sum(0).astype(np.float64) + 1.0  # N1+(. w), add-one
    p_cont = continuation / continuation.sum()

    vp, vn = transitions(val)
    c_vw = counts[vp, vn].astype(np.float64)
    c_v = context_count[vp]
    seen = c_v > 0
    safe = np.where(seen, c_v, 1.0)
    backoff_weight = np.where(seen, discount * followers[vp] / safe, 1.0)
    prob = np.where(seen, np.maximum(c_vw - discount, 0.0) / safe, 0.0) + backoff_weight * p_cont[vn]
    return float(-np.log(prob).mean()), float(discount)


def main() -> None:
    torch.set_num_threads(2)
    model = load_model("gelu-1l-mini")
    tok = model.tokenizer
    n_ctx, bos, vocab = model.cfg.n_ctx, tok.bos_token_id, model.cfg.d_vocab
    train = pack(token_stream("train", tok), n_ctx, bos)
    val = pack(token_stream("validation", tok), n_ctx, bos)
    t0 = time.time()
    uni = unigram_ce(train, val, vocab)
    bi, discount = bigram_kn_ce(train, val, vocab)
    t1 = time.time()
    model_ce = evaluate(model, val, bf16=False)
    t2 = time.time()
    result = dict(
        targets=int(val[:, 1:].numel()),
        validation_sequences=len(val),
        n_ctx=n_ctx,
        unigram_add1_ce=round(uni, 4),
        bigram_kneser_ney_ce=round(bi, 4),
        bigram_discount=round(discount, 4),
        model_ce=round(model_ce, 4),
        units="nats per token",
        seconds=dict(baselines=round(t1 - t0, 1), model=round(t2 - t1, 1)),
    )
    (MODEL_DIR / "baselines.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
