"""Tamper evidence: has code in this process replaced what the checks rely on?

A check runs in the same Python process as the learner's code (inline in a notebook, and in the grader's
worker). Anything in that process can be replaced by it: a check function, an assertion helper, torch's own
comparisons, the registry of exercises. This module cannot prevent that (nothing inside one process can); it
makes it *evident*. :func:`take` fingerprints what the checks rely on, as early as possible (when
``utils.checks`` is imported, before any learner code runs); :func:`broken` lists what has been replaced
since. The checks call it before and after every run and fail with a message that says so, and the grader
reports a tampered notebook as such instead of grading it. A learner who sets out to defeat this can (with
``ctypes``, or by editing the seal itself); the class grader's sandbox still keeps them away from the teacher's
files, network and other learners (``utils.course.sandbox``).
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterable

__all__ = ["broken", "take"]

#: The torch functions a check's verdict rests on (comparisons and the reductions that feed them). Not all of
#: torch: importing some libraries legitimately rebinds a few of its functions (torch._dynamo wraps
#: ``torch.manual_seed`` when TransformerLens is imported), which would read as tampering.
TORCH_VERDICT = (
    "allclose", "equal", "isclose", "isfinite", "isnan", "isinf", "all", "any", "eq", "ne", "lt", "le", "gt", "ge",
    "abs", "max", "min", "sum", "mean", "sort", "argsort", "topk", "where", "nonzero", "unique", "bincount",
)  # fmt: skip

#: The builtins a check's verdict rests on. Not all of them: Jupyter's kernel rebinds ``input`` at every cell
#: (to route it to the notebook), and IPython adds its own, which would read as tampering.
BUILTINS_VERDICT = (
    "abs", "all", "any", "bool", "callable", "dict", "enumerate", "float", "getattr", "hasattr", "id", "int",
    "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "range", "repr", "round", "set",
    "sorted", "str", "sum", "tuple", "type", "zip",
)  # fmt: skip

_SEAL: dict[str, int] | None = None


def _identity(value: object) -> int:
    """What changes when ``value`` is replaced or its code is swapped: the object and its code object."""
    code = getattr(value, "__code__", None) or getattr(getattr(value, "__func__", None), "__code__", None)
    wrapped = getattr(value, "__wrapped__", None)
    return hash((id(value), id(code), id(getattr(wrapped, "__code__", None))))


def _members(prefix: str, namespace: Iterable[tuple[str, object]]) -> dict[str, int]:
    return {
        f"{prefix}.{name}": _identity(value)
        for name, value in namespace
        if callable(value) or isinstance(value, (staticmethod, classmethod))
    }


def _fingerprints() -> dict[str, int]:
    out: dict[str, int] = {}
    for name in list(sys.modules):
        module = sys.modules.get(name)
        if module is None:
            continue
        if name.startswith(("utils.checks", "utils.course.grading", "utils.course.reference")) or name == "math":
            out |= _members(name, list(vars(module).items()))
            out[f"sys.modules[{name}]"] = id(module)
    out |= _members("builtins", [(n, getattr(builtins, n, None)) for n in BUILTINS_VERDICT])
    torch = sys.modules.get("torch")
    if torch is not None:
        out |= _members("torch", [(n, getattr(torch, n, None)) for n in TORCH_VERDICT])
        testing = sys.modules.get("torch.testing")
        if testing is not None:
            out |= _members("torch.testing", [("assert_close", getattr(testing, "assert_close", None))])
        for cls in torch.Tensor.__mro__[:-1]:  # class dictionaries: getattr would make a new bound method each time
            out |= _members(f"{cls.__qualname__}", list(vars(cls).items()))
    checks = sys.modules.get("utils.checks")
    if checks is not None:  # the registry: which check each exercise runs
        for module, exercises in getattr(checks, "_REGISTRY", {}).items():
            for ex in exercises:
                out[f"registry[{module}][{ex.id}]"] = _identity(ex.check)
    return out


def take() -> None:
    """Fingerprint what the checks rely on now (again: for modules imported since, e.g. a part's checks)."""
    global _SEAL
    now = _fingerprints()
    _SEAL = now if _SEAL is None else now | _SEAL  # what was sealed before keeps its first fingerprint


def broken() -> list[str]:
    """What has been replaced since :func:`take` (empty if nothing, or if nothing was sealed)."""
    if _SEAL is None:
        return []
    now = _fingerprints()
    return sorted(name for name, identity in _SEAL.items() if now.get(name) != identity)
