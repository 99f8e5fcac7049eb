"""Proxies label tokens from the text alone (utils.lm.proxies), on hand-made token sets whose every split is known.

Most tests use a made-up tokenizer whose tokens are byte strings chosen by the test, so that a character can be
split between two tokens, or between two rows, exactly where the test wants it; the rows are built the way
``tokenize_texts`` builds them (documents followed by EOS, one stream cut into rows, BOS first). Two tests use the
real tokenizer and the real corpus.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.lm.activations import tokenize_texts
from utils.lm.proxies import SCRIPTS, URL_PATTERN, TokenSetText, code_point_scripts, corpus_sources
from utils.lm.token_text import _unicode_to_byte, token_bytes
from utils.paths import data_dir

EOS = "<|endoftext|>"


class ChunkTokenizer:
    """A tokenizer whose token ``i`` (from 1) is the i-th byte string it was given; token 0 is BOS and EOS."""

    def __init__(self, chunks: list[bytes]) -> None:
        to_unicode = {b: ch for ch, b in _unicode_to_byte().items()}
        self.chunks = list(dict.fromkeys(chunks))
        self.vocab = [EOS] + ["".join(to_unicode[b] for b in chunk) for chunk in self.chunks]
        self.bos_token_id = self.eos_token_id = 0
        self.all_special_tokens = [EOS]

    def id(self, chunk: bytes) -> int:
        return self.chunks.index(chunk) + 1

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.vocab.index(token)


def token_set(docs: list[list[str | bytes]], seq_len: int) -> tuple[torch.Tensor, ChunkTokenizer]:
    """Rows as tokenize_texts makes them, from documents given as their tokens' bytes (str: its UTF-8)."""
    docs = [[c.encode() if isinstance(c, str) else c for c in doc] for doc in docs]
    tokenizer = ChunkTokenizer([c for doc in docs for c in doc])
    stream = [i for doc in docs for i in [*(tokenizer.id(c) for c in doc), 0]]
    n_rows = len(stream) // (seq_len - 1)
    body = torch.tensor(stream[: n_rows * (seq_len - 1)]).reshape(n_rows, seq_len - 1)
    return torch.cat([torch.zeros(n_rows, 1, dtype=torch.long), body], dim=1), tokenizer


def texts_of(tokens: torch.Tensor, tokenizer, mask: torch.Tensor) -> list[bytes]:
    """The bytes of the tokens where ``mask`` holds, in row order."""
    return [token_bytes(tokenizer, [int(t)])[0] for t in tokens[mask]]


# ---------------------------------------------------------------------------------------------------------
# Documents


def test_document_ids_count_the_eos_separators() -> None:
    docs = [["a", "b", "c"], ["d", "e"], ["f", "g", "h", "i"], ["j"]]
    tokens, tokenizer = token_set(docs, seq_len=5)  # rows of 4 body tokens: documents cross rows
    ids = TokenSetText(tokens, tokenizer).document_ids()
    assert ids.shape == tokens.shape and (ids[:, 0] == -1).all(), "BOS belongs to no document"
    assert (ids[tokens == 0] == -1).all(), "EOS belongs to no document"
    for d, doc in enumerate(docs):
        got = texts_of(tokens, tokenizer, ids == d)
        assert got == [c.encode() for c in doc][: len(got)]
    assert texts_of(tokens, tokenizer, ids == 2) == [b"f", b"g", b"h", b"i"], "a document split over two rows"


def test_by_document_spreads_values_to_tokens() -> None:
    tokens, tokenizer = token_set([["a", "b"], ["c"], ["d", "e", "f"]], seq_len=4)
    text = TokenSetText(tokens, tokenizer)
    lang = text.by_document(np.array(["en", "zh", "python"]))
    code = text.by_document([False, False, True])
    assert tokens.shape == (3, 4)  # a b EOS | c EOS d | e f EOS
    assert lang.tolist() == [["", "en", "en", ""], ["", "zh", "", "python"], ["", "python", "python", ""]]
    assert code.dtype == torch.bool and code.tolist() == [
        [False, False, False, False],
        [False, False, False, True],
        [False, True, True, False],
    ]
    with pytest.raises(ValueError, match="3 documents"):
        text.by_document([1, 2])


def test_document_ids_match_tokenize_texts_on_real_text() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(data_dir() / "models" / "gelu-1l-mini"))
    texts = [
        "The package manager.",
        "软件包管理系统会自动处理依赖关系。",
        "def f(x):\n    return x + 1\n",
        "Привет, мир! https://www.debian.org/doc/",
        "Ein Paket.",
    ]
    tokens = tokenize_texts(texts, tokenizer, seq_len=9)
    ids = TokenSetText(tokens, tokenizer).document_ids()
    whole = int(ids.max())  # the last document present may be cut off with the leftover row
    for d in range(whole):
        assert b"".join(texts_of(tokens, tokenizer, ids == d)).decode() == texts[d]


# ---------------------------------------------------------------------------------------------------------
# Characters: scripts


def test_scripts_of_code_points() -> None:
    chars = {
        "a": "Latin",
        "é": "Latin",
        "ệ": "Latin",
        "ж": "Cyrillic",
        "λ": "Greek",
        "ع": "Arabic",
        "软": "CJK",
        "の": "CJK",
        "カ": "CJK",
        "한": "CJK",
        "。": "CJK",
        "，": "CJK",
        "7": None,
        " ": None,
        ".": None,
        "\n": None,
        "_": None,
    }
    got = code_point_scripts(np.array([ord(c) for c in chars]))
    names = list(SCRIPTS)
    assert [names[i] if i >= 0 else None for i in got] == list(chars.values())


RUAN = "软".encode()  # 3 bytes: e8 bd af


def test_a_split_character_belongs_to_every_token_that_holds_a_byte_of_it() -> None:
    doc = ["a", RUAN[:1], RUAN[1:] + b"ok", "件", " 7"]  # 软 split 1 + 2 bytes; the second token adds Latin
    tokens, tokenizer = token_set([doc], seq_len=7)
    text = TokenSetText(tokens, tokenizer)
    assert text.script("CJK")[0].tolist() == [False, False, True, True, True, False, False]
    assert text.script("CJK", split="start")[0].tolist() == [False, False, True, False, True, False, False], (
        "the display convention: the character on the token where it starts"
    )
    assert text.script("Latin")[0].tolist() == [False, True, False, True, False, False, False]
    with pytest.raises(ValueError, match="unknown script"):
        text.script("Klingon")


def test_a_character_split_across_two_rows_belongs_to_both() -> None:
    doc = ["a", "b", RUAN[:2], RUAN[2:], "c"]  # rows of 3 body tokens: 软 starts in row 0 and ends in row 1
    tokens, tokenizer = token_set([doc, ["d"]], seq_len=4)
    text = TokenSetText(tokens, tokenizer)
    cjk = text.script("CJK")
    assert cjk.tolist() == [[False, False, False, True], [False, True, False, False]]
    assert text.script("CJK", split="start").tolist() == [[False, False, False, True], [False, False, False, False]]
    shuffled = TokenSetText(tokens[[1, 0]], tokenizer).script("CJK")  # labels need the stream's order
    assert shuffled[0, 1] == False  # noqa: E712  (row 1 alone starts mid-character: no lead byte)


def test_a_character_cut_off_at_the_end_of_the_token_set_has_no_script() -> None:
    doc = ["a", "b", RUAN[:2], RUAN[2:]]  # the only row ends after the first two bytes of 软; the rest is dropped
    tokens, tokenizer = token_set([doc], seq_len=4)
    cjk = TokenSetText(tokens, tokenizer).script("CJK")
    assert tokens.shape == (1, 4) and cjk.tolist() == [[False, False, False, False]]


# ---------------------------------------------------------------------------------------------------------
# Regular expressions over a document's text


def test_url_matches_map_back_to_the_tokens_they_cover() -> None:
    doc = ["See", " https", "://", "ex", ".", "com", "/a", "_b", ".", " Or", " www", ".", "debian", ".", "org", ")"]
    tokens, tokenizer = token_set([doc], seq_len=len(doc) + 2)
    url = TokenSetText(tokens, tokenizer).matches(URL_PATTERN)[0, 1:-1].tolist()
    assert url == [False, True, True, True, True, True, True, True, False, False, True, True, True, True, True, False]


def test_a_match_never_crosses_documents_but_crosses_rows() -> None:
    docs = [["x", " http", "://", "a", ".b"], ["c", "d"]]
    tokens, tokenizer = token_set(docs, seq_len=4)  # rows of 3: the URL runs over rows 0 and 1
    url = TokenSetText(tokens, tokenizer).matches(URL_PATTERN)
    assert url.tolist() == [[False, False, True, True], [False, True, True, False], [False, False, False, False]]
    start = TokenSetText(tokens, tokenizer).matches("^c")  # ^ is the start of a document, not of the stream
    assert start.tolist()[2] == [False, True, False, False] and start.sum() == 1


def test_a_match_ending_inside_a_split_character_covers_its_tokens() -> None:
    doc = ["a", RUAN[:1], RUAN[1:], "b"]
    tokens, tokenizer = token_set([doc], seq_len=6)
    text = TokenSetText(tokens, tokenizer)
    assert text.matches("a软")[0].tolist() == [False, True, True, True, False, False]
    assert text.matches("a软", split="start")[0].tolist() == [False, True, True, False, False, False]


# ---------------------------------------------------------------------------------------------------------
# A token's own text


def test_token_matches_and_token_is() -> None:
    doc = [" the", "The", "the", " the", "7", " 7", "42", RUAN[:1], RUAN[1:], "\n    ", "\n", " "]
    tokens, tokenizer = token_set([doc], seq_len=len(doc) + 2)
    text = TokenSetText(tokens, tokenizer)
    assert text.token_is(" the")[0].tolist() == [False, True, False, False, True] + [False] * 9
    assert text.token_matches("[0-9]")[0].tolist() == [False] * 5 + [True] + [False] * 8
    assert text.token_matches(r"\n +")[0].tolist() == [False] * 10 + [True] + [False] * 3
    assert text.token_matches(r"\s?[Tt]he")[0, 1:5].tolist() == [True] * 4


def test_python_tokens_follow_pythons_own_tokenizer() -> None:
    code = ["x", " =", " '", "é", "'", "  #", " note", "\n", "def", " f", "():", " return", " 1", "\n"]
    prose = ["It", "'s", " a", " #", "tag"]  # tokenize reads prose too (an unclosed quote is an error token)
    tokens, tokenizer = token_set([code, prose], seq_len=len(code) + len(prose) + 3)
    text = TokenSetText(tokens, tokenizer)
    strings = text.python_tokens({"STRING"})[0, 1:].tolist()
    assert strings[:5] == [False, False, True, True, True] and not any(strings[5:])
    comments = text.python_tokens({"COMMENT"})[0, 1:].tolist()
    assert comments[5:7] == [True, True] and sum(comments[: len(code)]) == 2, "the comment ends before the newline"
    names = text.python_tokens({"NAME"}, documents=[True, False])[0, 1:].tolist()
    assert [i for i, hit in enumerate(names) if hit] == [0, 8, 9, 11], "x, def, f, return; the prose left out"
    assert text.python_tokens({"NAME"})[0, len(code) + 2], "without documents=, prose is read as Python too"
    tokens, tokenizer = token_set([["a"], [], ["b", " #", "c"]], seq_len=7)  # an empty document in between
    assert TokenSetText(tokens, tokenizer).python_tokens({"COMMENT"}, [False, False, True]).tolist() == [
        [False, False, False, False, False, True, True]
    ]


# ---------------------------------------------------------------------------------------------------------
# The real corpus


def test_the_validation_split_maps_back_to_its_documents() -> None:
    """Every document of the held-out split is found whole at the tokens the proxies give it, so its language
    (``sources.parquet``) labels the right tokens; no document holds the EOS token's own string."""
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(data_dir() / "models" / "gelu-1l-mini"))
    texts = pq.read_table(data_dir() / "corpus" / "validation.parquet").column("text").to_pylist()
    sources = corpus_sources("validation")
    assert len(sources) == len(texts) and not any(EOS in t for t in texts)
    tokens = tokenize_texts(texts, tokenizer)
    text = TokenSetText(tokens, tokenizer)
    ids = text.document_ids()
    assert int(ids.max()) == len(texts) - 1, "the rows reach the last document"
    for d in torch.randperm(len(texts) - 1, generator=torch.Generator().manual_seed(0))[:40].tolist():
        assert b"".join(texts_of(tokens, tokenizer, ids == d)).decode() == texts[d], d
    lang = text.by_document(sources["lang"].to_numpy())
    zh = int(np.flatnonzero(sources["lang"].to_numpy() == "zh")[0])
    assert set(lang[ids == zh]) == {"zh"} and (text.script("CJK") & (ids == zh)).sum() > 100
