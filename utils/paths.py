"""Where the course's files live, for a source checkout, an installed package or Colab."""

from __future__ import annotations

import os
from pathlib import Path

#: The folder holding ``utils/``, ``data/``, ``notebooks/``, ``solutions/``... when running from a checkout.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent

#: Where the Colab set-up cell clones the repository (see ``utils.course.build_notebooks``).
COLAB_CLONE = Path("/content/sae-course")


def repo_root() -> Path:
    """The course repository: ``$SAE_COURSE_ROOT``, else the checkout this package sits in, else the working
    folder or its parent (a non-editable install used from the checkout, e.g. a notebook in ``notebooks/``),
    else the Colab clone."""
    tried = []
    env = os.environ.get("SAE_COURSE_ROOT")
    cwd = Path.cwd()
    candidates = ([Path(env)] if env else []) + [_PACKAGE_PARENT, cwd, cwd.parent, COLAB_CLONE]
    for root in candidates:
        tried.append(str(root))
        if (root / "utils" / "paths.py").is_file() and (root / "solutions").is_dir():
            return root
    raise FileNotFoundError(
        "Could not find the course repository (looked for a folder holding both utils/ and solutions/ in: "
        + ", ".join(tried)
        + "). Clone the repository and set SAE_COURSE_ROOT to its path, or install it with `python install.py`."
    )


def data_dir() -> Path:
    """The offline data bundle (``data/``): corpus, tokenizer, ``gelu-1l-mini`` and its SAEs."""
    return repo_root() / "data"
