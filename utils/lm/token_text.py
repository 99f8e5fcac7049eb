"""Showing tokens as readable text in every script, with token boundaries visible.

gelu-1l-mini's tokenizer is byte-level BPE: a token is a run of bytes, and a character outside ASCII (2 bytes
in Cyrillic, Greek and Arabic, 3 in CJK) can be split across two tokens. Decoding each token on its own then
shows broken bytes ("�"). Two ways to show tokens here, one for running text and one for a token alone:

- ``token_pieces`` (running text, Part 4's exercises): every character whole on the token where its first
  byte is; a token that holds only the rest of a character gets ``""``, and the renderers (``render_tokens``,
  ``context_html``, the dashboard's page) draw that empty piece as ``CONTINUATION`` ("·"). Joined, the pieces
  are the decoded text.
- ``readable_pieces`` (running text that is never empty, what the dashboard shows) and ``token_label`` (one
  token alone: a logit, a token in a tooltip): the same rule, and two more so that no token shows as ``""``
  or "�". A token that begins with the rest of a character shown on an earlier token starts with
  ``CONTINUATION`` ("你" then "·", or "ا" then "·ل"), and a byte that belongs to no whole character in view (a
  token alone that holds half a character, a window cut mid-character) shows as its value in hex between
  angle brackets, ``⟨d8⟩`` (a run of such bytes in one token: ``⟨e4 bd⟩``). So the label of the Arabic
  half-token ``b"\\xd8"`` is ``"⟨d8⟩"``, never ``""``.

Rendering: ``render_tokens`` colours tokens by a value, with circuitsvis (its JavaScript is inlined from the
installed package, so it works offline in JupyterLab, VS Code and Colab) or plain HTML (no JavaScript).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = [
    "CONTINUATION",
    "byte_label",
    "context_html",
    "context_window",
    "readable_from_bytes",
    "readable_pieces",
    "render_tokens",
    "token_bytes",
    "token_label",
    "token_labels",
    "token_pieces",
    "visible",
]

CONTINUATION = "\u00b7"  # "·": a token's start that is the rest of a character shown on an earlier token
BYTE_BRACKETS = ("\u27e8", "\u27e9")  # "⟨", "⟩": around bytes that form no whole character in view


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable bytes stand for themselves, the others for 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {chr(b): b for b in printable}, 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def token_bytes(tokenizer, ids: Sequence[int]) -> list[bytes]:
    """The raw bytes of each token (special tokens: their name in UTF-8).

    Read from a table of the whole vocabulary, built once per tokenizer (:func:`_vocab_bytes`): the dashboard
    asks for the bytes of every row that holds a context, 7,800 rows of 128 tokens for 1M tokens."""
    table = _vocab_bytes(tokenizer)
    ids = [int(i) for i in ids]
    if table is not None and all(0 <= i < len(table) for i in ids):
        return [table[i] for i in ids]
    return _bytes_of_tokens(tokenizer, ids)  # a tokenizer that does not say its size, or an id added since


def _bytes_of_tokens(tokenizer, ids: list[int]) -> list[bytes]:
    """Each token's bytes, from the tokenizer's byte-level BPE strings."""
    table = _unicode_to_byte()
    special = set(getattr(tokenizer, "all_special_tokens", []))
    out = []
    for token in tokenizer.convert_ids_to_tokens(ids):
        if token in special or any(ch not in table for ch in token):
            out.append(token.encode("utf-8"))
        else:
            out.append(bytes(table[ch] for ch in token))
    return out


_VOCAB_BYTES: dict[int, tuple[object, list[bytes]]] = {}


def _vocab_bytes(tokenizer) -> list[bytes] | None:
    """The bytes of every token id of ``tokenizer`` (``len(tokenizer)`` of them), built on first use and kept
    (with the tokenizer, so that its id is not reused by another object); None for a tokenizer without a
    length (any object with ``convert_ids_to_tokens`` will do for :func:`token_bytes`)."""
    if not hasattr(tokenizer, "__len__"):
        return None
    key = id(tokenizer)
    if key not in _VOCAB_BYTES or _VOCAB_BYTES[key][0] is not tokenizer:
        _VOCAB_BYTES[key] = (tokenizer, _bytes_of_tokens(tokenizer, list(range(len(tokenizer)))))
    return _VOCAB_BYTES[key][1]


def _utf8_length(lead: int) -> int:
    """Bytes in the UTF-8 character starting with byte ``lead``; 0 for a continuation byte."""
    if lead < 0x80:
        return 1
    if lead < 0xC0:
        return 0
    return 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def pieces_from_bytes(chunks: Sequence[bytes]) -> list[str]:
    """Display strings for byte chunks: each character on the chunk holding its first byte (see module docstring).

    Continuation bytes with no lead byte in the window (the window starts mid-character) are dropped; a
    character cut off by the window's end shows as "�".
    """
    data = b"".join(chunks)
    owner = [i for i, chunk in enumerate(chunks) for _ in chunk]  # chunk of each byte
    pieces = [""] * len(chunks)
    at = 0
    while at < len(data):
        size = _utf8_length(data[at])
        if size == 0:
            at += 1
            continue
        pieces[owner[at]] += data[at : at + size].decode("utf-8", errors="replace")
        at += size
    return pieces


def token_pieces(tokenizer, ids: Sequence[int] | Int[Tensor, " seq"]) -> list[str]:
    """One display string per token: characters whole, on the token where they start (see the module docstring)."""
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return pieces_from_bytes(token_bytes(tokenizer, ids))


def byte_label(raw: bytes) -> str:
    """Bytes that form no whole character, as their hex values between angle brackets: ``b"\\xe4\\xbd"`` ->
    ``"⟨e4 bd⟩"``. Hex, because a half character has no text, and brackets, so that it cannot be read as text."""
    return BYTE_BRACKETS[0] + " ".join(f"{b:02x}" for b in raw) + BYTE_BRACKETS[1]


def _whole_character(data: bytes, at: int) -> int:
    """The length of the whole, valid UTF-8 character that starts at ``data[at]``; 0 where none does (a
    continuation byte, a lead byte whose continuation bytes are missing or wrong, a byte UTF-8 never uses)."""
    size = _utf8_length(data[at])
    if size == 0 or at + size > len(data):
        return 0
    try:
        data[at : at + size].decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return size


def readable_from_bytes(chunks: Sequence[bytes]) -> list[str]:
    """Display strings for byte chunks, none of them empty (the module docstring's rules for ``readable_pieces``).

    Each whole character shows on the chunk holding its first byte, and a chunk that begins with the rest of it
    starts with ``CONTINUATION``; bytes that belong to no whole character within ``chunks`` show as
    :func:`byte_label`. Why not ``""`` or "�": an empty token cannot be seen, hovered or told from its
    neighbour, and "�" hides which bytes the token holds.
    """
    try:  # most windows: every chunk is whole characters, so none is split (a split leaves both halves invalid)
        return [chunk.decode("utf-8") or byte_label(b"") for chunk in chunks]
    except UnicodeDecodeError:
        pass
    data = b"".join(chunks)
    owner = [i for i, chunk in enumerate(chunks) for _ in chunk]  # chunk of each byte
    parts: list[list[str | bytearray]] = [[] for _ in chunks]  # text, or a run of bytes to label
    at = 0
    while at < len(data):
        size, home = _whole_character(data, at), parts[owner[at]]
        if size:
            home.append(data[at : at + size].decode("utf-8"))
            for later in sorted({owner[j] for j in range(at + 1, at + size)} - {owner[at]}):
                parts[later].append(CONTINUATION)
            at += size
            continue
        if not home or not isinstance(home[-1], bytearray):
            home.append(bytearray())
        home[-1].append(data[at])
        at += 1
    return ["".join(p if isinstance(p, str) else byte_label(p) for p in chunk) or byte_label(b"") for chunk in parts]


def readable_pieces(tokenizer, ids: Sequence[int] | Int[Tensor, " seq"]) -> list[str]:
    """One display string per token of a running text, never empty: ``token_pieces``, with ``CONTINUATION`` where
    a token begins with the rest of a character and ``⟨d8⟩`` for bytes of no whole character in ``ids``."""
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return readable_from_bytes(token_bytes(tokenizer, ids))


def token_labels(tokenizer, ids: Sequence[int] | Int[Tensor, " n"]) -> list[str]:
    """Each token alone as readable text (a logit, a token in a tooltip): its whole characters, and its bytes
    of a split character as ``⟨d8⟩``, so that no token reads ``""`` or "�"."""
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return [readable_from_bytes([chunk])[0] for chunk in token_bytes(tokenizer, ids)]


def token_label(tokenizer, token: int) -> str:
    """One token alone as readable text (see :func:`token_labels`): ``"⟨d8⟩"`` for the first half of an Arabic
    letter, ``" the"`` for `` the``."""
    return token_labels(tokenizer, [int(token)])[0]


def visible(piece: str) -> str:
    """A piece with its whitespace made visible: newline "↵", tab "→", a continuation-only token "·"."""
    return (piece or CONTINUATION).replace("\n", "↵").replace("\t", "→")


def context_window(
    tokens: Int[Tensor, "n_seqs seq"], seq: int, pos: int, before: int = 10, after: int = 5
) -> tuple[list[int], int]:
    """The token ids from ``before`` tokens before ``(seq, pos)`` to ``after`` tokens after it, within the row.

    Returns ``(ids, centre)`` where ``ids[centre]`` is the token at ``(seq, pos)``.
    """
    if not 0 <= seq < len(tokens) or not 0 <= pos < tokens.shape[1]:
        raise IndexError(f"(seq={seq}, pos={pos}) is outside tokens of shape {tuple(tokens.shape)}")
    start, stop = max(pos - before, 0), min(pos + after + 1, tokens.shape[1])
    return tokens[seq, start:stop].tolist(), pos - start


def _colour(value: float, max_value: float) -> str:
    """Background colour for an activation: white at 0, saturated orange at ``max_value``."""
    t = 0.0 if max_value <= 0 else max(0.0, min(1.0, value / max_value))
    return f"rgba(255, 140, 0, {0.85 * t:.3f})"


def context_html(
    pieces: Sequence[str], values: Sequence[float], centre: int | None = None, max_value: float | None = None
) -> str:
    """One line of tokens coloured by ``values``, boundaries drawn, the ``centre`` token boxed (plain HTML)."""
    values = [float(v) for v in values]
    top = max_value if max_value is not None else max(values + [0.0])
    spans = []
    for i, (piece, value) in enumerate(zip(pieces, values)):
        style = f"background:{_colour(value, top)};border-right:1px solid #bbb;padding:0 1px"
        if not piece:
            style += ";color:#999"
        if i == centre:
            style += ";outline:2px solid #c00"
        shown = repr(piece) if piece else f"{CONTINUATION!r} (the rest of the character before)"
        title = html.escape(f"{shown}: {value:.3g}", quote=True)
        spans.append(f'<span title="{title}" style="{style}">{html.escape(visible(piece))}</span>')
    return '<div style="font-family:monospace;white-space:pre;line-height:1.6">' + "".join(spans) + "</div>"


class HTML:
    """Minimal displayable HTML (what IPython.display.HTML does), so this module needs no IPython."""

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_html_(self) -> str:
        return self.data

    def __str__(self) -> str:
        return self.data


def render_tokens(
    pieces: Sequence[str], values: Sequence[float] | Tensor, max_value: float | None = None, backend: str = "auto"
) -> HTML:
    """Coloured tokens, displayable in a notebook: circuitsvis ("auto" if installed) or plain HTML ("html").

    circuitsvis's own display fetches its JavaScript from a CDN when it thinks it is online; this uses the
    copy inlined from the installed package (``local_src``), so it renders with no network too.
    """
    values = torch.as_tensor(values, dtype=torch.float32).tolist()
    if backend not in ("auto", "circuitsvis", "html"):
        raise ValueError(f'backend must be "auto", "circuitsvis" or "html", got {backend!r}')
    if backend in ("auto", "circuitsvis"):
        try:
            from circuitsvis.tokens import colored_tokens
        except ImportError:
            if backend == "circuitsvis":
                raise
        else:
            kwargs = {} if max_value is None else {"max_value": max_value, "min_value": 0.0}
            shown = [visible(p) for p in pieces]
            return HTML(colored_tokens(tokens=shown, values=values, **kwargs).local_src)
    return HTML(context_html(pieces, values, max_value=max_value))
