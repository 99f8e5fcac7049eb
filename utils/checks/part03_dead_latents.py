"""Checks for Part 3 (dead latents and resampling).

Every check that takes an SAE builds it with :func:`utils.checks.fixtures.trained_like_sae` (decoder rows of
norms 0.5 to 2, non-zero ``b_enc`` and ``b_dec``), gives it an Adam optimiser whose moments are already non-zero,
asserts that the fixture is not degenerate (some latents dead and some alive, the alive latents' mean encoder
norm far from 1 and from the mean over all latents, the dead latents' biases non-zero, latents that fire on
the pool), and registers it with :func:`utils.checks.fixtures.sensitivity`.

Exercise 3.6's SAE reconstructs its pool of inputs exactly as designed: three alive latents fire on every pool
input (the others never do), so that each input's loss is the value the check chose, the reconstruction is
not ``b_dec`` (the residual ``x - x_hat`` and the centred input ``x - b_dec`` point different ways), and the
inputs the SAE reconstructs worst are not the ones farthest from ``b_dec``.

Sampling (3.4's directions, 3.5's indices, 3.6's inputs) is tested as a distribution: per draw position and
per index with exact binomial tests, and per coordinate with Kolmogorov–Smirnov tests. Every statistical test
has a false-alarm rate of at most ``ALPHA`` = 1e-8 and a check runs fewer than 100 of them, so a correct answer
fails with probability below 1e-6 per run. Each sampling check's docstring states its power against the
mistakes it names (``POWER_CLAIMS``), recomputed by ``tests/course/test_power_03.py``. A function handed a
generator (3.4 to 3.6), or a seed (3.7), must keep the randomness contract: the same seed gives the same
result, another seed another result, torch's global generator is left alone, and the stream goes on from
one call to the next.
"""

from __future__ import annotations

import copy
import math
import numbers

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
    ks_test,
    one_thread,
    seal,
    shown_apart,
    unchanged_inputs,
)
from utils.checks.fixtures import assert_fixture, sensitivity, trained_like_sae

__all__ = [
    "check_prob_looks_dead",
    "check_resample_anthropic",
    "check_resample_on_schedule",
    "check_resample_simple",
    "check_reset_adam_moments",
    "check_sample_by_squared_loss",
    "check_update_tokens_since_fired",
]

#: The false-alarm probability of each statistical test (a check runs fewer than 100 of them).
ALPHA = 1e-8
#: Bricken et al.'s encoder scale for resampled latents.
SCALE = 0.2
ADAM_KEYS = ("exp_avg", "exp_avg_sq")
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")

#: The exercises whose check has no parameter that could take a trivial value (1, 0, unit norm), and why.
FIXTURE_FREE = {
    "3.1": "update_tokens_since_fired takes a counter and a batch of activations, no weight or bias; the check "
    "asserts that its batch has latents that fire on the first token only, on the last only, on every "
    "token and on none",
    "3.2": "prob_looks_dead takes densities and a window length only: there is no weight or bias to leave at a "
    "trivial value",
    "3.5": "sample_by_squared_loss takes losses, a count and a generator only: there is no weight or bias to "
    "leave at a trivial value (the losses are distinct and none is 0 or 1)",
}

# The sampling designs (tests/course/test_power_03.py recomputes the power from them).
#: 3.4: dead latents given random directions in 3 dimensions, each coordinate tested for uniformity on [-1, 1].
SIMPLE_D_IN, SIMPLE_ALIVE, SIMPLE_DEAD = 3, 60, 1500
#: 3.5, with replacement: 50 losses of 1 but one of HEAVY_LOSS, REPLACE_DRAWS draws, at least REPLACE_MIN on it.
REPLACE_POOL, HEAVY_INDEX, HEAVY_LOSS, REPLACE_DRAWS, REPLACE_MIN = 50, 17, 1000.0, 20, 10
#: 3.5, loss or its square: 90 losses of 1 and 10 of 3, TWO_LEVEL_DRAWS draws; P(a loss-3 input) = 0.5 (0.25 by the
#: loss itself).
N_LOW, N_HIGH, TWO_LEVEL_DRAWS = 90, 10, 1000
#: 3.5, per draw position and per index: CELL_CALLS calls of CELL_DRAWS draws each on the losses CELL_LOSSES.
CELL_LOSSES, CELL_CALLS, CELL_DRAWS = (2.0, 4.0, 1.0, 3.0), 500, 6
#: 3.6: ANTHROPIC_DEAD dead latents, a pool of 90 inputs of loss 1 and 10 of loss 3 (P(loss 3) = 0.5).
ANTHROPIC_DEAD = 1000
#: 3.6: a loss that ignores the reconstruction (||x - b_dec||^2) picks a loss-3 input at most this often,
#: and one whose encoder input is centred twice at most CENTRED_TWICE_MAX (the check asserts both on its fixture).
IGNORES_RECONSTRUCTION_MAX, CENTRED_TWICE_MAX = 0.1, 0.2

#: The mistakes each sampling check names in its docstring, with the power claimed against each (the probability
#: that the check rejects it); tests/course/test_power_03.py recomputes every one.
POWER_CLAIMS: dict[str, dict[str, float]] = {
    "3.4": {"coordinates drawn positive (torch.rand)": 1.0, "one direction shared by all dead latents": 1.0},
    "3.5": {
        "weights by the loss, not its square": 1 - 1e-6,
        "sampling without replacement": 1.0,
        "softmax of the losses": 1 - 1e-6,
        "index off by one (+1)": 1 - 1e-6,
        "index off by one (-1)": 1 - 1e-6,
        "first item never drawn": 1.0,
        "last item never drawn": 1.0,
        "the worst input always drawn first": 1.0,
        "draws sorted within a call": 1 - 1e-6,
    },
    "3.6": {
        "weights by the loss, not its square": 1 - 1e-6,
        "a loss that ignores the reconstruction (||x - b_dec||^2)": 1 - 1e-6,
        "b_dec subtracted twice in the loss (sae.encode(x - b_dec))": 1 - 1e-6,
        "sampling without replacement": 1.0,
        "one input for every dead latent": 1.0,
    },
}


# ---------------------------------------------------------------------------------------------------------
# Small SAEs with an optimiser that has a history
# ---------------------------------------------------------------------------------------------------------


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 * salt + seed)


def _adam(sae, seed: int, steps: int = 3, only: tuple[str, ...] = PARAMS) -> torch.optim.Adam:
    """Adam over the four parameters, after a few steps on random gradients for the parameters in ``only`` (so their
    moments are non-zero; the others have no state yet). The parameters are put back as they were."""
    params = [getattr(sae, name) for name in PARAMS]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    g = _generator(seed, 7)
    saved = [p.detach().clone() for p in params]
    for _ in range(steps):
        for name, p in zip(PARAMS, params):
            p.grad = torch.randn(p.shape, generator=g) if name in only else None
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # keep the hand-set parameters; only the optimiser's memory matters here
        for p, s in zip(params, saved):
            p.copy_(s)
    return optimizer


def _adam_snapshot(optimizer: torch.optim.Optimizer, sae) -> dict:
    states = {name: optimizer.state.get(getattr(sae, name), {}) for name in PARAMS}
    return {
        name: {k: v.clone() if isinstance(v, Tensor) else v for k, v in state.items()} for name, state in states.items()
    }


def _moments_nonzero(optimizer: torch.optim.Optimizer, sae) -> bool:
    return all(bool(optimizer.state[getattr(sae, name)][key].ne(0).all()) for name in PARAMS for key in ADAM_KEYS)


def _latent_index(name: str, latents: Tensor) -> tuple:
    """Where a latent's entries sit in each parameter: a column of W_enc, a row of W_dec, an entry of b_enc."""
    return (slice(None), latents) if name == "W_enc" else (latents,)


def _unit(name: str, plural: bool = False) -> str:
    word = {"W_enc": "column", "W_dec": "row"}.get(name, "entry")
    return (word + "s" if word != "entry" else "entries") if plural else word


def _check_adam_reset(optimizer, sae, before: dict, latents: Tensor, what: str) -> None:
    """Exactly ``latents``' moments are zero; every other moment (and every step count) is as it was."""
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        param = getattr(sae, name)
        state = optimizer.state.get(param, {})
        if not before[name]:
            check_that(
                not any(isinstance(v, Tensor) and v.ne(0).any() for v in state.values()),
                f"{what}: sae.{name} had no optimiser state, and now has non-zero moments.",
            )
            continue
        for key in ADAM_KEYS:
            check_that(
                key in state,
                f"{what}: optimizer.state[sae.{name}] has no {key!r} any more. Hint: zero the "
                "entries of the moments in place; deleting or clearing the state resets every latent at once.",
            )
            now, old = state[key], before[name][key]
            assert_shape(now, old.shape, f"optimizer.state[sae.{name}][{key!r}]")
            check_that(
                now.dtype == old.dtype,
                f"{what}: optimizer.state[sae.{name}][{key!r}] has dtype {now.dtype}, "
                f"not the parameter's {old.dtype}; Adam would fail at its next step. Hint: zero entries in "
                "place (state[key][index] = 0).",
            )
            if name == "b_dec":
                changed = int((now != old).sum())
                check_that(
                    changed == 0,
                    f"{what}: Adam's {key} for b_dec changed ({changed} of its {old.numel()} "
                    "entries). Hint: b_dec belongs to no latent; resampling must leave its optimiser state "
                    "alone.",
                )
                continue
            index = _latent_index(name, latents)
            keep = torch.ones_like(old, dtype=torch.bool)
            keep[index] = False
            nonzero = int(now[index].ne(0).sum())
            article = "an" if name == "b_enc" else "a"
            check_that(
                nonzero == 0,
                f"{what}: Adam's {key} for the resampled latents' entries of {name} was not reset "
                f"to 0 ({nonzero} of {now[index].numel()} entries are not 0). Hint: a latent is {article} "
                f"{_unit(name)} of {name}; its old moments would push the new parameters the way the dead "
                "latent was going.",
            )
            changed = int((now[keep] != old[keep]).sum())
            check_that(
                changed == 0,
                f"{what}: Adam's {key} for {name} changed outside the resampled latents' "
                f"{_unit(name, True)} ({changed} of {int(keep.sum())} entries). Hint: reset exactly the touched "
                "entries; the alive latents' moments carry what Adam has learnt about them.",
            )
        check_that(
            _same(state.get("step"), before[name].get("step")),
            f"{what}: Adam's step count for {name} changed. Hint: only exp_avg and exp_avg_sq are reset.",
        )


def _same(a, b) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.equal(a, b)
    return a == b


def _params(sae) -> dict[str, Tensor]:
    return {name: getattr(sae, name).detach().clone() for name in PARAMS}


def _check_same_parameters(sae, optimizer, objects: dict, what: str) -> None:
    """The SAE still trains the parameters the optimiser holds (a new tensor in their place would never be updated)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name in PARAMS:
        now = getattr(sae, name)
        check_that(
            now is objects[name] and id(now) in held,
            f"{what} replaced sae.{name} by a new tensor: the optimiser still holds the old one, so training "
            f"would never update the SAE's {name} again (no gradient step reaches it). Hint: write into the "
            f"existing parameter, sae.{name}[...] = ..., under torch.no_grad().",
        )
        check_that(
            now.requires_grad,
            f"after {what}, sae.{name} no longer requires a gradient, so training would "
            "never change it. Hint: write into the parameter under torch.no_grad() instead of detaching it.",
        )


def _check_alive_untouched(sae, before: dict, dead: Tensor, what: str) -> None:
    alive = ~dead
    for name in ("W_enc", "W_dec", "b_enc"):
        index = _latent_index(name, alive)
        now, old = getattr(sae, name).detach()[index], before[name][index]
        changed = int((now != old).sum())
        check_that(
            changed == 0,
            f"{what}: the alive latents' entries of {name} changed ({changed} of {old.numel()}, "
            f"by up to {float((now - old).abs().max()):.3g}). Hint: touch only the dead latents' "
            f"{_unit(name, True)}.",
        )
    check_that(
        torch.equal(sae.b_dec.detach(), before["b_dec"]),
        f"{what}: b_dec changed (by up to "
        f"{float((sae.b_dec.detach() - before['b_dec']).abs().max()):.3g}). Hint: resampling reads b_dec but "
        "never writes it.",
    )


def _check_scale(sae, before: dict, dead: Tensor, what: str, input_norms: Tensor | None = None) -> None:
    """The new encoder columns have norm 0.2 x the alive latents' mean encoder norm (measured before the change)."""
    norms = sae.W_enc.detach()[:, dead].norm(dim=0)
    alive_norm = float(before["W_enc"][:, ~dead].norm(dim=0).mean())
    want = SCALE * alive_norm
    if bool(((norms - want).abs() <= 1e-3 * want).all()):
        return
    low, high = float(norms.min()), float(norms.max())
    candidates = [
        (
            SCALE * float(before["W_enc"].norm(dim=0).mean()),
            "the mean norm over all latents, dead ones included; take the alive latents' only",
        ),
        (SCALE, "0.2 alone: the alive latents' mean encoder norm is missing"),
        (alive_norm, "the alive latents' mean norm without the factor 0.2"),
    ]
    cause = next((why for value, why in candidates if bool(((norms - value).abs() <= 1e-3 * value).all())), None)
    if (
        cause is None
        and input_norms is not None
        and bool(((norms - SCALE * input_norms).abs() <= 1e-3 * SCALE * input_norms).all())
    ):
        cause = "0.2 times the chosen input's norm ||x - b_dec||; use the alive latents' mean encoder norm"
    shown_want, shown_got = shown_apart(want, low if abs(low - want) > abs(high - want) else high)
    yours = (
        f"yours are {shown_got}"
        if math.isclose(low, high, rel_tol=1e-4)
        else f"yours range from {low:.4g} to {high:.4g}"
    )
    raise CheckFailure(
        f"{what}: wrong encoder scale: the new encoder columns should have norm {SCALE} x the alive latents' mean "
        f"encoder norm = {shown_want}; {yours}"
        + (f": that is {cause}." if cause else ".")
        + " Hint: compute sae.W_enc[:, ~dead].norm(dim=0).mean() before you change anything."
    )


def _check_new_latents(sae, before: dict, dead: Tensor, what: str, input_norms: Tensor | None = None) -> Tensor:
    """Unit decoder rows; encoder columns along them with 0.2 x the alive latents' mean encoder norm; zero biases."""
    rows = sae.W_dec.detach()[dead]
    check_that(bool(torch.isfinite(rows).all()), f"{what}: the new decoder rows contain NaN or inf.")
    norms = rows.norm(dim=-1)
    check_that(
        bool(((norms - 1).abs() < 1e-4).all()),
        f"{what}: the new decoder rows should have unit norm; their "
        f"norms range from {norms.min():.4g} to {norms.max():.4g}. Hint: normalise each direction (dim=-1).",
    )
    cols = sae.W_enc.detach()[:, dead].T  # [n_dead, d_in]
    cos = F.cosine_similarity(cols, rows, dim=-1)
    check_that(
        bool((cos > 1 - 1e-4).all()),
        f"{what}: a new encoder column does not point along its latent's new "
        f"decoder row (lowest cosine {cos.min():.4f}, expected 1). Hint: the encoder column is a scaled copy of "
        "the decoder row, W_enc[:, dead] = scale * directions.T.",
    )
    _check_scale(sae, before, dead, what, input_norms)
    b = sae.b_enc.detach()[dead]
    check_that(
        bool((b == 0).all()),
        f"{what}: the resampled latents' encoder biases should be 0; "
        f"{int((b != 0).sum())} of {b.numel()} are not (up to {b.abs().max():.3g} in size; the dead latents' "
        f"old biases were {before['b_enc'][dead].min():.3g} to {before['b_enc'][dead].max():.3g}). Hint: "
        "sae.b_enc[dead] = 0.",
    )
    return rows


def _check_count(result, n: int, what: str) -> None:
    check_that(
        isinstance(result, numbers.Integral) and not isinstance(result, bool),
        f"{what} should return the number of latents resampled as a Python int, got "
        f"{type(result).__name__} {result!r}. Hint: int(dead.sum()); a tensor would end up in the training "
        "history instead of a number.",
    )
    check_that(
        int(result) == n,
        f"{what} returned {int(result)}, but {n} latents were dead. Hint: return how many you resampled.",
    )


def _run_on_copy(fixture: dict, run) -> dict:
    """``run`` on a deep copy of ``fixture`` (the SAE and its optimiser copied together); the copy."""
    fx = copy.deepcopy(fixture)
    run(fx)
    return fx


def _all_parameters(fx: dict) -> Tensor:
    return torch.cat([getattr(fx["sae"], name).detach().flatten() for name in PARAMS])


def _check_edge_cases(resample, fixture: dict, extra: tuple, what: str) -> None:
    """With no dead latent: returns 0, and changes no parameter and no optimiser state. With exactly one: resamples
    it like any other."""
    fx = copy.deepcopy(fixture)
    sae, optimizer = fx["sae"], fx["optimizer"]
    none = torch.zeros_like(fx["dead"])
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    _check_count(
        resample(sae, optimizer, none, *extra, torch.Generator().manual_seed(0)), 0, f"{what} with no dead latent"
    )
    _check_alive_untouched(sae, params, none, f"{what} with no dead latent")
    _check_adam_reset(optimizer, sae, adam, none, f"{what} with no dead latent")
    fx = copy.deepcopy(fixture)
    sae, optimizer = fx["sae"], fx["optimizer"]
    one = torch.zeros_like(fx["dead"])
    one[int(fx["dead"].nonzero()[0])] = True
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    _check_count(
        resample(sae, optimizer, one, *extra, torch.Generator().manual_seed(0)), 1, f"{what} with one dead latent"
    )
    _check_alive_untouched(sae, params, one, f"{what} with one dead latent")
    _check_new_latents(sae, params, one, f"{what} with one dead latent")
    _check_adam_reset(optimizer, sae, adam, one, f"{what} with one dead latent")


# ---------------------------------------------------------------------------------------------------------
# 3.1 tokens since each latent fired
# ---------------------------------------------------------------------------------------------------------


def _ref_update(t: Tensor, acts: Tensor) -> Tensor:
    fired = (acts > 0).any(0)
    return torch.where(fired, torch.zeros_like(t), t + len(acts))


def _compare_counts(got: Tensor, t: Tensor, acts: Tensor, batch: str) -> None:
    want = _ref_update(t, acts)
    if torch.equal(got, want):
        return
    j = int((got != want).nonzero()[0])
    tokens = (acts[:, j] > 0).nonzero().flatten().tolist()
    fired = (
        f"fired on token{'s' if len(tokens) > 1 else ''} {', '.join(map(str, tokens[:4]))}"
        f"{'...' if len(tokens) > 4 else ''} of {batch} of {len(acts)} token{'s' if len(acts) > 1 else ''}"
        if tokens
        else f"did not fire on any of the {len(acts)} token{'s' if len(acts) > 1 else ''} of {batch}"
    )
    if tokens:
        hint = (
            "'fired' means a positive activation on any token of the batch (the first, the last, or several): "
            "its count restarts at 0"
        )
    elif int(got[j]) == int(t[j]) + 1 and len(acts) > 1:
        hint = (
            "you added 1 (one step): the window is measured in tokens, not steps, so add the batch's number of tokens"
        )
    else:
        hint = "a latent that did not fire gets the batch's number of tokens added to its count"
    raise CheckFailure(
        f"latent {j} had count {int(t[j])} and {fired}: its count should be {int(want[j])}, got "
        f"{int(got[j])}. Hint: {hint}."
    )


@exercise("3.1", "Tokens since each latent fired", objects=["update_tokens_since_fired"])
@one_thread
def check_update_tokens_since_fired(update_tokens_since_fired, *, seed: int = 0) -> None:
    """A batch of 7 tokens with latents that fire on the first token only, the last only, every token, two tokens
    in the middle, and never (one with a count of 2**40, exact only in int64); then batches of 1, 13 and 4 tokens
    in a row. The counter must stay int64 of shape [d_sae], and neither input may change."""
    g = _generator(seed, 1)
    t = torch.tensor([0, 5, 100, 7, 3, 0, 12, 2**40], dtype=torch.long)
    acts = torch.zeros(7, 8)
    acts[0, 0] = 0.5  # fires on the first token only
    acts[6, 3] = 2.0  # on the last token only
    acts[:, 5] = torch.rand(7, generator=g) + 0.1  # on every token
    acts[2:4, 7] = 0.3  # on two tokens in the middle
    fired = (acts > 0).any(0)
    assert_fixture(0 < int(fired.sum()) < len(fired), "some latents fire on the batch and some do not")
    assert_fixture(
        bool((acts[0] > 0).any() and (acts[-1] > 0).any() and ((acts > 0).sum(0) == 1).sum() >= 2),
        "latents that fire on the first token only and on the last token only",
    )
    what = "update_tokens_since_fired"
    with unchanged_inputs(what, tokens_since_fired=t, acts=acts):
        got = update_tokens_since_fired(t, acts)
    assert_shape(got, (8,), f"{what}(tokens_since_fired, acts) for 8 latents")
    check_that(
        got.dtype == torch.long,
        f"the counter should stay int64 (exact for any number of tokens, and "
        f"tokens_since_fired is int64), got {got.dtype}. Hint: torch.where(fired, 0, tokens_since_fired + n) "
        "keeps it.",
    )
    _compare_counts(got, t, acts, "a batch")
    for batch in (1, 13, 4):  # batches of other sizes, one after another
        acts = F.relu(torch.randn(batch, 8, generator=g) - 1.5)
        t = got
        got = update_tokens_since_fired(t, acts)
        assert_shape(got, (8,), f"{what}(...) after a batch of {batch} token(s)")
        check_that(
            got.dtype == torch.long, f"after a batch of {batch} token(s) the counter has dtype {got.dtype}, not int64."
        )
        _compare_counts(got, t, acts, "the next batch")


# ---------------------------------------------------------------------------------------------------------
# 3.2 dead in a window vs ultra-low density
# ---------------------------------------------------------------------------------------------------------


def _looks_dead_message(p: float, window: int, want: float, got: float, density: Tensor, i: int) -> str:
    shown_want, shown_got = shown_apart(want, got)
    naive = float((1 - density.float()[i]) ** window)
    causes = [
        (
            naive,
            "that is (1 - p) ** W computed in float32, where 1 - p loses p's digits when p is tiny; use "
            "torch.log1p(-p)",
        ),
        (math.exp(-p * window), "that is the small-p approximation exp(-p W), wrong for common latents"),
        (1 - p * window, "that is 1 - p W, the first term of the expansion"),
    ]
    cause = next(
        (
            why
            for value, why in causes
            if math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-7)
            and not math.isclose(value, want, rel_tol=1e-3, abs_tol=1e-6)
        ),
        None,
    )
    return (
        f"for density {p:.3g} and a window of {window:,} tokens, the probability of not firing once should be "
        f"{shown_want}, got {shown_got}"
        + (f": {cause}." if cause else ".")
        + " Hint: it is (1 - p) ** W exactly, computed as exp(W * log1p(-p)) so that tiny p keep their digits."
    )


@exercise("3.2", "Dead in a window vs ultra-low density", objects=["prob_looks_dead"])
@one_thread
def check_prob_looks_dead(prob_looks_dead, *, seed: int = 0) -> None:
    """Densities from 0 to 1 in float32 (tiny ones with windows of 10 million tokens, common ones with windows of 3),
    and once in float64: the result has the densities' dtype and shape, within 1e-3 relative of (1 - p) ** W."""
    g = _generator(seed, 2)
    cases = [
        (torch.tensor([0.0, 1.0, 1e-7, 3e-7, 1e-6, 1e-8]), 10**7),
        (torch.tensor([0.5, 0.9, 0.01, 0.3]), 3),
        (10 ** (-6 * torch.rand(5, generator=g)), 1000),
        (torch.tensor([2e-7, 0.2, 1e-5], dtype=torch.float64), 10**6),
    ]
    for density, window in cases:
        density = density if density.dtype == torch.float64 else density.float()
        with unchanged_inputs("prob_looks_dead", density=density):
            got = prob_looks_dead(density, window)
        assert_shape(got, density.shape, f"prob_looks_dead(density, {window})")
        check_that(
            got.dtype == density.dtype,
            f"prob_looks_dead should return the densities' dtype ({density.dtype}), "
            f"got {got.dtype}. Hint: compute with the densities as they are, without .double() or .float() at "
            "the end.",
        )
        want = torch.exp(window * torch.log1p(-density.double()))
        bad = ~torch.isclose(got.detach().double(), want, rtol=1e-3, atol=1e-6)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise CheckFailure(
                _looks_dead_message(float(density[i]), window, float(want[i]), float(got[i]), density, i)
            )


# ---------------------------------------------------------------------------------------------------------
# 3.3 Adam
# ---------------------------------------------------------------------------------------------------------

_LATENTS_33 = (True, False, False, True, False, True, False, False)


def _fixture_33(seed: int) -> dict:
    """A square (8 x 8) trained-like SAE, so that W_enc's rows and columns are both valid and only one is right,
    and an Adam optimiser after three steps (every moment non-zero)."""
    sae = trained_like_sae(8, 8, seed)
    return {"sae": sae, "optimizer": _adam(sae, seed)}


def _output_33(objects: tuple, fixture: dict) -> Tensor:
    fx = _run_on_copy(fixture, lambda f: objects[0](f["optimizer"], f["sae"], torch.tensor(_LATENTS_33)))
    return torch.cat([fx["optimizer"].state[getattr(fx["sae"], n)][k].flatten() for n in PARAMS for k in ADAM_KEYS])


_OPTIMISER_ONLY = "reset_adam_moments reads and writes the optimiser's state only, never a parameter's value"
sensitivity(
    "3.3",
    build=_fixture_33,
    output=_output_33,
    tolerance=0.0,
    exempt={"sae.b_enc": _OPTIMISER_ONLY, "sae.b_dec": _OPTIMISER_ONLY, "sae.W_dec": _OPTIMISER_ONLY},
)


@exercise("3.3", "Resetting Adam's moments", objects=["reset_adam_moments"])
@one_thread
def check_reset_adam_moments(reset_adam_moments, *, seed: int = 0) -> None:
    """Three of eight latents of a square SAE whose Adam moments are all non-zero: exactly their columns of W_enc,
    rows of W_dec and entries of b_enc are zeroed, in both moments; b_dec's state, the step counts and the SAE's
    parameters are left alone. Then no latent (nothing changes), an optimiser that has stepped W_enc and W_dec
    only (the others have no state: skip them), and one that has not stepped at all."""
    what = "reset_adam_moments"
    fx = _fixture_33(seed)
    sae, optimizer = fx["sae"], fx["optimizer"]
    latents = torch.tensor(_LATENTS_33)
    assert_fixture(_moments_nonzero(optimizer, sae), "every Adam moment is non-zero before the reset")
    assert_fixture(0 < int(latents.sum()) < len(latents), "some latents are reset and some are not")
    before, params = _adam_snapshot(optimizer, sae), _params(sae)
    with unchanged_inputs(what, latents=latents):
        reset_adam_moments(optimizer, sae, latents)
    for name, value in params.items():
        changed = int((getattr(sae, name).detach() != value).sum())
        check_that(
            changed == 0,
            f"{what} changed sae.{name} ({changed} of {value.numel()} entries). Hint: only the "
            "optimiser's state changes here; the parameters are resampled elsewhere.",
        )
    _check_adam_reset(optimizer, sae, before, latents, what)
    none = torch.zeros(8, dtype=torch.bool)
    before = _adam_snapshot(optimizer, sae)
    reset_adam_moments(optimizer, sae, none)
    _check_adam_reset(optimizer, sae, before, none, f"with no latent to reset, {what}")
    # An optimiser that has stepped W_enc and W_dec only, and one that has not stepped at all: skip what has no state
    partial = trained_like_sae(8, 8, seed)
    for optimizer, stepped in (
        (_adam(partial, seed, only=("W_enc", "W_dec")), "W_enc and W_dec only"),
        (torch.optim.Adam(partial.parameters()), "no parameter yet"),
    ):
        before = _adam_snapshot(optimizer, partial)
        try:
            reset_adam_moments(optimizer, partial, latents)
        except (KeyError, IndexError, TypeError) as error:
            raise CheckFailure(
                f"with an optimiser that has stepped {stepped} (the others have no state, "
                f"optimizer.state[param] is empty), {what} raised {type(error).__name__}: {error}. "
                "Hint: a parameter the optimiser has not stepped yet has no moments: skip it."
            ) from None
        _check_adam_reset(optimizer, partial, before, latents, f"with an optimiser that has stepped {stepped}, {what}")


# ---------------------------------------------------------------------------------------------------------
# 3.4 simple resampling
# ---------------------------------------------------------------------------------------------------------


def _dead_fixture(d_in: int, n_alive: int, n_dead: int, seed: int) -> dict:
    """A trained-like SAE whose dead latents look dead (encoder biases far below 0) and have large encoder columns
    (so the mean over all latents is far from the alive latents' mean), alive encoder columns of mean norm far
    from 1, and an Adam optimiser with a history."""
    sae = trained_like_sae(d_in, n_alive + n_dead, seed)
    dead = torch.zeros(n_alive + n_dead, dtype=torch.bool)
    dead[torch.randperm(n_alive + n_dead, generator=_generator(seed, 3))[:n_dead]] = True
    g = _generator(seed, 4)
    with torch.no_grad():
        sae.W_enc.mul_(2.5)
        sae.W_enc[:, dead] = 20.0 * F.normalize(sae.W_enc[:, dead], dim=0)
        sae.b_enc[dead] = -3.0 - torch.rand(n_dead, generator=g)
    return {"sae": sae, "optimizer": _adam(sae, seed), "dead": dead}


def _assert_dead_fixture(fx: dict) -> None:
    sae, dead = fx["sae"], fx["dead"]
    W_enc, b_enc, W_dec = sae.W_enc.detach(), sae.b_enc.detach(), sae.W_dec.detach()
    assert_fixture(0 < int(dead.sum()) < len(dead), "some latents are dead and some alive")
    alive_norm = float(W_enc[:, ~dead].norm(dim=0).mean())
    all_norm = float(W_enc.norm(dim=0).mean())
    assert_fixture(
        abs(alive_norm - 1) > 0.3 and abs(all_norm / alive_norm - 1) > 0.3,
        "the alive latents' mean encoder norm is far from 1 and from the mean over all latents",
    )
    assert_fixture(bool((b_enc[dead] != 0).all()), "every dead latent has a non-zero encoder bias")
    assert_fixture(
        float((W_dec[dead].norm(dim=-1) - 1).abs().max()) > 0.1, "the dead latents' decoder rows are not unit already"
    )
    assert_fixture(_moments_nonzero(fx["optimizer"], sae), "every Adam moment is non-zero before resampling")


def _output_34(objects: tuple, fixture: dict) -> Tensor:
    return _all_parameters(
        _run_on_copy(
            fixture, lambda f: objects[0](f["sae"], f["optimizer"], f["dead"], torch.Generator().manual_seed(0))
        )
    )


sensitivity(
    "3.4",
    build=lambda seed: _dead_fixture(SIMPLE_D_IN, SIMPLE_ALIVE, SIMPLE_DEAD, seed),
    output=_output_34,
    tolerance=1e-6,
)


@exercise("3.4", "Simple resampling", objects=["resample_simple"])
@one_thread
def check_resample_simple(resample_simple, *, seed: int = 0) -> None:
    """An SAE with 60 alive and 1,500 dead latents in 3 dimensions (trained-like; the dead ones with very negative
    encoder biases and large encoder columns; the alive ones' mean encoder norm far from 1): the count returned as
    an int, the same parameter tensors (the optimiser's), the alive latents and b_dec untouched, unit decoder rows,
    encoder columns along them at 0.2 x the alive latents' mean norm, zero biases, exactly the dead latents' Adam
    moments reset; no dead latent changes nothing, and a single dead latent is resampled like many.

    The directions are tested for uniformity on the sphere: on the unit sphere in 3D each coordinate is uniform on
    [-1, 1] (Archimedes), so each of the 3 coordinates of the 1,500 new decoder rows gets a Kolmogorov–Smirnov test
    at false-alarm rate 1e-8 (3e-8 in all). Its power (recomputed in tests/course/test_power_03.py): against
    coordinates drawn positive (torch.rand) and against one direction shared by all dead latents, the KS distance
    is at least 0.5 while the test rejects any distance above 0.08: power 1. Then the randomness contract
    (utils.checks.assert_randomness_contract) on a small copy."""
    what = "resample_simple"
    fx = _dead_fixture(SIMPLE_D_IN, SIMPLE_ALIVE, SIMPLE_DEAD, seed)
    _assert_dead_fixture(fx)
    sae, optimizer, dead = fx["sae"], fx["optimizer"], fx["dead"]
    objects = {name: getattr(sae, name) for name in PARAMS}
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    with unchanged_inputs(what, dead=dead):
        n = resample_simple(sae, optimizer, dead, _generator(seed, 5))
    _check_count(n, int(dead.sum()), what)
    _check_same_parameters(sae, optimizer, objects, what)
    _check_alive_untouched(sae, params, dead, what)
    rows = _check_new_latents(sae, params, dead, what)
    _check_adam_reset(optimizer, sae, adam, dead, what)
    distinct = len(torch.unique(rows, dim=0))
    check_that(
        distinct > 1,
        f"{what}: all {len(rows):,} dead latents got the same direction. Hint: draw one direction "
        "per dead latent, torch.randn(n_dead, d_in, generator=generator).",
    )
    for axis in range(SIMPLE_D_IN):
        d, p = ks_test(rows[:, axis], lambda v: (v + 1) / 2)  # the uniform CDF on [-1, 1]
        positive = float((rows[:, axis] > 0).float().mean())
        check_that(
            p > ALPHA,
            f"{what}: the new directions are not uniform on the sphere: coordinate {axis} of the "
            f"{len(rows):,} directions should be uniform on [-1, 1], but its distribution is {d:.3f} away from "
            f"uniform (Kolmogorov–Smirnov p = {p:.2g}; {positive:.0%} of them positive, expected about 50%). "
            "Hint: normalise a standard Gaussian vector (torch.randn); uniform or positive coordinates favour "
            "some directions.",
        )

    small = _dead_fixture(SIMPLE_D_IN, 6, 10, seed)
    assert_randomness_contract(
        lambda generator: _run_on_copy(
            small, lambda f: resample_simple(f["sae"], f["optimizer"], f["dead"], generator)
        )["sae"].W_dec.detach(),
        what,
        seed,
    )
    _check_edge_cases(resample_simple, small, (), what)


# ---------------------------------------------------------------------------------------------------------
# 3.5 sampling by squared loss
# ---------------------------------------------------------------------------------------------------------


def _two_level_pool(seed: int) -> tuple[Tensor, Tensor]:
    """N_LOW inputs of loss 1 and N_HIGH of loss 3, in a random order: P(high) is 0.5 by the squared loss."""
    order = torch.randperm(N_LOW + N_HIGH, generator=_generator(seed, 6))
    high = torch.zeros(N_LOW + N_HIGH, dtype=torch.bool)
    high[order[:N_HIGH]] = True
    return high, high.float() * 2 + 1  # losses: 1 or 3


def _law_message(
    what: str,
    hits: int,
    n: int,
    p_right: float,
    alternatives: list[tuple[float, str]],
    hint: str = "the probabilities are proportional to loss ** 2",
) -> str:
    """The loss-3 inputs' share among ``n`` draws, against the squared-loss law; names the mistakes whose law the
    count fits (p > 1e-3 under it), all of them if several do, none if none does."""
    shown_want, shown_got = shown_apart(p_right, hits / n)
    fits = [f"{why} ({p:.3g})" for p, why in alternatives if binom_test(hits, n, p) > 1e-3]
    return (
        f"{what}: with 90 inputs of loss 1 and 10 of loss 3, weighting by the squared loss picks a loss-3 input "
        f"with probability {shown_want}; your {n:,} draws picked one {hits:,} times, a share of {shown_got}"
        + (f", which fits {', or '.join(fits)}" if fits else "")
        + f" (exact binomial test, p < {ALPHA:g}). Hint: {hint}."
    )


def _check_indices(got, n: int, size: int, what: str) -> None:
    assert_shape(got, (n,), f"{what}(losses, {n}, generator)")
    check_that(
        got.dtype == torch.long,
        f"{what} should return int64 indices (what torch.multinomial and indexing "
        f"use), got {got.dtype}. Hint: draw indices, not values; don't convert them to floats.",
    )
    if len(got) and not bool(((got >= 0) & (got < size)).all()):
        bad = int(got[(got < 0) | (got >= size)][0])
        edge = (
            " one past the last index: an index off by one"
            if bad == size
            else " one before the first: an index off by one"
            if bad == -1
            else ""
        )
        raise CheckFailure(
            f"{what} returned index {bad} for {size} losses (indices run from 0 to {size - 1}){edge}. "
            "Hint: index b must be drawn with probability loss_b^2 / sum_c loss_c^2, for b in 0 .. "
            "len(losses) - 1."
        )


def _cell_message(what: str, where: str, index: int, count: int, total: int, p: float) -> str:
    shown_want, shown_got = shown_apart(p, count / total)
    return (
        f"{what}: {where}, index {index} (loss {CELL_LOSSES[index]:g}) was drawn {count:,} times out of "
        f"{total:,}, a share of {shown_got}; its probability is loss^2 / sum of loss^2 = {shown_want} (exact "
        f"binomial test, p < {ALPHA:g})."
    )


@exercise("3.5", "Sampling inputs by squared loss", objects=["sample_by_squared_loss"])
@one_thread
def check_sample_by_squared_loss(sample_by_squared_loss, *, seed: int = 0) -> None:
    """Indices drawn with probability loss^2 / sum(loss^2), with replacement, each draw independent of its position.

    1. Type, shape (n,), int64, indices in range, the losses left unchanged; the randomness contract
       (utils.checks.assert_randomness_contract).
    2. With replacement: 50 losses of 1 and one of 1,000 (99.995% of the squared-loss weight), 20 draws: at least
       10 must pick it (a correct sampler fails this with probability below 1e-40; without replacement it can
       pick it once at most: power 1).
    3. Loss or its square: 90 losses of 1 and 10 of 3, 1,000 draws; P(a loss-3 input) is 0.5 (0.25 weighting by
       the loss). One exact binomial test.
    4. Per draw position and per index: 500 calls of 6 draws on the losses [2, 4, 1, 3] (probabilities 4, 16, 1
       and 9 out of 30); an exact binomial test of each index's count over all 3,000 draws (4 tests), then of each
       (position, index) cell over the 500 calls (24 tests).

    False-alarm rate: each of the 29 statistical tests at most 1e-8, below 1e-6 in all. Power (the probability
    that the check rejects the mistake, recomputed in tests/course/test_power_03.py from the constants above):
    weights by the loss, not its square: > 1 - 1e-6 (test 3); sampling without replacement: 1 (test 2); a softmax
    of the losses: > 1 - 1e-6 (test 4, pooled); an index off by one (+1) or index off by one (-1): > 1 - 1e-6 (an
    index out of range in test 4); the first item never drawn, the last item never drawn: 1 (a count of 0 where
    400 or 900 are expected); the worst input always drawn first: 1 (position 0 in test 4); draws sorted within a
    call: > 1 - 1e-6 (position 0 in test 4)."""
    what = "sample_by_squared_loss"
    # 1. the basic contract
    losses = torch.ones(REPLACE_POOL)
    losses[HEAVY_INDEX] = HEAVY_LOSS
    with unchanged_inputs(what, losses=losses):
        got = sample_by_squared_loss(losses, REPLACE_DRAWS, _generator(seed, 8))
    _check_indices(got, REPLACE_DRAWS, REPLACE_POOL, what)
    spread = torch.linspace(0.5, 3.0, REPLACE_POOL)
    assert_randomness_contract(lambda generator: sample_by_squared_loss(spread, REPLACE_DRAWS, generator), what, seed)
    # 2. with replacement
    top = int((got == HEAVY_INDEX).sum())
    if top < REPLACE_MIN:
        counts = torch.bincount(got, minlength=REPLACE_POOL)
        neighbour = int(counts[HEAVY_INDEX - 1] + counts[HEAVY_INDEX + 1])
        if len(torch.unique(got)) == len(got):
            cause = (
                f"all {len(got)} draws are distinct: sampling without replacement. Hint: several dead latents may "
                "go to the same input (replacement=True)."
            )
        elif neighbour >= REPLACE_MIN:
            cause = (
                f"{neighbour} draws went to its neighbours {HEAVY_INDEX - 1} and {HEAVY_INDEX + 1}: an index off "
                "by one. Hint: check where your cumulative sums start and end."
            )
        else:
            cause = "Hint: the probabilities are proportional to loss ** 2, drawn with replacement."
        raise CheckFailure(
            f"{what}: index {HEAVY_INDEX} carries 99.995% of the squared-loss weight (loss "
            f"{HEAVY_LOSS:g} among {REPLACE_POOL - 1} losses of 1), yet only {top} of {REPLACE_DRAWS} "
            f"draws picked it (at least {REPLACE_MIN} expected); {cause}"
        )
    # 3. the loss or its square
    high, losses = _two_level_pool(seed)
    with unchanged_inputs(what, losses=losses):
        got = sample_by_squared_loss(losses, TWO_LEVEL_DRAWS, _generator(seed, 9))
    _check_indices(got, TWO_LEVEL_DRAWS, len(losses), what)
    hits = int(high[got].sum())
    check_that(
        binom_test(hits, TWO_LEVEL_DRAWS, 0.5) > ALPHA,
        _law_message(what, hits, TWO_LEVEL_DRAWS, 0.5, [(0.25, "weighting by the loss itself")]),
    )
    # 4. per index, and per draw position
    losses = torch.tensor(CELL_LOSSES)
    p = (losses.double() ** 2 / (losses.double() ** 2).sum()).tolist()
    generator = _generator(seed, 10)
    table = torch.zeros(CELL_DRAWS, len(losses), dtype=torch.long)
    for _ in range(CELL_CALLS):
        got = sample_by_squared_loss(losses, CELL_DRAWS, generator)
        _check_indices(got, CELL_DRAWS, len(losses), what)
        table[torch.arange(CELL_DRAWS), got] += 1
    pooled, total = table.sum(0), CELL_CALLS * CELL_DRAWS
    failing = [
        (position, i)
        for position in range(CELL_DRAWS)
        for i in range(len(losses))
        if binom_test(int(table[position, i]), CELL_CALLS, p[i]) <= ALPHA
    ]
    # A failure is put down to the draw position only if the draws at the other positions, pooled, fit the law
    # (these tests only choose the message: the check has already failed)
    others = [k for k in range(CELL_DRAWS) if k not in {position for position, _ in failing}]
    rest = table[others].sum(0)
    positional = (
        bool(failing)
        and bool(others)
        and all(binom_test(int(rest[i]), CELL_CALLS * len(others), p[i]) > ALPHA for i in range(len(losses)))
    )
    for i in range(len(losses)):  # the law as a whole (unless it fails only at some positions)
        if not positional and binom_test(int(pooled[i]), total, p[i]) <= ALPHA:
            share = pooled.double() / total
            softmax = torch.softmax(losses.double(), 0)
            fits = (
                " Your shares fit a softmax of the losses, not their squares."
                if bool(((share - softmax).abs() < 0.04).all())
                else " Index 0 is never drawn."
                if int(pooled[0]) == 0
                else f" Index {len(losses) - 1}, the last, is never drawn."
                if int(pooled[-1]) == 0
                else ""
            )
            raise CheckFailure(
                _cell_message(
                    what,
                    f"over {CELL_CALLS} calls of {CELL_DRAWS} draws with losses {list(CELL_LOSSES)}",
                    i,
                    int(pooled[i]),
                    total,
                    p[i],
                )
                + fits
                + " Hint: the probability of index b is loss_b^2 / sum_c loss_c^2."
            )
    if failing:
        position, i = failing[0]
        raise CheckFailure(
            _cell_message(
                what,
                f"at draw {position} of {CELL_CALLS} calls of {CELL_DRAWS} draws",
                i,
                int(table[position, i]),
                CELL_CALLS,
                p[i],
            )
            + (
                " At the other draw positions the law holds, but not at this position."
                if positional
                else " Over all the draws together the law holds, but not at this position."
                if not any(binom_test(int(pooled[k]), total, p[k]) <= ALPHA for k in range(len(losses)))
                else ""
            )
            + " Hint: every draw must follow the same law, independently of its position: don't sort "
            "the draws or fix the first one."
        )


# ---------------------------------------------------------------------------------------------------------
# 3.6 Anthropic's resampling
# ---------------------------------------------------------------------------------------------------------

_D_IN_36 = 8


def _anthropic_fixture(seed: int, n_quiet: int, n_dead: int, groups: list[tuple[int, float, float]]) -> dict:
    """An SAE (d_in 8) that reconstructs a pool of inputs as designed: ``groups`` holds (count, loss, ||u||^2) per
    group of inputs.

    Three alive "basis" latents fire on every pool input: their decoder rows D (norms 0.5 to 1.5) span a subspace
    U, their encoder columns are D's dual basis in U, their biases b are 0.05 to 0.15. An input
    ``x = b_dec + u + v`` with ``u = c @ D`` (c > 0) in U and v orthogonal to U then has activations c + b, the
    reconstruction ``x_hat = b_dec + u + b @ D``, and the loss ``||v||^2 + ||b @ D||^2``, set to the group's loss
    through ||v||. b_dec is ``-a @ D`` in U (a from 2 to 3) plus a trained-like part in V: the basis latents still
    fire on ``x - 2 b_dec`` (activations c + b + a), so an encoder fed an input centred twice shifts every loss by
    the same ``||(a + b) @ D||^2 - ||b @ D||^2``, several times the losses themselves. The other alive latents and
    the dead ones never fire on the pool, even uncentred or centred twice (biases below
    -||W_enc[:, j]|| (max ||x - b_dec|| + 2 ||b_dec||)). Everything else is trained-like: decoder rows of unequal
    norms, encoder columns of varied norms (the dead ones 3 times larger)."""
    g = _generator(seed, 11)
    d_sae = 3 + n_quiet + n_dead
    sae = trained_like_sae(_D_IN_36, d_sae, seed)
    role = torch.randperm(d_sae, generator=g)
    basis, quiet, dead_index = role[:3], role[3 : 3 + n_quiet], role[3 + n_quiet :]
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[dead_index] = True
    Q = torch.linalg.qr(torch.randn(_D_IN_36, _D_IN_36, generator=g)).Q
    QU, QV = Q[:, :3], Q[:, 3:]
    M = torch.randn(3, 3, generator=g) + 2 * torch.eye(3)
    M = M / M.norm(dim=-1, keepdim=True) * (0.5 + torch.rand(3, 1, generator=g))
    D = M @ QU.T  # [3, d_in], rows in U
    E = QU @ torch.linalg.inv(M)  # [d_in, 3], D @ E = I
    b = 0.05 + 0.1 * torch.rand(3, generator=g)
    beta = b @ D
    a = 2.0 + torch.rand(3, generator=g)
    pool = []
    with torch.no_grad():
        sae.b_dec.copy_(3.0 * sae.b_dec @ QV @ QV.T - a @ D)  # a large part in U, where b_dec @ E = -a < 0
        sae.W_dec[basis] = D
        sae.W_enc[:, basis] = E
        sae.b_enc[basis] = b
        sae.W_enc[:, dead] *= 3.0
        for count, loss, u_sq in groups:
            c = 0.2 + 0.8 * torch.rand(count, 3, generator=g)
            u = F.normalize(c @ D, dim=-1) * math.sqrt(u_sq)
            v = F.normalize(torch.randn(count, _D_IN_36 - 3, generator=g) @ QV.T, dim=-1)
            pool.append(sae.b_dec + u + v * math.sqrt(loss - float(beta.pow(2).sum())))
        pool = torch.cat(pool)
        order = torch.randperm(len(pool), generator=g)
        pool = pool[order]
        radius = float((pool - sae.b_dec).norm(dim=-1).max() + 2 * sae.b_dec.norm())  # x, x - b_dec, x - 2 b_dec
        others = torch.cat([quiet, dead_index])
        sae.b_enc[others] = -sae.W_enc[:, others].norm(dim=0) * radius - 0.5 - torch.rand(len(others), generator=g)
    labels = torch.cat([torch.full((count,), k) for k, (count, _, _) in enumerate(groups)])[order]
    fx = {"sae": sae, "optimizer": _adam(sae, seed), "dead": dead, "pool": pool, "group": labels, "basis": basis}
    fx["directions"] = _directions(fx)
    return fx


def _ref_losses(sae, x: Tensor) -> Tensor:
    with torch.no_grad():
        return (sae.decode(sae.encode(x)) - x).double().pow(2).sum(-1)


def _directions(fx: dict) -> dict[str, Tensor]:
    """The unit direction a dead latent would get from each pool input, the right way and the ways it goes wrong
    (computed before resampling: the resampled latents fire on the pool afterwards)."""
    sae, pool = fx["sae"], fx["pool"]
    with torch.no_grad():
        b_dec, x_hat = sae.b_dec.detach(), sae.decode(sae.encode(pool))
        return {
            "right": F.normalize(pool - b_dec, dim=-1),
            "input not centred: the new directions point along the chosen inputs x, not x - b_dec; the encoder "
            "sees x - b_dec, and a direction that includes b_dec points mostly at the data's centre": F.normalize(
                pool, dim=-1
            ),
            "b_dec subtracted twice: the new directions point along x - 2 b_dec; the input is centred once, "
            "x - b_dec": F.normalize(pool - 2 * b_dec, dim=-1),
            "the new directions point along the residual x - x_hat, not the centred input x - b_dec (the two "
            "agree only where no latent fires)": F.normalize(pool - x_hat, dim=-1),
            "the new directions are centred by the pool's mean, not by b_dec": F.normalize(pool - pool.mean(0), dim=-1),
        }


def _assert_anthropic_fixture(fx: dict, losses: list[float]) -> None:
    sae, pool, dead = fx["sae"], fx["pool"], fx["dead"]
    with torch.no_grad():
        acts = sae.encode(pool)
    firing = torch.zeros(len(dead), dtype=torch.bool)
    firing[fx["basis"]] = True
    assert_fixture(0 < int(dead.sum()) < len(dead), "some latents are dead and some alive")
    assert_fixture(
        bool((acts[:, firing] > 0).all()) and not bool((acts[:, ~firing] > 0).any()),
        "exactly the three basis latents fire on every pool input, so alive latents fire (and not all)",
    )
    got = _ref_losses(sae, pool)
    want = torch.tensor(losses, dtype=torch.float64)[fx["group"]]
    assert_fixture(bool(torch.allclose(got, want, rtol=1e-4)), "each pool input's loss is its group's")
    directions = dict(fx["directions"])
    right = directions.pop("right")
    cos = right @ right.T - 2 * torch.eye(len(right))
    assert_fixture(float(cos.max()) < 1 - 1e-3, "the pool's centred inputs point different ways")
    for name, wrong in directions.items():
        assert_fixture(float((wrong * right).sum(-1).max()) < 1 - 1e-4, f"the mistake '{name}' gives other directions")
    assert_fixture(_moments_nonzero(fx["optimizer"], sae), "every Adam moment is non-zero before resampling")


def _wrong_laws(sae, pool: Tensor, hard: Tensor) -> dict[str, float]:
    """P(a loss-3 input) when the loss is measured the wrong way: from b_dec, with the encoder's input centred twice,
    with a reconstruction that leaves out b_dec."""
    with torch.no_grad():
        losses = {
            "ignores": pool - sae.b_dec,
            "twice": sae.decode(sae.encode(pool - sae.b_dec)) - pool,
            "no_b_dec": sae.encode(pool) @ sae.W_dec - pool,
        }
    weights = {name: e.double().pow(2).sum(-1).pow(2) for name, e in losses.items()}
    return {name: float(w[hard].sum() / w.sum()) for name, w in weights.items()}


def _chosen_inputs(rows: Tensor, fx: dict, what: str) -> Tensor:
    """Which pool input each new decoder row came from, or a failure naming the mistake the rows match."""
    directions = dict(fx["directions"])
    right = directions.pop("right")
    best = (rows @ right.T).max(-1)
    if bool((best.values > 1 - 1e-5).all()):
        return best.indices
    for why, wrong in directions.items():
        if float(((rows @ wrong.T).max(-1).values > 1 - 1e-5).float().mean()) > 0.9:
            raise CheckFailure(f"{what}: {why}. Hint: d = (x - b_dec) / ||x - b_dec|| for the chosen input x.")
    raise CheckFailure(
        f"{what}: the new decoder rows are not the pool's inputs, centred and normalised: "
        f"{int((best.values <= 1 - 1e-5).sum())} of {len(rows)} rows have a cosine of at most "
        f"{float(best.values.min()):.4f} with every centred pool input (expected 1). Hint: each dead "
        "latent's direction is one sampled input minus b_dec, normalised."
    )


_POOL_REPLACE = [(49, 1.0, 1.0), (1, 400.0, 1.0)]
_POOL_LAW = [(90, 1.0, 8.0), (10, 3.0, 0.5)]  # losses 1 and 3; the loss-1 inputs are farther from b_dec
_POOL_SMALL = [(6, 1.0, 1.0), (6, 2.0, 0.5)]


def _fixture_36(seed: int) -> dict:
    return _anthropic_fixture(seed, 4, 12, _POOL_SMALL)


def _output_36(objects: tuple, fixture: dict) -> Tensor:
    return _all_parameters(
        _run_on_copy(
            fixture,
            lambda f: objects[0](f["sae"], f["optimizer"], f["dead"], f["pool"], torch.Generator().manual_seed(0)),
        )
    )


sensitivity(
    "3.6", build=lambda seed: _anthropic_fixture(seed, 20, ANTHROPIC_DEAD, _POOL_LAW), output=_output_36, tolerance=1e-6
)


@exercise("3.6", "Anthropic's resampling", objects=["resample_anthropic"])
@one_thread
def check_resample_anthropic(resample_anthropic, *, seed: int = 0) -> None:
    """On SAEs whose alive latents fire on the pool (so x_hat is not b_dec) and whose pool inputs have losses set
    by design (see _anthropic_fixture): each new decoder row must be one pool input minus b_dec, normalised (the
    check names the mistake when the rows are the uncentred inputs, x - 2 b_dec, the residual x - x_hat, or
    inputs centred by the pool's mean); plus all of 3.4's properties (count, parameters, alive latents, scale,
    biases, Adam moments, no dead latent, a single one) and the pool left unchanged.

    The inputs are tested as a distribution:

    1. With replacement: 49 inputs of loss 1 and one of loss 400 (99.97% of the squared-loss weight), 20 dead
       latents: at least 10 must go to it (a correct answer fails with probability below 1e-30; without replacement
       at most 1 can: power 1).
    2. The law: 1,000 dead latents, 90 inputs of loss 1 (each 8 farther from b_dec than the loss, so that a loss
       that ignores the reconstruction weighs them most) and 10 of loss 3 (a loss computed with b_dec mishandled is
       shifted by several times the losses, which evens them out): the number of latents given a loss-3
       input is Binomial(1000, 0.5); one exact binomial test, then one per loss-3 input (Binomial(1000, 0.05)).
       The dead latents must not all get the same input.

    False-alarm rate: 11 exact binomial tests at 1e-8 each, below 1e-6 in all. Power (recomputed in
    tests/course/test_power_03.py): weights by the loss, not its square (P = 0.25): > 1 - 1e-6; a loss that
    ignores the reconstruction (||x - b_dec||^2) (P at most 0.1, asserted on the fixture): > 1 - 1e-6; b_dec
    subtracted twice in the loss (sae.encode(x - b_dec)) (P at most 0.2, asserted): > 1 - 1e-6; sampling
    without replacement: 1; one input for every dead latent (a count of 0 or 1,000): 1. Then the randomness
    contract (utils.checks.assert_randomness_contract) on a small copy."""
    what = "resample_anthropic"
    # 1. with replacement, and the direction
    fx = _anthropic_fixture(seed, 10, 20, _POOL_REPLACE)
    _assert_anthropic_fixture(fx, [1.0, 400.0])
    sae, optimizer, dead, pool = fx["sae"], fx["optimizer"], fx["dead"], fx["pool"]
    with unchanged_inputs(what, inputs=pool, dead=dead):
        resample_anthropic(sae, optimizer, dead, pool, _generator(seed, 12))
    chosen = _chosen_inputs(sae.W_dec.detach()[dead], fx, what)
    heavy = int((fx["group"][chosen] == 1).sum())
    if heavy < 10:
        distinct = len(torch.unique(chosen)) == len(chosen)
        raise CheckFailure(
            f"{what}: one input carries 99.97% of the squared-loss weight (loss 400 among 49 losses of "
            f"1), yet only {heavy} of 20 dead latents went to it (at least 10 expected)"
            + (
                "; all 20 went to different inputs: sampling without replacement. Hint: replacement=True."
                if distinct
                else ". Hint: draw with probabilities proportional to loss ** 2."
            )
        )
    # 2. the whole recipe, and the law
    fx = _anthropic_fixture(seed, 20, ANTHROPIC_DEAD, _POOL_LAW)
    _assert_anthropic_fixture(fx, [1.0, 3.0])
    sae, optimizer, dead, pool = fx["sae"], fx["optimizer"], fx["dead"], fx["pool"]
    hard = fx["group"] == 1
    weights = _ref_losses(sae, pool).pow(2)
    p_hard = float(weights[hard].sum() / weights.sum())
    wrong_laws = _wrong_laws(sae, pool, hard)
    assert_fixture(abs(p_hard - 0.5) < 1e-3, "P(a loss-3 input) is 0.5")
    assert_fixture(
        wrong_laws["ignores"] <= IGNORES_RECONSTRUCTION_MAX and wrong_laws["twice"] <= CENTRED_TWICE_MAX,
        f"a loss that ignores the reconstruction or centres the encoder's input twice rarely picks a "
        f"loss-3 input ({wrong_laws})",
    )
    objects = {name: getattr(sae, name) for name in PARAMS}
    params, adam = _params(sae), _adam_snapshot(optimizer, sae)
    with unchanged_inputs(what, inputs=pool, dead=dead):
        n = resample_anthropic(sae, optimizer, dead, pool, _generator(seed, 13))
    _check_count(n, ANTHROPIC_DEAD, what)
    _check_same_parameters(sae, optimizer, objects, what)
    _check_alive_untouched(sae, params, dead, what)
    chosen = _chosen_inputs(sae.W_dec.detach()[dead], fx, what)
    _check_new_latents(sae, params, dead, what, input_norms=(pool[chosen] - params["b_dec"]).norm(dim=-1))
    distinct = len(torch.unique(chosen))
    check_that(
        distinct > 1,
        f"{what}: all {ANTHROPIC_DEAD:,} dead latents went to the same input. Hint: draw one "
        "input per dead latent (n = the number of dead latents), with replacement.",
    )
    hits = int(hard[chosen].sum())
    check_that(
        binom_test(hits, ANTHROPIC_DEAD, p_hard) > ALPHA,
        _law_message(
            what,
            hits,
            ANTHROPIC_DEAD,
            p_hard,
            [
                (0.25, "weighting by the loss itself, not its square"),
                (
                    wrong_laws["ignores"],
                    "a loss measured from b_dec, ||x - b_dec||^2, which ignores what the SAE reconstructs",
                ),
                (
                    wrong_laws["twice"],
                    "a loss whose encoder input was centred twice, sae.encode(x - b_dec) (encode subtracts "
                    "b_dec itself)",
                ),
                (wrong_laws["no_b_dec"], "a reconstruction without b_dec, acts @ W_dec (decode adds b_dec)"),
            ],
            "the probabilities are proportional to loss ** 2, with the loss ||x - x_hat||^2 and "
            "x_hat = sae.decode(sae.encode(x))",
        ),
    )
    per_input = torch.bincount(chosen, minlength=len(pool))
    for b in hard.nonzero().flatten().tolist():
        p_b = float(weights[b] / weights.sum())
        check_that(
            binom_test(int(per_input[b]), ANTHROPIC_DEAD, p_b) > ALPHA,
            f"{what}: pool input {b} (loss 3) went to {int(per_input[b])} of {ANTHROPIC_DEAD:,} dead latents, "
            f"expected about {ANTHROPIC_DEAD * p_b:.0f} (probability loss^2 / sum of loss^2 = {p_b:.3f}; exact "
            f"binomial test, p < {ALPHA:g}). Hint: draw each input with probability proportional to its "
            "squared loss, whatever its position in the pool.",
        )
    _check_adam_reset(optimizer, sae, adam, dead, what)

    small = _fixture_36(seed)
    assert_randomness_contract(
        lambda generator: _run_on_copy(
            small, lambda f: resample_anthropic(f["sae"], f["optimizer"], f["dead"], f["pool"], generator)
        )["sae"].W_dec.detach(),
        what,
        seed,
    )
    _check_edge_cases(resample_anthropic, small, (small["pool"],), what)


# ---------------------------------------------------------------------------------------------------------
# 3.7 the plug-in
# ---------------------------------------------------------------------------------------------------------

#: Tokens since each latent fired: with a window of 100, latents 2, 3 and 5 are dead.
_COUNTS_37 = (0, 99, 100, 5000, 3, 250)
_WINDOW_37, _STEPS_37 = 100, (3, 5)


class _Recorder:
    """A stand-in resampler that records its calls, draws two numbers from the generator it is given (to follow the
    random stream) and returns how many latents it was given."""

    def __init__(self, with_pool: bool) -> None:
        self.calls: list[dict] = []
        self.with_pool = with_pool

    def __call__(self, sae, optimizer, dead, *rest):
        check_that(
            len(rest) == (2 if self.with_pool else 1),
            f"the resampler was called with {3 + len(rest)} "
            f"arguments, expected {5 if self.with_pool else 4}: (sae, optimizer, dead"
            f"{', pool' if self.with_pool else ''}, generator). Hint: pass the pool only when pool_batches > 0.",
        )
        check_that(
            isinstance(rest[-1], torch.Generator),
            f"the resampler's last argument should be the plug-in's torch.Generator, got {type(rest[-1]).__name__}.",
        )
        check_that(
            isinstance(dead, Tensor) and dead.dtype == torch.bool and dead.shape == (len(_COUNTS_37),),
            f"the resampler should get a boolean [d_sae] mask of dead latents, got "
            f"{type(dead).__name__} {getattr(dead, 'dtype', '')} {tuple(getattr(dead, 'shape', ()))}.",
        )
        self.calls.append(
            {
                "sae": sae,
                "optimizer": optimizer,
                "dead": dead.clone(),
                "pool": rest[0] if self.with_pool else None,
                "draws": torch.rand(2, generator=rest[-1]),
            }
        )
        return int(dead.sum())


class _Batches:
    """An iterator over batches that counts how many were taken."""

    def __init__(self, batches: list[Tensor]) -> None:
        self.batches, self.taken = batches, 0

    def __iter__(self):
        return self

    def __next__(self) -> Tensor:
        self.taken += 1
        return self.batches[self.taken - 1]


def _fixture_37(seed: int) -> dict:
    return {"sae": trained_like_sae(3, len(_COUNTS_37), seed)}


def _state(fixture: dict, seed: int, batches):
    from utils.sae.training import TrainConfig, TrainState

    sae = fixture["sae"]
    return TrainState(sae, _adam(sae, seed), TrainConfig(n_tokens=10**6), batches, torch.tensor(_COUNTS_37))


def _run_schedule(
    ResampleOnSchedule, fixture: dict, seed: int, pool_batches: int, plugin_seed: int, on_step=None
) -> tuple[_Recorder, list]:
    """Seven steps of the plug-in on a state whose counters are reset to _COUNTS_37 before each step."""
    batches = _Batches([torch.full((4, 3), float(i)) for i in range(40)])
    recorder = _Recorder(with_pool=pool_batches > 0)
    plugin = ResampleOnSchedule(
        recorder, steps=list(_STEPS_37), window_tokens=_WINDOW_37, pool_batches=pool_batches, seed=plugin_seed
    )
    state = _state(fixture, seed, batches)
    outs = []
    for step in range(7):
        state.step = step
        state.tokens_since_fired = torch.tensor(_COUNTS_37)
        before, taken, calls = state.tokens_since_fired.clone(), batches.taken, len(recorder.calls)
        out = plugin.after_update(state, torch.zeros(4, 3), {})
        outs.append((out, before, state.tokens_since_fired.clone()))
        if on_step is not None:
            on_step(step, state, out, before, batches, taken, recorder, calls)
    return recorder, outs


def _output_37(objects: tuple, fixture: dict) -> Tensor:
    recorder, outs = _run_schedule(objects[0], fixture, 0, 1, 0)
    return torch.cat([after for _, _, after in outs] + [call["dead"].long() for call in recorder.calls])


_COUNTERS_ONLY = (
    "the plug-in compares counters with a window and hands the SAE to the resampler (a recording "
    "stand-in here); it never reads a parameter's value"
)
sensitivity(
    "3.7",
    build=_fixture_37,
    output=_output_37,
    tolerance=0.0,
    exempt={"sae.b_enc": _COUNTERS_ONLY, "sae.b_dec": _COUNTERS_ONLY, "sae.W_dec": _COUNTERS_ONLY},
)


def _check_plugin_randomness(ResampleOnSchedule, fixture: dict, seed: int) -> None:
    """The plug-in's seed makes a run reproducible, another seed changes it, torch's global generator is left alone,
    and the second resampling of a run draws on from the first (one generator for the plug-in's life)."""

    def draws(plugin_seed: int) -> Tensor:
        recorder, _ = _run_schedule(ResampleOnSchedule, fixture, seed, 0, plugin_seed)
        return torch.stack([call["draws"] for call in recorder.calls])

    state = torch.random.get_rng_state()
    first = draws(seed)
    check_that(
        torch.equal(torch.random.get_rng_state(), state),
        "the plug-in used torch's global random generator "
        "for the resampler. Hint: pass self.generator, the one made from the plug-in's seed.",
    )
    check_that(
        torch.equal(first, draws(seed)),
        "two plug-ins with the same seed gave the resampler different random "
        "streams. Hint: pass self.generator, made from the seed in __init__.",
    )
    check_that(
        not torch.equal(first, draws(seed + 7919)),
        "plug-ins with different seeds gave the resampler the same "
        "random stream: the seed is ignored. Hint: pass self.generator, made from the seed in __init__.",
    )
    check_that(
        not torch.equal(first[0], first[1]),
        "the two resamplings of one run got the same random stream: the "
        "generator restarts at every step (a fresh torch.Generator, or manual_seed, in after_update). Hint: "
        "pass self.generator as it is, so that each resampling draws on from the last.",
    )


@exercise("3.7", "Resampling on a schedule", objects=["ResampleOnSchedule"])
@one_thread
def check_resample_on_schedule(ResampleOnSchedule, *, seed: int = 0) -> None:
    """Seven steps with steps=[3, 5], window_tokens=100 and counters [0, 99, 100, 5000, 3, 250] (latents 2, 3 and 5
    dead, one of them exactly at the window), with pool_batches 0, 1 and 3, and a recording resampler: after steps 3
    and 5 only, the resampler gets the SAE, the optimiser, the dead mask, the next pool_batches batches from
    state.buffer (none off the schedule) and the plug-in's generator; the result is {"resampled": n}; the resampled
    latents' counters restart at 0 and the others are left alone. Off the schedule nothing changes and None is
    returned. Then the plug-in's randomness: its seed makes a run reproducible, and the stream goes on."""
    fixture = _fixture_37(seed)
    want_dead = torch.tensor(_COUNTS_37) >= _WINDOW_37
    assert_fixture(
        0 < int(want_dead.sum()) < len(want_dead) and _WINDOW_37 in _COUNTS_37,
        "some latents are dead and some alive, one exactly at the window",
    )

    for pool_batches in (0, 1, 3):

        def on_step(step, state, out, before, batches, taken, recorder, calls, pool_batches=pool_batches):
            scheduled = step + 1 in _STEPS_37
            if not scheduled:
                check_that(
                    out is None or out == {},
                    f"after step {step + 1} (not in steps={list(_STEPS_37)}) "
                    f"after_update returned {out!r}, expected None. Hint: state.step counts the steps taken "
                    "before this one; resample when state.step + 1 is in self.steps.",
                )
                check_that(
                    len(recorder.calls) == calls,
                    f"after step {step + 1}, which is not in steps="
                    f"{list(_STEPS_37)}, the resampler was called. Hint: state.step counts the steps taken "
                    "before this one; resample when state.step + 1 is in self.steps.",
                )
                check_that(
                    torch.equal(state.tokens_since_fired, before),
                    f"after step {step + 1} (not on the "
                    f"schedule) the counters changed from {before.tolist()} to "
                    f"{state.tokens_since_fired.tolist()}. Hint: change nothing off the schedule.",
                )
                check_that(
                    batches.taken == taken,
                    f"after step {step + 1} (not on the schedule) after_update took "
                    f"{batches.taken - taken} batch(es) from state.buffer, which the training loop then never "
                    "trains on. Hint: draw the pool only on the steps of the schedule.",
                )
                return
            check_that(
                len(recorder.calls) == calls + 1,
                f"after step {step + 1}, which is in steps={list(_STEPS_37)}, "
                f"the resampler was called {len(recorder.calls) - calls} times, expected once. Hint: resample "
                "when state.step + 1 is in self.steps.",
            )
            call = recorder.calls[-1]
            check_that(
                call["sae"] is state.sae and call["optimizer"] is state.optimizer,
                "the resampler should get state.sae and state.optimizer, the ones being trained.",
            )
            check_that(
                torch.equal(call["dead"], want_dead),
                f"with window_tokens={_WINDOW_37} and tokens since firing "
                f"{before.tolist()}, the dead latents are {want_dead.int().tolist()}, but the resampler got "
                f"{call['dead'].int().tolist()}. Hint: dead means tokens_since_fired >= window_tokens (tokens, "
                "not steps).",
            )
            check_that(
                isinstance(out, dict)
                and set(out) == {"resampled"}
                and isinstance(out["resampled"], (int, float))
                and out["resampled"] == int(want_dead.sum()),
                f"after_update should return {{'resampled': n}} with n the number the resampler returned "
                f"({int(want_dead.sum())}), as a number; got {out!r}.",
            )
            after = state.tokens_since_fired
            check_that(
                bool((after[want_dead] == 0).all()) and torch.equal(after[~want_dead], before[~want_dead]),
                f"after resampling, the counters should be 0 for the resampled latents and unchanged for the "
                f"others: {before.tolist()} became {after.tolist()}. Hint: a resampled latent gets a fresh "
                "window.",
            )
            if pool_batches:
                pool = call["pool"]
                want = torch.cat(batches.batches[taken : taken + pool_batches])
                check_that(
                    isinstance(pool, Tensor) and pool.shape == want.shape and torch.equal(pool, want),
                    f"with pool_batches={pool_batches} the pool should be the next {pool_batches} "
                    f"batch(es) from state.buffer, concatenated ({tuple(want.shape)}), got "
                    f"{tuple(pool.shape) if isinstance(pool, Tensor) else type(pool).__name__}"
                    + (
                        " (this step's batch x)"
                        if isinstance(pool, Tensor) and pool.shape == (4, 3) and bool((pool == 0).all())
                        else ""
                    )
                    + ". Hint: torch.cat([next(state.buffer) for _ in range(self.pool_batches)]).",
                )

        recorder, _ = _run_schedule(ResampleOnSchedule, fixture, seed, pool_batches, seed, on_step)
        check_that(
            len(recorder.calls) == len(_STEPS_37),
            f"over steps 1 to 7 with steps={list(_STEPS_37)}, the "
            f"resampler ran {len(recorder.calls)} times, expected {len(_STEPS_37)}.",
        )
    _check_plugin_randomness(ResampleOnSchedule, fixture, seed)


seal.take()  # fingerprint these checks before any learner code runs (utils/checks/seal.py)
