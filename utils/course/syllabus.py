"""The course's parts in one place: name, title, what you build, and the two times a learner plans by.

- ``learner_time``: how long a learner takes to work through the part (the exercises' "up to N minutes"
  add up to ``exercise_minutes``; reading, running and looking at plots take the rest).
- ``run_minutes``: how long the solution notebook takes to run top to bottom, measured on a 2-core CPU
  (``pytest tests/course -m slow`` prints the measured figure beside it; update it here when it moves).

The README's Parts table (``python -m utils.course.syllabus`` prints it) and each notebook's introduction use these
entries: in a master's markdown, the generator replaces ``{{syllabus.learner_time}}``,
``{{syllabus.run_time}}``, ``{{syllabus.title}}`` and ``{{syllabus.exercise_minutes}}`` with the part's values.
A new part adds one entry to ``PARTS``; a planned part without a notebook yet has ``planned=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The GitHub repository learners clone on Colab. Change it here if the course moves.
GITHUB_REPO = "sae-course/superposition-and-saes"
COLAB_URL = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/{{name}}.ipynb"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class PartInfo:
    """One part of the course, as the README table and the notebook intro present it."""

    name: str  # "01_toy_models": the master is solutions/<name>.py
    number: str  # "1", "2a": how the prose and the exercise ids call it
    title: str
    builds: str  # the README's "What you build"
    learner_time: str = ""  # e.g. "2½–3 hours"
    exercise_minutes: int = 0  # the sum of the exercises' "up to N minutes"
    run_minutes: float = 0.0  # the solution notebook's measured run time on a 2-core CPU
    planned: bool = False

    @property
    def run_time(self) -> str:
        """The run time as prose says it: "about 4 minutes"."""
        if self.run_minutes < 1:
            return "under a minute"
        return f"about {round(self.run_minutes)} minute{'s' if round(self.run_minutes) != 1 else ''}"


PARTS: list[PartInfo] = [
    PartInfo(
        "01_toy_models",
        "1",
        "Toy models of superposition",
        "Toy models of superposition (Elhage et al., 2022): the phase change, feature geometry, correlated "
        "features, privileged bases, computation in superposition, feature dimensionality",
        learner_time="2½–3 hours",
        exercise_minutes=100,
        run_minutes=2.8,  # 2.5 min alone on the idle 2-core test machine, 2.8 in CI's run (2026-12-08)
    ),
    PartInfo(
        "02a_sae_toy_models",
        "2a",
        "Sparse autoencoders on toy models",
        "An SAE (ReLU + L1, then TopK) whose latents recover a toy model's known features",
        learner_time="2–2½ hours",
        exercise_minutes=85,
        run_minutes=1.0,
    ),
    PartInfo(
        "02b_sae_gelu_1l",
        "2b",
        "Sparse autoencoders on the MLP of a real transformer",
        "An SAE trained on the MLP of a real 1-layer model, and the metrics practitioners use: L0, explained "
        "variance, CE loss recovered, KL, dead and dense latents",
        learner_time="3–4 hours",
        exercise_minutes=105,
        run_minutes=3.9,  # CI's run on the 2-core test machine, 2026-12-08 (the training cell alone is 150 s)
    ),
    PartInfo(
        "03_dead_latents",
        "3",
        "Dead latents, and how to revive them",
        "Dead latents and resampling: tokens-since-fired windows vs ultra-low density, simple and Anthropic's "
        "squared-loss resampling with the Adam reset, a resampling plug-in for the training loop, compared on a "
        "toy SAE and gelu-1l-mini with TopK's auxiliary loss and Anthropic's 2024 recipe",
        learner_time="2–2½ hours",
        exercise_minutes=90,
        run_minutes=3.0,
    ),
    PartInfo(
        "04_latent_activations",
        "4",
        "What makes a latent fire",
        "What makes a latent fire: streaming top-k, context windows that read right in every script, interval "
        "samples by reservoir sampling, quantile groups and sketches, the prompt-centric view with exact loss "
        "effects; reading and doubting real latents",
        learner_time="2–2½ hours",
        exercise_minutes=115,
        run_minutes=1.0,
    ),
    PartInfo(
        "05_latent_effects",
        "5",
        "What a latent does: logit lens, ablation and steering",
        "What a latent does: the decoder logit lens and the final LayerNorm, a random-direction baseline, diverse "
        "latents, neuron alignment, latents matched across two runs, exact ablation, steering; an offline "
        "feature dashboard",
        learner_time="about 2 hours",
        exercise_minutes=100,
        run_minutes=1.0,
    ),
]


def info(name: str) -> PartInfo | None:
    """The syllabus entry of part ``name`` (e.g. ``"01_toy_models"``), or None if it has none."""
    return next((p for p in PARTS if p.name == name), None)


PLACEHOLDER = re.compile(r"\{\{syllabus\.(\w+)\}\}")


def fill(text: str, name: str) -> str:
    """Replace ``{{syllabus.field}}`` placeholders in a master's markdown with part ``name``'s values."""
    if "{{syllabus." not in text:
        return text
    entry = info(name)
    if entry is None:
        raise KeyError(f"{name}: its master uses {{{{syllabus.…}}}} but utils/course/syllabus.py has no entry for it")

    def value(match: re.Match) -> str:
        field = match[1]
        if not hasattr(entry, field):
            raise KeyError(f"{name}: unknown placeholder {match[0]} (fields: learner_time, run_time, title, ...)")
        return str(getattr(entry, field))

    return PLACEHOLDER.sub(value, text)


def readme_table() -> str:
    """The README's Parts table, one row per part."""
    rows = ["| Part | Notebook | What you build | Time | Colab |", "| --- | --- | --- | --- | --- |"]
    for p in PARTS:
        if p.planned:
            rows.append(f"| {p.number} | *planned* | {p.builds} | | |")
            continue
        link = f"[`{p.name}`](notebooks/{p.name}.ipynb)"
        badge = f"[![Open in Colab]({BADGE})]({COLAB_URL.format(name=p.name)})"
        rows.append(f"| {p.number} | {link} | {p.builds} | {p.learner_time} (runs in {p.run_time}) | {badge} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(readme_table())
