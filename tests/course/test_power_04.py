"""Part 4's sampling check (4.3, interval samples by reservoir sampling) states its power against the mistakes it
names: recompute it.

``utils.checks.part04_latent_activations.POWER_CLAIMS["4.3"]`` holds each named mistake and the power the check claims
against it (the probability that the check rejects code that makes it); the check's docstring names the same
mistakes. The check runs the learner's ``interval_samples`` ``SAMPLING_RUNS`` times on one stream
(``SAMPLING_STREAM``) and makes an exact binomial test, at ``ALPHA``, of how often each firing token is kept. Here:

- the probability that each token is kept, under Algorithm R and under each mistake, is computed exactly by
  enumerating the reservoir's states with fractions (no closed form assumed), and compared with the closed form the
  check uses to name a cause (``reservoir_marginals``);
- the wrong implementations of ``tests/wrong/wrong_04_latent_activations.py`` are run on the design with a fixed
  seed, to show that each follows the law modelled for its mistake;
- the miss probability of each mistake is computed exactly from Binomial(SAMPLING_RUNS, p) laws: for a mistake that
  changes how often a token is kept, the probability that every test of an interval accepts is at most that of its
  least-accepting test, and intervals are sampled independently, so the miss is at most the product over intervals
  of each interval's smallest acceptance probability; for sampling with replacement, the probability that no run
  repeats a token (the check rejects any run that does);
- the claim holds if that miss probability is at most 1 − power.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.course import binomial
from tests.course.parts import instrumented
from utils.checks import part04_latent_activations as checks

stats = pytest.importorskip("scipy.stats")

ALPHA, RUNS, N = checks.ALPHA, checks.SAMPLING_RUNS, checks.SAMPLING_N_SAMPLES


def exact_binomial_accept(n: int, p0: float, p1: float, alpha: float = ALPHA) -> float:
    """P(the two-sided exact binomial test of p0 does not reject at ``alpha``) when the count is Binomial(n, p1);
    Part 4's checks reject at p < alpha (``tests/course/binomial.py``)."""
    return binomial.miss(n, p0, p1, alpha, accept_at_alpha=True)


def test_the_acceptance_region_is_the_checks() -> None:
    """The acceptance region computed here is that of utils.checks.binom_test (checked at its edges)."""
    from utils.checks import binom_test

    for p0 in (1 / 3, 2 / 3):
        p_values = binomial.exact_binomial_p_values(RUNS, p0)
        edges = np.flatnonzero(np.diff(p_values >= ALPHA))
        assert len(edges) == 2
        for e in np.concatenate([edges, edges + 1]):
            assert (binom_test(int(e), RUNS, p0) >= ALPHA) == (p_values[e] >= ALPHA)


# ---------------------------------------------------------------------------------------------------------
# Exact laws of the reservoir, by enumeration
# ---------------------------------------------------------------------------------------------------------

#: Each named mistake as the upper bound B of the uniform draw r in {0, ..., B - 1} that the m-th firing of an
#: interval makes (m > n; rank g among all firings, token index t); it replaces slot r when r < n. Probabilities
#: that are not of that form (1 / i, 0, 1) are given as a Fraction instead.
DRAWS = {
    "Algorithm R": lambda m, g, t: m,
    "an index off by one, r drawn from {0, ..., i}": lambda m, g, t: m + 1,
    "an index off by one, r drawn from {0, ..., i - 2}": lambda m, g, t: m - 1,
    "one counter shared across intervals": lambda m, g, t: g,
    "the token's position in the stream as the counter": lambda m, g, t: t + 1,
    "a probability of 1 / i instead of n_samples / i": lambda m, g, t: Fraction(1, m),
    "a bias towards the first items (the first n_samples are never replaced)": lambda m, g, t: Fraction(0),
    "a bias towards the last items (every later firing replaces one)": lambda m, g, t: Fraction(1),
}


def exact_marginals(draw) -> dict[int, Fraction]:
    """The exact probability that each firing token ends in its interval's sample: the reservoir's state (the tuple
    of kept tokens, slot by slot) enumerated with fractions, firing by firing."""
    states = [{(): Fraction(1)} for _ in range(checks.SAMPLING_N_INTERVALS)]
    seen = [0] * checks.SAMPLING_N_INTERVALS
    g = 0
    for t, j in enumerate(checks.SAMPLING_STREAM):
        if j is None:
            continue
        seen[j] += 1
        g += 1
        new: dict[tuple, Fraction] = {}
        for state, p in states[j].items():
            if len(state) < N:
                new[(*state, t)] = new.get((*state, t), 0) + p
                continue
            bound = draw(seen[j], g, t)
            if isinstance(bound, Fraction):  # replace a uniform slot with this probability
                per_slot, keep = bound / N, 1 - bound
            else:  # r uniform in {0, ..., bound - 1}; slot r replaced when r < N
                per_slot, keep = Fraction(1, bound), Fraction(max(bound - N, 0), bound)
            for slot in range(N):
                replaced = (*state[:slot], t, *state[slot + 1 :])
                new[replaced] = new.get(replaced, 0) + p * per_slot
            if keep:
                new[state] = new.get(state, 0) + p * keep
        states[j] = new
    out: dict[int, Fraction] = {}
    for law in states:
        for state, p in law.items():
            for t in state:
                out[t] = out.get(t, 0) + p
    return out


def test_the_exact_laws_match_the_checks_closed_form() -> None:
    """The enumeration gives Algorithm R's n / N, and each mistake's law equals the closed form the check names it
    by."""
    assert set(DRAWS) == set(checks.RESERVOIR_RULES)
    sizes = {j: checks.SAMPLING_STREAM.count(j) for j in range(checks.SAMPLING_N_INTERVALS)}
    for t, p in exact_marginals(DRAWS["Algorithm R"]).items():
        assert p == Fraction(min(N, sizes[checks.SAMPLING_STREAM[t]]), sizes[checks.SAMPLING_STREAM[t]])
    for name, draw in DRAWS.items():
        exact = exact_marginals(draw)
        closed = checks.reservoir_marginals(checks.RESERVOIR_RULES[name])
        assert set(exact) == set(closed)
        for t in exact:
            assert float(exact[t]) == pytest.approx(closed[t], abs=1e-12), (name, t)


def test_the_wrong_implementations_follow_the_modelled_laws() -> None:
    """Each wrong implementation of a named mistake, run 2,000 times on the design with a fixed seed, keeps each token
    as often as the law modelled for its mistake (within 5 standard errors), and the two samplers with replacement
    repeat a token in a share of runs near the modelled one."""
    from tests.wrong import wrong_04_latent_activations as wrong

    named = {
        "an index off by one, r drawn from {0, ..., i}": wrong.intervals_randint_inclusive,
        "an index off by one, r drawn from {0, ..., i - 2}": wrong.intervals_draw_before_count,
        "one counter shared across intervals": wrong.intervals_shared_counter,
        "the token's position in the stream as the counter": wrong.intervals_token_position_counter,
        "a probability of 1 / i instead of n_samples / i": wrong.intervals_one_over_i,
        "a bias towards the first items (the first n_samples are never replaced)": wrong.intervals_keep_first,
        "a bias towards the last items (every later firing replaces one)": wrong.intervals_always_replace,
    }
    assert set(named) | {"Algorithm R"} == set(checks.RESERVOIR_RULES)
    generator = torch.Generator().manual_seed(20240604)
    batches = checks._stream(checks._design_values(generator), checks.SAMPLING_BATCHES)
    runs = 2_000

    def run(sampler):
        kept, repeated = [0] * len(checks.SAMPLING_STREAM), 0
        for _ in range(runs):
            samples, _ = sampler(iter(batches), checks.SAMPLING_MAX_ACT, checks.SAMPLING_N_INTERVALS, N, generator)
            repeated += any(len(set(s)) < len(s) for s in samples)
            for s in samples:
                for t in set(s):
                    kept[t] += 1
        return kept, repeated

    for name, sampler in [("Algorithm R", None), *named.items()]:
        kept, _ = run(sampler or wrong.intervals_coin_then_slot)
        for t, p in checks.reservoir_marginals(checks.RESERVOIR_RULES[name]).items():
            assert abs(kept[t] / runs - p) <= 5 * math.sqrt(p * (1 - p) / runs) + 1e-9, (name, t, kept[t] / runs, p)
    for sampler in (wrong.intervals_reservoir_per_slot, wrong.intervals_store_all_then_draw):
        _, repeated = run(sampler)
        q = 1 - no_repeat_probability()
        assert abs(repeated / runs - q) <= 5 * math.sqrt(q * (1 - q) / runs), (sampler.__name__, repeated / runs, q)


# ---------------------------------------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------------------------------------


def no_repeat_probability() -> float:
    """The probability that a run of a sampler with replacement (n independent uniform picks per interval, as a
    single-item reservoir per slot or n torch.randint draws make) repeats no token in any interval."""
    out = 1.0
    for j in range(checks.SAMPLING_N_INTERVALS):
        size = checks.SAMPLING_STREAM.count(j)
        if size > N:
            out *= math.prod((size - k) / size for k in range(N))
    return out


def misses_part04() -> dict[str, float]:
    """The probability that 4.3's check passes code that makes each named mistake, from the check's design."""
    correct = {t: float(p) for t, p in exact_marginals(DRAWS["Algorithm R"]).items()}
    out = {}
    for name, draw in DRAWS.items():
        if name == "Algorithm R":
            continue
        mistaken = {t: float(p) for t, p in exact_marginals(draw).items()}
        miss = 1.0
        for j in range(checks.SAMPLING_N_INTERVALS):
            tokens = [t for t, c in enumerate(checks.SAMPLING_STREAM) if c == j]
            miss *= min(exact_binomial_accept(RUNS, correct[t], mistaken[t]) for t in tokens)
        out[name] = miss
    out["sampling with replacement"] = no_repeat_probability() ** RUNS
    return out


def _doc() -> str:
    from utils.checks import exercises_of

    ex = next(e for e in exercises_of("04_latent_activations") if e.id == "4.3")
    return " ".join((getattr(ex.check, "__wrapped__", ex.check).__doc__ or "").split())


def test_part04_sampling_check_has_the_power_it_states() -> None:
    """Every claim of POWER_CLAIMS["4.3"] holds (the miss probability is at most 1 − the claimed power), and every
    claimed mistake is named in the check's docstring, which states its false-alarm rate and power."""
    misses = misses_part04()
    claims = checks.POWER_CLAIMS["4.3"]
    assert set(checks.POWER_CLAIMS) == {"4.3"} and set(claims) == set(misses)
    doc = _doc()
    assert "false-alarm" in doc and "power" in doc.lower()
    for mistake, power in claims.items():
        assert mistake in doc, f"the check's docstring does not name the mistake {mistake!r}"
        assert misses[mistake] <= (1 - power) * (1 + 1e-9), (
            f"the power against {mistake!r} is {1 - misses[mistake]:.10g}, less than the {power:.10g} claimed"
        )
    number = r"(\d[0-9.e+-]*\d)"
    stated = rf"first is missed with probability {number} and every other with probability below {number}"
    first, others = (float(x) for x in re.search(stated, doc).groups())
    first_named = "an index off by one, r drawn from {0, ..., i}"
    assert misses[first_named] <= first and all(miss <= others for name, miss in misses.items() if name != first_named)


def test_part04_false_alarm_budget() -> None:
    """The check runs fewer than 1e-6 / ALPHA statistical tests, as its docstring counts them, and correct code fails
    with probability at most that count times ALPHA (each exact binomial test rejects with probability <= ALPHA)."""
    doc = _doc()
    count = int(re.search(r"; (\d+) in all", doc)[1])
    assert count == len([c for c in checks.SAMPLING_STREAM if c is not None])
    stated = float(re.search(r"false-alarm rate of the check is below (\d[0-9.e+-]*\d) per run", doc)[1])
    # the randomness contract compares two pairs of runs (other seed; same generator again): each pair of a correct
    # sampler coincides only if all 4 intervals (at least 20 firings, 3 samples) draw the same subset
    contract = float(re.search(r"the randomness contract adds less than (\d[0-9.e+-]*\d)", doc)[1])
    assert 2 * math.comb(20, 3) ** -4 <= contract
    assert count * ALPHA + contract <= stated <= 1e-6


def test_part04_sampling_check_runs_the_tests_it_counts() -> None:
    """The number of tests the docstring counts is the number of exact binomial tests the reference's run makes."""
    from utils.checks import exercises_of
    from utils.course.grading import reference_namespace

    calls = {"n": 0}
    original = checks.binom_test

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    ex = next(e for e in exercises_of("04_latent_activations") if e.id == "4.3")
    namespace = reference_namespace("04_latent_activations")
    with instrumented(checks, binom_test=counting):
        ex.check(*(namespace[name] for name in ex.objects), quiet=True)
    assert int(re.search(r"; (\d+) in all", _doc())[1]) == calls["n"]
