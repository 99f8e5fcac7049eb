"""Generate the generated parts of the facilitator guide (``solutions/teachers/``), so that they cannot drift.

    python -m utils.course.teachers_guide            # write solutions/teachers/schedule.md and one NN_name.md per part
    python -m utils.course.teachers_guide --check    # fail if those files are stale

Everything comes from the course itself, for whatever parts exist (rerun after adding one):

- **learning goals**: the "you will learn" column of the table under "What you will do" in each master;
- **exercises, times, difficulty, checkpoints**: the master's ``## Exercise N.M`` headers and the
  other ``##`` sections between them (where the room regroups to look at a training run together);
- **common mistakes and the grader's message for each**: every wrong implementation in
  ``tests/wrong/wrong_NN_name.py`` (its docstring's first line states the mistake), run through the
  exercise's check to capture the exact message a learner with that bug reads;
- **schedules**: a one-day and a two-day workshop, from each part's time (``utils.course.syllabus`` where it
  exists, else the README's Parts table);
- **discussion questions**: hand-written, in ``solutions/teachers/notes/NN_name.md``, copied in.

The hand-written guide itself is ``solutions/teachers/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import repo_root

#: Working minutes per workshop day (four 90-minute sessions, 09:00-17:00 with breaks and lunch).
SESSIONS = [("09:00", "10:30"), ("11:00", "12:30"), ("13:30", "15:00"), ("15:30", "17:00")]
DAY_MINUTES = 4 * 90


def guide_dir() -> Path:
    return repo_root() / "solutions" / "teachers"


# ---------------------------------------------------------------------------------------------------------
# Reading a part: its master's structure, its time, its wrong implementations.
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Mistake:
    """One wrong implementation: the mistake in words and the message the check gives for it."""

    name: str
    mistake: str
    message: str


@dataclass
class ExerciseInfo:
    id: str
    title: str
    minutes: int | None
    difficulty: int | None
    importance: int | None
    objects: tuple[str, ...] = ()
    mistakes: list[Mistake] = field(default_factory=list)


@dataclass
class PartInfo:
    name: str
    title: str
    hours: tuple[float, float] | None  # the learner's time, low and high, in hours
    goals: list[tuple[str, str]]  # (exercise id, what you will learn)
    sections: list[tuple[str, list[str]]]  # (a non-exercise ## section, the exercise ids right before it)
    exercises: list[ExerciseInfo]


EXERCISE_HEADER = re.compile(r"^#{2,3} Exercise (?P<id>\d+\.\d+):\s*(?P<title>.+)$", re.M)


def _dots(text: str, label: str, dot: str) -> int | None:
    match = re.search(rf"\*\*{label}\*\*\s*([🔴🔵⚪]+)", text)
    return match[1].count(dot) if match else None


def read_structure(part: str) -> tuple[str, list[tuple[str, str]], list[tuple[str, list[str]]], list[ExerciseInfo]]:
    """A master's title, learning goals, checkpoint sections and exercise headers, in notebook order."""
    from utils.course.build_notebooks import Part, read_master

    cells = [c for c in read_master(Part(part)).cells if c.cell_type == "markdown"]
    title = next((line[2:].strip() for c in cells for line in c.source.splitlines() if line.startswith("# ")), part)
    goals = []
    for c in cells:
        if "you will learn" in c.source:
            for line in c.source.splitlines():
                row = [x.strip() for x in line.strip().strip("|").split("|")]
                if len(row) == 3 and re.fullmatch(r"\d+\.\d+", row[0]):
                    goals.append((row[0], f"{row[1]}: {row[2]}"))
    exercises, sections, since = [], [], []
    for c in cells:
        for line in c.source.splitlines():
            header = EXERCISE_HEADER.match(line)
            if header:
                text = c.source
                minutes = re.search(r"spend up to (\d+) minutes", text)
                exercises.append(
                    ExerciseInfo(
                        header["id"],
                        header["title"].strip(),
                        int(minutes[1]) if minutes else None,
                        _dots(text, "Difficulty", "🔴"),
                        _dots(text, "Importance", "🔵"),
                    )
                )
                since.append(header["id"])
            elif line.startswith("## ") and line[3:].strip().lower() not in {"setup", "set-up", "summary"} and since:
                sections.append((line[3:].strip(), since))
                since = []
    if since:
        sections.append(("Summary", since))
    return title, goals, sections, exercises


def part_hours() -> dict[str, tuple[float, float]]:
    """Each part's learner time in hours (low, high), from ``utils.course.syllabus``."""
    from utils.course import syllabus

    hours = {entry.name: parse_hours(entry.learner_time) for entry in syllabus.PARTS}
    return {name: parsed for name, parsed in hours.items() if parsed}


def parse_hours(text: str) -> tuple[float, float] | None:
    """``"3–4 h"`` → (3, 4); ``"2–2½ hours"`` → (2, 2.5); ``"90 min"`` → (1.5, 1.5); else None."""
    text = re.sub(r"(\d)½", r"\1.5", text)
    match = re.search(r"(\d+(?:\.\d+)?)\s*(?:[–-]|to)?\s*(\d+(?:\.\d+)?)?\s*(h|hours?|min)", text)
    if not match:
        return None
    low = float(match[1])
    high = float(match[2]) if match[2] else low
    scale = 1 / 60 if match[3] == "min" else 1
    return low * scale, high * scale


def wrong_objects(entry, exercise, reference: dict) -> list:
    """The wrong object(s) in a ``WRONG`` entry: the ``@mistake``-decorated ones, else those not the reference's."""
    objs = list(entry) if isinstance(entry, tuple) else [entry]
    marked = [o for o in objs if hasattr(o, "expected_message")]
    if marked:
        return marked
    return [o for name, o in zip(exercise.objects, objs) if reference.get(name) is not o] or objs


def first_line(obj) -> str:
    """The mistake a wrong object models: its docstring's first line (the convention), else, for older
    entries, the first comment in its source, else its name in words."""
    import inspect

    own_doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = (own_doc or "").strip()
    if doc:
        return doc.splitlines()[0].strip()
    try:
        comment = re.search(r"#\s*(.+)$", inspect.getsource(obj), re.M)
    except (OSError, TypeError):
        comment = None
    if comment:
        return comment[1].strip()[0].upper() + comment[1].strip()[1:] + "."
    name = getattr(obj, "__name__", type(obj).__name__)
    if name.islower():  # a snake_case name reads as words
        return name.replace("_", " ").strip().capitalize() + "."
    return f"`{name}` (no description yet)"


def grader_message(exercise, entry) -> str:
    """The message the learner reads for this wrong implementation: the check, run on it."""
    from utils.checks import CheckFailure

    objs = entry if isinstance(entry, tuple) else (entry,)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exercise.check(*objs, quiet=True)
    except CheckFailure as failure:
        return re.sub(rf"^Exercise {re.escape(exercise.id)} \(.*?\) failed: ", "", str(failure))
    except Exception as error:
        return f"(the check crashed: {type(error).__name__}: {error})"
    return "(the check PASSES this wrong implementation: fix the check)"


def read_part(part: str, hours: dict[str, tuple[float, float]]) -> PartInfo:
    """Everything the guide says about one part."""
    import importlib

    from utils.checks import exercises_of
    from utils.course.grading import reference_namespace

    title, goals, sections, exercises = read_structure(part)
    checks = {e.id: e for e in exercises_of(part)}
    try:
        wrong = importlib.import_module(f"tests.wrong.wrong_{part}").WRONG
    except ImportError:
        wrong = {}
    reference = reference_namespace(part) if wrong else {}
    known = {e.id for e in exercises}
    exercises += [ExerciseInfo(e.id, e.title, None, None, None) for e in checks.values() if e.id not in known]
    for info in exercises:
        check = checks.get(info.id)
        if check is None:
            continue
        info.objects = check.objects
        for entry in wrong.get(info.id, []):
            objs = wrong_objects(entry, check, reference)
            info.mistakes.append(
                Mistake(
                    ", ".join(getattr(o, "__name__", "?") for o in objs),
                    " / ".join(first_line(o) for o in objs),
                    grader_message(check, entry),
                )
            )
    return PartInfo(part, title, hours.get(part), goals, sections, exercises)


# ---------------------------------------------------------------------------------------------------------
# Writing the pages.
# ---------------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt_hours(hours: tuple[float, float] | None) -> str:
    if not hours:
        return "time not stated yet"
    low, high = (f"{h:g}" for h in hours)
    return f"{low} h" if low == high else f"{low}–{high} h"


def part_page(info: PartInfo) -> str:
    """``solutions/teachers/NN_name.md``: one part's goals, exercises, checkpoints, mistakes and discussion."""
    notes = guide_dir() / "notes" / f"{info.name}.md"
    out = [
        f"# {info.title}: facilitator notes",
        "",
        f"<!-- Generated by `python -m utils.course.teachers_guide` from solutions/{info.name}.py, its checks and "
        f"tests/wrong/wrong_{info.name}.py; edit those (or notes/{info.name}.md), not this file. -->",
        "",
        f"Learner notebook: [`notebooks/{info.name}.ipynb`](../../notebooks/{info.name}.ipynb) · reference: "
        f"[`solutions/{info.name}.ipynb`](../{info.name}.ipynb) · learner time: **{_fmt_hours(info.hours)}**.",
        "",
        "## Learning goals",
        "",
    ]
    out += [f"- **{i}** {_cell(goal)}" for i, goal in info.goals] or ['- (the master has no "What you will do" table)']
    out += [
        "",
        "## Exercises and checkpoints",
        "",
        "The room regroups at each checkpoint: the section after a run of exercises, usually a training run "
        "whose plot is worth looking at together. A learner still stuck on an exercise there opens its "
        "collapsed **Solution** block, pastes it, runs the check (✅) and moves on with the room.",
        "",
        "| exercise | title | minutes | difficulty | importance |",
        "|---|---|---|---|---|",
    ]
    for e in info.exercises:
        stars = lambda n, c: (c * n) if n is not None else "?"  # noqa: E731
        out.append(
            f"| {e.id} | {_cell(e.title)} | {e.minutes or '?'} | {stars(e.difficulty, '●')} "
            f"| {stars(e.importance, '●')} |"
        )
    out += ["", "Checkpoints (in notebook order):", ""]
    out += [f"{k}. after {', '.join(ids)}: **{_cell(name)}**" for k, (name, ids) in enumerate(info.sections, 1)]
    out += [
        "",
        "## Common mistakes and what the grader says",
        "",
        "Each is a realistic wrong implementation from `tests/wrong/`, and the message is the one its check "
        "gives, captured by running it. A learner who pastes the message to you has made that mistake, or "
        "one that breaks the same property.",
        "",
    ]
    for e in info.exercises:
        out += [f"### {e.id} {e.title}", ""]
        if not e.mistakes:
            out += ["(no wrong implementations recorded for this exercise)", ""]
        for m in e.mistakes:
            out += [f"- **{_cell(m.mistake)}** (`{m.name}`)", f"  > {_cell(m.message)}"]
        out.append("")
    out += ["## Discussion questions", ""]
    if notes.is_file():
        out.append(notes.read_text(encoding="utf-8").strip())
    else:
        out.append(f"(none written yet: add `solutions/teachers/notes/{info.name}.md`)")
    return "\n".join(out).rstrip() + "\n"


def _clock(minutes_into_day: int, *, ending: bool = False) -> str:
    """The clock time ``minutes_into_day`` working minutes after 09:00, skipping the breaks (``ending``: a
    time that falls on a break is the end of the session before it, not the start of the next)."""
    for start, end in SESSIONS:
        h0, m0 = map(int, start.split(":"))
        length = (int(end[:2]) * 60 + int(end[3:])) - (h0 * 60 + m0)
        if minutes_into_day < length or (ending and minutes_into_day == length):
            t = h0 * 60 + m0 + minutes_into_day
            return f"{t // 60:02d}:{t % 60:02d}"
        minutes_into_day -= length
    return "17:00"


def plan(parts: list[PartInfo], days: int) -> list[list[tuple[int, PartInfo]]]:
    """Parts per day, in course order, each at its low time estimate, while they fit; the rest are left out."""
    schedule: list[list[tuple[int, PartInfo]]] = [[] for _ in range(days)]
    day, used = 0, 0
    for info in parts:
        if not info.hours:
            continue
        minutes = round(info.hours[0] * 60)
        if used + minutes > DAY_MINUTES and used:
            day, used = day + 1, 0
        if day >= days or minutes > DAY_MINUTES:
            break
        schedule[day].append((used, info))
        used += minutes
    return schedule


def schedule_page(parts: list[PartInfo]) -> str:
    """``solutions/teachers/schedule.md``: a one-day and a two-day workshop from the parts' times."""
    out = [
        "# Workshop schedules",
        "",
        "<!-- Generated by `python -m utils.course.teachers_guide` from each part's time and its master's exercises; "
        "do not edit by hand. -->",
        "",
        f"A day is four 90-minute sessions ({', '.join(f'{a}–{b}' for a, b in SESSIONS)}): "
        f"{DAY_MINUTES // 60} working hours, with coffee at 10:30 and 15:00 and lunch at 12:30. Each part gets "
        "the low end of its time estimate, the pace of a room with a teacher who calls checkpoints; within "
        "a part, each checkpoint's time comes from the exercises' own minute estimates.",
        "",
        "| part | learner time |",
        "|---|---|",
    ]
    out += [f"| [{p.title}]({p.name}.md) | {_fmt_hours(p.hours)} |" for p in parts]
    for days, label in ((1, "One-day workshop"), (2, "Two-day workshop")):
        out += ["", f"## {label}", ""]
        schedule = plan(parts, days)
        placed = {info.name for day in schedule for _, info in day}
        for d, day in enumerate(schedule, 1):
            if days > 1:
                out += [f"### Day {d}", ""]
            out += ["| time | what |", "|---|---|"]
            end = 0
            for start, info in day:
                total = round(info.hours[0] * 60)
                out.append(
                    f"| {_clock(start)} | **{_cell(info.title)}** ({_fmt_hours(info.hours)}): start together, "
                    f"read the introduction |"
                )
                budget = {e.id: e.minutes or 10 for e in info.exercises}
                spent, whole = 0, sum(budget.values()) or 1
                for name, ids in info.sections:
                    spent += sum(budget.get(i, 0) for i in ids)
                    at = start + round(total * spent / whole)
                    what = (
                        "end of the part: summary, discussion questions"
                        if name == "Summary"
                        else f"checkpoint: {_cell(name)}"
                    )
                    out.append(f"| {_clock(min(at, DAY_MINUTES), ending=True)} | {what} (after {', '.join(ids)}) |")
                end = start + total
            if end < DAY_MINUTES:
                out.append(
                    f"| {_clock(end)} | buffer: stragglers catch up; discussion questions; "
                    f"early finishers start the next part |"
                )
            out.append("| 17:00 | end |")
            out.append("")
        rest = [p for p in parts if p.name not in placed]
        if rest:
            out.append(
                "Not in this schedule (homework, or a further day): "
                + ", ".join(f"[{p.title}]({p.name}.md) ({_fmt_hours(p.hours)})" for p in rest)
                + "."
            )
    return "\n".join(out).rstrip() + "\n"


def generated_files() -> dict[Path, str]:
    """The generated pages of the guide, by path, for every part with a master and checks."""
    from utils.checks import exercises_of
    from utils.course.build_notebooks import parts

    hours = part_hours()
    infos = []
    for part in parts():
        try:
            if not exercises_of(part.name):
                continue
        except ImportError:
            continue
        infos.append(read_part(part.name, hours))
    files = {guide_dir() / f"{info.name}.md": part_page(info) for info in infos}
    files[guide_dir() / "schedule.md"] = schedule_page(infos)
    return files


def _numbers_blurred(text: str) -> str:
    """Numbers in grader messages (sizes of mismatches) may differ in the last digit across torch builds."""
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated page is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if args.check:
            if current is None or _numbers_blurred(current) != _numbers_blurred(text):
                stale.append(path)
        elif current != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(repo_root())}")
    if stale:
        print("Stale teachers' guide pages (run `python -m utils.course.teachers_guide`):", file=sys.stderr)
        for path in stale:
            print(f"  {path.relative_to(repo_root())}", file=sys.stderr)
        return 1
    if args.check:
        print("The teachers' guide is in sync with the course.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
