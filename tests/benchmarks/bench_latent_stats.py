"""How fast is the latent-statistics engine? One pass over >= 1M tokens for all 4,096 latents of a bundled SAE.

    python tests/benchmarks/bench_latent_stats.py                      # 1,000,000 tokens, 2 threads
    python tests/benchmarks/bench_latent_stats.py --tokens 200000 --threads 1 --no-cofire
    python tests/benchmarks/bench_latent_stats.py --compare-select --tokens 100000   # bfloat16 selection vs exact

Prints the time, tokens per second, latent-tokens per second (tokens x latents covered), the arithmetic done
(about 4.5 MFLOP per token: the encoder's product and the model's matmuls to the hook) as GFLOP/s against the fp32
matmul limit measured in the same run (the encoder's own product, ``[1024, d_in] @ [d_in, d_sae]``, median of
repeats, on the same threads) and the ratio of the two, where the time went (wall-clock and CPU seconds of each
phase: forward, encode, counts, top-k, co-firing, neuron correlation, spool, samples), and the peak
resident memory of the process (``ru_maxrss``, which includes the model, the SAE, the tokens and the
co-firing table of 4096 x 4096 int32, 64 MB). Everything is in: model forward to the hook, encode, the
statistics, and the sweep over the spool that draws interval and quantile samples. Aim: 3 minutes or less
and under 2 GB on 2 CPU cores. The figures depend on what else runs on the machine: report the load average with them
(printed at the start and the end).

The figures measured so far, with the machine and its load, are in ``tests/benchmarks/README.md``.

Aim (the issue on the engine's speed): >= 50% of the fp32 matmul limit on 2 idle cores. On a loaded machine the
wall-clock ratio means little; the CPU-time ratio (the pass's CPU seconds against the matmul's, both per FLOP) is
the steadier figure.

Tokens: the bundled training split (rows of 128 tokens, BOS first); the SAE: ``topk_4096_seed0``.

"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
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


def matmul_peak(d_in: int, d_sae: int, rows: int = 1024, repeats: int = 20) -> tuple[float, float]:
    """The fp32 matmul limit on this machine now: GFLOP/s of ``[rows, d_in] @ [d_in, d_sae]`` into a reused buffer,
    the median of ``repeats`` by wall clock and by CPU time (CPU seconds / threads: what the product costs when it
    has the cores to itself)."""
    a, b = torch.randn(rows, d_in), torch.randn(d_in, d_sae)
    out = torch.empty(rows, d_sae)
    for _ in range(3):
        torch.mm(a, b, out=out)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b, out=out)
        wall.append(time.perf_counter() - t0)
        cpu.append((time.process_time() - c0) / torch.get_num_threads())
    flop = 2 * rows * d_in * d_sae
    return flop / statistics.median(wall) / 1e9, flop / statistics.median(cpu) / 1e9


def flop_per_token(model, d_in: int, d_sae: int, seq: int) -> float:
    """Multiply-adds x 2 of one token: the encoder's product, and the model's matmuls up to the SAE's hook (one
    layer: Q, K, V, O, attention over (seq + 1) / 2 positions on average, the MLP's input projection)."""
    c = model.cfg
    forward = 2 * (4 * c.d_model * c.d_model + c.d_model * c.d_mlp) + 2 * 2 * c.d_model * (seq + 1) / 2
    return 2 * d_in * d_sae + forward


def compare_select(model, sae, tokens: torch.Tensor, repeats: int = 3) -> None:
    """The opt-in bfloat16 selection (``SAE.encode_sparse(select_dtype=torch.bfloat16)``) against the exact
    encoder on the same activations: encode seconds of each (interleaved, exact first, median of ``repeats``),
    how many tokens' active sets differ, and by how many latents, and the largest difference of a value both
    keep."""
    from utils.lm.activations import hook_activations

    x = torch.cat(
        [hook_activations(model, tokens[s : s + 64], sae.cfg.hook_name)[:, 1:] for s in range(0, len(tokens), 64)]
    )
    x = x.reshape(-1, x.shape[-1])
    times: dict[str, list[float]] = {"exact": [], "bfloat16": []}
    for _ in range(repeats):
        for name, dtype in (("exact", None), ("bfloat16", torch.bfloat16)):
            t0 = time.perf_counter()
            code = sae.encode_sparse(x, select_dtype=dtype)
            times[name].append(time.perf_counter() - t0)
            if name == "exact":
                exact = code
            else:
                fast = code
    d_sae = sae.cfg.d_sae
    dense = [torch.zeros(len(x), d_sae).scatter_add_(-1, i, v) for v, i in (exact, fast)]
    active = [d > 0 for d in dense]
    differ = (active[0] != active[1]).sum(-1)
    both = active[0] & active[1]
    worst = ((dense[0] - dense[1]).abs() / dense[0].abs().clamp_min(1e-6))[both].max()
    median = {k: statistics.median(v) for k, v in times.items()}
    swapped = differ[differ > 0].float().mean() / 2 if (differ > 0).any() else torch.tensor(0.0)
    print(
        f"selection in bfloat16 vs exact, {len(x):,} tokens: encode {median['bfloat16']:.2f} s vs "
        f"{median['exact']:.2f} s = {median['exact'] / median['bfloat16']:.2f}x (median of {repeats} interleaved); "
        f"tokens whose active set differs {(differ > 0).float().mean():.2%}, latents swapped per such token "
        f"{swapped:.2f}; largest relative difference of a value both keep {worst:.1e}; load {os.getloadavg()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="rows of 128 tokens per forward pass")
    parser.add_argument("--no-cofire", action="store_true", help="skip the co-firing counts [4096 x 4096]")
    parser.add_argument("--compare-select", action="store_true", help="bfloat16 selection vs exact encode, then stop")
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
    if args.compare_select:
        compare_select(model, sae, tokens)
        return 0

    peak_wall, peak_cpu = matmul_peak(sae.cfg.d_in, sae.cfg.d_sae)
    print(
        f"fp32 matmul limit now ([1024, {sae.cfg.d_in}] @ [{sae.cfg.d_in}, {sae.cfg.d_sae}], {args.threads} threads): "
        f"{peak_wall:.1f} GFLOP/s by wall clock, {peak_cpu:.1f} by CPU time; load {os.getloadavg()}"
    )
    phases: dict[str, list[float]] = {}
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
        seconds=phases,
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
    flop = flop_per_token(model, sae.cfg.d_in, sae.cfg.d_sae, tokens.shape[1]) * n
    achieved_wall, achieved_cpu = flop / seconds / 1e9, flop / (cpu / args.threads) / 1e9
    print(
        f"arithmetic {flop / n / 1e6:.2f} MFLOP/token: {achieved_wall:.1f} GFLOP/s by wall clock = "
        f"{achieved_wall / peak_wall:.0%} of the matmul limit by wall clock; by CPU time (CPU s / threads) "
        f"{achieved_cpu:.1f} GFLOP/s = {achieved_cpu / peak_cpu:.0%} of the limit by CPU time"
    )
    print("phase                       wall s   CPU s   share of the pass's CPU time")
    for phase, (wall, cpu_s) in sorted(phases.items(), key=lambda kv: -kv[1][1]):
        print(f"  {phase:24s} {wall:7.1f} {cpu_s:7.1f}   {cpu_s / cpu:5.1%}")
    print(f"peak memory (whole process) {peak_rss_gb():.2f} GB; load average at end {os.getloadavg()}")
    print(f"latents that fire: {int((stats.fire_count > 0).sum())}; firings {int(stats.fire_count.sum()):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
