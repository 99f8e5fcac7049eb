"""Grades your Part 5 notebook (what a latent does), notebooks/05_latent_effects.ipynb, one test per exercise.

pytest tests/test_05_latent_effects.py              # the whole part
pytest tests/test_05_latent_effects.py -k <name>    # one exercise, e.g. by its function's name
"""

from tests.grading import grading_test

PART = "05_latent_effects"
test_exercise = grading_test(PART)
