"""Grades your Part 2a notebook (SAEs on toy models), notebooks/02a_sae_toy_models.ipynb, one test per exercise.

pytest tests/test_02a_sae_toy_models.py              # the whole part
pytest tests/test_02a_sae_toy_models.py -k <name>    # one exercise, e.g. by its function's name
"""

from tests.grading import grading_test

PART = "02a_sae_toy_models"
test_exercise = grading_test(PART)
