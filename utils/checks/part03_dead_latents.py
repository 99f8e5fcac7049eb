"""Checks for Part 3 (dead latents and resampling).

Every check builds a small SAE from ``utils.sae`` with hand-set parameters, an Adam optimiser whose
moments are already non-zero, and the smallest inputs that show each property. Sampling is checked as a
distribution, with tests whose false-alarm rate is at most 1e-6 per run: the pools are built so that the
laws a wrong answer would follow (weights by the loss instead of its square, without replacement, random
directions that are not uniform) are far from the right one, so the tests never flake and always catch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (CheckFailure, assert_close, assert_shape, binom_test, check_that, chi2_test, exercise,
                          ks_test, one_thread)
from utils.sae.model import SAE, SAEConfig

__all__ = [
    "check_update_tokens_since_fired",
    "check_prob_looks_dead",
    "check_reset_adam_moments",
    "check_resample_simple",
    "check_sample_by_squared_loss",
    "check_resample_anthropic",
    "check_resample_on_schedule",
]

ALPHA = 1e-6  # false-alarm rate of every statistical test here
SCALE = 0.2  # Bricken et al.'s encoder scale for resampled latents
ADAM_KEYS = ("exp_avg", "exp_avg_sq")


# ---------------------------------------------------------------------------------------------------------
# Small SAEs with an optimiser that has a history
# ---------------------------------------------------------------------------------------------------------


def _sae(d_in: int, d_sae: int, seed: int) -> SAE:
    """An SAE with random parameters (encoder columns of varied norms, non-zero biases)."""
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=0.1, seed=seed))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) * (0.5 + 2.5 * torch.rand(1, d_sae, generator=g)))
        sae.b_enc.copy_(torch.randn(d_sae, generator=g))
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
    return sae


def _adam(sae: SAE, seed: int, steps: int = 3) -> torch.optim.Adam:
    """Adam over the four parameters, after a few steps on random gradients (so every moment is non-zero)."""
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    g = torch.Generator().manual_seed(10_000 + seed)
    saved = [p.detach().clone() for p in params]
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # keep the hand-set parameters; only the optimiser's memory matters here
        for p, s in zip(params, saved):
            p.copy_(s)
    return optimizer


def _adam_snapshot(optimizer: torch.optim.Optimizer, sae: SAE) -> dict:
    return {name: {k: v.clone() if isinstance(v, Tensor) else v for k, v in optimizer.state[getattr(sae, name)].items()}
            for name in ("W_enc", "b_enc", "W_dec", "b_dec")}


def _latent_index(name: str, latents: Tensor) -> tuple:
    """Where a latent's entries sit in each parameter: a column of W_enc, a row of W_dec, an entry of b_enc."""
    return (slice(None), latents) if name == "W_enc" else (latents,)


def _check_adam_reset(optimizer, sae: SAE, before: dict, latents: Tensor, what: str) -> None:
    """Exactly ``latents``' moments are zero; every other moment (and every step count) is as it was."""
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        state = optimizer.state.get(getattr(sae, name), {})
        for key in ADAM_KEYS:
            check_that(key in state, f"{what}: optimizer.state[sae.{name}] has no {key!r} any more. Hint: zero the "
                       "entries of the moments in place; deleting or clearing the state resets every latent at once.")
            now, old = state[key], before[name][key]
            assert_shape(now, old.shape, f"optimizer.state[sae.{name}][{key!r}]")
            if name == "b_dec":
                check_that(torch.equal(now, old), f"{what}: Adam's {key} for b_dec changed. Hint: b_dec belongs to no "
                           "latent; resampling must leave its optimiser state alone.")
                continue
            index = _latent_index(name, latents)
            keep = torch.ones_like(old, dtype=torch.bool)
            keep[index] = False
            check_that(bool((now[index] == 0).all()), f"{what}: Adam's {key} for the resampled latents' entries of "
                       f"{name} was not reset to 0. Hint: a latent is a {'column' if name == 'W_enc' else 'row' if name == 'W_dec' else 'entry'} "
                       f"of {name}; its old moments would push the new parameters the way the dead latent was going.")
            check_that(torch.equal(now[keep], old[keep]), f"{what}: Adam's {key} for {name} changed outside the resampled "
                       f"latents' {'columns' if name == 'W_enc' else 'rows' if name == 'W_dec' else 'entries'}. Hint: reset "
                       "exactly the touched entries; the alive latents' moments carry what Adam has learnt about them.")
        check_that(_same(state.get("step"), before[name].get("step")), f"{what}: Adam's step count for {name} changed. "
                   "Hint: only exp_avg and exp_avg_sq are reset.")


def _same(a, b) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.equal(a, b)
    return a == b


def _params(sae: SAE) -> dict[str, Tensor]:
    return {name: getattr(sae, name).detach().clone() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}


def _check_alive_untouched(sae: SAE, before: dict, dead: Tensor, what: str) -> None:
    alive = ~dead
    for name in ("W_enc", "W_dec", "b_enc"):
        index = _latent_index(name, alive)
        check_that(torch.equal(getattr(sae, name).detach()[index], before[name][index]),
                   f"{what}: the alive latents' entries of {name} changed. Hint: touch only the dead latents' "
                   f"{'columns' if name == 'W_enc' else 'rows' if name == 'W_dec' else 'entries'}.")
    check_that(torch.equal(sae.b_dec.detach(), before["b_dec"]), f"{what}: b_dec changed. Hint: resampling reads b_dec "
               "but never writes it.")


def _check_new_latents(sae: SAE, before: dict, dead: Tensor, what: str) -> Tensor:
    """Unit decoder rows; encoder columns along them with 0.2 x the alive latents' mean encoder norm; zero biases."""
    rows = sae.W_dec.detach()[dead]
    norms = rows.norm(dim=-1)
    check_that(bool(torch.isfinite(rows).all()), f"{what}: the new decoder rows contain NaN or inf.")
    check_that(bool(((norms - 1).abs() < 1e-4).all()), f"{what}: the new decoder rows should have unit norm; their norms "
               f"range from {norms.min():.3g} to {norms.max():.3g}. Hint: normalise each direction (dim=-1).")
    cols = sae.W_enc.detach()[:, dead].T  # [n_dead, d_in]
    alive_norm = before["W_enc"][:, ~dead].norm(dim=0).mean()
    cos = F.cosine_similarity(cols, rows, dim=-1)
    check_that(bool((cos > 1 - 1e-4).all()), f"{what}: a new encoder column does not point along its latent's new decoder "
               f"row (lowest cosine {cos.min():.3f}). Hint: the encoder column is a scaled copy of the decoder row.")
    ratio = cols.norm(dim=-1) / alive_norm
    all_norm = before["W_enc"].norm(dim=0).mean() / alive_norm
    check_that(bool(((ratio - SCALE).abs() < 1e-3).all()),
               f"{what}: wrong encoder scale: the new encoder columns' norms are {ratio.min():.3g} to {ratio.max():.3g} times "
               f"the alive latents' mean encoder norm, expected {SCALE} (the mean over all latents would give "
               f"{SCALE * all_norm:.3g}). Hint: 0.2 times the mean norm of the alive latents' encoder columns, computed "
               "before you change anything; not the input's norm.")
    b = sae.b_enc.detach()[dead]
    check_that(bool((b == 0).all()), f"{what}: the resampled latents' encoder biases should be 0, got values up to "
               f"{b.abs().max():.3g}.")
    return rows


def _check_count(result, n: int, what: str) -> None:
    try:
        value = int(result)
    except (TypeError, ValueError):
        raise CheckFailure(f"{what} should return the number of latents resampled (an int), got {type(result).__name__}.") from None
    check_that(value == n, f"{what} returned {value}, but {n} latents were dead. Hint: return how many you resampled.")


def _uses_generator(run, what: str) -> None:
    """Same seed, same result; and the global RNG is left alone."""
    state = torch.random.get_rng_state()
    first = run(torch.Generator().manual_seed(5))
    check_that(torch.equal(torch.random.get_rng_state(), state), f"{what} drew from torch's global random generator. "
               "Hint: pass generator=generator to every random call, so that a seeded run repeats exactly.")
    second = run(torch.Generator().manual_seed(5))
    check_that(torch.equal(first, second), f"{what} gave different results for two generators with the same seed. "
               "Hint: draw every random number from the generator handed in.")


# ---------------------------------------------------------------------------------------------------------
# 3.1, 3.2
# ---------------------------------------------------------------------------------------------------------


def _ref_update(t: Tensor, acts: Tensor) -> Tensor:
    fired = (acts > 0).any(0)
    return torch.where(fired, torch.zeros_like(t), t + len(acts))


@exercise("3.1", "tokens since each latent fired", objects=["update_tokens_since_fired"])
@one_thread
def check_update_tokens_since_fired(update_tokens_since_fired, *, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor([0, 5, 100, 7, 3, 0, 12, 2**40], dtype=torch.long)
    acts = torch.zeros(7, 8)
    acts[0, 0] = 0.5  # fires on the first token only
    acts[6, 3] = 2.0  # on the last token only
    acts[:, 5] = torch.rand(7, generator=g) + 0.1  # on every token
    acts[2:4, 7] = 0.3
    saved_t, saved_acts = t.clone(), acts.clone()
    got = update_tokens_since_fired(t, acts)
    check_that(torch.equal(t, saved_t) and torch.equal(acts, saved_acts), "update_tokens_since_fired changed its inputs. "
               "Hint: return a new tensor (torch.where or t + ...), do not update tokens_since_fired in place.")
    assert_shape(got, (8,), "update_tokens_since_fired(...)")
    check_that(got.dtype == torch.long, f"the counter should stay int64 (exact for any number of tokens), got {got.dtype}.")
    want = _ref_update(t, acts)
    fired = (acts > 0).any(0)
    check_that(bool((got[fired] == 0).all()), "a latent that fired on some token of the batch (the first, the last, or "
               "every one) should have its count reset to 0. Hint: 'fired' means a positive activation on any token of the batch.")
    steps = int(got[~fired][0] - t[~fired][0])
    check_that(torch.equal(got, want), f"a latent that did not fire on a batch of 7 tokens should have its count raised by "
               f"7, got +{steps}. Hint: the window is measured in tokens, not steps: add the batch's number of tokens.")
    # batches of other sizes, one after another
    for batch in (1, 13, 4):
        acts = F.relu(torch.randn(batch, 8, generator=g) - 1.5)
        t, want = got, _ref_update(got, acts)
        got = update_tokens_since_fired(t, acts)
        check_that(torch.equal(got, want), f"after a batch of {batch} tokens the counts are wrong (tokens since firing "
                   "must grow by the batch's number of tokens for latents that did not fire, and be 0 for those that did).")


@exercise("3.2", "dead in a window vs ultra-low density", objects=["prob_looks_dead"])
@one_thread
def check_prob_looks_dead(prob_looks_dead, *, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    cases = [(torch.tensor([0.0, 1.0, 1e-7, 3e-7, 1e-6, 1e-8]), 10**7),
             (torch.tensor([0.5, 0.9, 0.01, 0.3]), 3),
             (10 ** (-6 * torch.rand(5, generator=g)), 1000)]
    for density, window in cases:
        density = density.float()
        saved = density.clone()
        got = prob_looks_dead(density, window)
        check_that(torch.equal(density, saved), "prob_looks_dead changed the densities it was given (in place).")
        assert_shape(got, density.shape, f"prob_looks_dead(density, {window})")
        check_that(got.dtype == torch.float32, f"prob_looks_dead should return float32 for float32 densities, got {got.dtype}.")
        want = torch.exp(window * torch.log1p(-density.double())).float()
        bad = ~torch.isclose(got.detach().float(), want, rtol=1e-3, atol=1e-6)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise CheckFailure(f"for density {density[i].item():.3g} and a window of {window:,} tokens, the probability of "
                               f"not firing once should be {want[i].item():.4g}, got {got[i].item():.4g}. Hint: it is "
                               "(1 - p) ** W exactly, and in float32 1 - p loses p's digits when p is tiny; use log1p.")


# ---------------------------------------------------------------------------------------------------------
# 3.3 Adam
# ---------------------------------------------------------------------------------------------------------


@exercise("3.3", "resetting Adam's moments", objects=["reset_adam_moments"])
@one_thread
def check_reset_adam_moments(reset_adam_moments, *, seed: int = 0) -> None:
    sae = _sae(8, 8, seed)  # square W_enc, so that rows and columns are both valid, and only one is right
    optimizer = _adam(sae, seed)
    latents = torch.tensor([True, False, False, True, False, True, False, False])
    before, params = _adam_snapshot(optimizer, sae), _params(sae)
    reset_adam_moments(optimizer, sae, latents)
    _check_adam_reset(optimizer, sae, before, latents, "reset_adam_moments")
    for name, value in params.items():
        check_that(torch.equal(getattr(sae, name).detach(), value), f"reset_adam_moments changed sae.{name}. Hint: only "
                   "the optimiser's state changes here.")
    before = _adam_snapshot(optimizer, sae)
    reset_adam_moments(optimizer, sae, torch.zeros(8, dtype=torch.bool))
    _check_adam_reset(optimizer, sae, before, torch.zeros(8, dtype=torch.bool), "with no latents to reset, reset_adam_moments")
    fresh = _sae(8, 8, seed)
    reset_adam_moments(torch.optim.Adam(fresh.parameters()), fresh, latents)  # no state yet: nothing to reset, no error


# ---------------------------------------------------------------------------------------------------------
# 3.4 simple resampling
# ---------------------------------------------------------------------------------------------------------


def _dead_setup(d_in: int, n_alive: int, n_dead: int, seed: int) -> tuple[SAE, torch.optim.Adam, Tensor]:
    """An SAE whose dead latents have huge encoder norms (so a mean over all latents is far from the alive mean)."""
    sae = _sae(d_in, n_alive + n_dead, seed)
    dead = torch.zeros(n_alive + n_dead, dtype=torch.bool)
    dead[torch.randperm(n_alive + n_dead, generator=torch.Generator().manual_seed(seed))[:n_dead]] = True
    with torch.no_grad():
        sae.W_enc[:, dead] = 20.0 * F.normalize(sae.W_enc[:, dead], dim=0)
    return sae, _adam(sae, seed), dead


@exercise("3.4", "simple resampling", objects=["resample_simple"])
@one_thread
def check_resample_simple(resample_simple, *, seed: int = 0) -> None:
    what = "resample_simple"
    sae, optimizer, dead = _dead_setup(3, 60, 1500, seed)
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    n = resample_simple(sae, optimizer, dead, torch.Generator().manual_seed(seed))
    _check_count(n, int(dead.sum()), what)
    _check_alive_untouched(sae, params, dead, what)
    rows = _check_new_latents(sae, params, dead, what)
    _check_adam_reset(optimizer, sae, adam, dead, what)
    # On the unit sphere in 3D, each coordinate of a uniform direction is uniform on [-1, 1] (Archimedes).
    for axis in range(3):
        _, p = ks_test(rows[:, axis], lambda v: (v + 1) / 2)  # the uniform CDF on [-1, 1]
        check_that(p > ALPHA, f"{what}: the new directions are not uniform on the sphere (coordinate {axis} of "
                   f"{len(rows)} directions fails a uniformity test, p = {p:.2g}). Hint: normalise a standard Gaussian "
                   "vector (torch.randn); uniform or positive coordinates favour some directions.")

    def run(generator):
        s, o, d = _dead_setup(3, 6, 10, seed)
        resample_simple(s, o, d, generator)
        return s.W_dec.detach().clone()

    _uses_generator(run, what)
    sae, optimizer, _ = _dead_setup(3, 6, 4, seed)
    params = _params(sae)
    none = torch.zeros(10, dtype=torch.bool)
    _check_count(resample_simple(sae, optimizer, none, torch.Generator().manual_seed(0)), 0, f"{what} with no dead latents")
    _check_alive_untouched(sae, params, none, f"{what} with no dead latents")


# ---------------------------------------------------------------------------------------------------------
# 3.5 sampling by squared loss
# ---------------------------------------------------------------------------------------------------------


def _two_level_pool(seed: int, n_low: int = 90, n_high: int = 10) -> tuple[Tensor, Tensor]:
    """90 inputs of loss 1 and 10 of loss 3, in a random order: P(high) is 0.25 by the loss and 0.5 by its square."""
    order = torch.randperm(n_low + n_high, generator=torch.Generator().manual_seed(seed))
    high = torch.zeros(n_low + n_high, dtype=torch.bool)
    high[order[:n_high]] = True
    return high, high.float() * 2 + 1  # losses: 1 or 3


def _law_message(what: str, hits: int, n: int) -> str:
    return (f"{what}: with 90 inputs of loss 1 and 10 of loss 3, weighting by the squared loss picks a loss-3 input half "
            f"the time (weighting by the loss itself: a quarter, uniformly: a tenth); your {n:,} draws picked one "
            f"{hits / n:.1%} of the time. Hint: the probabilities are proportional to loss ** 2.")


@exercise("3.5", "sampling inputs by squared loss", objects=["sample_by_squared_loss"])
@one_thread
def check_sample_by_squared_loss(sample_by_squared_loss, *, seed: int = 0) -> None:
    what = "sample_by_squared_loss"
    # with replacement: one input holds 99.5% of the weight, 20 draws
    losses = torch.ones(50)
    losses[17] = 1000.0  # 95% of the weight by the loss, 99.9999% by its square: either way most draws pick it
    saved = losses.clone()
    got = sample_by_squared_loss(losses, 20, torch.Generator().manual_seed(seed))
    check_that(torch.equal(losses, saved), f"{what} changed the losses it was given (in place).")
    assert_shape(got, (20,), f"{what}(losses, 20, generator)")
    check_that(not got.dtype.is_floating_point, f"{what} should return integer indices, got {got.dtype}.")
    check_that(bool(((got >= 0) & (got < 50)).all()), f"{what} returned indices outside [0, len(losses)).")
    top = int((got == 17).sum())
    check_that(top >= 10, f"{what}: one input carries 99.9999% of the squared-loss weight, yet only {top} of 20 draws picked "
               "it: sampling without replacement. Hint: several dead latents may go to the same input (replacement=True).")
    # loss vs loss squared: 1,000 draws, P(loss-3 input) = 0.5 (0.25 if weighted by the loss)
    high, losses = _two_level_pool(seed)
    n = 1000
    got = sample_by_squared_loss(losses, n, torch.Generator().manual_seed(seed))
    hits = int(high[got].sum())
    p = binom_test(hits, n, 0.5)
    check_that(p > ALPHA, _law_message(what, hits, n))
    # every index in proportion: a chi-squared test on four distinct losses
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    n = 6000
    counts = torch.bincount(sample_by_squared_loss(losses, n, torch.Generator().manual_seed(seed + 1)), minlength=4)
    expected = n * losses.pow(2) / losses.pow(2).sum()
    p = chi2_test(counts, expected)
    check_that(p > ALPHA, f"{what}: with losses [1, 2, 3, 4], {n:,} draws fell {counts.tolist()}, far from proportions "
               "1 : 4 : 9 : 16 (chi-squared test). Hint: the probability of input b is loss_b^2 / sum_c loss_c^2.")
    _uses_generator(lambda gen: sample_by_squared_loss(torch.tensor([1.0, 2.0, 3.0]), 50, gen), what)


# ---------------------------------------------------------------------------------------------------------
# 3.6 Anthropic's resampling
# ---------------------------------------------------------------------------------------------------------


def _anthropic_setup(seed: int, n_alive: int, n_dead: int, pool_rows: list[tuple[int, int, float]]):
    """An SAE (d_in 4) that reconstructs every pool input as b_dec (no latent fires), so that each input's loss is
    ``||x - b_dec||^2`` by construction; the pool holds ``count`` inputs ``b_dec + length * e_axis`` per row."""
    sae, optimizer, dead = _dead_setup(4, n_alive, n_dead, seed)
    with torch.no_grad():
        sae.b_enc.fill_(-1e3)  # nothing fires on the pool: x_hat = b_dec
        sae.b_dec.copy_(torch.tensor([0.0, 0.0, 1.5, -1.0]))
    optimizer = _adam(sae, seed)
    pool = torch.cat([sae.b_dec.detach() + length * F.one_hot(torch.tensor([axis] * count), 4).float()
                      for count, axis, length in pool_rows])
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
    return sae, optimizer, dead, pool


def _axes_of(rows: Tensor, pool: Tensor, b_dec: Tensor, what: str) -> Tensor:
    """Which basis vector each new decoder row is (the pool's inputs, centred), or a failure naming what went wrong."""
    best = (rows @ torch.eye(rows.shape[1]).T).max(-1)
    if bool((best.values > 1 - 1e-4).all()):
        return best.indices
    uncentred = (rows @ F.normalize(pool, dim=-1).T).max(-1).values > 1 - 1e-4
    if bool(uncentred.float().mean() > 0.5):
        raise CheckFailure(f"{what}: input not centred: the new decoder rows point along the chosen inputs x, not along "
                           "x - b_dec. Hint: the encoder sees x - b_dec; a direction that includes b_dec points mostly at "
                           "the data's centre, which every input shares.")
    raise CheckFailure(f"{what}: the new decoder rows are not the (centred, normalised) inputs of the pool: their best "
                       f"cosine with any centred pool input is as low as {best.values.min():.3f}. Hint: each dead latent's "
                       "direction is one sampled input minus b_dec, normalised.")


@exercise("3.6", "Anthropic's resampling", objects=["resample_anthropic"])
@one_thread
def check_resample_anthropic(resample_anthropic, *, seed: int = 0) -> None:
    what = "resample_anthropic"
    # With replacement: the e_3 input has loss 900 among 49 of loss 1; 20 dead latents
    sae, optimizer, dead, pool = _anthropic_setup(seed, 30, 20, [(49, 0, 1.0), (1, 3, 30.0)])
    saved_pool = pool.clone()
    resample_anthropic(sae, optimizer, dead, pool, torch.Generator().manual_seed(seed))
    check_that(torch.equal(pool, saved_pool), f"{what} changed the pool of inputs it was given.")
    axes = _axes_of(sae.W_dec.detach()[dead], pool, sae.b_dec.detach(), what)
    top = int((axes == 3).sum())
    check_that(top >= 10, f"{what}: one input carries 99.99% of the squared-loss weight, yet only {top} of 20 dead latents "
               "went to it: sampling without replacement. Hint: replacement=True.")
    # The whole recipe, and loss vs loss squared: 1,000 dead latents, 90 inputs of loss 1 (e_0), 10 of loss 3 (e_1)
    sae, optimizer, dead, pool = _anthropic_setup(seed, 100, 1000, [(90, 0, 1.0), (10, 1, math.sqrt(3.0))])
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    n = resample_anthropic(sae, optimizer, dead, pool, torch.Generator().manual_seed(seed))
    _check_count(n, 1000, what)
    _check_alive_untouched(sae, params, dead, what)
    rows = _check_new_latents(sae, params, dead, what)
    axes = _axes_of(rows, pool, sae.b_dec.detach(), what)
    hits = int((axes == 1).sum())
    check_that(binom_test(hits, 1000, 0.5) > ALPHA, _law_message(what, hits, 1000))
    _check_adam_reset(optimizer, sae, adam, dead, what)

    def run(generator):
        s, o, d, x = _anthropic_setup(seed, 5, 12, [(6, 0, 1.0), (6, 1, 1.2)])
        resample_anthropic(s, o, d, x, generator)
        return s.W_dec.detach().clone()

    _uses_generator(run, what)
    sae, optimizer, _, pool = _anthropic_setup(seed, 5, 5, [(4, 0, 1.0)])
    params, none = _params(sae), torch.zeros(10, dtype=torch.bool)
    _check_count(resample_anthropic(sae, optimizer, none, pool, torch.Generator().manual_seed(0)), 0, f"{what} with no dead latents")
    _check_alive_untouched(sae, params, none, f"{what} with no dead latents")


# ---------------------------------------------------------------------------------------------------------
# 3.7 the plug-in
# ---------------------------------------------------------------------------------------------------------


class _Recorder:
    """A stand-in resampler that records its calls and returns how many latents it was given."""

    def __init__(self, with_pool: bool) -> None:
        self.calls: list[dict] = []
        self.with_pool = with_pool

    def __call__(self, sae, optimizer, dead, *rest):
        check_that(len(rest) == (2 if self.with_pool else 1), f"the resampler was called with {3 + len(rest)} arguments, "
                   f"expected {5 if self.with_pool else 4}: (sae, optimizer, dead{', pool' if self.with_pool else ''}, "
                   "generator). Hint: pass the pool only when pool_batches > 0.")
        check_that(isinstance(rest[-1], torch.Generator), "the resampler's last argument should be the plug-in's "
                   f"torch.Generator, got {type(rest[-1]).__name__}.")
        check_that(isinstance(dead, Tensor) and dead.dtype == torch.bool, "the resampler should get a boolean [d_sae] mask "
                   "of dead latents.")
        self.calls.append({"sae": sae, "optimizer": optimizer, "dead": dead.clone(), "pool": rest[0] if self.with_pool else None})
        return int(dead.sum())


def _state(seed: int, batches: list[Tensor]):
    from utils.sae.training import TrainConfig, TrainState

    sae = _sae(3, 6, seed)
    tokens = torch.tensor([0, 99, 100, 5000, 3, 250], dtype=torch.long)  # window 100: latents 2, 3, 5 are dead
    return TrainState(sae, _adam(sae, seed), TrainConfig(n_tokens=10**6), iter(batches), tokens)


@exercise("3.7", "resampling on a schedule", objects=["ResampleOnSchedule"])
@one_thread
def check_resample_on_schedule(ResampleOnSchedule, *, seed: int = 0) -> None:
    want_dead = torch.tensor([False, False, True, True, False, True])
    for pool_batches in (0, 1, 3):
        batches = [torch.full((4, 3), float(i)) for i in range(20)]
        recorder = _Recorder(with_pool=pool_batches > 0)
        plugin = ResampleOnSchedule(recorder, steps=[3, 5], window_tokens=100, pool_batches=pool_batches, seed=seed)
        state = _state(seed, batches)
        x = torch.zeros(4, 3)
        for step in range(7):
            state.step = step
            before = state.tokens_since_fired.clone()
            out = plugin.after_update(state, x, {})
            scheduled = step + 1 in (3, 5)
            if not scheduled:
                check_that(out is None or out == {}, f"after step {step + 1} (not in steps=[3, 5]) after_update returned "
                           f"{out!r}, expected None. Hint: state.step counts the steps taken before this one.")
                check_that(torch.equal(state.tokens_since_fired, before), f"after step {step + 1} (not on the schedule) the "
                           "counters changed. Hint: change nothing off the schedule.")
                continue
            check_that(len(recorder.calls) == [3, 5].index(step + 1) + 1, f"after step {step + 1}, which is in steps=[3, 5], "
                       "the resampler was not called (or was called more than once). Hint: resample when state.step + 1 "
                       "is in self.steps.")
            call = recorder.calls[-1]
            check_that(call["sae"] is state.sae and call["optimizer"] is state.optimizer, "the resampler should get "
                       "state.sae and state.optimizer, the ones being trained.")
            check_that(torch.equal(call["dead"], want_dead), f"with window_tokens=100 and tokens since firing "
                       f"{before.tolist()}, the dead latents are {want_dead.int().tolist()}, but the resampler got "
                       f"{call['dead'].int().tolist()}. Hint: dead means tokens_since_fired >= window_tokens (tokens, not steps).")
            check_that(isinstance(out, dict) and out.get("resampled") == int(want_dead.sum()), f"after_update should return "
                       f"{{'resampled': n}} with n the resampler's count, got {out!r}.")
            after = state.tokens_since_fired
            check_that(bool((after[want_dead] == 0).all()) and torch.equal(after[~want_dead], before[~want_dead]),
                       f"after resampling, the counters should be 0 for the resampled latents and unchanged for the "
                       f"others: {before.tolist()} became {after.tolist()}. Hint: a resampled latent gets a fresh window.")
            state.tokens_since_fired = torch.tensor([0, 99, 100, 5000, 3, 250], dtype=torch.long)
            if pool_batches:
                pool = call["pool"]
                first = 0 if len(recorder.calls) == 1 else pool_batches
                want = torch.cat(batches[first : first + pool_batches])
                check_that(isinstance(pool, Tensor) and pool.shape == want.shape and torch.equal(pool, want),
                           f"with pool_batches={pool_batches} the pool should be the next {pool_batches} batch(es) from "
                           f"state.buffer, concatenated "
                           f"({tuple(want.shape)}), got {tuple(pool.shape) if isinstance(pool, Tensor) else type(pool).__name__}. "
                           "Hint: torch.cat([next(state.buffer) for _ in range(self.pool_batches)]), only on scheduled steps.")
        check_that(len(recorder.calls) == 2, f"over steps 1 to 7 with steps=[3, 5], the resampler ran {len(recorder.calls)} times, expected 2.")
