"""Text in every script of the corpus reads right when shown token by token (utils.lm.token_text)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
import torch

from utils.lm.token_text import (
    CONTINUATION,
    context_html,
    context_window,
    readable_from_bytes,
    readable_pieces,
    render_tokens,
    token_bytes,
    token_label,
    token_labels,
    token_pieces,
)
from utils.paths import data_dir

SCRIPTS = {  # a character class for each script of the corpus (Korean's Hangul with the CJK group)
    "latin-accented": "[àâçéèêëîïôûùüÿñäößąęłżśćńáíóú]",
    "cyrillic": "[\u0400-\u04ff]",
    "greek": "[\u0370-\u03ff]",
    "arabic": "[\u0600-\u06ff]",
    "cjk-chinese-japanese": "[\u4e00-\u9fff\u3040-\u30ff]",
    "hangul": "[\uac00-\ud7af]",
}


@pytest.fixture(scope="module")
def tokenizer():
    from utils.lm.loading import load_model

    return load_model("gelu-1l-mini").tokenizer


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return pq.read_table(data_dir() / "corpus" / "train.parquet").column("text").to_pylist()


def sample(corpus: list[str], pattern: str, length: int = 400) -> str:
    """A stretch of the corpus dense in ``pattern``'s script."""
    for text in corpus:
        hits = [m.start() for m in re.finditer(pattern, text)]
        if len(hits) > 100:
            start = hits[50]
            return text[start : start + length]
    pytest.fail(f"no document of the corpus has this script: {pattern}")


@pytest.mark.parametrize("script", SCRIPTS)
def test_pieces_read_whole_in_every_script(script, tokenizer, corpus):
    text = sample(corpus, SCRIPTS[script])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == text  # every character once, whole
    assert "\ufffd" not in "".join(pieces)
    # where byte-level BPE split a character, decoding token by token breaks it; the pieces do not
    naive = [tokenizer.decode([i]) for i in ids]
    split = [i for i, n in enumerate(naive) if "\ufffd" in n]
    if script != "latin-accented":
        assert len(re.findall(SCRIPTS[script], "".join(pieces))) > 50
    for i in split:
        assert "\ufffd" not in pieces[i]
    html = context_html(pieces, [1.0] * len(pieces))
    for ch in re.findall(SCRIPTS[script], text)[:20]:
        assert ch in html


def test_split_character_shows_on_the_token_where_it_starts(tokenizer, corpus):
    """A character split over tokens shows whole on the token of its first byte; a rest-only token shows ""."""
    text = sample(corpus, SCRIPTS["cjk-chinese-japanese"], 3000)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = token_bytes(tokenizer, ids)
    pieces = token_pieces(tokenizer, ids)
    data, start, splits = b"".join(chunks), 0, 0
    is_rest = lambda i: i < len(data) and 0x80 <= data[i] < 0xC0  # noqa: E731  (a UTF-8 continuation byte)
    for chunk, piece in zip(chunks, pieces):
        lo, hi = start, start + len(chunk)
        while lo < hi and is_rest(lo):
            lo += 1  # the rest of a character that started in an earlier token
        splits += lo < hi and is_rest(hi)
        while lo < hi and is_rest(hi):
            hi += 1  # the rest of this token's last character, from the next token(s)
        assert piece == data[lo:hi].decode("utf-8"), (chunk, piece)
        start += len(chunk)
    assert splits > 0 and "" in pieces, "expected split characters in 3000 characters of CJK text"


def test_window_starting_mid_character_drops_the_orphan_bytes(tokenizer):
    text = "Привет, мир! 你好世界"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for start in range(len(ids)):
        joined = "".join(token_pieces(tokenizer, ids[start:]))
        assert "\ufffd" not in joined and text.endswith(joined)


def test_context_window_and_render():
    tokens = torch.arange(40).reshape(2, 20)
    ids, centre = context_window(tokens, 1, 3, before=5, after=2)
    assert ids == list(range(20, 26)) and ids[centre] == 23
    ids, centre = context_window(tokens, 0, 18, before=2, after=5)
    assert ids == [16, 17, 18, 19] and centre == 2
    with pytest.raises(IndexError, match="outside"):
        context_window(tokens, 2, 0)
    html = render_tokens(["a", "\n", ""], [0.0, 1.0, 0.5], backend="html")._repr_html_()
    assert "↵" in html and "·" in html and "<script" not in html


def test_circuitsvis_renders_offline_with_inlined_javascript():
    pytest.importorskip("circuitsvis")
    html = render_tokens(["Привет", "你", ""], [0.1, 2.0, 0.0])._repr_html_()
    assert "<script" in html and "CircuitsVis.ColoredTokens" in html
    assert "unpkg.com" not in html and "cdn.jsdelivr" not in html  # nothing fetched from the network
    assert "\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442" in html  # "Привет", JSON-escaped
    assert '"\\u00b7"' in html, "the empty piece is drawn as the continuation mark"


def test_context_html_marks_an_empty_piece():
    html = context_html(["你", "", "a"], [0.0, 1.0, 0.0])
    spans = re.findall(r"<span[^>]*>(.*?)</span>", html)
    assert spans == ["你", CONTINUATION, "a"] and "the rest of the character before" in html


def _from_label(label: str) -> bytes:
    """The bytes a token's label stands for: text as UTF-8, each "⟨d8 a7⟩" as its bytes (a label has no mark)."""
    parts = re.split(r"\u27e8([0-9a-f ]*)\u27e9", label)
    return b"".join(bytes.fromhex(p) if i % 2 else p.encode() for i, p in enumerate(parts))


@pytest.mark.parametrize(
    "chunks, expected",
    [
        ([b"\xd8"], ["\u27e8d8\u27e9"]),  # the first half of an Arabic letter, alone
        ([b"\xa7\xd9\x84"], ["\u27e8a7\u27e9\u0644"]),  # the rest of one letter, then a whole one ("ل")
        ([b"\xd8", b"\xa7\xd9\x84"], ["\u0627", CONTINUATION + "\u0644"]),  # "ا" where it starts, the mark after
        ([b"\xe4", b"\xbd", b"\xa0ab"], ["\u4f60", CONTINUATION, CONTINUATION + "ab"]),  # "你" over three tokens
        ([b"a\xe4\xbd"], ["a\u27e8e4 bd\u27e9"]),  # cut off by the window's end: one run of bytes
        ([b"\xf0\x9f", b"\x98", b"\x80!"], ["\U0001f600", CONTINUATION, CONTINUATION + "!"]),  # 4 bytes, 3 tokens
        ([b"\xd8a"], ["\u27e8d8\u27e9a"]),  # a lead byte followed by no continuation: "a" is not swallowed
        ([b"\xff", b" \xc0\x80"], ["\u27e8ff\u27e9", " \u27e8c0 80\u27e9"]),  # bytes UTF-8 never uses, an overlong form
        ([b"", b"x"], ["\u27e8\u27e9", "x"]),  # an empty chunk still shows
    ],
)
def test_readable_text_marks_split_characters(chunks, expected):
    assert readable_from_bytes(chunks) == expected


def test_every_token_alone_has_a_readable_label(tokenizer):
    """The whole vocabulary: no label is empty or "�", and each stands for exactly the token's bytes."""
    ids = list(range(len(tokenizer)))
    labels, chunks = token_labels(tokenizer, ids), token_bytes(tokenizer, ids)
    assert all(labels) and not any("\ufffd" in label for label in labels)
    assert [_from_label(label) for label in labels] == chunks
    halves = [i for i, label in enumerate(labels) if "\u27e8" in label]
    assert len(halves) > 100, "byte-level BPE has tokens that hold part of a character"
    assert sum(token_pieces(tokenizer, [i])[0] == "" for i in halves) > 50, "the tokens that read as empty before"
    arabic_half = next(i for i, c in enumerate(chunks) if c == b"\xd8")
    assert token_label(tokenizer, arabic_half) == "\u27e8d8\u27e9"


@pytest.mark.parametrize("script", SCRIPTS)
def test_readable_pieces_are_the_pieces_with_the_mark(script, tokenizer, corpus):
    """On whole text, readable_pieces is token_pieces with "·" where a token starts inside a character (alone
    where the piece was empty), and never empty."""
    text = sample(corpus, SCRIPTS[script])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces, readable = token_pieces(tokenizer, ids), readable_pieces(tokenizer, ids)
    chunks = token_bytes(tokenizer, ids)
    assert all(readable) and "\ufffd" not in "".join(readable)
    starts_inside = [0x80 <= chunk[0] < 0xC0 for chunk in chunks]
    assert readable == [CONTINUATION * inside + piece for inside, piece in zip(starts_inside, pieces)]
    if script != "latin-accented":
        assert sum(starts_inside) > 0, "the sample splits characters"
    assert readable_pieces(tokenizer, torch.tensor(ids)) == readable


def test_token_bytes_from_the_vocabulary_table_are_the_tokenizers(tokenizer, monkeypatch):
    """The table built once per tokenizer holds, for every id, the bytes the tokenizer's own strings give; an id
    past the table (a token added after it was built) is still read from the tokenizer."""
    from utils.lm import token_text

    every = list(range(len(tokenizer)))
    assert token_text.token_bytes(tokenizer, every) == token_text._bytes_of_tokens(tokenizer, every)
    assert token_text._vocab_bytes(tokenizer) is token_text._vocab_bytes(tokenizer), "built once"
    short = token_text._vocab_bytes(tokenizer)[:100]
    monkeypatch.setitem(token_text._VOCAB_BYTES, id(tokenizer), (tokenizer, short))
    assert token_text.token_bytes(tokenizer, [5, 4000]) == token_text._bytes_of_tokens(tokenizer, [5, 4000])
