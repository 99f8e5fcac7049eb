"""Checks for Part 4 (what makes a latent fire).

Each check runs on small synthetic inputs built here: sparse activation matrices with continuous values (no
ties), short activation streams of one latent, random histograms, and for the loss effect a tiny random
one-layer transformer with a tiny SAE. The expected answers come from plain brute-force references in this
module. Sampling is checked as a distribution: a chi-squared test whose false-alarm rate is 1e-6.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import CheckFailure, assert_shape, check_that, chi2_test, exercise

__all__ = [
    "check_update_top_k",
    "check_context_text",
    "check_interval_samples",
    "check_quantile_group_edges",
    "check_quantile_from_histogram",
    "check_loss_effects_at",
    "check_rank_latents",
]

P_FALSE_ALARM = 1e-6


def _sparse_acts(n_tok: int, d_sae: int, generator: torch.Generator) -> Tensor:
    """Non-negative activations [n_tok, d_sae], about 30% nonzero, continuous; latent 0 fires twice, the last never."""
    acts = torch.rand(n_tok, d_sae, generator=generator) * (torch.rand(n_tok, d_sae, generator=generator) < 0.3)
    acts[:, 0] = 0.0
    acts[torch.randperm(n_tok, generator=generator)[:2], 0] = torch.rand(2, generator=generator) + 0.1
    acts[:, -1] = 0.0
    return acts


# ---------------------------------------------------------------------------------------------------------
# 4.1 Streaming top-k


def _positive_set(values: Tensor, idx: Tensor) -> set[tuple[int, float]]:
    return {(int(i), round(float(v), 6)) for v, i in zip(values, idx) if v > 0}


def _brute_top_k(acts: Tensor, k: int, first_index: int = 0) -> list[set[tuple[int, float]]]:
    out = []
    for f in range(acts.shape[1]):
        col = acts[:, f]
        order = sorted(range(len(col)), key=lambda t: -float(col[t]))[:k]
        out.append({(t + first_index, round(float(col[t]), 6)) for t in order if col[t] > 0})
    return out


@exercise("4.1", "Streaming top-k", objects=["update_top_k"])
def check_update_top_k(update_top_k: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    d_sae, k = 6, 4
    empty = torch.zeros(d_sae, k), torch.full((d_sae, k), -1, dtype=torch.long)

    # one batch, first_index 0
    acts = _sparse_acts(15, d_sae, generator)
    before = acts.clone()
    out = update_top_k(empty[0].clone(), empty[1].clone(), acts, 0)
    check_that(isinstance(out, tuple) and len(out) == 2, "update_top_k should return a tuple (top_acts, top_idx).")
    top_acts, top_idx = out
    assert_shape(top_acts, (d_sae, k), "top_acts")
    assert_shape(top_idx, (d_sae, k), "top_idx")
    check_that(top_acts.dtype == torch.float32 and top_idx.dtype == torch.long,
               f"top_acts should be float32 and top_idx int64 (torch.long), got {top_acts.dtype} and {top_idx.dtype}.")
    check_that(torch.equal(acts, before), "update_top_k modified the batch of activations it was given; work on copies.")
    want = _brute_top_k(acts, k)
    for f in range(d_sae):
        got = _positive_set(top_acts[f], top_idx[f])
        if {v for _, v in got} != {v for _, v in want[f]}:
            raise CheckFailure(
                f"On one batch of 15 tokens, latent {f}'s kept activations are not its {k} largest (rows of top_acts "
                f"are latents, columns of the batch are latents too). Hint: take the top-k over the token axis of "
                f"each latent, after putting the running lists and the batch side by side."
            )
        if got != want[f]:
            raise CheckFailure(
                f"On one batch (first_index=0) the activations kept for latent {f} are right but top_idx does not "
                f"point at the tokens they came from. Hint: topk returns positions in what you concatenated; map "
                f"them back through the concatenated index list."
            )
    check_that(bool(torch.all(top_acts[:, :-1] >= top_acts[:, 1:])), "Each row of top_acts should be sorted, largest first.")

    # one batch at first_index 100
    acts = _sparse_acts(9, d_sae, generator)
    top_acts, top_idx = update_top_k(empty[0].clone(), empty[1].clone(), acts, 100)
    for f in range(d_sae):
        if _positive_set(top_acts[f], top_idx[f]) != _brute_top_k(acts, k, 100)[f]:
            raise CheckFailure(
                "With first_index=100, the indices should be positions in the whole token stream (100, 101, ...), "
                "not positions within the batch. Hint: add first_index to the batch's token positions."
            )

    # a stream of batches of uneven sizes, including a batch of one token
    sizes = [13, 1, 20, 7, 16]
    stream = _sparse_acts(sum(sizes), d_sae, generator)
    top_acts, top_idx = empty[0].clone(), empty[1].clone()
    start = 0
    for size in sizes:
        top_acts, top_idx = update_top_k(top_acts, top_idx, stream[start : start + size], start)
        start += size
    want = _brute_top_k(stream, k)
    for f in range(d_sae):
        if _positive_set(top_acts[f], top_idx[f]) != want[f]:
            raise CheckFailure(
                f"After a stream of 5 batches, latent {f}'s top examples differ from the top {k} of the whole stream: "
                f"examples from an earlier batch were lost or duplicated. Hint: merge the running lists with the new "
                f"batch, then keep the k largest of the merge."
            )


# ---------------------------------------------------------------------------------------------------------
# 4.2 Context window

_VOCAB = {i: f"w{i} " for i in range(100)}
_LEAD, _REST = 100, 101  # a character split over two tokens, as byte-level BPE does


def _fake_pieces(ids: list[int]) -> list[str]:
    """Pieces for a fake vocabulary: token 100 + 101 is "你" (shown on 100; 101 shows ""), alone 100 is "�"."""
    if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
        raise CheckFailure("pieces_of takes a list of Python ints (token ids): use tokens[seq, lo:hi].tolist().")
    out = []
    for i, t in enumerate(ids):
        if t == _LEAD:
            out.append("你" if i + 1 < len(ids) and ids[i + 1] == _REST else "\ufffd")
        elif t == _REST:
            out.append("" if i > 0 and ids[i - 1] == _LEAD else "")
        else:
            out.append(_VOCAB[int(t)])
    return out


def _context_reference(tokens: Tensor, seq: int, pos: int, before: int, after: int) -> str:
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)
    pieces = _fake_pieces(tokens[seq, lo:hi].tolist())
    centre = pos - lo
    return "".join(pieces[:centre]) + "«" + pieces[centre] + "»" + "".join(pieces[centre + 1 :])


@exercise("4.2", "A context window around an example", objects=["context_text"])
def check_context_text(context_text: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 100, (3, 30), generator=generator)
    before_copy = tokens.clone()
    got = context_text(tokens, 1, 15, _fake_pieces, before=4, after=3)
    check_that(isinstance(got, str), f"context_text should return a str, got {type(got).__name__}.")
    check_that(torch.equal(tokens, before_copy), "context_text modified the tokens it was given.")
    want = _context_reference(tokens, 1, 15, 4, 3)
    if got.count("«") != 1 or got.count("»") != 1:
        raise CheckFailure("The centre token should be wrapped once in « and », e.g. 'w3 w7 «w12 »w5 '.")
    if got != want:
        n_after = got.split("»", 1)[1].count("w")
        n_before = got.split("«", 1)[0].count("w")
        raise CheckFailure(
            f"In the middle of a row, with before=4 and after=3, the window shows {n_before} token(s) before the "
            f"centre and {n_after} after (expected 4 and 3). Hint: the slice is [pos - before, pos + after + 1)."
        )
    for pos, label in ((2, "near the start of a row (pos=2, before=4)"), (28, "near the end of a row (pos=28, after=3)")):
        if context_text(tokens, 0, pos, _fake_pieces, before=4, after=3) != _context_reference(tokens, 0, pos, 4, 3):
            raise CheckFailure(
                f"{label}: the window should stop at the row's edge. Hint: a negative slice start counts from the "
                f"end of the row in Python; clip the start with max(0, ...)."
            )
    split = tokens.clone()
    split[2, 10], split[2, 11] = _LEAD, _REST
    got = context_text(split, 2, 11, _fake_pieces, before=3, after=2)
    if got != _context_reference(split, 2, 11, 3, 2):
        raise CheckFailure(
            "A character split over two tokens (its first bytes at position 10, the rest at 11) shows as '\ufffd': "
            "each token was turned into text on its own. Hint: call pieces_of once, on the whole window's ids, "
            "so that a split character can be shown whole."
        )


# ---------------------------------------------------------------------------------------------------------
# 4.3 Interval samples by reservoir sampling


def _interval_of(value: float, max_act: float, n: int) -> int | None:
    """Interval j holds (max*j/n, max*(j+1)/n]; None for zeros."""
    if value <= 0:
        return None
    return min(max(math.ceil(value / max_act * n) - 1, 0), n - 1)


def _stream(values: Tensor, sizes: Iterable[int]) -> list[Tensor]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


@exercise("4.3", "Interval samples by reservoir sampling", objects=["interval_samples"])
def check_interval_samples(interval_samples: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    max_act, n_int, n_samples = 2.0, 4, 3
    values = torch.rand(40, generator=generator) * max_act * (torch.rand(40, generator=generator) < 0.7)
    values[[3, 17, 29]] = torch.tensor([0.5, 1.0, 2.0])  # exactly on interval edges (right-closed intervals)
    values[[5, 6]] = 0.0
    batches = _stream(values, [10, 1, 15, 14])
    copies = [b.clone() for b in batches]
    out = interval_samples(iter(batches), max_act, n_int, n_samples, torch.Generator().manual_seed(1))
    check_that(isinstance(out, tuple) and len(out) == 2, "interval_samples should return (samples, counts).")
    samples, counts = out
    check_that(all(torch.equal(a, b) for a, b in zip(batches, copies)), "interval_samples modified its input batches.")
    check_that(len(samples) == n_int and len(counts) == n_int,
               f"With n_intervals={n_int}, samples and counts should each have {n_int} entries.")
    cells = [_interval_of(float(v), max_act, n_int) for v in values]
    want_counts = [sum(c == j for c in cells) for j in range(n_int)]
    got_counts = [int(c) for c in counts]
    if got_counts != want_counts:
        zeros = sum(c is None for c in cells)
        if sum(got_counts) == sum(want_counts) + zeros:
            raise CheckFailure(
                f"The interval counts {got_counts} include the {zeros} tokens where the latent does not fire "
                f"(activation 0). Hint: intervals cover (0, max]; skip zeros entirely."
            )
        raise CheckFailure(
            f"The interval counts are {got_counts}, expected {want_counts} (activations exactly on an edge, "
            f"like 0.5 with max 2 and 4 intervals, belong to the interval below: intervals are (lo, hi]). Hint: "
            f"j = ceil(a / max * n) - 1."
        )
    for j, chosen in enumerate(samples):
        check_that(all(isinstance(t, int) for t in chosen),
                   f"Interval {j}'s samples should be Python ints (token indices), got {sorted({type(t).__name__ for t in chosen})}. "
                   f"Hint: iterate over torch.nonzero(...).flatten().tolist().")
        check_that(len(chosen) == min(want_counts[j], n_samples),
                   f"Interval {j} has {want_counts[j]} firings, so it should keep {min(want_counts[j], n_samples)} "
                   f"samples, but it keeps {len(chosen)}.")
        check_that(len(set(chosen)) == len(chosen), f"Interval {j}'s samples repeat a token: sample without replacement.")
        bad = [t for t in chosen if cells[t] != j]
        check_that(not bad, f"Interval {j} holds token(s) {bad}, whose activations are not in that interval "
                            f"(token indices count from the start of the stream, across batches).")
    again = interval_samples(iter(batches), max_act, n_int, n_samples, torch.Generator().manual_seed(1))
    check_that([sorted(map(int, s)) for s in again[0]] == [sorted(map(int, s)) for s in samples],
               "Two runs with generators of the same seed gave different samples. Hint: draw every random number "
               "from the generator you are given (torch.randint(..., generator=generator)).")

    # Uniformity: in a crowded interval every firing is kept equally often.
    crowd = torch.rand(30, generator=generator) * 0.2 + 0.05  # 30 firings, all in interval 0 of (0, 1]
    crowd[[4, 9]] = 0.0
    hits = torch.zeros(len(crowd))
    runs = 600
    for r in range(runs):
        s, _ = interval_samples(iter(_stream(crowd, [7, 13, 10])), 1.0, 2, n_samples,
                                torch.Generator().manual_seed(10_000 * seed + r))
        for t in s[0]:
            hits[int(t)] += 1
    p = chi2_test(hits[crowd > 0])
    if p < P_FALSE_ALARM:
        late, early = hits[crowd > 0][-10:].mean() / (runs * n_samples / 28), hits[crowd > 0][:10].mean() / (runs * n_samples / 28)
        raise CheckFailure(
            f"Over {runs} runs, the 28 firings of a crowded interval are not kept equally often (chi-squared "
            f"p = {p:.1e}; the first ten firings are kept {early:.2f}x and the last ten {late:.2f}x as often as "
            f"a uniform sample would). Hint: the i-th firing (i from 1) replaces a random kept sample with "
            f"probability n_samples / i (Algorithm R)."
        )


# ---------------------------------------------------------------------------------------------------------
# 4.4 Equal-count quantile groups


@exercise("4.4", "Equal-count quantile groups", objects=["quantile_group_edges"])
def check_quantile_group_edges(quantile_group_edges: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    exponential = -torch.log(torch.rand(200, generator=generator)) / 2
    acts = (exponential * (torch.rand(200, generator=generator) < 0.6)).float()
    copy = acts.clone()
    n_groups = 5
    edges = quantile_group_edges(acts, n_groups)
    assert_shape(edges, (n_groups + 1,), "edges")
    check_that(edges.dtype == torch.float32, f"edges should be float32, got {edges.dtype}.")
    check_that(torch.equal(acts, copy), "quantile_group_edges modified the activations it was given.")
    firing = acts[acts > 0]
    check_that(float(edges[0]) == 0.0 and math.isclose(float(edges[-1]), float(firing.max()), rel_tol=1e-6),
               "The first edge should be 0 and the last the largest activation, so the groups cover (0, max].")
    check_that(bool(torch.all(edges[1:] >= edges[:-1])), "The edges should be non-decreasing.")
    counts = [int(((firing > edges[g]) & (firing <= edges[g + 1])).sum()) for g in range(n_groups)]
    target = len(firing) / n_groups
    if any(abs(c - target) > 1 for c in counts):
        with_zeros = [int(((acts >= edges[g]) & (acts <= edges[g + 1])).sum()) for g in range(n_groups)]
        if abs(with_zeros[0] - len(acts) / n_groups) <= 2 or float(edges[1]) == 0.0:
            raise CheckFailure(
                f"The groups hold {counts} firings: the zeros (tokens where the latent does not fire) were counted "
                f"when placing the edges. Hint: take the quantiles of the positive activations only."
            )
        raise CheckFailure(
            f"On {len(firing)} firings (exponentially distributed), the {n_groups} groups hold {counts} firings; "
            f"equal-count groups hold {target:.0f} each (within one). Hint: the edges are quantiles of the firings "
            f"at 1/n, 2/n, ...: torch.quantile, not equal-width steps from 0 to max."
        )


# ---------------------------------------------------------------------------------------------------------
# 4.5 A token's activation quantile, from the histogram sketch


def _quantile_reference(edges: Tensor, counts: Tensor, values: Tensor) -> Tensor:
    out = []
    total = float(counts.sum())
    for v in values.tolist():
        if v <= 0:
            out.append(0.0)
            continue
        b = 0
        while b < len(counts) - 1 and v >= float(edges[b + 1]):
            b += 1
        lo, hi = math.log(float(edges[b])), math.log(float(edges[b + 1]))
        frac = min(max((math.log(v) - lo) / (hi - lo), 0.0), 1.0)
        out.append((float(counts[:b].sum()) + frac * float(counts[b])) / total)
    return torch.tensor(out)


@exercise("4.5", "A token's activation quantile", objects=["quantile_from_histogram"])
def check_quantile_from_histogram(quantile_from_histogram: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    edges = torch.logspace(-2, 1, 7)  # 6 bins over [0.01, 10]
    counts = torch.randint(1, 20, (6,), generator=generator)
    edges_copy, counts_copy = edges.clone(), counts.clone()
    at_edges = edges.clone()
    q = quantile_from_histogram(edges, counts, at_edges)
    assert_shape(q, (7,), "the quantiles of 7 values")
    check_that(q.dtype == torch.float32, f"the quantiles should be float32, got {q.dtype}.")
    check_that(torch.equal(edges, edges_copy) and torch.equal(counts, counts_copy),
               "quantile_from_histogram modified its inputs.")
    want = torch.cat([torch.zeros(1), counts.cumsum(0).float() / counts.sum()])
    if not torch.allclose(q.float(), want, atol=1e-5):
        raise CheckFailure(
            "At the histogram's edges the quantile is exact: at edge b it is the fraction of firings in bins "
            "0..b-1. Your values there are off. Hint: count the bins below the value's bin, plus a fraction of "
            "its own bin (0 at its lower edge)."
        )
    zero = quantile_from_histogram(edges, counts, torch.tensor([0.0, -1.0, 0.005, 50.0]))
    check_that(torch.allclose(zero.float(), torch.tensor([0.0, 0.0, 0.0, 1.0])),
               "A value <= 0 (the latent does not fire) has quantile 0, so has a value below the first edge (0.005 "
               "with edges from 0.01; clamp the fraction to [0, 1]); a value above the last edge has quantile 1.")
    mids = (edges[:-1] * edges[1:]).sqrt()  # geometric midpoints: half-way in log space
    values = torch.cat([mids, torch.rand(20, generator=generator) * 9.99 + 0.01])
    got = quantile_from_histogram(edges, counts, values).float()
    if not torch.allclose(got, _quantile_reference(edges, counts, values), atol=1e-5):
        if not torch.allclose(got[:6], want[:-1] + 0.5 * counts / counts.sum(), atol=1e-5):
            raise CheckFailure(
                "Inside a bin the quantile should grow linearly in log(value): at the geometric midpoint "
                "sqrt(lo * hi) of a bin, half of that bin's firings are counted. Hint: "
                "frac = (log v - log lo) / (log hi - log lo)."
            )
        raise CheckFailure("Between the edges your quantiles differ from the log-linear interpolation of the sketch.")


# ---------------------------------------------------------------------------------------------------------
# 4.6 The exact loss effect of removing a latent


def _tiny_model(seed: int):
    """A random one-layer GELU transformer (d_model 16, d_mlp 32, vocab 40, context 12) with LayerNorm."""
    from utils.lm.loading import new_model

    model = new_model(dict(n_layers=1, d_model=16, d_head=4, n_heads=4, d_mlp=32, n_ctx=12, d_vocab=40,
                           act_fn="gelu", normalization_type="LN", device="cpu", seed=seed))
    generator = torch.Generator().manual_seed(500 + seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".W_" in name or "W_U" in name or name.endswith(("W_E", "W_pos")):
                param.copy_(2.0 * torch.randn(param.shape, generator=generator) / math.sqrt(param.shape[-2]))
    return model.eval().requires_grad_(False)


def _tiny_sae(seed: int):
    from utils.sae.model import SAE, SAEConfig

    sae = SAE(SAEConfig(d_in=32, d_sae=24, architecture="standard", seed=seed))
    with torch.no_grad():
        sae.b_enc.fill_(-0.05)
        sae.W_enc.mul_(3.0)
    return sae.requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _tiny_case(seed: int):
    """The tiny model, SAE and tokens of a seed, with the patched-forward effects at the checked positions."""
    model, sae = _tiny_model(seed), _tiny_sae(seed)
    tokens = torch.randint(0, 40, (10,), generator=torch.Generator().manual_seed(seed))
    return model, sae, tokens, {pos: _patched_effects(model, sae, tokens, pos) for pos in EFFECT_POSITIONS}


EFFECT_POSITIONS = (1, 7)


def _patched_effects(model, sae, tokens: Tensor, pos: int) -> Tensor:
    """Real patched forward passes, batched: row i removes a_f * W_dec[f] at ``pos`` for the i-th active latent f."""
    hook = sae.cfg.hook_name
    acts = sae.encode(model.run_with_cache(tokens[None], names_filter=hook)[1][hook][0, pos])
    active = torch.nonzero(acts > 0).flatten()
    rows = tokens[None].expand(len(active) + 1, -1)  # the last row stays clean

    def remove(post: Tensor, hook) -> Tensor:
        post = post.clone()
        post[: len(active), pos] -= acts[active, None] * sae.W_dec[active]
        return post

    logits = model.run_with_hooks(rows, fwd_hooks=[(hook, remove)])[:, pos]
    losses = F.cross_entropy(logits, tokens[pos + 1].expand(len(rows)), reduction="none")
    effects = torch.zeros(sae.cfg.d_sae)
    effects[active] = losses[:-1] - losses[-1]
    return effects


@exercise("4.6", "The exact loss effect of removing a latent", objects=["loss_effects_at"])
def check_loss_effects_at(loss_effects_at: Callable, *, seed: int = 0) -> None:
    model, sae, tokens, patched = _tiny_case(seed)
    copy = tokens.clone()
    for pos in EFFECT_POSITIONS:
        got = loss_effects_at(model, sae, tokens, pos)
        assert_shape(got, (sae.cfg.d_sae,), f"the loss effects at position {pos}")
        check_that(got.dtype == torch.float32, f"the loss effects should be float32, got {got.dtype}.")
        check_that(torch.equal(tokens, copy), "loss_effects_at modified the tokens.")
        want = patched[pos]
        active = want != 0
        check_that(bool(active.sum() >= 3), "internal: the tiny SAE should have several active latents")
        check_that(bool(torch.all(got[~active].abs() < 1e-5)),  # rounding, when they are computed anyway
                   f"At position {pos}, latents that do not fire there have nonzero effects: removing a latent "
                   f"whose activation is 0 removes nothing.")
        if not torch.allclose(got.detach(), want, atol=2e-4, rtol=1e-3):
            raise CheckFailure(
                f"At position {pos} of a tiny random model, your loss effects differ from a real forward pass "
                f"with a * W_dec[f] removed from the MLP activation (largest difference "
                f"{float((got.detach() - want).abs().max()):.3g}). Check, in order: the removal is scaled by the "
                f"activation a; it moves the final residual by (a * W_dec[f]) @ W_out; the final LayerNorm is "
                f"recomputed on the changed residual (not the clean one's scale reused); the loss is that of "
                f"predicting tokens[pos + 1]."
            )


# ---------------------------------------------------------------------------------------------------------
# 4.7 Ranking the latents three ways


@exercise("4.7", "The prompt-centric view: ranking latents", objects=["rank_latents"])
def check_rank_latents(rank_latents: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    d_sae = 30
    acts = torch.rand(d_sae, generator=generator) * (torch.rand(d_sae, generator=generator) < 0.5)
    quantiles = torch.where(acts > 0, torch.rand(d_sae, generator=generator), torch.zeros(d_sae))
    effects = torch.where(acts > 0, torch.randn(d_sae, generator=generator), torch.zeros(d_sae))
    biggest = int(torch.nonzero(acts > 0)[0])
    effects[biggest] = -5.0  # the largest effect is negative: removing the latent *lowers* the loss
    inputs = (acts.clone(), quantiles.clone(), effects.clone())
    for by, values, key in (("act", acts, acts), ("quantile", quantiles, quantiles), ("loss_effect", effects, effects.abs())):
        got = rank_latents(acts, quantiles, effects, by, 5)
        check_that(isinstance(got, list) and all(isinstance(i, int) for i in got),
                   f'rank_latents(..., by="{by}") should return a list of 5 latent ids (Python ints).')
        check_that(len(got) == 5, f'rank_latents(..., by="{by}", n=5) returned {len(got)} latents, expected 5.')
        want = torch.argsort(key, descending=True, stable=True)[:5]
        if [float(key[i]) for i in got] != [float(key[i]) for i in want]:
            if by == "loss_effect" and biggest not in got:
                raise CheckFailure(
                    'by="loss_effect" should rank by the size of the effect, either sign: the latent with effect '
                    "-5 (its removal lowers the loss by 5 nats) is missing. Hint: sort by effects.abs()."
                )
            raise CheckFailure(
                f'by="{by}": the 5 latents returned are not those with the largest {by} values, largest first. '
                f"Hint: torch.argsort(..., descending=True) on the values that `by` names."
            )
    check_that(all(torch.equal(a, b) for a, b in zip(inputs, (acts, quantiles, effects))), "rank_latents modified its inputs.")
