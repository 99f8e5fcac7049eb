"""Check that the bundled ``gelu-1l-mini`` loads the way the course loads it, and behaves.

    python data/build/check_model.py

Loads it with ``utils.lm.loading.load_model`` (as every notebook does), then checks
BOS handling of ``to_tokens`` / ``to_str_tokens``, the weights' dtype and size, and that the model's
loss on a few validation sequences is far below a uniform guess.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pyarrow.parquet as pq
import safetensors.torch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.lm.loading import load_model
from utils.paths import data_dir


def main() -> None:
    folder = data_dir() / "models" / "gelu-1l-mini"
    model = load_model("gelu-1l-mini", device="cpu")  # the course's loader
    cfg, tok = model.cfg, model.tokenizer
    state = safetensors.torch.load_file(folder / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in state.values())
    n_params = sum(v.numel() for v in state.values())
    size_mb = (folder / "model.safetensors").stat().st_size / 1e6
    print(
        f"config ok: {cfg.n_layers}L d_model={cfg.d_model} d_mlp={cfg.d_mlp} act_fn={cfg.act_fn} "
        f"vocab={cfg.d_vocab}; {n_params:,} parameters, {size_mb:.1f} MB"
    )

    assert tok.bos_token == "<|endoftext|>" and tok.bos_token_id == 0 == tok.eos_token_id == tok.pad_token_id
    tokens = model.to_tokens("The year 2024 in Python: print('hi')")
    assert tokens[0, 0].item() == tok.bos_token_id and (tokens[0, 1:] != tok.bos_token_id).all(), tokens
    str_tokens = model.to_str_tokens("The year 2024")
    assert str_tokens[0] == "<|endoftext|>" and str_tokens[-4:] == ["2", "0", "2", "4"], str_tokens
    print(f"tokenizer ok: {str_tokens}")

    texts = pq.read_table(data_dir() / "corpus" / "validation.parquet", columns=["text"]).column("text").to_pylist()
    batch = torch.stack(
        [model.to_tokens(t[:2000])[0, :128] for t in texts[:16] if len(model.to_tokens(t[:2000])[0]) >= 128]
    )
    with torch.no_grad():
        loss = model(batch, return_type="loss").item()
    assert loss < 0.6 * math.log(cfg.d_vocab), loss
    print(
        f"forward ok: loss {loss:.3f} nats/token on {batch.shape[0]} validation snippets "
        f"(uniform guess: {math.log(cfg.d_vocab):.3f})"
    )
    print("gelu-1l-mini round-trips")


if __name__ == "__main__":
    main()
