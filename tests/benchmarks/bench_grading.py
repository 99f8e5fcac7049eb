"""How long grading takes: a learner's `python -m pytest` run (fresh and solved), and a teacher's class grading
of 30 notebooks of one part with and without the sandbox (interleaved: sandboxed, plain, sandboxed, plain...).

    python tests/benchmarks/bench_grading.py                  # both
    python tests/benchmarks/bench_grading.py --class-only --rounds 3 --learners 30 --part 01_toy_models

Prints figures; asserts nothing (speed is measured here, never in a test). The course aims at 30 s or less
of wall time for every part on an otherwise idle 2-core machine; the CPU time (all processes) is the figure
that does not depend on what else the machine is doing.

The figures measured so far, with the machine and its load, are in ``tests/benchmarks/README.md``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.course.parts, run as a script
from utils.course.build_notebooks import build, parts, read_master
from utils.paths import repo_root


def grade(folder: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (this run's processes) and pytest's last line, for one grading run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--notebooks={folder}"], cwd=repo_root(), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout.strip().splitlines()[-1]


def grade_class(folder: Path, sandbox: bool) -> tuple[float, float, str]:
    """Wall and CPU seconds (all processes) of ``python -m utils.course.grade_class folder``, and its last line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, "-m", "utils.course.grade_class", str(folder), "--csv", str(folder / "grades.csv")]
    proc = subprocess.run(command + ([] if sandbox else ["--no-sandbox"]), cwd=repo_root(), capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return wall, cpu, lines[-1] if lines else f"exit code {proc.returncode}"


def class_benchmark(part_name: str, learners: int, rounds: int) -> None:
    """Class grading with the sandbox against without it, interleaved; prints each run and the median ratios."""
    import json
    import statistics

    from tests.course.parts import solved_by_a_learner
    from utils.course.sandbox import bwrap_path

    print(f"class grading: {learners} solved notebooks of {part_name}, bwrap {bwrap_path() or 'not available'}")
    ratios_wall = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "class")
        folder.mkdir()
        solution = json.loads((repo_root() / "solutions" / f"{part_name}.ipynb").read_text(encoding="utf-8"))
        for k in range(learners):
            (folder / f"learner{k:02d}_{part_name}.ipynb").write_text(json.dumps(solved_by_a_learner(solution)))
        for r in range(rounds):
            boxed = grade_class(folder, sandbox=True)
            plain = grade_class(folder, sandbox=False)
            load = os.getloadavg()[0]
            print(f"round {r + 1}: sandboxed wall {boxed[0]:6.1f} s CPU {boxed[1]:6.1f} s | "
                  f"plain wall {plain[0]:6.1f} s CPU {plain[1]:6.1f} s | load {load:.1f}")  # fmt: skip
            ratios_wall.append(boxed[0] / plain[0])
        print(f"  last lines: [{boxed[2]}] [{plain[2]}]")
    # The sandboxed run's CPU time is undercounted (what runs in bwrap's PID namespace is not all reaped by us):
    # compare wall times, on an otherwise idle machine.
    print(f"sandboxed / plain: wall {statistics.median(ratios_wall):.2f}x (median of {rounds} rounds; aim <= 1.5x)")


def main() -> None:
    import argparse

    import nbformat

    parser = argparse.ArgumentParser()
    parser.add_argument("--class-only", action="store_true")
    parser.add_argument("--part", default="01_toy_models")
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    class_benchmark(args.part, args.learners, args.rounds)
    if args.class_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh, solved = Path(tmp, "fresh"), Path(tmp, "solved")
        fresh.mkdir(), solved.mkdir()
        for part in parts():
            master = read_master(part)
            nbformat.write(build(master, part.name, solution=False), fresh / f"{part.name}.ipynb")
            nbformat.write(build(master, part.name, solution=True), solved / f"{part.name}.ipynb")
        for label, folder in [("fresh notebooks (all skipped)", fresh), ("solved notebooks (all passed)", solved)]:
            wall, cpu, last = grade(folder)
            print(f"{label:32} wall {wall:5.1f} s, CPU {cpu:5.1f} s   [{last}]")


if __name__ == "__main__":
    main()
