"""How fast is the latent-statistics engine? One pass over >= 1M tokens for all 4,096 latents of a bundled SAE.

    python tests/benchmarks/bench_latent_stats.py                      # 1,000,000 tokens, 2 threads
    python tests/benchmarks/bench_latent_stats.py --tokens 200000 --threads 1 --no-cofire

Prints the time, tokens per second, latent-tokens per second (tokens x latents covered) and the peak
resident memory of the process (``ru_maxrss``, which includes the model, the SAE, the tokens and the
co-firing table of 4096 x 4096 int32, 64 MB). Everything is in: model forward to the hook, encode, the
statistics, and the sweep over the spool that draws interval and quantile samples. Aim: 3 minutes or less
and under 2 GB on 2 CPU cores. The figures depend on what else runs on the machine: report the load average with them
(printed at the start and the end).

The figures measured so far, with the machine and its load, are in ``tests/benchmarks/README.md``.

Tokens: the bundled training split (rows of 128 tokens, BOS first); the SAE: ``topk_4096_seed0``.

"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.lm.activations import tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.sae.latent_stats import compute_latent_stats
from utils.sae.model import SAE


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="rows of 128 tokens per forward pass")
    parser.add_argument("--no-cofire", action="store_true", help="skip the co-firing counts [4096 x 4096]")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}; load average at start {os.getloadavg()}")

    model = load_model("gelu-1l-mini", device="cpu")
    sae = SAE.from_pretrained("gelu-1l-mini")
    rows = -(-args.tokens // 128)
    corpus = load_text_dataset(model, split="train")
    tokens = tokenize_texts(corpus["text"], model.tokenizer, seq_len=128, max_seqs=rows)
    print(
        f"tokens {tuple(tokens.shape)} = {tokens.numel():,}; SAE {sae}; peak memory before the pass "
        f"{peak_rss_gb():.2f} GB"
    )

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    stats = compute_latent_stats(
        model,
        sae,
        tokens,
        batch_size=args.batch_size,
        top_k=20,
        one_per="row",
        cofire=not args.no_cofire,
        neuron_corr=True,
        progress=False,
    )
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    n = stats.n_tokens
    print(
        f"engine: {n:,} tokens x {stats.d_sae} latents in {seconds:.1f} s: {n / seconds:,.0f} tokens/s, "
        f"{n * stats.d_sae / seconds:.3g} latent-tokens/s"
    )
    print(
        f"CPU time of the pass {cpu:.0f} s (user + system), {cpu / seconds:.0%} of one core on average: on a shared "
        f"machine, CPU time / threads is a floor for the wall time on {args.threads} idle cores"
    )
    print(f"peak memory (whole process) {peak_rss_gb():.2f} GB; load average at end {os.getloadavg()}")
    print(f"latents that fire: {int((stats.fire_count > 0).sum())}; firings {int(stats.fire_count.sum()):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
