"""How fast is the latent dashboard on this machine? Prints the figures of one run.

    python tests/benchmarks/bench_dashboard.py                    # all 4,096 latents over 1M tokens, 2 threads
    python tests/benchmarks/bench_dashboard.py --tokens 200000 --threads 1

1. The whole dashboard of a bundled SAE: one pass over ``--tokens`` training tokens (model forward and SAE
   encode), every statistic of every latent (density, histogram, top contexts, interval samples with exact
   ablation effects, logits, neurons, co-firing, nearest latents, the other run's match) and the export of
   the folder of HTML files with its index. Target: 2 minutes or less on 2 idle CPU cores for 1M tokens and
   all 4,096 latents (5 minutes before the dashboard went through the engine's road). The engine pass's phases
   (forward, encode, counts, top-k, co-firing, ...) are printed with their wall-clock and CPU seconds, and the
   load average at the start and the end: a figure taken on a busy machine is no idle figure.
2. The prompt-centric view of a 128-token prompt over all latents, with exact loss effects (the median of
   5 runs). Target: 1 second or less.

The figures measured so far, with the machine and its load, are in ``tests/benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.common import timed
from utils import dashboard
from utils.lm.activations import tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.sae.model import SAE

SEQ_LEN = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="folder for the HTML files (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model("gelu-1l-mini", device="cpu")
    sae = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed0").requires_grad_(False)
    other = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed1").requires_grad_(False)
    rows = -(-args.tokens // SEQ_LEN)
    tokens = tokenize_texts(
        load_text_dataset(model, split="train")["text"], model.tokenizer, seq_len=SEQ_LEN, max_seqs=rows
    )
    n_tokens = tokens.numel()
    prompt = model.to_string(tokens[-1, 1:])
    print(f"{n_tokens:,} tokens ({len(tokens)} rows of {SEQ_LEN}), {sae.cfg.d_sae} latents, {args.threads} threads")
    print(f"load average at start {os.getloadavg()}")
    phases: dict[str, list[float]] = {}

    with torch.no_grad():
        cpu0, t0 = time.process_time(), time.perf_counter()
        codes: dict = {}
        stats = dashboard.latent_stats(model, sae, tokens, seconds=phases, codes=codes)
        t_pass = time.perf_counter() - t0
        data = dashboard.build(model, sae, tokens, stats=stats, other_sae=other, prompts=[prompt], codes=codes)
        t_stats = time.perf_counter() - t0 - t_pass
        out = Path(args.out or tempfile.mkdtemp(prefix="dashboard-"))
        index = dashboard.export_folder(data, out)
        t_total, cpu_total = time.perf_counter() - t0, time.process_time() - cpu0
    size = sum(p.stat().st_size for p in out.glob("*.html"))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"1. engine pass (forward, encode, statistics): {t_pass:.0f} s ({n_tokens / t_pass:,.0f} tokens/s); contexts "
        f"with ablation effects, weights and pages: "
        f"{t_stats:.0f} s; export: {t_total - t_pass - t_stats:.0f} s"
    )
    print(
        f"   whole dashboard: {t_total:.0f} s = {t_total / 60:.1f} min (target <= 2 min on 2 idle cores); peak memory "
        f"{peak_gb:.1f} GB; load average now {os.getloadavg()}"
    )
    print("   engine phases (wall s, CPU s): " + ", ".join(f"{k} {w:.0f}/{c:.0f}" for k, (w, c) in phases.items()))
    print(
        f"   process CPU time {cpu_total:.0f} s, i.e. about {cpu_total / args.threads / 60:.1f} min on {args.threads} "
        f"otherwise idle cores; load average during the run {os.getloadavg()[0]:.1f} (a shared machine is slower)"
    )
    print(
        f"   {len(data.latents)} latents in {len(list(out.glob('latents_*.html')))} files, {size / 2**20:.1f} MB "
        f"({size / len(data.latents) / 1024:.1f} KB per latent); index: {index}"
    )

    ids = model.to_tokens(prompt)[0]
    seconds = timed(lambda: dashboard.prompt_view(model, sae, prompt, stats), repeats=5)
    cpu0 = time.process_time()
    dashboard.prompt_view(model, sae, prompt, stats)
    cpu = time.process_time() - cpu0
    print(
        f"2. prompt view of a {len(ids)}-token prompt over all {sae.cfg.d_sae} latents, exact loss effects: "
        f"{seconds:.2f} s (target <= 1 s); process CPU time {cpu:.2f} s"
    )


if __name__ == "__main__":
    main()
