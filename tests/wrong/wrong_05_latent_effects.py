"""Realistic wrong answers to Part 5's exercises; each must make its check fail (not pass, not "not attempted")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.wrong import mistake

# ----- 5.1 decoder logit lens -----


@mistake(r"doubling one latent's decoder row should double")
def lens_normalised_rows(W_dec, W_out, W_U):
    """Normalises each decoder row first, so the lens no longer scales with the latent."""
    return (F.normalize(W_dec, dim=-1) @ W_out) @ W_U


@mistake(r"doubling one latent's decoder row should double")
def lens_log_probs(W_dec, W_out, W_U):
    """Returns log-probabilities (log-softmax over the vocabulary) instead of logits."""
    return torch.log_softmax(W_dec @ W_out @ W_U, dim=-1)


@mistake(r"raised RuntimeError")
def lens_skips_w_out(W_dec, W_out, W_U):
    """Unembeds the decoder row directly, forgetting the MLP's output matrix."""
    return W_dec @ W_U


# ----- 5.2 logit lens through the LayerNorm -----


@mistake(r"adding the same number to every coordinate")
def ln_lens_not_centred(directions, ln_w, W_U):
    """Scales by the LayerNorm weight but forgets to remove the mean."""
    return (directions * ln_w) @ W_U


@mistake(r"adding the same number to every coordinate")
def ln_lens_mean_over_directions(directions, ln_w, W_U):
    """Centres over the batch of directions (dim 0) instead of over d_model."""
    return ((directions - directions.mean(0, keepdim=True)) * ln_w) @ W_U


@mistake(r"doubling a direction should double its logits")
def ln_lens_full_layernorm(directions, ln_w, W_U):
    """Applies a whole LayerNorm to the direction (divides by its standard deviation), which is not linear."""
    centred = directions - directions.mean(-1, keepdim=True)
    return (centred / centred.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * ln_w) @ W_U


@mistake(r"wrong values")
def ln_lens_forgets_weight(directions, ln_w, W_U):
    """Centres the direction but leaves out the LayerNorm's weight."""
    return (directions - directions.mean(-1, keepdim=True)) @ W_U


# ----- 5.3 random directions -----


@mistake(r"not uniform on the sphere")
def directions_from_cube(n, d, norm, generator):
    """Normalises points uniform in a cube, whose directions crowd towards the corners."""
    cube = torch.rand(n, d, generator=generator) * 2 - 1
    return norm * cube / cube.norm(dim=-1, keepdim=True)


@mistake(r"should all have norm")
def directions_unnormalised(n, d, norm, generator):
    """Scales Gaussian vectors by the norm without normalising them first."""
    return norm * torch.randn(n, d, generator=generator)


@mistake(r"global random generator")
def directions_global_rng(n, d, norm, generator):
    """Ignores the generator handed in and draws from torch's global one."""
    gaussian = torch.randn(n, d)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)


# ----- 5.4 diverse latents -----


def _unit(W):
    return W / W.norm(dim=-1, keepdim=True)


@mistake(r"kept so far only")
def diverse_against_previous(W_dec, candidates, max_cos=0.7):
    """Compares each candidate only with the previous candidate, kept or not."""
    unit, kept = _unit(W_dec), []
    for i, c in enumerate(candidates):
        if i == 0 or unit[candidates[i - 1]] @ unit[c] < max_cos:
            kept.append(c)
    return kept


@mistake(r"kept so far only")
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


@mistake(r"normalise the rows")
def diverse_dot_product(W_dec, candidates, max_cos=0.7):
    """Compares dot products of the raw decoder rows instead of cosines."""
    kept = []
    for c in candidates:
        if not kept or (W_dec[kept] @ W_dec[c]).max() < max_cos:
            kept.append(c)
    return kept


# ----- 5.5 neuron alignment -----


@mistake(r"by magnitude")
def alignment_signed_top(W_dec, k=1):
    """Picks the top neurons by signed value, missing large negative weights."""
    return W_dec.topk(k, dim=-1).values.pow(2).sum(-1) / W_dec.pow(2).sum(-1)


@mistake(r"16/25")
def alignment_l1_share(W_dec, k=1):
    """Takes the share of the L1 norm (absolute values) instead of the squared norm."""
    magnitude = W_dec.abs()
    return magnitude.topk(k, dim=-1).values.sum(-1) / magnitude.sum(-1)


@mistake(r"divide by the row's squared norm")
def alignment_assumes_unit_rows(W_dec, k=1):
    """Assumes unit-norm decoder rows and never divides by the row's squared norm."""
    return W_dec.pow(2).topk(k, dim=-1).values.sum(-1)


# ----- 5.6 activation correlation -----


@mistake(r"centre each column")
def correlation_uncentred(x, y):
    """Cosine similarity of the raw columns: forgets to subtract the means."""
    return F.normalize(x, dim=0).T @ F.normalize(y, dim=0)


@mistake(r"not NaN")
def correlation_nan_for_constant(x, y):
    """Divides by the column norms without guarding against a constant column."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return (xc / xc.norm(dim=0)).T @ (yc / yc.norm(dim=0))


@mistake(r"centre each column|wrong values")
def correlation_over_columns(x, y):
    """Centres and normalises each row (over the columns) instead of each column (over the tokens)."""
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return F.normalize(xc, dim=0).T @ F.normalize(yc, dim=0)


# ----- 5.7 matching latents -----


@mistake(r"not the one with the largest cosine|outside \[-1, 1\]")
def match_by_dot_product(W_dec_a, W_dec_b):
    """Matches by the dot product of raw rows, which favours long rows."""
    best = (W_dec_a @ W_dec_b.T).max(dim=1)
    return best.indices, best.values


@mistake(r"not the one with the largest cosine")
def match_absolute_cosine(W_dec_a, W_dec_b):
    """Matches by absolute cosine, pairing a latent with its opposite."""
    cos = F.normalize(W_dec_a, dim=-1) @ F.normalize(W_dec_b, dim=-1).T
    index = cos.abs().argmax(dim=1)
    return index, cos.gather(1, index[:, None])[:, 0]


@mistake(r"shape")
def match_over_wrong_axis(W_dec_a, W_dec_b):
    """Takes the maximum over A's latents (dim 0) instead of over B's."""
    best = (F.normalize(W_dec_a, dim=-1) @ F.normalize(W_dec_b, dim=-1).T).max(dim=0)
    return best.indices, best.values


# ----- 5.8 ablation -----


def _final_resid(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    return cache["blocks.0.hook_resid_post"]


def _next_token_loss(model, logits, tokens):
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


@mistake(r"patched forward pass")
def ablation_frozen_layernorm_scale(model, tokens, W_dec_f, latent_acts):
    """Keeps the clean LayerNorm scale for the ablated stream (the first-order "direct path")."""
    x = _final_resid(model, tokens)
    ln = model.ln_final
    scale = (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(ln.eps).sqrt()
    ablated = x - latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)
    normed = lambda r: (r - r.mean(-1, keepdim=True)) / scale * ln.w + ln.b  # noqa: E731
    return _next_token_loss(model, model.unembed(normed(ablated)), tokens) - _next_token_loss(
        model, model.unembed(normed(x)), tokens)


@mistake(r"patched forward pass")
def ablation_divides_by_variance(model, tokens, W_dec_f, latent_acts):
    """Recomputes the LayerNorm but divides by the variance instead of the standard deviation."""
    x = _final_resid(model, tokens)
    ln = model.ln_final
    ablated = x - latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)

    def normed(r):
        centred = r - r.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps) * ln.w + ln.b

    return _next_token_loss(model, model.unembed(normed(ablated)), tokens) - _next_token_loss(
        model, model.unembed(normed(x)), tokens)


@mistake(r"wrong sign")
def ablation_adds_latent(model, tokens, W_dec_f, latent_acts):
    """Adds the latent's contribution instead of removing it."""
    x = _final_resid(model, tokens)
    steered = x + latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)
    loss = lambda r: _next_token_loss(model, model.unembed(model.ln_final(r)), tokens)  # noqa: E731
    return loss(steered) - loss(x)


@mistake(r"is not 0 there|are not 0 there|shape")
def ablation_off_by_one(model, tokens, W_dec_f, latent_acts):
    """Pairs the logits at position p with the token at p (not p + 1), dropping the first position."""
    x = _final_resid(model, tokens)
    ablated = x - latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)
    loss = lambda r: F.cross_entropy(  # noqa: E731
        model.unembed(model.ln_final(r))[:, 1:].transpose(1, 2), tokens[:, 1:], reduction="none")
    return loss(ablated) - loss(x)


# ----- 5.9 steering -----


@mistake(r"in place")
def steering_in_place(direction, coefficient):
    """Adds to the activations in place and returns the same tensor."""
    def hook(acts, hook=None):
        acts += coefficient * direction
        return acts
    return hook


@mistake(r"at position 0")
def steering_last_position(direction, coefficient):
    """Steers only the last position, as if only the next token mattered."""
    def hook(acts, hook=None):
        steered = acts.clone()
        steered[:, -1] = steered[:, -1] + coefficient * direction
        return steered
    return hook


@mistake(r"negative ones too")
def steering_absolute_coefficient(direction, coefficient):
    """Uses the size of the coefficient and drops its sign."""
    def hook(acts, hook=None):
        return acts + abs(coefficient) * direction
    return hook


WRONG = {
    "5.1": [lens_normalised_rows, lens_log_probs, lens_skips_w_out],
    "5.2": [ln_lens_not_centred, ln_lens_mean_over_directions, ln_lens_full_layernorm, ln_lens_forgets_weight],
    "5.3": [directions_from_cube, directions_unnormalised, directions_global_rng],
    "5.4": [diverse_against_previous, diverse_against_all_seen, diverse_absolute_cosine, diverse_dot_product],
    "5.5": [alignment_signed_top, alignment_l1_share, alignment_assumes_unit_rows],
    "5.6": [correlation_uncentred, correlation_nan_for_constant, correlation_over_columns],
    "5.7": [match_by_dot_product, match_absolute_cosine, match_over_wrong_axis],
    "5.8": [ablation_frozen_layernorm_scale, ablation_divides_by_variance, ablation_adds_latent, ablation_off_by_one],
    "5.9": [steering_in_place, steering_last_position, steering_absolute_coefficient],
}


EQUIVALENT = {
    "5.3:mae2401": "random_directions has no differentiable input (n, d and norm are numbers): detaching changes nothing",
    "5.3:md6af82": "random_directions has no differentiable input: no_grad changes nothing",
    "5.4:m87cd13": "diverse_latents returns Python ints: no_grad changes nothing",
    "5.6:m29897f": "the clamp only acts on a constant column (norm 0), which gives 0 with either floor",
    "5.6:m1cda3d": "the clamp only acts on a constant column (norm 0), which gives 0 with either floor",
    "5.6:m898319": "the clamp only acts on a constant column (norm 0), which gives 0 with either floor",
    "5.6:mcb6587": "the clamp only acts on a constant column (norm 0), which gives 0 with either floor",
    "5.7:m2e3be0": "indices are integers and carry no gradient: detaching them changes nothing",
    "5.9:m6cab0f": "no_grad around the hook's definition ends before the hook is ever called: nothing changes",
    "5.8:md1c0e7": "model.blocks[-1] is model.blocks[0] in a one-layer model, the only kind the exercise admits",
}
