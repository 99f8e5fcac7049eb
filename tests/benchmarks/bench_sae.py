"""How fast does the course's SAE trainer run on this machine? Prints ratios measured in one run.

    python tests/benchmarks/bench_sae.py                   # sections 1-3 (several minutes on 2 quiet cores)
    python tests/benchmarks/bench_sae.py --skip-e2e        # only the training steps against plain matmuls
    python tests/benchmarks/bench_sae.py --only-part2b --part2b-pairs 4   # only Part 2b's cell, before and now
    python tests/benchmarks/bench_sae.py --tokens 100000 --threads 1 --rounds 9

Every comparison is **interleaved**: each round times every candidate once, and the figures are medians
over rounds (ratios are medians of the per-round ratios), so a machine shared with other jobs slows all
candidates alike and the ratios stay meaningful. The load average is printed before and after.

1. The training step of a TopK SAE (k = 32) on the bundled configuration (512 -> 4096 latents, batch 4096)
   and on Part 2b's CPU configuration (512 -> 1024, batch 2048): plain matrix products of the dense
   step's five shapes (its FLOPs, 10 * B * d_in * d_sae, are the yardstick: "x% of matmul throughput"), the
   dense float32 step (``utils.sae.steps.sae_training_step``), the sparse float32 step
   (``utils.sae.sparse_topk.sparse_topk_training_step``) and the sparse step with a bfloat16 encoder product;
   each with the gradient projection, fused Adam and the decoder renormalisation, as ``train_sae`` runs it.
   Target: sparse >= 2.5x dense float32, in the precision ``train_sae`` chooses on this machine
   (``utils.sae.steps.choose_bf16``: bfloat16 where the CPU runs the encoder's product clearly faster).
2. End to end (harvesting activations from the live model + training), tokens per second, on the bundled
   TopK configuration: the course trainer as it runs by default (sparse step, the precision it chooses),
   also dense and sparse in float32, against SAELens's trainer (``LanguageModelSAETrainingRunner``,
   ``TopKTrainingSAEConfig`` with k = 32, float32) on the same model object, hook, SAE size, batch size,
   activation-buffer size and number of tokens, on CPU, wandb off; and the share of the course trainer's time
   spent harvesting. SAELens gets the same allocator tuning (the script runs inside one
   ``utils.lm.cpu_allocator.keep_freed_memory`` block). Target: >= 3x SAELens.
3. Part 2b's training cell (``--part2b-tokens``), each run in a fresh process: "before" is the cell as the
   issue found it (dense float32 step, batch 1,024, glibc's allocator untouched, TransformerLens's own
   attention), "now" is the cell as it is (the default step and precision, batch 2,048, freed memory kept by
   ``utils.lm.cpu_allocator``, attention fused by ``utils.lm.fused_attention``), and
   "now, float32" the same in float32; the same SAE (1024 latents) and store (2^16 activations, 64
   sequences per model call); how many more tokens the same time budget buys. Target: >= 3x.
4. (``--quality-tokens N``) float32 against bfloat16 encoder products on Part 2b's SAE: the same SAE and
   tokens per seed, explained variance, CE loss recovered and dead fraction on held-out text.

On a shared machine, ``--threads 1 --cpu-time`` times by this process's CPU time instead of the wall clock.

Uses the bundled ``gelu-1l-mini`` and corpus when present, else an untrained model of the same shape
on random tokens (the speed does not depend on the weights).

The figures measured so far, with the machine and its load, are in ``tests/benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.common import bundled_or_untrained_model, interleaved, median_ratio
from utils.lm.cpu_allocator import allocator_status, keep_freed_memory
from utils.paths import data_dir
from utils.sae import activation_buffer
from utils.sae.activation_buffer import ActivationBuffer
from utils.sae.model import SAE, SAEConfig, grouped_topk
from utils.sae.sparse_topk import sparse_topk_training_step
from utils.sae.steps import Workspace, choose_bf16, sae_training_step
from utils.sae.training import train_sae

HOOK = "blocks.0.mlp.hook_post"
D_IN, K, SEQ_LEN = 512, 32, 128
D_SAE, BATCH = 4096, 4096  # the bundled SAEs' configuration
PART2B = dict(
    d_sae=1024, batch=2048, buffer_tokens=2**16, model_batch_size=64
)  # Part 2b on a CPU (batch: now; 1,024 before)
STORE_PROMPTS, STORE_BATCHES = 32, 20  # SAELens's activation store: 20 batches of 32 prompts (its defaults)
CLOCK = time.perf_counter  # time.process_time with --cpu-time: see ``interleaved``


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


# ---------------------------------------------------------------------------------------------------
# 1. The training steps against plain matmuls


def bench_steps(d_sae: int, batch: int, rounds: int, clock: Callable[[], float] = time.perf_counter) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, D_IN).relu_()
    f = torch.randn(batch, d_sae).relu_()
    g_out, g_f = torch.randn(batch, D_IN), torch.randn(batch, d_sae)
    W_enc, W_dec = torch.randn(D_IN, d_sae), torch.randn(d_sae, D_IN)
    out_f = torch.empty(batch, d_sae)

    def five_matmuls() -> None:  # the dense step's five products, same shapes and layouts, nothing else
        torch.mm(x, W_enc, out=out_f)
        torch.mm(f, W_dec)
        torch.mm(f.T, g_out)
        torch.mm(g_out, W_dec.T, out=out_f)
        torch.mm(x.T, g_f)

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=d_sae, architecture="topk", k=K))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)
    workspace = Workspace()

    def step(step_fn, dtype=None) -> Callable[[], None]:
        def run() -> None:  # exactly what train_sae does per step
            step_fn(sae, x, compute_dtype=dtype, workspace=workspace, compute_l1=False)
            sae.remove_gradient_parallel_to_decoder()
            optimizer.step()
            sae.normalize_decoder()
            optimizer.zero_grad(set_to_none=True)

        return run

    times = interleaved(
        {
            "matmuls": five_matmuls,
            "dense fp32": step(sae_training_step),
            "sparse fp32": step(sparse_topk_training_step),
            "sparse bf16": step(sparse_topk_training_step, torch.bfloat16),
            "dense bf16": step(sae_training_step, torch.bfloat16),
        },
        rounds,
        clock,
    )
    flops = 5 * 2 * batch * D_IN * d_sae
    t_mm = statistics.median(times["matmuls"])
    what = "CPU time" if clock is time.process_time else "wall-clock time"
    print(
        f"\n1. Training step, TopK k={K}, {D_IN} -> {d_sae} latents, batch {batch}, {torch.get_num_threads()} "
        f"thread(s), {what}, median of {rounds} interleaved rounds; {load()}"
    )
    print(
        f"   plain matmuls (the dense step's 5 products, {flops / 1e9:.1f} GFLOP): {t_mm * 1e3:7.1f} ms "
        f"= {flops / t_mm / 1e9:.0f} GFLOP/s"
    )
    for name in ("dense fp32", "sparse fp32", "sparse bf16", "dense bf16"):
        t = statistics.median(times[name])
        print(
            f"   {name + ' step':17s} {t * 1e3:7.1f} ms = {batch / t:9,.0f} tokens/s; {flops / t / 1e9:5.0f} "
            f"dense-equivalent GFLOP/s = {median_ratio(times['matmuls'], times[name]):5.0%} of matmul throughput; "
            f"{median_ratio(times['dense fp32'], times[name]):.2f}x dense fp32"
        )
    chosen = "sparse bf16" if choose_bf16(sae, sparse_topk_training_step, batch) else "sparse fp32"
    print(
        f"   target: the sparse step >= 2.5x dense fp32 -> {median_ratio(times['dense fp32'], times[chosen]):.2f}x in "
        f"{chosen[7:]}, the precision train_sae chooses here "
        f"(fp32 {median_ratio(times['dense fp32'], times['sparse fp32']):.2f}x, "
        f"bf16 {median_ratio(times['dense fp32'], times['sparse bf16']):.2f}x)"
    )


# ---------------------------------------------------------------------------------------------------
# 2. End to end, against SAELens


def load_model_and_tokens(n_rows: int):
    """The bundled model and corpus rows if present; else an untrained model and random tokens."""
    with contextlib.redirect_stdout(io.StringIO()):  # the loader's "Loaded gelu-1l-mini" line
        model, which = bundled_or_untrained_model()
    source = f"{which} gelu-1l-mini"
    corpus = data_dir() / "corpus" / "train.parquet"
    if corpus.exists() and model.tokenizer is not None:
        import pyarrow.parquet as pq

        from utils.lm.activations import tokenize_texts

        texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()
        tokens = tokenize_texts(texts, model.tokenizer, seq_len=SEQ_LEN, max_seqs=n_rows)
        source += f" on the bundled corpus ({len(tokens):,} rows, cycled)"
    else:
        tokens = torch.randint(1, model.cfg.d_vocab, (n_rows, SEQ_LEN), generator=torch.Generator().manual_seed(0))
        tokens[:, 0] = 0
        source += " on random tokens"
    return model, tokens, source


def bench_ours(
    model,
    tokens: torch.Tensor,
    n_tokens: int,
    step_fn: str = "auto",
    bf16: bool | None = None,
    d_sae: int = D_SAE,
    batch: int = BATCH,
    buffer_tokens: int | None = None,
    model_batch_size: int = STORE_PROMPTS,
    seconds: float | None = None,
    log_every: int = 10**9,
) -> tuple[float, float, int, bool, float]:
    """(tokens per second, share of the time spent harvesting, tokens trained, whether it ran in bfloat16, tokens
    per second of the loop alone) for one run of ``train_sae``; the first rate counts the set-up (the SAE, the
    buffer's first fill), the last one only ``train_sae``'s loop, as a seconds budget does. ``bf16=None`` lets
    it choose (``utils.sae.steps.choose_bf16``), as by default."""
    torch.manual_seed(0)
    t0, wall0 = CLOCK(), time.perf_counter()
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=d_sae, architecture="topk", k=K))
    buffer = ActivationBuffer(
        model,
        tokens,
        hook_name=HOOK,
        batch_size=batch,
        seq_len=SEQ_LEN,
        buffer_tokens=buffer_tokens or STORE_PROMPTS * STORE_BATCHES * (SEQ_LEN - 1),
        model_batch_size=model_batch_size,
    )
    budget = dict(seconds=seconds) if seconds is not None else dict(n_tokens=n_tokens)
    served = 0

    def batches():
        nonlocal served
        for x in buffer:
            served += 1
            yield x

    history = train_sae(sae, batches(), **budget, step_fn=step_fn, bf16=bf16, progress=False, log_every=log_every)
    elapsed, wall = CLOCK() - t0, time.perf_counter() - wall0
    trained = served * batch  # the loop reads one batch per step
    loop_rate = history[-1]["tokens"] / history[-1]["elapsed_s"]
    return trained / elapsed, buffer.harvest_seconds / wall, trained, bool(history[-1]["bf16"]), loop_rate


def bench_saelens(model, tokens: torch.Tensor, n_tokens: int) -> float:
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    dataset = datasets.Dataset.from_dict({"tokens": tokens.tolist()})
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype="float32", device="cpu"),
        model_name="gelu-1l-mini",
        hook_name=HOOK,
        dataset_path="",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=SEQ_LEN,
        training_tokens=n_tokens,
        train_batch_size_tokens=BATCH,
        store_batch_size_prompts=STORE_PROMPTS,
        # SAELens 6.5x sizes its mixing buffer as n_batches_in_buffer * context_size tokens (not times the
        # prompts per batch), so this gives it the same number of tokens as the course's buffer.
        n_batches_in_buffer=STORE_PROMPTS * STORE_BATCHES,
        device="cpu",
        dtype="float32",
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0,
        checkpoint_path=None,
        output_path=None,
        verbose=False,
    )
    t0 = CLOCK()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        runner = LanguageModelSAETrainingRunner(cfg, override_dataset=dataset, override_model=model)
        runner.run()
    return n_tokens / (CLOCK() - t0)


def bench_e2e(model, tokens, source: str, n_tokens: int) -> None:
    what = "per CPU-second" if CLOCK is time.process_time else "per second"
    print(
        f"\n2. End to end (harvest + train), TopK k={K}, {D_IN} -> {D_SAE}, batch {BATCH}, {n_tokens:,} tokens, "
        f"{source}, {torch.get_num_threads()} thread(s), tokens {what}; {load()}"
    )
    try:
        import sae_lens
    except ImportError:
        sae_lens = None
        print("   SAELens not installed: pip install sae-lens   (comparison skipped)")
    # Interleaved: ours, SAELens, ours dense, ours sparse float32, ours again; the ratio uses both default runs.
    ours_a, harvest_a, _, bf16, _ = bench_ours(model, tokens, n_tokens)
    theirs = bench_saelens(model, tokens, n_tokens) if sae_lens is not None else None
    dense, harvest_dense, _, _, _ = bench_ours(model, tokens, n_tokens, step_fn="fused", bf16=False)
    sparse32, harvest32, _, _, _ = bench_ours(model, tokens, n_tokens, bf16=False)
    ours_b, harvest_b, _, _, _ = bench_ours(model, tokens, n_tokens)
    ours, harvest = (ours_a + ours_b) / 2, (harvest_a + harvest_b) / 2
    precision = "bfloat16 encoder product" if bf16 else "float32"
    print(
        f"   course trainer, default (sparse step, {precision}, chosen by train_sae): {ours:8,.0f} tokens/s "
        f"(runs {ours_a:,.0f} and {ours_b:,.0f}); {harvest:.0%} of the time harvesting activations"
    )
    print(
        f"   course trainer, sparse step, float32:    {sparse32:8,.0f} tokens/s; {harvest32:.0%} harvesting; "
        f"the default is {ours / sparse32:.2f}x"
    )
    print(
        f"   course trainer, dense step, float32:     {dense:8,.0f} tokens/s; {harvest_dense:.0%} harvesting; "
        f"the default is {ours / dense:.2f}x"
    )
    if theirs is not None:
        print(f"   SAELens {sae_lens.__version__} trainer (TopK, float32): {theirs:8,.0f} tokens/s")
        print(
            f"   ratio course (default) / SAELens:         {ours / theirs:8.2f}x (target >= 3x); "
            f"sparse float32 / SAELens {sparse32 / theirs:.2f}x, dense / SAELens {dense / theirs:.2f}x"
        )


# Part 2b's training cell, as the issue found it and as it is now (the store is the same as the learner's:
# 2^16 activations, 64 sequences per model call). "before" also leaves glibc's allocator untuned, so it runs
# in a process of its own (after tuning, glibc's defaults come back but not its dynamic threshold).
PART2B_RUNS = {
    "before": dict(
        step_fn="fused",
        bf16=False,
        batch=1024,
        env={"SAE_COURSE_KEEP_FREED_MEMORY": "0", "SAE_COURSE_EAGER_ATTENTION": "1"},
    ),
    "now": dict(step_fn="auto", bf16=None, batch=PART2B["batch"], env={}),
    "now, float32": dict(step_fn="auto", bf16=False, batch=PART2B["batch"], env={}),
}


@torch.no_grad()
def notebook_harvest(model, tokens: torch.Tensor, hook_name: str = HOOK) -> torch.Tensor:
    """How Part 2b's store harvests (exercise 2.6's solution): ``run_with_cache`` to the end of block 0. On the
    model ``load_model`` gives, attention runs fused (``utils.lm.fused_attention``) unless
    ``SAE_COURSE_EAGER_ATTENTION=1``, as in "before"; the library's ``mlp_post_activations`` also stops at the
    hook itself, which the notebook's store does not."""
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook_name, stop_at_layer=1)
    return cache[hook_name]


def part2b_run(name: str, seconds: float, threads: int | None) -> dict:
    """One run of ``PART2B_RUNS[name]`` in a fresh process (``--part2b-run``), as a dict."""
    import json
    import subprocess

    settings = PART2B_RUNS[name]
    command = [sys.executable, __file__, "--part2b-run", name, "--part2b-seconds", str(seconds)]
    command += ["--threads", str(threads)] if threads else []
    done = subprocess.run(command, env=os.environ | settings["env"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the Part 2b run {name!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part2b_child(name: str, seconds: float) -> None:
    """``--part2b-run NAME``: one Part 2b run with a budget in seconds, as the notebook's, printed as one JSON line."""
    import json

    settings = PART2B_RUNS[name]
    activation_buffer.hook_activations = notebook_harvest  # the buffer harvests through this name, as the store does
    model, tokens, _ = load_model_and_tokens(120_000)  # as many rows as the notebook: no data cycled
    _, harvest, trained, bf16, rate = bench_ours(
        model,
        tokens,
        0,
        step_fn=settings["step_fn"],
        bf16=settings["bf16"],
        d_sae=PART2B["d_sae"],
        batch=settings["batch"],
        buffer_tokens=PART2B["buffer_tokens"],
        model_batch_size=PART2B["model_batch_size"],
        seconds=seconds,
        log_every=10,
    )  # the notebook logs every 10 steps
    print(json.dumps(dict(rate=rate, harvest=harvest, trained=trained, bf16=bf16, allocator=allocator_status())))


def bench_part2b(model, tokens, seconds: float, pairs: int, threads: int | None) -> None:
    print(
        f"\n3. Part 2b's training cell on a CPU: TopK k={K}, {D_IN} -> {PART2B['d_sae']}, store "
        f"{PART2B['buffer_tokens']:,}, a budget of {seconds:g} s per run (the loop's own clock, as the notebook's "
        f"budget: the store's first fill is not in it), each run in a fresh process, the configurations alternated "
        f"{pairs}x; {load()}"
    )
    runs: dict[str, list[dict]] = {name: [] for name in PART2B_RUNS}
    for _ in range(pairs):
        for name in PART2B_RUNS:
            runs[name].append(part2b_run(name, seconds, threads))
    for name, settings in PART2B_RUNS.items():
        rate = statistics.median(r["rate"] for r in runs[name])
        harvest = statistics.median(r["harvest"] for r in runs[name])
        step = "dense" if settings["step_fn"] == "fused" else "sparse"
        precision = "bfloat16 encoder" if runs[name][0]["bf16"] else "float32"
        allocator = "untuned" if runs[name][0]["allocator"].startswith("left alone") else "tuned"
        print(
            f"   {name:13s} ({step} step, {precision}, batch {settings['batch']}, allocator {allocator}): "
            f"{rate:9,.0f} tokens per second (median), {harvest:.0%} of the wall-clock time harvesting"
        )
    gain = statistics.median(n["rate"] / b["rate"] for n, b in zip(runs["now"], runs["before"]))
    print(
        f"   a fixed budget trains on {gain:.2f}x the tokens it did before (median of the alternated runs; "
        f"target >= 3x)"
    )
    part2b_floor(
        model,
        tokens,
        1024 / statistics.median(r["rate"] for r in runs["before"]),
        bf16=runs["now"][0]["bf16"],
        batch=PART2B["batch"],
    )


def part2b_floor(model, tokens, before_s_per_1024: float, bf16: bool, batch: int, rounds: int = 7) -> None:
    """The three costs no TopK step can skip, per 1,024 tokens, in the configuration "now", against the budget."""
    rows = tokens[: PART2B["model_batch_size"]]
    per_call = len(rows) * (rows.shape[1] - 1)  # tokens one harvest call yields (BOS dropped)
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = torch.randn(batch, D_IN).relu_()
    W_enc, b_enc = torch.randn(D_IN, PART2B["d_sae"]) / 20, torch.zeros(PART2B["d_sae"])
    pre = torch.addmm(b_enc.to(dtype), x.to(dtype), W_enc.to(dtype))

    @torch.no_grad()
    def harvest() -> None:  # exercise 2.6's harvest: the forward pass through block 0, through TransformerLens
        notebook_harvest(model, rows, HOOK)

    times = interleaved(
        {
            "harvest": harvest,
            "encoder": lambda: torch.addmm(b_enc.to(dtype), x.to(dtype), W_enc.to(dtype)),
            "top-k": lambda: grouped_topk(pre, K),  # the sparse step's top-k
            "torch.topk": lambda: pre.topk(K, dim=-1, sorted=False),
        },
        rounds,
        CLOCK,
    )
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ms["harvest"] *= 1024 / per_call
    for name in ("encoder", "top-k", "torch.topk"):
        ms[name] *= 1024 / batch
    floor = ms["harvest"] + ms["encoder"] + ms["top-k"]
    print(
        f'   per 1,024 tokens "before" took {before_s_per_1024 * 1e3:.1f} ms, so 3x allows '
        f"{before_s_per_1024 * 1e3 / 3:.1f} ms for everything;\n   the three costs every TopK step pays take "
        f'{floor:.1f} ms in "now": harvest {ms["harvest"]:.1f} ms, encoder product '
        f"({'bfloat16' if bf16 else 'float32'}) {ms['encoder']:.1f} ms, top-k {ms['top-k']:.1f} ms "
        f"(utils.sae.model.grouped_topk; torch.topk takes {ms['torch.topk']:.1f} ms) (median of "
        f"{rounds} interleaved rounds),\n   so with everything else free the gain would be at most "
        f"{before_s_per_1024 * 1e3 / floor:.2f}x on this machine"
    )


def bench_quality(model, tokens, n_tokens: int, seeds: list[int]) -> None:
    """float32 against bfloat16 encoder products: the same SAE, the same tokens, evaluated on held-out text."""
    from utils.lm.activations import tokenize_texts
    from utils.lm.loading import load_text_dataset
    from utils.sae.metrics import evaluate_sae

    held_out = tokenize_texts(
        load_text_dataset(model, split="validation")["text"], model.tokenizer, seq_len=SEQ_LEN, max_seqs=64
    )
    print(
        f"\n4. Quality, float32 against bfloat16 encoder products (sparse step, float32 weights and Adam): Part 2b's "
        f"SAE ({PART2B['d_sae']} latents, batch {PART2B['batch']}) trained on {n_tokens:,} tokens per run, evaluated "
        "on "
        f"{len(held_out)} held-out sequences; {load()}"
    )
    print("   seed  dtype     EV     CE rec. (zero)  CE rec. (mean)  dead (no firing on held-out)")
    results: dict[tuple[int, str], dict] = {}
    for seed in seeds:
        for name, bf16 in (("fp32", False), ("bf16", True)):
            torch.manual_seed(seed)
            sae = SAE(SAEConfig(d_in=D_IN, d_sae=PART2B["d_sae"], architecture="topk", k=K, seed=seed))
            buffer = ActivationBuffer(
                model,
                tokens,
                hook_name=HOOK,
                batch_size=PART2B["batch"],
                seq_len=SEQ_LEN,
                buffer_tokens=PART2B["buffer_tokens"],
                model_batch_size=PART2B["model_batch_size"],
                seed=seed,
            )
            train_sae(sae, buffer, n_tokens=n_tokens, bf16=bf16, progress=False, log_every=10**9)
            r = results[seed, name] = evaluate_sae(model, sae, held_out)
            r["dead"] = float((r["density"] == 0).float().mean())
            print(
                f"   {seed:4d}  {name}  {r['explained_variance']:.4f}  {r['ce_loss_recovered_zero']:14.2%}  "
                f"{r['ce_loss_recovered_mean']:14.2%}  {r['dead']:.2%}"
            )
    for key in ("explained_variance", "ce_loss_recovered_zero", "ce_loss_recovered_mean", "dead"):
        dtype_gap = statistics.mean(results[s, "bf16"][key] - results[s, "fp32"][key] for s in seeds)
        seed_gap = (
            max(results[s, "fp32"][key] for s in seeds) - min(results[s, "fp32"][key] for s in seeds)
            if len(seeds) > 1
            else float("nan")
        )
        print(f"   {key:24s} bf16 - fp32 (mean over seeds) {dtype_gap:+.4f}; spread over fp32 seeds {seed_gap:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the step timings")
    ap.add_argument("--tokens", type=int, default=200_000, help="tokens for the end-to-end comparison")
    ap.add_argument("--part2b-seconds", type=float, default=20.0, help="seconds per Part 2b run (0 skips)")
    ap.add_argument("--part2b-pairs", type=int, default=2)
    ap.add_argument("--skip-e2e", action="store_true", help="only the step timings")
    ap.add_argument("--skip-steps", action="store_true", help="only the end-to-end runs")
    ap.add_argument("--only-part2b", action="store_true", help="only section 3 (Part 2b's cell, before and now)")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the steps by this process's CPU time (steadier on a shared machine; use with --threads 1)",
    )
    ap.add_argument("--quality-tokens", type=int, default=0, help="tokens per float32/bfloat16 quality run (0 skips)")
    ap.add_argument("--quality-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--skip-speed", action="store_true", help="skip sections 2 and 3 (e.g. only --quality-tokens)")
    ap.add_argument("--part2b-run", choices=sorted(PART2B_RUNS), help=argparse.SUPPRESS)  # section 3's child runs
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.part2b_run:
        part2b_child(args.part2b_run, args.part2b_seconds)
        return
    # What train_sae does on a CPU, here for the whole script: section 1's steps and SAELens run with it too
    with keep_freed_memory():
        run_sections(args)


def run_sections(args: argparse.Namespace) -> None:
    """Sections 1 to 4, as the command line asks."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {load()}; allocator {allocator_status()}")
    if not (args.skip_steps or args.only_part2b):
        bench_steps(D_SAE, BATCH, args.rounds, CLOCK)
        bench_steps(PART2B["d_sae"], PART2B["batch"], args.rounds * 3, CLOCK)
    if args.skip_e2e:
        return
    n_rows = args.tokens // (SEQ_LEN - 1) + STORE_PROMPTS * STORE_BATCHES * 2  # one pass plus the buffer
    model, tokens, source = load_model_and_tokens(max(n_rows, 24_000))
    if not args.skip_speed:
        if not args.only_part2b:
            bench_e2e(model, tokens, source, args.tokens)
        if args.part2b_seconds:
            bench_part2b(model, tokens, args.part2b_seconds, args.part2b_pairs, args.threads)
    if args.quality_tokens:
        bench_quality(model, tokens, args.quality_tokens, args.quality_seeds)
    print(f"\nfinished; {load()}")


if __name__ == "__main__":
    main()
