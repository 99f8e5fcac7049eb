"""Grades your Part 1 notebook, notebooks/01_toy_models.ipynb, one test per exercise.

pytest tests/test_01_toy_models.py                      # the whole part
pytest tests/test_01_toy_models.py -k generate_batch    # one exercise
"""

from tests.grading import grading_test

PART = "01_toy_models"
test_exercise = grading_test(PART)
