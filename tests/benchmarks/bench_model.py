"""Throughput of ``gelu-1l-mini`` on this machine's CPU: LM training step and MLP-activation harvest.

    python tests/benchmarks/bench_model.py

Prints tokens/second for
- one training step of ``utils.lm_training`` (fp32 and bf16 autocast), batch 32 x 256;
- harvesting ``blocks.0.mlp.hook_post`` while stopping after block 0 (no unembedding), batch 64 x 128;
- the same harvest with a full forward pass, and the ratio of the two.
Uses the bundled model (``data/models/gelu-1l-mini``) if it is there, else an untrained one of the
same configuration. Runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

# As in data/build/train_model.py: sleeping (not spinning) OpenMP threads cope far better with a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.common import bundled_or_untrained_model, timed  # noqa: E402
from utils.activations import mlp_post_activations  # noqa: E402
from utils.lm_training import LMTrainConfig, make_model, make_optimizer, train_step  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, which = bundled_or_untrained_model()
    vocab = model.cfg.d_vocab
    print(f"model: gelu-1l-mini, {which}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    # --- training step (fresh copy of the config's model so the bundled weights are not touched)
    cfg = LMTrainConfig(d_vocab=vocab)
    batch = torch.randint(1, vocab, (cfg.batch_size, cfg.n_ctx))
    batch[:, 0] = 0
    for bf16 in (False, True):
        c = dataclasses.replace(cfg, bf16=bf16)
        student = make_model(c)
        opt = make_optimizer(student, c)
        step = iter(range(10**6))
        s = timed(lambda: train_step(student, opt, batch, c, next(step)), repeats=4)
        print(f"LM training step ({'bf16 autocast' if bf16 else 'fp32'}): {c.tokens_per_step / s:10,.0f} tokens/s")

    # --- activation harvest
    model.eval()
    tokens = torch.randint(1, vocab, (64, 128))
    tokens[:, 0] = 0
    s_stop = timed(lambda: mlp_post_activations(model, tokens), repeats=5)

    @torch.no_grad()
    def full_pass():
        _, cache = model.run_with_cache(tokens, names_filter=HOOK)
        return cache[HOOK]

    s_full = timed(full_pass, repeats=5)
    assert torch.allclose(mlp_post_activations(model, tokens), full_pass(), atol=1e-5)
    n = tokens.numel()
    print(f"harvest {HOOK}, stop_at_layer=1:   {n / s_stop:10,.0f} tokens/s")
    print(f"harvest {HOOK}, full forward:     {n / s_full:10,.0f} tokens/s")
    print(f"speed-up from skipping the unembedding: {s_full / s_stop:.2f}x")


if __name__ == "__main__":
    main()
