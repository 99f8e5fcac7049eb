"""Grades your Part 2b notebook (SAEs on gelu-1l), notebooks/02b_sae_gelu_1l.ipynb, one test per exercise.

pytest tests/test_02b_sae_gelu_1l.py              # the whole part
pytest tests/test_02b_sae_gelu_1l.py -k <name>    # one exercise, e.g. by its function's name
"""

from tests.grading import grading_test

PART = "02b_sae_gelu_1l"
test_exercise = grading_test(PART)
