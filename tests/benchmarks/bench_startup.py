"""How long do the course's commands take to start? Wall-clock seconds of fresh interpreters, medians of repeats.

    python tests/benchmarks/bench_startup.py             # 5 repeats of each
    python tests/benchmarks/bench_startup.py --repeats 3

Measures, each in a new process from the repository root:

- ``python -m pytest --collect-only -q``: collecting the learner's grading tests (44 exercises), all that a
  ``python -m pytest`` run does before the grader's workers start;
- ``python -m utils.course.grading --help``: the grading command up to its argument parser, and the import of
  ``utils.course.grading`` with the naming of a notebook's part (``known_parts``), what it does before it starts
  a worker;
- the grader's worker up to its first notebook cell: ``utils.course.grading``, ``_quiet_plots`` and every part's
  checks (``utils.checks.exercises_of``), which import torch;
- ``python -c "import torch"`` alone, the floor of anything that imports it, and ``python -c pass``.

Aim (the issue on start-up): each command under 2 s on an idle 2-core machine. The figures depend on what else
runs on the machine: the load average is printed beside each. ``tests/course/test_startup.py`` checks, untimed,
which modules each command imports. Figures measured so far are in ``tests/benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("01_toy_models", "02a_sae_toy_models", "02b_sae_gelu_1l", "03_dead_latents", "04_latent_activations")
PARTS += ("05_latent_effects",)

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "pytest --collect-only (grading tests)": [
        *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    ],
    "python -m utils.course.grading --help": [sys.executable, "-m", "utils.course.grading", "--help"],
    "grading parent: import + known_parts()": [
        sys.executable,
        "-c",
        "import utils.course.grading\nfrom utils.course.identify import known_parts\nknown_parts()",
    ],
    "grader's worker up to its first cell": [
        sys.executable,
        "-c",
        "from utils.course.grading import _quiet_plots\n_quiet_plots()\nfrom utils.checks import exercises_of\n"
        + "".join(f"exercises_of({part!r})\n" for part in PARTS),
    ],
}


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{load()} at start; {os.cpu_count()} CPUs; {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, command in COMMANDS.items():
        subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=True)  # warm the file cache
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        print(
            f"{name:42s} median {statistics.median(times):5.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
            f"{args.repeats} runs); {load()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
