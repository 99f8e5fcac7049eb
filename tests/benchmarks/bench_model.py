"""Throughput of ``gelu-1l-mini`` on this machine's CPU: LM training step and MLP-activation harvest.

    python tests/benchmarks/bench_model.py

Prints tokens/second for
- one training step of ``data/build/lm_training.py`` (fp32 and bf16 autocast), batch 32 x 256;
- harvesting ``blocks.0.mlp.hook_post``, batch 64 x 128, four ways in interleaved rounds: a full forward pass
  and stopping after block 0 (``stop_at_layer=1``, as Part 2b's store does) with TransformerLens's own
  attention, the latter with fused attention (``utils.lm.fused_attention``, which ``load_model`` installs), and
  stopping at the hook itself, fused (``utils.lm.activations.mlp_post_activations``), with their ratios.
Uses the bundled model (``data/models/gelu-1l-mini``) if it is there, else an untrained one of the
same configuration. Runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
from pathlib import Path

# As in data/build/train_model.py: sleeping (not spinning) OpenMP threads cope far better with a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lm_training import LMTrainConfig, make_model, make_optimizer, train_step

from tests.benchmarks.common import bundled_or_untrained_model, interleaved, median_ratio, timed
from utils.lm.activations import mlp_post_activations
from utils.lm.fused_attention import ENV_OVERRIDE

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
        s = timed(lambda: train_step(student, opt, batch, c, next(step)), repeats=4)  # noqa: B023 (timed here, in the loop)
        print(f"LM training step ({'bf16 autocast' if bf16 else 'fp32'}): {c.tokens_per_step / s:10,.0f} tokens/s")

    # --- activation harvest
    model.eval()
    tokens = torch.randint(1, vocab, (64, 128))
    tokens[:, 0] = 0

    @torch.no_grad()
    def cached(**kwargs):
        _, cache = model.run_with_cache(tokens, names_filter=HOOK, **kwargs)
        return cache[HOOK]

    def eager(fn):  # the same call with TransformerLens's own attention (the model load_model gives has it fused)
        def run():
            os.environ[ENV_OVERRIDE] = "1"
            try:
                return fn()
            finally:
                del os.environ[ENV_OVERRIDE]

        return run

    candidates = {
        "full forward pass, TransformerLens attention": eager(cached),
        "stop after block 0, TransformerLens attention": eager(lambda: cached(stop_at_layer=1)),
        "stop after block 0, fused attention": lambda: cached(stop_at_layer=1),
        "stop at the hook, fused (mlp_post_activations)": lambda: mlp_post_activations(model, tokens),
    }
    reference = cached()
    for name, fn in candidates.items():
        assert torch.allclose(fn(), reference, atol=1e-5), name
    times = interleaved(candidates, rounds=9)
    n = tokens.numel()
    print(
        f"harvest {HOOK}, {tokens.shape[0]} x {tokens.shape[1]} tokens, median of 9 interleaved rounds "
        "(stop after block 0: run_with_cache(stop_at_layer=1), as Part 2b's store does):"
    )
    full, stop = list(times.values())[:2]
    for name, seconds in times.items():
        print(
            f"   {name:48s} {n / statistics.median(seconds):10,.0f} tokens/s; {median_ratio(full, seconds):.2f}x the "
            f"full pass, {median_ratio(stop, seconds):.2f}x stopping after block 0 unfused"
        )


if __name__ == "__main__":
    main()
