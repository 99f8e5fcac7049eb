"""How fast does the course's SAE trainer run on this machine? Prints ratios measured in one run.

    python tests/benchmarks/bench_sae.py                 # everything (about 2-3 minutes on 2 cores)
    python tests/benchmarks/bench_sae.py --skip-e2e      # only the training step against plain matmuls
    python tests/benchmarks/bench_sae.py --tokens 100000 --threads 1

1. The training step on the bundled configuration (512 -> 4096 features, batch 4096, float32): its
   time against plain matrix products of the same shapes and the same total FLOPs, timed in the same run.
   The step does five [4096 x 512 x 4096] products: encoder and decoder forward, the decoder's weight
   gradient, the gradient through the decoder, the encoder's weight gradient; each is 2*B*d_in*d_sae FLOPs,
   10*B*d_in*d_sae in all. (Autograd would do a sixth, the gradient through the encoder, whose only use is
   b_dec's gradient: ``utils.sae_training.sae_training_step`` sums over the batch first instead.) Target: >= 70%.
2. End-to-end SAE training from the live model (harvesting activations + training), tokens per second,
   against SAELens's trainer (``LanguageModelSAETrainingRunner``) on the same model object, hook, SAE
   size, batch size, activation-buffer size and number of tokens, on CPU, float32, wandb off. Target >= 1.0x.

Uses the bundled ``gelu-1l-mini`` and corpus when present, else an untrained model of the same shape
on random tokens (the speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.common import bundled_or_untrained_model, timed  # noqa: E402
from utils.paths import data_dir  # noqa: E402
from utils.sae import SAE, SAEConfig  # noqa: E402
from utils.sae_training import ActivationBuffer, _Workspace, sae_training_step, train_sae  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"
D_IN, D_SAE, BATCH, SEQ_LEN = 512, 4096, 4096, 128
STORE_PROMPTS, STORE_BATCHES = 32, 20  # SAELens's activation store: 20 batches of 32 prompts (its defaults)


# ---------------------------------------------------------------------------------------------------
# 1. The training step against plain matmuls


def bench_step(repeats: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, D_IN).relu_()
    f = torch.randn(BATCH, D_SAE).relu_()
    g_out, g_f = torch.randn(BATCH, D_IN), torch.randn(BATCH, D_SAE)
    W_enc, W_dec = torch.randn(D_IN, D_SAE), torch.randn(D_SAE, D_IN)
    out_f = torch.empty(BATCH, D_SAE)

    def five_matmuls() -> None:  # the step's five products, same shapes and layouts, nothing else
        torch.mm(x, W_enc, out=out_f)
        torch.mm(f, W_dec)
        torch.mm(f.T, g_out)
        torch.mm(g_out, W_dec.T, out=out_f)
        torch.mm(x.T, g_f)

    flops = 5 * 2 * BATCH * D_IN * D_SAE
    t_mm = timed(five_matmuls, repeats)

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=1.0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)
    workspace = _Workspace()

    def fused_step(dtype=None) -> None:  # exactly what train_sae does per step
        sae_training_step(sae, x, None, dtype, workspace, compute_l1=False)
        sae.remove_gradient_parallel_to_decoder()
        optimizer.step()
        sae.normalize_decoder()
        optimizer.zero_grad(set_to_none=True)

    def autograd_step() -> None:  # the readable path: sae.loss + backward
        loss = sae.loss(x)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_gradient_parallel_to_decoder()
        optimizer.step()
        sae.normalize_decoder()

    t_step = timed(fused_step, repeats)
    t_autograd = timed(autograd_step, max(2, repeats // 2))
    t_bf16 = timed(lambda: fused_step(torch.bfloat16), repeats)
    matmul_rate = flops / t_mm
    print(f"\n1. Training step, {D_IN} -> {D_SAE}, batch {BATCH}, float32, {torch.get_num_threads()} thread(s)")
    print(f"   plain matmuls (5 products, {flops / 1e9:.1f} GFLOP): {t_mm * 1e3:7.0f} ms  = {matmul_rate / 1e9:.0f} GFLOP/s")
    print(f"   fused training step (incl. Adam, decoder norm):   {t_step * 1e3:7.0f} ms  -> "
          f"{flops / t_step / 1e9:.0f} GFLOP/s = {t_mm / t_step:.0%} of matmul throughput (target >= 70%)")
    print(f"   autograd step (sae.loss + backward, 6 products):  {t_autograd * 1e3:7.0f} ms  -> "
          f"{1.2 * flops / t_autograd / 1e9:.0f} GFLOP/s counting its 6 products = {1.2 * t_mm / t_autograd:.0%}; "
          f"fused is {t_autograd / t_step:.2f}x faster")
    print(f"   fused step with bfloat16 matmuls:                 {t_bf16 * 1e3:7.0f} ms  ({t_step / t_bf16:.2f}x float32)")


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

        from utils.activations import tokenize_texts

        texts = pq.read_table(corpus, columns=["text"]).slice(0, 2000).column("text").to_pylist()
        tokens = tokenize_texts(texts, model.tokenizer, seq_len=SEQ_LEN, max_seqs=n_rows)
        source += " on the bundled corpus"
    else:
        tokens = torch.randint(1, model.cfg.d_vocab, (n_rows, SEQ_LEN), generator=torch.Generator().manual_seed(0))
        tokens[:, 0] = 0
        source += " on random tokens"
    return model, tokens, source


def bench_ours(model, tokens: torch.Tensor, n_tokens: int, bf16: bool = False) -> float:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=1.0))
    buffer = ActivationBuffer(model, tokens, hook_name=HOOK, batch_size=BATCH, seq_len=SEQ_LEN,
                              buffer_tokens=STORE_PROMPTS * STORE_BATCHES * (SEQ_LEN - 1), model_batch_size=STORE_PROMPTS)
    train_sae(sae, buffer, n_tokens, bf16=bf16, progress=False, log_every=10**9)
    return n_tokens / (time.perf_counter() - t0)


def bench_saelens(model, tokens: torch.Tensor, n_tokens: int) -> float:
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAEConfig

    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    dataset = datasets.Dataset.from_dict({"tokens": tokens.tolist()})
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=1.0, dtype="float32", device="cpu"),
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
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        runner = LanguageModelSAETrainingRunner(cfg, override_dataset=dataset, override_model=model)
        runner.run()
    return n_tokens / (time.perf_counter() - t0)


def bench_e2e(n_tokens: int) -> None:
    n_rows = n_tokens // (SEQ_LEN - 1) + STORE_PROMPTS * STORE_BATCHES * 2  # enough text for one pass plus the buffer
    model, tokens, source = load_model_and_tokens(n_rows)
    print(f"\n2. End to end (harvest + train), {n_tokens:,} tokens, {source}, float32, "
          f"{torch.get_num_threads()} thread(s)")
    ours = bench_ours(model, tokens, n_tokens)
    print(f"   course trainer (utils.sae_training):  {ours:8,.0f} tokens/s")
    try:
        import sae_lens
    except ImportError:
        print("   SAELens not installed: pip install sae-lens   (comparison skipped)")
        theirs = None
    else:
        theirs = bench_saelens(model, tokens, n_tokens)
        print(f"   SAELens {sae_lens.__version__} trainer:          {theirs:8,.0f} tokens/s")
        print(f"   ratio course / SAELens:               {ours / theirs:8.2f}x (target >= 1.0x)")
    ours_bf16 = bench_ours(model, tokens, n_tokens, bf16=True)
    print(f"   course trainer, bfloat16 matmuls:     {ours_bf16:8,.0f} tokens/s ({ours_bf16 / ours:.2f}x float32)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200_000, help="tokens for the end-to-end comparison")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_step(args.repeats)
    if not args.skip_e2e:
        bench_e2e(args.tokens)


if __name__ == "__main__":
    main()
