"""Train the byte-level BPE tokenizer of ``gelu-1l-mini`` on the corpus's train split.

    python data/build/train_tokenizer.py [--vocab-size 8192]

Like gelu-1l's tokenizer (``NeelNanda/gpt-neox-tokenizer-digits``) it splits numbers into single
digits, and ``<|endoftext|>`` (id 0) is its BOS, EOS and padding token. The result is saved as a
``transformers.PreTrainedTokenizerFast`` in ``data/models/gelu-1l-mini/``, so that
``AutoTokenizer.from_pretrained(folder)`` loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.paths import data_dir

BOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Byte-level BPE with single-digit pre-splitting; ``<|endoftext|>`` is token 0 and BOS/EOS/PAD."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    assert tok.token_to_id(BOS) == 0
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        pad_token=BOS,
        unk_token=None,
        clean_up_tokenization_spaces=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--out", type=Path, default=data_dir() / "models" / "gelu-1l-mini")
    args = ap.parse_args()
    texts = pq.read_table(data_dir() / "corpus" / "train.parquet", columns=["text"]).column("text").to_pylist()
    tokenizer = train_tokenizer(texts, args.vocab_size)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    # transformers 5 writes its new class name "TokenizersBackend", which transformers 4 cannot load;
    # "PreTrainedTokenizerFast" loads the same tokenizer.json in both.
    config_path = args.out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    sample = "def f(x):\n    return x + 2024  # Größe, 日本語, ls -la /usr/bin"
    print(f"vocab size {len(tokenizer)}; saved to {args.out}")
    print(tokenizer.convert_ids_to_tokens(tokenizer(sample)["input_ids"]))


if __name__ == "__main__":
    main()
