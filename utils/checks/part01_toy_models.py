"""Checks for Part 1 (toy models of superposition).

Each check tests the learner's object on its own (never through another exercise), against naive reference
code written out with loops where it helps readability, on a fixture whose every parameter has a non-trivial
value (``b_final`` of both signs, columns of ``W`` of unequal norms, importances that are not all 1). The
fixture is registered with :func:`utils.checks.fixtures.sensitivity`, and each check first asserts that its
fixture takes the branches it tests (the ReLU clips some entries but not all; a dropped feature).

The three model checks (1.1, 1.6, 1.8) compare the gradient that reaches every parameter with the reference's
(not only that one arrives: a tied weight whose read-out half is detached gets a gradient, of the wrong size).

Sampling functions (1.2, 1.5, 1.7) are tested as distributions on large batches, per position and per interval:
an exact binomial test of each (instance, feature) entry's presence count, a chi-squared test of the present
values in ten equal intervals per entry and a Kolmogorov–Smirnov test of all of them together, and exact
binomial tests of joint presence for independence. Every statistical test has a false-alarm rate of at most
``ALPHA`` = 1e-8 and a check runs fewer than 100 of them, so a correct answer fails with probability below
1e-6 per run: the checks never flake. Each sampling check's docstring states its power against the mistakes
it names, recomputed by ``tests/course/test_power_01.py``. The samplers draw from torch's global random
generator (the exercises take no generator): the checks require that ``torch.manual_seed`` makes them
reproducible and that two calls in a row give two different batches.

Every check also tests the properties an exercise of its kind must have: dtype, shape and type of the result,
and the learner's input tensors left unmodified.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (
    CheckFailure,
    assert_float32,
    assert_gradients_reach,
    assert_shape,
    binom_test,
    check_that,
    chi2_sf,
    exercise,
    ks_test,
    shown_apart,
    unchanged_inputs,
)
from utils.checks.fixtures import assert_fixture, sensitivity
from utils.parts.toy_models import ToyModelConfig

#: The false-alarm probability of each statistical test (a check runs fewer than 100 of them).
ALPHA = 1e-8
#: How many standard errors a sampled statistic may stray from its expected value (two-sided p < ALPHA).
Z = NormalDist().inv_cdf(1 - ALPHA / 2)
#: Equal intervals per (instance, feature) entry in which the present values are counted.
BINS = 10

#: The exercises whose check has no parameter that could take a trivial value (1, 0, unit norm), and why.
FIXTURE_FREE = {
    "1.2": "generate_batch takes only a batch size and a table of probabilities (distinct, none 0 or 1, none "
    "shared by a whole row or column): there is no weight or bias to leave at a trivial value",
    "1.5": "the pair generators take only a batch size, a number of pairs and one probability per instance "
    "(three distinct values): there is no weight or bias to leave at a trivial value",
    "1.7": "generate_signed_batch takes only a batch size and a table of probabilities (distinct, none 0 or 1): "
    "there is no weight or bias to leave at a trivial value",
}

#: The sampling designs (the course test tests/course/test_power_01.py recomputes the power from them).
N_SAMPLES = 20_000
P_BATCH = ((0.05, 0.3, 0.5, 0.9, 0.2), (0.5, 0.5, 0.5, 0.5, 0.5), (0.2, 0.8, 0.1, 0.6, 0.95), (0.5, 0.5, 0.5, 0.5, 0.5))
#: (instance, feature) pairs whose joint presence generate_batch's check tests, and what each shows.
JOINT_BATCH = (((1, 0), (3, 0), "instances"), ((0, 1), (2, 1), "instances"), ((1, 0), (1, 1), "features"))
P_PAIRS = (0.1, 0.25, 0.4)
N_PAIRS = 3
P_SIGNED = ((0.05, 0.3, 0.5, 0.9), (0.2, 0.8, 0.1, 0.6), (0.5, 0.5, 0.5, 0.5))
JOINT_SIGNED = (((2, 0), (2, 1), "features"), ((0, 2), (2, 2), "instances"))

#: The mistakes each sampling check names in its docstring, with the power claimed against each (the
#: probability that the check rejects it); tests/course/test_power_01.py recomputes every one.
POWER_CLAIMS: dict[str, dict[str, float]] = {
    "1.2": {
        "comparison reversed": 1 - 1e-6,
        "one mask shared by all instances": 1 - 1e-6,
        "one mask shared by all features": 1 - 1e-6,
        "the mask's draw reused as the value": 1 - 1e-6,
    },
    "1.5": {
        "pair active with probability p instead of 2p": 1 - 1e-6,
        "second feature switched off when both were drawn": 1 - 1e-6,
        "torch.randint(0, 1) for the coin": 1 - 1e-6,
        "probability broadcast along the pairs": 1 - 1e-6,
        "one mask shared by all pairs": 1 - 1e-6,
        "one mask shared by all instances": 1 - 1e-6,
    },
    "1.7": {
        "comparison reversed": 1 - 1e-6,
        "values uniform in [-0.5, 0.5)": 1 - 1e-6,
        "one mask shared by all features": 1 - 1e-6,
        "one mask shared by all instances": 1 - 1e-6,
        "a clamped Gaussian": 1 - 1e-6,
    },
}


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000 + seed)


def _tol(p: Tensor | float, n: int) -> Tensor:
    """The gap an observed frequency may show from its probability ``p`` over ``n`` samples (two-sided p < ALPHA)."""
    p = torch.as_tensor(p, dtype=torch.float64)
    return Z * torch.sqrt(p * (1 - p) / n) + 1e-9


def _consistent(rate: Tensor, alternative: Tensor, n: int) -> bool:
    """Whether every observed rate is within sampling error of ``alternative`` (to recognise a known mistake)."""
    return bool(((rate - alternative).abs() <= _tol(alternative, n)).all())


def _check_float_batch(x, shape: tuple[int, ...], what: str) -> Tensor:
    if isinstance(x, (tuple, list)):
        raise CheckFailure(
            f"{what} returned a {type(x).__name__}; it should return one tensor of shape {shape} "
            "(the batch itself, not the batch with its mask)."
        )
    assert_shape(x, shape, what)
    check_that(
        x.dtype.is_floating_point, f"{what} has dtype {x.dtype}; it should be a float tensor (values, not a mask)."
    )
    assert_float32(x, what, "torch.rand gives float32 already: don't convert the batch to float64.")
    check_that(bool(torch.isfinite(x).all()), f"{what} contains NaN or inf values.")
    return x.detach().double()


def _example(
    actual: Tensor, expected: Tensor, names: tuple[str, ...], *, rtol: float = 1e-4, atol: float = 1e-5
) -> str:
    """Where ``actual`` differs most from ``expected``, with both values: "at batch 2, instance 1, feature 3 it is
    0.41 instead of 0.38"."""
    far = ~torch.isclose(actual, expected, rtol=rtol, atol=atol)
    where = _index_of(((actual - expected).abs() * far).argmax(), actual.shape)
    wanted, got = shown_apart(expected[where].item(), actual[where].item())
    return f"at {', '.join(f'{name} {i}' for name, i in zip(names, where))} it is {got} instead of {wanted}"


def _assert_close_at(
    actual: Tensor,
    expected: Tensor,
    what: str,
    hint: str,
    names: tuple[str, ...],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """Fail unless ``actual`` matches ``expected`` (same shape, float64), naming the entry that differs most, with
    both values: e.g. "at batch 2, instance 1, feature 3 it is 0.41 instead of 0.38"."""
    assert_shape(actual, tuple(expected.shape), what)
    close = torch.isclose(actual, expected, rtol=rtol, atol=atol)
    if bool(close.all()):
        return
    raise CheckFailure(
        f"{what} has the right shape but wrong values: {(~close).double().mean().item():.1%} of its "
        f"entries differ, e.g. {_example(actual, expected, names, rtol=rtol, atol=atol)}. Hint: {hint}"
    )


def _sample(generate, *args, p: Tensor, what: str):
    """Call a sampler, failing if it modifies the feature probabilities it is given."""
    with unchanged_inputs(what, feature_probability=p):
        return generate(*args, p)


def _index_of(flat: Tensor | int, shape: torch.Size) -> tuple[int, ...]:
    """The multi-index of a flat index (torch's own unravel_index imports its compiler stack: seconds, the first
    time)."""
    index, out = int(flat), []
    for size in reversed(shape):
        index, r = divmod(index, size)
        out.append(r)
    return tuple(reversed(out))


def _set_params(model, **params: Tensor) -> None:
    for name, value in params.items():
        current = getattr(model, name, None)
        if not isinstance(current, torch.Tensor):
            raise CheckFailure(f"the model has no tensor attribute `{name}`: keep the parameters set up in `__init__`.")
        if tuple(current.shape) != tuple(value.shape):
            raise CheckFailure(
                f"the model's `{name}` has shape {tuple(current.shape)}, expected {tuple(value.shape)}: "
                "keep the parameters set up in `__init__`."
            )
        with torch.no_grad():
            current.copy_(value)


def _same_batch(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def _global_randomness(call: Callable[[], Tensor], what: str, seed: int) -> None:
    """The promises of a sampler that draws from torch's global generator (these exercises take no generator):
    ``torch.manual_seed`` makes it reproducible, and two calls in a row give two batches (train() calls it once
    per step: a sampler that restarts its stream would train on one batch over and over)."""
    torch.manual_seed(seed)
    first = call()
    second = call()
    torch.manual_seed(seed)
    replay = call()
    check_that(
        _same_batch(first, replay),
        f"{what}: two calls after the same torch.manual_seed({seed}) gave different batches, so the batch "
        "does not come from torch's random generator alone (torch.manual_seed does not reset numpy's or "
        "Python's `random`). Hint: draw with torch.rand (or torch.bernoulli...), without a generator of your own.",
    )
    check_that(
        not _same_batch(first, second),
        f"{what}: two calls in a row gave exactly the same batch, so the random stream restarts at every call "
        "(torch.manual_seed, or a fresh torch.Generator(), inside the function), and train() would see the "
        "same batch at every step. Hint: draw from torch's global generator as it is; don't seed inside.",
    )
    torch.manual_seed(seed + 7919)
    other = call()
    check_that(
        not _same_batch(first, other),
        f"{what} gave the same batch after torch.manual_seed({seed}) and torch.manual_seed({seed + 7919}): it "
        "does not draw from torch's global generator. Hint: use torch.rand, with no generator of your own.",
    )


def _follows_dtype(function, W: Tensor, names: str) -> None:
    """The result of an analysis of W has W's dtype: float64 for a float64 W.

    (Its device is not tested: Part 1 runs on the CPU, and the only stand-in for another device on a CPU-only
    machine, PyTorch's ``meta`` device, imports torch's compiler stack on first use: seconds, too slow for a check.)"""
    result = function(W.double())
    tensors = list(result) if isinstance(result, (tuple, list)) else [result]
    dtypes = [getattr(t, "dtype", type(t).__name__) for t in tensors]
    check_that(
        all(d == torch.float64 for d in dtypes),
        f"for a float64 W, {names} {'have dtypes' if len(dtypes) > 1 else 'has dtype'} "
        f"{dtypes if len(dtypes) > 1 else dtypes[0]}; {'they' if len(dtypes) > 1 else 'it'} should follow W's "
        "dtype (float64). Hint: don't fill a tensor you create yourself (torch.zeros(...) is float32 unless you "
        "pass dtype=W.dtype); compute from W itself.",
    )


# ---------------------------------------------------------------------------------------------------------
# Statistical tests of sampled batches
# ---------------------------------------------------------------------------------------------------------


def _presence_tests(
    x: Tensor, p: Tensor, what: str, diagnose: Callable[[Tensor, Tensor, int], str | None] | None = None
) -> None:
    """An exact binomial test of each (instance, feature) entry's presence count against its probability (each at
    a false-alarm rate of ALPHA). On failure, name the entry with the smallest p-value, and the hint that fits
    the pattern of all the rates (``diagnose``, then a reversed comparison)."""
    n = x.shape[0]
    counts = (x != 0).sum(0)
    p = p.double().expand(counts.shape)
    rate = counts.double() / n
    p_values = torch.tensor(
        [binom_test(int(c), n, float(q)) for c, q in zip(counts.flatten(), p.flatten())], dtype=torch.float64
    ).reshape(counts.shape)
    if not bool((p_values < ALPHA).any()):
        return
    z = ((rate - p) / torch.sqrt(p * (1 - p) / n)).abs()
    worst = _index_of(torch.argmax(torch.where(p_values < ALPHA, z, torch.zeros_like(z))), z.shape)
    expected, observed = shown_apart(p[worst].item(), rate[worst].item())
    hint = diagnose(rate, p, n) if diagnose is not None else None
    if hint is None and _consistent(rate, 1 - p, n):
        hint = "this looks like 1 - p: is the comparison reversed (`>` instead of `<`)?"
    hint = hint or "a feature should be present (nonzero) when a uniform draw is *below* its probability."
    raise CheckFailure(
        f"{what}: the presence rates do not match the feature probabilities: instance {worst[0]} feature {worst[1]}, "
        f"with probability {expected}, is present (nonzero) in {observed} of {n} samples (exact binomial test, "
        f"p = {p_values[worst].item():.1g}; each entry is tested at a false-alarm rate of {ALPHA:g}). Hint: {hint}"
    )


def _values_independent_of_mask(x: Tensor, p: Tensor, low: float, high: float, what: str) -> None:
    """A rare feature's values must not be confined below its probability (the mask's own draw reused as the value):
    an exact binomial test of how many of its present values lie in the lowest fraction p of the range."""
    p = p.double().expand_as(x[0])
    k = _index_of(p.argmin(), p.shape)
    column = x[(slice(None), *k)]
    u = (column[column != 0] - low) / (high - low)
    pk = p[k].item()
    if u.numel() < 100:
        return
    below = int((u < pk).sum())
    p_value = binom_test(below, u.numel(), pk)
    if below > pk * u.numel() and p_value < ALPHA:
        raise CheckFailure(
            f"{what}: instance {k[0]} feature {k[1]} has probability {pk:.2f}, and {below / u.numel():.0%} of its "
            f"present values lie in the lowest {pk:.0%} of [{low:g}, {high:g}) (about {pk:.0%} would, if values were "
            "independent of the mask). Hint: you are reusing the mask's random numbers as the values; draw the "
            "values with a separate torch.rand."
        )


def _interval_counts(x: Tensor, low: float, high: float) -> Tensor:
    """Counts of the present values of each (instance, feature) entry in BINS equal intervals of [low, high):
    shape [entries, BINS]."""
    present = (x != 0).flatten(1)  # [batch, entries]
    entries = present.shape[1]
    bins = ((x.flatten(1) - low) / (high - low) * BINS).floor().clamp(0, BINS - 1).long()
    cell = torch.arange(entries).expand_as(bins)
    index = (cell * BINS + bins)[present]
    return torch.bincount(index, minlength=entries * BINS).reshape(entries, BINS).double()


def _uniform_values(x: Tensor, p: Tensor, low: float, high: float, what: str) -> None:
    """The present (nonzero) entries of ``x`` should be uniform in [low, high), independently of the mask drawn with
    probabilities ``p``: range, then independence from the mask, then a chi-squared test per (entry, interval) and
    a Kolmogorov–Smirnov test of all present values (each at a false-alarm rate of ALPHA)."""
    values = x[x != 0]
    check_that(values.numel() > 100, f"{what}: almost no feature is ever present.")
    n = values.numel()
    distinct = values.unique().numel()
    check_that(
        distinct > 2,
        f"{what}: present features take only {distinct} distinct value(s). "
        "Hint: multiply the mask by uniform random values (don't return the mask itself).",
    )
    lo, hi = values.min().item(), values.max().item()
    width = high - low
    check_that(
        lo >= low and hi < high,
        f"{what}: present features take values from {lo:.3f} to {hi:.3f}; they should lie in [{low:g}, {high:g}). "
        "Hint: scale and shift `torch.rand` (uniform in [0, 1)); `torch.randn` is a Gaussian, and clamping one "
        "does not make it uniform.",
    )
    _values_independent_of_mask(x, p, low, high, what)
    counts = _interval_counts(x, low, high)
    m = counts.sum(1, keepdim=True)
    used = m[:, 0] > 0
    expected = (m / BINS)[used]
    chi2_statistic = float(((counts[used] - expected) ** 2 / expected).sum())
    chi2_p = chi2_sf(chi2_statistic, int(used.sum()) * (BINS - 1))
    ks_statistic, ks_pvalue = ks_test(values, lambda v: (v - low) / width)
    if chi2_p < ALPHA or ks_pvalue < ALPHA:
        law = (
            f"(chi-squared test of the present values in {BINS} equal intervals of each (instance, feature) entry: "
            f"p = {chi2_p:.1g}; Kolmogorov–Smirnov test of all {n} present values against U[{low:g}, {high:g}): "
            f"distance {ks_statistic:.3f}, p = {ks_pvalue:.1g}; each at a false-alarm rate of {ALPHA:g})"
        )
        common, count = torch.unique(values, return_counts=True)
        top = int(count.argmax())
        if count[top].item() > 0.01 * n:
            raise CheckFailure(
                f"{what}: {count[top].item() / n:.0%} of the present values are exactly {common[top].item():.4g}, so "
                "they "
                f"are not uniform {law}. Hint: values pile up at one point, as they do when a draw is clamped; "
                "draw them uniform in the first place (`torch.rand`, scaled and shifted)."
            )
        std, expected_std = values.std().item(), width / math.sqrt(12)
        if hi - lo < 0.9 * width or std < 0.9 * expected_std:
            raise CheckFailure(
                f"{what}: the present values only spread over [{lo:.3f}, {hi:.3f}] (standard deviation {std:.3f}), "
                f"not over the whole of [{low:g}, {high:g}) (standard deviation {expected_std:.3f}) {law}. "
                f"Hint: scale the uniform draw to the full width: a·torch.rand(...) + b covers [b, a + b)."
            )
        z = (counts - m / BINS) / (m / BINS).clamp_min(1e-12).sqrt()
        cell, interval = _index_of(z.abs().argmax(), z.shape)
        k, f = _index_of(cell, x.shape[1:])
        a, b = low + interval * width / BINS, low + (interval + 1) * width / BINS
        wanted, got = shown_apart(m[cell, 0].item() / BINS, counts[cell, interval].item())
        raise CheckFailure(
            f"{what}: the present values are not uniform in [{low:g}, {high:g}): e.g. instance {k} feature {f} has "
            f"{got} of its {m[cell, 0].item():.0f} present values in [{a:g}, {b:g}), where about {wanted} are "
            f"expected {law}. Hint: draw them with `torch.rand`, scaled and shifted, independently of the mask."
        )
    check_that(
        distinct > 0.9 * n,
        f"{what}: only {distinct} distinct values among {n} present features: values are being repeated. "
        "Hint: draw the values independently for every (batch, instance, feature) entry.",
    )


def _joint_independence(
    x: Tensor, a: tuple[int, int], b: tuple[int, int], pa: float, pb: float, what: str, hint: str
) -> None:
    """Entries ``a`` and ``b`` (each ``(inst, feat)``) should be present together with probability pa·pb (an exact
    binomial test at a false-alarm rate of ALPHA)."""
    n = x.shape[0]
    both = int(((x[:, a[0], a[1]] != 0) & (x[:, b[0], b[1]] != 0)).sum())
    p_value = binom_test(both, n, pa * pb)
    expected, observed = shown_apart(pa * pb, both / n)
    check_that(
        p_value >= ALPHA,
        f"{what}: instance {a[0]} feature {a[1]} and instance {b[0]} feature {b[1]} (probabilities {pa:.2f} and "
        f"{pb:.2f}) are present together in {observed} of the {n} samples, but independent features would be "
        f"together in {expected} (exact binomial test, p = {p_value:.1g}). Hint: {hint}",
    )


# ---------------------------------------------------------------------------------------------------------
# The three models (1.1, 1.6, 1.8): fixtures, naive forward passes, and their gradients
# ---------------------------------------------------------------------------------------------------------


def _columns(n_inst: int, d_hidden: int, n_feats: int, g: torch.Generator) -> Tensor:
    """Weights [inst hidden feats] whose feature columns have random directions and norms spread from 0.6 to 2 in
    every instance (one in each of n_feats equal strata, in random order)."""
    W = torch.randn(n_inst, d_hidden, n_feats, generator=g)
    strata = torch.stack([torch.randperm(n_feats, generator=g) for _ in range(n_inst)]).double()
    norms = 0.6 + 1.4 * (strata + torch.rand(n_inst, n_feats, generator=g, dtype=torch.float64)) / n_feats
    return W / W.norm(dim=1, keepdim=True) * norms[:, None, :].float()


def _model_fixture(seed: int, *, n_feats: int, signed: bool = False, separate: bool = False) -> dict[str, Tensor]:
    """A model check's fixture, named so that :func:`utils.checks.fixtures.set_trivial` knows each trivial value.

    ``W_dec`` is the read-out, one row per feature ([inst feats hidden]: Wᵀ for the tied models, W2 for AbsModel),
    whose trivial value is rows of norm 1; ``b_final`` is 0 when trivial. ``W1`` (AbsModel's write), the input
    ``x`` (with an all-zero first row) and ``grad_weights`` (the weights of the scalar whose gradient the check
    compares) have none."""
    g = _gen(seed)
    n_inst, d_hidden = 3, 4
    fixture: dict[str, Tensor] = {}
    if separate:
        fixture["W1"] = _columns(n_inst, d_hidden, n_feats, g)
    fixture["W_dec"] = _columns(n_inst, d_hidden, n_feats, g).transpose(1, 2).contiguous()
    fixture["b_final"] = 0.4 * torch.randn(n_inst, n_feats, generator=g)
    x = torch.rand(6, n_inst, n_feats, generator=g)
    if signed:
        x = 2 * x - 1
    x = x * (torch.rand(6, n_inst, n_feats, generator=g) < 0.6)
    x[0] = 0.0  # one all-zero input per instance: the output must then be ReLU(b)
    fixture["x"] = x
    fixture["grad_weights"] = torch.randn(6, n_inst, n_feats, generator=g)
    return fixture


def _weights(fixture: dict[str, Tensor], separate: bool) -> dict[str, Tensor]:
    """The model's parameters from a fixture: {"W": ..., "b_final": ...} or {"W1", "W2", "b_final"}."""
    if separate:
        return {"W1": fixture["W1"], "W2": fixture["W_dec"], "b_final": fixture["b_final"]}
    return {"W": fixture["W_dec"].transpose(1, 2), "b_final": fixture["b_final"]}


def _run_model(Model, fixture: dict[str, Tensor], separate: bool = False):
    """The learner's (or the reference's) model on the fixture, with its parameters set: (model, x)."""
    x = fixture["x"]
    weights = _weights(fixture, separate)
    n_inst, n_feats = weights["b_final"].shape
    d_hidden = fixture["W_dec"].shape[-1]
    model = Model(ToyModelConfig(n_inst=n_inst, n_feats=n_feats, d_hidden=d_hidden))
    _set_params(model, **weights)
    return model, x


def _model_output(separate: bool = False):
    """The registered output of a model check: the exercise's model on the fixture."""

    def output(objects: tuple, fixture: dict[str, Tensor]) -> Tensor:
        model, x = _run_model(objects[0], fixture, separate)
        return model(x)

    return output


def _naive_forward(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool, *, gelu: str = "") -> Tensor:
    """Loop over batch and instances: ReLU(W2t @ act(W1 @ x) + b), W1 [inst hidden feats], W2t [inst feats hidden].

    ``gelu`` ("hidden", "final" or "both") puts a GELU where the model has a ReLU, to recognise that mistake."""
    rows = []
    hidden_act = F.gelu if gelu in ("hidden", "both") else torch.relu
    final_act = F.gelu if gelu in ("final", "both") else torch.relu
    for beta in range(x.shape[0]):
        row = []
        for k in range(x.shape[1]):
            h = W1[k] @ x[beta, k]
            if hidden_relu or gelu in ("hidden", "both"):
                h = hidden_act(h)
            row.append(final_act(W2t[k] @ h + b[k]))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _hidden_and_final_pre(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool) -> tuple[Tensor, Tensor]:
    """The pre-activations of the hidden layer and of the output (to assert the fixture's non-degeneracy)."""
    hidden = torch.einsum("ihf,bif->bih", W1, x)
    h = torch.relu(hidden) if hidden_relu else hidden
    return hidden, torch.einsum("ifh,bih->bif", W2t, h) + b


def _assert_model_fixture(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool) -> None:
    hidden, final = _hidden_and_final_pre(W1, W2t, b, x, hidden_relu)
    clipped = (final < 0).double().mean().item()
    assert_fixture(0.1 <= clipped <= 0.9, f"the final ReLU clips {clipped:.0%} of the outputs, not 10% to 90%")
    assert_fixture(bool((b > 0).any() and (b < 0).any()), "b_final does not have both signs")
    norms = W1.norm(dim=1)
    assert_fixture(norms.max() / norms.min() >= 1.5, "the feature columns of W have nearly equal norms")
    if hidden_relu:
        nonzero = x[1:].abs().sum(-1) > 0  # inputs with a feature present: [batch - 1, inst]
        negative = (hidden[1:][nonzero] < 0).double().mean().item()
        assert_fixture(0.1 <= negative <= 0.9, f"the hidden ReLU clips {negative:.0%} of its inputs, not 10% to 90%")


_GELU_HINT = (
    "it looks like a GELU where the model has a ReLU ({where}): F.gelu is not F.relu (GELU lets small "
    "negative values through); use F.relu."
)


def _gelu_variants(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool) -> dict[str, Tensor]:
    wheres = {"final": "on the output"} | (
        {"hidden": "on the hidden layer", "both": "on both layers"} if hidden_relu else {}
    )
    return {
        _GELU_HINT.format(where=where): _naive_forward(W1, W2t, b, x, hidden_relu, gelu=key)
        for key, where in wheres.items()
    }


def _reference_gradients(
    weights: dict[str, Tensor], x: Tensor, R: Tensor, hidden_relu: bool, detach: str = ""
) -> dict[str, Tensor]:
    """The gradient of Σ R ⊙ output with respect to each parameter, in float64, through the naive forward pass.

    For the tied models, ``detach`` ("read" or "write") stops the gradient through one of W's two uses, to
    recognise that mistake."""
    params = {name: t.detach().double().requires_grad_(True) for name, t in weights.items()}
    xd = x.double()
    if "W" in params:
        W = params["W"]
        write = W.detach() if detach == "write" else W
        read = W.detach() if detach == "read" else W
        out = _naive_forward(write, read.transpose(1, 2), params["b_final"], xd, hidden_relu)
    else:
        out = _naive_forward(params["W1"], params["W2"], params["b_final"], xd, hidden_relu)
    grads = torch.autograd.grad((out * R.double()).sum(), list(params.values()), allow_unused=True)
    return {name: (torch.zeros_like(params[name]) if g is None else g) for name, g in zip(params, grads)}


def _gradients_close(got: Tensor, expected: Tensor) -> bool:
    scale = expected.abs().max().item()
    return torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale + 1e-7)


def _check_gradients(
    model, out: Tensor, weights: dict[str, Tensor], x: Tensor, R: Tensor, hidden_relu: bool, what: str, forward: str
) -> None:
    """Every parameter gets a gradient, and the one the reference forward pass gives it (on Σ R ⊙ output)."""
    params = {name: getattr(model, name) for name in weights}
    assert_gradients_reach(
        out,
        params,
        what,
        "train() changes the parameters through this output's gradient: don't compute the forward "
        "pass inside `torch.no_grad()`, and don't `.detach()` the result or a parameter.",
    )
    grads = torch.autograd.grad((out.double() * R.double()).sum(), list(params.values()), allow_unused=True)
    expected = _reference_gradients(weights, x, R, hidden_relu)
    for (name, _), grad in zip(params.items(), grads):
        got = grad.detach().double()
        if _gradients_close(got, expected[name]):
            continue
        hint = (
            f"the output is right, so the gradient is stopped or changed on the way: don't use `.detach()`, "
            f"`.data` or `torch.no_grad()` on any part of the computation that involves `{name}`."
        )
        if name == "W":
            for detach, use, other in (
                ("read", "read-out Wᵀh", "write h = Wx"),
                ("write", "write h = Wx", "read-out Wᵀh"),
            ):
                if _gradients_close(got, _reference_gradients(weights, x, R, hidden_relu, detach)["W"]):
                    hint = (
                        f"it is exactly the gradient through the {other} alone: the {use} passes none, as if W "
                        f"were detached (or `.data`) there. W is used twice, and its gradient is the sum of both "
                        f"uses: use `self.W` itself in both einsums."
                    )
        bad = ~torch.isclose(got, expected[name], rtol=1e-4, atol=1e-4 * expected[name].abs().max().item() + 1e-7)
        where = _index_of(((got - expected[name]).abs() * bad).argmax(), got.shape)
        wanted, have = shown_apart(expected[name][where].item(), got[where].item())
        raise CheckFailure(
            f"the gradient that reaches `{name}` from {what} is wrong, although the output itself is right: "
            f"{bad.double().mean().item():.0%} of its entries differ from the gradient of {forward}, e.g. at "
            f"{name}{list(where)} it is {have} instead of {wanted} (for the scalar Σ r ⊙ output with fixed random "
            f"weights r). Hint: {hint}"
        )


def _check_model_output(
    model, x: Tensor, expected: Tensor, b: Tensor, variants: dict[str, Tensor], what: str
) -> Tensor:
    """Run the model on ``x`` and compare with ``expected``; if it differs, name the likely mistake from a few known
    variants. Also: one float32 tensor, the input unmodified. Returns the output (with its graph)."""
    with unchanged_inputs(f"{type(model).__name__}.forward", features=x):
        out = model(x)
    if isinstance(out, (tuple, list)):
        raise CheckFailure(
            f"{what} is a {type(out).__name__}; forward should return one tensor of shape "
            f"{tuple(expected.shape)} [batch inst feats]. Hint: return x' only, not the hidden "
            "activations with it."
        )
    assert_shape(out, tuple(expected.shape), what)
    check_that(out.dtype.is_floating_point, f"{what} has dtype {out.dtype}; expected a float tensor.")
    assert_float32(out, what, "the parameters and inputs are float32: don't convert anything to float64 (`.double()`).")
    values = out.detach().double()
    check_that(bool(torch.isfinite(values).all()), f"{what} contains NaN or inf values.")
    if not torch.allclose(values, expected, rtol=1e-4, atol=1e-5):
        axes = ("batch", "instance", "feature")
        for hint, variant in variants.items():
            if torch.allclose(values, variant, rtol=1e-4, atol=1e-5):
                raise CheckFailure(
                    f"{what} has the right shape but wrong values: e.g. "
                    f"{_example(values, expected, axes)}. Hint: {hint}"
                )
        if (values < -1e-6).any():
            where = _index_of(values.argmin(), values.shape)
            raise CheckFailure(
                f"{what} has negative entries (e.g. {values[where].item():.3g} at "
                f"{', '.join(f'{n} {i}' for n, i in zip(axes, where))}), but it ends in a ReLU. "
                "Hint: did you forget the final ReLU?"
            )
        zero_input = torch.relu(b).expand_as(values[0]).double()
        if not torch.allclose(values[0], zero_input, atol=1e-5):
            raise CheckFailure(
                f"{what}: for an all-zero input (batch row 0) the output should be ReLU(b_final), and it is not: "
                f"{_example(values[0], zero_input, ('instance', 'feature'))}. Hint: check how (and where) you add "
                "the bias."
            )
        isolated = x.clone()
        isolated[:, 1:] = 0.0  # features in instance 0 only: every other instance must output ReLU(b)
        alone = model(isolated).detach().double()
        others = torch.relu(b[1:]).expand_as(alone[:, 1:])
        if not torch.allclose(alone[:, 1:], others, atol=1e-5):
            k = 1 + int((alone[:, 1:] - others).abs().amax(dim=(0, 2)).argmax())
            raise CheckFailure(
                f"{what}: instances interact. With features in instance 0 only (every other instance's input all "
                f"zero), instance {k}'s output is not ReLU(b_final[{k}]). Hint: each instance must only use its own "
                "slice of the weights: keep `inst` on both sides of every einsum pattern."
            )
        _assert_close_at(
            values,
            expected,
            what,
            "compare your einsum patterns with the shapes in the docstring.",
            ("batch", "instance", "feature"),
        )
    return out


def _check_tied_model(
    Model, seed: int, *, hidden_relu: bool, variants: Callable[..., dict[str, Tensor]], what: str, forward: str
) -> None:
    """The check of ToyModel (1.1) and NeuronModel (1.6): x' = ReLU(Wᵀ act(Wx) + b), act = identity or ReLU."""
    fixture = _model_fixture(seed, n_feats=6)
    weights = _weights(fixture, separate=False)
    Wd, bd, xd = weights["W"].double(), weights["b_final"].double(), fixture["x"].double()
    Wt = Wd.transpose(1, 2)
    _assert_model_fixture(Wd, Wt, bd, xd, hidden_relu)
    model, x = _run_model(Model, fixture)
    expected = _naive_forward(Wd, Wt, bd, xd, hidden_relu=hidden_relu)
    out = _check_model_output(model, x, expected, bd, variants(Wd, Wt, bd, xd), what)
    _check_gradients(model, out, weights, x, fixture["grad_weights"], hidden_relu, what, forward)


# ---------------------------------------------------------------------------------------------------------
# 1.1 The toy model's forward pass
# ---------------------------------------------------------------------------------------------------------


def _toy_variants(Wd: Tensor, Wt: Tensor, bd: Tensor, xd: Tensor) -> dict[str, Tensor]:
    return {
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(
            Wd, Wt, 0 * bd, xd, hidden_relu=False
        ),
        "the bias seems to be added after the ReLU: it goes inside, ReLU(WᵀWx + b).": _naive_forward(
            Wd, Wt, 0 * bd, xd, hidden_relu=False
        )
        + bd,
        "this model has no ReLU on the hidden layer (that comes in exercise 1.6): h = Wx.": _naive_forward(
            Wd, Wt, bd, xd, hidden_relu=True
        ),
    } | _gelu_variants(Wd, Wt, bd, xd, hidden_relu=False)


@exercise("1.1", "The toy model's forward pass", objects=["ToyModel"])
def check_toy_model(ToyModel, *, seed: int = 0) -> None:
    """x' = ReLU(WᵀWx + b) against a loop, on weights whose columns have unequal norms and a b_final of both signs
    (the final ReLU clips some outputs, not all); then the gradient reaching W and b_final against the loop's."""
    _check_tied_model(
        ToyModel,
        seed,
        hidden_relu=False,
        variants=_toy_variants,
        what="ToyModel's output",
        forward="x' = ReLU(WᵀWx + b)",
    )


sensitivity("1.1", build=lambda seed: _model_fixture(seed, n_feats=6), output=_model_output(), tolerance=1e-3)


# ---------------------------------------------------------------------------------------------------------
# 1.2 Sparse feature batches
# ---------------------------------------------------------------------------------------------------------


@exercise("1.2", "Sparse feature batches", objects=["generate_batch"])
def check_generate_batch(generate_batch, *, seed: int = 0) -> None:
    """generate_batch(20_000, p) for a 4 × 5 table p, tested as a distribution.

    Tests (each at a false-alarm rate of at most 1e-8; 26 in all, so the false-alarm rate of the check is below
    2.6e-7): an exact binomial test of the presence count of each of the 20 (instance, feature) entries; an exact
    binomial test that the rarest entry's present values are not confined below its probability; a chi-squared
    test of the present values in 10 equal intervals of [0, 1) per entry (180 degrees of freedom); a
    Kolmogorov–Smirnov test of all present values against U[0, 1); exact binomial tests of the joint presence of
    two instances' same feature (twice) and of two features of one instance. Deterministic tests: the shape, the
    dtype, the range [0, 1), more than two distinct values, no value shared by two instances, and
    reproducibility under torch.manual_seed with a fresh batch at every call.

    Power (the probability that the check rejects the mistake, computed in tests/course/test_power_01.py), at
    least 1 − 1e-6 against each of: comparison reversed (present with probability 1 − p); one mask shared by all
    instances; one mask shared by all features; the mask's draw reused as the value (values uniform in [0, p)).
    """
    p = torch.tensor(P_BATCH)
    assert_fixture(
        p.unique().numel() >= 8 and bool(((p > 0) & (p < 1)).all()),
        "the probabilities are not varied enough to tell the entries apart",
    )
    small = _sample(generate_batch, 7, p=p, what="generate_batch")
    _check_float_batch(small, (7, 4, 5), "generate_batch(7, p) with p of shape (4, 5)")
    _global_randomness(lambda: generate_batch(5, p.clone()), "generate_batch", seed)
    n = N_SAMPLES
    x = _check_float_batch(_sample(generate_batch, n, p=p, what="generate_batch"), (n, 4, 5), f"generate_batch({n}, p)")
    _presence_tests(x, p, "generate_batch")
    _uniform_values(x, p, 0.0, 1.0, "generate_batch")
    for a, b, across in JOINT_BATCH:
        hint = (
            "each instance needs its own random mask (draw it with shape (batch, inst, feats))."
            if across == "instances"
            else "each feature needs its own random draw (draw the mask with shape (batch, inst, feats))."
        )
        _joint_independence(x, a, b, p[a].item(), p[b].item(), "generate_batch", hint)
    both = (x[:, 1, 2] != 0) & (x[:, 3, 2] != 0)
    same = (x[:, 1, 2] == x[:, 3, 2]) & both
    check_that(
        same.double().mean().item() < 0.01,
        f"generate_batch: instances 1 and 3 have exactly the same value of feature 2 in "
        f"{same.double().mean().item():.1%} "
        "of the samples (independent draws almost never coincide). Hint: draw the values with shape (batch, inst, "
        "feats), not one draw shared across instances.",
    )


# ---------------------------------------------------------------------------------------------------------
# 1.3 The importance-weighted loss
# ---------------------------------------------------------------------------------------------------------


def _loss_fixture(seed: int) -> dict[str, Tensor]:
    """Outputs, targets and importances; ``importance_w`` is named so that its trivial value is 1 (all features
    equally important hides a forgotten importance)."""
    g = _gen(seed)
    B, I, F_ = 8, 3, 5
    return {
        "output": torch.rand(B, I, F_, generator=g),
        "target": torch.rand(B, I, F_, generator=g),
        "importance_w": 0.2 + torch.rand(I, F_, generator=g),
    }


def _naive_loss(o: Tensor, t: Tensor, imp: Tensor) -> Tensor:
    B, I, F_ = o.shape
    expected = 0.0
    for k in range(I):
        per_inst = 0.0
        for beta in range(B):
            per_inst += sum(imp[k, i] * (o[beta, k, i] - t[beta, k, i]) ** 2 for i in range(F_))
        expected += per_inst / B
    return torch.as_tensor(expected, dtype=torch.float64)


@exercise("1.3", "The importance-weighted loss", objects=["importance_weighted_loss"])
def check_importance_weighted_loss(importance_weighted_loss, *, seed: int = 0) -> None:
    """The loss against a loop, on importances from 0.2 to 1.2; a 0-dimensional tensor of the inputs' dtype (float32
    and float64); the gradient that reaches `output` against the formula's, 2·I·(output − target)/B."""
    fixture = _loss_fixture(seed)
    output, target, importance = fixture["output"], fixture["target"], fixture["importance_w"]
    assert_fixture(
        importance.std().item() > 0.1 and bool((importance - 1).abs().max() > 0.1),
        "the importances are nearly all equal",
    )
    B, I, F_ = output.shape
    with unchanged_inputs("importance_weighted_loss", output=output, target=target, importance=importance):
        loss = importance_weighted_loss(output, target, importance)
    check_that(
        isinstance(loss, torch.Tensor),
        f"the loss should be a torch.Tensor, but it is a {type(loss).__name__}. "
        "Hint: keep it a tensor (no `.item()`, no Python `sum` of floats): train() calls loss.backward().",
    )
    check_that(
        loss.numel() == 1,
        f"the loss has shape {tuple(loss.shape)}; it should be a single number (a 0-dimensional tensor). "
        "Hint: reduce over every axis: mean over the batch, sum over instances and features.",
    )
    check_that(
        loss.shape == (), f"the loss has shape {tuple(loss.shape)}; return a 0-dimensional tensor (use `.sum()`)."
    )
    o, t, imp = output.double(), target.double(), importance.double()
    expected = _naive_loss(o, t, imp)
    value = loss.detach().double()
    if not torch.allclose(value, expected, rtol=1e-4):
        sq = (o - t) ** 2
        mistakes = {
            "the loss ignores `importance`: multiply each squared error by its feature's importance.": sq.mean(0).sum(),
            "it looks like a mean over instances (or features): sum over instances and features, mean only over the "
            "batch.": (imp * sq).mean(0).sum() / I,
            "it looks like a mean over features: sum over features (weighted by importance).": (imp * sq).mean(0).sum()
            / F_,
            "it looks like a mean over every axis: only the batch axis should be averaged.": (imp * sq).mean(),
            "it looks like a sum over the batch: average over the batch axis instead.": (imp * sq).sum(),
            "importance seems to be squared: multiply the *squared error* by importance, I·(x − x')², not (I·(x − "
            "x'))².": (imp**2 * sq).mean(0).sum(),
            "the error is not squared: use (output − target)².": (imp * (o - t).abs()).mean(0).sum(),
        }
        wanted, got = shown_apart(expected.item(), value.item())
        for hint, variant in mistakes.items():
            if torch.allclose(value, variant, rtol=1e-4):
                raise CheckFailure(f"the loss has the wrong value: {got} where {wanted} is expected. Hint: {hint}")
        raise CheckFailure(
            f"the loss is {got} where {wanted} is expected (off by a factor {value.item() / expected.item():.3g}). "
            "Hint: importance · (output − target)², mean over the batch, then sum over instances and features."
        )
    assert_float32(loss, "the loss", "the model's outputs are float32: don't convert to float64 (`.double()`).")
    grad_out = output.clone().requires_grad_(True)
    loss = importance_weighted_loss(grad_out, target, importance)
    assert_gradients_reach(
        loss,
        {"output": grad_out},
        "the loss",
        "train() calls loss.backward(): don't call .item() or .detach(), and don't compute it inside torch.no_grad().",
    )
    (grad,) = torch.autograd.grad(loss, [grad_out])
    want = 2 * imp * (o - t) / B
    if not torch.allclose(grad.double(), want, rtol=1e-4, atol=1e-6):
        where = _index_of((grad.double() - want).abs().argmax(), want.shape)
        wanted, got = shown_apart(want[where].item(), grad[where].item())
        raise CheckFailure(
            f"the gradient of the loss with respect to `output` is wrong, although the loss value is right: at "
            f"output{list(where)} it is {got} instead of {wanted} = 2·importance·(output − target)/batch_size. "
            "Hint: compute the loss from `output` itself, with no `.detach()` or `.data` on part of the way."
        )
    loss64 = importance_weighted_loss(o, t, imp)
    check_that(
        isinstance(loss64, torch.Tensor) and loss64.dtype == torch.float64,
        f"with float64 inputs the loss has dtype {getattr(loss64, 'dtype', type(loss64).__name__)}; it should "
        "have the inputs' dtype, float64. Hint: don't accumulate into a tensor you create yourself "
        "(torch.zeros(()), torch.tensor(0.0) are float32): reduce the inputs themselves.",
    )


sensitivity(
    "1.3",
    build=_loss_fixture,
    tolerance=1e-3,
    output=lambda objects, f: objects[0](f["output"], f["target"], f["importance_w"]),
)


# ---------------------------------------------------------------------------------------------------------
# 1.4 Feature norms and superposition
# ---------------------------------------------------------------------------------------------------------


def _naive_norms_superposition(W: Tensor) -> tuple[Tensor, Tensor]:
    n_inst, _, n_feats = W.shape
    norms = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    sup = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            norms[k, i] = w_i.norm()
            w_hat = w_i / (w_i.norm() + 1e-8)
            sup[k, i] = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats) if j != i)
    return norms, sup


def _superposition_fixture(seed: int) -> dict[str, Tensor]:
    """The feature directions, one row per feature ([inst feats hidden], named ``W_dec`` so that their trivial
    value, unit norm, is known): norms from 0.6 to 2, so that a missing normalisation shows."""
    return {"W_dec": _columns(3, 4, 7, _gen(seed)).transpose(1, 2).contiguous()}


def _superposition_W(fixture: dict[str, Tensor]) -> Tensor:
    """W [inst hidden feats] from the fixture, with feature 2 of instance 1 dropped (W_i = 0)."""
    W = fixture["W_dec"].transpose(1, 2).clone()
    W[1, :, 2] = 0.0
    return W


@exercise("1.4", "Feature norms and superposition", objects=["feature_norms_and_superposition"])
def check_feature_norms_and_superposition(feature_norms_and_superposition, *, seed: int = 0) -> None:
    """Norms and superposition against loops, on columns of unequal norms and one dropped feature; a tuple of two
    tensors of W's dtype (float32 and float64)."""
    W = _superposition_W(_superposition_fixture(seed))
    n_inst, _, n_feats = W.shape
    column_norms = W.norm(dim=1)
    kept = column_norms[column_norms > 0]
    assert_fixture(
        int((column_norms == 0).sum()) == 1 and kept.max() / kept.min() >= 1.5,
        "W should have one dropped feature and columns of unequal norms",
    )
    with unchanged_inputs("feature_norms_and_superposition", W=W):
        result = feature_norms_and_superposition(W)
    check_that(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"feature_norms_and_superposition returned a {type(result).__name__}"
        + (f" of shape {tuple(result.shape)}" if isinstance(result, Tensor) else "")
        + "; it should return a tuple (norms, superposition) of two tensors.",
    )
    norms, sup = result
    assert_shape(norms, (n_inst, n_feats), "norms")
    assert_shape(sup, (n_inst, n_feats), "superposition")
    assert_float32(norms, "norms")
    assert_float32(sup, "superposition")
    norms, sup = norms.detach().double(), sup.detach().double()
    Wd = W.double()
    exp_norms, exp_sup = _naive_norms_superposition(Wd)
    _assert_close_at(
        norms,
        exp_norms,
        "norms",
        "‖W_i‖ is the norm of column i of each instance's W, over the `hidden` axis (dim=1).",
        ("instance", "feature"),
    )
    check_that(
        bool(torch.isfinite(sup).all()),
        "superposition contains NaN or inf. Hint: a feature whose weights are all zero makes ‖W_i‖ = 0: "
        "divide by ‖W_i‖ + 1e-8.",
    )
    if not torch.allclose(sup, exp_sup, rtol=1e-4, atol=1e-5):
        dots = torch.einsum("ihf,ihg->ifg", Wd, Wd)
        n = Wd.norm(dim=1) + 1e-8
        off = ~torch.eye(n_feats, dtype=torch.bool)
        mistakes = {
            "it looks like the j = i term is included: leave it out (it is ‖W_i‖², not interference).": exp_sup
            + exp_norms**2,
            "it looks like W_i is not normalised: use Ŵ_i = W_i / ‖W_i‖ in the dot product.": (dots**2 * off).sum(-1),
            "it looks like both W_i and W_j are normalised (a cosine): only W_i is, W_j keeps its length.": (
                (dots / n[:, :, None] / n[:, None, :]) ** 2 * off
            ).sum(-1),
            "the dot products are not squared: sum (Ŵ_i · W_j)².": (dots / n[:, :, None] * off).sum(-1),
        }
        for hint, variant in mistakes.items():
            if torch.allclose(sup, variant, rtol=1e-4, atol=1e-5):
                raise CheckFailure(
                    f"superposition has the right shape but wrong values: e.g. "
                    f"{_example(sup, exp_sup, ('instance', 'feature'))}. Hint: {hint}"
                )
        if abs(sup[1, 2].item()) > 1e-5:
            raise CheckFailure(
                f"a feature whose weights are all zero should have superposition 0, not "
                f"{sup[1, 2].item():.3g}. Hint: divide by ‖W_i‖ + 1e-8, not by ‖W_i‖ clamped to some "
                "larger value."
            )
        _assert_close_at(
            sup,
            exp_sup,
            "superposition",
            "Σ over j ≠ i of (Ŵ_i · W_j)², with dot products over the `hidden` axis.",
            ("instance", "feature"),
        )
    _follows_dtype(feature_norms_and_superposition, W, "(norms, superposition)")


sensitivity(
    "1.4",
    build=_superposition_fixture,
    tolerance=1e-3,
    output=lambda objects, f: torch.stack(objects[0](_superposition_W(f))),
)


# ---------------------------------------------------------------------------------------------------------
# 1.5 Correlated and anticorrelated features
# ---------------------------------------------------------------------------------------------------------


_BROADCAST_HINT = (
    "the rates follow feature_probability indexed by *pair*, not by instance: feature_probability has "
    "shape (inst,), so compare with feature_probability[:, None] to broadcast it along the instance "
    "axis (without [:, None] it broadcasts along the last, pairs, axis)."
)


def _broadcast_over_pairs(rate: Tensor, p_inst: Tensor, n: int) -> bool:
    """Whether the presence rates match p indexed by pair (p[f // 2]) rather than by instance: a broadcasting slip."""
    n_feats = rate.shape[-1]
    if n_feats // 2 != p_inst.numel():
        return False
    return _consistent(rate, p_inst.double().repeat_interleave(2)[None, :].expand_as(rate), n)


def _correlated_diagnosis(p_inst: Tensor) -> Callable[[Tensor, Tensor, int], str | None]:
    def diagnose(rate: Tensor, p: Tensor, n: int) -> str | None:
        return _BROADCAST_HINT if _broadcast_over_pairs(rate, p_inst, n) else None

    return diagnose


def _anticorrelated_diagnosis(p_inst: Tensor) -> Callable[[Tensor, Tensor, int], str | None]:
    def diagnose(rate: Tensor, p: Tensor, n: int) -> str | None:
        if _broadcast_over_pairs(rate, p_inst, n):
            return _BROADCAST_HINT
        if _consistent(rate, p / 2, n):
            return (
                "features are present half as often as they should: is the pair active with probability p "
                "instead of 2p?"
            )
        first, second = rate[:, 0::2], rate[:, 1::2]
        pair = 2 * p[:, 0::2]
        if (_consistent(first, pair, n) and _consistent(second, 0 * pair, n)) or (
            _consistent(second, pair, n) and _consistent(first, 0 * pair, n)
        ):
            return (
                "the same feature of each pair is always the one on: the choice between the two is not a fair "
                "coin (torch.randint's upper bound is excluded: torch.randint(0, 2, ...) gives 0 or 1)."
            )
        if _consistent(first, p[:, 0::2], n) and _consistent(second, p[:, 1::2] * (1 - p[:, 1::2]), n):
            return (
                "the second feature of a pair is present less often than the first, p(1 − p) instead of p, as when "
                "both are drawn independently and the second is switched off when both are on: draw whether the "
                "pair is active (probability 2p), then which one of the two is on."
            )
        return "the pair should be active with probability 2p, and then each feature is on half of the time."

    return diagnose


def _check_pair_generator(x: Tensor, p: Tensor, what: str, diagnose) -> None:
    """What both pair generators share: marginal presence p per feature, uniform values, independence
    between pairs and between instances."""
    n_inst = p.shape[0]
    _presence_tests(x, p[:, None], what, diagnose)
    _uniform_values(x, p[:, None], 0.0, 1.0, what)
    for k in range(n_inst):  # pairs 0 and 1 of the same instance are independent
        pk = p[k].item()
        _joint_independence(
            x,
            (k, 0),
            (k, 2),
            pk,
            pk,
            what,
            "different pairs should be independent: draw one random number per pair "
            "(shape (batch, inst, n_pairs)), and remember pair k is features 2k and 2k+1.",
        )
    _joint_independence(
        x,
        (0, 0),
        (n_inst - 1, 0),
        p[0].item(),
        p[-1].item(),
        what,
        "each instance needs its own random draws (shape (batch, inst, n_pairs)).",
    )


@exercise(
    "1.5",
    "Correlated and anticorrelated features",
    objects=["generate_correlated_features", "generate_anticorrelated_features"],
)
def check_correlated_features(generate_correlated_features, generate_anticorrelated_features, *, seed: int = 0) -> None:
    """Both generators with 20_000 samples, 3 pairs and p = (0.1, 0.25, 0.4), tested as distributions.

    Tests (each at a false-alarm rate of at most 1e-8; 51 in all, so the false-alarm rate of the check is below
    5.1e-7), for each generator: an exact binomial test of the presence count of each of the 18 (instance,
    feature) entries; an exact binomial test that the rarest entry's present values are not confined below its
    probability; a chi-squared test of the present values in 10 equal intervals of [0, 1) per entry (162 degrees
    of freedom); a Kolmogorov–Smirnov test of all present values against U[0, 1); exact binomial tests of the
    joint presence of pairs 0 and 1 in each instance (3) and of the first and last instance (1); for the
    correlated one, a test that the two values of a pair are uncorrelated (normal approximation at 1e-8).
    Deterministic tests: the shape, dtype and range, that the features of a pair are present together
    (correlated) or never together (anticorrelated), distinct values, reproducibility under torch.manual_seed
    with a fresh batch at every call.

    Power (the probability that the check rejects the mistake, computed in tests/course/test_power_01.py), at
    least 1 − 1e-6 against each of: pair active with probability p instead of 2p; second feature switched off
    when both were drawn (its rate p(1 − p)); torch.randint(0, 1) for the coin (always the first feature);
    probability broadcast along the pairs (p[pair] instead of p[instance]); one mask shared by all pairs; one mask
    shared by all instances.
    """
    p = torch.tensor(P_PAIRS)
    n_pairs, n = N_PAIRS, N_SAMPLES
    assert_fixture(
        p.unique().numel() == p.numel() == n_pairs and bool((p <= 0.5).all()),
        "the per-instance probabilities should be distinct, at most 0.5, one per pair",
    )

    # correlated
    what = "generate_correlated_features"
    small = _sample(generate_correlated_features, 7, n_pairs, p=p, what=what)
    _check_float_batch(small, (7, 3, 2 * n_pairs), f"{what}(7, n_pairs=3, p) with p of shape (3,)")
    _global_randomness(lambda: generate_correlated_features(5, n_pairs, p.clone()), what, seed)
    x = _check_float_batch(_sample(generate_correlated_features, n, n_pairs, p=p, what=what), (n, 3, 2 * n_pairs), what)
    on = x != 0
    mismatch = (on[..., 0::2] != on[..., 1::2]).double().mean().item()
    check_that(
        mismatch < 1e-4,  # not exactly 0: torch.rand can return exactly 0.0 (about once in 16 million draws)
        f"{what}: in {mismatch:.1%} of the (sample, pair) cases one feature of a pair is present without the other. "
        "Hint: pair k is features 2k and 2k+1, and they share one mask entry "
        "(e.g. einops.repeat(mask, 'batch inst pairs -> batch inst (pairs two)', two=2)).",
    )
    both = on[..., 0::2] & on[..., 1::2]
    a, b = x[..., 0::2][both], x[..., 1::2][both]
    check_that(
        (a == b).double().mean().item() < 0.01,
        f"{what}: the two features of a pair have exactly the same value. "
        "Hint: the *mask* is shared within a pair, the values are drawn independently for every feature.",
    )
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    check_that(
        abs(corr) < Z / math.sqrt(a.numel()),
        f"{what}: the values of the two features of a pair are correlated (correlation {corr:.2f}). "
        "Hint: only the presence is shared; draw the values independently.",
    )
    _check_pair_generator(x, p, what, _correlated_diagnosis(p))

    # anticorrelated
    what = "generate_anticorrelated_features"
    small = _sample(generate_anticorrelated_features, 7, n_pairs, p=p, what=what)
    _check_float_batch(small, (7, 3, 2 * n_pairs), f"{what}(7, n_pairs=3, p) with p of shape (3,)")
    _global_randomness(lambda: generate_anticorrelated_features(5, n_pairs, p.clone()), what, seed)
    x = _check_float_batch(
        _sample(generate_anticorrelated_features, n, n_pairs, p=p, what=what), (n, 3, 2 * n_pairs), what
    )
    on = x != 0
    together = (on[..., 0::2] & on[..., 1::2]).double().mean().item()
    check_that(
        together == 0.0,
        f"{what}: both features of a pair are present in {together:.2%} of the (sample, pair) cases; "
        "they should never be. Hint: pair k is features 2k and 2k+1: draw whether the pair is active, "
        "then *which one* of the two is on.",
    )
    _check_pair_generator(x, p, what, _anticorrelated_diagnosis(p))


# ---------------------------------------------------------------------------------------------------------
# 1.6 Neurons: a privileged basis
# ---------------------------------------------------------------------------------------------------------


def _neuron_variants(Wd: Tensor, Wt: Tensor, bd: Tensor, xd: Tensor) -> dict[str, Tensor]:
    return {
        "the hidden layer has no ReLU: h = ReLU(Wx), then ReLU(Wᵀh + b).": _naive_forward(
            Wd, Wt, bd, xd, hidden_relu=False
        ),
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(
            Wd, Wt, 0 * bd, xd, hidden_relu=True
        ),
        "the bias seems to be added after the final ReLU: it goes inside, ReLU(Wᵀh + b).": _naive_forward(
            Wd, Wt, 0 * bd, xd, hidden_relu=True
        )
        + bd,
    } | _gelu_variants(Wd, Wt, bd, xd, hidden_relu=True)


@exercise("1.6", "Neurons: a privileged basis", objects=["NeuronModel"])
def check_neuron_model(NeuronModel, *, seed: int = 0) -> None:
    """x' = ReLU(Wᵀ ReLU(Wx) + b) against a loop, on a fixture where both ReLUs clip some entries and not others;
    then the gradient reaching W and b_final against the loop's."""
    _check_tied_model(
        NeuronModel,
        seed,
        hidden_relu=True,
        variants=_neuron_variants,
        what="NeuronModel's output",
        forward="x' = ReLU(Wᵀ ReLU(Wx) + b)",
    )


sensitivity("1.6", build=lambda seed: _model_fixture(seed, n_feats=6), output=_model_output(), tolerance=1e-3)


# ---------------------------------------------------------------------------------------------------------
# 1.7 Signed sparse inputs
# ---------------------------------------------------------------------------------------------------------


@exercise("1.7", "Signed sparse inputs", objects=["generate_signed_batch"])
def check_generate_signed_batch(generate_signed_batch, *, seed: int = 0) -> None:
    """generate_signed_batch(20_000, p) for a 3 × 4 table p, tested as a distribution.

    Tests (each at a false-alarm rate of at most 1e-8; 17 in all, so the false-alarm rate of the check is below
    1.7e-7): an exact binomial test of the presence count of each of the 12 (instance, feature) entries; an exact
    binomial test that the rarest entry's present values are not confined to the lowest part of [-1, 1); a
    chi-squared test of the present values in 10 equal intervals of [-1, 1) per entry (108 degrees of freedom); a
    Kolmogorov–Smirnov test of all present values against U[-1, 1); exact binomial tests of the joint presence of
    two features of one instance and of one feature in two instances. Deterministic tests: the shape, dtype and
    range, absent features exactly 0 (not −1), some negative values, reproducibility under torch.manual_seed with
    a fresh batch at every call.

    Power (the probability that the check rejects the mistake, computed in tests/course/test_power_01.py), at
    least 1 − 1e-6 against each of: comparison reversed (present with probability 1 − p); values uniform in
    [-0.5, 0.5) (shifted, not scaled); one mask shared by all features; one mask shared by all instances; a
    clamped Gaussian (0.5·randn clamped to ±0.999).
    """
    p = torch.tensor(P_SIGNED)
    assert_fixture(
        p.unique().numel() >= 7 and bool(((p > 0) & (p < 1)).all()),
        "the probabilities are not varied enough to tell the entries apart",
    )
    what = "generate_signed_batch"
    small = _sample(generate_signed_batch, 7, p=p, what=what)
    _check_float_batch(small, (7, 3, 4), "generate_signed_batch(7, p) with p of shape (3, 4)")
    _global_randomness(lambda: generate_signed_batch(5, p.clone()), what, seed)
    n = N_SAMPLES
    x = _check_float_batch(
        _sample(generate_signed_batch, n, p=p, what=what), (n, 3, 4), f"generate_signed_batch({n}, p)"
    )
    minus_one = (x == -1).double().mean().item()
    check_that(
        minus_one < 0.01 or (x == 0).double().mean().item() > 0.01,
        f"generate_signed_batch: {minus_one:.0%} of the entries are exactly −1. Hint: absent features must be 0; "
        "shift the uniform values to [−1, 1) *before* applying the mask, not after.",
    )
    check_that(
        (x < 0).any().item(),
        "generate_signed_batch: no value is negative; present features should be uniform in [−1, 1). "
        "Hint: 2 * torch.rand(...) - 1.",
    )
    _presence_tests(x, p, what)
    _uniform_values(x, p, -1.0, 1.0, what)
    for a, b, across in JOINT_SIGNED:
        hint = (
            "each instance needs its own random mask (shape (batch, inst, feats))."
            if across == "instances"
            else "each feature and instance needs its own random draw (shape (batch, inst, feats))."
        )
        _joint_independence(x, a, b, p[a].item(), p[b].item(), what, hint)


# ---------------------------------------------------------------------------------------------------------
# 1.8 Computing |x| in superposition
# ---------------------------------------------------------------------------------------------------------


@exercise("1.8", "A model that computes |x|", objects=["AbsModel"])
def check_abs_model(AbsModel, *, seed: int = 0) -> None:
    """y' = ReLU(W2 ReLU(W1 x) + b) against a loop, on signed inputs where both ReLUs clip some entries and not
    others; then the gradient reaching W1, W2 and b_final against the loop's."""
    fixture = _model_fixture(seed, n_feats=5, signed=True, separate=True)
    weights = _weights(fixture, separate=True)
    W1d, W2d, bd = (weights[k].double() for k in ("W1", "W2", "b_final"))
    xd = fixture["x"].double()
    _assert_model_fixture(W1d, W2d, bd, xd, hidden_relu=True)
    model, x = _run_model(AbsModel, fixture, separate=True)
    expected = _naive_forward(W1d, W2d, bd, xd, hidden_relu=True)
    variants = {
        "the second layer seems to use W1ᵀ: this model has its own output matrix W2 ([inst feats "
        "hidden]).": _naive_forward(W1d, W1d.transpose(1, 2), bd, xd, hidden_relu=True),
        "the hidden layer has no ReLU: h = ReLU(W1 x).": _naive_forward(W1d, W2d, bd, xd, hidden_relu=False),
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(
            W1d, W2d, 0 * bd, xd, hidden_relu=True
        ),
    } | _gelu_variants(W1d, W2d, bd, xd, hidden_relu=True)
    out = _check_model_output(model, x, expected, bd, variants, "AbsModel's output")
    _check_gradients(
        model, out, weights, x, fixture["grad_weights"], True, "AbsModel's output", "y' = ReLU(W2 ReLU(W1 x) + b)"
    )


sensitivity(
    "1.8",
    build=lambda seed: _model_fixture(seed, n_feats=5, signed=True, separate=True),
    output=_model_output(separate=True),
    tolerance=1e-3,
)


# ---------------------------------------------------------------------------------------------------------
# 1.9 Feature dimensionality
# ---------------------------------------------------------------------------------------------------------


def _naive_dimensionality(W: Tensor) -> Tensor:
    n_inst, _, n_feats = W.shape
    D = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            w_hat = w_i / (w_i.norm() + 1e-8)
            denom = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats))
            D[k, i] = w_i.norm() ** 2 / (denom + 1e-8)
    return D


def _dimensionality_fixture(seed: int) -> dict[str, Tensor]:
    """Known geometries, rotated, one row per feature ([inst feats hidden], named ``W_dec`` so that their trivial
    value, unit norm, is known). Instance 0 in 3D: an antipodal pair of norm 1.5 (D = 1/2 each), a feature alone of
    norm 0.8 and one of norm 1.2 (D = 1), and feature 4, dropped by :func:`_dimensionality_W`. Instance 1: a regular
    pentagon of norm 1.3 in 2D (D = 2/5 each). Instance 2: random directions with norms from 0.6 to 2."""
    g = _gen(seed)
    d, n_feats = 3, 5
    W = torch.zeros(3, d, n_feats)
    W[0, 0, 0], W[0, 0, 1], W[0, 1, 2], W[0, 2, 3] = 1.5, -1.5, 0.8, 1.2
    W[0, :, 4] = torch.tensor([0.3, 0.4, 1.1])  # a placeholder: _dimensionality_W drops this feature
    angles = 2 * math.pi * torch.arange(5) / 5
    W[1, 0], W[1, 1] = 1.3 * torch.cos(angles), 1.3 * torch.sin(angles)
    W[2] = _columns(1, d, n_feats, g)[0]
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))  # D is rotation-invariant: test that too
    return {"W_dec": torch.einsum("hk,ikf->ifh", rotation, W).contiguous()}


def _dimensionality_W(fixture: dict[str, Tensor]) -> Tensor:
    """W [inst hidden feats] from the fixture, with feature 4 of instance 0 dropped (W_i = 0)."""
    W = fixture["W_dec"].transpose(1, 2).clone()
    W[0, :, 4] = 0.0
    return W


@exercise("1.9", "Feature dimensionality", objects=["feature_dimensionality"])
def check_feature_dimensionality(feature_dimensionality, *, seed: int = 0) -> None:
    """Known geometries (a feature alone, an antipodal pair, a pentagon, a dropped feature) and a random instance
    against a loop, with feature norms far from 1; a tensor of W's dtype (float32 and float64)."""
    W = _dimensionality_W(_dimensionality_fixture(seed))
    norms = W.norm(dim=1)
    assert_fixture(
        int((norms < 1e-6).sum()) == 1 and norms[2].max() / norms[2].min() >= 1.5,
        "W should have one dropped feature, and a random instance with columns of unequal norms",
    )
    n_feats = W.shape[-1]
    with unchanged_inputs("feature_dimensionality", W=W):
        D = feature_dimensionality(W)
    assert_shape(D, (3, n_feats), "feature_dimensionality(W) for W of shape (3, 3, 5)")
    assert_float32(D, "feature_dimensionality(W)")
    D = D.detach().double()
    alone = D[0, 2].item()
    if not abs(alone - 1.0) <= 1e-3:
        hint = "D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)²."
        if not math.isfinite(alone) or alone > 1e3 or abs(alone) < 1e-3:
            hint = "did you leave out the j = i term? The sum runs over all j, including i."
        elif abs(alone - 1.0 / 0.8) < 1e-3 or abs(alone - 0.8) < 1e-3:
            hint = (
                "it looks like a power is off: the numerator is ‖W_i‖² and the dot products use Ŵ_i (normalised) "
                "and W_j."
            )
        elif abs(alone - 0.64) < 1e-3 or abs(alone - 1 / 0.64) < 1e-3:
            hint = "it looks like Ŵ_i is not normalised: Ŵ_i = W_i / ‖W_i‖."
        raise CheckFailure(
            f"a feature orthogonal to every other feature (norm 0.8) gets dimensionality {shown_apart(1.0, alone)[1]}; "
            "it "
            f"should get 1. Hint: {hint}"
        )
    check_that(
        bool(torch.isfinite(D).all()),
        "the dimensionality contains NaN or inf. Hint: a feature whose weights are all zero makes ‖W_i‖ = 0: "
        "normalise with ‖W_i‖ + 1e-8 and add 1e-8 to the denominator.",
    )
    check_that(
        abs(D[0, 4].item()) < 1e-4,
        f"a feature whose weights are all zero gets dimensionality {D[0, 4].item():.3g}; it should get 0.",
    )
    check_that(
        torch.allclose(D[0, :2], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-3),
        f"an antipodal pair of features (W_1 = −W_0, norm 1.5) should each get dimensionality 1/2, and yours get "
        f"{D[0, 0].item():.3g} and {D[0, 1].item():.3g}. Hint: the sum over j includes j = i and the antipodal "
        "partner, each contributing ‖W_i‖².",
    )
    check_that(
        torch.allclose(D[1], torch.full((5,), 0.4, dtype=torch.float64), atol=1e-3),
        f"five features arranged as a regular pentagon in 2D (norm 1.3) should each get dimensionality 2/5, and yours "
        f"get {[round(v, 3) for v in D[1].tolist()]}.",
    )
    _assert_close_at(
        D,
        _naive_dimensionality(W.double()),
        "feature_dimensionality(W)",
        "D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², dot products over the `hidden` axis, the sum including j = i.",
        ("instance", "feature"),
        rtol=1e-3,
        atol=1e-4,
    )
    _follows_dtype(feature_dimensionality, W, "the dimensionality")


sensitivity(
    "1.9", build=_dimensionality_fixture, tolerance=1e-3, output=lambda objects, f: objects[0](_dimensionality_W(f))
)
