"""Text in every script of the corpus reads right when shown token by token (utils.lm.token_text)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
import torch

from utils.paths import data_dir
from utils.lm.token_text import context_html, context_window, render_tokens, token_bytes, token_pieces

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
