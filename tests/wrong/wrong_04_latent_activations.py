"""Realistic wrong answers to Part 4's exercises, and correct ones written another way.

Each wrong answer must make its check fail with the message its ``@mistake`` names; each ``@correct`` one must
pass. ``EQUIVALENT`` and ``SURVIVORS`` explain the mutants of the reference that the checks let through
(``python -m tests.course.mutation 04``): one line each, why.
"""

from __future__ import annotations

import heapq
import math

import torch

from tests.wrong import correct, mistake

# ---------------------------------------------------------------------------------------------------------
# 4.1 streaming top-k
# ---------------------------------------------------------------------------------------------------------


def _batch_indices(acts, first_index):
    return (first_index + torch.arange(len(acts)))[None, :].expand(acts.shape[1], -1)


@mistake(r"first_index=100.*positions in the whole token stream")
def top_k_forgets_offset(top_acts, top_idx, acts, first_index):
    """Stores token positions within the batch, not in the whole stream (forgets first_index)."""
    k = top_acts.shape[1]
    batch_idx = torch.arange(len(acts))[None, :].expand(acts.shape[1], -1)
    values, where = torch.cat([top_acts, acts.T], 1).topk(k, dim=1)
    return values, torch.cat([top_idx, batch_idx], 1).gather(1, where)


@mistake(r"stream of 5 batches.*lost")
def top_k_of_batch_only(top_acts, top_idx, acts, first_index):
    """Keeps the top-k of the newest batch only, dropping the running lists."""
    k = top_acts.shape[1]
    padded = torch.cat([torch.zeros(acts.shape[1], k), acts.T], 1)
    idx = torch.cat([torch.full((acts.shape[1], k), -1), _batch_indices(acts, first_index)], 1)
    values, where = padded.topk(k, dim=1)
    return values, idx.gather(1, where)


@mistake(r"kept activations are right but their token indices are")
def top_k_indices_from_topk(top_acts, top_idx, acts, first_index):
    """Uses topk's positions in the concatenation as token indices, without mapping them back."""
    k = top_acts.shape[1]
    values, where = torch.cat([top_acts, acts.T], 1).topk(k, dim=1)
    return values, where + first_index


@mistake(r"has shape", kind="type")
def top_k_over_latents(top_acts, top_idx, acts, first_index):
    """Takes the top-k over the latent axis of each token (forgets to transpose the batch)."""
    k = top_acts.shape[1]
    values, where = acts.topk(k, dim=1)
    return values, where + first_index


@mistake(r"batch 1 \(1 token.*raised RuntimeError.*fewer tokens than k", kind="branch")
def top_k_batch_first(top_acts, top_idx, acts, first_index):
    """Takes the batch's own top k first, then merges: fails on a batch of fewer than k tokens."""
    k = top_acts.shape[1]
    batch_values, batch_where = acts.T.topk(k, dim=1)
    values, where = torch.cat([top_acts, batch_values], 1).topk(k, dim=1)
    return values, torch.cat([top_idx, first_index + batch_where], 1).gather(1, where)


@mistake(r"modified its input `top_acts` in place", kind="inputs")
def top_k_in_place(top_acts, top_idx, acts, first_index):
    """Writes the merged lists back into the running tensors it was given (top_acts[:] = ...) and returns them."""
    k = top_acts.shape[1]
    values, where = torch.cat([top_acts, acts.T], 1).topk(k, dim=1)
    top_idx[:] = torch.cat([top_idx, _batch_indices(acts, first_index)], 1).gather(1, where)
    top_acts[:] = values
    return top_acts, top_idx


@mistake(r"top_idx should be int64", kind="dtype")
def top_k_float_indices(top_acts, top_idx, acts, first_index):
    """Builds the merged index list with full_like of the merged activations, so the indices come back as floats."""
    k = top_acts.shape[1]
    all_acts = torch.cat([top_acts, acts.T], 1)
    all_idx = torch.full_like(all_acts, -1)
    all_idx[:, :k] = top_idx
    all_idx[:, k:] = _batch_indices(acts, first_index)
    values, where = all_acts.topk(k, dim=1)
    return values, all_idx.gather(1, where)


@correct
def top_k_python_lists(top_acts, top_idx, acts, first_index):
    """Per latent, merges the running list with the batch's column in Python and sorts it."""
    d_sae, k = top_acts.shape
    new_acts, new_idx = torch.zeros(d_sae, k), torch.full((d_sae, k), -1, dtype=torch.long)
    for f in range(d_sae):
        merged = list(zip(top_acts[f].tolist(), top_idx[f].tolist()))
        merged += [(a, first_index + t) for t, a in enumerate(acts[:, f].tolist())]
        merged.sort(key=lambda pair: -pair[0])
        new_acts[f] = torch.tensor([a for a, _ in merged[:k]])
        new_idx[f] = torch.tensor([i for _, i in merged[:k]])
    return new_acts, new_idx


@correct
def top_k_sort(top_acts, top_idx, acts, first_index):
    """Sorts the whole merge (torch.sort, descending) and keeps the first k columns."""
    k = top_acts.shape[1]
    all_acts = torch.cat([top_acts, acts.T.float()], 1)
    all_idx = torch.cat([top_idx, _batch_indices(acts, first_index)], 1)
    values, order = all_acts.sort(dim=1, descending=True)
    return values[:, :k].contiguous(), all_idx.gather(1, order)[:, :k].contiguous()


# ---------------------------------------------------------------------------------------------------------
# 4.2 context window
# ---------------------------------------------------------------------------------------------------------


@mistake(r"In the middle of a row.*expected 4 and 3")
def context_after_exclusive(tokens, seq, pos, pieces_of, before=10, after=5):
    """Ends the window one token early (slice end pos + after, which excludes the last token)."""
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after)
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[c] + "»" + "".join(pieces[c + 1 :])


@mistake(r"near the start of a row.*max\(0, pos - before\)", kind="branch")
def context_negative_start(tokens, seq, pos, pieces_of, before=10, after=5):
    """Slices from pos - before without clipping at 0: near a row's start the slice wraps around or comes back empty."""
    lo, hi = pos - before, pos + after + 1
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    if not pieces:
        return "«»"
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[min(c, len(pieces) - 1)] + "»" + "".join(pieces[c + 1 :])


@mistake(r"split over two tokens.*on its own", kind="branch")
def context_token_by_token(tokens, seq, pos, pieces_of, before=10, after=5):
    """Turns each token into text on its own, so a character split over two tokens shows as '�'."""
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)
    pieces = [pieces_of([t])[0] for t in tokens[seq, lo:hi].tolist()]
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[c] + "»" + "".join(pieces[c + 1 :])


@mistake(r"should return a str, got list", kind="type")
def context_pieces_list(tokens, seq, pos, pieces_of, before=10, after=5):
    """Returns the list of pieces with the centre marked, without joining them into one string."""
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    pieces[pos - lo] = "«" + pieces[pos - lo] + "»"
    return pieces


@correct
def context_marked_list(tokens, seq, pos, pieces_of, before=10, after=5):
    """Marks the centre inside the list of pieces, then joins once."""
    lo = max(0, pos - before)
    ids = tokens[seq].tolist()[lo : pos + after + 1]
    pieces = pieces_of(ids)
    pieces[pos - lo] = f"«{pieces[pos - lo]}»"
    return "".join(pieces)


@correct
def context_by_range(tokens, seq, pos, pieces_of, before=10, after=5):
    """Collects the window's positions with range() and the row length, then splits the text around the centre."""
    n = tokens.shape[1]
    positions = [p for p in range(pos - before, pos + after + 1) if 0 <= p < n]
    pieces = pieces_of([int(tokens[seq, p]) for p in positions])
    text = ""
    for p, piece in zip(positions, pieces):
        text += f"«{piece}»" if p == pos else piece
    return text


# ---------------------------------------------------------------------------------------------------------
# 4.3 interval samples
# ---------------------------------------------------------------------------------------------------------


def _interval(a: float, max_act: float, n: int) -> int:
    return min(max(math.ceil(a / max_act * n) - 1, 0), n - 1)


@mistake(r"include the \d+ tokens where the latent does not fire", kind="branch")
def intervals_include_zeros(stream, max_act, n_intervals, n_samples, generator):
    """Lets the zeros into the lowest interval, [0, max/n] (one viewer's convention), which then shows tokens the
    latent ignores."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t, a in enumerate(batch.tolist()):
            j = _interval(a, max_act, n_intervals) if a > 0 else 0
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"not kept equally often.*bias towards the first items", kind="sampling")
def intervals_keep_first(stream, max_act, n_intervals, n_samples, generator):
    """Keeps the first n_samples firings of each interval (no reservoir): early tokens only."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
        offset += len(batch)
    return samples, seen


@mistake(r"not kept equally often.*bias towards the last items", kind="sampling")
def intervals_always_replace(stream, max_act, n_intervals, n_samples, generator):
    """Once the reservoir is full, every new firing replaces a random kept one (probability 1, not n / i): late
    tokens win."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                samples[j][int(torch.randint(n_samples, (1,), generator=generator))] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"\{0, \.\.\., i\} \(torch\.randint\(i \+ 1, \.\.\.\)\).*off by one", kind="sampling")
def intervals_randint_inclusive(stream, max_act, n_intervals, n_samples, generator):
    """Draws r from torch.randint(seen + 1, ...), as if randint's upper bound were included: r in {0, ..., i}."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j] + 1, (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"\{0, \.\.\., i - 2\}.*off by one", kind="sampling")
def intervals_draw_before_count(stream, max_act, n_intervals, n_samples, generator):
    """Draws r from torch.randint(seen, ...) before incrementing the interval's count: r in {0, ..., i - 2}."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
            seen[j] += 1
        offset += len(batch)
    return samples, seen


@mistake(r"one counter shared across intervals", kind="sampling")
def intervals_shared_counter(stream, max_act, n_intervals, n_samples, generator):
    """Uses one running count of firings, over all intervals, as Algorithm R's i (the counts it returns are per
    interval)."""
    samples, seen, offset, i = [[] for _ in range(n_intervals)], [0] * n_intervals, 0, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            i += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(i, (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"token's position in the stream", kind="sampling")
def intervals_token_position_counter(stream, max_act, n_intervals, n_samples, generator):
    """Uses the token's index in the stream (offset + t + 1) as Algorithm R's i: it counts zeros and other intervals."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(offset + t + 1, (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"probability 1 / i instead of n_samples / i", kind="sampling")
def intervals_one_over_i(stream, max_act, n_intervals, n_samples, generator):
    """Keeps the i-th firing with probability 1 / i (Algorithm R for one sample), then replaces a random slot."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            elif float(torch.rand(1, generator=generator)) < 1 / seen[j]:
                samples[j][int(torch.randint(n_samples, (1,), generator=generator))] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"repeat a token.*without replacement", kind="sampling")
def intervals_reservoir_per_slot(stream, max_act, n_intervals, n_samples, generator):
    """Runs one single-item reservoir per slot (the i-th firing takes each slot with probability 1 / i, independently):
    a sample with replacement, so two slots can hold the same token."""
    samples, seen, offset = [[None] * n_samples for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            take = torch.rand(n_samples, generator=generator) < 1 / seen[j]
            for slot in torch.nonzero(take).flatten().tolist():
                samples[j][slot] = offset + t
        offset += len(batch)
    return [s if seen[j] >= n_samples else s[: seen[j]] for j, s in enumerate(samples)], seen


@mistake(r"repeat a token.*without replacement", kind="sampling")
def intervals_store_all_then_draw(stream, max_act, n_intervals, n_samples, generator):
    """Stores every firing, then draws n_samples of each interval with torch.randint: with replacement."""
    firings, offset = [[] for _ in range(n_intervals)], 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            firings[_interval(float(batch[t]), max_act, n_intervals)].append(offset + t)
        offset += len(batch)
    samples = []
    for kept in firings:
        if len(kept) <= n_samples:
            samples.append(list(kept))
        else:
            samples.append([kept[int(i)] for i in torch.randint(len(kept), (n_samples,), generator=generator)])
    return samples, [len(kept) for kept in firings]


@mistake(r"not kept equally often", kind="sampling")
def intervals_merge_per_batch(stream, max_act, n_intervals, n_samples, generator):
    """Vectorises per batch: keeps n_samples drawn uniformly from the old sample and the batch's firings together, so
    the old sample, which stands for every earlier firing, weighs as only n_samples of them (late batches win)."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        pools = [list(kept) for kept in samples]
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            pools[j].append(offset + t)
        for j, pool in enumerate(pools):
            order = torch.randperm(len(pool), generator=generator)[:n_samples].tolist()
            samples[j] = [pool[i] for i in order]
        offset += len(batch)
    return samples, seen


@mistake(r"global random generator", kind="randomness")
def intervals_global_rng(stream, max_act, n_intervals, n_samples, generator):
    """Draws from torch's global random generator instead of the one handed in: runs are not reproducible."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,)))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"random stream restarts at every call", kind="randomness")
def intervals_fresh_generator(stream, max_act, n_intervals, n_samples, generator):
    """Makes a fresh generator from the given one's seed, so every call draws the same numbers."""
    generator = torch.Generator().manual_seed(generator.initial_seed())
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"whose activations are not in that interval")
def intervals_batch_local_indices(stream, max_act, n_intervals, n_samples, generator):
    """Records token positions within each batch instead of in the whole stream."""
    samples, seen = [[] for _ in range(n_intervals)], [0] * n_intervals
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = t
    return samples, seen


@mistake(r"exactly on an edge .* belongs to the interval below", kind="branch")
def intervals_left_closed(stream, max_act, n_intervals, n_samples, generator):
    """Uses floor(a / max * n) (intervals [lo, hi)), so an activation on an edge goes to the interval above."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = min(math.floor(float(batch[t]) / max_act * n_intervals), n_intervals - 1)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"should be a list of Python ints.*Tensor", kind="type")
def intervals_tensor_indices(stream, max_act, n_intervals, n_samples, generator):
    """Iterates over torch.nonzero(...) without .tolist(), so the kept token indices are 0-d tensors."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@mistake(r"modified its input `batch` in place", kind="inputs")
def intervals_normalise_in_place(stream, max_act, n_intervals, n_samples, generator):
    """Divides each batch by max_act in place (batch /= max_act) to read the interval off a / 1."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        batch /= max_act
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), 1.0, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen


@correct
def intervals_coin_then_slot(stream, max_act, n_intervals, n_samples, generator):
    """Algorithm R in its other form: keep the i-th firing with probability n / i (a uniform draw), then replace a
    uniformly chosen slot (a second draw)."""
    samples, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = _interval(float(batch[t]), max_act, n_intervals)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            elif float(torch.rand(1, generator=generator)) < n_samples / seen[j]:
                samples[j][int(torch.randint(n_samples, (1,), generator=generator))] = offset + t
        offset += len(batch)
    return samples, seen


@correct
def intervals_bottom_k(stream, max_act, n_intervals, n_samples, generator):
    """Bottom-k sampling: every firing gets a uniform random key, and each interval keeps the n_samples smallest
    keys (a heap per interval): also a uniform sample without replacement, with the intervals vectorised per batch."""
    heaps, seen, offset = [[] for _ in range(n_intervals)], [0] * n_intervals, 0
    for batch in stream:
        firing = torch.nonzero(batch > 0).flatten()
        cells = (torch.ceil(batch[firing].double() / max_act * n_intervals).long() - 1).clamp(0, n_intervals - 1)
        keys = torch.rand(len(firing), generator=generator)
        for t, j, key in zip(firing.tolist(), cells.tolist(), keys.tolist()):
            seen[j] += 1
            if len(heaps[j]) < n_samples:
                heapq.heappush(heaps[j], (-key, offset + t))
            elif -key > heaps[j][0][0]:
                heapq.heapreplace(heaps[j], (-key, offset + t))
        offset += len(batch)
    return [[t for _, t in heap] for heap in heaps], seen


# ---------------------------------------------------------------------------------------------------------
# 4.4 quantile groups
# ---------------------------------------------------------------------------------------------------------


@mistake(r"zeros .* were counted", kind="branch")
def groups_with_zeros(acts, n_groups):
    """Takes the quantiles over all tokens, zeros included, so the lowest groups fill with tokens that do not fire."""
    edges = torch.quantile(acts.float(), torch.linspace(0, 1, n_groups + 1))
    edges[0] = 0.0
    return edges


@mistake(r"equal-count groups hold")
def groups_equal_width(acts, n_groups):
    """Equal-width steps from 0 to the maximum: those are intervals, not equal-count groups."""
    return torch.linspace(0, float(acts.max()), n_groups + 1)


@mistake(r"equal-count groups hold")
def groups_over_n_plus_one(acts, n_groups):
    """Takes the quantiles at g / (n + 1), as if the n + 1 edges split the firings into n + 1 parts, then the max."""
    firing = acts[acts > 0]
    inner = torch.quantile(firing, torch.arange(1, n_groups) / (n_groups + 1))
    return torch.cat([torch.zeros(1), inner, firing.max()[None]])


@mistake(r"first edge should be 0")
def groups_min_first_edge(acts, n_groups):
    """Leaves the first edge at the smallest firing, so that firing falls outside every group (e_0, e_1]."""
    firing = acts[acts > 0].float()
    return torch.quantile(firing, torch.linspace(0, 1, n_groups + 1))


@mistake(r"should return a tensor.*got a list", kind="type")
def groups_as_list(acts, n_groups):
    """Returns the edges as a Python list of floats, built from the sorted firings."""
    firing = acts[acts > 0].sort().values.tolist()
    return [0.0] + [firing[math.ceil(g * len(firing) / n_groups) - 1] for g in range(1, n_groups + 1)]


@mistake(r"edges should be float32.*float64", kind="dtype")
def groups_float64(acts, n_groups):
    """Computes the quantiles in float64 and returns them so."""
    firing = acts[acts > 0].double()
    edges = torch.quantile(firing, torch.linspace(0, 1, n_groups + 1, dtype=torch.float64))
    edges[0] = 0.0
    return edges


@mistake(r"modified its input `acts` in place", kind="inputs")
def groups_nan_in_place(acts, n_groups):
    """Marks the zeros as NaN in the caller's tensor (acts[acts == 0] = nan) to use torch.nanquantile."""
    acts[acts == 0] = float("nan")
    edges = torch.nanquantile(acts, torch.linspace(0, 1, n_groups + 1))
    edges[0] = 0.0
    return edges


@correct
def groups_nearest_rank(acts, n_groups):
    """Nearest-rank quantiles: the ceil(g m / n)-th smallest firing, from the sorted firings."""
    firing = acts[acts > 0].sort().values
    m = len(firing)
    inner = [firing[math.ceil(g * m / n_groups) - 1] for g in range(1, n_groups + 1)]
    return torch.stack([torch.zeros((), dtype=acts.dtype), *inner])


@correct
def groups_quantile_midpoint(acts, n_groups):
    """torch.quantile with interpolation="midpoint", the inner edges only, then 0 and the maximum around them."""
    firing = acts[acts > 0]
    inner = torch.quantile(firing, torch.arange(1, n_groups) / n_groups, interpolation="midpoint")
    return torch.cat([firing.new_zeros(1), inner, firing.max()[None]])


# ---------------------------------------------------------------------------------------------------------
# 4.5 activation quantile
# ---------------------------------------------------------------------------------------------------------


@mistake(r"geometric midpoint")
def quantile_linear_in_value(edges, counts, values):
    """Interpolates linearly in the value, not in log(value), inside a log-spaced bin."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    phi = ((values.double() - edges[b].double()) / (edges[b + 1] - edges[b]).double()).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(values > 0, q, torch.zeros_like(q)).float()


@mistake(r"At the histogram's edges")
def quantile_whole_bin(edges, counts, values):
    """Counts the value's whole bin (a cumulative sum through it), with no interpolation inside it."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    q = counts.cumsum(0)[b] / counts.sum()
    return torch.where(values > 0, q, torch.zeros_like(q)).float()


@mistake(r"A value <= 0", kind="branch")
def quantile_keeps_zero(edges, counts, values):
    """Lets values <= 0 through the interpolation; and above the last edge returns the last bin's lower edge share."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values.clamp_min(1e-30), right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = ((values.double().clamp_min(1e-30).log() - lo) / (hi - lo)).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(values >= 0, q, 0.5 * torch.ones_like(q)).float()


@mistake(r"below the first edge", kind="branch")
def quantile_unclamped(edges, counts, values):
    """Does not clamp the fraction inside the bin, so a value below the first edge gets a negative quantile."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = (values.double().clamp_min(1e-30).log() - lo) / (hi - lo)
    q = ((counts.cumsum(0) - counts)[b] + phi.clamp(max=1) * counts[b]) / counts.sum()
    return torch.where(values > 0, q, torch.zeros_like(q)).float()


@mistake(r"quantiles should be float32.*float64", kind="dtype")
def quantile_float64(edges, counts, values):
    """Computes in float64 and returns float64 (forgets the final .float())."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = ((values.double().clamp_min(1e-30).log() - lo) / (hi - lo)).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(values > 0, q, torch.zeros_like(q))


@mistake(r"should return a tensor.*got a list", kind="type")
def quantile_list(edges, counts, values):
    """Loops over the values and returns a Python list of quantiles."""
    total, out = float(counts.sum()), []
    for v in values.tolist():
        if v <= 0:
            out.append(0.0)
            continue
        b = min(max(int(torch.searchsorted(edges, torch.tensor(v), right=True)) - 1, 0), len(counts) - 1)
        phi = min(max(math.log(v / float(edges[b])) / math.log(float(edges[b + 1] / edges[b])), 0.0), 1.0)
        out.append((float(counts[:b].sum()) + phi * float(counts[b])) / total)
    return out


@mistake(r"modified its input `values` in place", kind="inputs")
def quantile_clamps_in_place(edges, counts, values):
    """Clamps the values in place (values.clamp_(min=1e-30)) to keep the log finite."""
    positive = values > 0
    values.clamp_(min=1e-30)
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = ((values.double().log() - lo) / (hi - lo)).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(positive, q, torch.zeros_like(q)).float()


@correct
def quantile_loop(edges, counts, values):
    """A loop over the values, finding each one's bin by walking the edges."""
    total, out = float(counts.sum()), []
    for v in values.tolist():
        if v <= 0:
            out.append(0.0)
            continue
        b = 0
        while b < len(counts) - 1 and v >= float(edges[b + 1]):
            b += 1
        phi = (math.log(v) - math.log(float(edges[b]))) / (math.log(float(edges[b + 1])) - math.log(float(edges[b])))
        out.append((float(counts[:b].sum()) + min(max(phi, 0.0), 1.0) * float(counts[b])) / total)
    return torch.tensor(out, dtype=torch.float32)


@correct
def quantile_bucketize(edges, counts, values):
    """torch.bucketize for the bin, the fraction as log(v / lo) / log(hi / lo), in float32 throughout."""
    b = (torch.bucketize(values, edges, right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b], edges[b + 1]
    phi = (torch.log(values.clamp_min(1e-30) / lo) / torch.log(hi / lo)).clamp(0, 1)
    below = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]]).float()
    q = (below[b] + phi * counts.float()[b]) / counts.sum()
    return torch.where(values > 0, q, 0.0)


# ---------------------------------------------------------------------------------------------------------
# 4.6 loss effect
# ---------------------------------------------------------------------------------------------------------

RESID = "blocks.0.hook_resid_post"


def _effects(
    model,
    sae,
    tokens,
    pos,
    *,
    scale=True,
    layernorm="recompute",
    target_offset=1,
    b_U=True,
    b_out=True,
    reconstruction=False,
    together=False,
    dtype=torch.float32,
):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, RESID])
        post = cache[sae.cfg.hook_name][0, pos]
        acts = sae.encode(post)
        active = torch.nonzero(acts > 0).flatten()
        a = acts[active, None] if scale else torch.ones(len(active), 1)
        W_out = model.blocks[0].mlp.W_out
        deltas = a * (sae.W_dec[active] @ W_out)
        if together:
            deltas = deltas.sum(0, keepdim=True).expand(len(active), -1)
        resid = cache[RESID][0, pos]
        if not b_out:
            resid = resid - model.blocks[0].mlp.b_out
        if reconstruction:
            resid = resid - (post - sae.decode(acts)) @ W_out
        target = tokens[min(pos + target_offset, len(tokens) - 1)]
        ln = model.ln_final
        if layernorm == "frozen":  # the clean residual's LN scale (its hook_scale), reused
            scale_ = ((resid - resid.mean()).pow(2).mean() + ln.eps).sqrt()

            def norm(r):
                return (r - r.mean(-1, keepdim=True)) / scale_ * ln.w + ln.b
        elif layernorm == "none":

            def norm(r):
                return r
        elif layernorm == "no affine":

            def norm(r):
                centred = r - r.mean(-1, keepdim=True)
                return centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
        else:

            def norm(r):
                return ln(r[None])[0]

        def loss(r):
            return -(norm(r) @ model.unembed.W_U + (model.unembed.b_U if b_U else 0)).log_softmax(-1)[:, target]

        effects = torch.zeros(sae.cfg.d_sae, dtype=dtype)
        effects[active] = (loss(resid[None] - deltas) - loss(resid[None])).to(dtype)
    return effects


@mistake(r"not scaled by the activation")
def effects_unscaled(model, sae, tokens, pos):
    """Removes the unit direction W_dec[f] instead of a * W_dec[f] (forgets the activation's size)."""
    return _effects(model, sae, tokens, pos, scale=False)


@mistake(r"LayerNorm's scale is that of the clean residual")
def effects_frozen_layernorm(model, sae, tokens, pos):
    """Reuses the clean residual's LayerNorm scale (ln_final.hook_scale from the cache) instead of recomputing it."""
    return _effects(model, sae, tokens, pos, layernorm="frozen")


@mistake(r"final LayerNorm is skipped")
def effects_no_layernorm(model, sae, tokens, pos):
    """Unembeds the residual stream directly, skipping the final LayerNorm."""
    return _effects(model, sae, tokens, pos, layernorm="none")


@mistake(r"LayerNorm's weight and bias \(ln_final.w, ln_final.b\) are left out", kind="fixture")
def effects_layernorm_without_affine(model, sae, tokens, pos):
    """Normalises the residual by hand ((r - mean) / std) but forgets the LayerNorm's weight and bias."""
    return _effects(model, sae, tokens, pos, layernorm="no affine")


@mistake(r"unembedding bias b_U is left out", kind="fixture")
def effects_no_unembed_bias(model, sae, tokens, pos):
    """Unembeds by hand with ln_final(r) @ W_U, forgetting b_U."""
    return _effects(model, sae, tokens, pos, b_U=False)


@mistake(r"output bias b_out is left out", kind="fixture")
def effects_no_mlp_out_bias(model, sae, tokens, pos):
    """Rebuilds the final residual as resid_mid + hook_post @ W_out, forgetting the MLP's b_out."""
    return _effects(model, sae, tokens, pos, b_out=False)


@mistake(r"current token, tokens\[pos\]")
def effects_wrong_target(model, sae, tokens, pos):
    """Scores the loss of the current token, tokens[pos], instead of the next one."""
    return _effects(model, sae, tokens, pos, target_offset=0)


@mistake(r"reconstruction stands in for the MLP activation")
def effects_from_reconstruction(model, sae, tokens, pos):
    """Takes the MLP activation to be the SAE's reconstruction (clean and ablated alike), dropping the SAE's error."""
    return _effects(model, sae, tokens, pos, reconstruction=True)


@mistake(r"linear approximation \(the gradient times the change\)")
def effects_gradient(model, sae, tokens, pos):
    """Attribution by the gradient: the change in loss taken as grad · (−a W_dec[f] W_out), a first-order
    approximation."""
    _, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, RESID])
    acts = sae.encode(cache[sae.cfg.hook_name][0, pos]).detach()
    resid = cache[RESID][0, pos].detach().clone().requires_grad_(True)
    loss = -model.unembed(model.ln_final(resid[None, None]))[0, 0].log_softmax(-1)[tokens[pos + 1]]
    (grad,) = torch.autograd.grad(loss, resid)
    active = torch.nonzero(acts > 0).flatten()
    effects = torch.zeros(sae.cfg.d_sae)
    effects[active] = -(acts[active, None] * (sae.W_dec[active] @ model.blocks[0].mlp.W_out)).detach() @ grad
    return effects


@mistake(r"for latent \d+ your effect is", kind="branch")
def effects_all_at_once(model, sae, tokens, pos):
    """Removes every active latent at once and gives that one loss change to each (right only if one latent fires)."""
    return _effects(model, sae, tokens, pos, together=True)


@mistake(r"should return a tensor.*got a dict", kind="type")
def effects_dict(model, sae, tokens, pos):
    """Returns {latent: effect} for the active latents only."""
    effects = _effects(model, sae, tokens, pos)
    return {int(f): float(effects[f]) for f in torch.nonzero(effects).flatten()}


@mistake(r"loss effects should be float32, got torch.float64", kind="dtype")
def effects_float64(model, sae, tokens, pos):
    """Computes the effects into a float64 tensor (torch.zeros(..., dtype=torch.float64)) and returns it."""
    return _effects(model, sae, tokens, pos, dtype=torch.float64)


@mistake(r"changed the model's or the SAE's parameter\(s\) \['W_dec'\] in place", kind="inputs")
def effects_zero_decoder_row(model, sae, tokens, pos):
    """Removes each latent by zeroing its decoder row in the SAE (sae.W_dec.data[f] = 0), to read the change off the
    reconstruction, and never puts the rows back."""
    effects = _effects(model, sae, tokens, pos)
    for f in torch.nonzero(effects).flatten().tolist():
        sae.W_dec.data[f] = 0.0
    return effects


@mistake(r"a hook was left on the model", kind="inputs")
def effects_hook_left_on(model, sae, tokens, pos):
    """Patches with model.add_hook, resetting the hooks before each latent's pass but not after the last one."""
    hook = sae.cfg.hook_name
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(tokens[None], names_filter=hook)
        acts = sae.encode(cache[hook][0, pos])
        clean = -clean_logits[0, pos].log_softmax(-1)[tokens[pos + 1]]
        effects = torch.zeros(sae.cfg.d_sae)
        for f in torch.nonzero(acts > 0).flatten().tolist():
            model.reset_hooks()

            def remove(post, hook, f=f):
                post[:, pos] -= acts[f] * sae.W_dec[f]
                return post

            model.add_hook(hook, remove)
            effects[f] = -model(tokens[None])[0, pos].log_softmax(-1)[tokens[pos + 1]] - clean
    return effects


@correct
def effects_patched_passes(model, sae, tokens, pos):
    """One real forward pass per active latent, with a hook that removes a * W_dec[f] at pos (run_with_hooks)."""
    hook = sae.cfg.hook_name
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens[None], names_filter=hook)
        acts = sae.encode(cache[hook][0, pos])
        clean = torch.nn.functional.cross_entropy(logits[0, pos], tokens[pos + 1])
        effects = torch.zeros(sae.cfg.d_sae)
        for f in torch.nonzero(acts > 0).flatten().tolist():

            def remove(post, hook, f=f):
                post = post.clone()
                post[:, pos] -= acts[f] * sae.W_dec[f]
                return post

            patched = model.run_with_hooks(tokens[None], fwd_hooks=[(hook, remove)])[0, pos]
            effects[f] = torch.nn.functional.cross_entropy(patched, tokens[pos + 1]) - clean
    return effects


@correct
def effects_closed_form_by_hand(model, sae, tokens, pos):
    """The closed form written out in float64: the residual rebuilt from resid_mid, hook_post, W_out and b_out, the
    LayerNorm by hand with its weight and bias, the unembedding with W_U and b_U."""
    hook = sae.cfg.hook_name
    mlp, ln = model.blocks[0].mlp, model.ln_final
    _, cache = model.run_with_cache(tokens[None], names_filter=[hook, "blocks.0.hook_resid_mid"])
    post = cache[hook][0, pos].detach().double()
    acts = sae.encode(cache[hook][0, pos]).detach().double()
    resid = cache["blocks.0.hook_resid_mid"][0, pos].detach().double() + post @ mlp.W_out.double() + mlp.b_out.double()
    active = torch.nonzero(acts > 0).flatten()
    changed = resid - acts[active, None] * (sae.W_dec.detach().double()[active] @ mlp.W_out.double())
    rows = torch.cat([resid[None], changed])
    centred = rows - rows.mean(-1, keepdim=True)
    normed = centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.w.double() + ln.b.double()
    logits = normed @ model.unembed.W_U.double() + model.unembed.b_U.double()
    losses = -logits.log_softmax(-1)[:, tokens[pos + 1]]
    effects = torch.zeros(sae.cfg.d_sae)
    effects[active] = (losses[1:] - losses[0]).float()
    return effects


# ---------------------------------------------------------------------------------------------------------
# 4.7 ranking
# ---------------------------------------------------------------------------------------------------------


@mistake(r"size of the effect, either sign", kind="branch")
def rank_signed_effect(acts, quantiles, effects, by, n=10):
    """Ranks loss effects by their signed value, so a latent whose removal lowers the loss is missed."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects}[by]
    return torch.argsort(values, descending=True)[:n].tolist()


@mistake(r"the 5 largest, largest first")
def rank_ascending(acts, quantiles, effects, by, n=10):
    """Sorts ascending: returns the smallest values first."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs()}[by]
    return torch.argsort(values)[:n].tolist()


@mistake(r'by="quantile".*the 5 largest, largest first')
def rank_ignores_quantile(acts, quantiles, effects, by, n=10):
    """Ranks by activation whenever `by` is not "loss_effect": the quantile ranking is never used."""
    values = effects.abs() if by == "loss_effect" else acts
    return torch.argsort(values, descending=True)[:n].tolist()


@mistake(r"Python ints.*Tensor", kind="type")
def rank_tensor_ids(acts, quantiles, effects, by, n=10):
    """Returns list(indices): a list of 0-d tensors, not of Python ints."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs()}[by]
    return list(torch.argsort(values, descending=True)[:n])


@mistake(r"modified its input `effects` in place", kind="inputs")
def rank_abs_in_place(acts, quantiles, effects, by, n=10):
    """Takes the absolute value of the caller's effects in place (effects.abs_())."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs_()}[by]
    return torch.argsort(values, descending=True)[:n].tolist()


@correct
def rank_python_sorted(acts, quantiles, effects, by, n=10):
    """Python's sorted over the latent ids, keyed by the value that `by` names."""
    values = {"act": acts.tolist(), "quantile": quantiles.tolist(), "loss_effect": [abs(e) for e in effects.tolist()]}
    return sorted(range(len(acts)), key=lambda f: -values[by][f])[:n]


@correct
def rank_topk(acts, quantiles, effects, by, n=10):
    """torch.topk on the values that `by` names."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs()}[by]
    return [int(f) for f in values.topk(n).indices]


# ---------------------------------------------------------------------------------------------------------
# 4.8 every latent's precision and recall
# ---------------------------------------------------------------------------------------------------------


def _counts(active, label, d_sae):
    slot = active >= 0
    return (
        torch.bincount(active[slot], minlength=d_sae),
        torch.bincount(active[slot & label[:, None]], minlength=d_sae),
    )


@mistake(r"precision and recall are swapped")
def pr_swapped(active, label, d_sae):
    """Divides the shared count by the label's count for precision and by the latent's for recall."""
    fires, hits = _counts(active, label, d_sae)
    return hits / label.sum().clamp_min(1), hits / fires.clamp_min(1)


@mistake(r"recall divides by the number of tokens; it should divide by the number of tokens where the label holds")
def pr_recall_over_all_tokens(active, label, d_sae):
    """Divides recall by the number of tokens, not by the number of tokens where the rule holds."""
    fires, hits = _counts(active, label, d_sae)
    return hits / fires.clamp_min(1), hits / len(label)


@mistake(r"precision divides by the number of tokens where the label holds")
def pr_precision_over_label(active, label, d_sae):
    """Divides precision by the label's count too (both ratios share one denominator)."""
    _, hits = _counts(active, label, d_sae)
    return hits / label.sum().clamp_min(1), hits / label.sum().clamp_min(1)


@mistake(r"latent \d+'s precision is .*expected")
def pr_first_slot_only(active, label, d_sae):
    """Counts only each token's first slot (active[:, 0]), as if a token had one active latent."""
    first = active[:, 0]
    fires = torch.bincount(first[first >= 0], minlength=d_sae)
    hits = torch.bincount(first[(first >= 0) & label], minlength=d_sae)
    return hits / fires.clamp_min(1), hits / label.sum().clamp_min(1)


@mistake(r"empty slots \(-1\) were counted as firings of latent 0", kind="branch")
def pr_empty_slots_as_latent_0(active, label, d_sae):
    """Clamps the empty slots' -1 to 0 before counting, so that they count as firings of latent 0."""
    ids = active.clamp_min(0)
    fires = torch.bincount(ids.flatten(), minlength=d_sae)
    hits = torch.bincount(ids[label].flatten(), minlength=d_sae)
    return hits / fires.clamp_min(1), hits / label.sum().clamp_min(1)


@mistake(r"empty slots.*raised RuntimeError.*leave it out", kind="branch")
def pr_counts_empty_slots(active, label, d_sae):
    """Counts every slot, empty ones included: bincount fails on -1."""
    fires = torch.bincount(active.flatten(), minlength=d_sae)
    hits = torch.bincount(active[label].flatten(), minlength=d_sae)
    return hits / fires.clamp_min(1), hits / label.sum().clamp_min(1)


@mistake(r"never fires there, so its precision is 0 / 0", kind="branch")
def pr_nan_for_silent_latents(active, label, d_sae):
    """Divides by the raw firing counts: a latent that never fires gets 0 / 0 = nan."""
    fires, hits = _counts(active, label, d_sae)
    return hits / fires, hits / label.sum().clamp_min(1)


@mistake(r"no token holds the label there, so every recall is 0 / 0", kind="branch")
def pr_nan_without_positives(active, label, d_sae):
    """Divides recall by the raw number of labelled tokens: a rule that never holds gives 0 / 0 = nan."""
    fires, hits = _counts(active, label, d_sae)
    return hits / fires.clamp_min(1), hits / label.sum()


@mistake(r"should return a tuple \(precision, recall\) of two tensors, got dict", kind="type")
def pr_dict(active, label, d_sae):
    """Returns a dict {"precision": ..., "recall": ...} instead of the tuple."""
    fires, hits = _counts(active, label, d_sae)
    return {"precision": hits / fires.clamp_min(1), "recall": hits / label.sum().clamp_min(1)}


@mistake(r"precision should be float32, got torch.float64", kind="dtype")
def pr_float64(active, label, d_sae):
    """Computes the ratios in float64 (.double()) and returns them so."""
    fires, hits = _counts(active, label, d_sae)
    return hits.double() / fires.clamp_min(1), hits.double() / label.sum().clamp_min(1)


@mistake(r"modified its input `active` in place", kind="inputs")
def pr_marks_empty_slots_in_place(active, label, d_sae):
    """Turns the empty slots into an extra latent d_sae in place (active[active < 0] = d_sae), then drops it."""
    active[active < 0] = d_sae
    fires = torch.bincount(active.flatten(), minlength=d_sae + 1)[:d_sae]
    hits = torch.bincount(active[label].flatten(), minlength=d_sae + 1)[:d_sae]
    return hits / fires.clamp_min(1), hits / label.sum().clamp_min(1)


@correct
def pr_python_counts(active, label, d_sae):
    """Counts token by token in Python, with dicts."""
    fires, hits = {}, {}
    for slots, holds in zip(active.tolist(), label.tolist()):
        for f in slots:
            if f >= 0:
                fires[f] = fires.get(f, 0) + 1
                hits[f] = hits.get(f, 0) + int(holds)
    positives = sum(label.tolist())
    precision = torch.tensor([hits.get(f, 0) / fires[f] if f in fires else 0.0 for f in range(d_sae)])
    recall = torch.tensor([hits.get(f, 0) / positives if positives else 0.0 for f in range(d_sae)])
    return precision, recall


@correct
def pr_dense_matrix(active, label, d_sae):
    """Builds the dense [n_tok, d_sae] firing matrix (an extra column for the empty slots), then sums columns."""
    fired = torch.zeros(len(active), d_sae + 1).scatter_(1, active.where(active >= 0, d_sae), 1.0)[:, :d_sae]
    fires, hits = fired.sum(0), (fired * label[:, None].float()).sum(0)
    precision = torch.where(fires > 0, hits / fires.clamp_min(1), 0.0)
    return precision, hits / max(float(label.float().sum()), 1.0)


WRONG = {
    "4.1": [
        top_k_forgets_offset,
        top_k_of_batch_only,
        top_k_indices_from_topk,
        top_k_over_latents,
        top_k_batch_first,
        top_k_in_place,
        top_k_float_indices,
    ],
    "4.2": [context_after_exclusive, context_negative_start, context_token_by_token, context_pieces_list],
    "4.3": [
        intervals_include_zeros,
        intervals_keep_first,
        intervals_always_replace,
        intervals_randint_inclusive,
        intervals_draw_before_count,
        intervals_shared_counter,
        intervals_token_position_counter,
        intervals_one_over_i,
        intervals_merge_per_batch,
        intervals_reservoir_per_slot,
        intervals_store_all_then_draw,
        intervals_global_rng,
        intervals_fresh_generator,
        intervals_batch_local_indices,
        intervals_left_closed,
        intervals_tensor_indices,
        intervals_normalise_in_place,
    ],
    "4.4": [
        groups_with_zeros,
        groups_equal_width,
        groups_over_n_plus_one,
        groups_min_first_edge,
        groups_as_list,
        groups_float64,
        groups_nan_in_place,
    ],
    "4.5": [
        quantile_linear_in_value,
        quantile_whole_bin,
        quantile_keeps_zero,
        quantile_unclamped,
        quantile_float64,
        quantile_list,
        quantile_clamps_in_place,
    ],
    "4.6": [
        effects_unscaled,
        effects_frozen_layernorm,
        effects_no_layernorm,
        effects_layernorm_without_affine,
        effects_no_unembed_bias,
        effects_no_mlp_out_bias,
        effects_wrong_target,
        effects_from_reconstruction,
        effects_gradient,
        effects_all_at_once,
        effects_dict,
        effects_float64,
        effects_zero_decoder_row,
        effects_hook_left_on,
    ],
    "4.7": [rank_signed_effect, rank_ascending, rank_ignores_quantile, rank_tensor_ids, rank_abs_in_place],
    "4.8": [
        pr_swapped,
        pr_recall_over_all_tokens,
        pr_precision_over_label,
        pr_first_slot_only,
        pr_empty_slots_as_latent_0,
        pr_counts_empty_slots,
        pr_nan_for_silent_latents,
        pr_nan_without_positives,
        pr_dict,
        pr_float64,
        pr_marks_empty_slots_in_place,
    ],
}

CORRECT = {
    "4.1": [top_k_python_lists, top_k_sort],
    "4.2": [context_marked_list, context_by_range],
    "4.3": [intervals_coin_then_slot, intervals_bottom_k],
    "4.4": [groups_nearest_rank, groups_quantile_midpoint],
    "4.5": [quantile_loop, quantile_bucketize],
    "4.6": [effects_patched_passes, effects_closed_form_by_hand],
    "4.7": [rank_python_sorted, rank_topk],
    "4.8": [pr_python_counts, pr_dense_matrix],
}

#: The classes of mistakes (tests/wrong/__init__.CLASSES) that apply to each exercise. None is trained through, so
#: "gradient" applies to none; 4.2 and 4.7 return text and ids, so "dtype" does not apply to them; only 4.3 draws
#: random numbers; only 4.6 has parameters that a too-clean fixture could leave at trivial values (4.8's codes and
#: label are data: FIXTURE_FREE in the check module).
APPLIES = {
    "4.1": {"formula", "branch", "type", "dtype", "inputs"},
    "4.2": {"formula", "branch", "type"},
    "4.3": {"formula", "branch", "sampling", "randomness", "type", "inputs"},
    "4.4": {"formula", "branch", "type", "dtype", "inputs"},
    "4.5": {"formula", "branch", "type", "dtype", "inputs"},
    "4.6": {"formula", "fixture", "branch", "type", "dtype", "inputs"},
    "4.7": {"formula", "branch", "type", "inputs"},
    "4.8": {"formula", "branch", "type", "dtype", "inputs"},
}

_NO_GRAD = (
    "statistics of activations: nothing in this exercise carries or needs a gradient, so no_grad/detach change nothing"
)
_FLOAT32 = "the inputs are float32 already (the contract), so the cast is a no-op"
EQUIVALENT = {
    "4.1:ma6197c": "torch.cat promotes a float32 or lower-precision batch to the running lists' float32 anyway",
    "4.1:mc2ae44": _NO_GRAD,
    "4.1:m013eb5": _NO_GRAD,
    "4.1:mb52f4f": _NO_GRAD,
    "4.1:mbbc3af": "one index too many at the end of the batch's index list: topk never picks a position past "
    "k + n_tok, so the extra column is never gathered",
    "4.2:m6a1349": _NO_GRAD,
    "4.3:mfd550a": "a > 0 makes ceil(a / max * n) >= 1, so the lower clamp (0 or -1) never acts",
    "4.3:ma53b9f": "activations never exceed max_act (it is their maximum), so j <= n - 1 and the upper clamp "
    "never acts",
    "4.3:mf7120f": "activations never exceed max_act, so the upper clamp never acts",
    "4.3:mbb8293": "activations never exceed max_act, so the upper clamp never acts",
    "4.3:m9e83f8": _NO_GRAD,
    "4.3:mad44c5": "a local variable's annotation (list[list[int]]) is never evaluated at run time (PEP 526)",
    "4.3:me683a0": "a local variable's annotation (list[list[int]]) is never evaluated at run time (PEP 526)",
    "4.4:m347560": _FLOAT32,
    "4.4:m5378cd": _NO_GRAD,
    "4.4:m551e88": _NO_GRAD,
    "4.5:m75a4fa": "float32 instead of float64 arithmetic: the same quantiles within 1e-6 (counts are small integers)",
    "4.5:mab983f": "float32 instead of float64 logs: the same quantiles within 1e-6",
    "4.5:mda1960": "float32 instead of float64 logs: the same quantiles within 1e-6",
    "4.5:maae9aa": "float32 instead of float64 logs: the same quantiles within 1e-6",
    "4.5:mb9660d": "the clamp only keeps log() finite for values <= 0, which torch.where then sets to 0",
    "4.5:mf5dc3e": "the clamp only keeps log() finite for values <= 0, which torch.where then sets to 0",
    "4.5:mf20a1a": "searchsorted left vs right differs only at an exact edge, where phi = 1 in the bin below gives "
    "the same q",
    "4.5:m33ade0": "cumsum(-1) and cumsum(0) are the same on a 1-D tensor",
    "4.5:m67e3de": "for -1 < v <= 0 the interpolation already gives 0 (bin 0, phi clamped to 0), so the where is "
    "redundant there",
    "4.5:mccef34": "at v = 0 the interpolation already gives 0 (bin 0, phi clamped to 0)",
    "4.5:me2c213": _NO_GRAD,
    "4.5:m3253ef": _NO_GRAD,
    "4.6:m2cc3ba": "the batch has one row: index -1 is index 0",
    "4.6:m071864": "the batch has one row: index -1 is index 0",
    "4.6:m46ca31": "the batch has one row: index -1 is index 0",
    "4.6:mb8a48a": "a latent with activation 0 moves the residual by exactly 0, so its effect is 0 either way (up to "
    "float rounding, which the check allows: 1e-5)",
    "4.6:mfa119a": "a latent with activation 0 moves the residual by exactly 0, so its effect is 0 either way (up to "
    "float rounding, which the check allows: 1e-5)",
    "4.6:md410f1": "a one-layer model: blocks[-1] is blocks[0]",
    "4.6:m0e9a7f": "the result is assigned into a float32 tensor, which casts it back",
    "4.6:m0f677a": "the result is assigned into a float32 tensor, which casts it anyway",
    "4.6:md44182": _NO_GRAD,
    "4.6:m8b6785": _NO_GRAD,
    "4.6:m5f37e6": _NO_GRAD,
    "4.6:m67a871": _NO_GRAD,
    "4.7:m211277": "stable or not changes only the order among equal values, and equal values rank the same",
    "4.7:m4d244f": _NO_GRAD,
    "4.8:m951703": _NO_GRAD,
    "4.8:mbffab4": _NO_GRAD,
    "4.8:mceaa99": _NO_GRAD,
}

SURVIVORS = {
    "4.3:m0afaeb": "float(batch[t]) -> batch[t]: a / max_act * n computed in float32 instead of float64, which differs "
    "only for an activation within float32 rounding of an interval edge (a * n rounding to an integer); "
    "a rounding, not a method, and a check that demanded float64 here would reject correct code that "
    "finds the intervals with float32 tensor operations",
}
