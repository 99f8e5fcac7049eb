"""Realistic wrong answers to Part 4's exercises; each must make its check fail with the message its @mistake names."""

from __future__ import annotations

import math

import torch

from tests.wrong import mistake


# ----- 4.1 streaming top-k -----


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
    idx = torch.cat([torch.full((acts.shape[1], k), -1), (first_index + torch.arange(len(acts)))[None].expand(acts.shape[1], -1)], 1)
    values, where = padded.topk(k, dim=1)
    return values, idx.gather(1, where)


@mistake(r"top_idx does not point at the tokens")
def top_k_indices_from_topk(top_acts, top_idx, acts, first_index):
    """Uses topk's positions in the concatenation as token indices, without mapping them back."""
    k = top_acts.shape[1]
    values, where = torch.cat([top_acts, acts.T], 1).topk(k, dim=1)
    return values, where + first_index


@mistake(r"has shape")
def top_k_over_latents(top_acts, top_idx, acts, first_index):
    """Takes the top-k over the latent axis of each token (forgets to transpose the batch)."""
    k = top_acts.shape[1]
    values, where = acts.topk(k, dim=1)
    return values, where + first_index


# ----- 4.2 context window -----


@mistake(r"in the middle of a row.*expected 4 and 3|In the middle of a row.*expected 4 and 3")
def context_after_exclusive(tokens, seq, pos, pieces_of, before=10, after=5):
    """Ends the window one token early (slice end pos + after, which excludes the last token)."""
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after)
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[c] + "»" + "".join(pieces[c + 1 :])


@mistake(r"near the start of a row")
def context_negative_start(tokens, seq, pos, pieces_of, before=10, after=5):
    """Slices from pos - before without clipping at 0: near a row's start the slice wraps around or comes back empty."""
    lo, hi = pos - before, pos + after + 1
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    if not pieces:
        return "«»"
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[min(c, len(pieces) - 1)] + "»" + "".join(pieces[c + 1 :])


@mistake(r"split over two tokens.*on its own")
def context_token_by_token(tokens, seq, pos, pieces_of, before=10, after=5):
    """Turns each token into text on its own, so a character split over two tokens shows as '�'."""
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)
    pieces = [pieces_of([t])[0] for t in tokens[seq, lo:hi].tolist()]
    c = pos - lo
    return "".join(pieces[:c]) + "«" + pieces[c] + "»" + "".join(pieces[c + 1 :])


# ----- 4.3 interval samples -----


def _interval(a: float, max_act: float, n: int) -> int:
    return min(max(math.ceil(a / max_act * n) - 1, 0), n - 1)


@mistake(r"include the \d+ tokens where the latent does not fire")
def intervals_include_zeros(stream, max_act, n_intervals, n_samples, generator):
    """Lets the zeros into the lowest interval, [0, max/n] (one viewer's convention): it then shows tokens the latent ignores."""
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


@mistake(r"not kept equally often")
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


@mistake(r"not kept equally often")
def intervals_always_replace(stream, max_act, n_intervals, n_samples, generator):
    """Once the reservoir is full, every new firing replaces a random kept one (probability 1, not n / i): late tokens win."""
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


@mistake(r"same seed gave different samples")
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


@mistake(r"belong to the interval below")
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


# ----- 4.4 quantile groups -----


@mistake(r"zeros .* were counted")
def groups_with_zeros(acts, n_groups):
    """Takes the quantiles over all tokens, zeros included, so the lowest groups fill with tokens that do not fire."""
    edges = torch.quantile(acts.float(), torch.linspace(0, 1, n_groups + 1))
    edges[0] = 0.0
    return edges


@mistake(r"equal-count groups hold")
def groups_equal_width(acts, n_groups):
    """Equal-width steps from 0 to the maximum: those are intervals, not equal-count groups."""
    return torch.linspace(0, float(acts.max()), n_groups + 1)


@mistake(r"first edge should be 0")
def groups_min_first_edge(acts, n_groups):
    """Leaves the first edge at the smallest firing, so that firing falls outside every group (e_0, e_1]."""
    firing = acts[acts > 0].float()
    return torch.quantile(firing, torch.linspace(0, 1, n_groups + 1))


# ----- 4.5 activation quantile -----


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


@mistake(r"A value <= 0")
def quantile_keeps_zero(edges, counts, values):
    """Lets values <= 0 through the interpolation; and above the last edge returns the last bin's lower edge share."""
    counts = counts.double()
    b = (torch.searchsorted(edges, values.clamp_min(1e-30), right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = ((values.double().clamp_min(1e-30).log() - lo) / (hi - lo)).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(values >= 0, q, 0.5 * torch.ones_like(q)).float()


# ----- 4.6 loss effect -----

RESID = "blocks.0.hook_resid_post"


def _effects(model, sae, tokens, pos, *, scale=True, layernorm="recompute", target_offset=1):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, RESID])
        acts = sae.encode(cache[sae.cfg.hook_name][0, pos])
        active = torch.nonzero(acts > 0).flatten()
        a = acts[active, None] if scale else torch.ones(len(active), 1)
        deltas = a * (sae.W_dec[active] @ model.blocks[0].mlp.W_out)
        resid = cache[RESID][0, pos]
        target = tokens[min(pos + target_offset, len(tokens) - 1)]
        if layernorm == "frozen":  # the clean residual's LN scale, reused
            ln = model.ln_final
            mean, scale_ = resid.mean(), ((resid - resid.mean()).pow(2).mean() + ln.eps).sqrt()

            def norm(r):
                return (r - mean) / scale_ * ln.w + ln.b
        elif layernorm == "none":
            def norm(r):
                return r
        else:
            def norm(r):
                return model.ln_final(r[None])[0]

        def loss(r):
            return -model.unembed(norm(r)[None])[0].log_softmax(-1)[:, target]

        effects = torch.zeros(sae.cfg.d_sae)
        effects[active] = (loss(resid[None] - deltas) - loss(resid[None])).float()
    return effects


@mistake(r"differ from a real forward pass")
def effects_unscaled(model, sae, tokens, pos):
    """Removes the unit direction W_dec[f] instead of a * W_dec[f] (forgets the activation's size)."""
    return _effects(model, sae, tokens, pos, scale=False)


@mistake(r"differ from a real forward pass")
def effects_frozen_layernorm(model, sae, tokens, pos):
    """Reuses the clean residual's LayerNorm scale (a linear approximation), instead of recomputing the LayerNorm."""
    return _effects(model, sae, tokens, pos, layernorm="frozen")


@mistake(r"differ from a real forward pass")
def effects_no_layernorm(model, sae, tokens, pos):
    """Unembeds the residual stream directly, skipping the final LayerNorm."""
    return _effects(model, sae, tokens, pos, layernorm="none")


@mistake(r"differ from a real forward pass")
def effects_wrong_target(model, sae, tokens, pos):
    """Scores the loss of the current token, tokens[pos], instead of the next one."""
    return _effects(model, sae, tokens, pos, target_offset=0)


# ----- 4.7 ranking -----


@mistake(r"size of the effect, either sign")
def rank_signed_effect(acts, quantiles, effects, by, n=10):
    """Ranks loss effects by their signed value, so a latent whose removal lowers the loss is missed."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects}[by]
    return torch.argsort(values, descending=True)[:n].tolist()


@mistake(r"not those with the largest")
def rank_ascending(acts, quantiles, effects, by, n=10):
    """Sorts ascending: returns the smallest values first."""
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs()}[by]
    return torch.argsort(values)[:n].tolist()


@mistake(r'by="quantile".*not those with the largest')
def rank_ignores_quantile(acts, quantiles, effects, by, n=10):
    """Ranks by activation whenever `by` is not "loss_effect": the quantile ranking is never used."""
    values = effects.abs() if by == "loss_effect" else acts
    return torch.argsort(values, descending=True)[:n].tolist()


WRONG = {
    "4.1": [top_k_forgets_offset, top_k_of_batch_only, top_k_indices_from_topk, top_k_over_latents],
    "4.2": [context_after_exclusive, context_negative_start, context_token_by_token],
    "4.3": [intervals_include_zeros, intervals_keep_first, intervals_always_replace, intervals_global_rng,
            intervals_batch_local_indices, intervals_left_closed],
    "4.4": [groups_with_zeros, groups_equal_width, groups_min_first_edge],
    "4.5": [quantile_linear_in_value, quantile_whole_bin, quantile_keeps_zero],
    "4.6": [effects_unscaled, effects_frozen_layernorm, effects_no_layernorm, effects_wrong_target],
    "4.7": [rank_signed_effect, rank_ascending, rank_ignores_quantile],
}
