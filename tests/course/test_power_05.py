"""Part 5's sampling check (5.3, random directions) states its false-alarm rate and its power against the mistakes
it names: recompute them.

The check runs a Kolmogorov–Smirnov test of each of the 3 coordinates of ``N_DIRECTIONS`` directions in 3
dimensions against the uniform distribution on [-1, 1] (Archimedes: the marginal of a uniform direction on the
sphere in 3 dimensions), and rejects when the p-value of :func:`utils.checks.ks_test` is at most ``KS_ALPHA``.
That is a rejection when the KS distance D reaches a critical distance c, computed here from ks_test's own formula.

- **False alarm**: P(D ≥ c) under the uniform, from scipy's exact distribution of D (``kstwo``), per test; three
  tests per run.
- **Power**: if a mistake's coordinate has a distribution G at KS distance Δ from the uniform, the test accepts
  only if the sample's distance from G is at least Δ − c, which by the Dvoretzky–Kiefer–Wolfowitz inequality (with
  Massart's constant) has probability at most 2 exp(−2 n (Δ − c)²). Δ is exact for the positive orthant (every
  coordinate of torch.rand is ≥ 0, so G(0) = 0 where the uniform has 1/2) and for a repeated direction (the sample
  is one value v: D = max(F(v), 1 − F(v)) ≥ 1/2, whatever v); for the normalised cube it is estimated from 4
  million points with a fixed seed, less the DKW margin of that estimate at probability 1e-9.
"""

from __future__ import annotations

import math

import pytest
import torch

from utils.checks import ks_test
from utils.checks import part05_latent_effects as checks

stats = pytest.importorskip("scipy.stats")

N, ALPHA = checks.N_DIRECTIONS, checks.KS_ALPHA
CLAIMS = checks.POWER_CLAIMS["5.3"]


def ks_p_value(distance: float, n: int) -> float:
    """The p-value :func:`utils.checks.ks_test` gives a KS distance over n samples (Stephens' corrected limit law)."""
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * distance
    if lam < 0.2:
        return 1.0
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(max(p, 0.0), 1.0)


def critical_distance(n: int = N, alpha: float = ALPHA) -> float:
    """The smallest KS distance whose p-value is at most alpha (the p-value decreases with the distance)."""
    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (low, middle) if ks_p_value(middle, n) <= alpha else (middle, high)
    return high


def dkw_miss(delta: float, c: float, n: int = N) -> float:
    """An upper bound on P(the test accepts) for a distribution at KS distance delta from the uniform."""
    assert delta > c, f"the mistake (KS distance {delta:.4f}) is within the test's critical distance {c:.4f}"
    return min(1.0, 2 * math.exp(-2 * n * (delta - c) ** 2))


def cube_distance(points: int = 4_000_000, confidence: float = 1e-9) -> float:
    """A lower bound on the KS distance between the uniform on [-1, 1] and a coordinate of points uniform in the
    cube [-1, 1]^3, normalised: the distance of 4 million such coordinates, less the DKW margin of the estimate."""
    generator = torch.Generator().manual_seed(0)
    cube = torch.rand(points, 3, generator=generator, dtype=torch.float64) * 2 - 1
    coordinate = (cube[:, 0] / cube.norm(dim=1)).sort().values
    i = torch.arange(1, points + 1, dtype=torch.float64)
    uniform = (coordinate + 1) / 2
    estimate = float(torch.maximum(i / points - uniform, uniform - (i - 1) / points).max())
    return estimate - math.sqrt(math.log(2 / confidence) / (2 * points))


def test_part05_random_directions_power_and_false_alarm() -> None:
    c = critical_distance()
    # the critical distance is ks_test's: just below it the test accepts, at it the test rejects
    values = torch.linspace(-1, 1, N, dtype=torch.float64)
    for d, rejected in ((c * 0.99, False), (c * 1.01, True)):
        shifted = (values + 2 * d).clamp(-1, 1)  # a shift by 2d moves the uniform CDF by about d
        distance, p = ks_test(shifted, lambda v: (v + 1) / 2)
        assert p == pytest.approx(ks_p_value(distance, N), rel=1e-9, abs=1e-300)
        assert (p <= ALPHA) == rejected == (distance >= c), (d, distance, p)
    # false alarm: the exact distribution of D under the uniform, three tests per run
    per_test = float(stats.kstwo.sf(c, N))
    assert per_test <= 1.2 * ALPHA, f"one KS test's false-alarm rate is {per_test:.2e}, not at most {ALPHA:g}"
    assert checks.D_SPHERE * per_test <= 1e-6
    # power against each named mistake
    deltas = {
        "points of the cube [-1, 1]^d normalised": cube_distance(),
        "points of the cube [0, 1)^d normalised (torch.rand)": 0.5,
        "one direction repeated n times": 0.5,
    }
    assert set(deltas) == set(CLAIMS)
    for mistake, delta in deltas.items():
        miss = dkw_miss(delta, c)
        assert 1 - miss >= CLAIMS[mistake], f"{mistake}: power {1 - miss} < claimed {CLAIMS[mistake]}"
    # the docstring's numbers are these
    doc = " ".join(checks.check_random_directions.__doc__.split())
    cube = deltas["points of the cube [-1, 1]^d normalised"]
    assert f"c = {c:.4f}" in doc and f"Δ ≥ {math.floor(cube * 1e4) / 1e4:.4f}" in doc
    assert per_test <= 1.01e-7 * 1.005 and 3 * per_test <= 3.1e-7  # "1.01e-7 per test", "at most 3.1e-7 per run"
    assert dkw_miss(cube, c) <= 2e-10  # "miss ≤ 2e-10"


def test_part05_named_mistakes_are_rejected_in_simulation() -> None:
    """The three named mistakes, drawn as the check draws them (seed 0): every coordinate's p-value is far below
    the test's level."""
    generator = torch.Generator().manual_seed(0)
    samples = {
        "cube": torch.rand(N, 3, generator=generator, dtype=torch.float64) * 2 - 1,
        "orthant": torch.rand(N, 3, generator=generator, dtype=torch.float64),
        "repeated": torch.randn(1, 3, generator=generator, dtype=torch.float64).expand(N, 3),
    }
    for name, sample in samples.items():
        directions = sample / sample.norm(dim=-1, keepdim=True)
        for axis in range(3):
            _, p = ks_test(directions[:, axis], lambda v: (v + 1) / 2)
            assert p < ALPHA * 1e-10, (name, axis, p)
