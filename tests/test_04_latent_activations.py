"""Grades your Part 4 notebook (what makes a latent fire), notebooks/04_latent_activations.ipynb, one test per exercise.

pytest tests/test_04_latent_activations.py              # the whole part
pytest tests/test_04_latent_activations.py -k <name>    # one exercise, e.g. by its function's name
"""

from tests.grading import grading_test

PART = "04_latent_activations"
test_exercise = grading_test(PART)
