"""Realistic wrong answers to Part 3's exercises; each must make its check fail with the message its @mistake names.

Each entry of ``WRONG`` is the wrong object (all of Part 3's exercises take one object). Each wrong answer is
a mistake found in published resampling code or likely from a learner: its docstring's first line says which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.wrong import mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("03_dead_latents")
reset_adam_moments = REF["reset_adam_moments"]
sample_by_squared_loss = REF["sample_by_squared_loss"]
ResampleOnSchedule = REF["ResampleOnSchedule"]

# ----- 3.1 tokens since each latent fired -----


@mistake(r"raised by 7, got \+1.*tokens, not steps")
def counts_steps(tokens_since_fired, acts):
    """Counts steps instead of tokens: the window then changes meaning with the batch size."""
    return torch.where((acts > 0).any(0), torch.zeros_like(tokens_since_fired), tokens_since_fired + 1)


@mistake(r"fired on some token of the batch .* reset to 0")
def resets_only_if_fired_on_every_token(tokens_since_fired, acts):
    """Resets a latent's count only if it fired on every token of the batch (``all`` for ``any``)."""
    return torch.where((acts > 0).all(0), torch.zeros_like(tokens_since_fired), tokens_since_fired + len(acts))


@mistake(r"changed its inputs")
def updates_in_place(tokens_since_fired, acts):
    """Updates the counter in place, changing the caller's tensor."""
    return tokens_since_fired.add_(len(acts)).masked_fill_((acts > 0).any(0), 0)


@mistake(r"should stay int64")
def float_counter(tokens_since_fired, acts):
    """Turns the counter into floats (rounded above 2**24 tokens in float32)."""
    return torch.where((acts > 0).any(0), 0.0, tokens_since_fired.float() + len(acts))


# ----- 3.2 dead in a window vs ultra-low density -----


@mistake(r"density 1e-07 .* should be 0\.3679.*log1p")
def naive_power(density, window_tokens):
    """Computes (1 - p) ** W in float32, where 1 - p rounds away p's digits for tiny p."""
    return (1 - density) ** window_tokens


@mistake(r"density 0\.5 and a window of 3 tokens")
def exponential_approximation(density, window_tokens):
    """Uses the small-p approximation exp(-p W), wrong for common latents."""
    return torch.exp(-density * window_tokens)


@mistake(r"density 1 and a window .* got -1e\+07")
def linear_approximation(density, window_tokens):
    """Uses 1 - p W, the first term of the expansion (negative for long windows)."""
    return 1 - density * window_tokens


@mistake(r"should return float32")
def returns_float64(density, window_tokens):
    """Computes in float64 and returns float64."""
    return torch.exp(window_tokens * torch.log1p(-density.double()))


# ----- 3.3 Adam's moments -----


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


@mistake(r"Adam's exp_avg for b_dec changed")
def resets_b_dec_too(optimizer, sae, latents):
    """Also zeroes b_dec's moments, which belong to no latent."""
    reset_adam_moments(optimizer, sae, latents)
    for key in ("exp_avg", "exp_avg_sq"):
        optimizer.state[sae.b_dec][key].zero_()


# ----- 3.4 simple resampling -----


def _simple(sae, optimizer, dead, generator, directions=None, scale=None, reset=True, bias=True):
    n = int(dead.sum())
    if n == 0:
        return 0
    with torch.no_grad():
        norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if scale is None else scale(sae, dead)
        d = F.normalize(torch.randn(n, sae.W_dec.shape[1], generator=generator), dim=-1) if directions is None else directions(n, sae, generator)
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


@mistake(r"wrong encoder scale.*mean over all latents")
def simple_mean_over_all_latents(sae, optimizer, dead, generator):
    """Scales the encoder by the mean norm of all latents, dead ones included."""
    return _simple(sae, optimizer, dead, generator, scale=lambda s, d: s.W_enc.norm(dim=0).mean())


@mistake(r"not uniform on the sphere")
def simple_positive_directions(sae, optimizer, dead, generator):
    """Draws directions with torch.rand (all coordinates positive) instead of a Gaussian."""
    return _simple(sae, optimizer, dead, generator,
                   directions=lambda n, s, g: F.normalize(torch.rand(n, s.W_dec.shape[1], generator=g), dim=-1))


@mistake(r"global random generator")
def simple_global_rng(sae, optimizer, dead, generator):
    """Ignores the generator handed in and draws from torch's global one."""
    return _simple(sae, optimizer, dead, generator,
                   directions=lambda n, s, g: F.normalize(torch.randn(n, s.W_dec.shape[1]), dim=-1))


@mistake(r"encoder biases should be 0")
def simple_keeps_bias(sae, optimizer, dead, generator):
    """Leaves the dead latents' (very negative) encoder biases as they were."""
    return _simple(sae, optimizer, dead, generator, bias=False)


# ----- 3.5 sampling by squared loss -----


@mistake(r"picked one .* of the time.*loss \*\* 2")
def sample_by_loss(losses, n, generator):
    """Weights inputs by the loss instead of its square (a common slip in public resamplers)."""
    return torch.multinomial(losses, n, replacement=True, generator=generator)


@mistake(r"sampling without replacement")
def sample_without_replacement(losses, n, generator):
    """Samples without replacement, forcing later dead latents onto well-reconstructed inputs."""
    return torch.multinomial(losses.pow(2), n, replacement=False, generator=generator)


@mistake(r"chi-squared")
def sample_by_softmax(losses, n, generator):
    """Uses a softmax of the losses as the probabilities."""
    return torch.multinomial(torch.softmax(losses, 0), n, replacement=True, generator=generator)


@mistake(r"changed the losses")
def squares_in_place(losses, n, generator):
    """Squares the caller's losses in place."""
    return torch.multinomial(losses.pow_(2), n, replacement=True, generator=generator)


# ----- 3.6 Anthropic's resampling -----


def _anthropic(sae, optimizer, dead, inputs, generator, centre=True, weight=2, encoder_norm=None, reset=True):
    n = int(dead.sum())
    if n == 0:
        return 0
    with torch.no_grad():
        losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
        chosen = inputs[torch.multinomial(losses.pow(weight), n, replacement=True, generator=generator)]
        d = F.normalize(chosen - sae.b_dec if centre else chosen, dim=-1)
        norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if encoder_norm is None else encoder_norm(chosen, sae)
        sae.W_dec[dead] = d
        sae.W_enc[:, dead] = (0.2 * norm * d.T) if encoder_norm is None else (0.2 * norm[:, None] * d).T
        sae.b_enc[dead] = 0.0
    if reset:
        reset_adam_moments(optimizer, sae, dead)
    return n


@mistake(r"picked one .* of the time")
def anthropic_by_loss(sae, optimizer, dead, inputs, generator):
    """Draws inputs with probability proportional to the loss, not the squared loss."""
    return _anthropic(sae, optimizer, dead, inputs, generator, weight=1)


@mistake(r"input not centred")
def anthropic_not_centred(sae, optimizer, dead, inputs, generator):
    """Uses the raw input as the direction, without subtracting b_dec."""
    return _anthropic(sae, optimizer, dead, inputs, generator, centre=False)


@mistake(r"wrong encoder scale.*not the input's norm")
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


@mistake(r"sampling without replacement")
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


@mistake(r"alive latents' entries of W_dec changed")
def anthropic_touches_alive(sae, optimizer, dead, inputs, generator):
    """Renormalises every decoder row after resampling, touching the alive latents too."""
    n = _anthropic(sae, optimizer, dead, inputs, generator)
    with torch.no_grad():
        sae.W_dec.mul_(1.01)
    return n


# ----- 3.7 the plug-in -----


class _Plugin(ResampleOnSchedule):
    def _resample(self, state, dead):
        if self.pool_batches > 0:
            pool = torch.cat([next(state.buffer) for _ in range(self.pool_batches)])
            return self.resample(state.sae, state.optimizer, dead, pool, self.generator)
        return self.resample(state.sae, state.optimizer, dead, self.generator)


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


@mistake(r"after step 4 .* not in steps|resampler was not called")
class OffByOneStep(_Plugin):
    """Tests ``state.step in self.steps``, one step early (state.step counts the steps before this one)."""

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


@mistake(r"pool should be the next \d+ batch")
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


WRONG = {
    "3.1": [counts_steps, resets_only_if_fired_on_every_token, updates_in_place, float_counter],
    "3.2": [naive_power, exponential_approximation, linear_approximation, returns_float64],
    "3.3": [resets_rows_of_W_enc, clears_whole_state, resets_only_exp_avg, resets_b_dec_too],
    "3.4": [simple_without_adam_reset, simple_mean_over_all_latents, simple_positive_directions, simple_global_rng,
            simple_keeps_bias],
    "3.5": [sample_by_loss, sample_without_replacement, sample_by_softmax, squares_in_place],
    "3.6": [anthropic_by_loss, anthropic_not_centred, anthropic_input_norm, anthropic_without_adam_reset,
            anthropic_resets_everything, anthropic_without_replacement, anthropic_touches_alive],
    "3.7": [WindowInSteps, OffByOneStep, KeepsCounters, PoolIsThisBatch],
}

_NO_GRAD = "no gradient is meant to flow here (counts, probabilities of a fixed density, sampled indices, optimiser state, a plug-in that edits parameters under no_grad): detaching or no_grad changes nothing a caller can observe"
EQUIVALENT = {
    "3.1:m33e485": "detach on an int64 counter: " + _NO_GRAD,
    "3.2:m1616ea": "detach of the probability: " + _NO_GRAD,
    "3.2:m02e933": "no_grad around the probability: " + _NO_GRAD,
    "3.3:mddebed": "no_grad around the Adam-state edit (the function is already decorated @torch.no_grad): " + _NO_GRAD,
    "3.4:m0e7739": "the early return for n_dead == 0 is a shortcut: the general path also handles 0 dead latents (empty masks, returns 0) and 1",
    "3.5:medf407": "detach of integer indices: " + _NO_GRAD,
    "3.5:m318e65": "no_grad around sampling: " + _NO_GRAD,
    "3.6:m3afe94": "sum vs mean of the squared error over d_in scales every loss by 1/d_in: the sampling law (proportional to loss^2) is unchanged",
    "3.1:mfaacd0": "no_grad around an int64 counter: " + _NO_GRAD,
    "3.4:m500989": "n_dead == -1 is never true, so the early return never happens: the general path handles 0 dead latents too",
    "3.4:m815f10": "no_grad inside a function already decorated @torch.no_grad: " + _NO_GRAD,
    "3.6:mcd7390": "no_grad inside a function already decorated @torch.no_grad: " + _NO_GRAD,
    "3.7:m76bfb4": "no_grad around after_update: the resampler runs under no_grad anyway; " + _NO_GRAD,
}
