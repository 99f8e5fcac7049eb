"""A latent dashboard for an SAE on a model's last MLP: one page per latent, and a prompt-centric view.

:func:`build` gathers everything about a set of latents (or all of them): density and activation histogram,
top contexts and interval samples (each token with its activation and the exact effect of ablating the
latent on the next-token loss, with the largest log-probability changes), top and bottom logits and their
histogram, neuron alignment and correlated neurons, correlated latents over the whole SAE (co-firing),
nearest latents by decoder cosine and the matching latent of another run; and the prompt-centric view of a
few prompts (every latent at every token, ranked in the page by activation, quantile or loss effect).

The same code serves every SAE architecture, because every step reads the SAE through the course's shared
pieces: the statistics are the engine's (``utils.sae.latent_stats.compute_latent_stats``, one pass over the
tokens, or its saved results); the rows that hold the contexts are run once more through
``utils.sae.latent_effects.final_residual``, encoded as the engine encodes (``SAE.encode_sparse``, each
token's active latents only), and their ablation effects come from
``latent_effects.ablation_effects``, the closed form the prompt view (``utils.sae.prompt_view``) uses too, each
position's clean log-probabilities once. The text of every token comes from ``utils.lm.token_text``, readable
and never empty: running text (contexts, prompts) as ``readable_pieces`` (a token that holds the rest of a
character shows "·"), a token alone (logits, the tokens of an effect, the search) as ``token_label`` (half a
character shows as its bytes, "⟨d8⟩").

The result is a :class:`~utils.dashboard.payload.DashboardData`: :func:`export_html` writes it as one
self-contained HTML file (JavaScript and CSS inlined once, no network request, ``#latent=123`` opens a
latent); :func:`export_folder` writes the whole SAE as a folder of such files with a searchable index page;
:func:`show` displays it in a notebook, and ``utils.dashboard.widget`` is an ipywidgets browser with a live
prompt view.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.dashboard.page import iframe_html, page_html, payload_json
from utils.dashboard.payload import (
    Context,
    DashboardData,
    DashboardMeta,
    Effect,
    Interval,
    LatentPage,
    Logits,
    Match,
    Neurons,
    PromptLatents,
    SearchEntry,
)
from utils.lm.token_text import CONTINUATION, readable_from_bytes, readable_pieces, token_bytes, token_labels
from utils.sae import latent_effects
from utils.sae.latent_stats import LatentStats, LatentStatsOptions, compute_latent_stats
from utils.sae.prompt_view import prompt_view as engine_prompt_view

__all__ = [
    "STATS_OPTIONS",
    "DashboardData",
    "build",
    "export_folder",
    "export_html",
    "latent_stats",
    "prompt_view",
    "show",
    "to_json",
]

#: The engine's options the dashboard uses: 10 top contexts, 4 activation intervals of 3 samples each, a histogram
#: of 40 log-spaced bins over [0.01, 31.6], co-firing over the whole SAE and correlations with every neuron; BOS
#: (position 0) left out, as in SAE training.
STATS_OPTIONS = LatentStatsOptions(
    top_k=10,
    n_intervals=4,
    n_quantile_groups=4,
    n_samples=3,
    hist_range=(1e-2, 10**1.5),
    n_hist_bins=40,
    cofire=True,
    neuron_corr=True,
    exclude_bos=True,
)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, and back as it was after it.

    The dashboard builds a few million small objects (contexts, effects, lists of numbers) and no reference cycle;
    every 700 new objects the collector would look for cycles, and every so often through all of them: a third of
    ``build``'s Python time at 4,096 latents (36 s with it, 24 s without, on 100k tokens). Memory is freed as before
    (reference counting frees everything here)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------------------------
# Statistics: the engine of utils.sae.latent_stats, in one pass
# ---------------------------------------------------------------------------------------------------------


def latent_stats(
    model,
    sae,
    tokens: Int[Tensor, "rows seq"],
    batch_rows: int = 64,
    seconds: dict[str, list[float]] | None = None,
    codes: dict[str, Tensor] | None = None,
    **options,
) -> LatentStats:
    """``compute_latent_stats`` with the dashboard's options (:data:`STATS_OPTIONS`; keyword arguments replace
    single ones), BOS left out as in SAE training: the SAE's code there means nothing, and BOS would fill some
    latents' top contexts. A dict passed as ``seconds`` receives each phase's wall-clock and CPU seconds; one
    passed as ``codes``, the pass's sparse codes and final residual stream (``compute_latent_stats``,
    ``final_residuals=True``: 4 bytes per token and ``d_model``, 0.5 GB for 1M tokens of gelu-1l-mini), which
    :func:`build` then reads instead of running and encoding the rows of the contexts again."""
    return compute_latent_stats(
        model,
        sae,
        tokens,
        replace(STATS_OPTIONS, **options),
        batch_size=batch_rows,
        progress=False,
        seconds=seconds,
        codes=codes,
        final_residuals=codes is not None,
    )


# ---------------------------------------------------------------------------------------------------------
# Weights: logits, neurons, nearest latents, the other run
# ---------------------------------------------------------------------------------------------------------


def _top_cosines(
    unit_a: Tensor, unit_b: Tensor, n: int, exclude_self: bool, chunk: int = 1024
) -> tuple[Tensor, Tensor]:
    """For each row of unit_a, the n rows of unit_b with the largest cosine: (indices, cosines)."""
    idx, cos = [], []
    for s in range(0, len(unit_a), chunk):
        c = unit_a[s : s + chunk] @ unit_b.T
        if exclude_self:
            c[torch.arange(len(c)), torch.arange(s, s + len(c))] = -2.0
        top = c.topk(n, dim=-1)
        idx.append(top.indices)
        cos.append(top.values)
    return torch.cat(idx), torch.cat(cos)


def _pairs(ids: Tensor, values: Tensor, digits: int = 3) -> list[tuple[int, float]]:
    """``[(id, value rounded)]`` from two tensors of the same length."""
    return [(i, round(v, digits)) for i, v in zip(ids.tolist(), values.tolist())]


def _cofiring_phi(stats: LatentStats, latents: list[int], n: int) -> dict[int, list[tuple[int, float]]]:
    """The n latents of the whole SAE whose firing correlates most with each latent's (phi coefficient of the
    two firing indicators, from the engine's co-firing counts)."""
    lat = torch.tensor(latents, dtype=torch.long)
    n_tok = stats.n_tokens
    p = stats.fire_count.double() / n_tok
    both = stats.cofire[lat].double() / n_tok
    phi = (both - p[lat, None] * p[None]) / (
        p[lat, None] * (1 - p[lat, None]) * p[None] * (1 - p[None])
    ).sqrt().clamp_min(1e-12)
    phi[torch.arange(len(lat)), lat] = -2.0
    top = phi.topk(n, dim=-1)
    return {f: _pairs(top.indices[i], top.values[i]) for i, f in enumerate(latents)}


# ---------------------------------------------------------------------------------------------------------
# Contexts, with exact ablation effects
# ---------------------------------------------------------------------------------------------------------


def _window(pos: int, seq: int, before: int, after: int) -> range:
    """Positions of a row (BOS excluded) from ``before`` tokens before ``pos`` to ``after`` after it."""
    row_start = pos - pos % seq
    return range(max(row_start + 1, pos - before), min(row_start + seq, pos + after + 1))


def _pair_effects(
    model,
    resid: Float[Tensor, "rows seq d_model"],
    row_tokens: Int[Tensor, "rows seq"],
    pairs: list[tuple[int, int, int, float]],
    latent_out: Tensor,
) -> dict[tuple[int, int, int], Effect]:
    """The ablation effect of each ``(row, position, latent, activation)`` on the next token (the one closed
    form, ``latent_effects.ablation_effects``), by ``(row, position, latent)``.

    Many pairs share a position (the windows of several latents overlap): the pairs go in order of position,
    each position's residual once, so that ``ablation_effects`` computes each position's clean log-probabilities
    once (once per chunk of pairs it holds, at most)."""
    if not pairs:
        return {}
    pairs = list(dict.fromkeys(pairs))  # a latent's overlapping windows in a row list a pair twice: once is enough
    row, pos, lat, act = (torch.tensor(column) for column in zip(*pairs))
    seq, device = row_tokens.shape[1], resid.device
    flat = row * seq + pos
    order = flat.argsort(stable=True)
    where, position = torch.unique(flat[order], return_inverse=True)  # each position once; pair -> its position
    eff = latent_effects.ablation_effects(
        model,
        resid.reshape(-1, resid.shape[-1])[where.to(device)],
        row_tokens.reshape(-1)[where + 1].to(device),  # the next token: pos < seq - 1, so still in the row
        position.to(device),
        lat[order].to(device),
        act[order].float().to(device),
        latent_out,
    )
    loss, tokens, changes = _rounded(eff.loss, 3), eff.top_tokens.tolist(), _rounded(eff.top_changes, 2)
    return {pairs[i][:3]: Effect(loss[j], list(zip(tokens[j], changes[j]))) for j, i in enumerate(order.tolist())}


def _rounded(values: Float[Tensor, "..."], digits: int) -> list:
    """``values.tolist()`` with each number as ``round(value, digits)`` gives it, for a whole tensor at once.

    Exactly Python's rounding for float32 values: ``value * 10**digits`` is exact in float64 (24 + 10 bits for
    ``digits <= 3``), ``torch.round`` rounds it half to even as ``round`` does, and the division by ``10**digits``
    is correctly rounded, the float nearest the decimal that ``round`` returns."""
    if values.dtype != torch.float32 or digits > 3:
        raise ValueError(f"_rounded is exact for float32 values and at most 3 digits, not {values.dtype}, {digits}")
    scale = 10.0**digits
    return (values.double() * scale).round_().div_(scale).tolist()


@torch.no_grad()
def _row_contexts(
    model,
    sae,
    row_tokens: Int[Tensor, "rows seq"],
    centres: list[list[tuple[int, int]]],
    before: int,
    after: int,
    latent_out: Tensor,
    tops: set[tuple[int, int, int]] = frozenset(),
    effects: dict[int, tuple[Tensor, int]] | None = None,
    row_codes: tuple[Tensor, Tensor, Tensor | None] | None = None,
) -> dict[tuple[int, int], Context]:
    """The contexts of a batch of rows: ``centres[i]`` lists the ``(latent, position)`` to show in row i.

    For each ``(latent, row, position)`` in ``tops`` (a top example), the latent's exact logit effect there,
    centred over the vocabulary, is added to ``effects[latent]`` (a running sum and a count). ``row_codes``: the
    rows' sparse codes from the engine's pass (``[rows seq k]``) and, third, their final residual stream, else the
    rows are run and encoded here."""
    if row_codes is not None and row_codes[2] is not None:
        resid = row_codes[2].to(model.cfg.device)
    else:
        resid, x = latent_effects.final_residual(model, row_tokens, sae.cfg.hook_name)
    if row_codes is not None:
        values, indices = row_codes[0], row_codes[1].long()
    else:
        values, indices = (  # the engine's encoder, a chunk of tokens at a time
            t.cpu().reshape(*x.shape[:2], -1) for t in sae.encode_sparse(x.reshape(-1, x.shape[-1]))
        )  # [rows seq k]
    windows, pairs = _window_activations(values, indices, centres, before, after)
    if effects is not None:
        _add_logit_effects(
            model,
            resid,
            [(f, row, pos, centre_act) for f, row, pos, lo, _, centre_act in windows if (f, row, pos) in tops],
            latent_out,
            effects,
        )
    effects_at = _pair_effects(model, resid, row_tokens, pairs, latent_out)
    chunks = [token_bytes(model.tokenizer, tokens.tolist()) for tokens in row_tokens]  # once per row, then sliced
    out = {}
    for f, row, pos, lo, acts, _ in windows:
        ahead = {
            i + 1: effects_at[(row, p, f)]
            for i, p in enumerate(range(lo, lo + len(acts) - 1))
            if (row, p, f) in effects_at
        }
        pieces = readable_from_bytes(chunks[row][lo : lo + len(acts)])  # the window's own text: what it shows
        out[(f, row, pos)] = Context(pieces, acts, pos - lo, ahead)  # the effect lands on the predicted token, i + 1
    return out


def _window_activations(
    values: Float[Tensor, "rows seq k"],
    indices: Int[Tensor, "rows seq k"],
    centres: list[list[tuple[int, int]]],
    before: int,
    after: int,
) -> tuple[list[tuple[int, int, int, int, list[float], float]], list[tuple[int, int, int, float]]]:
    """Each wanted context's window and the latent's activation on each of its tokens, all windows of the rows at
    once (one gather, padded to the longest window): ``(latent, row, centre, first position, activations rounded
    to 2 decimals as the page shows them, the centre's activation)``; and every ``(row, position, latent,
    activation)`` where the latent fires in a window before the row's last token (the pairs whose ablation effect
    on the next token is shown)."""
    seq = values.shape[1]
    spans = [(row, f, pos, _window(pos, seq, before, after)) for row, wanted in enumerate(centres) for f, pos in wanted]
    if not spans:
        return [], []
    row_t, lat_t, lo_t, len_t = (
        torch.tensor(column) for column in zip(*((r, f, w.start, len(w)) for r, f, _, w in spans))
    )
    offsets = torch.arange(int(len_t.max()))
    inside = offsets < len_t[:, None]  # [windows, longest]
    positions = (lo_t[:, None] + offsets).clamp_max(seq - 1)
    here = (indices[row_t[:, None], positions] == lat_t[:, None, None]) & inside[..., None]
    acts = (values[row_t[:, None], positions] * here).sum(-1)  # [windows, longest]: 0 past each window's end
    shown, centres_at = (
        _rounded(acts, 2),
        acts[torch.arange(len(spans)), torch.tensor([pos - w.start for *_, pos, w in spans])],
    )
    windows = [
        (f, r, pos, w.start, shown[i][: len(w)], a)
        for i, ((r, f, pos, w), a) in enumerate(zip(spans, centres_at.tolist()))
    ]
    fires = (acts > 0) & inside & (positions < seq - 1)
    which, at = fires.nonzero(as_tuple=True)  # window-major, positions in order: the pairs' order as listed
    pairs = list(
        zip(row_t[which].tolist(), positions[which, at].tolist(), lat_t[which].tolist(), acts[which, at].tolist())
    )
    return windows, pairs


def _add_logit_effects(
    model, resid: Tensor, examples: list[tuple[int, int, int, float]], latent_out: Tensor, effects: dict
) -> None:
    """Add each ``(latent, row, position, activation)``'s exact logit effect, centred over the vocabulary, to
    ``effects[latent]`` (sum, count)."""
    examples = [e for e in examples if e[3] > 0]
    if not examples:
        return
    lat, row, pos, act = (torch.tensor(column) for column in zip(*examples))
    device = resid.device
    contributions = act.float().to(device)[:, None] * latent_out[lat.to(device)]
    logits = latent_effects.exact_logit_effect(model, resid[row, pos], contributions).float().cpu()
    logits -= logits.mean(-1, keepdim=True)
    for f, row_logits in zip(lat.tolist(), logits):
        total, n = effects.get(f, (torch.zeros_like(row_logits), 0))
        effects[f] = (total + row_logits, n + 1)


def _by_row(where: dict[int, list[int]], seq: int) -> dict[int, list[tuple[int, int]]]:
    """``{latent: flat token indices}`` regrouped as ``{row: [(latent, position)]}``."""
    out: dict[int, list[tuple[int, int]]] = {}
    for f, centres in where.items():
        for c in centres:
            out.setdefault(c // seq, []).append((f, c % seq))
    return out


def _contexts(
    model,
    sae,
    tokens: Int[Tensor, "rows seq"],
    wanted: dict[int, list[int]],
    before: int,
    after: int,
    batch_rows: int = 64,
    tops: dict[int, list[int]] | None = None,
    effects: dict[int, tuple[Tensor, int]] | None = None,
    codes: dict[str, Tensor] | None = None,
) -> dict[tuple[int, int], Context]:
    """Each (latent, centre token index) as a context: token texts, the latent's activation on each token, and
    where it fires, the exact effect of removing it on the next token's loss with the largest log-prob changes.
    The rows holding contexts are run again, ``batch_rows`` at a time. With ``tops`` (each latent's top examples,
    as flat token indices) and ``effects``, the latents' exact logit effects there are summed into ``effects``.
    With ``codes`` (the engine's pass's, ``latent_stats(codes=...)``) the rows are run to the final residual
    only, not encoded again."""
    seq = tokens.shape[1]
    latent_out = latent_effects.sae_out_directions(model, sae)
    by_row, top_rows = _by_row(wanted, seq), _by_row(tops or {}, seq)
    rows = sorted(by_row)
    out = {}
    for start in range(0, len(rows), batch_rows):
        batch = rows[start : start + batch_rows]
        top_here = {(f, i, pos) for i, r in enumerate(batch) for f, pos in top_rows.get(r, ())}
        row_codes = None
        if codes is not None:
            resid = codes["resid"][batch] if "resid" in codes else None
            row_codes = (codes["values"][batch], codes["indices"][batch], resid)
        found = _row_contexts(
            model,
            sae,
            tokens[batch],
            [by_row[r] for r in batch],
            before,
            after,
            latent_out,
            top_here,
            effects,
            row_codes,
        )
        out |= {(f, batch[row] * seq + pos): context for (f, row, pos), context in found.items()}
    return out


def _vocab_texts(tokenizer, ids: set[int]) -> dict[int, str]:
    """Each token the page names alone, as ``token_label`` reads it (never ``""``: half a character is "⟨d8⟩")."""
    ordered = sorted(ids)
    return dict(zip(ordered, token_labels(tokenizer, ordered)))


# ---------------------------------------------------------------------------------------------------------
# The prompt-centric view
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def prompt_view(model, sae, prompt: str, stats: LatentStats | None = None) -> PromptLatents:
    """Every latent active at every token of ``prompt`` (BOS left out), as ``(latent, activation, quantile, loss
    effect)``: ``utils.sae.prompt_view``'s exact loss effects, and quantiles when the engine's ``stats`` are given."""
    view = engine_prompt_view(model, sae, prompt)  # quantiles below, for the active latents only
    per_token: list[list] = [[] for _ in range(len(view.tokens))]
    pos, lat = torch.nonzero(view.acts > 0, as_tuple=True)
    keep = pos > 0
    pos, lat = pos[keep], lat[keep]
    acts = view.acts[pos, lat]
    quantiles = stats.quantile_of(lat, acts) if stats is not None else torch.zeros_like(acts)
    rows = zip(
        pos.tolist(),
        lat.tolist(),
        acts.tolist(),
        quantiles.tolist(),
        torch.nan_to_num(view.loss_effect[pos, lat]).tolist(),
    )
    for p, f, a, q, e in rows:
        per_token[p].append((f, round(a, 3), round(q, 3) if stats is not None else None, round(e, 4)))
    return PromptLatents(prompt, readable_pieces(model.tokenizer, view.tokens), per_token)


# ---------------------------------------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------------------------------------


def _locations(seqs: Tensor, poss: Tensor, seq: int) -> list:
    """Flat token indices (row * seq + position) of the engine's examples, empty slots (-1) dropped, as nested
    lists of the tensors' shape but the last (the examples of every latent, or of every latent's intervals, at
    once: one ``tolist``, not one per latent)."""
    return _kept(torch.where(seqs >= 0, seqs * seq + poss, -1).tolist())


def _kept(flat: list) -> list:
    """``flat`` (nested lists of token indices) without its empty slots (-1), innermost lists in order."""
    if flat and isinstance(flat[0], list):
        return [_kept(inner) for inner in flat]
    return [i for i in flat if i >= 0]


def _row_histograms(rows: Float[Tensor, "n m"], bins: int = 30) -> Int[Tensor, "n bins"]:
    """A histogram of each row over its own range [min, max], in equal bins, for all rows at once."""
    lo, hi = rows.min(-1, keepdim=True).values, rows.max(-1, keepdim=True).values
    b = ((rows - lo) / (hi - lo).clamp_min(1e-12) * bins).long().clamp(0, bins - 1)
    offsets = torch.arange(len(rows))[:, None] * bins
    return torch.bincount((b + offsets).flatten(), minlength=len(rows) * bins).reshape(len(rows), bins)


def _intervals(f: int, stats: LatentStats, contexts: dict, samples_at: list[list[int]]) -> list[Interval]:
    """The latent's activation intervals, each with its share of the firings and its sampled contexts
    (``samples_at[j]``: the flat token indices of interval j's samples)."""
    fired, edges = max(int(stats.fire_count[f]), 1), stats.interval_edges[f]
    return [
        Interval(
            (round(edges[j].item(), 3), round(edges[j + 1].item(), 3)),
            round(int(stats.interval_counts[f, j]) / fired, 4),
            [contexts[(f, p)] for p in samples_at[j]],
        )
        for j in range(stats.interval_counts.shape[1])
    ]


def _logits(row: Float[Tensor, " d_vocab"], hist: Int[Tensor, " bins"], kind: str, n_examples: int) -> Logits:
    top, bottom = row.topk(10), row.topk(10, largest=False)
    return Logits(
        _pairs(top.indices, top.values),
        _pairs(bottom.indices, bottom.values),
        hist.tolist(),
        (round(row.min().item(), 3), round(row.max().item(), 3)),
        kind,
        n_examples,
    )


def _logit_rows(model, sae, lat: Tensor, effects: dict[int, tuple[Tensor, int]]) -> tuple[Tensor, list[str], list[int]]:
    """Each latent's logit row: its exact effect averaged over its top examples where it has any, else the naive
    lens of its decoder direction (Part 5 shows why the two differ: the LayerNorm's scale moves with the latent)."""
    lens = latent_effects.logit_lens(model, sae.W_dec[lat], hook_name=sae.cfg.hook_name).float().cpu()
    kinds, counts = [], []
    for i, f in enumerate(lat.tolist()):
        total, n = effects.get(f, (None, 0))
        if n:
            lens[i] = total / n
        kinds.append("effect" if n else "weights")
        counts.append(n)
    return lens, kinds, counts


def _neurons(f: int, stats: LatentStats, sae) -> Neurons:
    squared = sae.W_dec[f].pow(2)
    largest = squared.topk(3).indices
    correlated = stats.neuron_corr[f].topk(3)
    return Neurons(
        round((squared.max() / squared.sum()).item(), 3),
        _pairs(largest, sae.W_dec[f, largest]),
        _pairs(correlated.indices, correlated.values),
    )


def _wanted_contexts(
    latents: list[int], top_at: list[list[int]], samples_at: list[list[list[int]]]
) -> dict[int, list[int]]:
    """Each latent's top examples and interval samples, as flat token indices (``_locations``), each once."""
    return {f: sorted(set(top_at[f]).union(*samples_at[f])) for f in latents}


def _check_stats(stats: LatentStats, tokens: Tensor) -> None:
    """The statistics must be the engine's, on these very tokens, with what the page needs."""
    if stats.cofire is None or stats.neuron_corr is None:
        raise ValueError(
            "the dashboard needs the engine's co-firing counts and neuron correlations: compute the "
            "statistics with cofire=True and neuron_corr=True"
        )
    seq = tokens.shape[1]
    counted = len(tokens) * (seq - 1 if stats.options.exclude_bos else seq)  # BOS left out, or not
    if stats.seq_len != seq or stats.n_tokens != counted:
        raise ValueError(
            f"stats were computed on {stats.n_tokens} tokens in rows of {stats.seq_len}, not on these "
            f"{counted} tokens in rows of {seq}"
        )


def _vocab_ids(page: LatentPage) -> set[int]:
    """The tokens a latent's page names (its logits and the largest log-prob changes of its contexts)."""
    ids = {t for t, _ in page.logits.top + page.logits.bottom}
    for context in [*page.top, *(s for g in page.intervals for s in g.samples)]:
        ids |= {t for effect in context.effects.values() for t, _ in effect.top}
    return ids


@torch.no_grad()
@_cyclic_gc_paused()
def build(
    model,
    sae,
    tokens: Int[Tensor, "rows seq"],
    latents: list[int] | None = None,
    stats: LatentStats | None = None,
    other_sae=None,
    prompts: list[str] = (),
    before: int = 12,
    after: int = 4,
    batch_rows: int = 64,
    codes: dict[str, Tensor] | None = None,
) -> DashboardData:
    """The dashboard's data for ``latents`` (default: all) of ``sae`` over ``tokens`` (rows starting with BOS).

    Any SAE architecture on the model's last MLP (the closed-form ablation effects hold only there: another
    hook raises at once). ``stats`` are the engine's saved results for these tokens (``LatentStats.load(folder)``,
    computed with at least ``cofire`` and ``neuron_corr``); without them, :func:`latent_stats` computes them first.
    ``codes``: that pass's sparse codes (``latent_stats(..., codes=codes)``), read instead of encoding again."""
    latent_effects.check_closed_form(model, sae.cfg.hook_name)
    d_sae, seq = sae.cfg.d_sae, tokens.shape[1]
    latents = list(range(d_sae)) if latents is None else [int(f) for f in latents]
    if stats is None:
        codes = {}
        stats = latent_stats(model, sae, tokens, batch_rows, codes=codes)
    for name, kept in (codes or {}).items():
        if tuple(kept.shape[:2]) != tuple(tokens.shape):
            raise ValueError(
                f"codes[{name!r}] of shape {tuple(kept.shape)} are not of these tokens {tuple(tokens.shape)}"
            )
    _check_stats(stats, tokens)
    top_at, samples_at = (
        _locations(stats.top_seq, stats.top_pos, seq),
        _locations(stats.interval_seq, stats.interval_pos, seq),
    )
    tops = {f: top_at[f] for f in latents}
    effects: dict[int, tuple[Tensor, int]] = {}
    wanted = _wanted_contexts(latents, top_at, samples_at)
    contexts = _contexts(model, sae, tokens, wanted, before, after, batch_rows, tops, effects, codes)

    lat = torch.tensor(latents, dtype=torch.long)
    lens, kinds, n_examples = _logit_rows(model, sae, lat, effects)
    lens_hist = _row_histograms(lens)
    unit = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    near_idx, near_cos = _top_cosines(unit[lat], unit, 5, exclude_self=False)
    match = None
    if other_sae is not None:
        match = _top_cosines(
            unit[lat], other_sae.W_dec / other_sae.W_dec.norm(dim=-1, keepdim=True), 1, exclude_self=False
        )
    cofire = _cofiring_phi(stats, latents, 5)

    pages = {}
    for i, f in enumerate(latents):
        pages[f] = LatentPage(
            density=int(stats.fire_count[f]) / stats.n_tokens,
            n_fired=int(stats.fire_count[f]),
            max_act=round(stats.act_max[f].item(), 3),
            hist=stats.hist_counts[f].tolist(),
            top=[contexts[(f, p)] for p in top_at[f]],
            intervals=_intervals(f, stats, contexts, samples_at[f]),
            logits=_logits(lens[i], lens_hist[i], kinds[i], n_examples[i]),
            neurons=_neurons(f, stats, sae),
            cofiring=cofire[f],
            nearest=[(j, c) for j, c in _pairs(near_idx[i], near_cos[i]) if j != f][:4],
            match=None if match is None else Match(match[0][i, 0].item(), round(match[1][i, 0].item(), 3)),
        )
    lo, hi = stats.hist_edges[0].item(), stats.hist_edges[-1].item()
    meta = DashboardMeta(
        model=model.cfg.model_name,
        run=getattr(sae, "pretrained_cfg", {}).get("run", "sae"),
        other_run=None if other_sae is None else getattr(other_sae, "pretrained_cfg", {}).get("run", "other run"),
        architecture=_architecture(sae),
        d_sae=d_sae,
        n_tokens=stats.n_tokens,
        hist_log10=(round(math.log10(lo), 2), round(math.log10(hi), 2)),
        hist_bins=stats.hist_counts.shape[1],
    )
    vocab = _vocab_texts(model.tokenizer, set().union(*(_vocab_ids(page) for page in pages.values())))
    return DashboardData(meta, vocab, pages, [prompt_view(model, sae, p, stats) for p in prompts], stats)


def _architecture(sae) -> str:
    """The SAE's architecture as the page names it: "topk, k=32", "standard (L1)"."""
    if sae.cfg.architecture == "topk":
        return f"topk, k={sae.cfg.k}"
    return "standard (L1)" if sae.cfg.architecture == "standard" else sae.cfg.architecture


# ---------------------------------------------------------------------------------------------------------
# Export and display
# ---------------------------------------------------------------------------------------------------------


def export_html(data: DashboardData, path: str | Path, latents: list[int] | None = None, **extra_meta) -> Path:
    """Write one self-contained HTML file (JS and CSS inlined once, no network) for ``latents`` (default all)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(data.payload(latents, **extra_meta)), encoding="utf-8")
    return path


def centre_text(context: Context) -> str:
    """The text of a context's centre token, for the search: its piece, or, where the token only holds the rest
    of a character ("·"), that character and the mark ("你·"), so that searching "你" finds the latent."""
    at = context.centre
    while at > 0 and context.pieces[at] == CONTINUATION:
        at -= 1
    piece = context.pieces[at]
    return piece if at == context.centre or piece == CONTINUATION else piece[-1] + CONTINUATION


def _search_entry(data: DashboardData, page: LatentPage) -> SearchEntry:
    return SearchEntry(
        round(page.density, 6), [data.vocab[t] for t, _ in page.logits.top[:5]], [centre_text(c) for c in page.top[:5]]
    )


@_cyclic_gc_paused()
def export_folder(data: DashboardData, folder: str | Path, per_file: int = 128, processes: int | None = None) -> Path:
    """The whole dashboard as a folder: ``latents_NNNN.html`` files of ``per_file`` latents each, and an
    ``index.html`` that searches latents by their top tokens and holds the prompt views.

    The files are written by ``processes`` processes forked from this one (default: 2 where the system forks,
    Linux, and has 2 cores or more; else 1): writing is turning Python objects into JSON, one core's work per
    file, and a forked process reads ``data`` without it being pickled. The files are the same either way."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = sorted(data.latents)
    shards = [ids[s : s + per_file] for s in range(0, len(ids), per_file)]
    names = [f"latents_{chunk[0]:04d}.html" for chunk in shards]
    shard_of = {f: i for i, chunk in enumerate(shards) for f in chunk}
    jobs = [
        (folder / name, chunk, dict(shards=names, shard_of=shard_of, index="index.html"))
        for name, chunk in zip(names, shards)
    ]

    def write_index() -> None:
        index = data.payload([], shards=names, shard_of=shard_of, is_index=True) | {"vocab": {}}  # search has texts
        index["search"] = {f: _search_entry(data, page) for f, page in data.latents.items()}
        (folder / "index.html").write_text(page_html(index), encoding="utf-8")

    _write_shards(data, jobs, processes, meanwhile=write_index)
    return folder / "index.html"


#: What the forked writers of ``export_folder`` read: set just before they fork, cleared after.
_WRITING: tuple[DashboardData, list] | None = None


def _write_shard(i: int) -> None:
    data, jobs = _WRITING
    path, chunk, meta = jobs[i]
    export_html(data, path, chunk, **meta)


def _write_shards(data: DashboardData, jobs: list, processes: int | None, meanwhile: Callable[[], None]) -> None:
    """Each ``(path, latents, meta)`` of ``jobs`` as an HTML file, in ``processes`` forked processes, and
    ``meanwhile()`` in this one while they write."""
    import multiprocessing
    import os
    import sys
    import warnings

    forks = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
    if processes is None:
        processes = 2 if forks and (os.cpu_count() or 1) >= 2 else 1
    processes = min(processes, len(jobs))
    if processes <= 1 or not forks:
        for path, chunk, meta in jobs:
            export_html(data, path, chunk, **meta)
        meanwhile()
        return
    global _WRITING
    _WRITING = (data, jobs)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads forks (torch's own are there): a child could wait
            # forever on a lock another thread held. These children only build strings and write files.
            warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                writing = pool.map_async(_write_shard, range(len(jobs)), chunksize=1)
                meanwhile()
                writing.get()
    finally:
        _WRITING = None


def show(data: DashboardData, latents: list[int] | None = None, height: int = 720):
    """Display the dashboard in a notebook, in an iframe (its scripts run in JupyterLab, VS Code and Colab)."""
    from IPython.display import HTML, display

    display(HTML(iframe_html(page_html(data.payload(latents)), height)))


def to_json(data: DashboardData) -> str:
    """The exported payload as JSON (what the page embeds)."""
    return payload_json(data.payload())
