"""Count tokens per source, language and category with the course tokenizer (for the data card).

    python data/build/corpus_stats.py

Reads ``data/corpus/{train,validation}.parquet`` and ``data/corpus/sources.parquet`` (which row came
from which source), and adds the token counts to ``data/corpus/stats.json``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# data/build/ is on sys.path when one of its scripts runs, so its modules import each other by name.
from make_corpus import category

from utils.paths import data_dir


def main() -> None:
    corpus = data_dir() / "corpus"
    tok = AutoTokenizer.from_pretrained(data_dir() / "models" / "gelu-1l-mini")
    labels = pq.read_table(corpus / "sources.parquet").to_pandas()
    stats = json.loads((corpus / "stats.json").read_text())
    summary = {}
    for split in ("train", "validation"):
        texts = pq.read_table(corpus / f"{split}.parquet", columns=["text"]).column("text").to_pylist()
        lab = labels[labels.split == split].sort_values("row")
        assert len(lab) == len(texts)
        n_tokens = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        by_source, by_lang, by_cat = Counter(), Counter(), Counter()
        for n, src, lang in zip(n_tokens, lab.source, lab.lang):
            by_source[src] += n
            by_lang[lang] += n
            by_cat[category(lang)] += n
        total = sum(n_tokens)
        for src, n in by_source.items():
            stats["sources"][src][f"{split}_tokens"] = n
        summary[split] = dict(
            tokens=total,
            docs=len(texts),
            chars=sum(map(len, texts)),
            chars_per_token=round(sum(map(len, texts)) / total, 3),
            by_category={k: dict(tokens=v, share=round(v / total, 4)) for k, v in by_cat.most_common()},
            by_lang={k: dict(tokens=v, share=round(v / total, 4)) for k, v in by_lang.most_common()},
        )
    stats["tokens"] = summary
    (corpus / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({s: {k: v for k, v in d.items() if k != "by_lang"} for s, d in summary.items()}, indent=1))
    print("languages (train):", {k: v["share"] for k, v in summary["train"]["by_lang"].items()})


if __name__ == "__main__":
    main()
