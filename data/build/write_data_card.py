"""Write the data card ``data/README.md`` from its template and the measured numbers.

    python data/build/write_data_card.py

The template is ``data/build/data_card.md``; each ``UPPER_CASE`` placeholder in it is replaced by a
number read from the files the other build scripts wrote: ``corpus/stats.json`` (corpus_stats.py),
``models/gelu-1l-mini/training.json`` (train_model.py), ``models/gelu-1l-mini/baselines.json``
(baselines.py) and each SAE run's ``metrics.json`` (train_sae.py). So the card never states a number
that was not measured, and rebuilding the data rewrites it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# data/build/ is on sys.path when one of its scripts runs, so its modules import each other by name.
from make_corpus import category

from utils.paths import data_dir

HERE = Path(__file__).resolve().parent


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def sources_table(stats: dict) -> str:
    total = stats["tokens"]["train"]["tokens"]
    order = {"en": 0, "other": 1, "python": 2}
    rows = sorted(
        stats["sources"].items(), key=lambda kv: (order[category(kv[1]["lang"])], -kv[1].get("train_tokens", 0))
    )
    lines = [
        "| Source | Package | Language | Licence | Train docs | Train tokens | Share |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | `{s['package']}` | {s['lang']} | {s['license']} | {s.get('train_docs', 0):,} | "
            f"{s.get('train_tokens', 0):,} | {pct(s.get('train_tokens', 0) / total)} |"
        )
    return "\n".join(lines)


def sae_table() -> str:
    """The measured metrics of every shipped SAE run (``data/saes/gelu-1l-mini/<run>/metrics.json``)."""
    sys.path.insert(0, str(HERE))
    from train_sae import OUT, markdown_table

    names = sorted(p.parent.name for p in OUT.glob("*/metrics.json"))
    return (
        markdown_table(OUT, names) if names else "(no SAE has been trained yet: run `python data/build/train_sae.py`)"
    )


def sae_minutes() -> str:
    """Wall time of the slowest shipped run, training plus evaluation, in minutes."""
    sys.path.insert(0, str(HERE))
    from train_sae import OUT

    times = []
    for file in OUT.glob("*/metrics.json"):
        m = json.loads(file.read_text())
        times.append((m.get("training") or {}).get("wall_s", 0) + m["evaluation"].get("eval_s", 0))
    return f"{max(times) / 60:.0f}" if times else "?"


def dead_latents() -> dict[str, str]:
    """Part 3's runs (``data/dead_latents/runs.json``, dead_latent_runs.py): a summary table, its build, its time."""
    path = data_dir() / "dead_latents" / "runs.json"
    if not path.exists():
        return {
            "DEAD_LATENTS_TABLE": "(not built yet: run `python data/build/dead_latent_runs.py`)",
            "DEAD_LATENT_BUILD": "not built",
            "DEAD_LATENT_MINUTES": "?",
        }
    runs = json.loads(path.read_text())
    rows = [
        "| section | variant | seeds | dead | explained variance | features recovered / CE loss recovered |",
        "|---|---|---:|---|---|---|",
    ]
    for section, by, other in (
        ("toy", "method", "recovered"),
        ("gelu", "method", "ce_loss_recovered"),
        ("beyond", "name", "ce_loss_recovered"),
    ):
        groups: dict[str, list[dict]] = {}
        for run in runs[section]["runs"]:
            groups.setdefault(run[by], []).append(run)
        for name, group in groups.items():

            def stat(key: str, fmt: str, group: list[dict] = group) -> str:
                values = [float(r[key]) for r in group]
                mean = sum(values) / len(values)
                sd = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
                return f"{mean:{fmt}} ± {sd:{fmt}}"

            rows.append(
                f"| {section} | {name} | {len(group)} | {stat('dead', '.1%')} | "
                f"{stat('explained_variance', '.3f')} | {stat(other, '.1f' if other == 'recovered' else '.3f')} |"
            )
    meta = runs["meta"]
    return {
        "DEAD_LATENTS_TABLE": "\n".join(rows),
        "DEAD_LATENT_MINUTES": f"{meta['wall_s'] / 60:.0f}",
        "DEAD_LATENT_BUILD": f"built with torch {meta['torch']} on {meta['threads']} threads",
    }


def replacements() -> dict[str, str]:
    root = data_dir()
    stats = json.loads((root / "corpus" / "stats.json").read_text())
    model_dir = root / "models" / "gelu-1l-mini"
    training = json.loads((model_dir / "training.json").read_text())
    baselines = json.loads((model_dir / "baselines.json").read_text())
    train, val = stats["tokens"]["train"], stats["tokens"]["validation"]
    n_params = sum(t.numel() for t in load_file(model_dir / "model.safetensors").values())
    total = lambda key: sum(s.get(key, 0) for s in stats["sources"].values())  # noqa: E731
    val_mix = ", ".join(
        f"{ {'en': 'English', 'other': 'other languages', 'python': 'Python'}[k] } {pct(d['share'])}"
        for k, d in val["by_category"].items()
    )
    details = (
        f"**{training['tokens_seen']:,} training tokens** ({training['steps']:,} steps, {training['epochs']} epochs "
        f"of the {training['train_split_tokens']:,}-token packed train split) in **{training['wall_s'] / 60:.0f} "
        f"minutes** of training time on {training['threads']} CPU threads (a shared 2-core x86-64 VM, no GPU; "
        f"torch {training['torch']}), **{training['tokens_per_s']:,} tokens/s** on average."
    )
    return (
        dict(
            TRAIN_DOCS=f"{train['docs']:,}",
            TRAIN_CHARS=f"{train['chars']:,}",
            TRAIN_TOKENS=f"{train['tokens']:,}",
            VAL_DOCS=f"{val['docs']:,}",
            VAL_CHARS=f"{val['chars']:,}",
            VAL_TOKENS=f"{val['tokens']:,}",
            EN_SHARE=pct(train["by_category"]["en"]["share"]),
            OTHER_SHARE=pct(train["by_category"]["other"]["share"]),
            PY_SHARE=pct(train["by_category"]["python"]["share"]),
            LANG_SHARES=", ".join(
                f"{k} {pct(d['share'])}" for k, d in train["by_lang"].items() if k not in ("en", "python")
            ),
            SOURCES_TABLE=sources_table(stats),
            DROPPED_EN=f"{total('dropped_english'):,}",
            DROPPED_PARA=f"{total('dropped_paragraphs'):,}",
            DROPPED_DOCS=f"{total('dropped_dup_docs'):,}",
            VAL_MIX=val_mix,
            CHARS_PER_TOKEN=f"{train['chars_per_token']:.2f}",
            N_PARAMS=f"{n_params / 1e6:.2f}M",
            TRAINING_DETAILS=details,
            VAL_TARGETS=f"{baselines['targets']:,}",
            UNIGRAM_CE=f"{baselines['unigram_add1_ce']:.3f}",
            BIGRAM_CE=f"{baselines['bigram_kneser_ney_ce']:.3f}",
            KN_D=f"{baselines['bigram_discount']:.2f}",
            MODEL_CE=f"{baselines['model_ce']:.3f}",
            SAE_TABLE=sae_table(),
            SAE_MINUTES=sae_minutes(),
        )
        | dead_latents()
    )


def main() -> None:
    text = (HERE / "data_card.md").read_text(encoding="utf-8")
    for key, value in sorted(replacements().items(), key=lambda kv: -len(kv[0])):  # TRAIN_DOCS before DOCS
        text = re.sub(rf"\b{key}\b", lambda _, value=value: value, text)
    left = sorted(
        set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text))
        - {"HF_HUB_OFFLINE", "SAE_COURSE_CACHE", "SAE_COURSE_ROOT"}
    )
    out = data_dir() / "README.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}" + (f"; placeholders left: {left}" if left else ""))


if __name__ == "__main__":
    main()
