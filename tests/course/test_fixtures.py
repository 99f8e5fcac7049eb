"""The checks' fixtures look like trained weights and matter: every parameter with a trivial value (a LayerNorm
weight of 1, a bias of 0, a unit-norm decoder row) is non-trivial in the fixture, and setting it to that
trivial value changes the reference's output by more than the check's tolerance. A learner whose code leaves
that parameter out therefore cannot pass (see ``utils/checks/fixtures.py``)."""

from __future__ import annotations

import pytest
import torch

from tests.course.parts import PARTS, all_exercises
from utils.checks import part_module
from utils.checks.fixtures import fixture_parameters, sensitivity_specs, set_trivial, trivial_value
from utils.course.grading import reference_namespace

EXERCISES = all_exercises()
IDS = [f"{part}:{ex.slug}" for part, ex in EXERCISES]
SEEDS = (0, 1)


def _spec(part: str, exercise):
    return sensitivity_specs(part_module(part).__name__).get(exercise.id)


def _reference(part: str, exercise) -> tuple:
    namespace = reference_namespace(part)
    return tuple(namespace[name] for name in exercise.objects)


def _distance(a, b) -> float:
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_every_exercise_registers_its_fixture_or_says_why_it_has_none(part, exercise) -> None:
    module = part_module(part)
    free = getattr(module, "FIXTURE_FREE", {})
    spec = _spec(part, exercise)
    assert spec is not None or exercise.id in free, (
        f"{exercise.id}: register its fixture with utils.checks.fixtures.sensitivity(...) in {module.__name__}, "
        f"or say in FIXTURE_FREE why it has no parameters that could be trivial"
    )
    assert not (spec is not None and exercise.id in free), f"{exercise.id} is both registered and fixture-free"
    if exercise.id in free:
        assert len(free[exercise.id]) > 20, f"{exercise.id}: FIXTURE_FREE needs a reason, not {free[exercise.id]!r}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("part", "exercise"), EXERCISES, ids=IDS)
def test_every_fixture_parameter_is_nontrivial_and_matters(part, exercise, seed) -> None:
    spec = _spec(part, exercise)
    if spec is None:
        pytest.skip(f"{exercise.id} has no parameters with a trivial value (FIXTURE_FREE)")
    fixture = spec.build(seed)
    params = fixture_parameters(fixture)
    assert params, f"{exercise.id}: the registered fixture has no parameter with a trivial value"
    unknown = set(spec.exempt) - set(params)
    assert not unknown, f"{exercise.id}: exempt names {sorted(unknown)} that are not fixture parameters"
    objects = _reference(part, exercise)
    with torch.no_grad():
        base = spec.output(objects, fixture)
    for name, param in params.items():
        assert _distance(param, trivial_value(name, param)) > 1e-3, (
            f"{exercise.id}: fixture parameter {name} is trivial already (it should look trained)"
        )
        with torch.no_grad():
            moved = _distance(base, spec.output(objects, set_trivial(fixture, name)))
        if name in spec.exempt:
            assert moved <= spec.tolerance, (
                f"{exercise.id}: {name} is exempt ({spec.exempt[name]}) but setting it "
                f"trivial moves the output by {moved:.3g}"
            )
        else:
            assert moved > spec.tolerance, (
                f"{exercise.id}: setting {name} to its trivial value moves the reference's output by only {moved:.3g} "
                f"(tolerance {spec.tolerance:g}), so code that leaves {name} out would pass: make the fixture depend "
                f"on it, or exempt it with the reason"
            )


@pytest.mark.parametrize("part", PARTS)
def test_fixture_free_names_only_real_exercises(part) -> None:
    known = {ex.id for p, ex in EXERCISES if p == part}
    assert set(getattr(part_module(part), "FIXTURE_FREE", {})) <= known
    assert set(sensitivity_specs(part_module(part).__name__)) <= known
