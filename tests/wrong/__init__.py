"""Realistic wrong implementations of each exercise, one module per part (``wrong_NN_name.py``)."""

from __future__ import annotations


def mistake(expect: str):
    """Mark a wrong implementation with a regex that its check's failure message must match (``re.search``).

    The object's docstring states the mistake it models; a course test checks both."""

    def mark(obj):
        obj.expected_message = expect
        return obj

    return mark
