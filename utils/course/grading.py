"""Grade a learner's saved notebook exercise by exercise, without letting one broken cell sink the rest.

How a notebook is graded (``grade_notebook``):

1. A worker process reads the notebook. It runs the ``setup`` cells, then every ``exercise`` cell, each
   under a time limit, and from any other cell (learner-added helpers, training runs, plots) only the
   top-level ``import``/``def``/``class`` statements. ``check`` and ``colab`` cells are never run.
2. For each exercise of the part, in order, it looks up the learner's objects and runs the part's check
   on them under a time limit, writing one JSON line per result as soon as it has it.
3. If the worker dies or hangs (a crash in native code, a loop that ignores the alarm), the parent kills
   it, reports the exercise it was on, and starts a new worker for the exercises left. The parent judges a
   hang by the worker's progress (no new result within a check's limit, plus a margin), never by the
   wall time of the whole notebook, so a slow or busy machine is not mistaken for a hang.

The time limits are generous on purpose (about 10x the slowest legitimate cell or check on a loaded 2-core
laptop): they exist to stop infinite loops, not to measure speed.

Each result is ``passed``, ``failed`` (with a message: what broke and a hint), or ``not attempted``
(the stub still raises ``NotImplementedError``).

Run as ``python -m utils.course.grading notebooks/01_toy_models.ipynb`` for a plain-text report.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from utils.course.identify import defined_names
from utils.paths import repo_root

#: Seconds one cell may take to run, and one check may take: about 10x the slowest legitimate one on a
#: loaded 2-core laptop (importing TransformerLens, ~10 s there; the slowest check, a few seconds).
#: The grader's own tests shorten them (environment variables) only for notebooks of trivial cells.
CELL_TIMEOUT_S = float(os.environ.get("SAE_COURSE_CELL_TIMEOUT", 120))
CHECK_TIMEOUT_S = float(os.environ.get("SAE_COURSE_CHECK_TIMEOUT", 60))

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
#: The exercise's objects are the course's reference (``reference("1.1")``, or the solution's code copied): a grade
#: of its own, never "passed".
USED_REFERENCE = "used the reference"
ALWAYS_SKIPPED_TAGS = {"check", "colab"}


@dataclass
class Result:
    """The grade of one exercise."""

    exercise: str  # "1.2"
    status: str  # PASSED, FAILED or NOT_ATTEMPTED
    message: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------------
# Reading notebooks and masters into code cells.
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CodeCell:
    index: int  # position in the notebook, counting every cell, from 1 (as Jupyter shows no number)
    source: str
    tags: frozenset[str]

    @property
    def label(self) -> str:
        """How a learner finds the cell: by its first line of code (JupyterLab numbers no cells, and ``index``
        counts markdown cells too), e.g. "the cell that starts `def update_tokens_since_fired(`"."""
        lines = (line.strip() for line in self.source.splitlines())
        first = next((line for line in lines if line and not line.startswith("#")), "")
        if not first:
            return f"code cell {self.index} (it holds only comments)"
        return f"the cell that starts `{first if len(first) <= 60 else first[:57] + '...'}`"


def notebook_cells(path: Path) -> list[CodeCell]:
    """The code cells of a saved ``.ipynb`` notebook.

    Read as plain JSON: importing nbformat (and its schema validator) costs seconds per worker."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") == "code":
            source = c.get("source", "")
            cells.append(
                CodeCell(
                    i + 1,
                    "".join(source) if isinstance(source, list) else source,
                    frozenset(c.get("metadata", {}).get("tags", [])),
                )
            )
    return cells


def notebook_text(path: Path) -> str:
    """Every cell's source of a saved notebook, markdown included, as one text."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    sources = (c.get("source", "") for c in nb.get("cells", []))
    return "\n".join("".join(s) if isinstance(s, list) else s for s in sources)


def master_cells(part: str, *, solution: bool) -> list[CodeCell]:
    """The code cells of a part's master, as the solution (``True``) or exercise notebook would have them."""
    from utils.course.build_notebooks import Part, build, read_master

    nb = build(read_master(Part(part)), part, solution=solution)
    return [
        CodeCell(i + 1, c.source, frozenset(c.get("metadata", {}).get("tags", [])))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    ]


def _without_magics(source: str) -> str:
    """Drop IPython magics and shell escapes (``%pip``, ``!ls``), which plain Python cannot run."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _definitions_only(tree: ast.Module) -> ast.Module:
    """Keep the top-level imports, functions and classes of a cell; drop work such as training runs."""
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return ast.Module(body=[node for node in tree.body if isinstance(node, keep)], type_ignores=[])


# ---------------------------------------------------------------------------------------------------------
# Running code under a time limit.
# ---------------------------------------------------------------------------------------------------------


class ExerciseTimeout(Exception):
    """Raised inside learner code when it runs past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block with :class:`ExerciseTimeout` after ``seconds`` (main thread, Unix); else no limit.

    Where no alarm is available (Windows), the parent process's overall timeout still stops a hang.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise ExerciseTimeout(f"took longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _quiet_plots() -> None:
    """Make ``fig.show()`` a no-op in the worker: there is no browser or notebook to show figures in."""
    try:
        import plotly.basedatatypes

        plotly.basedatatypes.BaseFigure.show = lambda self, *a, **k: None
    except ImportError:
        pass


def run_cells(
    cells: list[CodeCell], *, filename: str, cell_timeout: float = CELL_TIMEOUT_S
) -> tuple[dict, dict[int, str]]:
    """Execute the gradable parts of ``cells`` in a fresh namespace.

    Returns the namespace and, by cell index, the error each failing cell raised (as a short message).
    """
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    errors: dict[int, str] = {}
    for cell in cells:
        if cell.tags & ALWAYS_SKIPPED_TAGS:
            continue
        source = _without_magics(cell.source)
        where = f"{filename}, cell {cell.index}"
        try:
            tree = ast.parse(source, filename=where)
        except SyntaxError as error:
            errors[cell.index] = f"SyntaxError in {cell.label}, line {error.lineno}: {error.msg}"
            continue
        if not cell.tags & {"setup", "exercise"}:
            tree = _definitions_only(tree)
        try:
            code = compile(tree, where, "exec")
            with time_limit(cell_timeout), contextlib.redirect_stdout(io.StringIO()):
                exec(code, namespace)
        except ExerciseTimeout as error:
            errors[cell.index] = f"{cell.label} {error} to run (an infinite loop, or heavy work at the top level?)"
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            errors[cell.index] = f"{cell.label} raised {type(error).__name__}: {error}"
    return namespace, errors


def _defining_cell(name: str, cells: list[CodeCell]) -> CodeCell | None:
    """The last cell that defines (or assigns) ``name`` at the top level, if any."""
    found = None
    for cell in cells:
        try:
            tree = ast.parse(_without_magics(cell.source))
        except SyntaxError:
            if f"def {name}" in cell.source or f"class {name}" in cell.source:
                found = cell
            continue
        if name in defined_names(tree):
            found = cell
    return found


def grade_objects(
    exercise,
    namespace: dict,
    cells: list[CodeCell],
    errors: dict[int, str],
    check_timeout: float = CHECK_TIMEOUT_S,
    notebook_text: str | None = None,
) -> Result:
    """Run one exercise's check on the learner's objects found in ``namespace``.

    ``notebook_text`` (every cell's source, markdown included) tells an exercise that is newer than the notebook
    (added to the course after the learner's copy was made: neither its heading nor its objects appear anywhere)
    from one the learner deleted or renamed: the first is "not attempted", with how to get its cells."""
    from utils.checks import CheckFailure, NotAttempted

    start = time.perf_counter()
    objects = []
    for name in exercise.objects:
        cell = _defining_cell(name, [c for c in cells if not c.tags & ALWAYS_SKIPPED_TAGS])
        if cell is not None and cell.index in errors:
            return Result(exercise.id, FAILED, f"`{name}` could not be defined: {errors[cell.index]}.")
        if name not in namespace:
            if cell is None and notebook_text is not None and _newer_than(exercise, notebook_text):
                return Result(
                    exercise.id,
                    NOT_ATTEMPTED,
                    (
                        f"Exercise {exercise.id} ({exercise.title}) is newer than your notebook: it was added to the "
                        "course "
                        f"after your copy was made. Copy its cells from the course's current notebooks/ folder (a "
                        "fresh "
                        f"clone, or `git pull` and look at the notebook in git), then come back to it."
                    ),
                )
            if cell is None:
                message = (
                    f"no `{name}` found in the notebook. Did you rename or delete it? "
                    f"The check looks for a top-level definition named exactly `{name}`."
                )
            else:
                message = f"`{name}` is defined in {cell.label}, but that cell did not run."
            return Result(exercise.id, FAILED, message)
        objects.append(namespace[name])
    used = _used_reference(exercise, objects, cells)
    if used:
        return Result(exercise.id, USED_REFERENCE, used)
    try:
        with time_limit(check_timeout), contextlib.redirect_stdout(io.StringIO()):
            exercise.check(*objects, quiet=True)
    except NotAttempted as error:
        return Result(exercise.id, NOT_ATTEMPTED, str(error), time.perf_counter() - start)
    except CheckFailure as error:
        message = str(error)
        if isinstance(error.__cause__, ExerciseTimeout):
            message = f"Exercise {exercise.id}: your code {error.__cause__} during the check (an infinite loop?)."
        return Result(exercise.id, FAILED, message, time.perf_counter() - start)
    except ExerciseTimeout as error:
        return Result(
            exercise.id,
            FAILED,
            f"Exercise {exercise.id}: the check {error} (an infinite loop?).",
            time.perf_counter() - start,
        )
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        tb = traceback.format_exception_only(type(error), error)[-1].strip()
        return Result(
            exercise.id, FAILED, f"Exercise {exercise.id}: the check crashed: {tb}", time.perf_counter() - start
        )
    return Result(exercise.id, PASSED, "", time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------------
# The worker process and the parent that supervises it.
# ---------------------------------------------------------------------------------------------------------


def _used_reference(exercise, objects: list, cells: list[CodeCell]) -> str:
    """Why the exercise's objects are the course's reference, or "": handed out by ``reference()`` in this
    process, or defined by code identical to the solution's (the same syntax tree, comments and layout aside)."""
    # What reference() handed out in this process (read, not imported: the grader runs as __main__, and a module
    # that imports it back would be a second copy; none was handed out if reference was never imported).
    handed_out = getattr(sys.modules.get("utils.course.reference"), "HANDED_OUT", {})
    for name, obj in zip(exercise.objects, objects):
        if id(obj) in handed_out:
            return (f"`{name}` is the course's reference solution (`{name} = reference(\"{exercise.id}\")`): "
                    f"the notebook goes on with it, but the exercise is yours to solve for the grade.")
    learner, solution = _definitions(cells), _solution_definitions(exercise.part)
    for name in exercise.objects:
        if name in learner and learner[name] == solution.get(name):
            return (f"`{name}` is the reference solution's code, copied: the exercise is yours to solve for the "
                    f"grade (a different solution of your own passes).")
    return ""


@cache
def _solution_definitions(part: str) -> dict[str, str]:
    """The reference solution's definitions (:func:`_definitions`), from the generated solution notebook; none where
    a handout left the solutions out."""
    path = repo_root() / "solutions" / f"{part}.ipynb"
    return _definitions(notebook_cells(path)) if part and path.is_file() else {}


def _definitions(cells: list[CodeCell]) -> dict[str, str]:
    """Each top-level function or class of the exercise cells, as its syntax tree (``ast.dump``: comments, blank
    lines and docstrings' layout do not count)."""
    out = {}
    for cell in cells:
        if "exercise" not in cell.tags:
            continue
        try:
            tree = ast.parse(_without_magics(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out[node.name] = ast.dump(node)
    return out


def _newer_than(exercise, notebook_text: str) -> bool:
    """Whether the notebook never mentions the exercise: not its heading, not one of its objects."""
    mentioned = re.search(rf"Exercise {re.escape(exercise.id)}\b", notebook_text)
    return not mentioned and not any(re.search(rf"\b{re.escape(name)}\b", notebook_text) for name in exercise.objects)


def _worker(notebook: str, part: str, out: str, only: list[str], skip: list[str]) -> None:
    """Grade ``notebook`` in this process, appending one JSON line per exercise to ``out``."""
    from utils.checks import exercises_of

    _quiet_plots()
    path = Path(notebook)
    cells = notebook_cells(path)
    text = notebook_text(path)
    namespace, errors = run_cells(cells, filename=path.name)
    setup_errors = [errors[c.index] for c in cells if "setup" in c.tags and c.index in errors]
    with open(out, "a", encoding="utf-8") as sink:
        for exercise in exercises_of(part):
            if (only and exercise.id not in only) or exercise.id in skip:
                continue
            sink.write(json.dumps({"started": exercise.id}) + "\n")
            sink.flush()
            if setup_errors:
                result = Result(
                    exercise.id,
                    FAILED,
                    "the notebook's set-up cells failed, so nothing can be graded: " + "; ".join(setup_errors),
                )
            else:
                result = grade_objects(exercise, namespace, cells, errors, notebook_text=text)
            sink.write(json.dumps(asdict(result)) + "\n")
            sink.flush()


def _limits() -> tuple[float, float]:
    """The cell and check time limits now (read at call time, so that a test's environment applies)."""
    return (
        float(os.environ.get("SAE_COURSE_CELL_TIMEOUT", CELL_TIMEOUT_S)),
        float(os.environ.get("SAE_COURSE_CHECK_TIMEOUT", CHECK_TIMEOUT_S)),
    )


def _run_worker(command: list[str], env: dict, out: str, *, startup: float, per_exercise: float) -> str:
    """Run a worker until it exits, or kill it once it makes no progress in time; returns why it stopped.

    Progress is a new line in ``out``: the worker gets ``startup`` seconds for its first line (set-up and
    exercise cells) and ``per_exercise`` seconds for each line after that."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(command, env=env, cwd=repo_root(), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        lines, deadline, allowed = 0, time.monotonic() + startup, startup
        while proc.poll() is None:
            time.sleep(0.05)
            now_lines = Path(out).read_text(encoding="utf-8").count("\n")
            if now_lines > lines:
                lines, deadline, allowed = now_lines, time.monotonic() + per_exercise, per_exercise
            elif time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return f"the grader's worker stopped answering for {allowed:.0f} s (an infinite loop in native code?)"
        stderr.seek(0)
        return f"the grader's worker exited with code {proc.returncode}: {stderr.read().strip()[-500:]}"


def grade_notebook(
    notebook: Path, part: str, *, only: list[str] | None = None, timeout: float | None = None
) -> dict[str, Result]:
    """Grade a saved notebook of ``part`` in worker processes; returns results by exercise id.

    ``only`` limits grading to some exercise ids. A worker that hangs or dies costs only the exercise it
    was on: the rest are graded by a fresh worker. ``timeout`` overrides how long one check may go without
    an answer before its worker is killed (default: twice the check limit, plus 10 s).
    """
    from utils.checks import exercises_of

    wanted = [e.id for e in exercises_of(part) if not only or e.id in only]
    results: dict[str, Result] = {}
    if not Path(notebook).exists():
        return {i: Result(i, FAILED, f"notebook {notebook} not found") for i in wanted}
    cell_limit, check_limit = _limits()
    startup = 120.0 + cell_limit * max(1, len(notebook_cells(Path(notebook))))
    per_exercise = timeout or 2 * check_limit + 10
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root()), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("HF_HUB_OFFLINE", "1")
    while len(results) < len(wanted):
        remaining = [i for i in wanted if i not in results]
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as handle:
            out = handle.name
        command = [
            sys.executable,
            "-m",
            "utils.course.grading",
            "--worker",
            str(notebook),
            part,
            out,
            "--only",
            ",".join(remaining),
            "--skip",
            ",".join(results),
        ]
        crash = _run_worker(command, env, out, startup=startup, per_exercise=per_exercise)
        started: str | None = None
        for line in Path(out).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "started" in record:
                started = record["started"]
            else:
                results[record["exercise"]] = Result(**record)
                started = None
        os.unlink(out)
        if len(results) < len(wanted):
            culprit = started or next(i for i in wanted if i not in results)
            results[culprit] = Result(culprit, FAILED, f"Exercise {culprit}: {crash}")
    return {i: results[i] for i in wanted}


SYMBOLS = {PASSED: "✅", FAILED: "❌", NOT_ATTEMPTED: "⏭ ", USED_REFERENCE: "📖"}


def describe(result: Result, title: str = "") -> str:
    """One line for one exercise's grade, saying each thing once: ``❌ Exercise 1.4 (title) failed: why``."""
    label = f"Exercise {result.exercise}" + (f" ({title})" if title else "")
    detail = result.message
    for prefix in (f"{label} failed: ", f"{label}: ", f"Exercise {result.exercise}: "):
        detail = detail.removeprefix(prefix)
    if result.status == PASSED:
        return f"{SYMBOLS[PASSED]} {label} passed."
    if result.status == NOT_ATTEMPTED:
        return f"{SYMBOLS[NOT_ATTEMPTED]} {label}: not attempted yet."
    if result.status == USED_REFERENCE:
        return f"{SYMBOLS[USED_REFERENCE]} {label}: used the reference, not graded as passed: {detail}"
    return f"{SYMBOLS[FAILED]} {label} failed: {detail}"


# ---------------------------------------------------------------------------------------------------------
# Reference and stub objects, for the course's own tests.
# ---------------------------------------------------------------------------------------------------------


@cache
def reference_namespace(part: str) -> dict[str, Any]:
    """The objects the master's setup and exercise cells define, solutions included (the reference)."""
    namespace, errors = run_cells(master_cells(part, solution=True), filename=f"solutions/{part}.py", cell_timeout=120)
    if errors:
        raise RuntimeError(f"the master of {part} does not run: {errors}")
    return namespace


def stub_namespace(part: str) -> dict[str, Any]:
    """The objects the learner's untouched exercise notebook defines (every solution a stub)."""
    namespace, errors = run_cells(
        master_cells(part, solution=False), filename=f"notebooks/{part}.ipynb", cell_timeout=120
    )
    if errors:
        raise RuntimeError(f"the exercise notebook of {part} does not run: {errors}")
    return namespace


def part_of(notebook: Path) -> str:
    """The part a saved notebook is, from its metadata or its content (not its file name, which a learner may
    have changed); a clear error if it is no course notebook."""
    from utils.course.identify import part_of_file

    part, how = part_of_file(notebook)
    if part is None:
        raise SystemExit(
            f"{notebook}: cannot tell which part this is ({how}). Name the part: "
            f"python -m utils.course.grading {notebook} 01_toy_models"
        )
    return part


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Grade a course notebook exercise by exercise.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("notebook")
    parser.add_argument("part", nargs="?")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--only", default="")
    parser.add_argument("--skip", default="")
    args = parser.parse_args(argv)
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    if args.worker:
        _worker(args.notebook, args.part, args.out, split(args.only), split(args.skip))
        return 0
    from utils.checks import exercises_of

    part = args.part or part_of(Path(args.notebook))
    titles = {e.id: e.title for e in exercises_of(part)}
    results = grade_notebook(Path(args.notebook), part, only=split(args.only) or None)
    for result in results.values():
        print(describe(result, titles.get(result.exercise, "")))
    return 0 if all(r.status != FAILED for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
