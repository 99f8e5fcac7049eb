"""Part 3's sampling checks (3.4, 3.5, 3.6) state their power against the mistakes they name: recompute it.

``utils.checks.part03_dead_latents.POWER_CLAIMS`` holds, per exercise, each named mistake and the power its check
claims against it (the probability that the check rejects it); each check's docstring names the same mistakes.
Here every claim is recomputed from the check's own design (the module's constants and ``ALPHA``): exactly where
the test is an exact binomial test (the probability that the count falls in the test's acceptance region under
the mistake's law), and by a deterministic argument where the mistake makes the test reject whatever is drawn (a
count of 0 where hundreds are expected, a Kolmogorov–Smirnov distance of at least 0.5). What is computed is the
probability that the one test which targets the mistake misses it, an upper bound on the check's miss rate.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from tests.course import binomial
from utils.checks import binom_test, ks_test
from utils.checks import part03_dead_latents as checks

stats = pytest.importorskip("scipy.stats")

ALPHA = checks.ALPHA


def acceptance(n: int, p0: float) -> np.ndarray:
    """The counts k in 0..n that the check's exact binomial test of p0 accepts: Part 3's checks reject at
    p <= ALPHA (``tests/course/binomial.py``)."""
    return binomial.accepted(n, p0, ALPHA, accept_at_alpha=False)


def binomial_miss(n: int, p0: float, p1: float) -> float:
    """P(the exact binomial test of p0 accepts) when the count is Binomial(n, p1)."""
    return binomial.miss(n, p0, p1, ALPHA, accept_at_alpha=False)


def claim(exercise: str, mistake: str) -> float:
    return checks.POWER_CLAIMS[exercise][mistake]


def test_the_acceptance_region_is_the_checks() -> None:
    """The acceptance region computed here is utils.checks.binom_test's (checked at its edges)."""
    pooled = checks.CELL_CALLS * checks.CELL_DRAWS
    designs = [(checks.TWO_LEVEL_DRAWS, 0.5), (checks.CELL_CALLS, 16 / 30), (pooled, 1 / 30)]
    for n, p0 in designs:
        accepted = acceptance(n, p0)
        low, high = int(accepted.min()), int(accepted.max())
        assert np.array_equal(accepted, np.arange(low, high + 1)), "the acceptance region is an interval"
        for k, inside in [(low, True), (high, True), (low - 1, False), (high + 1, False)]:
            if 0 <= k <= n:
                assert (binom_test(k, n, p0) > ALPHA) == inside, (n, p0, k)


def test_every_claim_is_named_in_its_checks_docstring() -> None:
    from utils.checks import exercises_of

    docs = {
        ex.id: " ".join((getattr(ex.check, "__wrapped__", ex.check).__doc__ or "").split())
        for ex in exercises_of("03_dead_latents")
    }
    for exercise, claims in checks.POWER_CLAIMS.items():
        for mistake in claims:
            assert mistake in docs[exercise], f"{exercise}: the docstring does not name {mistake!r}"


# ---------------------------------------------------------------------------------------------------------
# 3.4: Kolmogorov–Smirnov tests of each coordinate of the new directions
# ---------------------------------------------------------------------------------------------------------


def ks_critical_distance(n: int) -> float:
    """The smallest KS distance the check rejects at ALPHA with n values (its p-value decreases with the distance)."""
    uniform = torch.linspace(-1, 1, n, dtype=torch.float64)
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * mid
        p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101)) if lam >= 0.2 else 1.0
        low, high = (mid, high) if p > ALPHA else (low, mid)
    assert ks_test(uniform, lambda v: (v + 1) / 2)[1] > ALPHA  # evenly spread values pass
    return high


def test_power_3_4_resample_simple() -> None:
    """Coordinates all positive: the empirical CDF is 0 at 0 where the uniform one is 0.5, so the KS distance is at
    least 0.5. One direction for all: the empirical CDF jumps from 0 to 1 at c, where the uniform one is (c + 1) / 2,
    so the distance is at least 0.5 too. Both are rejected with certainty if 0.5 is beyond the critical distance."""
    n = checks.SIMPLE_DEAD
    critical = ks_critical_distance(n)
    assert critical < 0.5, critical
    positive = torch.linspace(1e-6, 1, n, dtype=torch.float64)  # the positive sample closest to uniform
    assert ks_test(positive, lambda v: (v + 1) / 2)[1] <= ALPHA
    for c in (-0.999, 0.0, 0.999):
        assert ks_test(torch.full((n,), c, dtype=torch.float64), lambda v: (v + 1) / 2)[1] <= ALPHA
    assert claim("3.4", "coordinates drawn positive (torch.rand)") <= 1.0
    assert claim("3.4", "one direction shared by all dead latents") <= 1.0


# ---------------------------------------------------------------------------------------------------------
# 3.5: sample_by_squared_loss
# ---------------------------------------------------------------------------------------------------------


def cell_probabilities() -> np.ndarray:
    losses = np.array(checks.CELL_LOSSES)
    return losses**2 / (losses**2).sum()


def test_power_3_5_sample_by_squared_loss() -> None:
    p = cell_probabilities()
    pooled_n = checks.CELL_CALLS * checks.CELL_DRAWS
    # False alarm of the with-replacement test (not a p-value test): fewer than REPLACE_MIN of REPLACE_DRAWS draws on
    # the heavy index
    heavy = checks.HEAVY_LOSS**2 / (checks.HEAVY_LOSS**2 + checks.REPLACE_POOL - 1)
    assert stats.binom.cdf(checks.REPLACE_MIN - 1, checks.REPLACE_DRAWS, heavy) < 1e-40
    # Without replacement: the heavy index is drawn once at most
    assert checks.REPLACE_MIN > 1 and claim("3.5", "sampling without replacement") <= 1.0
    # By the loss: the two-level test, P(loss 3) 0.25 instead of 0.5
    miss = binomial_miss(checks.TWO_LEVEL_DRAWS, 0.5, 0.25)
    assert miss <= 1 - claim("3.5", "weights by the loss, not its square"), miss
    # A softmax of the losses: the pooled test of each index (the check fails if any index fails)
    losses = np.array(checks.CELL_LOSSES)
    softmax = np.exp(losses) / np.exp(losses).sum()
    miss = min(binomial_miss(pooled_n, p[i], softmax[i]) for i in range(len(p)))
    assert miss <= 1 - claim("3.5", "softmax of the losses"), miss
    # Off by one: the last index comes out as len(losses) (+1), the first as -1 (-1); out of range whenever drawn
    assert (1 - p[-1]) ** pooled_n <= 1 - claim("3.5", "index off by one (+1)")
    assert (1 - p[0]) ** pooled_n <= 1 - claim("3.5", "index off by one (-1)")
    # First or last item never drawn: a pooled count of 0
    assert binom_test(0, pooled_n, float(p[0])) <= ALPHA and claim("3.5", "first item never drawn") <= 1.0
    assert binom_test(0, pooled_n, float(p[-1])) <= ALPHA and claim("3.5", "last item never drawn") <= 1.0
    # The worst input always drawn first: the cell (position 0, the largest loss) counts every call
    worst = int(np.argmax(p))
    assert binom_test(checks.CELL_CALLS, checks.CELL_CALLS, float(p[worst])) <= ALPHA
    assert claim("3.5", "the worst input always drawn first") <= 1.0
    # Sorted draws: position 0 holds the smallest of CELL_DRAWS indices, index 0 with probability 1 - (1 - p0)^6
    first_is_zero = 1 - (1 - p[0]) ** checks.CELL_DRAWS
    miss = binomial_miss(checks.CELL_CALLS, p[0], first_is_zero)
    assert miss <= 1 - claim("3.5", "draws sorted within a call"), miss
    # Fewer than 100 tests at ALPHA each: a false alarm below 1e-6
    assert (len(p) + checks.CELL_DRAWS * len(p) + 1) * ALPHA < 1e-6


# ---------------------------------------------------------------------------------------------------------
# 3.6: resample_anthropic
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_3_6_fixture_keeps_the_laws_apart(seed) -> None:
    """The fixture the claims rest on, for ten seeds: P(loss 3) is 0.5 to 1e-3, a loss that ignores the
    reconstruction picks a loss-3 input at most IGNORES_RECONSTRUCTION_MAX of the time, and one whose encoder input is
    centred twice at most CENTRED_TWICE_MAX (the check asserts all three on its fixture)."""
    fx = checks._anthropic_fixture(seed, 20, checks.ANTHROPIC_DEAD, checks._POOL_LAW)
    checks._assert_anthropic_fixture(fx, [1.0, 3.0])
    hard = fx["group"] == 1
    weights = checks._ref_losses(fx["sae"], fx["pool"]).pow(2)
    assert abs(float(weights[hard].sum() / weights.sum()) - 0.5) < 1e-3
    laws = checks._wrong_laws(fx["sae"], fx["pool"], hard)
    assert laws["ignores"] <= checks.IGNORES_RECONSTRUCTION_MAX and laws["twice"] <= checks.CENTRED_TWICE_MAX, laws


def test_power_3_6_resample_anthropic() -> None:
    n = checks.ANTHROPIC_DEAD
    centres = (0.499, 0.5, 0.501)  # the check tests the P(loss 3) it computes, within 1e-3 of 0.5
    miss = max(binomial_miss(n, p0, 0.25) for p0 in centres)
    assert miss <= 1 - claim("3.6", "weights by the loss, not its square"), miss
    # Ignoring the reconstruction: P(loss 3) at most the bound; the miss grows with P, so the bound is the worst case
    bound = checks.IGNORES_RECONSTRUCTION_MAX
    misses = [max(binomial_miss(n, p0, p1) for p0 in centres) for p1 in np.linspace(0.0, bound, 11)]
    assert misses == sorted(misses)
    assert misses[-1] <= 1 - claim("3.6", "a loss that ignores the reconstruction (||x - b_dec||^2)"), misses[-1]
    # b_dec subtracted twice in the loss: P(loss 3) at most CENTRED_TWICE_MAX (asserted), the worst case again
    misses = [max(binomial_miss(n, p0, p1) for p0 in centres) for p1 in np.linspace(0.0, checks.CENTRED_TWICE_MAX, 21)]
    assert misses == sorted(misses)
    assert misses[-1] <= 1 - claim("3.6", "b_dec subtracted twice in the loss (sae.encode(x - b_dec))"), misses[-1]
    # One input for every dead latent: a count of 0 or n, and fewer than two distinct inputs
    assert all(binom_test(k, n, p0) <= ALPHA for k in (0, n) for p0 in centres)
    assert claim("3.6", "one input for every dead latent") <= 1.0
    # Without replacement: the heavy input goes to one dead latent at most, and at least 10 of 20 are required;
    # a correct answer gets fewer than 10 with probability below 1e-30
    loss_weight = 400.0**2 / (400.0**2 + 49)
    assert stats.binom.cdf(9, 20, loss_weight) < 1e-30
    assert claim("3.6", "sampling without replacement") <= 1.0
    # 11 exact binomial tests at ALPHA: a false alarm below 1e-6
    assert 11 * ALPHA < 1e-6


def test_claims_are_probabilities() -> None:
    for claims in checks.POWER_CLAIMS.values():
        for mistake, power in claims.items():
            assert 0.5 < power <= 1.0, mistake
            assert re.search(r"\w", mistake)
