"""Generate each part's exercise and solution notebooks from its one master file.

The master of part ``NN_name`` is ``solutions/NN_name.py``, a jupytext "percent" script. Cell tags
(``# %% tags=["exercise"]``) say what each cell is:

- ``setup``: imports and constants. The grader runs these before the exercises.
- ``exercise``: one exercise's code. Inside it, the lines between ``# BEGIN SOLUTION`` and
  ``# END SOLUTION`` are the reference answer; the learner's notebook gets a stub in their place that
  raises ``NotImplementedError``. The signature, docstring and anything outside the markers are kept,
  and a collapsed "Solution" block (the reference cell) follows the cell. Don't write solutions by hand
  in the markdown: they would drift from the code that is tested.
- ``check``: the check call right after an exercise (``checks.check_xxx(xxx)``).
- ``solution-only`` / ``exercise-only``: kept in one version only.
- untagged cells: everything else (explanations, training runs, plots).

Markdown may use ``{{syllabus.learner_time}}``, ``{{syllabus.run_time}}`` (see :mod:`utils.course.syllabus`): the
part's times live there, once, for the README table and the notebook's introduction.

Usage::

    python -m utils.course.build_notebooks            # write notebooks/NN_name.ipynb and solutions/NN_name.ipynb
    python -m utils.course.build_notebooks --check    # fail if any generated notebook is stale or hand-edited
    python -m utils.course.build_notebooks --force    # also overwrite learner notebooks that were edited
    python -m utils.course.build_notebooks --handout DIR   # for handing out: learner notebooks without the
                                                    # Solution blocks, and the solutions on their own

Generated notebooks are committed without outputs; never edit them by hand, edit the master.

A learner's work is never lost: each generated learner notebook records a fingerprint of what was generated
(``metadata.sae_course.generated``). The generator overwrites a notebook in ``notebooks/`` only while its
content still matches that fingerprint (nobody edited or ran it since); otherwise it leaves it alone and says
so, unless ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

from utils.course.syllabus import BADGE, COLAB_URL, GITHUB_REPO, fill
from utils.paths import repo_root

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MARKER = re.compile(r"^(?P<indent>\s*)# (?P<kind>BEGIN|END) SOLUTION\s*$")

COLAB_CELL = f"""\
# Colab set-up: runs only on Google Colab, and does nothing elsewhere.
# It clones the course (for its offline data bundle) and installs it, not editable, with pip constrained
# to Colab's own torch so that nothing can replace it.
import importlib.metadata, os, subprocess, sys

if "google.colab" in sys.modules and not os.path.isdir("/content/sae-course"):
    repository = "https://github.com/{GITHUB_REPO}"
    subprocess.run(["git", "clone", "--depth", "1", repository, "/content/sae-course"], check=True)
    with open("/content/keep-torch.txt", "w") as constraints:
        constraints.write(f"torch=={{importlib.metadata.version('torch')}}\\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", "/content/keep-torch.txt"]
    subprocess.run([*pip, "/content/sae-course"], check=True)
if "google.colab" in sys.modules:
    os.environ["SAE_COURSE_ROOT"] = "/content/sae-course"
"""


@dataclass(frozen=True)
class Part:
    """One part of the course: its master file and the two notebooks generated from it."""

    name: str  # e.g. "01_toy_models"

    @property
    def master(self) -> Path:
        return repo_root() / "solutions" / f"{self.name}.py"

    @property
    def exercise_notebook(self) -> Path:
        return repo_root() / "notebooks" / f"{self.name}.ipynb"

    @property
    def solution_notebook(self) -> Path:
        return repo_root() / "solutions" / f"{self.name}.ipynb"


def parts() -> list[Part]:
    """Every part that has a master file, in course order."""
    return [Part(p.stem) for p in sorted((repo_root() / "solutions").glob("[0-9][0-9]*.py"))]


def tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def strip_solution(source: str, where: str = "cell") -> str:
    """Replace each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block by a stub raising NotImplementedError."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        match = MARKER.match(line)
        if match and match["kind"] == "BEGIN":
            if inside:
                raise ValueError(f"{where}: nested '{BEGIN}'")
            inside = True
            indent = match["indent"]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError()")
        elif match and match["kind"] == "END":
            if not inside:
                raise ValueError(f"{where}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{BEGIN}' without '{END}'")
    return "\n".join(out)


def drop_markers(source: str) -> str:
    """The reference version of a cell: the solution markers themselves are removed."""
    return "\n".join(line for line in source.splitlines() if not MARKER.match(line))


def solution_details(source: str) -> str:
    """A collapsed "Solution" block for the exercise notebook: the exercise cell as the reference has it.

    Generated from the master, so the solution shown can never drift from the one that is tested."""
    code = drop_markers(source).strip("\n")
    return f"<details><summary>Solution</summary>\n\n```python\n{code}\n```\n</details>"


def read_master(part: Part | str | Path) -> nbformat.NotebookNode:
    """Parse a master file (or its text's path) into a notebook with tagged cells."""
    path = part.master if isinstance(part, Part) else Path(part)
    return jupytext.read(path, fmt="py:percent")


def build(master: nbformat.NotebookNode, name: str, *, solution: bool) -> nbformat.NotebookNode:
    """Build the solution (``solution=True``) or exercise notebook of part ``name`` from its master."""
    keep_out = "exercise-only" if solution else "solution-only"
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
        "sae_course": {"part": name},  # how utils.course.grade_class tells a renamed notebook's part
    }
    cells = []
    for i, cell in enumerate(master.cells):
        cell_tags = tags(cell)
        if keep_out in cell_tags:
            continue
        source = cell.source
        if cell.cell_type == "code":
            if "exercise" in cell_tags:
                source = drop_markers(source) if solution else strip_solution(source, f"{name} cell {i}")
            elif MARKER.search(source):
                raise ValueError(f"{name} cell {i}: solution markers outside an 'exercise' cell")
            new = nbformat.v4.new_code_cell(source)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(fill(source, name))  # {{syllabus.learner_time}} etc.
        else:
            new = nbformat.v4.new_raw_cell(source)
        public_tags = sorted(cell_tags - {"solution-only", "exercise-only"})
        if public_tags:
            new.metadata["tags"] = public_tags
        cells.append(new)
        if "exercise" in cell_tags and not solution:
            cells.append(nbformat.v4.new_markdown_cell(solution_details(cell.source), metadata={"tags": ["solution"]}))
    title = next((k for k, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(title + 1, nbformat.v4.new_code_cell(COLAB_CELL.rstrip("\n"), metadata={"tags": ["colab"]}))
    for k, cell in enumerate(cells):  # stable ids, so that regenerating an unchanged master changes nothing
        cell["id"] = f"{name[:2]}-{k:03d}"
    nb.cells = cells
    _add_colab_badge(nb, name)
    return nb


def _add_colab_badge(nb: nbformat.NotebookNode, name: str) -> None:
    """Put an "Open in Colab" badge under the notebook's title (its first markdown cell)."""
    badge = f"[![Open in Colab]({BADGE})]({COLAB_URL.format(name=name)})"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source + "\n\n" + badge
            return


def fingerprint(nb: dict) -> str:
    """A hash of a notebook's cells (type, source, outputs): what a learner's edit or run would change."""
    cells = [(c.get("cell_type"), "".join(c.get("source", "")), c.get("outputs", [])) for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def untouched_since_generated(path: Path) -> bool:
    """Whether the notebook at ``path`` still holds exactly what the generator last wrote there."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    recorded = nb.get("metadata", {}).get("sae_course", {}).get("generated")
    return recorded is not None and recorded == fingerprint(nb)


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def generated_files(part: Part) -> dict[Path, str]:
    """The text of both notebooks generated from ``part``'s master, by path."""
    master = read_master(part)
    exercise = build(master, part.name, solution=False)
    exercise.metadata["sae_course"]["generated"] = fingerprint(exercise)
    return {
        part.exercise_notebook: render(exercise),
        part.solution_notebook: render(build(master, part.name, solution=True)),
    }


def handout(part: Part) -> dict[str, nbformat.NotebookNode]:
    """Notebooks for handing out, by file name: the learner's without its collapsed Solution blocks (for
    exams, or workshops where the teacher reveals the answers), and ``NN_name_solutions.ipynb``: each
    exercise's header and reference code (after the set-up cells, so that it runs), to hand out afterwards."""
    master = read_master(part)
    learner = build(master, part.name, solution=False)
    learner.cells = [c for c in learner.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    answers = nbformat.v4.new_notebook(
        metadata={**learner.metadata, "sae_course": {"part": part.name, "solutions": True}}
    )
    title = next((c.source.splitlines()[0] for c in master.cells if c.cell_type == "markdown"), part.name)
    answers.cells.append(nbformat.v4.new_markdown_cell(f"{title}: solutions"))
    header = ""
    for cell in master.cells:
        if cell.cell_type == "markdown":
            header = next((line for line in cell.source.splitlines() if line.startswith("## ")), header)
        elif "setup" in tags(cell):
            answers.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"tags": ["setup"]}))
        elif "exercise" in tags(cell):
            if header:
                answers.cells.append(nbformat.v4.new_markdown_cell(header))
                header = ""
            answers.cells.append(nbformat.v4.new_code_cell(drop_markers(cell.source), metadata={"tags": ["exercise"]}))
    for nb, prefix in ((learner, "h"), (answers, "s")):
        for k, cell in enumerate(nb.cells):
            cell["id"] = f"{part.name[:2]}{prefix}-{k:03d}"
    return {f"{part.name}.ipynb": learner, f"{part.name}_solutions.ipynb": answers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated notebook is stale or hand-edited")
    parser.add_argument("--force", action="store_true", help="overwrite learner notebooks in notebooks/ even if edited")
    parser.add_argument(
        "--handout", type=Path, metavar="DIR", help="write notebooks for handing out into DIR (see handout())"
    )
    parser.add_argument("parts", nargs="*", help="part names (default: all), e.g. 01_toy_models")
    args = parser.parse_args(argv)
    chosen = [p for p in parts() if not args.parts or p.name in args.parts]
    if args.parts and len(chosen) != len(args.parts):
        parser.error(f"unknown part among {args.parts}; known: {[p.name for p in parts()]}")
    if args.handout:
        args.handout.mkdir(parents=True, exist_ok=True)
        for part in chosen:
            for file_name, nb in handout(part).items():
                (args.handout / file_name).write_text(render(nb), encoding="utf-8")
                print(f"wrote {args.handout / file_name}")
        return 0
    stale, kept = [], []
    for part in chosen:
        for path, text in generated_files(part).items():
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current == text:
                continue
            if args.check:
                stale.append(path)
            elif (
                current is not None
                and path == part.exercise_notebook
                and not args.force
                and not untouched_since_generated(path)
            ):
                kept.append(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(repo_root())}")
    for path in kept:
        print(
            f"left {path} alone: it differs from what the generator last wrote there (your work?). "
            "To replace it, keep a copy elsewhere, then run: python -m utils.course.build_notebooks --force",
            file=sys.stderr,
        )
    if stale:
        print("For maintainers: these generated notebooks are stale or were edited by hand:", file=sys.stderr)
        for path in stale:
            print(f"  {path.relative_to(repo_root())}", file=sys.stderr)
        print(
            "Edit the master solutions/NN_name.py, then run `python -m utils.course.build_notebooks` (it leaves edited "
            "learner notebooks alone; add --force to overwrite them). Learners do not need this check: "
            "`python -m pytest` grades your notebooks.",
            file=sys.stderr,
        )
        return 1
    if kept:
        return 1
    if args.check:
        print(f"{2 * len(chosen)} generated notebooks are in sync with their masters.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
