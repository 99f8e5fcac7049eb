"""The mutation tool (tests/course/mutation.py): it finds the mutants it promises, and the checks keep killing them.

The full run (`python -m tests.course.mutation`) takes about a minute on 2 cores; here a fixed sample of
mutants of a few exercises is run, so that a check weakened later (or a new survivor) fails this test."""

from __future__ import annotations

from tests.course import mutation
from tests.course.parts import PARTS

SNIPPET = '''\
def f(x: Tensor, g: torch.Generator, n: int) -> Tensor:
    """Doc."""
    # BEGIN SOLUTION
    y = torch.rand(n, generator=g) < 0.5
    z = (x - 1.0).sum(dim=-1) * y
    out = F.relu(z.abs())
    self_state.count += 1
    return out
    # END SOLUTION
'''


def snippet_cell() -> mutation.SolutionCell:
    return mutation.SolutionCell("00_snippet", 0, SNIPPET, 1, [(4, 8, "0.1")])


def test_every_operator_family_is_generated() -> None:
    mutants = mutation.mutants_of(snippet_cell())
    operators = {m.operator for m in mutants}
    expected = {
        "Lt → LtE",
        "Lt → Gt",
        "Sub → Add",
        "Mult → Div",
        "drop right operand",
        "drop left operand",
        "constant × 2",
        "constant / 2",
        "constant + 1",
        "constant - 1",
        ".sum → .mean",
        "drop relu()",
        "drop .abs()",
        ".relu → .gelu",
        "global RNG (generator= dropped)",
        "in-place op on an input",
        "drop statement",
        "detach the result",
        "result in float64",
        "run inside torch.no_grad()",
    }
    assert expected <= operators, f"missing: {expected - operators}"
    assert all(m.exercise == "0.1" and m.id.startswith("0.1:m") for m in mutants)
    assert len({m.id for m in mutants}) == len(mutants), "mutant ids must be unique"
    assert all(m.code != mutation.ast.unparse(mutation.ast.parse(SNIPPET)) for m in mutants)


def test_only_solution_lines_are_mutated() -> None:
    assert all(4 <= m.line <= 8 for m in mutation.mutants_of(snippet_cell()))


def test_ids_are_stable_when_other_lines_change() -> None:
    before = {m.id for m in mutation.mutants_of(snippet_cell())}
    shifted = "import math\n\n\n" + SNIPPET
    after = {m.id for m in mutation.mutants_of(mutation.SolutionCell("00_snippet", 0, shifted, 1, [(7, 11, "0.1")]))}
    assert before == after


def test_every_part_has_solution_blocks_attributed_to_its_exercises() -> None:
    from utils.checks import exercises_of

    for part in PARTS:
        attributed = {ex for cell in mutation.solution_cells(part) for *_, ex in cell.blocks}
        assert attributed == {e.id for e in exercises_of(part)}, part


def test_a_real_mutant_is_killed_and_the_reference_survives() -> None:
    part = "01_toy_models"
    mutants = [m for m in mutation.part_mutants(part) if m.exercise == "1.2"]
    flipped = next(m for m in mutants if m.operator == "Lt → Gt")
    outcome, detail = mutation.run_mutant(flipped)
    assert outcome == mutation.KILLED and "1.2" in detail


def test_the_checks_kill_a_fixed_sample_of_every_exercises_mutants() -> None:
    """The regression guard: at most 6 mutants per exercise (the same ones every run); any unexplained survivor fails.

    The full run is `python -m tests.course.mutation` (CI runs it); declare equivalents in
    tests/wrong/wrong_NN_name.py."""
    reports, problems = mutation.mutation_report(PARTS, fast=True, sample=6, timeout=30)
    assert all(row.generated for rows in reports.values() for row in rows), "an exercise has no mutants"
    assert not problems, "\n".join(problems) + "\n" + mutation.format_report(reports)
