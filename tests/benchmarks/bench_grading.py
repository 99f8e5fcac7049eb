"""How long `python -m pytest` (the learner's grading run) takes: wall time and CPU time, fresh and solved.

    python tests/benchmarks/bench_grading.py

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


def main() -> None:
    import nbformat

    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
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
