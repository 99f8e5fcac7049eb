"""Grades your Part 3 notebook (dead latents and resampling), notebooks/03_dead_latents.ipynb, one test per exercise.

pytest tests/test_03_dead_latents.py              # the whole part
pytest tests/test_03_dead_latents.py -k <name>    # one exercise, e.g. by its function's name
"""

from tests.grading import grading_test

PART = "03_dead_latents"
test_exercise = grading_test(PART)
