"""The course's importable package: everything a learner should not have to write.

Folders by concept, from the bottom up:

- ``paths``: where the repository and its offline data bundle live.
- ``lm/``: the language model side (models, corpora, tokens and their text, activations at a hook).
  Knows nothing of SAEs.
- ``sae/``: sparse autoencoders (the model and its on-disk format, pretrained SAEs, training, metrics,
  latent statistics, what a latent does).
- ``dashboard/``: the latent dashboard (its data, its HTML page, a notebook widget).
- ``parts/``: what a part's notebook uses but the learner does not write (toy models, figures, demos).
- ``checks/``: the exercise checks, one module per part (run inline and under pytest).
- ``course/``: the course machinery (syllabus, notebook generator, grading, class grading, skip-ahead,
  teachers' guide).

Who imports whom, one way only (a module may import from its own folder and from any folder to its right):

    course -> checks -> {parts, dashboard} -> sae -> lm -> paths

``parts`` and ``dashboard`` do not import each other, nothing imports back up the line, and there is no
import cycle, lazy imports inside functions included. ``tests/course/test_layout.py`` enforces it.
The flat layout's old paths (``utils.loading``, ``utils.sae_training``...) still import, for one cohort:
see ``utils/_moved.py``.
"""

from utils import _moved

#: The rule above, as data: each folder (or top-level module) and the folders it may import from.
LAYERS: dict[str, frozenset[str]] = {
    "paths": frozenset(),
    "lm": frozenset({"paths"}),
    "sae": frozenset({"lm", "paths"}),
    "parts": frozenset({"sae", "lm", "paths"}),
    "dashboard": frozenset({"sae", "lm", "paths"}),
    "checks": frozenset({"parts", "dashboard", "sae", "lm", "paths"}),
    "course": frozenset({"checks", "parts", "dashboard", "sae", "lm", "paths"}),
}

__all__ = ["LAYERS", "__version__"]
__version__ = "0.1.0"

_moved.install()
