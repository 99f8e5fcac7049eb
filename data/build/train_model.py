"""Train ``gelu-1l-mini`` on the course corpus and save it to ``data/models/gelu-1l-mini/``.

    python data/build/train_model.py                 # full run (~20M+ tokens, about half an hour on 2 CPU cores)
    python data/build/train_model.py --resume        # continue from the checkpoint in the cache
    python data/build/train_model.py --bench 20      # time 20 steps in fp32 and in bf16, then exit

The checkpoint and the tokenized corpus live in ``$SAE_COURSE_CACHE`` (default ``~/.cache/sae-course``),
outside the repository. The loop itself is ``lm_training.train``.
"""

from __future__ import annotations

import os

# Sleep instead of spin-waiting between parallel regions: on a shared 2-core machine a spinning OpenMP
# thread fights the other processes, and a step became 2.5x slower (1.25 s vs 3.2 s measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lm_training import (
    LMTrainConfig,
    evaluate,
    make_model,
    make_optimizer,
    model_config,
    pack,
    tokenize_docs,
    train,
    train_step,
)

from utils.paths import data_dir

CACHE = Path(os.environ.get("SAE_COURSE_CACHE", Path.home() / ".cache" / "sae-course"))
MODEL_DIR = data_dir() / "models" / "gelu-1l-mini"


def token_stream(split: str, tokenizer) -> np.ndarray:
    """The split as one ``BOS doc BOS doc ...`` stream, cached on disk per (corpus, tokenizer)."""
    parquet = data_dir() / "corpus" / f"{split}.parquet"
    key = hashlib.sha1(
        parquet.read_bytes()[-4096:]
        + str(parquet.stat().st_size).encode()
        + (MODEL_DIR / "tokenizer.json").read_bytes()
    ).hexdigest()[:12]
    path = CACHE / "tokens" / f"{split}-{key}.npy"
    if not path.exists():
        texts = pq.read_table(parquet, columns=["text"]).column("text").to_pylist()
        t0 = time.time()
        stream = tokenize_docs(texts, tokenizer, tokenizer.bos_token_id)
        print(f"tokenized {split}: {len(texts):,} docs -> {len(stream):,} tokens in {time.time() - t0:.0f}s")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, stream)
    return np.load(path)


def bench(cfg: LMTrainConfig, seqs: torch.Tensor, steps: int) -> None:
    """Tokens/second of the training step, fp32 vs bf16 autocast (2 warm-up steps not counted)."""
    for bf16 in (False, True):
        c = dataclasses.replace(cfg, bf16=bf16)
        torch.manual_seed(0)
        model = make_model(c)
        opt = make_optimizer(model, c)
        losses = []
        for step in range(steps + 2):
            if step == 2:
                t0 = time.time()
            batch = seqs[step * c.batch_size : (step + 1) * c.batch_size]
            losses.append(train_step(model, opt, batch, c, step + c.warmup_steps))  # full lr: a stability check
        dt = time.time() - t0
        print(
            f"{'bf16' if bf16 else 'fp32'}: {steps * c.tokens_per_step / dt:,.0f} tokens/s "
            f"({dt / steps:.2f} s/step, batch {c.batch_size}x{c.n_ctx}); loss {losses[0]:.3f} -> {losses[-1]:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = LMTrainConfig()
    ap.add_argument("--total-tokens", type=int, default=d.total_tokens)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--bench", type=int, default=0, metavar="STEPS", help="only time STEPS steps, fp32 vs bf16")
    ap.add_argument("--checkpoint", type=Path, default=CACHE / "checkpoints" / "gelu-1l-mini.pt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    cfg = LMTrainConfig(
        d_vocab=len(tokenizer),
        total_tokens=args.total_tokens,
        batch_size=args.batch_size,
        lr=args.lr,
        bf16=not args.fp32,
    )
    bos = tokenizer.bos_token_id
    train_seqs = pack(token_stream("train", tokenizer), cfg.n_ctx, bos)
    val_seqs = pack(token_stream("validation", tokenizer), cfg.n_ctx, bos)
    print(
        f"train: {train_seqs.shape[0]:,} sequences ({train_seqs.numel():,} tokens); "
        f"validation: {val_seqs.shape[0]:,} sequences ({val_seqs.numel():,} tokens)"
    )
    if args.bench:
        bench(cfg, train_seqs, args.bench)
        return

    torch.manual_seed(cfg.seed)
    model = make_model(cfg, tokenizer)
    log_path = CACHE / "logs" / "train_model.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    log(f"config {json.dumps(dataclasses.asdict(cfg))}; {cfg.total_steps} steps")
    summary = train(model, train_seqs, cfg, val_seqs=val_seqs, checkpoint=args.checkpoint, resume=args.resume, log=log)
    t0 = time.time()
    val_ce = evaluate(model, val_seqs, bf16=False)
    log(
        f"done: {summary}; validation CE (fp32, all {val_seqs.numel():,} tokens) {val_ce:.4f} "
        f"in {time.time() - t0:.0f}s"
    )

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    (MODEL_DIR / "config.json").write_text(json.dumps(model_config(cfg), indent=2) + "\n")
    save_file(
        {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, MODEL_DIR / "model.safetensors"
    )
    train_tokens = int(train_seqs.numel())
    report = dict(
        train_config=dataclasses.asdict(cfg),
        steps=summary["steps"],
        tokens_seen=summary["tokens"],
        epochs=round(summary["tokens"] / train_tokens, 2),
        train_split_tokens=train_tokens,
        validation_tokens=int(val_seqs.numel()),
        validation_ce=round(val_ce, 4),
        wall_s=round(summary["wall_s"]),
        tokens_per_s=round(summary["tokens"] / summary["wall_s"]),
        threads=args.threads,
        torch=torch.__version__,
    )
    (MODEL_DIR / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
