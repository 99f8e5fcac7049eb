"""Realistic wrong answers to Part 3's exercises, and correct ones written another way.

Each entry of ``WRONG`` is the wrong object (all of Part 3's exercises take one object). Each wrong answer is
a mistake found in published resampling code or likely from a learner: its docstring's first line says which.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from tests.wrong import correct, mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("03_dead_latents")
reset_adam_moments = REF["reset_adam_moments"]
sample_by_squared_loss = REF["sample_by_squared_loss"]
ResampleOnSchedule = REF["ResampleOnSchedule"]

# ----- 3.1 Tokens since each latent fired -----


@mistake(r"count should be 12, got 6.*tokens, not steps")
def counts_steps(tokens_since_fired, acts):
    """Counts steps instead of tokens: the window then changes meaning with the batch size."""
    return torch.where((acts > 0).any(0), torch.zeros_like(tokens_since_fired), tokens_since_fired + 1)


@mistake(r"latent 0 had count 0 and fired on token 0 of a batch of 7 tokens: its count should be 0, got 7")
def resets_only_if_fired_on_every_token(tokens_since_fired, acts):
    """Resets a latent's count only if it fired on every token of the batch (``all`` for ``any``)."""
    return torch.where((acts > 0).all(0), torch.zeros_like(tokens_since_fired), tokens_since_fired + len(acts))


@mistake(r"fired on token 0 of a batch of 7 tokens: its count should be 0, got 7", kind="branch")
def resets_only_if_fired_on_last_token(tokens_since_fired, acts):
    """Looks at the batch's last token only (``acts[-1] > 0``), as if the counter were updated token by token."""
    return torch.where(acts[-1] > 0, torch.zeros_like(tokens_since_fired), tokens_since_fired + len(acts))


@mistake(r"modified its input `tokens_since_fired` in place", kind="inputs")
def updates_in_place(tokens_since_fired, acts):
    """Updates the counter in place, changing the caller's tensor."""
    return tokens_since_fired.add_(len(acts)).masked_fill_((acts > 0).any(0), 0)


@mistake(r"should stay int64", kind="dtype")
def float_counter(tokens_since_fired, acts):
    """Turns the counter into floats (rounded above 2**24 tokens in float32)."""
    return torch.where((acts > 0).any(0), 0.0, tokens_since_fired.float() + len(acts))


@mistake(r"has shape \(1, 8\), expected \(8,\)", kind="type")
def keeps_the_batch_dimension(tokens_since_fired, acts):
    """Reduces over the batch with ``keepdim=True``, returning a [1, d_sae] counter."""
    fired = (acts > 0).any(dim=0, keepdim=True)
    return torch.where(fired, torch.zeros_like(tokens_since_fired), tokens_since_fired + len(acts))


@correct
def update_with_a_loop(tokens_since_fired, acts):
    """One latent at a time, with Python ints."""
    out = tokens_since_fired.clone()
    for j in range(len(out)):
        out[j] = 0 if bool((acts[:, j] > 0).any()) else int(tokens_since_fired[j]) + acts.shape[0]
    return out


@correct
def update_with_masked_fill(tokens_since_fired, acts):
    """Adds the batch size to a copy, then zeroes the latents whose largest activation is positive."""
    return (tokens_since_fired + len(acts)).masked_fill(acts.amax(0) > 0, 0)


# ----- 3.2 Dead in a window vs ultra-low density -----


@mistake(r"density 1e-07 .* should be 0\.368, got 0\.30\d.*computed in float32")
def naive_power(density, window_tokens):
    """Computes (1 - p) ** W in float32, where 1 - p rounds away p's digits for tiny p."""
    return (1 - density) ** window_tokens


@mistake(r"density 0\.5 and a window of 3 tokens.*small-p approximation")
def exponential_approximation(density, window_tokens):
    """Uses the small-p approximation exp(-p W), wrong for common latents."""
    return torch.exp(-density * window_tokens)


@mistake(r"density 1 and a window .* got -1e\+07.*first term of the expansion")
def linear_approximation(density, window_tokens):
    """Uses 1 - p W, the first term of the expansion (negative for long windows)."""
    return 1 - density * window_tokens


@mistake(r"should return the densities' dtype \(torch\.float32\), got torch\.float64", kind="dtype")
def returns_float64(density, window_tokens):
    """Computes in float64 and returns float64."""
    return torch.exp(window_tokens * torch.log1p(-density.double()))


@mistake(r"should return the densities' dtype \(torch\.float64\), got torch\.float32", kind="dtype")
def returns_float32_always(density, window_tokens):
    """Computes in float64 for accuracy, then always converts to float32, whatever the densities' dtype."""
    return torch.exp(window_tokens * torch.log1p(-density.double())).float()


@mistake(r"modified its input `density` in place", kind="inputs")
def computes_in_place(density, window_tokens):
    """Chains in-place operations on the densities, overwriting the caller's tensor."""
    return density.neg_().log1p_().mul_(window_tokens).exp_()


@mistake(r"should be a torch\.Tensor, but it is a list", kind="type")
def returns_a_list(density, window_tokens):
    """Loops with the math module and returns a Python list."""
    return [math.exp(window_tokens * math.log1p(-p)) if p < 1 else 0.0 for p in density.tolist()]


@correct
def power_in_float64(density, window_tokens):
    """(1 - p) ** W in float64, where 1 - p keeps p's digits down to 1e-16, converted back to the densities' dtype."""
    return ((1 - density.double()) ** window_tokens).to(density.dtype)


@correct
def prob_with_a_loop(density, window_tokens):
    """One density at a time with math.log1p, into a tensor of the densities' dtype."""
    values = [math.exp(window_tokens * math.log1p(-p)) if p < 1 else 0.0 for p in density.tolist()]
    return torch.tensor(values, dtype=density.dtype)


# ----- 3.3 Resetting Adam's moments -----


@mistake(r"Adam's exp_avg for the resampled latents' entries of W_enc was not reset.*column of W_enc")
def resets_rows_of_W_enc(optimizer, sae, latents):
    """Indexes W_enc's moments by row, as if W_enc were [d_sae, d_in] (it is [d_in, d_sae])."""
    for param in (sae.W_enc, sae.W_dec, sae.b_enc):
        for key in ("exp_avg", "exp_avg_sq"):
            optimizer.state[param][key][latents] = 0.0


@mistake(r"has no 'exp_avg' any more")
def clears_whole_state(optimizer, sae, latents):
    """Deletes the state of the three parameters: Adam then restarts every latent's moments."""
    for param in (sae.W_enc, sae.W_dec, sae.b_enc):
        optimizer.state[param] = {}


@mistake(r"exp_avg_sq for the resampled latents' entries of W_enc was not reset")
def resets_only_exp_avg(optimizer, sae, latents):
    """Resets the first moment only, leaving a stale second moment to set the step size."""
    optimizer.state[sae.W_enc]["exp_avg"][:, latents] = 0.0
    optimizer.state[sae.W_dec]["exp_avg"][latents] = 0.0
    optimizer.state[sae.b_enc]["exp_avg"][latents] = 0.0


@mistake(r"exp_avg for the resampled latents' entries of b_enc was not reset")
def forgets_b_enc(optimizer, sae, latents):
    """Resets the weights' moments (W_enc's columns, W_dec's rows) but not the encoder bias's."""
    for param, index in ((sae.W_enc, (slice(None), latents)), (sae.W_dec, (latents,))):
        for key in ("exp_avg", "exp_avg_sq"):
            optimizer.state[param][key][index] = 0.0


@mistake(r"Adam's exp_avg for b_dec changed")
def resets_b_dec_too(optimizer, sae, latents):
    """Also zeroes b_dec's moments, which belong to no latent."""
    reset_adam_moments(optimizer, sae, latents)
    for key in ("exp_avg", "exp_avg_sq"):
        optimizer.state[sae.b_dec][key].zero_()


@mistake(r"reset_adam_moments changed sae\.W_enc", kind="inputs")
def zeroes_the_parameters_too(optimizer, sae, latents):
    """Zeroes the latents' parameters along with their moments (resampling sets them elsewhere)."""
    reset_adam_moments(optimizer, sae, latents)
    with torch.no_grad():
        sae.W_enc[:, latents] = 0.0
        sae.W_dec[latents] = 0.0
        sae.b_enc[latents] = 0.0


@mistake(r"has stepped W_enc and W_dec only .* raised KeyError.*skip it", kind="branch")
def assumes_every_parameter_has_state(optimizer, sae, latents):
    """Indexes ``optimizer.state[param]["exp_avg"]`` without checking that the parameter has been stepped."""
    for param, index in ((sae.W_enc, (slice(None), latents)), (sae.W_dec, (latents,)), (sae.b_enc, (latents,))):
        for key in ("exp_avg", "exp_avg_sq"):
            optimizer.state[param][key][index] = 0.0


@correct
def reset_with_a_loop(optimizer, sae, latents):
    """One latent index at a time."""
    for j in latents.nonzero().flatten().tolist():
        for param, index in ((sae.W_enc, (slice(None), j)), (sae.W_dec, (j,)), (sae.b_enc, (j,))):
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][index] = 0.0


@correct
def reset_with_torch_where(optimizer, sae, latents):
    """Rebinds each moment to a masked copy (Adam reads the state dict at every step, so a new tensor works too)."""
    masks = {sae.W_enc: latents[None, :], sae.W_dec: latents[:, None], sae.b_enc: latents}
    for param, mask in masks.items():
        state = optimizer.state.get(param)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = torch.where(mask, torch.zeros_like(state[key]), state[key])


@correct
def reset_by_multiplying(optimizer, sae, latents):
    """Multiplies each moment in place by a 0/1 mask, broadcast along the latent's axis."""
    keep = (~latents).to(sae.W_enc.dtype)
    for param, mask in ((sae.W_enc, keep[None, :]), (sae.W_dec, keep[:, None]), (sae.b_enc, keep)):
        for key in ("exp_avg", "exp_avg_sq"):
            if key in optimizer.state.get(param, {}):
                optimizer.state[param][key].mul_(mask)


# ----- 3.4 Simple resampling -----


def _simple(sae, optimizer, dead, generator, directions=None, scale=None, reset=True, bias=True):
    n = int(dead.sum())
    if n == 0:
        return 0
    with torch.no_grad():
        norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if scale is None else scale(sae, dead)
        if directions is None:
            d = F.normalize(torch.randn(n, sae.W_dec.shape[1], generator=generator), dim=-1)
        else:
            d = directions(n, sae, generator)
        sae.W_dec[dead] = d
        sae.W_enc[:, dead] = 0.2 * norm * d.T
        if bias:
            sae.b_enc[dead] = 0.0
    if reset:
        reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"resample_simple: Adam's exp_avg for the resampled latents' entries of W_enc was not reset")
def simple_without_adam_reset(sae, optimizer, dead, generator):
    """Never resets the optimiser state of the resampled latents."""
    return _simple(sae, optimizer, dead, generator, reset=False)


@mistake(r"wrong encoder scale.*mean norm over all latents, dead ones included")
def simple_mean_over_all_latents(sae, optimizer, dead, generator):
    """Scales the encoder by the mean norm of all latents, dead ones included."""
    return _simple(sae, optimizer, dead, generator, scale=lambda s, d: s.W_enc.norm(dim=0).mean())


@mistake(r"wrong encoder scale.*0\.2 alone: the alive latents' mean encoder norm is missing", kind="fixture")
def simple_unscaled_encoder(sae, optimizer, dead, generator):
    """Sets the encoder column to 0.2 x the direction, as if every encoder column had norm 1 (as at initialisation)."""
    return _simple(sae, optimizer, dead, generator, scale=lambda s, d: torch.tensor(1.0))


@mistake(r"not uniform on the sphere", kind="sampling")
def simple_positive_directions(sae, optimizer, dead, generator):
    """Draws directions with torch.rand (all coordinates positive) instead of a Gaussian."""
    return _simple(
        sae,
        optimizer,
        dead,
        generator,
        directions=lambda n, s, g: F.normalize(torch.rand(n, s.W_dec.shape[1], generator=g), dim=-1),
    )


@mistake(r"all 1,500 dead latents got the same direction", kind="sampling")
def simple_one_direction(sae, optimizer, dead, generator):
    """Draws one direction and gives it to every dead latent (broadcast over the rows)."""

    def one(n, s, g):
        return F.normalize(torch.randn(1, s.W_dec.shape[1], generator=g), dim=-1).expand(n, -1)

    return _simple(sae, optimizer, dead, generator, directions=one)


@mistake(r"global random generator", kind="randomness")
def simple_global_rng(sae, optimizer, dead, generator):
    """Ignores the generator handed in and draws from torch's global one."""
    return _simple(
        sae,
        optimizer,
        dead,
        generator,
        directions=lambda n, s, g: F.normalize(torch.randn(n, s.W_dec.shape[1]), dim=-1),
    )


@mistake(r"random stream restarts at every call", kind="randomness")
def simple_fresh_generator(sae, optimizer, dead, generator):
    """Makes a fresh generator from the one handed in (its seed), so every call draws the same directions."""
    fresh = torch.Generator().manual_seed(generator.initial_seed())
    return _simple(sae, optimizer, dead, fresh)


@mistake(r"encoder biases should be 0", kind="fixture")
def simple_keeps_bias(sae, optimizer, dead, generator):
    """Leaves the dead latents' (very negative) encoder biases as they were."""
    return _simple(sae, optimizer, dead, generator, bias=False)


@mistake(r"replaced sae\.W_dec by a new tensor", kind="gradient")
def simple_new_parameters(sae, optimizer, dead, generator):
    """Builds a new decoder and puts it in a fresh nn.Parameter, which the optimiser does not hold."""
    n = int(dead.sum())
    with torch.no_grad():
        norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
        d = F.normalize(torch.randn(n, sae.W_dec.shape[1], generator=generator), dim=-1)
        W_dec = sae.W_dec.detach().clone()
        W_dec[dead] = d
        sae.W_dec = nn.Parameter(W_dec)
        sae.W_enc[:, dead] = 0.2 * norm * d.T
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"as a Python int, got Tensor", kind="type")
def simple_returns_tensor(sae, optimizer, dead, generator):
    """Returns ``dead.sum()``, a tensor, as the count."""
    _simple(sae, optimizer, dead, generator)
    return dead.sum()


@mistake(
    r"with no dead latent should return the number of latents resampled as a Python int, got NoneType", kind="branch"
)
def simple_returns_none_when_none_dead(sae, optimizer, dead, generator):
    """Returns early without a value when no latent is dead."""
    if not dead.any():
        return
    return _simple(sae, optimizer, dead, generator)


@correct
def simple_with_a_loop(sae, optimizer, dead, generator):
    """One dead latent at a time, each with its own draw (another order of random draws)."""
    latents = dead.nonzero().flatten().tolist()
    with torch.no_grad():
        scale = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean()
        for j in latents:
            d = torch.randn(sae.W_dec.shape[1], generator=generator)
            d = d / d.norm()
            sae.W_dec[j] = d
            sae.W_enc[:, j] = scale * d
            sae.b_enc[j] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return len(latents)


@correct
def simple_with_torch_where(sae, optimizer, dead, generator):
    """Draws [d_in, n_dead] and transposes, then writes whole tensors in place with torch.where."""
    n = int(dead.sum())
    with torch.no_grad():
        scale = 0.2 * torch.linalg.vector_norm(sae.W_enc[:, ~dead], dim=0).mean()
        d = torch.randn(sae.W_dec.shape[1], n, generator=generator).T
        directions = torch.zeros_like(sae.W_dec)
        directions[dead] = d / torch.linalg.vector_norm(d, dim=1, keepdim=True)
        sae.W_dec.copy_(torch.where(dead[:, None], directions, sae.W_dec))
        sae.W_enc.copy_(torch.where(dead[None, :], scale * directions.T, sae.W_enc))
        sae.b_enc.masked_fill_(dead, 0.0)
    reset_adam_moments(optimizer, sae, dead)
    return n


# ----- 3.5 Sampling inputs by squared loss -----


@mistake(r"which fits weighting by the loss itself \(0\.25\)", kind="sampling")
def sample_by_loss(losses, n, generator):
    """Weights inputs by the loss instead of its square (a common slip in public resamplers)."""
    return torch.multinomial(losses, n, replacement=True, generator=generator)


@mistake(r"all 20 draws are distinct: sampling without replacement", kind="sampling")
def sample_without_replacement(losses, n, generator):
    """Samples without replacement, forcing later dead latents onto well-reconstructed inputs."""
    return torch.multinomial(losses.pow(2), n, replacement=False, generator=generator)


@mistake(r"fit a softmax of the losses", kind="sampling")
def sample_by_softmax(losses, n, generator):
    """Uses a softmax of the losses as the probabilities."""
    return torch.multinomial(torch.softmax(losses, 0), n, replacement=True, generator=generator)


@mistake(r"neighbours 16 and 18: an index off by one", kind="sampling")
def sample_bucketize_from_zero(losses, n, generator):
    """Inverse CDF with bucket edges that start at 0 (the cumulative sum shifted): each index comes out one too high."""
    w = losses.pow(2)
    edges = torch.cumsum(w, 0) - w
    return torch.bucketize(torch.rand(n, generator=generator) * w.sum(), edges)


@mistake(r"neighbours 16 and 18: an index off by one", kind="sampling")
def sample_searchsorted_minus_one(losses, n, generator):
    """Inverse CDF with searchsorted, then subtracts 1 as if it returned the position after the bucket."""
    cdf = torch.cumsum(losses.pow(2), 0)
    return torch.searchsorted(cdf, torch.rand(n, generator=generator) * cdf[-1]) - 1


@mistake(r"Index 0 is never drawn", kind="sampling")
def sample_skips_first(losses, n, generator):
    """Slices the losses from 1 (``losses[1:]``) and adds 1 back: the first input can never be drawn."""
    return torch.multinomial(losses[1:].pow(2), n, replacement=True, generator=generator) + 1


@mistake(r"Index 3, the last, is never drawn", kind="sampling")
def sample_skips_last(losses, n, generator):
    """Slices the losses to ``[:-1]``: the last input can never be drawn."""
    return torch.multinomial(losses[:-1].pow(2), n, replacement=True, generator=generator)


@mistake(r"at draw 0 of 500 calls.*not at this position", kind="sampling")
def sample_worst_first(losses, n, generator):
    """Makes sure the worst input is used: the first draw is always the largest loss, the others are sampled."""
    rest = torch.multinomial(losses.pow(2), n - 1, replacement=True, generator=generator)
    return torch.cat([losses.argmax()[None], rest])


@mistake(r"at draw \d of 500 calls.*not at this position", kind="sampling")
def sample_sorted(losses, n, generator):
    """Sorts the drawn indices (tidy, but the first dead latents then get the first inputs of the pool)."""
    return torch.multinomial(losses.pow(2), n, replacement=True, generator=generator).sort().values


@mistake(r"modified its input `losses` in place", kind="inputs")
def squares_in_place(losses, n, generator):
    """Squares the caller's losses in place."""
    return torch.multinomial(losses.pow_(2), n, replacement=True, generator=generator)


@mistake(r"should return int64 indices.*got torch\.float32", kind="dtype")
def sample_float_indices(losses, n, generator):
    """Inverse CDF by counting the cumulative sums below a uniform draw, as floats."""
    cdf = torch.cumsum(losses.pow(2), 0)
    u = torch.rand(n, 1, generator=generator) * cdf[-1]
    return (cdf[None, :] <= u).float().sum(-1)


@mistake(r"should be a torch\.Tensor, but it is a list", kind="type")
def sample_with_random_choices(losses, n, generator):
    """Uses Python's random.choices, which returns a list (and ignores the generator)."""
    return random.choices(range(len(losses)), weights=losses.pow(2).tolist(), k=n)


@mistake(r"global random generator", kind="randomness")
def sample_global_rng(losses, n, generator):
    """Draws from torch's global generator instead of the one handed in."""
    return torch.multinomial(losses.pow(2), n, replacement=True)


@mistake(r"random stream restarts at every call", kind="randomness")
def sample_fresh_generator(losses, n, generator):
    """Re-seeds a fresh generator with the given one's seed at every call, so every call draws the same indices."""
    fresh = torch.Generator().manual_seed(generator.initial_seed())
    return torch.multinomial(losses.pow(2), n, replacement=True, generator=fresh)


@correct
def sample_inverse_cdf(losses, n, generator):
    """Inverse CDF: the first cumulative squared loss above a uniform draw (searchsorted, right=True)."""
    cdf = torch.cumsum(losses.double().pow(2), 0)
    u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp(max=len(losses) - 1)


@correct
def sample_normalised_probabilities(losses, n, generator):
    """torch.multinomial on probabilities normalised to sum to 1."""
    p = losses**2 / (losses**2).sum()
    return torch.multinomial(p, n, replacement=True, generator=generator)


@correct
def sample_one_at_a_time(losses, n, generator):
    """One draw per call of torch.multinomial, concatenated."""
    w = losses.pow(2)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.multinomial(w, 1, generator=generator) for _ in range(n)])


# ----- 3.6 Anthropic's resampling -----


def _anthropic(
    sae,
    optimizer,
    dead,
    inputs,
    generator,
    centre=1,
    weight=2,
    encoder_norm=None,
    reset=True,
    loss=None,
    direction=None,
):
    n = int(dead.sum())
    if n == 0:
        return 0
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1) if loss is None else loss(sae, inputs)
        index = torch.multinomial(losses.pow(weight), n, replacement=True, generator=generator)
        chosen = inputs[index]
        if direction is None:
            d = F.normalize(chosen - centre * sae.b_dec, dim=-1)
        else:
            d = F.normalize(direction(sae, inputs)[index], dim=-1)
        norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if encoder_norm is None else encoder_norm(chosen, sae)
        sae.W_dec[dead] = d
        sae.W_enc[:, dead] = (0.2 * norm * d.T) if encoder_norm is None else (0.2 * norm[:, None] * d).T
        sae.b_enc[dead] = 0.0
    if reset:
        reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"which fits weighting by the loss itself, not its square", kind="sampling")
def anthropic_by_loss(sae, optimizer, dead, inputs, generator):
    """Draws inputs with probability proportional to the loss, not the squared loss."""
    return _anthropic(sae, optimizer, dead, inputs, generator, weight=1)


@mistake(r"input not centred", kind="fixture")
def anthropic_not_centred(sae, optimizer, dead, inputs, generator):
    """Uses the raw input as the direction, without subtracting b_dec."""
    return _anthropic(sae, optimizer, dead, inputs, generator, centre=0)


@mistake(r"b_dec subtracted twice", kind="fixture")
def anthropic_centred_twice(sae, optimizer, dead, inputs, generator):
    """Centres an input that is already centred: x - b_dec - b_dec."""
    return _anthropic(sae, optimizer, dead, inputs, generator, centre=2)


@mistake(r"point along the residual x - x_hat", kind="branch")
def anthropic_residual_direction(sae, optimizer, dead, inputs, generator):
    """Points the new latent at the residual x - x_hat (what the SAE misses) instead of the centred input."""
    return _anthropic(sae, optimizer, dead, inputs, generator, direction=lambda s, x: x - s.decode(s.encode(x)))


@mistake(r"which fits a loss measured from b_dec", kind="branch")
def anthropic_loss_from_b_dec(sae, optimizer, dead, inputs, generator):
    """Measures each input's loss as ||x - b_dec||^2, the reconstruction error only when no latent fires."""
    return _anthropic(sae, optimizer, dead, inputs, generator, loss=lambda s, x: (x - s.b_dec).pow(2).sum(-1))


@mistake(r"which fits .*a loss whose encoder input was centred twice", kind="fixture")
def anthropic_encoder_centred_twice(sae, optimizer, dead, inputs, generator):
    """Centres the pool before encoding it (``sae.encode(inputs - sae.b_dec)``): encode subtracts b_dec itself."""
    return _anthropic(
        sae, optimizer, dead, inputs, generator, loss=lambda s, x: (s.decode(s.encode(x - s.b_dec)) - x).pow(2).sum(-1)
    )


@mistake(r"wrong encoder scale.*chosen input's norm")
def anthropic_input_norm(sae, optimizer, dead, inputs, generator):
    """Scales the encoder column by the chosen input's norm instead of the alive latents' encoder norm."""
    return _anthropic(sae, optimizer, dead, inputs, generator, encoder_norm=lambda x, s: (x - s.b_dec).norm(dim=-1))


@mistake(r"Adam's exp_avg for the resampled latents' entries of W_enc was not reset")
def anthropic_without_adam_reset(sae, optimizer, dead, inputs, generator):
    """Never resets Adam's moments for the resampled latents."""
    return _anthropic(sae, optimizer, dead, inputs, generator, reset=False)


@mistake(r"has no 'exp_avg' any more")
def anthropic_resets_everything(sae, optimizer, dead, inputs, generator):
    """Resets the optimiser for every parameter (``optimizer.state.clear()``), not just the touched entries."""
    n = _anthropic(sae, optimizer, dead, inputs, generator, reset=False)
    optimizer.state.clear()
    return n


@mistake(r"all 20 went to different inputs: sampling without replacement", kind="sampling")
def anthropic_without_replacement(sae, optimizer, dead, inputs, generator):
    """Draws the inputs without replacement (one dead latent per input at most)."""
    n = int(dead.sum())
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        order = torch.multinomial(losses.pow(2), min(n, len(inputs)), replacement=False, generator=generator)
        d = F.normalize(inputs[order.repeat(n // len(order) + 1)[:n]] - sae.b_dec, dim=-1)
        sae.W_enc[:, dead] = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean() * d.T
        sae.W_dec[dead] = d
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"all 1,000 dead latents went to the same input", kind="sampling")
def anthropic_one_input(sae, optimizer, dead, inputs, generator):
    """Draws one input and points every dead latent at it."""
    n = int(dead.sum())
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        chosen = inputs[torch.multinomial(losses.pow(2), 1, generator=generator)]
        d = F.normalize(chosen - sae.b_dec, dim=-1).expand(n, -1)
        sae.W_enc[:, dead] = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean() * d.T
        sae.W_dec[dead] = d
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"alive latents' entries of W_dec changed")
def anthropic_touches_alive(sae, optimizer, dead, inputs, generator):
    """Renormalises every decoder row after resampling, touching the alive latents too."""
    n = _anthropic(sae, optimizer, dead, inputs, generator)
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
    return n


@mistake(r"global random generator", kind="randomness")
def anthropic_global_rng(sae, optimizer, dead, inputs, generator):
    """Samples the inputs from torch's global generator, ignoring the one handed in."""
    n = int(dead.sum())
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        d = F.normalize(inputs[torch.multinomial(losses.pow(2), n, replacement=True)] - sae.b_dec, dim=-1)
        sae.W_enc[:, dead] = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean() * d.T
        sae.W_dec[dead] = d
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"modified its input `inputs` in place", kind="inputs")
def anthropic_centres_pool_in_place(sae, optimizer, dead, inputs, generator):
    """Centres the pool in place (``inputs -= sae.b_dec``) to get the directions, changing the caller's batch."""
    n = int(dead.sum())
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        index = torch.multinomial(losses.pow(2), n, replacement=True, generator=generator)
        inputs -= sae.b_dec
        d = F.normalize(inputs[index], dim=-1)
        sae.W_enc[:, dead] = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean() * d.T
        sae.W_dec[dead] = d
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"as a Python int, got Tensor", kind="type")
def anthropic_returns_tensor(sae, optimizer, dead, inputs, generator):
    """Returns ``dead.sum()``, a tensor, as the count."""
    _anthropic(sae, optimizer, dead, inputs, generator)
    return dead.sum()


@mistake(r"replaced sae\.W_enc by a new tensor", kind="gradient")
def anthropic_new_parameters(sae, optimizer, dead, inputs, generator):
    """Writes the new encoder into a fresh nn.Parameter, which the optimiser does not hold."""
    n = int(dead.sum())
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        d = F.normalize(
            inputs[torch.multinomial(losses.pow(2), n, replacement=True, generator=generator)] - sae.b_dec, dim=-1
        )
        W_enc = sae.W_enc.detach().clone()
        W_enc[:, dead] = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean() * d.T
        sae.W_enc = nn.Parameter(W_enc)
        sae.W_dec[dead] = d
        sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n


@correct
def anthropic_with_a_loop(sae, optimizer, dead, inputs, generator):
    """One dead latent at a time, each drawing its own input; the loss as a mean over d_in (the same law)."""
    latents = dead.nonzero().flatten().tolist()
    with torch.no_grad():
        scale = 0.2 * sae.W_enc[:, ~dead].norm(dim=0).mean()
        weights = F.mse_loss(sae.decode(sae.encode(inputs)), inputs, reduction="none").mean(-1).pow(2)
        for j in latents:
            x = inputs[int(torch.multinomial(weights, 1, generator=generator))]
            d = (x - sae.b_dec) / (x - sae.b_dec).norm()
            sae.W_dec[j] = d
            sae.W_enc[:, j] = scale * d
            sae.b_enc[j] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return len(latents)


@correct
def anthropic_inverse_cdf(sae, optimizer, dead, inputs, generator):
    """Samples by inverse CDF on the squared norms of the residuals, and writes with index_copy_."""
    n = int(dead.sum())
    with torch.no_grad():
        scale = 0.2 * torch.linalg.vector_norm(sae.W_enc[:, ~dead], dim=0).mean()
        residual = inputs - sae.decode(sae.encode(inputs))
        cdf = torch.cumsum(torch.linalg.vector_norm(residual, dim=-1).double() ** 4, 0)
        index = torch.searchsorted(cdf, torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1], right=True)
        centred = torch.sub(inputs[index.clamp(max=len(inputs) - 1)], sae.b_dec)
        d = centred / torch.linalg.vector_norm(centred, dim=-1, keepdim=True)
        rows = dead.nonzero().flatten()
        sae.W_dec.index_copy_(0, rows, d)
        sae.W_enc.index_copy_(1, rows, scale * d.T)
        sae.b_enc.index_fill_(0, rows, 0.0)
    reset_adam_moments(optimizer, sae, dead)
    return n


# ----- 3.7 Resampling on a schedule -----


class _Plugin(ResampleOnSchedule):
    def _resample(self, state, dead, generator=None):
        generator = self.generator if generator is None else generator
        if self.pool_batches > 0:
            pool = torch.cat([next(state.buffer) for _ in range(self.pool_batches)])
            return self.resample(state.sae, state.optimizer, dead, pool, generator)
        return self.resample(state.sae, state.optimizer, dead, generator)


@mistake(r"the dead latents are .* dead means tokens_since_fired >= window_tokens")
class WindowInSteps(_Plugin):
    """Compares the window with a count of steps (tokens since firing divided by the batch size)."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired // len(x) >= self.window_tokens
        n = self._resample(state, dead)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"after step 3, which is in steps=\[3, 5\], the resampler was called 0 times", kind="branch")
class OffByOneStep(_Plugin):
    """Tests ``state.step in self.steps``, one step late (state.step counts the steps before this one)."""

    def after_update(self, state, x, out):
        if state.step not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        n = self._resample(state, dead)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"counters should be 0 for the resampled latents")
class KeepsCounters(_Plugin):
    """Never restarts the resampled latents' counters, so they are resampled again at once."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        return {"resampled": self._resample(state, state.tokens_since_fired >= self.window_tokens)}


@mistake(r"pool should be the next \d+ batch.*this step's batch x")
class PoolIsThisBatch(_Plugin):
    """Uses only the current batch as the pool of inputs."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        if self.pool_batches > 0:
            n = self.resample(state.sae, state.optimizer, dead, x, self.generator)
        else:
            n = self.resample(state.sae, state.optimizer, dead, self.generator)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"after step 1 \(not on the schedule\) after_update took 1 batch", kind="branch")
class PoolEveryStep(_Plugin):
    """Draws the pool at every step, before looking at the schedule: the loop never trains on those batches."""

    def after_update(self, state, x, out):
        pool = torch.cat([next(state.buffer) for _ in range(self.pool_batches)]) if self.pool_batches else None
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        args = (dead, pool) if pool is not None else (dead,)
        n = self.resample(state.sae, state.optimizer, *args, self.generator)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"should return \{'resampled': n\}.*got 3", kind="type")
class ReturnsTheCount(_Plugin):
    """Returns the count itself instead of a dict for the history record."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        n = self._resample(state, dead)
        state.tokens_since_fired[dead] = 0
        return n


@mistake(r"generator restarts at every step", kind="randomness")
class FreshGeneratorEachStep(_Plugin):
    """Re-seeds a fresh generator from the plug-in's seed at every resampling, so each draws the same numbers."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        n = self._resample(state, dead, torch.Generator().manual_seed(self.generator.initial_seed()))
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"used torch's global random generator", kind="randomness")
class GlobalGenerator(_Plugin):
    """Hands the resampler torch's global generator (``torch.default_generator``) instead of the plug-in's."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        n = self._resample(state, dead, torch.default_generator)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@mistake(r"the seed is ignored", kind="randomness")
class UnseededGenerator(_Plugin):
    """Makes a new, unseeded torch.Generator() for each resampling (its default seed is always the same)."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        n = self._resample(state, dead, torch.Generator())
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}


@correct
class ScheduleWithStateHelpers(ResampleOnSchedule):
    """Uses TrainState.dead_latents and masked_fill_, and builds the arguments as a tuple."""

    def after_update(self, state, x, out):
        if (state.step + 1) in self.steps:
            dead = state.dead_latents(self.window_tokens)
            args = (state.sae, state.optimizer, dead)
            if self.pool_batches:
                args += (torch.cat([next(state.buffer) for _ in range(self.pool_batches)]),)
            n = self.resample(*args, self.generator)
            state.tokens_since_fired.masked_fill_(dead, 0)
            return {"resampled": float(n)}
        return None


@correct
class ScheduleWithNewCounters(ResampleOnSchedule):
    """Rebinds state.tokens_since_fired to a new tensor (the loop reads it from the state at every step)."""

    def after_update(self, state, x, out):
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        pool = [torch.cat([next(state.buffer) for _ in range(self.pool_batches)])] if self.pool_batches > 0 else []
        n = self.resample(state.sae, state.optimizer, dead, *pool, self.generator)
        state.tokens_since_fired = torch.where(dead, 0, state.tokens_since_fired)
        return {"resampled": n}


WRONG = {
    "3.1": [
        counts_steps,
        resets_only_if_fired_on_every_token,
        resets_only_if_fired_on_last_token,
        updates_in_place,
        float_counter,
        keeps_the_batch_dimension,
    ],
    "3.2": [
        naive_power,
        exponential_approximation,
        linear_approximation,
        returns_float64,
        returns_float32_always,
        computes_in_place,
        returns_a_list,
    ],
    "3.3": [
        resets_rows_of_W_enc,
        clears_whole_state,
        resets_only_exp_avg,
        forgets_b_enc,
        resets_b_dec_too,
        zeroes_the_parameters_too,
        assumes_every_parameter_has_state,
    ],
    "3.4": [
        simple_without_adam_reset,
        simple_mean_over_all_latents,
        simple_unscaled_encoder,
        simple_positive_directions,
        simple_one_direction,
        simple_global_rng,
        simple_fresh_generator,
        simple_keeps_bias,
        simple_new_parameters,
        simple_returns_tensor,
        simple_returns_none_when_none_dead,
    ],
    "3.5": [
        sample_by_loss,
        sample_without_replacement,
        sample_by_softmax,
        sample_bucketize_from_zero,
        sample_searchsorted_minus_one,
        sample_skips_first,
        sample_skips_last,
        sample_worst_first,
        sample_sorted,
        squares_in_place,
        sample_float_indices,
        sample_with_random_choices,
        sample_global_rng,
        sample_fresh_generator,
    ],
    "3.6": [
        anthropic_by_loss,
        anthropic_not_centred,
        anthropic_centred_twice,
        anthropic_residual_direction,
        anthropic_loss_from_b_dec,
        anthropic_encoder_centred_twice,
        anthropic_input_norm,
        anthropic_without_adam_reset,
        anthropic_resets_everything,
        anthropic_without_replacement,
        anthropic_one_input,
        anthropic_touches_alive,
        anthropic_global_rng,
        anthropic_centres_pool_in_place,
        anthropic_returns_tensor,
        anthropic_new_parameters,
    ],
    "3.7": [
        WindowInSteps,
        OffByOneStep,
        KeepsCounters,
        PoolIsThisBatch,
        PoolEveryStep,
        ReturnsTheCount,
        FreshGeneratorEachStep,
        GlobalGenerator,
        UnseededGenerator,
    ],
}

CORRECT = {
    "3.1": [update_with_a_loop, update_with_masked_fill],
    "3.2": [power_in_float64, prob_with_a_loop],
    "3.3": [reset_with_a_loop, reset_with_torch_where, reset_by_multiplying],
    "3.4": [simple_with_a_loop, simple_with_torch_where],
    "3.5": [sample_inverse_cdf, sample_normalised_probabilities, sample_one_at_a_time],
    "3.6": [anthropic_with_a_loop, anthropic_inverse_cdf],
    "3.7": [ScheduleWithStateHelpers, ScheduleWithNewCounters],
}

APPLIES = {
    "3.1": {"formula", "branch", "inputs", "dtype", "type"},
    "3.2": {"formula", "inputs", "dtype", "type"},
    "3.3": {"formula", "branch", "inputs"},
    "3.4": {"formula", "fixture", "branch", "sampling", "randomness", "gradient", "type"},
    "3.5": {"sampling", "randomness", "inputs", "dtype", "type"},
    "3.6": {"formula", "fixture", "branch", "sampling", "randomness", "gradient", "inputs", "type"},
    "3.7": {"formula", "branch", "randomness", "type"},
}

_NO_GRAD = (
    "no gradient is meant to flow here (counts, probabilities of a fixed density, sampled indices, optimiser "
    "state, a plug-in that edits parameters under no_grad): detaching or no_grad changes nothing a caller can "
    "observe"
)
EQUIVALENT = {
    "3.1:m33e485": "detach on an int64 counter: " + _NO_GRAD,
    "3.2:m1616ea": "detach of the probability: " + _NO_GRAD,
    "3.2:m02e933": "no_grad around the probability: " + _NO_GRAD,
    "3.3:mddebed": "no_grad around the Adam-state edit (the function is already decorated @torch.no_grad): " + _NO_GRAD,
    "3.5:medf407": "detach of integer indices: " + _NO_GRAD,
    "3.5:m318e65": "no_grad around sampling: " + _NO_GRAD,
    "3.6:m3afe94": "sum vs mean of the squared error over d_in scales every loss by 1/d_in: the sampling law "
    "(proportional to loss^2) is unchanged",
    "3.1:mfaacd0": "no_grad around an int64 counter: " + _NO_GRAD,
    "3.4:m500989": "n_dead == -1 is never true, so the early return never happens: the general path handles 0 dead "
    "latents too",
    "3.4:m815f10": "no_grad inside a function already decorated @torch.no_grad: " + _NO_GRAD,
    "3.6:mcd7390": "no_grad inside a function already decorated @torch.no_grad: " + _NO_GRAD,
    "3.7:m76bfb4": "no_grad around after_update: the resampler runs under no_grad anyway; " + _NO_GRAD,
}
