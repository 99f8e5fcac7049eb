"""The exact binomial test the checks use (``utils.checks.binom_test``), as the power tests compute it: every
count's p-value at once, the counts a check accepts, and the chance that it accepts a wrong answer.

The checks differ in one boundary, on purpose: Parts 1 and 4 reject at ``p < ALPHA`` (a p-value of exactly
ALPHA passes), Part 3 at ``p <= ALPHA``; ``accept_at_alpha`` says which. Each power test module checks, at the
edges of the region, that it computes what its checks do. Needs scipy (the power tests import it or skip)."""

from __future__ import annotations

import numpy as np


def exact_binomial_p_values(n: int, p0: float) -> np.ndarray:
    """The two-sided p-value of each count k = 0..n under Binomial(n, p0), as ``binom_test`` computes it: the
    probability of every outcome no more likely than k (with scipy's relative tolerance of 1e-7)."""
    from scipy import stats

    k = np.arange(n + 1)
    pmf0 = stats.binom.pmf(k, n, p0)
    ordered = np.sort(pmf0)
    cumulative = np.cumsum(ordered)
    at_most = np.searchsorted(ordered, pmf0 * (1 + 1e-7), side="right")
    return np.where(at_most > 0, cumulative[np.maximum(at_most - 1, 0)], 0.0)


def accepted(n: int, p0: float, alpha: float, *, accept_at_alpha: bool) -> np.ndarray:
    """The counts k in 0..n that the test of p0 accepts at ``alpha``."""
    p_values = exact_binomial_p_values(n, p0)
    return np.flatnonzero(p_values >= alpha if accept_at_alpha else p_values > alpha)


def miss(n: int, p0: float, p1: float, alpha: float, *, accept_at_alpha: bool) -> float:
    """P(the test of p0 accepts) when the count is in truth Binomial(n, p1): the chance a wrong answer passes."""
    from scipy import stats

    return float(stats.binom.pmf(accepted(n, p0, alpha, accept_at_alpha=accept_at_alpha), n, p1).sum())
