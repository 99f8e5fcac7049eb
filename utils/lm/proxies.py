"""Proxies: labels for every token of a token set, computed from the text alone.

A latent's name is a claim about where it fires ("CJK text", "a URL", "the token ` the`"). To test the claim,
write it as a rule that labels each token true or false **without the SAE** (Bricken et al., 2023, "Towards
Monosemanticity", check a feature against a script detector or a tokenizer for code), then compare the rule with
where the latent fires: its precision and recall. This module writes the rules; it knows nothing of SAEs, so the
same labels serve any SAE, any latent, and Part 6's specificity and sensitivity.

It works on a token set made by :func:`utils.lm.activations.tokenize_texts`, **in the order that function made
it**: the documents, each followed by EOS, concatenated into one stream and cut into rows, BOS put first in each
row. Labels are computed on that stream (so a character or a URL cut by a row's edge is still whole), then
returned as ``[n_rows, seq]``; select or shuffle rows afterwards (``labels[order]``). BOS and EOS are labelled
false (or -1) by every proxy: they are no text.

The proxies, on :class:`TokenSetText`:

- ``document_ids``: which document each token comes from (counting the EOS separators);
  ``by_document(values)`` spreads a per-document value (``sources.parquet``'s ``lang`` or ``source``) to its tokens;
- ``script(name)``: the token holds a byte of a character of that Unicode script (``SCRIPTS``);
- ``matches(pattern)``: the token holds a byte of a match of a regular expression over its document's text
  (URLs: ``URL_PATTERN``);
- ``token_matches(pattern)`` / ``token_is(string)``: the token's own text is (or matches) a string (a digit,
  ` the`, a newline with indentation);
- ``python_tokens(kinds)``: the token holds a byte of a Python comment, string, name... as Python's own
  ``tokenize`` reads its document.

**A character split across tokens belongs to every token that holds one of its bytes.** The tokenizer is
byte-level BPE: a Chinese character is 3 bytes, and a token can hold its first byte and the next token the other
two. The display convention of :mod:`utils.lm.token_text` shows such a character on the token where it starts and
the next token as ``""``; a proxy that read those display strings would call the second token "not CJK" although
it is two thirds of a CJK character, and would count every firing there as a false positive. Both tokens are
part of the CJK text, and the model reads both, so both are labelled CJK (``split="start"`` gives the display
convention, to measure what it would change).
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from utils.lm.token_text import token_bytes
from utils.paths import data_dir

__all__ = ["SCRIPTS", "URL_PATTERN", "TokenSetText", "code_point_scripts", "corpus_sources"]

#: Unicode scripts of the corpus's languages, as code-point ranges (from Unicode's Scripts.txt, the blocks the
#: corpus uses). "CJK" is Han, Hiragana, Katakana and Hangul, with the CJK punctuation (U+3000-303F) and fullwidth
#: forms (U+FF00-FFEF) whose Script_Extensions are those scripts: "。" or "，" occur only in CJK text. Characters of
#: no script (digits, ASCII punctuation, spaces: Unicode's "Common") belong to none.
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "Latin": (
        (0x41, 0x5A),
        (0x61, 0x7A),
        (0xAA, 0xAA),
        (0xBA, 0xBA),
        (0xC0, 0xD6),
        (0xD8, 0xF6),
        (0xF8, 0x24F),
        (0x1E00, 0x1EFF),
    ),
    "Greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "Cyrillic": ((0x400, 0x52F),),
    "Arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "CJK": (
        (0x1100, 0x11FF),
        (0x2E80, 0x2FDF),
        (0x3000, 0x303F),
        (0x3040, 0x30FF),
        (0x3130, 0x318F),
        (0x31F0, 0x31FF),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7AF),
        (0xF900, 0xFAFF),
        (0xFF00, 0xFFEF),
        (0x20000, 0x2FA1F),
    ),
}

#: A URL as it appears in running text: a scheme and ``://``, or ``www.``, then anything up to a space, a quote or a
#: bracket; a full stop or comma that ends a sentence right after it is not part of it.
URL_PATTERN = r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)[^\s<>\"'`()\[\]{}]*[^\s<>\"'`()\[\]{}.,;:!?]"


def code_point_scripts(code_points: np.ndarray) -> np.ndarray:
    """The index in ``SCRIPTS`` of each code point's script, -1 for none."""
    out = np.full(code_points.shape, -1, dtype=np.int64)
    for s, ranges in enumerate(SCRIPTS.values()):
        for lo, hi in ranges:
            out[(code_points >= lo) & (code_points <= hi)] = s
    return out


def corpus_sources(split: str, path: str | Path | None = None):
    """``data/corpus/sources.parquet``'s rows for one split (a pandas DataFrame: ``row``, ``source``, ``lang``),
    in the order of the split's documents."""
    import pandas as pd

    table = pd.read_parquet(Path(path) if path is not None else data_dir() / "corpus" / "sources.parquet")
    table = table[table["split"] == split].sort_values("row").reset_index(drop=True)
    if not (table["row"] == np.arange(len(table))).all():
        raise ValueError(f"sources.parquet's rows for split {split!r} are not 0, 1, ..., n - 1")
    return table


class TokenSetText:
    """The text of a token set made by ``tokenize_texts`` (unshuffled), byte by byte, for its proxies.

    ``stream`` is the rows without their BOS, in order: the documents and their EOS separators. Every byte of
    the stream's text knows its token (``owner``), and every character of ``text`` its bytes (``char_start``,
    ``char_size``), decoded across token boundaries. A byte sequence that is not UTF-8 (a character cut off at
    the stream's end) decodes to one placeholder character per byte, of no script.
    """

    def __init__(self, tokens: Int[Tensor, "n_rows seq"], tokenizer) -> None:
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens must be rows [n_rows, seq] with BOS first, got shape {tuple(tokens.shape)}")
        self.shape = tuple(tokens.shape)
        self.eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        self.stream = tokens[:, 1:].reshape(-1)
        # Each distinct token once: its bytes (b"" for BOS and EOS, which are no text)
        self.vocab, self._vocab_of = np.unique(self.stream.numpy(), return_inverse=True)
        specials = {tokenizer.convert_tokens_to_ids(t) for t in getattr(tokenizer, "all_special_tokens", [])}
        self.vocab_bytes = [
            b"" if i in specials else chunk
            for i, chunk in zip(self.vocab.tolist(), token_bytes(tokenizer, self.vocab.tolist()))
        ]
        self.special = np.isin(self.vocab, list(specials))[self._vocab_of]
        # Every byte of the stream, and every character, across token boundaries
        sizes = np.array([len(chunk) for chunk in self.vocab_bytes], dtype=np.int64)[self._vocab_of]
        self.owner = np.repeat(np.arange(len(sizes)), sizes)  # the token of every byte
        self.token_start = np.cumsum(sizes) - sizes  # the first byte of every token
        data = b"".join(self.vocab_bytes[v] for v in self._vocab_of.tolist())
        self.text = data.decode("utf-8", errors="surrogateescape")  # a stray byte: one character U+DC80-DCFF
        cp = np.frombuffer(self.text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4").astype(np.int64)
        self.code_points = cp
        self.char_size = np.select(
            [cp < 0x80, cp < 0x800, (cp >= 0xDC80) & (cp <= 0xDCFF), cp < 0x10000], [1, 2, 1, 3], 4
        )
        self.char_start = np.cumsum(self.char_size) - self.char_size  # the first byte of every character

    # ----------------------------------------------------------------------------------------------------
    # From the stream back to rows

    def _rows(self, per_token: np.ndarray, fill) -> Tensor:
        """``[n_rows, seq]`` from one value per stream token, ``fill`` at BOS (position 0) and EOS."""
        values = np.where(self.special, fill, per_token)
        out = np.full(self.shape, fill, dtype=values.dtype)
        out[:, 1:] = values.reshape(self.shape[0], self.shape[1] - 1)
        return torch.from_numpy(out)

    def _chars_to_tokens(self, char_mask: np.ndarray, split: Literal["every", "start"]) -> Bool[Tensor, "n_rows seq"]:
        """Tokens holding a byte of a marked character (``"every"``), or its first byte (``"start"``)."""
        if split == "start":
            hit = np.zeros(len(self.stream), dtype=bool)
            hit[self.owner[self.char_start[char_mask]]] = True
        elif split == "every":
            byte_mask = np.repeat(char_mask, self.char_size)
            hit = np.bincount(self.owner[byte_mask], minlength=len(self.stream)) > 0
        else:
            raise ValueError(f'split must be "every" or "start", got {split!r}')
        return self._rows(hit, False)

    # ----------------------------------------------------------------------------------------------------
    # Documents

    def document_ids(self) -> Int[Tensor, "n_rows seq"]:
        """The document of every token (0 for the first text given to ``tokenize_texts``), -1 at BOS and EOS.

        Document ``d``'s tokens are those after the ``d``-th EOS of the stream and before the next: each text was
        tokenized on its own and followed by EOS, so this holds as long as no text contains the EOS token's own
        string (``<|endoftext|>``), which would tokenize to EOS (``tests/course/test_proxies.py`` checks it on the
        corpus)."""
        is_eos = self.stream.numpy() == self.eos
        docs = np.cumsum(is_eos) - is_eos
        return self._rows(docs, -1)

    def by_document(self, values: Sequence, fill=None) -> Tensor | np.ndarray:
        """Spread one value per document (e.g. its language) to its tokens; ``fill`` at BOS and EOS.

        Numbers and booleans give a tensor; strings give a numpy array of objects."""
        values = np.asarray(values)
        docs = self.document_ids().numpy()
        if fill is None:
            fill = False if values.dtype == bool else -1 if values.dtype.kind in "iu" else ""
        out = np.where(docs >= 0, values[np.clip(docs, 0, len(values) - 1)], fill)
        if (docs >= len(values)).any():
            raise ValueError(
                f"the tokens hold {int(docs.max()) + 1} documents, but only {len(values)} values were given"
            )
        return torch.from_numpy(out) if out.dtype.kind in "biuf" else out

    # ----------------------------------------------------------------------------------------------------
    # Characters and text

    def script(self, name: str, split: Literal["every", "start"] = "every") -> Bool[Tensor, "n_rows seq"]:
        """Tokens that hold a byte of a character of script ``name`` (a key of ``SCRIPTS``)."""
        if name not in SCRIPTS:
            raise ValueError(f"unknown script {name!r}; known: {list(SCRIPTS)}")
        return self._chars_to_tokens(code_point_scripts(self.code_points) == list(SCRIPTS).index(name), split)

    def matches(
        self, pattern: str | re.Pattern, split: Literal["every", "start"] = "every"
    ) -> Bool[Tensor, "n_rows seq"]:
        """Tokens that hold a byte of a match of ``pattern`` in their document's text (matches never cross
        documents: the EOS between two documents has no text, and each document is searched on its own)."""
        pattern = re.compile(pattern)
        in_match = np.zeros(len(self.code_points) + 1, dtype=np.int64)
        for lo, hi in self._document_char_spans():
            for m in pattern.finditer(self.text[lo:hi]):  # a slice: ^, $ and \b see the document's own edges
                in_match[lo + m.start()] += 1
                in_match[lo + m.end()] -= 1
        return self._chars_to_tokens(np.cumsum(in_match)[:-1] > 0, split)

    def _document_char_spans(self) -> list[tuple[int, int]]:
        """``(first char, end char)`` of each document's text in ``self.text``, by document id (an empty span
        for a document with no text, or after the stream's last EOS)."""
        boundaries = np.flatnonzero(self.special)  # EOS tokens: no bytes, so their first byte is where text resumes
        cuts = np.searchsorted(self.char_start, self.token_start[boundaries])
        edges = [0, *cuts.tolist(), len(self.code_points)]
        return list(itertools.pairwise(edges))

    def token_matches(self, pattern: str | re.Pattern) -> Bool[Tensor, "n_rows seq"]:
        """Tokens whose own text matches ``pattern`` entirely (``re.fullmatch``), e.g. ``"[0-9]"`` for a digit.

        A token is read alone here: one that holds part of a character has "\ufffd" for it."""
        pattern = re.compile(pattern)
        hit = np.array(
            [
                bool(chunk) and pattern.fullmatch(chunk.decode("utf-8", errors="replace")) is not None
                for chunk in self.vocab_bytes
            ]
        )
        return self._rows(hit[self._vocab_of], False)

    def token_is(self, string: str) -> Bool[Tensor, "n_rows seq"]:
        """Tokens whose text is exactly ``string`` (as bytes: a token holding part of a character is never one)."""
        target = string.encode("utf-8")
        hit = np.array([bool(chunk) and chunk == target for chunk in self.vocab_bytes])
        return self._rows(hit[self._vocab_of], False)

    # ----------------------------------------------------------------------------------------------------
    # Python's own tokenizer

    def python_tokens(self, kinds: set[str], documents: Sequence[bool] | None = None) -> Bool[Tensor, "n_rows seq"]:
        """Tokens that hold a byte of a Python token of one of ``kinds`` (``tokenize``'s names: ``"COMMENT"``,
        ``"STRING"``, ``"NAME"``, ``"NUMBER"``, ``"OP"``...), as Python's ``tokenize`` reads each document.

        ``documents`` (one bool per document) says which documents to read as Python, e.g. those from a Python
        source package; by default all, and ``tokenize`` is forgiving: it reads prose too (an unclosed quote
        becomes an error token). Where it gives up (an unclosed bracket at a file cut off by the token set's
        end), the document is labelled up to there."""
        wanted = {getattr(tokenize, kind) for kind in kinds}
        in_token = np.zeros(len(self.code_points) + 1, dtype=np.int64)
        for d, (lo, hi) in enumerate(self._document_char_spans()):
            if hi == lo or (documents is not None and not documents[d]):
                continue
            source = self.text[lo:hi]
            lines = io.StringIO(source).readlines()  # the lines tokenize reads (split at "\n" only)
            line_starts = np.cumsum([0] + [len(line) for line in lines])
            try:
                for token in tokenize.generate_tokens(iter(lines).__next__):
                    if token.type in wanted:
                        in_token[lo + line_starts[token.start[0] - 1] + token.start[1]] += 1
                        in_token[lo + line_starts[token.end[0] - 1] + token.end[1]] -= 1
            except (tokenize.TokenError, SyntaxError):
                pass
        return self._chars_to_tokens(np.cumsum(in_token)[:-1] > 0, "every")
