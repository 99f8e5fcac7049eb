"""Mutation testing of every exercise: mutate the reference solution, run the exercise's check, count kills.

A check is only as good as the mistakes it catches. This tool takes each exercise cell of a part's master
(``solutions/NN_name.py``), makes small changes (mutants) to the lines between ``# BEGIN SOLUTION`` and
``# END SOLUTION``, executes each mutated cell in a copy of the reference namespace (what the master's
setup and exercise cells define, :func:`utils.course.grading.reference_namespace`), and runs the exercise's check
on the mutated objects. A mutant is *killed* when the check fails (or the mutated code crashes or times
out), and *survives* when the check passes. A new exercise gets its mutants by being added to a master:
there is nothing to write per exercise.

Usage (from the repository root, with ``PYTHONPATH=$PWD``)::

    python -m tests.course.mutation                      # every part
    python -m tests.course.mutation 01 02a               # parts by name or prefix
    python -m tests.course.mutation 02b --exercise 2.6   # one exercise (repeat --exercise for more)
    python -m tests.course.mutation 01 --fast            # a fixed sample of at most 12 mutants per exercise
                                                         # (then only unexplained survivors fail the run)
    python -m tests.course.mutation 01 --list            # only list the mutants, run nothing
    python -m tests.course.mutation 01 --show 1.2:m3fa2c1  # print one mutant's mutated cell

It prints, per exercise, the mutants generated, killed, survived, declared equivalent and the percentage
killed of the non-equivalent ones, then every survivor with its stable id, its line in the master and the
change. It exits with 1 if any survivor is unexplained or any exercise is below 95% killed.

Mutation operators: comparison swaps (``<`` ↔ ``<=``, ``<`` ↔ ``>``, ``==`` ↔ ``!=``), arithmetic swaps
(``+`` ↔ ``-``, ``*`` ↔ ``/``, ``**`` → ``*``, ``@`` → ``*``), a term dropped (``a + b`` → ``a`` or ``b``),
a unary operator dropped (``-x``, ``~m``, ``not c``), ``and`` ↔ ``or``, constants changed (n → n ± 1,
x → 2x, x/2, True ↔ False), reductions swapped (``sum`` ↔ ``mean``, ``max`` ↔ ``min``, ``dim`` through the
constants, einops' ``"mean"`` ↔ ``"sum"``), ``relu`` ↔ ``gelu``, ``float`` → ``double``, a call dropped
(``f(x)`` → ``x``, ``x.m()`` → ``x``), a statement dropped (a call, an augmented or attribute/item
assignment), the returned value detached or turned to float64, the solution run inside
``torch.no_grad()``, ``generator=`` dropped (the global RNG instead of the one handed in), ``dtype=``
dropped, and an arithmetic operation on a tensor argument done in place (``x - y`` → ``x.sub_(y)``).
Four more model the blind spots of a check with a too-clean or too-kind fixture: a LayerNorm call dropped
(``ln_final(x)`` → ``x``, ``layer_norm(x, ...)`` → ``x``), an index shifted by one (``x[i]`` → ``x[i ± 1]``, and
the bounds of ``randint``/``randperm`` calls ± 1: Algorithm R's classic slips), a generator that restarts at
every call (``generator=g`` → ``generator=torch.Generator().manual_seed(g.initial_seed())``), and a second
centring (``x - c`` → ``x - c - c``, e.g. ``b_dec`` subtracted twice).

Ids are stable: ``<exercise>:m<6 hex digits>``, a hash of the exercise, the operator, the original source
line and the change, so editing other lines does not renumber the survivors you have declared.

Declaring survivors (in the part's ``tests/wrong/wrong_NN_name.py``, next to its wrong answers)::

    EQUIVALENT = {"2.6:m3fa2c1": "why it behaves identically on every input the exercise admits"}
    SURVIVORS = {"2.6:m0b9e44": "not equivalent, but why the check does not (and need not) catch it"}

``EQUIVALENT`` mutants are left out of the percentage; ``SURVIVORS`` count as survivors but are explained.
First try to kill a survivor by strengthening the check (``utils/checks/partNN_name.py``); declare it only
when it is truly equivalent (or, rarely, not worth a check, said why). An entry whose mutant is killed or no
longer generated is reported as stale (not an error in ``--fast`` runs).

Tools tried first: mutmut and cosmic-ray both mutate importable modules and run a test command per
mutant; the reference solutions live in cells of jupytext masters that are executed with ``exec`` by the
grader, and only the lines inside ``# BEGIN SOLUTION`` blocks should be mutated. Reaching those would
have meant exporting every cell to a module and rebuilding the reference namespace (seconds per part,
model loading for Part 2b) for every mutant, so a small AST mutator that runs in-process was kept.

Each mutant runs under a time limit (``--timeout``, default 10 s) in a pool of worker processes (one per
core, at most ``--jobs``); workers are forked after the reference namespaces are built, so each part is
built once.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import importlib
import io
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from utils.course.grading import defined_names

#: Every exercise must kill at least this share of its non-equivalent mutants.
TARGET = 0.95
#: ``--fast`` runs at most this many mutants per exercise (a fixed sample: the smallest ids).
FAST_SAMPLE = 12

KILLED, SURVIVED, TIMEOUT, INVALID = "killed", "survived", "timeout", "invalid"


# ---------------------------------------------------------------------------------------------------------
# Finding the solution blocks of a part's exercise cells
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SolutionCell:
    """An exercise cell of a master: its source (markers kept), its solution lines and their exercises."""

    part: str
    index: int  # position among the master's cells
    source: str
    first_line: int  # the master line of the cell's first source line
    blocks: list[tuple[int, int, str]]  # (first, last) cell-relative lines of each solution block, its exercise id

    def exercise_of_line(self, lineno: int) -> str | None:
        for first, last, ex_id in self.blocks:
            if first <= lineno <= last:
                return ex_id
        return None


_EXERCISE_COMMENT = re.compile(r"#.*\bexercise\s+(\d+\.\d+)", re.IGNORECASE)


def solution_cells(part: str) -> list[SolutionCell]:
    """The exercise cells of ``part``'s master, each solution block attributed to one exercise.

    A block belongs to the exercise whose objects its cell defines; when one cell holds several exercises
    (Part 2a's ``SAE`` class), to the last ``exercise N.M`` named in a comment above the block.
    """
    from utils.checks import exercises_of
    from utils.course.build_notebooks import MARKER, Part, read_master, tags

    master = read_master(Part(part))
    text = Part(part).master.read_text(encoding="utf-8")
    exercises = exercises_of(part)
    cells: list[SolutionCell] = []
    for i, cell in enumerate(master.cells):
        if cell.cell_type != "code" or "exercise" not in tags(cell):
            continue
        source = cell.source
        offset = text.find(source)
        first_line = text.count("\n", 0, offset) + 1 if offset >= 0 else 1
        defined = defined_names(ast.parse(source))
        candidates = [e.id for e in exercises if set(e.objects) & defined]
        lines = source.splitlines()
        blocks: list[tuple[int, int, str]] = []
        begin = None
        for n, line in enumerate(lines, start=1):
            match = MARKER.match(line)
            if match and match["kind"] == "BEGIN":
                begin = n
            elif match and match["kind"] == "END" and begin is not None:
                named = [m[1] for l in lines[:begin] if (m := _EXERCISE_COMMENT.search(l)) and m[1] in candidates]
                if named:
                    ex_id = named[-1]
                elif len(candidates) == 1:
                    ex_id = candidates[0]
                else:
                    raise ValueError(
                        f"{part}, master line {first_line + begin - 1}: a solution block whose exercise is unclear "
                        f"(the cell defines objects of {candidates or 'no exercise'}); name it in a comment above "
                        "the block, e.g. `# ----- exercise 2.1 -----`."
                    )
                blocks.append((begin + 1, n - 1, ex_id))
                begin = None
        if blocks:
            cells.append(SolutionCell(part, i, source, first_line, blocks))
    return cells


# ---------------------------------------------------------------------------------------------------------
# The AST mutator
# ---------------------------------------------------------------------------------------------------------

_BINOP_SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Div],
    ast.Div: [ast.Mult, ast.FloorDiv],
    ast.FloorDiv: [ast.Div],
    ast.Pow: [ast.Mult],
    ast.MatMult: [ast.Mult],
    ast.Mod: [ast.FloorDiv],
}
_CMP_SWAPS: dict[type, list[type]] = {
    ast.Lt: [ast.LtE, ast.Gt],
    ast.LtE: [ast.Lt, ast.GtE],
    ast.Gt: [ast.GtE, ast.Lt],
    ast.GtE: [ast.Gt, ast.LtE],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
}
_INPLACE = {ast.Add: "add_", ast.Sub: "sub_", ast.Mult: "mul_", ast.Div: "div_", ast.Pow: "pow_"}
#: Method or function names swapped for another one (reductions, activations, dtypes).
_RENAMES: dict[str, list[str]] = {
    "sum": ["mean"],
    "mean": ["sum"],
    "max": ["min"],
    "min": ["max"],
    "amax": ["amin"],
    "amin": ["amax"],
    "argmax": ["argmin"],
    "argmin": ["argmax"],
    "relu": ["gelu"],
    "gelu": ["relu"],
    "float": ["double"],
    "float32": ["float64"],
    "log_softmax": ["softmax"],
    "softmax": ["log_softmax"],
    "all": ["any"],
    "any": ["all"],
    "zeros_like": ["ones_like"],
    "ones_like": ["zeros_like"],
    "exp": ["log"],
    "log": ["exp"],
}
_REDUCTION_STRINGS = {"mean": ["sum"], "sum": ["mean"], "max": ["min"], "min": ["max"]}
#: Calls that can be dropped, ``f(x)`` → ``x`` (functions of one tensor that keep its shape).
_DROPPABLE_FUNCTIONS = {
    "relu",
    "gelu",
    "abs",
    "exp",
    "log",
    "sqrt",
    "sigmoid",
    "tanh",
    "contiguous",
    "clone",
    "detach",
    "float",
    "log_softmax",
    "softmax",
}
#: Calls of a LayerNorm (a module of TransformerLens's, or torch's functional form): ``ln(x, ...)`` → ``x``.
_LAYERNORM = re.compile(r"^(ln\w*|layer_norm|LayerNorm\w*)$")
#: Random-index calls whose bounds an off-by-one mistake shifts.
_RANDOM_INDEX = {"randint", "randperm", "arange"}


def _is_tuple_or_slice(index: ast.AST) -> bool:
    return isinstance(index, (ast.Tuple, ast.Slice))


def _src(node: ast.AST) -> str:
    """A node's source on one line, shortened to at most 90 characters."""
    lines = ast.unparse(ast.fix_missing_locations(node)).splitlines() or [""]
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return text if len(text) <= 90 else text[:87] + "..."


def _name_of(func: ast.AST) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _method(receiver: ast.expr, name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=receiver, attr=name, ctx=ast.Load()), args=list(args), keywords=[])


@dataclass
class Mutation:
    """One change at one place: found while walking the tree, applied on a copy of it."""

    operator: str
    lineno: int  # cell-relative
    before: str
    after: str


class _Mutator(ast.NodeTransformer):
    """Walk a cell's tree; offer every mutation inside the solution lines; apply the ``target``-th one.

    Children are visited before their parent, and the offers do not depend on whether one was applied, so
    the k-th offer is the same mutation in the listing pass (``target=None``) and in the applying pass.
    """

    def __init__(self, lines: set[int], target: int | None):
        self.lines, self.target = lines, target
        self.found: list[Mutation] = []
        self.applied: Mutation | None = None
        self._params: list[set[str]] = []  # the tensor-annotated parameters of each enclosing function

    # -- bookkeeping
    def _inside(self, node: ast.AST) -> bool:
        start = getattr(node, "lineno", None)
        end = getattr(node, "end_lineno", start)
        return start is not None and start in self.lines and end in self.lines

    def _offer(
        self, node: ast.AST, operator: str, make: Callable[[], Any], after: Callable[[Any], str] | None = None
    ) -> Any:
        """Record a mutation of ``node``; build and return its replacement if it is the target, else None."""
        k = len(self.found)
        new = make() if k == self.target else None
        if isinstance(new, ast.AST):
            ast.fix_missing_locations(ast.copy_location(new, node))
        mutation = Mutation(operator, node.lineno, _src(node), "")
        self.found.append(mutation)
        if new is not None:
            if isinstance(new, list):
                mutation.after = "; ".join(_src(n) for n in new) if new else "pass"
            else:
                mutation.after = (after or _src)(new)
            self.applied = mutation
            return new
        return None

    # -- expressions
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node):
            return node
        result: ast.AST | None = None
        for swap in _BINOP_SWAPS.get(type(node.op), []):
            result = result or self._offer(
                node,
                f"{type(node.op).__name__} → {swap.__name__}",
                lambda s=swap: ast.BinOp(node.left, s(), node.right),
            )
        result = result or self._offer(node, "drop right operand", lambda: node.left)
        result = result or self._offer(node, "drop left operand", lambda: node.right)
        if isinstance(node.op, ast.Sub) and isinstance(node.right, (ast.Name, ast.Attribute, ast.Call)):
            result = result or self._offer(
                node,
                "a second centring",
                lambda: ast.BinOp(ast.BinOp(node.left, ast.Sub(), node.right), ast.Sub(), copy.deepcopy(node.right)),
            )
        params = self._params[-1] if self._params else set()
        if type(node.op) in _INPLACE and isinstance(node.left, ast.Name) and node.left.id in params:
            result = result or self._offer(
                node,
                "in-place op on an input",
                lambda: _method(ast.Name(node.left.id, ast.Load()), _INPLACE[type(node.op)], node.right),
            )
        return result or node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node):
            return node
        for k, op in enumerate(node.ops):
            for swap in _CMP_SWAPS.get(type(op), []):

                def make(k=k, swap=swap):
                    ops = list(node.ops)
                    ops[k] = swap()
                    return ast.Compare(node.left, ops, node.comparators)

                new = self._offer(node, f"{type(op).__name__} → {swap.__name__}", make)
                if new is not None:
                    return new
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node):
            return node
        swap = ast.Or if isinstance(node.op, ast.And) else ast.And
        new = self._offer(node, f"{type(node.op).__name__} → {swap.__name__}", lambda: ast.BoolOp(swap(), node.values))
        for k in range(len(node.values)):
            new = new or self._offer(
                node,
                "drop a condition",
                lambda k=k: (
                    node.values[1 - k]
                    if len(node.values) == 2
                    else ast.BoolOp(node.op, node.values[:k] + node.values[k + 1 :])
                ),
            )
        return new or node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node) or isinstance(node.op, ast.UAdd):
            return node
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return node  # a negative literal: the constant mutations cover it
        return self._offer(node, f"drop {type(node.op).__name__}", lambda: node.operand) or node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if not self._inside(node):
            return node
        value = node.value
        changes: list[tuple[str, Any]] = []
        if isinstance(value, bool):
            changes = [("flip bool", not value)]
        elif isinstance(value, int):
            changes = [("constant + 1", value + 1), ("constant - 1", value - 1)]
            if value not in (0, 1, 2):
                changes.append(("constant × 2", value * 2))
        elif isinstance(value, float):
            changes = [("constant × 2", value * 2), ("constant / 2", value / 2)] if value else [("constant → 1", 1.0)]
            if value in (0.5, 1.0, 2.0):
                changes.append(("constant + 1", value + 1))
        elif isinstance(value, str) and value in _REDUCTION_STRINGS:
            changes = [(f"reduction {value!r} → {s!r}", s) for s in _REDUCTION_STRINGS[value]]
        for operator, new_value in changes:
            new = self._offer(node, operator, lambda v=new_value: ast.Constant(v))
            if new is not None:
                return new
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node) or not isinstance(node.ctx, ast.Load):
            return node
        index = node.slice
        if isinstance(index, (ast.Name, ast.BinOp, ast.Call)) and not _is_tuple_or_slice(index):
            for label, op in (("index + 1", ast.Add), ("index - 1", ast.Sub)):
                new = self._offer(
                    node,
                    label,
                    lambda op=op: ast.Subscript(node.value, ast.BinOp(index, op(), ast.Constant(1)), ast.Load()),
                )
                if new is not None:
                    return new
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node) or not isinstance(node.ctx, ast.Load):
            return node
        for name in _RENAMES.get(node.attr, []):
            new = self._offer(node, f".{node.attr} → .{name}", lambda n=name: ast.Attribute(node.value, n, ast.Load()))
            if new is not None:
                return new
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node):
            return node
        name = _name_of(node.func)
        new = None
        if name in _DROPPABLE_FUNCTIONS and len(node.args) == 1 and not node.keywords:
            new = self._offer(node, f"drop {name}()", lambda: node.args[0])
        elif name and _LAYERNORM.match(name) and node.args:
            new = self._offer(node, f"drop the LayerNorm {name}()", lambda: node.args[0])
        if name in _RANDOM_INDEX:
            for k, arg in enumerate(node.args):
                if isinstance(arg, ast.Constant):
                    continue  # the constant mutations cover literal bounds
                for label, op in (("bound + 1", ast.Add), ("bound - 1", ast.Sub)):

                    def make(k=k, op=op):
                        args = list(node.args)
                        args[k] = ast.BinOp(args[k], op(), ast.Constant(1))
                        return ast.Call(node.func, args, node.keywords)

                    new = new or self._offer(node, f"{name} {label}", make)
        elif isinstance(node.func, ast.Attribute) and not node.args and not node.keywords:
            new = self._offer(node, f"drop .{name}()", lambda: node.func.value)
        for k, keyword in enumerate(node.keywords):
            if keyword.arg == "generator" and not isinstance(keyword.value, ast.Constant):

                def restart(k=k, keyword=keyword):
                    fresh = ast.parse(
                        f"torch.Generator().manual_seed(({ast.unparse(keyword.value)}).initial_seed())", mode="eval"
                    ).body
                    keywords = list(node.keywords)
                    keywords[k] = ast.keyword("generator", fresh)
                    return ast.Call(node.func, node.args, keywords)

                new = new or self._offer(node, "a fresh generator per call", restart)
            if keyword.arg in ("generator", "dtype", "keepdim", "device"):
                label = "global RNG (generator= dropped)" if keyword.arg == "generator" else f"{keyword.arg}= dropped"
                new = new or self._offer(
                    node, label, lambda k=k: ast.Call(node.func, node.args, node.keywords[:k] + node.keywords[k + 1 :])
                )
        return new or node

    # -- statements
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        params = set()
        for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
            if arg.annotation is not None and "Tensor" in ast.unparse(arg.annotation):
                params.add(arg.arg)
        self._params.append(params)
        self.generic_visit(node)
        self._params.pop()
        inside = [k for k, stmt in enumerate(node.body) if self._inside(stmt)]
        if inside:
            a, b = inside[0], inside[-1] + 1

            def make():
                body = copy.copy(node)
                no_grad = ast.With(
                    items=[ast.withitem(ast.parse("torch.no_grad()", mode="eval").body)], body=node.body[a:b]
                )
                ast.fix_missing_locations(ast.copy_location(no_grad, node.body[a]))
                body.body = node.body[:a] + [no_grad] + node.body[b:]
                return body

            where = node.body[a]
            new = self._offer(
                where, "run inside torch.no_grad()", make, after=lambda n: f"with torch.no_grad(): ({node.name})"
            )
            if new is not None:
                return new
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node) or node.value is None or isinstance(node.value, (ast.Dict, ast.Constant)):
            return node
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        for k, value in enumerate(values):
            for operator, method in (("detach the result", "detach"), ("result in float64", "double")):

                def make(k=k, method=method, value=value):
                    wrapped = list(values)
                    wrapped[k] = _method(value, method)
                    return ast.Return(
                        ast.Tuple(wrapped, ast.Load()) if isinstance(node.value, ast.Tuple) else wrapped[0]
                    )

                new = self._offer(node, operator, make)
                if new is not None:
                    return new
        return node

    def _drop_statement(self, node: ast.stmt) -> ast.AST:
        self.generic_visit(node)
        if not self._inside(node):
            return node
        return self._offer(node, "drop statement", lambda: ast.Pass(), after=lambda n: "pass") or node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant):  # a docstring
            return node
        return self._drop_statement(node)

    visit_AugAssign = _drop_statement

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if all(isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets):
            self.generic_visit(node)
            return node
        return self._drop_statement(node)


@dataclass
class Mutant:
    """One mutated exercise cell."""

    id: str  # "1.2:m3fa2c1"
    exercise: str
    part: str
    cell: int  # position among the master's cells
    line: int  # master line
    operator: str
    original: str  # the master's line, stripped
    change: str  # "before → after"
    code: str  # the whole mutated cell, unparsed


def mutants_of(cell: SolutionCell) -> list[Mutant]:
    """Every distinct mutant of a cell's solution lines (a mutant identical to the reference is left out)."""
    tree = ast.parse(cell.source)
    lines = {n for first, last, _ in cell.blocks for n in range(first, last + 1)}
    listing = _Mutator(lines, None)
    listing.visit(copy.deepcopy(tree))
    reference = ast.unparse(tree)
    source_lines = cell.source.splitlines()
    seen = {reference}
    out: list[Mutant] = []
    counts: dict[str, int] = {}
    for k in range(len(listing.found)):
        mutator = _Mutator(lines, k)
        mutated = ast.fix_missing_locations(mutator.visit(copy.deepcopy(tree)))
        if mutator.applied is None:
            continue
        code = ast.unparse(mutated)
        if code in seen:
            continue
        seen.add(code)
        m = mutator.applied
        ex_id = cell.exercise_of_line(m.lineno)
        if ex_id is None:
            continue
        original = source_lines[m.lineno - 1].strip()
        change = f"{m.before} → {m.after}"
        key = f"{ex_id}|{m.operator}|{original}|{change}"
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:
            key += f"|{counts[key]}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:6]
        out.append(
            Mutant(
                f"{ex_id}:m{digest}",
                ex_id,
                cell.part,
                cell.index,
                cell.first_line + m.lineno - 1,
                m.operator,
                original,
                change,
                code,
            )
        )
    return out


def part_mutants(part: str) -> list[Mutant]:
    return [m for cell in solution_cells(part) for m in mutants_of(cell)]


# ---------------------------------------------------------------------------------------------------------
# Running the checks on the mutants
# ---------------------------------------------------------------------------------------------------------

_MUTANTS: list[Mutant] = []  # set before the workers fork
_TIMEOUT_S = 10.0


def _exercise(part: str, ex_id: str):
    from utils.checks import exercises_of

    return next(e for e in exercises_of(part) if e.id == ex_id)


def run_mutant(mutant: Mutant, timeout: float = 10.0) -> tuple[str, str]:
    """Execute the mutated cell in a copy of the reference namespace and run its exercise's check on it.

    Returns (outcome, detail): ``killed`` with the first line of the failure message, ``survived``,
    ``timeout``, or ``invalid`` (the mutated cell does not even run; counted as killed)."""
    import torch

    from utils.checks import CheckFailure
    from utils.course.grading import ExerciseTimeout, reference_namespace, time_limit

    namespace = dict(reference_namespace(mutant.part))
    exercise = _exercise(mutant.part, mutant.exercise)
    sink = io.StringIO()
    try:
        with time_limit(timeout), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                with torch.random.fork_rng(devices=[]):
                    exec(compile(mutant.code, f"<mutant {mutant.id}>", "exec"), namespace)
            except ExerciseTimeout:
                raise
            except Exception as error:
                return INVALID, f"{type(error).__name__}: {error}"[:200]
            exercise.check(*(namespace[name] for name in exercise.objects), seed=0, quiet=True)
    except ExerciseTimeout as error:
        return TIMEOUT, str(error)
    except CheckFailure as failure:
        if isinstance(failure.__cause__, ExerciseTimeout):
            return TIMEOUT, str(failure.__cause__)
        return KILLED, str(failure).splitlines()[0][:300]
    except Exception as error:
        return KILLED, f"the check crashed: {type(error).__name__}: {error}"[:300]
    return SURVIVED, ""


def _run_index(k: int) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    outcome, detail = run_mutant(_MUTANTS[k], _TIMEOUT_S)
    return k, outcome, detail, time.perf_counter() - start


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_all(
    mutants: list[Mutant], *, jobs: int, timeout: float, progress: bool = False
) -> list[tuple[str, str, float]]:
    """Run every mutant (in ``jobs`` forked worker processes when > 1); results in the mutants' order."""
    global _MUTANTS, _TIMEOUT_S
    _MUTANTS, _TIMEOUT_S = mutants, timeout
    results: list[tuple[str, str, float] | None] = [None] * len(mutants)
    if jobs <= 1 or len(mutants) < 2:
        _init_worker()
        for k in range(len(mutants)):
            _, outcome, detail, seconds = _run_index(k)
            results[k] = (outcome, detail, seconds)
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(jobs, initializer=_init_worker, maxtasksperchild=200) as pool:
            outcomes = pool.imap_unordered(_run_index, range(len(mutants)), chunksize=1)
            for done, (k, outcome, detail, seconds) in enumerate(outcomes, start=1):
                results[k] = (outcome, detail, seconds)
                if progress and done % 50 == 0:
                    print(f"  ... {done}/{len(mutants)} mutants", file=sys.stderr, flush=True)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# Declared survivors, the table, the command line
# ---------------------------------------------------------------------------------------------------------


def declared(part: str) -> tuple[dict[str, str], dict[str, str]]:
    """(EQUIVALENT, SURVIVORS) declared in ``tests/wrong/wrong_NN_name.py`` (empty if the module has none)."""
    try:
        module = importlib.import_module(f"tests.wrong.wrong_{part}")
    except ModuleNotFoundError:
        return {}, {}
    return dict(getattr(module, "EQUIVALENT", {})), dict(getattr(module, "SURVIVORS", {}))


@dataclass
class ExerciseReport:
    exercise: str
    generated: int = 0
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    unexplained: list[Mutant] = field(default_factory=list)
    explained: list[tuple[Mutant, str, str]] = field(default_factory=list)  # mutant, "equivalent"/"survivor", why

    @property
    def percent(self) -> float:
        relevant = self.generated - self.equivalent
        return 100.0 if relevant == 0 else 100.0 * self.killed / relevant


def _resolve_parts(names: Iterable[str]) -> list[str]:
    from utils.course.build_notebooks import parts

    known = [p.name for p in parts()]
    chosen: list[str] = []
    for name in names:
        matches = [p for p in known if p == name or p.startswith(name)]
        if not matches:
            raise SystemExit(f"unknown part {name!r}; known: {', '.join(known)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen or known


def select(mutants: list[Mutant], exercises: list[str], fast: bool, sample: int = FAST_SAMPLE) -> list[Mutant]:
    """The mutants of the chosen exercises; with ``fast``, a fixed sample of ``sample`` per exercise (smallest ids)."""
    if exercises:
        mutants = [m for m in mutants if m.exercise in exercises]
    if not fast:
        return mutants
    by_exercise: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_exercise.setdefault(m.exercise, []).append(m)
    keep = {m.id for group in by_exercise.values() for m in sorted(group, key=lambda m: m.id)[:sample]}
    return [m for m in mutants if m.id in keep]


def mutation_report(
    parts: list[str],
    *,
    exercises: list[str] = (),
    fast: bool = False,
    sample: int = FAST_SAMPLE,
    jobs: int | None = None,
    timeout: float = 10.0,
    progress: bool = False,
) -> tuple[dict[str, list[ExerciseReport]], list[str]]:
    """Run the mutants of ``parts``; returns the reports per part (in exercise order) and the problems found.

    With ``fast`` (a sample of each exercise's mutants), only unexplained survivors are problems: a percentage
    over a dozen mutants says little, and stale declarations cannot be told from unsampled ones."""
    from utils.checks import exercises_of
    from utils.course.grading import reference_namespace

    jobs = jobs or min(2, os.cpu_count() or 1)
    problems: list[str] = []
    reports: dict[str, list[ExerciseReport]] = {}
    everything: list[Mutant] = []
    for part in parts:
        reference_namespace(part)  # built once, before the workers fork
        everything += select(part_mutants(part), list(exercises), fast, sample)
    results = run_all(everything, jobs=jobs, timeout=timeout, progress=progress)
    for part in parts:
        equivalent, survivors = declared(part)
        rows = {e.id: ExerciseReport(e.id) for e in exercises_of(part) if not exercises or e.id in exercises}
        seen_ids = set()
        for mutant, (outcome, _detail, _s) in zip(everything, results):
            if mutant.part != part:
                continue
            seen_ids.add(mutant.id)
            row = rows[mutant.exercise]
            row.generated += 1
            if outcome != SURVIVED:
                row.killed += 1
                for table, kind in ((equivalent, "EQUIVALENT"), (survivors, "SURVIVORS")):
                    if mutant.id in table:
                        problems.append(
                            f"{mutant.id} is declared in {kind} of wrong_{part}.py but is now killed: remove it."
                        )
                continue
            row.survived += 1
            if mutant.id in equivalent:
                row.equivalent += 1
                row.explained.append((mutant, "equivalent", equivalent[mutant.id]))
            elif mutant.id in survivors:
                row.explained.append((mutant, "survivor", survivors[mutant.id]))
            else:
                row.unexplained.append(mutant)
                problems.append(f"{mutant.id} survived and is not explained ({part}, line {mutant.line}).")
        if not fast:
            for table, kind in ((equivalent, "EQUIVALENT"), (survivors, "SURVIVORS")):
                for ident in table:
                    ex_id = ident.split(":")[0]
                    if ident not in seen_ids and ex_id in rows:
                        problems.append(
                            f"{ident} is declared in {kind} of wrong_{part}.py but no longer generated: remove it."
                        )
        for row in rows.values():
            if not fast and row.percent < 100 * TARGET:
                problems.append(
                    f"exercise {row.exercise} kills {row.percent:.1f}% of its non-equivalent mutants "
                    f"(< {100 * TARGET:.0f}%)."
                )
        reports[part] = list(rows.values())
    return reports, problems


def format_report(reports: dict[str, list[ExerciseReport]]) -> str:
    out: list[str] = []
    for part, rows in reports.items():
        out.append(f"\n{part}")
        out.append(f"  {'exercise':<9}{'generated':>10}{'killed':>8}{'survived':>10}{'equivalent':>12}{'killed %':>10}")
        for r in rows:
            out.append(
                f"  {r.exercise:<9}{r.generated:>10}{r.killed:>8}{r.survived:>10}{r.equivalent:>12}{r.percent:>9.1f}%"
            )
        total = ExerciseReport(
            "total", *(sum(getattr(r, a) for r in rows) for a in ("generated", "killed", "survived", "equivalent"))
        )
        out.append(
            f"  {'total':<9}{total.generated:>10}{total.killed:>8}{total.survived:>10}"
            f"{total.equivalent:>12}{total.percent:>9.1f}%"
        )
        for r in rows:
            for m in r.unexplained:
                out.append(f"  UNEXPLAINED {m.id}  line {m.line}  [{m.operator}]  {m.original}\n      {m.change}")
            for m, kind, why in r.explained:
                out.append(f"  {kind:<11} {m.id}  line {m.line}  [{m.operator}]  {m.change}\n      because: {why}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation-test every exercise's check (see this module's docstring).")
    parser.add_argument("parts", nargs="*", help="parts by name or prefix (default: all), e.g. 01 02a_sae_toy_models")
    parser.add_argument("--exercise", action="append", default=[], help="only this exercise id (repeatable)")
    parser.add_argument(
        "--fast", action="store_true", help=f"at most {FAST_SAMPLE} mutants per exercise (a fixed sample)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: min(2, cores))")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per mutant (default 10)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--show", metavar="ID", help="print the mutated cell of one mutant, run nothing")
    args = parser.parse_args(argv)
    parts = _resolve_parts(args.parts)
    if args.list or args.show:
        for part in parts:
            for m in select(part_mutants(part), args.exercise, args.fast):
                if args.show and m.id == args.show:
                    print(f"# {m.id}  {part} line {m.line}  [{m.operator}]  {m.change}\n{m.code}")
                    return 0
                if args.list:
                    print(f"{m.id}  line {m.line}  [{m.operator}]  {m.change}")
        return 1 if args.show else 0
    start = time.perf_counter()
    reports, problems = mutation_report(
        parts, exercises=args.exercise, fast=args.fast, jobs=args.jobs, timeout=args.timeout, progress=True
    )
    print(format_report(reports))
    print(
        f"\n{sum(r.generated for rows in reports.values() for r in rows)} mutants in {time.perf_counter() - start:.0f} "
        "s."
    )
    if problems:
        print("\nProblems:\n  " + "\n  ".join(problems))
        return 1
    print(
        "Every survivor is explained and every exercise kills at least "
        f"{100 * TARGET:.0f}% of its non-equivalent mutants."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
