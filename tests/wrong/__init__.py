"""Realistic wrong implementations of each exercise, and correct ones in other styles, one module per part.

Each ``wrong_NN_name.py`` holds:

- ``WRONG = {exercise id: [wrong object, or tuple of objects, ...]}``: each wrong object is marked with
  :func:`mistake` (the regex its check's message must match, and the class of blind spot it probes); its
  docstring's first line states the mistake. Every one must fail its check with a message naming *its* mistake.
- ``CORRECT = {exercise id: [...]}``: correct answers written another way (a loop for a vectorised form, a
  closed form for a forward pass, another order of random draws where the exercise allows it), marked with
  :func:`correct`; every one must pass. At least two per exercise, unless ``SINGLE_FORM[id]`` says why not.
- ``APPLIES = {exercise id: {class, ...}}``: the blind-spot classes of :data:`CLASSES` that apply to the
  exercise; the course test requires at least one wrong object of each.
"""

from __future__ import annotations

#: The classes of mistakes a check must see, each with what a wrong implementation of that class does.
CLASSES = {
    "fixture": "leaves out a term that a too-clean fixture would hide (a LayerNorm's affine, a bias, a norm)",
    "branch": "is wrong only in a branch that a degenerate fixture never takes (a latent that fires, a resample)",
    "randomness": "misuses the generator or seed it is given (global RNG, a fresh generator per call, ignored)",
    "sampling": "samples from the wrong distribution (an index off by one, a shared counter, replacement, a bias "
    "towards the first or last items)",
    "gradient": "stops or changes a gradient the exercise needs (a detach, no_grad, a wrong size)",
    "inputs": "changes the caller's inputs in place",
    "dtype": "returns another dtype or device than the inputs'",
    "type": "returns another type or shape than documented",
    "formula": "gets the formula itself wrong",
}


def mistake(expect: str, kind: str = "formula"):
    """Mark a wrong implementation: ``expect`` is a regex its check's failure message must match
    (``re.search``), ``kind`` one of :data:`CLASSES`. Its docstring states the mistake it models."""
    if kind not in CLASSES:
        raise ValueError(f"unknown mistake class {kind!r}; use one of {sorted(CLASSES)}")

    def mark(obj):
        obj.expected_message = expect
        obj.mistake_kind = kind
        return obj

    return mark


def correct(obj):
    """Mark a correct implementation in another style (its docstring says how it differs); it must pass."""
    obj.is_correct_alternative = True
    return obj
