"""Part 1's sampling checks (1.2, 1.5, 1.7) state their power against the mistakes they name: recompute it.

``utils.checks.part01_toy_models.POWER_CLAIMS`` holds, per exercise, each named mistake and the power its check
claims against it (the probability that the check rejects it); each check's docstring names the same mistakes.
Here every claim is recomputed from the check's own design (``N_SAMPLES``, the probability tables, the pairs whose
joint presence is tested, ``ALPHA``, ``BINS``), exactly where the test is an exact binomial test, and with the
noncentral chi-squared approximation for the chi-squared test of the values per (entry, interval). What is
computed is the probability that the test which targets the mistake misses it (an upper bound on the check's
miss rate, since the check runs other tests as well), and the claim holds if that is at most 1 − power.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.course import binomial
from tests.course.parts import instrumented
from utils.checks import part01_toy_models as checks

stats = pytest.importorskip("scipy.stats")

N, ALPHA, BINS = checks.N_SAMPLES, checks.ALPHA, checks.BINS


def exact_binomial_miss(n: int, p0: float, p1: float, alpha: float = ALPHA) -> float:
    """P(the two-sided exact binomial test of p0 does not reject at ``alpha``) when the count is Binomial(n, p1);
    Part 1's checks reject at p < alpha (``tests/course/binomial.py``)."""
    return binomial.miss(n, p0, p1, alpha, accept_at_alpha=True)


def test_the_exact_binomial_test_is_the_checks() -> None:
    """The rejection region computed here is the one of utils.checks.binom_test (checked at its edges)."""
    from utils.checks import binom_test

    n, p0 = 2_000, 0.3
    p_values = binomial.exact_binomial_p_values(n, p0)
    edges = np.flatnonzero(np.diff(p_values >= ALPHA))
    assert len(edges) == 2
    for e in np.concatenate([edges, edges + 1]):
        assert (binom_test(int(e), n, p0) >= ALPHA) == (p_values[e] >= ALPHA)


def chi2_cells_miss(q: np.ndarray, p_cells: list[float], n: int = N) -> float:
    """P(the chi-squared test of the present values, BINS intervals per entry, does not reject) when each entry's
    present values fall in the intervals with probabilities ``q`` (noncentral chi-squared approximation), given
    at least the 1e-12 quantile of present values in every entry (whose shortfall is added to the miss)."""
    q = np.asarray(q, dtype=float)
    assert q.shape == (BINS,) and abs(q.sum() - 1) < 1e-9
    shortfall = 0.0
    lam = 0.0
    for p in p_cells:
        m = stats.binom.ppf(1e-12, n, p)
        shortfall += stats.binom.cdf(m - 1, n, p)
        lam += m * float(((q - 1 / BINS) ** 2 * BINS).sum())
    df = len(p_cells) * (BINS - 1)
    critical = stats.chi2.isf(ALPHA, df)
    return shortfall + float(stats.ncx2.cdf(critical, df, lam))


def interval_probabilities(cdf, low: float, high: float) -> np.ndarray:
    """The probability of each of the BINS equal intervals of [low, high) under a distribution with ``cdf`` on it
    (mass outside [low, high) lumped into the end intervals, as clamping would put it)."""
    edges = np.linspace(low, high, BINS + 1)
    mass = np.diff(cdf(edges))
    mass[0] += cdf(edges[0])
    mass[-1] += 1 - cdf(edges[-1])
    return mass


def _cells(table) -> list[tuple[tuple[int, int], float]]:
    return [((k, f), p) for k, row in enumerate(table) for f, p in enumerate(row)]


def misses_part01() -> dict[str, dict[str, float]]:
    """The miss probability of each named mistake, per exercise, from the checks' designs."""
    out: dict[str, dict[str, float]] = {}

    # 1.2 generate_batch
    P = checks.P_BATCH
    cells = _cells(P)
    joint = {
        what: [(a, b) for a, b, across in checks.JOINT_BATCH if across == what] for what in ("instances", "features")
    }
    rarest = min(p for _, p in cells)
    out["1.2"] = {
        "comparison reversed": min(exact_binomial_miss(N, p, 1 - p) for _, p in cells),
        # one uniform per (batch, feature) compared with each instance's p: both present with min(pa, pb)
        "one mask shared by all instances": min(
            exact_binomial_miss(N, P[a[0]][a[1]] * P[b[0]][b[1]], min(P[a[0]][a[1]], P[b[0]][b[1]]))
            for a, b in joint["instances"]
        ),
        "one mask shared by all features": min(
            exact_binomial_miss(N, P[a[0]][a[1]] * P[b[0]][b[1]], min(P[a[0]][a[1]], P[b[0]][b[1]]))
            for a, b in joint["features"]
        ),
        # all m present values of the rarest entry lie below its p: the test rejects once m >= 100 (the check's
        # minimum) since p^m < ALPHA; it misses only if fewer than 100 are present
        "the mask's draw reused as the value": float(stats.binom.cdf(99, N, rarest)) if rarest**100 < ALPHA else 1.0,
    }

    # 1.5 the pair generators (p per instance; feature 2k and 2k+1 form pair k)
    p = checks.P_PAIRS
    n_pairs = checks.N_PAIRS
    feats = range(2 * n_pairs)
    out["1.5"] = {
        "pair active with probability p instead of 2p": min(exact_binomial_miss(N, q, q / 2) for q in p),
        "second feature switched off when both were drawn": min(exact_binomial_miss(N, q, q * (1 - q)) for q in p),
        "torch.randint(0, 1) for the coin": min(exact_binomial_miss(N, q, 2 * q) for q in p),
        "probability broadcast along the pairs": min(
            exact_binomial_miss(N, p[k], p[f // 2]) for k in range(len(p)) for f in feats
        ),
        # pairs 0 and 1 of instance k share one mask: together with probability p instead of p²
        "one mask shared by all pairs": min(exact_binomial_miss(N, q * q, q) for q in p),
        # instance 0 and the last share one uniform: together with min(p0, p_last) instead of p0·p_last
        "one mask shared by all instances": exact_binomial_miss(N, p[0] * p[-1], min(p[0], p[-1])),
    }

    # 1.7 generate_signed_batch
    P = checks.P_SIGNED
    cells = _cells(P)
    joint = {
        what: [(a, b) for a, b, across in checks.JOINT_SIGNED if across == what] for what in ("instances", "features")
    }
    p_cells = [q for _, q in cells]
    half_width = interval_probabilities(lambda v: np.clip(v + 0.5, 0, 1), -1.0, 1.0)
    clamped = interval_probabilities(
        lambda v: (
            stats.norm.cdf(np.clip(v, -0.999, 0.999) / 0.5) * (v >= -0.999)
            + (v >= 0.999) * (1 - stats.norm.cdf(0.999 / 0.5))
        ),
        -1.0,
        1.0,
    )
    out["1.7"] = {
        "comparison reversed": min(exact_binomial_miss(N, q, 1 - q) for q in p_cells),
        "values uniform in [-0.5, 0.5)": chi2_cells_miss(half_width, p_cells),
        "one mask shared by all features": min(
            exact_binomial_miss(N, P[a[0]][a[1]] * P[b[0]][b[1]], min(P[a[0]][a[1]], P[b[0]][b[1]]))
            for a, b in joint["features"]
        ),
        "one mask shared by all instances": min(
            exact_binomial_miss(N, P[a[0]][a[1]] * P[b[0]][b[1]], min(P[a[0]][a[1]], P[b[0]][b[1]]))
            for a, b in joint["instances"]
        ),
        "a clamped Gaussian": chi2_cells_miss(clamped, p_cells),
    }
    return out


def test_the_clamped_gaussian_law_is_a_distribution() -> None:
    """The interval probabilities used for the clamped Gaussian: 0.5·randn clamped to ±0.999, atoms in the end
    intervals."""
    rng = np.random.default_rng(0)
    draws = np.clip(0.5 * rng.standard_normal(1_000_000), -0.999, 0.999)
    counts = np.histogram(draws, bins=np.linspace(-1, 1, BINS + 1))[0] / draws.size
    expected = interval_probabilities(
        lambda v: (
            stats.norm.cdf(np.clip(v, -0.999, 0.999) / 0.5) * (v >= -0.999)
            + (v >= 0.999) * (1 - stats.norm.cdf(0.999 / 0.5))
        ),
        -1.0,
        1.0,
    )
    assert np.allclose(counts, expected, atol=3e-3)


def test_part01_sampling_checks_have_the_power_they_state() -> None:
    """Every claim of POWER_CLAIMS holds (the miss probability is at most 1 − the claimed power), every claimed mistake
    is named in its check's docstring, and each check's docstring states a false-alarm rate of at most 1e-6."""
    from utils.checks import exercises_of

    misses = misses_part01()
    docs = {ex.id: (getattr(ex.check, "__wrapped__", ex.check).__doc__ or "") for ex in exercises_of("01_toy_models")}
    assert set(checks.POWER_CLAIMS) == set(misses) == {"1.2", "1.5", "1.7"}
    for ex_id, claims in checks.POWER_CLAIMS.items():
        assert set(claims) == set(misses[ex_id]), f"{ex_id}: claims and computations name different mistakes"
        doc = " ".join(docs[ex_id].split())
        assert "false-alarm" in doc and "power" in doc.lower(), ex_id
        for mistake, power in claims.items():
            assert mistake in doc, f"{ex_id}: the check's docstring does not name the mistake {mistake!r}"
            miss = misses[ex_id][mistake]
            assert miss <= (1 - power) * (1 + 1e-9), (
                f"{ex_id}: the power against {mistake!r} is {1 - miss:.10g}, less than the {power:.10g} claimed"
            )


def test_part01_false_alarm_budgets() -> None:
    """Each sampling check runs fewer than 1e-6 / ALPHA statistical tests, as its docstring counts them."""
    import re

    from utils.checks import exercises_of

    for ex in exercises_of("01_toy_models"):
        if ex.id not in checks.POWER_CLAIMS:
            continue
        doc = " ".join((getattr(ex.check, "__wrapped__", ex.check).__doc__ or "").split())
        count = int(re.search(r"; (\d+) in all", doc)[1])
        assert count * ALPHA <= 1e-6, ex.id
        stated = float(re.search(r"false-alarm rate of the check is below ([0-9.e-]+)", doc)[1])
        assert stated >= count * ALPHA * (1 - 1e-9) and stated <= 1e-6, ex.id


def test_part01_sampling_checks_run_the_tests_they_count() -> None:
    """The number of statistical tests a check's docstring counts is the number the reference's run makes (the
    exact binomial, chi-squared and Kolmogorov–Smirnov tests, plus 1.5's one correlation test, which uses Z)."""
    import re

    from utils.checks import exercises_of
    from utils.course.grading import reference_namespace

    calls = {"n": 0}

    def counting(function):
        def run(*args, **kwargs):
            calls["n"] += 1
            return function(*args, **kwargs)

        return run

    namespace = reference_namespace("01_toy_models")
    extra = {"1.5": 1}
    counted = {name: counting(getattr(checks, name)) for name in ("binom_test", "chi2_sf", "ks_test")}
    for ex in exercises_of("01_toy_models"):
        if ex.id not in checks.POWER_CLAIMS:
            continue
        calls["n"] = 0
        with instrumented(checks, **counted):
            ex.check(*(namespace[name] for name in ex.objects), quiet=True)
        doc = " ".join((getattr(ex.check, "__wrapped__", ex.check).__doc__ or "").split())
        assert int(re.search(r"; (\d+) in all", doc)[1]) == calls["n"] + extra.get(ex.id, 0), ex.id
