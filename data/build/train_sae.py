"""Train the pretrained SAEs shipped for ``gelu-1l-mini`` and save them to ``data/saes/gelu-1l-mini/<run>/``.

    python data/build/train_sae.py                        # both runs, side by side (1 thread each), then evaluate
    python data/build/train_sae.py --runs topk_4096_seed1 # one run (restart a failed one; resumes its checkpoint)
    python data/build/train_sae.py --eval-only            # re-evaluate the saved runs, rewrite metrics.json
    python data/build/train_sae.py --tokens 2e6 --out /tmp/saes   # a quick trial run elsewhere

Each run: a 4096-feature TopK SAE (k = 32) on ``blocks.0.mlp.hook_post`` (d_in 512), trained with
``utils.sae.training.train_sae`` on the training split of the bundled corpus, evaluated with
``utils.sae.metrics.evaluate_sae`` on the whole validation split. A run folder holds SAELens's files
(``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``: log10 feature densities on the
validation split), ``metrics.json`` (the evaluation, the training settings, wall time) and
``history.json`` (the logged training curve). Checkpoints, logs and tokenized text live in
``$SAE_COURSE_CACHE`` (default ``~/.cache/sae-course``); a run that is killed resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.paths import data_dir
from utils.sae.activation_buffer import ActivationBuffer
from utils.sae.metrics import evaluate_sae, log_latent_sparsity
from utils.sae.model import SAE, SAEConfig
from utils.sae.training import TrainConfig, train_sae

CACHE = Path(os.environ.get("SAE_COURSE_CACHE", Path.home() / ".cache" / "sae-course"))
OUT = data_dir() / "saes" / "gelu-1l-mini"
HOOK = "blocks.0.mlp.hook_post"
SEQ_LEN = 128


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a shipped run (the SAE's own config is built from it)."""

    seed: int
    d_sae: int = 4096
    k: int | None = 32  # TopK (Gao et al., 2024) with this k; None: ReLU + L1 with l1_coefficient
    l1_coefficient: float = 1.0
    n_tokens: int = 10_000_000
    lr: float = 1e-3
    batch_size: int = 4096
    buffer_tokens: int = 2**18
    lr_warmup_frac: float = 0.01
    lr_decay_frac: float = 0.2
    l1_warmup_frac: float = 0.05
    bf16: bool = True  # matrix products of the training step in bfloat16 (parameters stay float32)


# TopK rather than ReLU + L1: in 200-step trials (0.8M tokens, same lr and data) k = 32 reached an explained
# variance of 0.80 at L0 = 32, while L1 reached 0.53 at L0 = 106 (coefficient 1.0), 0.25 at L0 = 20 (2.0) and
# 0.74 at L0 = 310 (0.5); with the ~10M tokens a CPU can afford, L1 could not reach the L0 range 10-60 with
# a usable reconstruction.
RUNS = {"topk_4096_seed0": RunConfig(seed=0), "topk_4096_seed1": RunConfig(seed=1)}


# ---------------------------------------------------------------------------------------------------
# Data and model


def load_model():
    """The bundled gelu-1l-mini (via ``utils.lm.loading``)."""
    from utils.lm.loading import load_model as load

    return load("gelu-1l-mini", device="cpu")


def token_rows(split: str, tokenizer) -> torch.Tensor:
    """The corpus split as rows of ``SEQ_LEN`` tokens (BOS first), cached per (corpus file, tokenizer)."""
    import pyarrow.parquet as pq

    from utils.lm.activations import tokenize_texts

    parquet = data_dir() / "corpus" / f"{split}.parquet"
    tokenizer_file = data_dir() / "models" / "gelu-1l-mini" / "tokenizer.json"
    key = hashlib.sha1(
        f"{parquet.stat().st_size}-{parquet.stat().st_mtime_ns}".encode() + tokenizer_file.read_bytes()
    ).hexdigest()[:12]
    path = CACHE / "tokens" / f"sae-{split}-{SEQ_LEN}-{key}.pt"
    if path.exists():
        return torch.load(path)
    t0 = time.time()
    texts = pq.read_table(parquet, columns=["text"]).column("text").to_pylist()
    rows = tokenize_texts(texts, tokenizer, seq_len=SEQ_LEN)
    print(f"tokenized {split}: {len(texts):,} documents -> {tuple(rows.shape)} in {time.time() - t0:.0f}s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rows, path)
    return rows


# ---------------------------------------------------------------------------------------------------
# One run


def sae_config(run: RunConfig) -> SAEConfig:
    architecture = "standard" if run.k is None else "topk"
    return SAEConfig(
        d_in=512,
        d_sae=run.d_sae,
        architecture=architecture,
        l1_coefficient=run.l1_coefficient,
        k=run.k,
        hook_name=HOOK,
        dtype="float32",
        seed=run.seed,
        model_name="gelu-1l-mini",
    )


def checkpoint_path(name: str, run: RunConfig, out: Path) -> Path:
    """Where a run's training state is kept: one file per (run, settings, output folder), so that a trial
    with other settings or another ``--out`` never resumes from the wrong run."""
    key = hashlib.sha1(json.dumps([name, dataclasses.asdict(run), str(out.resolve())]).encode()).hexdigest()[:10]
    return CACHE / "sae-checkpoints" / f"{name}-{key}.pt"


def train_run(
    name: str, run: RunConfig, model, train_rows: torch.Tensor, checkpoint: Path, progress: bool = True
) -> tuple[SAE, dict]:
    """Train one run (resuming its checkpoint if there is one); returns the SAE and a training summary."""
    torch.manual_seed(run.seed)
    sae = SAE(sae_config(run))
    start_seq = 0
    if checkpoint.exists():
        start_seq = torch.load(checkpoint, weights_only=False).get("seqs_consumed") or 0
        print(f"{name}: resuming from {checkpoint} (sequence {start_seq:,})", flush=True)
    buffer = ActivationBuffer(
        model,
        train_rows,
        hook_name=HOOK,
        buffer_tokens=run.buffer_tokens,
        batch_size=run.batch_size,
        seq_len=SEQ_LEN,
        seed=run.seed,
        start_seq=start_seq,
    )

    def log(record: dict) -> None:
        if record["step"] % 100 == 0:
            print(f"{name} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()), flush=True)

    t0 = time.time()
    cfg = TrainConfig(
        n_tokens=run.n_tokens,
        lr=run.lr,
        lr_warmup_frac=run.lr_warmup_frac,
        lr_decay_frac=run.lr_decay_frac,
        l1_warmup_frac=run.l1_warmup_frac,
        bf16=run.bf16,
        log_every=20,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=100,
    )
    history = train_sae(sae, buffer, cfg, callback=log)
    summary = dict(
        training_tokens=history[-1]["tokens"],
        training_steps=history[-1]["step"],
        wall_s=round(history[-1]["elapsed_s"]),
        wall_s_this_session=round(time.time() - t0),
        harvest_s_this_session=round(buffer.harvest_seconds),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    return sae, {"summary": summary, "history": history}


def evaluate_and_save(
    name: str, run: RunConfig | None, sae: SAE, model, val_rows: torch.Tensor, out: Path, training: dict | None = None
) -> dict:
    """Evaluate on the validation rows and write the run folder; returns metrics.json's contents."""
    t0 = time.time()
    metrics = evaluate_sae(model, sae, val_rows, batch_size=32, progress=False)
    density = metrics.pop("density")
    folder = out / name
    sae.save(folder, sparsity=log_latent_sparsity(density))
    old = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    report = {
        "run": name,
        "evaluation": {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
        | {"split": "validation", "sequences": len(val_rows), "seq_len": SEQ_LEN, "eval_s": round(time.time() - t0)},
        "training": (training or {}).get("summary", old.get("training")),
        "config": dataclasses.asdict(run) if run is not None else old.get("config"),
    }
    (folder / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    if training is not None:
        rounded = [{k: round(v, 6) if isinstance(v, float) else v for k, v in h.items()} for h in training["history"]]
        (folder / "history.json").write_text(json.dumps(rounded) + "\n")
    print(f"{name}: " + json.dumps(report["evaluation"]), flush=True)
    return report


# ---------------------------------------------------------------------------------------------------
# Command line


def markdown_table(out: Path, names: list[str]) -> str:
    """The data card's table of measured metrics."""
    rows = [
        "| run | alive | density < 1e-5 | L0 | CE recovered (zero / mean abl.) | explained variance | KL (nats) | "
        "CE clean → with SAE | training tokens | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        file = out / name / "metrics.json"
        if not file.exists():
            continue
        m = json.loads(file.read_text())
        e, t = m["evaluation"], m.get("training") or {}
        rows.append(
            f"| `{name}` | {e['frac_alive']:.1%} | {e['frac_density_below_1e-5']:.2%} | {e['l0']:.1f} | "
            f"{e['ce_loss_recovered_zero']:.1%} / {e['ce_loss_recovered_mean']:.1%} | {e['explained_variance']:.3f} | "
            f"{e['kl_divergence']:.3f} | {e['ce_clean']:.3f} → {e['ce_reconstructed']:.3f} | "
            f"{t.get('training_tokens', 0) / 1e6:.1f}M | {t.get('wall_s', 0) / 60:.0f} min |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {list(RUNS)}")
    ap.add_argument("--tokens", type=float, default=None, help="override the training tokens of every run")
    ap.add_argument("--l1", type=float, default=None, help="override the L1 coefficient")
    ap.add_argument("--lr", type=float, default=None, help="override the learning rate")
    ap.add_argument("--k", type=int, default=None, help="override k (0: ReLU + L1 instead of TopK)")
    ap.add_argument("--fp32", action="store_true", help="no bfloat16 matrix products")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 1 per run in parallel)")
    ap.add_argument("--sequential", action="store_true", help="train the runs one after the other in this process")
    ap.add_argument("--eval-only", action="store_true", help="re-evaluate saved runs")
    ap.add_argument("--force", action="store_true", help="retrain runs that are already saved (drops checkpoints)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where run folders go (default {OUT})")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"unknown runs {unknown}; known: {list(RUNS)}")
    runs = {}
    for name in names:
        overrides = {}
        if args.tokens is not None:
            overrides["n_tokens"] = int(args.tokens)
        if args.l1 is not None:
            overrides["l1_coefficient"] = args.l1
        if args.lr is not None:
            overrides["lr"] = args.lr
        if args.k is not None:
            overrides["k"] = args.k or None
        if args.fp32:
            overrides["bf16"] = False
        runs[name] = dataclasses.replace(RUNS[name], **overrides)

    todo = [n for n in names if args.eval_only or args.force or not (args.out / n / "metrics.json").exists()]
    for n in set(names) - set(todo):
        print(f"{n}: already saved in {args.out / n} (use --force to retrain)")

    # Several runs in parallel: one child process per run, one thread each, logs in the cache.
    if len(todo) > 1 and not args.sequential and not args.eval_only:
        procs = []
        for name in todo:
            log = CACHE / "logs" / f"train_sae_{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                __file__,
                "--runs",
                name,
                "--threads",
                str(args.threads or 1),
                "--out",
                str(args.out),
                "--no-progress",
            ] + (["--force"] if args.force else [])
            cmd += [
                f"--{k}={v}"
                for k, v in (("tokens", args.tokens), ("l1", args.l1), ("lr", args.lr), ("k", args.k))
                if v is not None
            ]
            cmd += ["--fp32"] if args.fp32 else []
            with open(log, "w") as out:  # the child keeps its own copy of the file descriptor
                procs.append((name, log, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)))
            print(f"{name}: started (pid {procs[-1][2].pid}), log {log}")
        failed = [name for name, log, p in procs if p.wait() != 0]
        print(markdown_table(args.out, names))
        if failed:
            sys.exit(f"runs failed: {failed}; see their logs in {CACHE / 'logs'}; rerun to resume them")
        return

    torch.set_num_threads(args.threads or 2)
    model = load_model()
    val_rows = token_rows("validation", model.tokenizer)
    train_rows = None if args.eval_only else token_rows("train", model.tokenizer)
    for name in todo:
        run = runs[name]
        if args.eval_only:
            evaluate_and_save(name, None, SAE.load(args.out / name), model, val_rows, args.out)
            continue
        checkpoint = checkpoint_path(name, run, args.out)
        if args.force and checkpoint.exists():
            checkpoint.unlink()
        sae, training = train_run(name, run, model, train_rows, checkpoint, progress=not args.no_progress)
        evaluate_and_save(name, run, sae, model, val_rows, args.out, training)
        checkpoint.unlink(missing_ok=True)  # the run folder now holds the result
    print(markdown_table(args.out, names))


if __name__ == "__main__":
    main()
