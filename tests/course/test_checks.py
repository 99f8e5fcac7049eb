"""Every check passes on the reference, and fails on the untouched stub and on every wrong implementation."""

from __future__ import annotations

import re

import pytest

from tests.course.parts import PARTS, all_exercises, as_tuple, wrong_module
from tests.wrong import CLASSES
from utils.checks import CheckFailure, NotAttempted
from utils.course.grading import reference_namespace, stub_namespace

EXERCISES = all_exercises()
IDS = [f"{part}:{ex.slug}" for part, ex in EXERCISES]
SEEDS = [0, 1, 2]


def objects(namespace: dict, exercise) -> tuple:
    return tuple(namespace[name] for name in exercise.objects)


def test_every_part_has_exercises() -> None:
    assert PARTS, "no master files found in solutions/"
    for part in PARTS:
        assert any(p == part for p, _ in EXERCISES), f"{part} registers no exercises"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_reference_passes(part, exercise, seed) -> None:
    exercise.check(*objects(reference_namespace(part), exercise), seed=seed, quiet=True)


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_stub_is_not_attempted(part, exercise) -> None:
    with pytest.raises(NotAttempted, match="not attempted yet"):
        exercise.check(*objects(stub_namespace(part), exercise), quiet=True)


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_each_wrong_implementation_fails(part, exercise) -> None:
    wrongs = wrong_module(part).WRONG.get(exercise.id, [])
    assert len(wrongs) >= 2, f"exercise {exercise.id} needs at least two wrong implementations, has {len(wrongs)}"
    for entry in wrongs:
        label = ", ".join(getattr(o, "__name__", repr(o)) for o in as_tuple(entry))
        with pytest.raises(CheckFailure) as failure:
            exercise.check(*as_tuple(entry), quiet=True)
        assert not isinstance(failure.value, NotAttempted), f"{label} was reported as not attempted"
        message = str(failure.value)
        assert len(message) > len(f"Exercise {exercise.id} () failed: ") + 20, (
            f"{label}: message too terse: {message!r}"
        )
        marked = [o for o in as_tuple(entry) if hasattr(o, "expected_message")]
        assert marked, f"{label}: mark the wrong object with @mistake(regex) (tests/wrong/__init__.py)"
        for wrong in marked:
            assert (wrong.__doc__ or "").strip(), f"{wrong.__name__}: its docstring should state the mistake it models"
            assert re.search(wrong.expected_message, message), (
                f"{wrong.__name__} ({wrong.__doc__.strip().splitlines()[0]}) failed for another reason than its own "
                f"mistake: {message!r} does not match {wrong.expected_message!r}"
            )


@pytest.mark.parametrize("part", PARTS)
def test_wrong_modules_name_only_real_exercises(part) -> None:
    known = {ex.id for p, ex in EXERCISES if p == part}
    module = wrong_module(part)
    for table in ("WRONG", "CORRECT", "APPLIES", "SINGLE_FORM"):
        assert set(getattr(module, table, {})) <= known, f"{module.__name__}.{table} names unknown exercises"


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_each_class_of_mistake_that_applies_is_covered(part, exercise) -> None:
    """``APPLIES[id]``: the blind-spot classes (tests/wrong/__init__.py) that apply to the exercise; each needs a
    wrong implementation of its own (whose message test above shows the check names it)."""
    module = wrong_module(part)
    applies = getattr(module, "APPLIES", {}).get(exercise.id)
    assert applies, f"{module.__name__}.APPLIES should say which classes of mistakes apply to {exercise.id}"
    assert set(applies) <= set(CLASSES), f"unknown classes {set(applies) - set(CLASSES)}"
    kinds = {getattr(o, "mistake_kind", None) for entry in module.WRONG.get(exercise.id, []) for o in as_tuple(entry)}
    missing = set(applies) - kinds
    assert not missing, (
        f"{exercise.id}: no wrong implementation of class {sorted(missing)} ({[CLASSES[k] for k in sorted(missing)]})"
    )


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_correct_alternatives_pass(part, exercise) -> None:
    """Correct code in another style passes, for several seeds; two per exercise, or SINGLE_FORM says why not."""
    module = wrong_module(part)
    alternatives = getattr(module, "CORRECT", {}).get(exercise.id, [])
    single = getattr(module, "SINGLE_FORM", {}).get(exercise.id)
    assert len(alternatives) >= 2 or (single and len(alternatives) >= 1) or (single and len(single) > 20), (
        f"{exercise.id}: give two correct alternatives in {module.__name__}.CORRECT, or say in SINGLE_FORM why the "
        f"exercise admits fewer"
    )
    for entry in alternatives:
        objs = as_tuple(entry)
        label = ", ".join(getattr(o, "__name__", repr(o)) for o in objs)
        assert any(getattr(o, "is_correct_alternative", False) for o in objs), f"{label}: mark it with @correct"
        for seed in SEEDS:
            try:
                exercise.check(*objs, seed=seed, quiet=True)
            except CheckFailure as failure:
                pytest.fail(f"the correct alternative {label} was rejected (seed {seed}): {failure}")


def test_the_checks_statistical_tests_agree_with_scipy() -> None:
    """utils.checks' torch versions of the chi-squared, KS and binomial tests (scipy.stats is too slow to import inside
    a check)."""
    import torch

    from utils.checks import binom_test, chi2_sf, chi2_test, ks_test

    stats = pytest.importorskip("scipy.stats")
    for statistic, df in [(3.0, 4), (10.0, 12), (60.0, 20), (90.0, 18), (200.0, 20)]:
        assert chi2_sf(statistic, df) == pytest.approx(stats.chi2.sf(statistic, df), rel=1e-6, abs=1e-300)
    for observed, expected in [([10, 12, 9, 30], None), ([950, 1040, 3010, 1000], [1000, 1000, 3000, 1000])]:
        want = stats.chisquare(observed, expected).pvalue
        got = chi2_test(torch.tensor(observed), None if expected is None else torch.tensor(expected))
        assert got == pytest.approx(want, rel=1e-6, abs=1e-300)
    generator = torch.Generator().manual_seed(0)
    for n, warp in [(500, 1.0), (5_000, 1.05), (30_000, 0.97), (100_000, 1.0)]:
        values = torch.rand(n, generator=generator, dtype=torch.float64) ** warp
        d, p = ks_test(values, lambda v: v)
        expected = stats.kstest(values.numpy(), "uniform")
        assert d == pytest.approx(expected.statistic, rel=1e-9)
        assert p == pytest.approx(expected.pvalue, rel=0.05, abs=1e-3)  # Kolmogorov's limit law, corrected
    for hits, n, prob in [
        (500, 1000, 0.5),
        (530, 1000, 0.5),
        (272, 1000, 0.5),
        (250, 1000, 0.25),
        (9, 40, 0.1),
        (0, 30, 0.2),
        (1000, 1000, 0.5),
    ]:
        assert binom_test(hits, n, prob) == pytest.approx(stats.binomtest(hits, n, prob).pvalue, rel=1e-6, abs=1e-300)


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_sampling_checks_state_their_power(part, exercise) -> None:
    """A check of a sampling exercise says, in its docstring, the false-alarm rate of its tests and their power
    against each named mistake, computed (a script or a course test recomputes it), not guessed."""
    if "sampling" not in getattr(wrong_module(part), "APPLIES", {}).get(exercise.id, ()):
        pytest.skip("not a sampling exercise")
    doc = (getattr(exercise.check, "__wrapped__", exercise.check).__doc__ or "").lower()
    assert "power" in doc and "false-alarm" in doc, (
        f"{exercise.id}: the check's docstring should state its false-alarm rate and its power against each "
        f"mistake it names"
    )
