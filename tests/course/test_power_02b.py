"""Part 2b's sampling check (2.6, the activation store's shuffle) states its false-alarm rate and its power against
the mistakes it names: recompute them.

``utils.checks.part02b_sae_gelu_1l.POWER_CLAIMS["2.6"]`` holds each named mistake and the power claimed against it
(the probability that the check rejects it); the check's docstring names the same mistakes. The design
(``MIX_ROWS``, ``MIX_BATCH``, ``MIX_REFILLS``, ``MIX_CELLS``, ``MIX_ALPHA``) is read from the check module. What is
computed for each mistake is the probability that the test which targets it misses it (an upper bound on the check's
miss rate, since the check runs its other tests as well), exactly: the mistakes either make a count deterministic
(the mixing test's p-value of every count they can produce is computed) or are caught unless an event of known
probability happens (256 draws with replacement all distinct).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from utils.checks import part02b_sae_gelu_1l as checks

stats = pytest.importorskip("scipy.stats")

N, B, R, C, ALPHA = checks.MIX_ROWS, checks.MIX_BATCH, checks.MIX_REFILLS, checks.MIX_CELLS, checks.MIX_ALPHA
BATCHES = checks.MIX_BATCHES
CELL = N // C
TESTS = BATCHES * C  # the mixing test's exact tests, one per (batch after a refill, cell)
ALPHA_CELL = ALPHA / TESTS
CLAIMS = checks.POWER_CLAIMS["2.6"]


def null_pmf() -> np.ndarray:
    """One cell's count under a uniform shuffle, from scipy: the sum of R independent Hypergeometric(N, N/C, B)."""
    one = stats.hypergeom.pmf(np.arange(B + 1), N, CELL, B)
    total = one
    for _ in range(R - 1):
        total = np.convolve(total, one)
    return total


def largest_p_value(counts) -> float:
    """The largest of the mixing test's exact p-values over the given counts of one cell."""
    pmf = checks.mixing_null_pmf()
    return max(checks.exact_p_value(pmf, int(k)) for k in counts)


def test_the_design_is_the_one_the_docstring_states() -> None:
    doc = " ".join(checks.check_activation_store.__doc__.split())
    assert (N, B, R, C, BATCHES) == (256, 32, 24, 4, 4) and ALPHA == 1e-6
    for mistake in CLAIMS:
        assert mistake in doc, f"the check's docstring should name the mistake {mistake!r}"
    assert "false-alarm" in doc and "power" in doc.lower()


def test_the_checks_null_distribution_is_scipys() -> None:
    ours = checks.mixing_null_pmf().numpy()
    theirs = null_pmf()
    assert ours.shape == theirs.shape
    assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-300)
    assert abs(ours.sum() - 1) < 1e-9


def test_the_mixing_test_false_alarm_rate() -> None:
    """Under a uniform shuffle each exact test rejects with probability at most ALPHA / 16 (its rejection region's
    null probability, computed), so the 16 reject together with probability at most ALPHA (Bonferroni)."""
    pmf = checks.mixing_null_pmf()
    rejected = [k for k in range(len(pmf)) if checks.exact_p_value(pmf, k) < ALPHA_CELL]
    size = float(pmf[rejected].sum())
    assert size <= ALPHA_CELL
    assert TESTS * size <= ALPHA
    # the structure tests (a)-(c): one refill's 128 served rows are a given set with probability 1 / C(256, 128)
    assert R / math.comb(N, N // 2) < 1e-73


def test_power_against_only_the_fresh_activations_shuffled() -> None:
    """After each of the R - 1 partial refills, the served rows are fresh ones: the cells of the rows kept (cells
    3 and 4) get nothing from them, so their count is the constructor's share alone, 0 to B."""
    miss = 0.0 if largest_p_value(range(B + 1)) < ALPHA_CELL else 1.0  # every count it can produce is rejected
    assert 1 - miss >= CLAIMS["only the fresh activations shuffled"]


def test_power_against_the_rows_kept_served_first() -> None:
    """After each partial refill, the served rows are the rows kept: the fresh cells (1 and 2) get the
    constructor's share alone."""
    miss = 0.0 if largest_p_value(range(B + 1)) < ALPHA_CELL else 1.0
    assert 1 - miss >= CLAIMS["the rows kept served first, the fresh ones after"]


def test_power_against_the_fresh_activations_served_in_the_order_harvested() -> None:
    """Batch 1 after each partial refill is fresh activations 0 to 31, all in cell 1: its count is at least
    (R - 1) * B, where the null expects R * B / C."""
    miss = 0.0 if largest_p_value(range((R - 1) * B, R * B + 1)) < ALPHA_CELL else 1.0
    assert 1 - miss >= CLAIMS["the fresh activations served in the order harvested"]


def test_power_against_a_shuffle_drawn_with_replacement() -> None:
    """The content test sees a row twice in the store after the constructor's refill unless N draws with
    replacement from N rows are all distinct: probability N! / N^N."""
    miss = math.exp(math.lgamma(N + 1) - N * math.log(N))
    assert miss < 1e-109
    assert 1 - miss >= CLAIMS["the shuffle drawn with replacement"]


def test_power_against_deterministic_mistakes() -> None:
    """A served row left in the store, an unserved row overwritten, or a shuffle restarted at every refill: the
    content test compares the store's rows with those it must hold, and the randomness contract compares two
    results, without randomness in the decision: whatever the shuffle draws, the mistake shows."""
    for mistake in (
        "one served row left in the store (an index off by one)",
        "one unserved row overwritten (an index off by one)",
        "the shuffle restarted at every refill",
    ):
        assert CLAIMS[mistake] == 1.0


@pytest.mark.parametrize(
    "name",
    [
        "StoreShufflesOnlyFresh",
        "StoreServesKeptFirst",
        "StoreNeverReshuffles",
        "StoreShufflesWithReplacement",
        "StoreRefillsOneShort",
        "StoreReseedsEveryRefill",
    ],
)
def test_the_named_mistakes_are_rejected_for_every_seed_tried(name) -> None:
    """The claims, run: the wrong implementations in tests/wrong fail for 5 seeds (a simulation with fixed seeds)."""
    from tests.wrong import wrong_02b_sae_gelu_1l as wrong
    from utils.checks import CheckFailure

    store = getattr(wrong, name)
    for seed in range(5):
        with pytest.raises(CheckFailure, match=re.compile(store.expected_message)):
            checks.check_activation_store(store, seed=seed, quiet=True)
