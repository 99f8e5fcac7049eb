"""Realistic wrong answers to Part 5's exercises; each must make its check fail (not pass, not "not attempted").

``WRONG`` maps an exercise id to its wrong answers, each marked with ``@mistake(regex, kind)`` (the regex the
check's message must match, the class of blind spot it probes); ``CORRECT`` holds correct answers written another
way (among them, for every exercise that asks for no gradient, one computed under ``torch.no_grad()``: a correct
5.8 written so was once rejected for a gradient the exercise never asked for). ``EQUIVALENT`` explains the mutants
of the reference that the checks let through (``python -m tests.course.mutation 05``): one line each, why.
"""

from __future__ import annotations

import functools

import einops
import torch
import torch.nn.functional as F

from tests.wrong import correct, mistake

# ---------------------------------------------------------------------------------------------------------
# 5.1 decoder logit lens
# ---------------------------------------------------------------------------------------------------------


@mistake(r"normalise the decoder rows", kind="fixture")
def lens_normalised_rows(W_dec, W_out, W_U):
    """Normalises each decoder row first, as if the rows had unit norm, so the lens no longer scales with the row."""
    return (F.normalize(W_dec, dim=-1) @ W_out) @ W_U


@mistake(r"log-probabilities")
def lens_log_probs(W_dec, W_out, W_U):
    """Returns log-probabilities (log-softmax over the vocabulary) instead of logits."""
    return torch.log_softmax(W_dec @ W_out @ W_U, dim=-1)


@mistake(r"raised RuntimeError")
def lens_skips_w_out(W_dec, W_out, W_U):
    """Unembeds the decoder row directly, forgetting the MLP's output matrix."""
    return W_dec @ W_U


@mistake(r"is torch\.float64 for inputs of dtype torch\.float32", kind="dtype")
def lens_float64(W_dec, W_out, W_U):
    """Multiplies in float64 for precision and returns the float64 result."""
    return W_dec.double() @ W_out.double() @ W_U.double()


@mistake(r"shape \(50, 12\), expected \(12, 50\)", kind="type")
def lens_transposed(W_dec, W_out, W_U):
    """Returns the lens transposed, [d_vocab, d_sae] (one column per latent)."""
    return W_U.T @ (W_out.T @ W_dec.T)


@correct
def lens_other_order(W_dec, W_out, W_U):
    """W_out @ W_U first (the costlier order), then the decoder."""
    return W_dec @ (W_out @ W_U)


@correct
def lens_einsum_no_grad(W_dec, W_out, W_U):
    """One einsum, under torch.no_grad() (the exercise asks for no gradient)."""
    with torch.no_grad():
        return einops.einsum(W_dec, W_out, W_U, "sae mlp, mlp model, model vocab -> sae vocab")


@correct
def lens_loop(W_dec, W_out, W_U):
    """One latent at a time."""
    return torch.stack([(row @ W_out) @ W_U for row in W_dec])


# ---------------------------------------------------------------------------------------------------------
# 5.2 logit lens through the LayerNorm
# ---------------------------------------------------------------------------------------------------------


@mistake(r"adding 3 to every coordinate.*do not remove each direction's mean")
def ln_lens_not_centred(directions, ln_w, W_U):
    """Scales by the LayerNorm weight but forgets to remove the mean."""
    return (directions * ln_w) @ W_U


@mistake(r"adding 3 to every coordinate.*mean over the directions")
def ln_lens_mean_over_directions(directions, ln_w, W_U):
    """Centres over the batch of directions (dim 0) instead of over d_model."""
    return ((directions - directions.mean(0, keepdim=True)) * ln_w) @ W_U


@mistake(r"doubling a direction should double its logits.*standard deviation")
def ln_lens_full_layernorm(directions, ln_w, W_U):
    """Applies a whole LayerNorm to the direction (divides by its standard deviation), which is not linear."""
    centred = directions - directions.mean(-1, keepdim=True)
    return (centred / centred.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * ln_w) @ W_U


@mistake(r"leave out the LayerNorm's weight ln_w", kind="fixture")
def ln_lens_forgets_weight(directions, ln_w, W_U):
    """Centres the direction but leaves out the LayerNorm's weight (harmless only if ln_w were all 1)."""
    return (directions - directions.mean(-1, keepdim=True)) @ W_U


@mistake(r"changed its input `directions` in place", kind="inputs")
def ln_lens_centres_in_place(directions, ln_w, W_U):
    """Centres the caller's directions in place (`-=`)."""
    directions -= directions.mean(-1, keepdim=True)
    return (directions * ln_w) @ W_U


@mistake(r"is torch\.float64 for inputs of dtype torch\.float32", kind="dtype")
def ln_lens_mean_in_float64(directions, ln_w, W_U):
    """Centres in float64 for precision (`directions.double()`) and never casts back."""
    centred = directions.double() - directions.double().mean(-1, keepdim=True)
    return (centred * ln_w.double()) @ W_U.double()


@correct
def ln_lens_folded(directions, ln_w, W_U):
    """Folds the centring and ln_w into the unembedding: d @ (C diag(w) W_U), with C = I - 11ᵀ/n centring the rows
    of diag(w) W_U."""
    scaled = ln_w[:, None] * W_U
    return directions @ (scaled - scaled.mean(0, keepdim=True))


@correct
def ln_lens_einsum_no_grad(directions, ln_w, W_U):
    """Under torch.no_grad() (the exercise asks for no gradient), with einsum."""
    with torch.no_grad():
        centred = directions - directions.mean(dim=-1, keepdim=True)
        return einops.einsum(centred, ln_w, W_U, "n model, model, model vocab -> n vocab")


# ---------------------------------------------------------------------------------------------------------
# 5.3 random directions
# ---------------------------------------------------------------------------------------------------------


@mistake(r"not uniform on the sphere", kind="sampling")
def directions_from_cube(n, d, norm, generator):
    """Normalises points uniform in the cube [-1, 1]^d, whose directions crowd towards the corners."""
    cube = torch.rand(n, d, generator=generator) * 2 - 1
    return norm * cube / cube.norm(dim=-1, keepdim=True)


@mistake(r"not uniform on the sphere", kind="sampling")
def directions_positive_orthant(n, d, norm, generator):
    """Normalises torch.rand vectors: every coordinate is positive, so every direction is in one orthant."""
    u = torch.rand(n, d, generator=generator)
    return norm * u / u.norm(dim=-1, keepdim=True)


@mistake(r"not uniform on the sphere", kind="sampling")
def directions_repeated(n, d, norm, generator):
    """Draws one Gaussian vector and repeats it for every row (`.expand`)."""
    gaussian = torch.randn(1, d, generator=generator).expand(n, d)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)


@mistake(r"should give directions of norm")
def directions_unnormalised(n, d, norm, generator):
    """Scales Gaussian vectors by the norm without normalising them first."""
    return norm * torch.randn(n, d, generator=generator)


@mistake(r"global random generator", kind="randomness")
def directions_global_rng(n, d, norm, generator):
    """Ignores the generator handed in and draws from torch's global one."""
    gaussian = torch.randn(n, d)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)


@mistake(r"random stream restarts at every call", kind="randomness")
def directions_fresh_generator(n, d, norm, generator):
    """Makes a fresh generator from the given one's seed, so every call restarts the same stream."""
    fresh = torch.Generator().manual_seed(generator.initial_seed())
    gaussian = torch.randn(n, d, generator=fresh)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)


@mistake(r"should be float32", kind="dtype")
def directions_float64(n, d, norm, generator):
    """Draws float64 Gaussians for precision and returns them as they are."""
    gaussian = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)


@correct
def directions_row_by_row(n, d, norm, generator):
    """One row at a time (another order of draws from the same generator), under torch.no_grad()."""
    with torch.no_grad():
        rows = [torch.randn(d, generator=generator) for _ in range(n)]
        return torch.stack([norm * r / r.norm() for r in rows])


@correct
def directions_float64_cast(n, d, norm, generator):
    """Gaussians drawn and normalised in float64, with F.normalize, returned as float32."""
    gaussian = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return (norm * F.normalize(gaussian, dim=-1)).float()


# ---------------------------------------------------------------------------------------------------------
# 5.4 diverse latents
# ---------------------------------------------------------------------------------------------------------


def _unit(W):
    return W / W.norm(dim=-1, keepdim=True)


@mistake(r"compare each candidate with the latents kept so far only")
def diverse_against_previous(W_dec, candidates, max_cos=0.7):
    """Compares each candidate only with the previous candidate, kept or not."""
    unit, kept = _unit(W_dec), []
    for i, c in enumerate(candidates):
        if i == 0 or unit[candidates[i - 1]] @ unit[c] < max_cos:
            kept.append(c)
    return kept


@mistake(r"compare each candidate with the latents kept so far only")
def diverse_against_all_seen(W_dec, candidates, max_cos=0.7):
    """Compares each candidate with every earlier candidate, including the ones dropped."""
    unit, kept = _unit(W_dec), []
    for i, c in enumerate(candidates):
        if i == 0 or (unit[candidates[:i]] @ unit[c]).max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"signed cosine")
def diverse_absolute_cosine(W_dec, candidates, max_cos=0.7):
    """Drops latents with a large negative cosine too (absolute value of the cosine)."""
    unit, kept = _unit(W_dec), []
    for c in candidates:
        if not kept or (unit[kept] @ unit[c]).abs().max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"normalise the rows, which need not have norm 1", kind="fixture")
def diverse_dot_product(W_dec, candidates, max_cos=0.7):
    """Compares dot products of the raw decoder rows instead of cosines (the same only for unit rows)."""
    kept = []
    for c in candidates:
        if not kept or (W_dec[kept] @ W_dec[c]).max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"strictly below max_cos")
def diverse_at_most(W_dec, candidates, max_cos=0.7):
    """Keeps a candidate whose cosine equals max_cos (<= instead of <)."""
    unit, kept = _unit(W_dec), []
    for c in candidates:
        if not kept or (unit[kept] @ unit[c]).max() <= max_cos:
            kept.append(c)
    return kept


@mistake(r"use the max_cos argument")
def diverse_fixed_threshold(W_dec, candidates, max_cos=0.7):
    """Hard-codes the threshold 0.7 of the text instead of using max_cos."""
    unit, kept = _unit(W_dec), []
    for c in candidates:
        if not kept or (unit[kept] @ unit[c]).max() < 0.7:
            kept.append(c)
    return kept


@mistake(r"in the order given")
def diverse_sorted(W_dec, candidates, max_cos=0.7):
    """Sorts the candidates by index first, losing the order of preference."""
    unit, kept = _unit(W_dec), []
    for c in sorted(candidates):
        if not kept or (unit[kept] @ unit[c]).max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"should keep 0, drop 1 and keep 2", kind="branch")
def diverse_stops_at_first_drop(W_dec, candidates, max_cos=0.7):
    """Stops at the first near-copy instead of skipping it (right only when nothing is dropped before the end)."""
    unit, kept = _unit(W_dec), []
    for c in candidates:
        if kept and (unit[kept] @ unit[c]).max() >= max_cos:
            break
        kept.append(c)
    return kept


@mistake(r"list of Python ints, but it returned a list of Tensor", kind="type")
def diverse_tensor_items(W_dec, candidates, max_cos=0.7):
    """Loops over the candidates as a tensor, so the list it returns holds 0-d tensors, not ints."""
    unit, kept = _unit(W_dec), []
    for c in torch.tensor(candidates):
        if not kept or (unit[torch.stack(kept)] @ unit[c]).max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"changed its input `W_dec` in place", kind="inputs")
def diverse_normalises_in_place(W_dec, candidates, max_cos=0.7):
    """Normalises the caller's decoder in place (`/=`)."""
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    kept = []
    for c in candidates:
        if not kept or (W_dec[kept] @ W_dec[c]).max() < max_cos:
            kept.append(c)
    return kept


@mistake(r"changed its input `candidates` in place", kind="inputs")
def diverse_pops_candidates(W_dec, candidates, max_cos=0.7):
    """Consumes the caller's list of candidates with `pop(0)`."""
    unit, kept = _unit(W_dec), []
    while candidates:
        c = candidates.pop(0)
        if not kept or (unit[kept] @ unit[c]).max() < max_cos:
            kept.append(c)
    return kept


@correct
def diverse_cosine_table(W_dec, candidates, max_cos=0.7):
    """The table of cosines between candidates first, under torch.no_grad(), then the greedy pass on it."""
    with torch.no_grad():
        unit = F.normalize(W_dec[candidates], dim=-1)
        cos = unit @ unit.T
    kept_positions: list[int] = []
    for i in range(len(candidates)):
        if all(cos[i, j] < max_cos for j in kept_positions):
            kept_positions.append(i)
    return [candidates[i] for i in kept_positions]


@correct
def diverse_cosine_similarity(W_dec, candidates, max_cos=0.7):
    """F.cosine_similarity of each candidate with the kept rows."""
    kept = []
    for c in candidates:
        if not kept or F.cosine_similarity(W_dec[kept], W_dec[c][None], dim=-1).max().item() < max_cos:
            kept.append(int(c))
    return kept


# ---------------------------------------------------------------------------------------------------------
# 5.5 neuron alignment
# ---------------------------------------------------------------------------------------------------------


@mistake(r"rank the neurons by magnitude")
def alignment_signed_top(W_dec, k=1):
    """Picks the top neurons by signed value, missing large negative weights."""
    return W_dec.topk(k, dim=-1).values.pow(2).sum(-1) / W_dec.pow(2).sum(-1)


@mistake(r"L1 norm")
def alignment_l1_share(W_dec, k=1):
    """Takes the share of the L1 norm (absolute values) instead of the squared norm."""
    magnitude = W_dec.abs()
    return magnitude.topk(k, dim=-1).values.sum(-1) / magnitude.sum(-1)


@mistake(r"divide by the row's squared norm", kind="fixture")
def alignment_assumes_unit_rows(W_dec, k=1):
    """Assumes unit-norm decoder rows and never divides by the row's squared norm."""
    return W_dec.pow(2).topk(k, dim=-1).values.sum(-1)


@mistake(r"use the k argument")
def alignment_ignores_k(W_dec, k=1):
    """Always takes the single largest neuron, whatever k is."""
    squared = W_dec.pow(2)
    return squared.max(dim=-1).values / squared.sum(-1)


@mistake(r"is torch\.float32 for inputs of dtype torch\.float64", kind="dtype")
def alignment_list_of_floats(W_dec, k=1):
    """A loop over the rows collected with torch.tensor, which makes float32 whatever the input's dtype."""
    shares = []
    for row in W_dec:
        squared = sorted((w * w for w in row.tolist()), reverse=True)
        shares.append(sum(squared[:k]) / sum(squared))
    return torch.tensor(shares)


@mistake(r"shape \(3, 1\), expected \(3,\)", kind="type")
def alignment_keepdim(W_dec, k=1):
    """Keeps the summed axis (`keepdim=True`), returning [d_sae, 1]."""
    squared = W_dec.pow(2)
    return squared.topk(k, dim=-1).values.sum(-1, keepdim=True) / squared.sum(-1, keepdim=True)


@correct
def alignment_sorted(W_dec, k=1):
    """Sorts each row's squares, under torch.no_grad()."""
    with torch.no_grad():
        squared = W_dec.square()
        return squared.sort(dim=-1, descending=True).values[:, :k].sum(-1) / squared.sum(-1)


@correct
def alignment_abs_topk(W_dec, k=1):
    """Ranks by |w|, gathers those weights, and divides by the squared row norm."""
    top = W_dec.abs().topk(k, dim=-1).indices
    return W_dec.gather(-1, top).pow(2).sum(-1) / W_dec.norm(dim=-1).pow(2)


# ---------------------------------------------------------------------------------------------------------
# 5.6 activation correlation
# ---------------------------------------------------------------------------------------------------------


@mistake(r"uncentred columns: centre each column")
def correlation_uncentred(x, y):
    """Cosine similarity of the raw columns: forgets to subtract the means."""
    return F.normalize(x, dim=0).T @ F.normalize(y, dim=0)


@mistake(r"so their correlation should be 1, not 0\.999\d")
def correlation_layernorm_eps(x, y):
    """Normalises each column LayerNorm-style, by sqrt(variance + 1e-5): with small activations the eps pulls every
    correlation towards 0 (an exact linear relation gets 0.9997, not 1; "1, not 1" in a message that prints 3
    significant digits)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    xn = xc / torch.sqrt(xc.pow(2).mean(0) + 1e-5)
    yn = yc / torch.sqrt(yc.pow(2).mean(0) + 1e-5)
    return xn.T @ yn / len(x)


@mistake(r"constant column of x .* should have correlation 0", kind="branch")
def correlation_nan_for_constant(x, y):
    """Divides by the column norms without guarding against a constant column (0 / 0 = NaN)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return (xc / xc.norm(dim=0)).T @ (yc / yc.norm(dim=0))


@mistake(r"constant column of y .* should have correlation 0", kind="branch")
def correlation_guards_x_only(x, y):
    """Clamps the norms of x's columns but not of y's (as if only latents could be silent)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return (xc / xc.norm(dim=0).clamp_min(1e-12)).T @ (yc / yc.norm(dim=0))


@mistake(r"correlation should be 1, not|wrong values")
def correlation_over_columns(x, y):
    """Centres and normalises each row (over the columns) instead of each column (over the tokens)."""
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return F.normalize(xc, dim=0).T @ F.normalize(yc, dim=0)


@mistake(r"changed its input `x` in place", kind="inputs")
def correlation_centres_in_place(x, y):
    """Centres the caller's tensors in place (`-=`) to save memory."""
    x -= x.mean(0)
    y -= y.mean(0)
    return (x / x.norm(dim=0).clamp_min(1e-12)).T @ (y / y.norm(dim=0).clamp_min(1e-12))


@mistake(r"is torch\.float32 for inputs of dtype torch\.float64", kind="dtype")
def correlation_table_in_a_loop(x, y):
    """Fills a torch.zeros(p, q) table pair by pair: float32 whatever the inputs' dtype."""
    table = torch.zeros(x.shape[1], y.shape[1])
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            a, b = x[:, i] - x[:, i].mean(), y[:, j] - y[:, j].mean()
            table[i, j] = (a @ b) / (a.norm() * b.norm()).clamp_min(1e-12)
    return table


@mistake(r"shape \(4, 3\), expected \(3, 4\)", kind="type")
def correlation_transposed(x, y):
    """Returns the table of y's columns against x's, [q p]."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return (yc / yc.norm(dim=0).clamp_min(1e-12)).T @ (xc / xc.norm(dim=0).clamp_min(1e-12))


@correct
def correlation_corrcoef(x, y):
    """torch.corrcoef of the stacked columns, its NaNs (constant columns) set to 0, under torch.no_grad()."""
    with torch.no_grad():
        table = torch.corrcoef(torch.cat([x, y], dim=1).T)[: x.shape[1], x.shape[1] :]
        return table.nan_to_num(0.0)


@correct
def correlation_covariance_over_std(x, y):
    """Covariance over the product of (biased) standard deviations, 0 where a standard deviation is 0."""
    n = x.shape[0]
    cov = (x - x.mean(0)).T @ (y - y.mean(0)) / n
    sx, sy = x.std(0, unbiased=False), y.std(0, unbiased=False)
    denominator = sx[:, None] * sy[None, :]
    return torch.where(denominator > 0, cov / denominator.clamp_min(1e-30), torch.zeros_like(cov))


# ---------------------------------------------------------------------------------------------------------
# 5.7 matching latents
# ---------------------------------------------------------------------------------------------------------


@mistake(r"largest dot product", kind="fixture")
def match_by_dot_product(W_dec_a, W_dec_b):
    """Matches by the dot product of raw rows (the cosine only for unit rows), which favours long rows."""
    best = (W_dec_a @ W_dec_b.T).max(dim=1)
    norms = W_dec_a.norm(dim=-1) * W_dec_b.norm(dim=-1)[best.indices]
    return best.indices, best.values / norms


@mistake(r"largest absolute cosine")
def match_absolute_cosine(W_dec_a, W_dec_b):
    """Matches by absolute cosine, pairing a latent with its opposite."""
    cos = F.normalize(W_dec_a, dim=-1) @ F.normalize(W_dec_b, dim=-1).T
    index = cos.abs().argmax(dim=1)
    return index, cos.gather(1, index[:, None])[:, 0]


@mistake(r"shape \(11,\), expected \(7,\)")
def match_over_wrong_axis(W_dec_a, W_dec_b):
    """Takes the maximum over A's latents (dim 0) instead of over B's."""
    best = (F.normalize(W_dec_a, dim=-1) @ F.normalize(W_dec_b, dim=-1).T).max(dim=0)
    return best.indices, best.values


@mistake(r"indices .* have dtype torch\.float32; they should be integers", kind="type")
def match_values_first(W_dec_a, W_dec_b):
    """Returns `.max(dim=1)` as it is: (values, indices), the cosines first."""
    return (F.normalize(W_dec_a, dim=-1) @ F.normalize(W_dec_b, dim=-1).T).max(dim=1)


@mistake(r"changed its input `W_dec_a` in place", kind="inputs")
def match_normalises_in_place(W_dec_a, W_dec_b):
    """Normalises the caller's decoders in place (`/=`)."""
    W_dec_a /= W_dec_a.norm(dim=-1, keepdim=True)
    W_dec_b /= W_dec_b.norm(dim=-1, keepdim=True)
    best = (W_dec_a @ W_dec_b.T).max(dim=1)
    return best.indices, best.values


@mistake(r"is torch\.float64 for inputs of dtype torch\.float32", kind="dtype")
def match_in_float64(W_dec_a, W_dec_b):
    """Computes the cosines in float64 for precision and returns them so."""
    cos = F.normalize(W_dec_a.double(), dim=-1) @ F.normalize(W_dec_b.double(), dim=-1).T
    best = cos.max(dim=1)
    return best.indices, best.values


@correct
def match_cosine_similarity(W_dec_a, W_dec_b):
    """F.cosine_similarity broadcast over all pairs, under torch.no_grad()."""
    with torch.no_grad():
        cos = F.cosine_similarity(W_dec_a[:, None, :], W_dec_b[None, :, :], dim=-1)
        return cos.argmax(dim=1), cos.amax(dim=1)


@correct
def match_loop(W_dec_a, W_dec_b):
    """One latent of A at a time."""
    unit_b = W_dec_b / W_dec_b.norm(dim=-1, keepdim=True)
    indices, cosines = [], []
    for row in W_dec_a:
        cos = unit_b @ (row / row.norm())
        indices.append(cos.argmax())
        cosines.append(cos.max())
    return torch.stack(indices), torch.stack(cosines)


# ---------------------------------------------------------------------------------------------------------
# 5.8 ablation
# ---------------------------------------------------------------------------------------------------------


def _final_resid(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    return cache["blocks.0.hook_resid_post"]


def _next_token_loss(logits, tokens):
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def _contribution(model, W_dec_f, latent_acts):
    return latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)


@mistake(r"clean residual stream's LayerNorm scale")
def ablation_frozen_layernorm_scale(model, tokens, W_dec_f, latent_acts):
    """Keeps the clean LayerNorm scale for the ablated stream (a frozen LayerNorm, as in direct logit attribution)."""
    x = _final_resid(model, tokens)
    ln = model.ln_final
    scale = (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(ln.eps).sqrt()
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    normed = lambda r: (r - r.mean(-1, keepdim=True)) / scale * ln.w + ln.b  # noqa: E731
    return _next_token_loss(model.unembed(normed(ablated)), tokens) - _next_token_loss(model.unembed(normed(x)), tokens)


@mistake(r"wrong values in the loss changes \(compared with a patched forward pass\)")
def ablation_divides_by_variance(model, tokens, W_dec_f, latent_acts):
    """Recomputes the LayerNorm but divides by the variance instead of the standard deviation."""
    x = _final_resid(model, tokens)
    ln = model.ln_final
    ablated = x - _contribution(model, W_dec_f, latent_acts)

    def normed(r):
        centred = r - r.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps) * ln.w + ln.b

    return _next_token_loss(model.unembed(normed(ablated)), tokens) - _next_token_loss(model.unembed(normed(x)), tokens)


@mistake(r"add the latent's contribution instead of removing it")
def ablation_adds_latent(model, tokens, W_dec_f, latent_acts):
    """Adds the latent's contribution instead of removing it."""
    x = _final_resid(model, tokens)
    steered = x + _contribution(model, W_dec_f, latent_acts)
    loss = lambda r: _next_token_loss(model.unembed(model.ln_final(r)), tokens)  # noqa: E731
    return loss(steered) - loss(x)


@mistake(r"activation 0\) your loss change is")
def ablation_off_by_one(model, tokens, W_dec_f, latent_acts):
    """Pairs the logits at position p with the token at p (not p + 1), dropping the first position."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    def loss(r):
        return F.cross_entropy(model.unembed(model.ln_final(r))[:, 1:].transpose(1, 2), tokens[:, 1:], reduction="none")

    return loss(ablated) - loss(x)


@mistake(r"leave out the unembedding's bias b_U", kind="fixture")
def ablation_forgets_b_U(model, tokens, W_dec_f, latent_acts):
    """Unembeds with `@ model.W_U` and forgets the unembedding's bias."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    loss = lambda r: _next_token_loss(model.ln_final(r) @ model.W_U, tokens)  # noqa: E731
    return loss(ablated) - loss(x)


@mistake(r"leave out the final LayerNorm's weight and bias", kind="fixture")
def ablation_plain_layernorm(model, tokens, W_dec_f, latent_acts):
    """Writes the LayerNorm out by hand and forgets its weight and bias (harmless only if they were 1 and 0)."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)

    def loss(r):
        centred = r - r.mean(-1, keepdim=True)
        normed = centred / centred.pow(2).mean(-1, keepdim=True).add(model.ln_final.eps).sqrt()
        return _next_token_loss(model.unembed(normed), tokens)

    return loss(ablated) - loss(x)


@mistake(r"normalise the decoder row W_dec_f", kind="fixture")
def ablation_normalises_row(model, tokens, W_dec_f, latent_acts):
    """Normalises the decoder row first, as if decoder rows had unit norm."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f / W_dec_f.norm(), latent_acts)
    loss = lambda r: _next_token_loss(model.unembed(model.ln_final(r)), tokens)  # noqa: E731
    return loss(ablated) - loss(x)


@mistake(r"should change nothing|wrong values", kind="branch")
def ablation_masks_next_position(model, tokens, W_dec_f, latent_acts):
    """Zeroes the effect where the latent is silent, but reads the activation at p + 1 for position p (right only if
    the latent fired everywhere, or nowhere)."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    loss = lambda r: _next_token_loss(model.unembed(model.ln_final(r)), tokens)  # noqa: E731
    effect = loss(ablated) - loss(x)
    return torch.where(latent_acts[:, 1:] > 0, effect, torch.zeros_like(effect))


@mistake(r"changed its input `latent_acts` in place", kind="inputs")
def ablation_unsqueezes_in_place(model, tokens, W_dec_f, latent_acts):
    """Adds the trailing axis with `unsqueeze_` (in place) instead of `[..., None]`."""
    x = _final_resid(model, tokens)
    ablated = x - latent_acts.unsqueeze_(-1) * (W_dec_f @ model.blocks[0].mlp.W_out)
    loss = lambda r: _next_token_loss(model.unembed(model.ln_final(r)), tokens)  # noqa: E731
    return loss(ablated) - loss(x)


@mistake(r"should be float32", kind="dtype")
def ablation_float64_losses(model, tokens, W_dec_f, latent_acts):
    """Computes the cross-entropies in float64 for precision and returns them so."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    loss = lambda r: _next_token_loss(model.unembed(model.ln_final(r)).double(), tokens)  # noqa: E731
    return loss(ablated) - loss(x)


@mistake(r"shape \(3, 9\), expected \(3, 8\)", kind="type")
def ablation_every_position(model, tokens, W_dec_f, latent_acts):
    """Returns a loss change at every position [batch, seq], pairing the last one with the first token (roll)."""
    x = _final_resid(model, tokens)
    ablated = x - _contribution(model, W_dec_f, latent_acts)
    target = tokens.roll(-1, dims=1)
    loss = lambda r: F.cross_entropy(  # noqa: E731
        model.unembed(model.ln_final(r)).transpose(1, 2), target, reduction="none"
    )
    return loss(ablated) - loss(x)


@correct
def ablation_no_grad_log_softmax(model, tokens, W_dec_f, latent_acts):
    """Under torch.no_grad() (the exercise asks for no gradient, as in Part 4's 4.6), with log_softmax and gather."""
    with torch.no_grad():
        x = _final_resid(model, tokens)
        ablated = x - _contribution(model, W_dec_f, latent_acts)

        def loss(r):
            logp = torch.log_softmax(model.unembed(model.ln_final(r))[:, :-1], dim=-1)
            return -logp.gather(-1, tokens[:, 1:, None])[..., 0]

        return loss(ablated) - loss(x)


@correct
def ablation_layernorm_by_hand(model, tokens, W_dec_f, latent_acts):
    """The LayerNorm and the unembedding written out, with their weight and biases, under torch.no_grad()."""
    ln = model.ln_final
    with torch.no_grad():
        x = _final_resid(model, tokens)
        ablated = x - _contribution(model, W_dec_f, latent_acts)

        def loss(r):
            centred = r - r.mean(-1, keepdim=True)
            normed = centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.w + ln.b
            return _next_token_loss(normed @ model.W_U + model.b_U, tokens)

        return loss(ablated) - loss(x)


# ---------------------------------------------------------------------------------------------------------
# 5.9 steering
# ---------------------------------------------------------------------------------------------------------


@mistake(r"changed its input `acts` in place", kind="inputs")
def steering_in_place(direction, coefficient):
    """Adds to the activations in place and returns the same tensor."""

    def hook(acts, hook=None):
        acts += coefficient * direction
        return acts

    return hook


@mistake(r"at position 0 the hook's output is not acts \+ coefficient \* direction")
def steering_last_position(direction, coefficient):
    """Steers only the last position, as if only the next token mattered."""

    def hook(acts, hook=None):
        steered = acts.clone()
        steered[:, -1] = steered[:, -1] + coefficient * direction
        return steered

    return hook


@mistake(r"drop the coefficient's sign")
def steering_absolute_coefficient(direction, coefficient):
    """Uses the size of the coefficient and drops its sign."""

    def hook(acts, hook=None):
        return acts + abs(coefficient) * direction

    return hook


@mistake(r"at position 0 the hook's output is not acts \+ coefficient \* direction", kind="fixture")
def steering_unit_direction(direction, coefficient):
    """Normalises the direction first, as if decoder rows had unit norm."""

    def hook(acts, hook=None):
        return acts + coefficient * direction / direction.norm()

    return hook


@mistake(r"steered activations do not carry a gradient", kind="gradient")
def steering_no_grad(direction, coefficient):
    """Steers under torch.no_grad() ("steering is inference"), which cuts the model's graph at the hook."""

    def hook(acts, hook=None):
        with torch.no_grad():
            return acts + coefficient * direction

    return hook


@mistake(r"no gradient reaches `direction`", kind="gradient")
def steering_detached_direction(direction, coefficient):
    """Keeps a detached copy of the direction (`.detach().clone()`, "to be safe"), so no gradient reaches it."""
    vector = coefficient * direction.detach().clone()

    def hook(acts, hook=None):
        return acts + vector

    return hook


@correct
def steering_torch_add(direction, coefficient):
    """torch.add with alpha, the direction viewed as [1, 1, d_mlp]."""

    def hook(acts, hook=None):
        return torch.add(acts, direction.view(1, 1, -1), alpha=coefficient)

    return hook


def _steer(acts, hook=None, *, vector):
    return acts + vector


@correct
def steering_partial(direction, coefficient):
    """A functools.partial of a module-level function, with the steering vector computed once."""
    return functools.partial(_steer, vector=coefficient * direction)


WRONG = {
    "5.1": [lens_normalised_rows, lens_log_probs, lens_skips_w_out, lens_float64, lens_transposed],
    "5.2": [
        ln_lens_not_centred,
        ln_lens_mean_over_directions,
        ln_lens_full_layernorm,
        ln_lens_forgets_weight,
        ln_lens_centres_in_place,
        ln_lens_mean_in_float64,
    ],
    "5.3": [
        directions_from_cube,
        directions_positive_orthant,
        directions_repeated,
        directions_unnormalised,
        directions_global_rng,
        directions_fresh_generator,
        directions_float64,
    ],
    "5.4": [
        diverse_against_previous,
        diverse_against_all_seen,
        diverse_absolute_cosine,
        diverse_dot_product,
        diverse_at_most,
        diverse_fixed_threshold,
        diverse_sorted,
        diverse_stops_at_first_drop,
        diverse_tensor_items,
        diverse_normalises_in_place,
        diverse_pops_candidates,
    ],
    "5.5": [
        alignment_signed_top,
        alignment_l1_share,
        alignment_assumes_unit_rows,
        alignment_ignores_k,
        alignment_list_of_floats,
        alignment_keepdim,
    ],
    "5.6": [
        correlation_uncentred,
        correlation_layernorm_eps,
        correlation_nan_for_constant,
        correlation_guards_x_only,
        correlation_over_columns,
        correlation_centres_in_place,
        correlation_table_in_a_loop,
        correlation_transposed,
    ],
    "5.7": [
        match_by_dot_product,
        match_absolute_cosine,
        match_over_wrong_axis,
        match_values_first,
        match_normalises_in_place,
        match_in_float64,
    ],
    "5.8": [
        ablation_frozen_layernorm_scale,
        ablation_divides_by_variance,
        ablation_adds_latent,
        ablation_off_by_one,
        ablation_forgets_b_U,
        ablation_plain_layernorm,
        ablation_normalises_row,
        ablation_masks_next_position,
        ablation_unsqueezes_in_place,
        ablation_float64_losses,
        ablation_every_position,
    ],
    "5.9": [
        steering_in_place,
        steering_last_position,
        steering_absolute_coefficient,
        steering_unit_direction,
        steering_no_grad,
        steering_detached_direction,
    ],
}

CORRECT = {
    "5.1": [lens_other_order, lens_einsum_no_grad, lens_loop],
    "5.2": [ln_lens_folded, ln_lens_einsum_no_grad],
    "5.3": [directions_row_by_row, directions_float64_cast],
    "5.4": [diverse_cosine_table, diverse_cosine_similarity],
    "5.5": [alignment_sorted, alignment_abs_topk],
    "5.6": [correlation_corrcoef, correlation_covariance_over_std],
    "5.7": [match_cosine_similarity, match_loop],
    "5.8": [ablation_no_grad_log_softmax, ablation_layernorm_by_hand],
    "5.9": [steering_torch_add, steering_partial],
}

#: The classes of mistakes (tests/wrong/__init__.CLASSES) that apply to each exercise.
APPLIES = {
    "5.1": {"fixture", "dtype", "type", "formula"},
    "5.2": {"fixture", "inputs", "dtype", "formula"},
    "5.3": {"randomness", "sampling", "dtype", "formula"},
    "5.4": {"fixture", "branch", "inputs", "type", "formula"},
    "5.5": {"fixture", "dtype", "type", "formula"},
    "5.6": {"branch", "inputs", "dtype", "type", "formula"},
    "5.7": {"fixture", "inputs", "dtype", "type", "formula"},
    "5.8": {"fixture", "branch", "inputs", "dtype", "type", "formula"},
    "5.9": {"fixture", "gradient", "inputs", "formula"},
}

_NO_GRADIENT = (
    "the exercise asks for no gradient (it analyses trained weights or activations, and nothing trains "
    "through it: the notebook and the dashboard only read the result), so a detached result, or one "
    "computed under torch.no_grad(), is the same answer"
)
_ANNOTATION = (
    "the annotation of a local variable (`kept: list[int] = []`) is never evaluated (PEP 526): changing it "
    "changes nothing"
)
_CLAMP = "the clamp only acts on a constant column (norm 0), which gives 0 with either floor"

EQUIVALENT = {
    "5.1:me15119": _NO_GRADIENT,
    "5.1:m20acde": _NO_GRADIENT,
    "5.2:mfaac5f": _NO_GRADIENT,
    "5.2:m995820": _NO_GRADIENT,
    "5.3:mae2401": "random_directions has no differentiable input (n, d and norm are numbers): detaching changes "
    "nothing",
    "5.3:md6af82": "random_directions has no differentiable input: no_grad changes nothing",
    "5.4:m87cd13": "diverse_latents returns Python ints: no_grad changes nothing",
    "5.4:m2dc2f5": _ANNOTATION,
    "5.4:m25bf4b": _ANNOTATION,
    "5.5:me01a0a": _NO_GRADIENT,
    "5.5:m98035c": _NO_GRADIENT,
    "5.6:m29897f": _CLAMP,
    "5.6:m1cda3d": _CLAMP,
    "5.6:m898319": _CLAMP,
    "5.6:mcb6587": _CLAMP,
    "5.6:m11d131": _NO_GRADIENT,
    "5.6:m9afa2a": _NO_GRADIENT,
    "5.7:m2e3be0": "indices are integers and carry no gradient: detaching them changes nothing",
    "5.7:m9fced0": _NO_GRADIENT,
    "5.7:m8b608f": _NO_GRADIENT,
    "5.8:mafa4e5": _NO_GRADIENT,
    "5.8:m1bd3cb": _NO_GRADIENT,
    "5.8:m2bda50": _NO_GRADIENT,
    "5.8:mddd746": _NO_GRADIENT,
    "5.8:md1c0e7": "model.blocks[-1] is model.blocks[0] in a one-layer model, the only kind the exercise admits",
    "5.9:m6cab0f": "no_grad around the hook's definition ends before the hook is ever called: nothing changes",
}
