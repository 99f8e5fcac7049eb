"""The course's importable package: everything a learner should not have to write.

One module per concern:
- ``paths``: where the repository and its offline data bundle live.
- ``checks``: the exercise checks, one module per part (run inline and under pytest).
- ``grading``: grades a learner's saved notebook exercise by exercise.
- ``build_notebooks``: generates exercise and solution notebooks from one master file.
- ``loading``: the one place models, datasets and pretrained SAEs are loaded.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
