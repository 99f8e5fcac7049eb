"""Checks for Part 4 (what makes a latent fire).

Each check runs on small synthetic inputs built here and compares with a plain brute-force reference written
in this module: sparse activation matrices with continuous values (no ties), short activation streams of one
latent, random histograms, and for the loss effect (4.6) a tiny one-layer transformer and SAE whose every
parameter looks trained (:mod:`utils.checks.fixtures`: LayerNorm weights 1 ± 0.3 and non-zero biases, ``b_U``,
``b_out``, ``b_enc``, ``b_dec`` non-zero, decoder rows of unequal norms), registered with
:func:`~utils.checks.fixtures.sensitivity` so that ``tests/course/test_fixtures.py`` proves that code leaving any
of them out cannot pass. Each check first asserts that its fixture takes the branches it tests (latents that
fire fewer than k times and some that never fire, zeros in a stream, active and inactive latents at a
position, a negative loss effect...).

Sampling (4.3) is checked as a distribution, per token of a stream and per interval, with exact binomial tests
whose false-alarm rate is ``ALPHA`` = 1e-8 each (12 of them: below 1e-6 per run); the check's docstring states
its power against each classic mistake of reservoir sampling, recomputed by ``tests/course/test_power_04.py``.
A failure message gives the measured values, and names a cause only when the measured frequencies match that
cause's prediction and no other's.

No exercise of this part is trained through: the checks demand no gradient, and a correct answer computed under
``torch.no_grad()`` passes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (
    CheckFailure,
    assert_randomness_contract,
    assert_shape,
    binom_test,
    check_that,
    exercise,
    one_thread,
    shown_apart,
    unchanged_inputs,
)
from utils.checks.fixtures import assert_fixture, sensitivity, trained_like_model, trained_like_sae

__all__ = [
    "check_context_text",
    "check_interval_samples",
    "check_latent_precision_recall",
    "check_loss_effects_at",
    "check_quantile_from_histogram",
    "check_quantile_group_edges",
    "check_rank_latents",
    "check_update_top_k",
]

#: The false-alarm probability of each statistical test (4.3's check runs 12 of them).
ALPHA = 1e-8
#: How many standard errors a measured frequency may stray from a prediction (two-sided p < ALPHA).
Z = NormalDist().inv_cdf(1 - ALPHA / 2)

#: The exercises whose check has no parameter that could take a trivial value (1, 0, unit norm), and why.
FIXTURE_FREE = {
    "4.1": "update_top_k takes running lists and a batch of activations (continuous, no ties): there is no weight "
    "or bias to leave at a trivial value",
    "4.2": "context_text takes token ids, a position and a function that turns ids into text: there is no weight or "
    "bias to leave at a trivial value",
    "4.3": "interval_samples takes a stream of activations, a maximum, two sizes and a generator: there is no weight "
    "or bias to leave at a trivial value",
    "4.4": "quantile_group_edges takes activations and a number of groups: there is no weight or bias to leave at a "
    "trivial value",
    "4.5": "quantile_from_histogram takes a histogram's edges and counts (random counts, none shared by all bins) and "
    "values: there is no weight or bias to leave at a trivial value",
    "4.7": "rank_latents takes three vectors of per-latent statistics and a name: there is no weight or bias to leave "
    "at a trivial value",
    "4.8": "latent_precision_recall takes each token's active latent ids (an SAE's sparse code, drawn here with "
    "unequal "
    "weights and empty slots) and a boolean label: there is no weight or bias to leave at a trivial value",
}


@contextlib.contextmanager
def _left_alone(what: str, hint: str, **inputs: Tensor):
    """Fail if the block modifies any of ``inputs`` in place, with a hint that fits the exercise."""
    copies = {name: t.detach().clone() for name, t in inputs.items()}
    yield
    for name, before in copies.items():
        after = inputs[name].detach()
        if after.shape != before.shape or not torch.equal(after, before):
            raise CheckFailure(f"{what} modified its input `{name}` in place. Hint: {hint}")


def _gen(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 * salt + seed)


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _sparse_acts(n_tok: int, d_sae: int, generator: torch.Generator) -> Tensor:
    """Non-negative activations [n_tok, d_sae], about 40% nonzero, continuous; latent 0 fires twice, the last never."""
    acts = torch.rand(n_tok, d_sae, generator=generator) * (torch.rand(n_tok, d_sae, generator=generator) < 0.4)
    acts[:, 0] = 0.0
    acts[torch.randperm(n_tok, generator=generator)[:2], 0] = torch.rand(2, generator=generator) + 0.1
    acts[:, -1] = 0.0
    return acts


# ---------------------------------------------------------------------------------------------------------
# 4.1 Streaming top-k


def _positive(values: Tensor, idx: Tensor) -> list[tuple[float, int]]:
    """The kept (activation, token) pairs with a positive activation, largest first."""
    return sorted(((float(v), int(i)) for v, i in zip(values, idx) if v > 0), reverse=True)


def _brute_top_k(acts: Tensor, k: int, first_index: int = 0) -> list[list[tuple[float, int]]]:
    """Per latent, its k largest positive activations in ``acts`` with their stream indices, largest first."""
    out = []
    for f in range(acts.shape[1]):
        pairs = sorted(((float(a), first_index + t) for t, a in enumerate(acts[:, f].tolist()) if a > 0), reverse=True)
        out.append(pairs[:k])
    return out


def _same_pairs(got: list[tuple[float, int]], want: list[tuple[float, int]]) -> bool:
    return [(round(v, 6), i) for v, i in got] == [(round(v, 6), i) for v, i in want]


def _update(
    update_top_k: Callable, top_acts: Tensor, top_idx: Tensor, acts: Tensor, first_index: int, on: str
) -> tuple[Tensor, Tensor]:
    """Call the learner's update_top_k, checking its result's type, shapes and dtypes and that it leaves its inputs
    alone; a crash is reported with the input that caused it."""
    try:
        with _left_alone(
            "update_top_k",
            "return new tensors (torch.cat and topk make them), and leave the running "
            "lists and the batch you are given as they are: the caller may still hold them.",
            top_acts=top_acts,
            top_idx=top_idx,
            acts=acts,
        ):
            out = update_top_k(top_acts, top_idx, acts, first_index)
    except (CheckFailure, NotImplementedError):
        raise
    except Exception as error:
        raise CheckFailure(
            f"on {on}, update_top_k raised {type(error).__name__}: {error}. Hint: a batch can hold "
            f"fewer tokens than k (the last batch of a stream, or a one-token batch): merge the "
            f"running lists with the batch first, then take the top k of the merge."
        ) from error
    check_that(
        isinstance(out, tuple) and len(out) == 2,
        f"update_top_k should return a tuple (top_acts, top_idx), got {type(out).__name__}.",
    )
    new_acts, new_idx = out
    d_sae, k = top_acts.shape
    assert_shape(new_acts, (d_sae, k), f"top_acts returned on {on}")
    assert_shape(new_idx, (d_sae, k), f"top_idx returned on {on}")
    check_that(
        new_acts.dtype == torch.float32,
        f"top_acts should be float32 (the activations' dtype), got {new_acts.dtype} on {on}.",
    )
    check_that(
        new_idx.dtype == torch.long,
        f"top_idx should be int64 (torch.long: token indices), got {new_idx.dtype} on {on}. Hint: build the "
        "merged indices from top_idx and torch.arange (both int64), not with full_like of the activations.",
    )
    return new_acts, new_idx


@exercise("4.1", "Streaming top-k", objects=["update_top_k"])
def check_update_top_k(update_top_k: Callable, *, seed: int = 0) -> None:
    """One batch, one batch at a later first_index, a stream of batches of uneven sizes (one of 1 token, fewer than
    k): the kept activations and token indices equal the brute-force top k; the result's shapes and dtypes; the
    inputs (running lists and batch) left unchanged."""
    generator = _gen(seed, 1)
    d_sae, k = 6, 4
    empty = torch.zeros(d_sae, k), torch.full((d_sae, k), -1, dtype=torch.long)

    acts = _sparse_acts(15, d_sae, generator)
    fires = (acts > 0).sum(0)
    assert_fixture(
        bool((fires == 0).any() and ((fires > 0) & (fires < k)).any() and (fires > k).any()),
        "some latents fire more than k times, some fewer, one never",
    )
    on = "one batch of 15 tokens (first_index=0)"
    top_acts, top_idx = _update(update_top_k, empty[0].clone(), empty[1].clone(), acts, 0, on)
    want = _brute_top_k(acts, k)
    for f in range(d_sae):
        got = _positive(top_acts[f], top_idx[f])
        if [round(v, 6) for v, _ in got] != [round(v, 6) for v, _ in want[f]]:
            raise CheckFailure(
                f"On {on}, latent {f} keeps the activations {_fmt(v for v, _ in got)}, but its {k} largest in the "
                f"batch are {_fmt(v for v, _ in want[f])}. Hint: rows of top_acts are latents and the batch is "
                f"[n_tok, d_sae]: take the top k over the token axis of acts.T, after putting the running lists and "
                f"the batch side by side."
            )
        if [i for _, i in got] != [i for _, i in want[f]]:
            raise CheckFailure(
                f"On {on}, latent {f}'s kept activations are right but their token indices are {[i for _, i in got]}, "
                f"not {[i for _, i in want[f]]}. Hint: topk returns positions in what you concatenated; map them back "
                f"through the concatenated index list (gather)."
            )
    unsorted = (top_acts[:, :-1] < top_acts[:, 1:]).any(1).nonzero().flatten().tolist()
    check_that(
        not unsorted,
        f"Each row of top_acts should be sorted, largest first; on {on} the rows of latents {unsorted} are not.",
    )

    acts = _sparse_acts(9, d_sae, generator)
    on = "one batch of 9 tokens at first_index=100"
    top_acts, top_idx = _update(update_top_k, empty[0].clone(), empty[1].clone(), acts, 100, on)
    want = _brute_top_k(acts, k, 100)
    for f in range(d_sae):
        got = _positive(top_acts[f], top_idx[f])
        if not _same_pairs(got, want[f]):
            raise CheckFailure(
                f"On {on}, latent {f} keeps tokens {[i for _, i in got]}, expected {[i for _, i in want[f]]}: the "
                f"indices should be positions in the whole token stream (100, 101, ...), not positions within the "
                f"batch. Hint: add first_index to the batch's token positions."
            )

    sizes = [13, 1, 20, 7, 16]
    stream = _sparse_acts(sum(sizes), d_sae, generator)
    top_acts, top_idx = empty[0].clone(), empty[1].clone()
    start = 0
    for b, size in enumerate(sizes):
        top_acts, top_idx = _update(
            update_top_k,
            top_acts,
            top_idx,
            stream[start : start + size],
            start,
            f"batch {b} ({size} token{'s' if size > 1 else ''}, first_index={start}) of a "
            f"stream of {len(sizes)} batches",
        )
        start += size
    want = _brute_top_k(stream, k)
    for f in range(d_sae):
        got = _positive(top_acts[f], top_idx[f])
        if not _same_pairs(got, want[f]):
            raise CheckFailure(
                f"After a stream of {len(sizes)} batches of {sizes} tokens, latent {f} keeps tokens "
                f"{[i for _, i in got]}, but its top {k} over the whole stream are tokens {[i for _, i in want[f]]}: "
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
            out.append("")
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
    """The window in the middle of a row, at its start and at its end (clipped), and around a character split over
    two tokens; a str result; the tokens left unchanged."""
    generator = _gen(seed, 2)
    tokens = torch.stack([torch.randperm(100, generator=generator)[:30] for _ in range(3)])
    assert_fixture(
        all(len(set(row.tolist())) == len(row) for row in tokens),
        "the tokens of a row are distinct, so that a window shifted or cut by one shows other text",
    )
    with unchanged_inputs("context_text", tokens=tokens):
        got = context_text(tokens, 1, 15, _fake_pieces, before=4, after=3)
    check_that(
        isinstance(got, str),
        f'context_text should return a str, got {type(got).__name__}. Hint: join the pieces with "".join(...).',
    )
    want = _context_reference(tokens, 1, 15, 4, 3)
    if got.count("«") != 1 or got.count("»") != 1:
        raise CheckFailure(f"The centre token should be wrapped once in « and », e.g. {want!r}; got {got!r}.")
    if got != want:
        n_before, n_after = got.split("«", 1)[0].count("w"), got.split("»", 1)[1].count("w")
        raise CheckFailure(
            f"In the middle of a row (pos=15 of 30), with before=4 and after=3, the window shows {n_before} token(s) "
            f"before the centre and {n_after} after (expected 4 and 3): got {got!r}, expected {want!r}. Hint: the "
            f"slice is [pos - before, pos + after + 1)."
        )
    cases = (
        (
            0,
            2,
            "near the start of a row (pos=2, before=4)",
            "a negative slice start counts from the end of the row in Python; clip the start with max(0, pos - before)",
        ),
        (0, 0, "at the first token of a row (pos=0)", "clip the start with max(0, pos - before)"),
        (2, 28, "near the end of a row (pos=28 of 30, after=3)", "clip the end with min(row length, pos + after + 1)"),
    )
    for seq, pos, label, hint in cases:
        got, want = (
            context_text(tokens, seq, pos, _fake_pieces, before=4, after=3),
            _context_reference(tokens, seq, pos, 4, 3),
        )
        if got != want:
            raise CheckFailure(
                f"{label}: the window should stop at the row's edge; got {got!r}, expected {want!r}. Hint: {hint}."
            )
    split = tokens.clone()
    split[2, 10], split[2, 11] = _LEAD, _REST
    got = context_text(split, 2, 11, _fake_pieces, before=3, after=2)
    want = _context_reference(split, 2, 11, 3, 2)
    if got != want:
        raise CheckFailure(
            f"A character split over two tokens (its first bytes at position 10, the rest at 11) should show whole: "
            f"expected {want!r}, got {got!r}."
            + (
                " It shows as '\ufffd': each token was turned into text on its own. Hint: call pieces_of once, on the "
                "whole window's ids, so that a split character can be shown whole."
                if "\ufffd" in got
                else ""
            )
        )


# ---------------------------------------------------------------------------------------------------------
# 4.3 Interval samples by reservoir sampling

#: 4.3's sampling design: one stream of 21 tokens in batches of 6, 1, 8 and 6, with max_act = 1, 3 intervals and
#: n_samples = 2. Each entry is the interval of the token's activation (None: the latent does not fire there):
#: intervals 0 and 2 fire 3 times, interval 1 six times, interleaved, so that each interval's third firing comes
#: late in the stream and after a batch boundary; 9 zeros, 3 of them first, set a token's position apart from its
#: rank among the firings (two mistaken counters the check tells apart).
SAMPLING_STREAM = (None, None, None, 1, 0, None, 2, 1, None, 0, 1, None, 2, 1, 1, None, 0, None, 2, None, 1)
SAMPLING_BATCHES = (6, 1, 8, 6)
SAMPLING_N_INTERVALS, SAMPLING_N_SAMPLES, SAMPLING_MAX_ACT = 3, 2, 1.0
#: How many times the check runs the learner's interval_samples on that stream (one generator, drawn on).
SAMPLING_RUNS = 1000

#: Ways to fill a reservoir: the probability that the m-th firing of an interval (m > n_samples, counted from 1)
#: replaces one of the kept samples, chosen uniformly, given also its rank g among the firings of all intervals and
#: its token index t in the stream. Algorithm R is the right one; each other is a classic mistake (a per-token test
#: tells them apart from it, and the check names one when the frequencies fit it and no other).
RESERVOIR_RULES: dict[str, Callable[[int, int, int, int], float]] = {
    "Algorithm R": lambda m, g, t, n: n / m,
    "an index off by one, r drawn from {0, ..., i}": lambda m, g, t, n: n / (m + 1),
    "an index off by one, r drawn from {0, ..., i - 2}": lambda m, g, t, n: min(1.0, n / (m - 1)),
    "one counter shared across intervals": lambda m, g, t, n: min(1.0, n / g),
    "the token's position in the stream as the counter": lambda m, g, t, n: min(1.0, n / (t + 1)),
    "a probability of 1 / i instead of n_samples / i": lambda m, g, t, n: 1 / m,
    "a bias towards the first items (the first n_samples are never replaced)": lambda m, g, t, n: 0.0,
    "a bias towards the last items (every later firing replaces one)": lambda m, g, t, n: 1.0,
}
#: What each mistake looks like in code, for the failure message.
RESERVOIR_CAUSES = {
    "an index off by one, r drawn from {0, ..., i}": (
        "r is drawn from {0, ..., i} (torch.randint(i + 1, ...)), one value too many: an index off by one. Draw it "
        "from {0, ..., i - 1}: torch.randint(i, ...) excludes its upper bound"
    ),
    "an index off by one, r drawn from {0, ..., i - 2}": (
        "r is drawn from {0, ..., i - 2}, one value too few: an index off by one (a draw before the count is "
        "incremented, or torch.randint(i - 1, ...)). Increment the interval's count first, then draw from "
        "torch.randint(count, ...)"
    ),
    "one counter shared across intervals": (
        "i counts the firings of every interval: one counter shared across intervals. Keep one count per interval "
        "and use the interval's own count"
    ),
    "the token's position in the stream as the counter": (
        "i is the token's position in the stream, which counts the zeros and the other intervals' firings too. "
        "Use the interval's own count of firings"
    ),
    "a probability of 1 / i instead of n_samples / i": (
        "a firing replaces a kept sample with probability 1 / i instead of n_samples / i"
    ),
    "a bias towards the first items (the first n_samples are never replaced)": (
        "the first n_samples firings of each interval are kept and never replaced: a bias towards the first items"
    ),
    "a bias towards the last items (every later firing replaces one)": (
        "every firing after the first n_samples replaces a kept one (probability 1, not n_samples / i): a bias "
        "towards the last items"
    ),
}
#: The mistakes 4.3's check names in its docstring, with the power claimed against each (the probability that the
#: check rejects code that makes it); tests/course/test_power_04.py recomputes every one.
POWER_CLAIMS: dict[str, dict[str, float]] = {
    "4.3": {**dict.fromkeys(RESERVOIR_CAUSES, 1 - 1e-06), "sampling with replacement": 1 - 1e-6},
}


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


def _firings_of_design() -> list[tuple[int, int, int, int]]:
    """(token t, interval j, rank m in its interval, rank g among all firings) of each firing of SAMPLING_STREAM."""
    seen, out = [0] * SAMPLING_N_INTERVALS, []
    for t, j in enumerate(SAMPLING_STREAM):
        if j is not None:
            seen[j] += 1
            out.append((t, j, seen[j], len(out) + 1))
    return out


def reservoir_marginals(rule: Callable[[int, int, int, int], float], n: int = SAMPLING_N_SAMPLES) -> dict[int, float]:
    """The probability that each firing token of SAMPLING_STREAM ends up in its interval's sample, when the m-th
    firing (m > n) replaces a uniformly chosen kept sample with probability ``rule(m, g, t, n)``: it enters with
    that probability (1 while the reservoir fills) and survives each later entry with probability 1 - q / n."""
    firings = _firings_of_design()
    q = {t: (1.0 if m <= n else rule(m, g, t, n)) for t, _, m, g in firings}
    out = {}
    for t, j, m, _ in firings:
        survive = 1.0
        for t2, j2, m2, _ in firings:
            if j2 == j and m2 > max(m, n):
                survive *= 1 - q[t2] / n
        out[t] = q[t] * survive
    return out


def _design_values(generator: torch.Generator) -> Tensor:
    """Activations for SAMPLING_STREAM: inside each interval, away from its edges; the largest exactly max_act."""
    n = SAMPLING_N_INTERVALS
    u = 0.1 + 0.8 * torch.rand(len(SAMPLING_STREAM), generator=generator)
    values = torch.tensor(
        [0.0 if j is None else (j + float(u[t])) / n * SAMPLING_MAX_ACT for t, j in enumerate(SAMPLING_STREAM)]
    )
    values[max(t for t, j in enumerate(SAMPLING_STREAM) if j == n - 1)] = SAMPLING_MAX_ACT
    return values


def _validate_samples(
    out, cells: list[int | None], n_int: int, n_samples: int, on: str, *, membership_only: bool = False
) -> tuple[list[list[int]], list[int]]:
    """The structure of interval_samples' result: types, counts, sizes, tokens in their interval, no repeats."""
    check_that(
        isinstance(out, tuple) and len(out) == 2,
        f"interval_samples should return a tuple (samples, counts), got {type(out).__name__}.",
    )
    samples, counts = out
    check_that(
        isinstance(samples, list) and isinstance(counts, list),
        f"samples and counts should be lists (of lists of token indices, and of ints), got "
        f"{type(samples).__name__} and {type(counts).__name__}.",
    )
    check_that(
        len(samples) == n_int and len(counts) == n_int,
        f"With n_intervals={n_int}, samples and counts should each have {n_int} entries, got {len(samples)} "
        f"and {len(counts)} on {on}.",
    )
    check_that(
        all(isinstance(c, int) for c in counts),
        f"counts should be Python ints, got {sorted({type(c).__name__ for c in counts})}.",
    )
    want_counts = [sum(c == j for c in cells) for j in range(n_int)]
    if counts != want_counts:
        zeros = sum(c is None for c in cells)
        if sum(counts) == sum(want_counts) + zeros:
            raise CheckFailure(
                f"On {on}, the interval counts {counts} include the {zeros} tokens where the latent does not fire "
                f"(expected {want_counts}). Hint: intervals cover (0, max]; skip zeros entirely."
            )
        raise CheckFailure(
            f"On {on}, the interval counts are {counts}, expected {want_counts}. Hint: interval j holds the "
            f"activations a with j/n * max < a <= (j+1)/n * max, so j = ceil(a / max * n) - 1, and an activation "
            f"exactly on an edge (0.5 with max 2 and 4 intervals) belongs to the interval below."
        )
    for j, chosen in enumerate(samples):
        if not (isinstance(chosen, list) and all(isinstance(t, int) for t in chosen)):
            kinds = sorted({type(t).__name__ for t in chosen}) if isinstance(chosen, (list, tuple)) else []
            raise CheckFailure(
                f"Interval {j}'s samples should be a list of Python ints (token indices), got a "
                f"{type(chosen).__name__}" + (f" of {kinds}" if kinds else "") + ". Hint: iterate over "
                "torch.nonzero(...).flatten().tolist()."
            )
        bad = [t for t in chosen if not (0 <= t < len(cells)) or cells[t] != j]
        check_that(
            not bad,
            f"On {on}, interval {j} holds token(s) {bad}, whose activations are not in that interval "
            f"(token indices count from the start of the stream, across batches).",
        )
    if membership_only:
        return samples, counts
    for j, chosen in enumerate(samples):
        check_that(
            len(chosen) == min(want_counts[j], n_samples),
            f"On {on}, interval {j} has {want_counts[j]} firings, so it should keep "
            f"{min(want_counts[j], n_samples)} samples, but it keeps {len(chosen)}: {chosen}.",
        )
        check_that(
            len(set(chosen)) == len(chosen),
            f"On {on}, interval {j}'s samples {chosen} repeat a token: a sample must be drawn without "
            f"replacement (each firing kept at most once).",
        )
    return samples, counts


def _keep_everything(interval_samples: Callable, seed: int) -> None:
    """With n_samples above every interval's count, the samples are all the firings, by their index in the stream."""
    batches = [torch.tensor([0.3, 0.0, 0.8, 0.0]), torch.tensor([0.55]), torch.tensor([0.0, 0.3, 0.0, 0.0, 1.0])]
    cells = [_interval_of(float(v), 1.0, 2) for v in torch.cat(batches)]
    want = [[t for t, c in enumerate(cells) if c == j] for j in range(2)]
    on = "a stream of 10 tokens in batches of 4, 1 and 5 (max_act=1, 2 intervals, n_samples=5: every firing is kept)"
    samples, _ = _validate_samples(
        interval_samples(iter(batches), 1.0, 2, 5, torch.Generator().manual_seed(seed)),
        cells,
        2,
        5,
        on,
        membership_only=True,
    )
    got = [sorted(chosen) for chosen in samples]
    if got == want:
        return
    starts = [0, 4, 5]
    local = [sorted(t - max(s for s in starts if s <= t) for t in kept) for kept in want]
    if got == local:
        raise CheckFailure(
            f"On {on}, the samples are {got}, expected {want}: these are positions within each batch. "
            f"Token indices count from the start of the stream, across batches (the first token of the "
            f"second batch is token 4)."
        )
    repeated = [kept for kept in got if len(set(kept)) < len(kept)]
    check_that(
        not repeated,
        f"On {on}, the samples {repeated} repeat a token: a sample must be drawn without "
        f"replacement (each firing kept at most once).",
    )
    raise CheckFailure(
        f"On {on}, the samples are {got}, expected every firing of each interval, {want}. Hint: keep "
        f"each firing while an interval holds fewer than n_samples."
    )


def _uniformity(interval_samples: Callable, generator: torch.Generator) -> tuple[str, bool] | None:
    """Run the design SAMPLING_RUNS times; an exact binomial test per firing token of how often it is kept. None if
    every test passes, else the failure message and whether it names a cause."""
    values = _design_values(generator)
    batches = _stream(values, SAMPLING_BATCHES)
    n_int, n_samples, runs = SAMPLING_N_INTERVALS, SAMPLING_N_SAMPLES, SAMPLING_RUNS
    cells = list(SAMPLING_STREAM)
    assert_fixture(
        [_interval_of(float(v), SAMPLING_MAX_ACT, n_int) for v in values] == cells,
        "the design's activations fall in their intervals",
    )
    on = f"the {len(cells)}-token stream of the uniformity test"
    members = [{t for t, c in enumerate(cells) if c == j} for j in range(n_int)]
    size = [min(len(m), n_samples) for m in members]
    kept = [0] * len(cells)
    for run in range(runs):
        samples, counts = interval_samples(iter(batches), SAMPLING_MAX_ACT, n_int, n_samples, generator)
        if run == 0:
            _validate_samples((samples, counts), cells, n_int, n_samples, on)
        for j, chosen in enumerate(samples):
            if len(chosen) != size[j] or len(set(chosen)) != size[j] or not set(chosen) <= members[j]:
                _validate_samples((samples, counts), cells, n_int, n_samples, f"run {run + 1} of {on}")
            for t in chosen:
                kept[t] += 1
    expected = reservoir_marginals(RESERVOIR_RULES["Algorithm R"])
    p_values = {t: binom_test(kept[t], runs, p) for t, p in expected.items()}
    worst = min(p_values, key=p_values.get)
    if p_values[worst] >= ALPHA:
        return None
    j = cells[worst]
    tokens = sorted(members[j])
    measured = {t: kept[t] / runs for t in expected}
    fits = [
        name
        for name, rule in RESERVOIR_RULES.items()
        if name != "Algorithm R"
        and all(
            abs(measured[t] - p) <= Z * math.sqrt(p * (1 - p) / runs) + 1e-9
            for t, p in reservoir_marginals(rule).items()
        )
    ]
    message = (
        f"The firings of an interval are not kept equally often. Over {runs} runs of one stream of {len(cells)} "
        f"tokens (max_act=1, {n_int} intervals holding {[len(m) for m in members]} firings, n_samples={n_samples}), "
        f"interval {j}'s firings (tokens {tokens}) were kept {[kept[t] for t in tokens]} times; a uniform sample "
        f"keeps each in {min(n_samples, len(tokens))}/{len(tokens)} of the runs, {runs * expected[worst]:.0f} times "
        f"(exact binomial test at token {worst}: p = {p_values[worst]:.1e})."
    )
    if len(fits) == 1:
        predicted = reservoir_marginals(RESERVOIR_RULES[fits[0]])
        message += (
            f" These counts are what you get when {RESERVOIR_CAUSES[fits[0]]} (expected then: "
            f"{[round(runs * predicted[t]) for t in tokens]})."
        )
    else:
        message += (
            " Hint: the i-th firing of an interval (i counted from 1, in that interval only) replaces a "
            "uniformly chosen kept sample with probability n_samples / i: draw r from torch.randint(i, ...) "
            "and replace slot r when r < n_samples (Algorithm R)."
        )
    return message, len(fits) == 1


@exercise("4.3", "Interval samples by reservoir sampling", objects=["interval_samples"])
@one_thread
def check_interval_samples(interval_samples: Callable, *, seed: int = 0) -> None:
    """Interval samples: structure, counts and edges on a stream with activations exactly on interval edges and
    zeros; the randomness contract (the generator handed in, and only it); and uniformity, as a distribution.

    Uniformity is tested per token and per interval: the learner's function runs SAMPLING_RUNS = 1000 times on one
    21-token stream (intervals of 3, 6 and 3 firings, interleaved across 4 batches, n_samples = 2), and an exact
    binomial test per firing token compares how often it is kept with a uniform sample's n_samples / N of the
    runs (2/3 in the small intervals, 1/3 in the large one); every run must also keep min(N, n_samples) distinct
    tokens of the right interval. Each test's false-alarm rate is ALPHA = 1e-8: 12 exact binomial tests; 12 in
    all, so the false-alarm rate of the check is below 1.3e-07 per run (the randomness contract adds less than
    2e-12: two runs of a correct sampler on its stream, 4 intervals of at least 20 firings with 3 samples each,
    coincide with probability below 1 / C(20, 3)^4).

    Power (the probability that the check rejects the mistake), recomputed exactly from this design by
    tests/course/test_power_04.py: at least 1 - 1e-6 against each of an index off by one, r drawn from
    {0, ..., i} (Algorithm R's torch.randint(i + 1, ...)); an index off by one, r drawn from {0, ..., i - 2} (the
    draw made before the count is incremented); one counter shared across intervals; the token's position in the
    stream as the counter; a probability of 1 / i instead of n_samples / i; a bias towards the first items (the
    first n_samples are never replaced); a bias towards the last items (every later firing replaces one); and
    sampling with replacement (independent picks per slot, caught by a repeated token in some run). Computed, the
    first is missed with probability 1.7e-14 and every other with probability below 1e-100.
    """
    generator = _gen(seed, 3)
    max_act, n_int, n_samples = 2.0, 4, 3
    plan = [0] * 8 + [1] * 2 + [2] * 7 + [3] * 9 + [None] * 14  # interval 1 holds fewer firings than n_samples
    cells = [plan[i] for i in torch.randperm(len(plan), generator=generator).tolist()]
    u = 0.1 + 0.8 * torch.rand(len(plan), generator=generator)
    values = torch.tensor([0.0 if c is None else (c + float(u[t])) / n_int * max_act for t, c in enumerate(cells)])
    for j, edge in ((0, 0.5), (1, 1.0), (3, 2.0)):  # exactly on an interval's upper edge (right-closed intervals)
        values[cells.index(j)] = edge
    assert_fixture(
        [_interval_of(float(v), max_act, n_int) for v in values] == cells,
        "the stream's activations fall in their planned intervals",
    )
    batches = _stream(values, [10, 1, 15, 14])
    on = "a stream of 40 tokens in 4 batches (max_act=2, 4 intervals, n_samples=3)"
    with _left_alone(
        "interval_samples",
        "read the activations without changing them (a / max_act makes a new "
        "value; batch /= max_act or batch.div_(...) changes the caller's batch).",
        **{"batch" if b == 0 else f"batch_{b}": x for b, x in enumerate(batches)},
    ):
        out = interval_samples(iter(batches), max_act, n_int, n_samples, torch.Generator().manual_seed(seed))
    _validate_samples(out, cells, n_int, n_samples, on, membership_only=True)
    _keep_everything(interval_samples, seed)
    _validate_samples(out, cells, n_int, n_samples, on)

    crowd = torch.rand(160, generator=generator) * (torch.rand(160, generator=generator) < 0.8)
    crowd_batches = _stream(crowd, [50, 60, 50])
    assert_fixture(
        min(sum(_interval_of(float(v), 1.0, 4) == j for v in crowd) for j in range(4)) >= 20,
        "every interval of the crowded stream holds at least 20 firings",
    )
    try:
        assert_randomness_contract(
            lambda g: interval_samples(iter(crowd_batches), 1.0, 4, 3, g)[0],
            "interval_samples (on a stream of 160 tokens, 4 intervals of 20 firings or more)",
            seed,
        )
    except CheckFailure as failure:
        if "different seeds" in str(failure):  # the same samples whatever the seed: a sampler that never draws?
            found = _uniformity(interval_samples, generator)
            if found is not None and found[1]:
                raise CheckFailure(found[0]) from None
        raise

    found = _uniformity(interval_samples, generator)
    if found is not None:
        raise CheckFailure(found[0])


# ---------------------------------------------------------------------------------------------------------
# 4.4 Equal-count quantile groups


def _check_groups(quantile_group_edges: Callable, acts: Tensor, n_groups: int, on: str) -> None:
    with unchanged_inputs("quantile_group_edges", acts=acts):
        edges = quantile_group_edges(acts, n_groups)
    if isinstance(edges, (list, tuple)):
        raise CheckFailure(
            f"quantile_group_edges should return a tensor of {n_groups + 1} edges, got a "
            f"{type(edges).__name__}. Hint: torch.quantile returns one."
        )
    assert_shape(edges, (n_groups + 1,), f"the edges for n_groups={n_groups}")
    check_that(
        edges.dtype == torch.float32,
        f"the edges should be float32, the activations' dtype, got {edges.dtype}. Hint: don't compute them in "
        f"float64 (or convert back with .float()).",
    )
    firing = acts[acts > 0]
    top = float(firing.max())
    first, last = float(edges[0]), float(edges[-1])
    check_that(
        first == 0.0,
        f"On {on}, the first edge should be 0, so that the groups (e_g, e_g+1] cover (0, max] "
        f"(the smallest firing included), got e_0 = {shown_apart(0.0, first)[1]}. Hint: set "
        f"edges[0] = 0 after taking the quantiles.",
    )
    if not math.isclose(last, top, rel_tol=1e-6):
        expected, got = shown_apart(top, last)
        raise CheckFailure(
            f"On {on}, the last edge should be the largest activation, {expected}, so that the groups "
            f"cover (0, max]; got e_{n_groups} = {got}."
        )
    check_that(
        bool(torch.all(edges[1:] >= edges[:-1])), f"On {on}, the edges {_fmt(edges.tolist())} should be non-decreasing."
    )
    counts = [int(((firing > edges[g]) & (firing <= edges[g + 1])).sum()) for g in range(n_groups)]
    target = len(firing) / n_groups
    if all(abs(c - target) <= 1 for c in counts):
        return
    with_zeros = [int(((acts >= edges[g]) & (acts <= edges[g + 1])).sum()) for g in range(n_groups)]
    zeros = len(acts) - len(firing)
    if float(edges[1]) == 0.0 or abs(with_zeros[0] - len(acts) / n_groups) <= 2:
        raise CheckFailure(
            f"On {on}, the {n_groups} groups hold {counts} of the {len(firing)} firings: the {zeros} zeros (tokens "
            f"where the latent does not fire) were counted when placing the edges (the lowest groups then hold "
            f"{with_zeros[:2]} tokens, zeros included). Hint: take the quantiles of the positive activations only."
        )
    raise CheckFailure(
        f"On {on}, the {n_groups} groups hold {counts} firings; equal-count groups hold {target:.1f} each (within "
        f"one). Hint: the edges are quantiles of the firings at 1/n, 2/n, ...: torch.quantile, not equal-width steps "
        f"from 0 to max."
    )


@exercise("4.4", "Equal-count quantile groups", objects=["quantile_group_edges"])
def check_quantile_group_edges(quantile_group_edges: Callable, *, seed: int = 0) -> None:
    """Every group's count on two streams with zeros (exponential and log-normal firings; 5 and 4 groups): within
    one of 1/n of the firings; e_0 = 0 and e_n the largest firing; shape, dtype, a tensor; the input unchanged."""
    generator = _gen(seed, 4)
    exponential = -torch.log(torch.rand(200, generator=generator)) / 2
    acts = (exponential * (torch.rand(200, generator=generator) < 0.6)).float()
    lognormal = torch.exp(torch.randn(150, generator=generator))
    acts2 = (lognormal * (torch.rand(150, generator=generator) < 0.7)).float()
    for a, n in ((acts, 5), (acts2, 4)):
        m = int((a > 0).sum())
        assert_fixture(
            m / (n * (n + 1)) > 2 and len(a) - m > len(a) / 5,
            "the firings are many enough for n+1 groups to differ from n by more than one, and a fifth of "
            "the tokens are zeros",
        )
    _check_groups(quantile_group_edges, acts, 5, f"{int((acts > 0).sum())} exponential firings among 200 tokens")
    _check_groups(quantile_group_edges, acts2, 4, f"{int((acts2 > 0).sum())} log-normal firings among 150 tokens")


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


def _quantiles(quantile_from_histogram: Callable, edges: Tensor, counts: Tensor, values: Tensor) -> Tensor:
    with unchanged_inputs("quantile_from_histogram", edges=edges, counts=counts, values=values):
        q = quantile_from_histogram(edges, counts, values)
    if not isinstance(q, Tensor):
        raise CheckFailure(
            f"quantile_from_histogram should return a tensor (one quantile per value), got a {type(q).__name__}."
        )
    assert_shape(q, tuple(values.shape), f"the quantiles of {len(values)} values")
    check_that(
        q.dtype == torch.float32,
        f"the quantiles should be float32 (the values' dtype), got {q.dtype}. Hint: "
        f"convert back with .float() if you compute in float64.",
    )
    return q.detach()


def _worst(got: Tensor, want: Tensor, values: Tensor) -> str:
    i = int((got - want).abs().argmax())
    expected, measured = shown_apart(float(want[i]), float(got[i]))
    return f"at value {float(values[i]):.4g} your quantile is {measured}, expected {expected}"


@exercise("4.5", "A token's activation quantile", objects=["quantile_from_histogram"])
def check_quantile_from_histogram(quantile_from_histogram: Callable, *, seed: int = 0) -> None:
    """The quantile at the histogram's edges (exact), at values <= 0, below the first edge and above the last, at each
    bin's geometric midpoint and at random values (log-linear inside a bin); shape, dtype, a tensor; inputs left
    unchanged."""
    generator = _gen(seed, 5)
    edges = torch.logspace(-2, 1, 7)  # 6 bins over [0.01, 10]
    counts = torch.randint(1, 20, (6,), generator=generator)
    assert_fixture(counts.unique().numel() > 1, "the bins' counts differ")
    q = _quantiles(quantile_from_histogram, edges, counts, edges.clone())
    want = torch.cat([torch.zeros(1), counts.cumsum(0).float() / counts.sum()])
    if not torch.allclose(q, want, atol=1e-5):
        raise CheckFailure(
            f"At the histogram's edges the quantile is exact: at edge b it is the fraction of firings in bins "
            f"0..b-1; {_worst(q, want, edges)}. Hint: count the bins below the value's bin, plus a fraction of its "
            f"own bin (0 at its lower edge)."
        )
    special = torch.tensor([0.0, -1.0, 0.005, 50.0])
    got = _quantiles(quantile_from_histogram, edges, counts, special)
    if not torch.allclose(got, torch.tensor([0.0, 0.0, 0.0, 1.0])):
        raise CheckFailure(
            f"Outside the histogram: got {_fmt(got.tolist())} for the values {_fmt(special.tolist())}, expected "
            f"[0, 0, 0, 1]. A value <= 0 (the latent does not fire) has quantile 0, so has a value below the first "
            f"edge (0.005 with edges from 0.01: clamp the fraction to [0, 1]); a value above the last edge has "
            f"quantile 1."
        )
    mids = (edges[:-1] * edges[1:]).sqrt()  # geometric midpoints: half-way in log space
    values = torch.cat([mids, torch.rand(20, generator=generator) * 9.99 + 0.01])
    got = _quantiles(quantile_from_histogram, edges, counts, values)
    expected = _quantile_reference(edges, counts, values)
    if torch.allclose(got, expected, atol=1e-5):
        return
    if not torch.allclose(got[:6], expected[:6], atol=1e-5):
        raise CheckFailure(
            f"Inside a bin the quantile should grow linearly in log(value): at the geometric midpoint sqrt(lo * hi) "
            f"of a bin, half of that bin's firings are counted; {_worst(got[:6], expected[:6], values[:6])}. Hint: "
            f"frac = (log v - log lo) / (log hi - log lo)."
        )
    raise CheckFailure(
        f"Between the edges your quantiles differ from the log-linear interpolation of the sketch: "
        f"{_worst(got, expected, values)}."
    )


# ---------------------------------------------------------------------------------------------------------
# 4.6 The exact loss effect of removing a latent

EFFECT_POSITIONS = (1, 7)
#: The check's tolerance on each loss effect (nats): float32 rounding of the closed form against real forward passes
#: is below 1e-5.
EFFECT_ATOL = 1e-4
_RESID = "blocks.0.hook_resid_post"


def _fixture_46(seed: int) -> dict:
    """A tiny one-layer transformer whose every parameter looks trained, 10 tokens, and an SAE on its MLP whose
    latents fire on 20-40% of the (token, latent) entries of those tokens."""
    model = trained_like_model(seed, d_model=16, d_mlp=32, n_ctx=16, d_vocab=50)
    tokens = torch.randint(0, 50, (10,), generator=_gen(seed, 6))
    hook = "blocks.0.mlp.hook_post"
    post = model.run_with_cache(tokens[None], names_filter=hook)[1][hook][0]
    sae = trained_like_sae(32, 24, seed, hook_name=hook, inputs=post, firing=(0.2, 0.4)).requires_grad_(False)
    return {"model": model, "sae": sae, "tokens": tokens}


def _output_46(objects: tuple, fixture: dict) -> Tensor:
    return torch.stack(
        [objects[0](fixture["model"], fixture["sae"], fixture["tokens"], pos) for pos in EFFECT_POSITIONS]
    )


sensitivity(
    "4.6",
    build=_fixture_46,
    output=_output_46,
    tolerance=EFFECT_ATOL,
    exempt={
        "model.blocks.0.attn.b_K": "the key bias adds q · b_K to all of a query's scores alike, which the softmax "
        "ignores"
    },
)


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


def _mistaken_effects(model, sae, tokens: Tensor, pos: int) -> dict[str, Tensor]:
    """The loss effects that known mistakes give, each named by what it gets wrong (for the failure message)."""
    hook = sae.cfg.hook_name
    _, cache = model.run_with_cache(tokens[None], names_filter=[hook, _RESID, "blocks.0.hook_resid_mid"])
    post, resid = cache[hook][0, pos], cache[_RESID][0, pos]
    acts = sae.encode(post)
    active = torch.nonzero(acts > 0).flatten()
    W_out, b_out = model.blocks[0].mlp.W_out, model.blocks[0].mlp.b_out
    deltas = acts[active, None] * (sae.W_dec[active] @ W_out)
    ln = model.ln_final

    def standardise(r: Tensor) -> Tensor:
        centred = r - r.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()

    def loss(r: Tensor, *, norm=lambda r: ln(r[None])[0], bias=True, target=tokens[pos + 1]) -> Tensor:
        logits = norm(r) @ model.unembed.W_U + (model.unembed.b_U if bias else 0)
        return -logits.log_softmax(-1)[:, target]

    def effects(delta: Tensor, base: Tensor = resid, **kw) -> Tensor:
        out = torch.zeros(sae.cfg.d_sae)
        out[active] = loss(base[None] - delta, **kw) - loss(base[None], **kw)
        return out

    centred = resid - resid.mean()
    scale = (centred.pow(2).mean() + ln.eps).sqrt()
    reconstructed = resid - (post - sae.decode(acts)) @ W_out
    with torch.enable_grad():
        r = resid.clone().requires_grad_(True)
        grad = torch.autograd.grad(loss(r[None]).sum(), r)[0]
    linear = torch.zeros(sae.cfg.d_sae)
    linear[active] = -(deltas @ grad)
    return {
        "the removal is not scaled by the activation a (it removes W_dec[f] @ W_out)": effects(
            sae.W_dec[active] @ W_out
        ),
        "the final LayerNorm's scale is that of the clean residual, not recomputed on the changed one": effects(
            deltas, norm=lambda r: (r - r.mean(-1, keepdim=True)) / scale * ln.w + ln.b
        ),
        "the final LayerNorm's mean and scale are those of the clean residual, not recomputed on the changed "
        "one": effects(deltas, norm=lambda r: (r - resid.mean()) / scale * ln.w + ln.b),
        "the final LayerNorm is skipped": effects(deltas, norm=lambda r: r),
        "the final LayerNorm's weight and bias (ln_final.w, ln_final.b) are left out": effects(
            deltas, norm=standardise
        ),
        "the unembedding bias b_U is left out": effects(deltas, bias=False),
        "the MLP's output bias b_out is left out of the residual": effects(deltas, base=resid - b_out),
        "the loss is that of the current token, tokens[pos], not the next one": effects(deltas, target=tokens[pos]),
        "the SAE's reconstruction stands in for the MLP activation (the SAE's error is dropped)": effects(
            deltas, base=reconstructed
        ),
        "a linear approximation (the gradient times the change) replaces the exact change": linear,
    }


@functools.lru_cache(maxsize=4)
def _tiny_case(seed: int):
    """The patched-forward effects and the mistakes' effects at the checked positions of a seed's fixture, and its
    clean logits (the check runs the learner's code on a fresh copy of the fixture, which it may damage)."""
    fixture = _fixture_46(seed)
    model, sae, tokens = fixture["model"], fixture["sae"], fixture["tokens"]
    with torch.no_grad():
        patched = {pos: _patched_effects(model, sae, tokens, pos) for pos in EFFECT_POSITIONS}
        mistaken = {pos: _mistaken_effects(model, sae, tokens, pos) for pos in EFFECT_POSITIONS}
        logits = model(tokens[None])
        for pos in EFFECT_POSITIONS:
            active = int((patched[pos] != 0).sum())
            assert_fixture(3 <= active <= sae.cfg.d_sae - 3, f"some latents are active at position {pos} and some not")
            for name, effects in mistaken[pos].items():
                assert_fixture(
                    float((effects - patched[pos]).abs().max()) > 20 * EFFECT_ATOL,
                    f"the mistake '{name}' changes the effects at position {pos}",
                )
    return patched, mistaken, logits


@exercise("4.6", "The exact loss effect of removing a latent", objects=["loss_effects_at"])
@one_thread
def check_loss_effects_at(loss_effects_at: Callable, *, seed: int = 0) -> None:
    """At two positions of a tiny trained-like one-layer model (LayerNorm weights and biases, b_U, b_out, b_enc,
    b_dec all non-trivial; decoder rows of unequal norms) with several active latents, the effects equal real
    patched forward passes within 1e-4 nats, 0 for inactive latents; shape, dtype, a tensor; the tokens, the model
    and the SAE left as they were (no parameter changed, no hook left behind)."""
    patched, mistaken, clean_logits = _tiny_case(seed)
    fixture = _fixture_46(seed)
    model, sae, tokens = fixture["model"], fixture["sae"], fixture["tokens"]
    state = {name: p.detach().clone() for name, p in [*model.named_parameters(), *sae.named_parameters()]}
    for pos in EFFECT_POSITIONS:
        with unchanged_inputs("loss_effects_at", tokens=tokens):
            got = loss_effects_at(model, sae, tokens, pos)
        if not isinstance(got, Tensor):
            raise CheckFailure(
                f"loss_effects_at should return a tensor [d_sae] (0 for inactive latents), got a {type(got).__name__}."
            )
        assert_shape(got, (sae.cfg.d_sae,), f"the loss effects at position {pos}")
        check_that(got.dtype == torch.float32, f"the loss effects should be float32, got {got.dtype}.")
        got = got.detach()
        changed = [
            name
            for name, p in [*model.named_parameters(), *sae.named_parameters()]
            if not torch.equal(p.detach(), state[name])
        ]
        check_that(
            not changed,
            f"loss_effects_at changed the model's or the SAE's parameter(s) {changed} in place. "
            f"Hint: remove the latent from a copy of the activation, never from W_dec or the "
            f"model's weights.",
        )
        want = patched[pos]
        active = want != 0
        if not bool(torch.all(got[~active].abs() < 1e-5)):
            f = int((got.abs() * ~active).argmax())
            raise CheckFailure(
                f"At position {pos}, latent {f} does not fire, yet its effect is {float(got[f]):.3g}: "
                f"removing a latent whose activation is 0 removes nothing, so its effect is 0."
            )
        if bool(((got - want).abs() <= EFFECT_ATOL).all()):
            continue
        f = int((got - want).abs().argmax())
        expected, measured = shown_apart(float(want[f]), float(got[f]))
        message = (
            f"At position {pos} of a tiny one-layer model, your loss effects differ from real forward passes "
            f"with a * W_dec[f] removed from the MLP activation: for latent {f} your effect is {measured} "
            f"nats, a patched forward pass gives {expected} (largest difference "
            f"{float((got - want).abs().max()):.3g}, tolerance {EFFECT_ATOL:g})."
        )
        fits = [name for name, effects in mistaken[pos].items() if bool(((got - effects).abs() <= EFFECT_ATOL).all())]
        if len(fits) == 1:
            message += f" Your effects are those of a computation where {fits[0]}."
        else:
            message += (
                " Hint: the removal is a * W_dec[f], which moves the final residual by (a * W_dec[f]) @ W_out; "
                "recompute the final LayerNorm (with its weight and bias) on the changed residual and unembed "
                "with W_U and b_U; the loss is that of predicting tokens[pos + 1]."
            )
        raise CheckFailure(message)
    with torch.no_grad():
        after = model(tokens[None])
    check_that(
        torch.allclose(after, clean_logits, atol=1e-5),
        "After loss_effects_at ran, the model's logits on the same tokens changed: a hook was left on the "
        "model. Hint: use model.run_with_hooks (which removes its hooks), or model.reset_hooks() when done.",
    )


# ---------------------------------------------------------------------------------------------------------
# 4.7 Ranking the latents three ways


@exercise("4.7", "The prompt-centric view: ranking latents", objects=["rank_latents"])
def check_rank_latents(rank_latents: Callable, *, seed: int = 0) -> None:
    """The n latents with the largest activation, quantile and absolute loss effect (a negative effect the largest),
    largest first; a list of Python ints; the inputs unchanged."""
    generator = _gen(seed, 7)
    d_sae = 30
    acts = torch.rand(d_sae, generator=generator) * (torch.rand(d_sae, generator=generator) < 0.5)
    quantiles = torch.where(acts > 0, torch.rand(d_sae, generator=generator), torch.zeros(d_sae))
    effects = torch.where(acts > 0, torch.randn(d_sae, generator=generator), torch.zeros(d_sae))
    biggest = int(torch.nonzero(acts > 0)[0])
    effects[biggest] = -5.0  # the largest effect is negative: removing the latent *lowers* the loss
    assert_fixture(int((acts > 0).sum()) >= 8, "at least 8 latents are active")
    for by, key in (("act", acts), ("quantile", quantiles), ("loss_effect", effects.abs())):
        with unchanged_inputs("rank_latents", acts=acts, quantiles=quantiles, effects=effects):
            got = rank_latents(acts, quantiles, effects, by, 5)
        check_that(
            isinstance(got, list) and all(isinstance(i, int) for i in got),
            f'rank_latents(..., by="{by}") should return a list of latent ids (Python ints), got '
            f"{type(got).__name__}"
            + (f" of {sorted({type(i).__name__ for i in got})}" if isinstance(got, list) else "")
            + ". Hint: .tolist().",
        )
        check_that(len(got) == 5, f'rank_latents(..., by="{by}", n=5) returned {len(got)} latents, expected 5.')
        want = torch.argsort(key, descending=True, stable=True)[:5].tolist()
        if [float(key[i]) for i in got] != [float(key[i]) for i in want]:
            if by == "loss_effect" and biggest not in got:
                raise CheckFailure(
                    f'by="loss_effect" should rank by the size of the effect, either sign: the latent with effect -5 '
                    f"(latent {biggest}: its removal lowers the loss by 5 nats) is missing from {got}. Hint: sort by "
                    f"effects.abs()."
                )
            raise CheckFailure(
                f'by="{by}": the 5 latents returned, {got}, have {by} values {_fmt(float(key[i]) for i in got)}; the '
                f"5 largest, largest first, are {_fmt(float(key[i]) for i in want)} (latents {want}). Hint: "
                f"torch.argsort(..., descending=True) on the values that `by` names."
            )


# ---------------------------------------------------------------------------------------------------------
# 4.8 Searching every latent for a proxy


def _codes_48(seed: int, *, empty: bool, n_tok: int = 90, d_sae: int = 12, k: int = 4) -> tuple[Tensor, Tensor]:
    """Sparse codes as an SAE gives them (each token's k active latents), and a label that some latents follow.

    Each token has k distinct latents drawn with unequal weights (latent 0 the most common); the last latent never
    fires, and latent ``d_sae - 2`` fires on exactly one token, a labelled one (precision 1 from a count of 1).
    The label holds on about a third of the tokens, mostly where latent 2 fires. With ``empty``, about one slot in
    six is empty (-1: fewer latents were active there), and one whole token."""
    generator = _gen(seed, 8)
    weights = torch.linspace(3.0, 0.5, d_sae)
    weights[-2:] = 0.0
    active = torch.stack([torch.multinomial(weights, k, generator=generator) for _ in range(n_tok)])
    label = torch.where(
        (active == 2).any(1),
        torch.rand(n_tok, generator=generator) < 0.8,
        torch.rand(n_tok, generator=generator) < 0.15,
    )
    lone = int(torch.nonzero(label)[0])
    active[lone, -1] = d_sae - 2
    if empty:
        drop = torch.rand(n_tok, k, generator=generator) < 1 / 6
        drop[lone, -1] = False
        drop[(lone + 1) % n_tok] = True
        active[drop] = -1
    return active, label


def _precision_recall_reference(active: Tensor, label: Tensor, d_sae: int) -> tuple[Tensor, Tensor]:
    """Counts by brute force, token by token: 0 where a ratio is undefined."""
    fires, hits = [0] * d_sae, [0] * d_sae
    for slots, y in zip(active.tolist(), label.tolist()):
        for f in set(slots) - {-1}:
            fires[f] += 1
            hits[f] += int(y)
    positives = int(label.sum())
    precision = [h / n if n else 0.0 for h, n in zip(hits, fires)]
    recall = [h / positives if positives else 0.0 for h in hits]
    return torch.tensor(precision), torch.tensor(recall)


def _call_48(
    latent_precision_recall: Callable, active: Tensor, label: Tensor, d_sae: int, on: str
) -> tuple[Tensor, Tensor]:
    """The learner's result, checked for type, shape, dtype, finiteness, and its inputs left alone."""
    with unchanged_inputs("latent_precision_recall", active=active, label=label):
        out = latent_precision_recall(active, label, d_sae)
    check_that(
        isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out),
        lambda: (
            f"latent_precision_recall should return a tuple (precision, recall) of two tensors, got "
            f"{type(out).__name__}"
            + (f" of {[type(t).__name__ for t in out]}" if isinstance(out, (tuple, list)) else "")
            + "."
        ),
    )
    precision, recall = out
    assert_shape(precision, (d_sae,), f"precision on {on}")
    assert_shape(recall, (d_sae,), f"recall on {on}")
    for name, t in (("precision", precision), ("recall", recall)):
        check_that(
            t.dtype == torch.float32,
            f"{name} should be float32, got {t.dtype}. Hint: a count divided by a "
            f"count is float32 already in torch; don't convert to float64.",
        )
    return precision.detach(), recall.detach()


@exercise("4.8", "Every latent's precision and recall at once", objects=["latent_precision_recall"])
def check_latent_precision_recall(latent_precision_recall: Callable, *, seed: int = 0) -> None:
    """Every latent's precision and recall against brute-force counts, on sparse codes with no empty slot and then
    with empty slots (-1, a whole token once), a latent that never fires (precision 0, not 0/0) and one that fires
    once; on a label that holds on one token only, and on none (recall 0, not 0/0); shape, dtype, a tuple of two
    tensors; the codes and the label left unchanged."""
    d_sae = 12
    full, label = _codes_48(seed, empty=False, d_sae=d_sae)
    active, _ = _codes_48(seed, empty=True, d_sae=d_sae)
    counts = torch.bincount(active[active >= 0], minlength=d_sae)
    assert_fixture(
        bool(
            counts[0] > 0
            and counts[-1] == 0
            and counts[-2] == 1
            and (active == -1).any()
            and (active == -1).all(1).any()
            and (full >= 0).all()
            and 0.2 < label.float().mean() < 0.6
        ),
        "latent 0 fires, the last never, the second-to-last once; some slots and one whole token are empty "
        "(none in the full codes); a fifth to three fifths of the tokens are labelled",
    )
    want = _precision_recall_reference(active, label, d_sae)
    assert_fixture(
        0 < float(want[0][2]) < 1 and float(want[0][-2]) == 1.0 and len(set(want[1].tolist())) > 4,
        "precision and recall take many values, none trivial",
    )

    on = f"codes with every slot filled ({full.shape[1]} latents per token)"
    got = _call_48(latent_precision_recall, full, label, d_sae, on)
    _compare_48(got, _precision_recall_reference(full, label, d_sae), full, label, d_sae, on)

    on = "codes with empty slots (-1)"
    try:
        got = _call_48(latent_precision_recall, active, label, d_sae, on)
    except CheckFailure:
        raise
    except Exception as error:
        raise CheckFailure(
            f"On {on}, latent_precision_recall raised {type(error).__name__}: {str(error).rstrip('.')}. Hint: an empty "
            f"slot (-1: the SAE had fewer active latents there) is no firing; leave it out "
            f"(active[active >= 0]) before counting."
        ) from error
    _compare_48(got, want, active, label, d_sae, on)

    for n_pos, what in ((1, "a label that holds on one token only"), (0, "a label that holds on no token")):
        one = torch.zeros_like(label)
        if n_pos:
            one[int(torch.nonzero(active[:, 0] >= 0)[0])] = True
        got = _call_48(latent_precision_recall, active, one, d_sae, what)
        _compare_48(got, _precision_recall_reference(active, one, d_sae), active, one, d_sae, what)


def _compare_48(
    got: tuple[Tensor, Tensor], want: tuple[Tensor, Tensor], active: Tensor, label: Tensor, d_sae: int, on: str
) -> None:
    """Fail with the property that broke, naming a known mistake when the result is exactly its result."""
    (precision, recall), (want_p, want_r) = got, want
    for name, t, _ in (("precision", precision, want_p), ("recall", recall, want_r)):
        bad = torch.nonzero(~torch.isfinite(t)).flatten().tolist()
        if bad:
            f = bad[0]
            why = (
                f"latent {f} never fires there, so its precision is 0 / 0"
                if name == "precision"
                else "no token holds the label there, so every recall is 0 / 0"
            )
            raise CheckFailure(
                f"On {on}, {name} is {float(t[f])} for latent {f}: {why}. Return 0 where a ratio has "
                f"nothing to count (divide by the count clamped to at least 1)."
            )
    close = lambda a, b: bool(torch.allclose(a, b, atol=1e-6))  # noqa: E731
    if close(precision, want_p) and close(recall, want_r):
        return
    if close(precision, want_r) and close(recall, want_p):
        raise CheckFailure(
            f"On {on}, precision and recall are swapped. Precision is the share of a latent's firings "
            f"where the label holds (divide by how often the latent fires); recall the share of the "
            f"labelled tokens where the latent fires (divide by how many tokens hold the label)."
        )
    slot = active >= 0
    hits = torch.bincount(active[slot & label[:, None]], minlength=d_sae).float()
    padded = active.clamp_min(0)
    mistakes = {
        "the empty slots (-1) were counted as firings of latent 0 (clamping -1 to 0 makes them latent 0): leave "
        "them out (active[active >= 0])": (
            torch.bincount(padded[label].flatten(), minlength=d_sae).float()
            / torch.bincount(padded.flatten(), minlength=d_sae).float().clamp_min(1),
            torch.bincount(padded[label].flatten(), minlength=d_sae).float() / max(int(label.sum()), 1),
        ),
        "recall divides by the number of tokens; it should divide by the number of tokens where the label holds": (
            want_p,
            hits / len(label),
        ),
        "recall divides by the number of firings on labelled tokens (all latents together); it should divide by the "
        "number of tokens where the label holds": (want_p, hits / max(float(hits.sum()), 1.0)),
        "precision divides by the number of tokens where the label holds; it should divide by the number of tokens "
        "where the latent fires": (hits / max(int(label.sum()), 1), want_r),
    }
    for cause, (p, r) in mistakes.items():
        if close(precision, p) and close(recall, r):
            raise CheckFailure(f"On {on}, your precision and recall are what you get when {cause}.")
    name, t, w = ("precision", precision, want_p) if not close(precision, want_p) else ("recall", recall, want_r)
    f = int((t - w).abs().argmax())
    expected, measured = shown_apart(float(w[f]), float(t[f]))
    formula = (
        "(tokens where the latent fires and the label holds) / (tokens where the latent fires)"
        if name == "precision"
        else "(tokens where the latent fires and the label holds) / (tokens where the label holds)"
    )
    raise CheckFailure(
        f"On {on}, latent {f}'s {name} is {measured}, expected {expected}. {name.capitalize()} = "
        f"{formula}; a token counts once per latent, and an empty slot (-1) is no firing."
    )
