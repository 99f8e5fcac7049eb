"""Throughput of ``gelu-1l-mini`` on this machine's CPU: LM training step and MLP-activation harvest.

    python tests/benchmarks/bench_model.py

Prints tokens/second for
- one training step of ``utils.lm_training`` (fp32 and bf16 autocast), batch 32 x 256;
- harvesting ``blocks.0.mlp.hook_post``, batch 64 x 128, four ways in interleaved rounds: a full forward pass,
  stopping after block 0 (``stop_at_layer=1``, the course's harvest until issue 14), stopping at the hook
  itself with TransformerLens's attention, and stopping at the hook with fused attention
  (``utils.activations.mlp_post_activations``, the course's harvest now), with their ratios.
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
from tests.benchmarks.common import bundled_or_untrained_model, interleaved, median_ratio, timed  # noqa: E402
from utils.activations import mlp_post_activations  # noqa: E402
from utils.fused_attention import OPT_OUT  # noqa: E402
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

    @torch.no_grad()
    def cached(**kwargs):
        _, cache = model.run_with_cache(tokens, names_filter=HOOK, **kwargs)
        return cache[HOOK]

    def at_hook_eager():
        os.environ[OPT_OUT] = "1"
        try:
            return mlp_post_activations(model, tokens)
        finally:
            del os.environ[OPT_OUT]

    candidates = {
        "full forward pass (run_with_cache)": cached,
        "stop after block 0 (stop_at_layer=1)": lambda: cached(stop_at_layer=1),
        "stop at the hook, TransformerLens attention": at_hook_eager,
        "stop at the hook, fused attention (now)": lambda: mlp_post_activations(model, tokens),
    }
    reference = cached()
    for name, fn in candidates.items():
        assert torch.allclose(fn(), reference, atol=1e-5), name
    times = interleaved(candidates, rounds=9)
    n = tokens.numel()
    print(f"harvest {HOOK}, {tokens.shape[0]} x {tokens.shape[1]} tokens, median of 9 interleaved rounds:")
    first = next(iter(times))
    for name, seconds in times.items():
        median = sorted(seconds)[len(seconds) // 2]
        print(f"   {name:46s} {n / median:10,.0f} tokens/s; {median_ratio(times[first], seconds):.2f}x the full pass, "
              f"{median_ratio(times['stop after block 0 (stop_at_layer=1)'], seconds):.2f}x stop_at_layer=1")

if __name__ == "__main__":
    main()
