"""The package's layout: who imports whom (``utils.LAYERS``), no import cycle, and the old flat paths.

The rule lives in ``utils/__init__.py``; this test reads every module of ``utils/`` as text (``ast``), every
``import`` statement included, those inside functions too, and fails on an import that runs against the
rule or closes a cycle. Each checker is also run on a small made-up package that breaks it, so that a
checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

import utils
from utils import _moved
from utils.paths import repo_root

ROOT = repo_root()
COHORT = Path(__file__).parent / "cohort_2026_12"


# ---------------------------------------------------------------------------------------------------------
# Reading the imports


def module_name(path: Path, package_root: Path) -> str:
    """``utils/sae/model.py`` -> ``utils.sae.model``; ``utils/sae/__init__.py`` -> ``utils.sae``."""
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package_root: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement of the file, at any depth, resolved to the
    deepest module of the package it names (``from utils.sae import model`` -> ``utils.sae.model``)."""
    package = package_root.name
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = {module_name(p, package_root) for p in package_root.rglob("*.py")}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == package]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != package:
                continue
            for alias in node.names:  # `from utils.sae import model` names a module; `import SAE` a name
                sub = f"{node.module}.{alias.name}"
                out.append((sub if sub in known else node.module, node.lineno))
    return out


def layer_of(module: str) -> str | None:
    """The folder (or top-level module) of ``utils`` that ``module`` belongs to; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rule_breaks(package_root: Path, layers: dict[str, frozenset[str]]) -> list[str]:
    """Every import in the package that runs against ``layers`` (a folder importing one it may not)."""
    breaks = []
    for path in sorted(package_root.rglob("*.py")):
        source = module_name(path, package_root)
        src_layer = layer_of(source)
        if src_layer is None or src_layer.startswith("_"):
            continue  # the package's own __init__ and private plumbing (utils/_moved.py) import by name only
        if src_layer not in layers:
            breaks.append(f"{source}: folder {src_layer!r} is not in the rule (add it to utils.LAYERS)")
            continue
        for target, line in imports_of(path, package_root):
            dst_layer = layer_of(target)
            if dst_layer in (None, src_layer) or dst_layer in layers[src_layer]:
                continue
            breaks.append(
                f"{path.relative_to(package_root.parent)}:{line} imports {target} ({src_layer} -> "
                f"{dst_layer}: not allowed; {src_layer} may import {sorted(layers[src_layer])})"
            )
    return breaks


def import_cycles(package_root: Path) -> list[list[str]]:
    """Cycles among the package's modules (lazy imports inside functions count as edges)."""
    graph: dict[str, set[str]] = {}
    for path in package_root.rglob("*.py"):
        source = module_name(path, package_root)
        graph[source] = {target for target, _ in imports_of(path, package_root) if target != source}
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


# ---------------------------------------------------------------------------------------------------------
# The rule holds


def test_every_folder_of_utils_is_in_the_rule() -> None:
    folders = {p.name for p in (ROOT / "utils").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (ROOT / "utils").glob("*.py") if not p.stem.startswith("_")}
    assert folders | modules == set(utils.LAYERS), "utils.LAYERS must name every folder and top-level module"


def test_no_import_runs_against_the_rule() -> None:
    breaks = rule_breaks(ROOT / "utils", utils.LAYERS)
    assert not breaks, "imports against the rule in utils/__init__.py:\n" + "\n".join(breaks)


def test_no_import_cycle() -> None:
    cycles = import_cycles(ROOT / "utils")
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_language_model_side_knows_no_sae() -> None:
    """The rule's most useful line, spelled out: nothing in utils/lm imports utils.sae, even lazily."""
    offenders = [
        f"{p.name}:{line} {target}"
        for p in (ROOT / "utils" / "lm").glob("*.py")
        for target, line in imports_of(p, ROOT / "utils")
        if target.startswith("utils.sae")
    ]
    assert not offenders


# ---------------------------------------------------------------------------------------------------------
# The checkers can fail


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "utils"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in root.rglob("*.py")}:
        (folder / "__init__.py").touch()
    return root


def test_the_rule_check_fails_on_a_forbidden_import_even_inside_a_function(tmp_path) -> None:
    root = _package(
        tmp_path,
        {
            "lm/loading.py": "from utils.paths import data_dir\n",
            "sae/model.py": "from utils.lm.loading import x\n",
            "lm/activations.py": "def f():\n    from utils.sae.model import SAE\n    return SAE\n",
            "paths.py": "",
        },
    )
    breaks = rule_breaks(root, utils.LAYERS)
    assert len(breaks) == 1 and "lm/activations.py:2 imports utils.sae.model (lm -> sae" in breaks[0]


def test_the_rule_check_fails_between_siblings_and_on_a_folder_outside_the_rule(tmp_path) -> None:
    root = _package(
        tmp_path,
        {
            "parts/plots.py": "from utils import dashboard\n",
            "dashboard/data.py": "",
            "extras/thing.py": "import utils.paths\n",
            "paths.py": "",
        },
    )
    breaks = rule_breaks(root, utils.LAYERS)
    assert any("parts -> dashboard" in b for b in breaks) and any("'extras' is not in the rule" in b for b in breaks)


def test_the_cycle_check_finds_a_cycle_closed_by_a_lazy_import(tmp_path) -> None:
    root = _package(
        tmp_path,
        {
            "sae/model.py": "def load():\n    from utils.sae import pretrained\n",
            "sae/pretrained.py": "from utils.sae.model import SAE\n",
        },
    )
    assert import_cycles(root) == [["utils.sae.model", "utils.sae.pretrained", "utils.sae.model"]]


# ---------------------------------------------------------------------------------------------------------
# The flat layout's paths, for the cohort that started on them


def _cohort_import_lines() -> list[str]:
    lines = set()
    for path in sorted(COHORT.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils"):
                    lines.update((node.module, alias.name) for alias in node.names)
    return sorted(lines)


def test_every_name_the_cohort_imports_resolves() -> None:
    """Each ``from utils.X import name`` of the frozen notebooks gives an object (the new one)."""
    pairs = _cohort_import_lines()
    assert len(pairs) > 30  # the frozen notebooks import this many names from the package
    missing = []
    for module, name in pairs:
        try:
            mod = importlib.import_module(module)
            obj = getattr(mod, name) if hasattr(mod, name) else importlib.import_module(f"{module}.{name}")
        except (ImportError, AttributeError) as error:
            missing.append(f"from {module} import {name}: {error}")
            continue
        assert obj is not None
    assert not missing, "\n".join(missing)


def test_an_old_path_gives_the_new_objects_not_copies() -> None:
    from utils.feature_stats import compute_feature_stats  # renamed
    from utils.lm.loading import load_model as new_load_model
    from utils.loading import load_model, load_pretrained_sae  # split in two
    from utils.plot_saes import plot_recovery_bars  # noqa: F401  moved whole: the module itself
    from utils.sae.latent_stats import compute_latent_stats
    from utils.sae.pretrained import load_pretrained_sae as new_load_pretrained_sae

    assert load_model is new_load_model and load_pretrained_sae is new_load_pretrained_sae
    assert compute_feature_stats is compute_latent_stats
    assert importlib.import_module("utils.plot_saes") is importlib.import_module("utils.parts.plot_saes")
    with pytest.raises(AttributeError, match=r"moved to utils.lm.loading"):
        importlib.import_module("utils.loading").no_such_name  # noqa: B018


def test_every_moved_module_resolves_to_modules_that_exist() -> None:
    for old, targets in _moved.MOVED.items():
        assert not (ROOT / Path(*old.split("."))).with_suffix(".py").exists(), f"{old} is still a file"
        for target in targets:
            importlib.import_module(target)
        for old_name, new_name in _moved.RENAMED.get(old, {}).items():
            assert getattr(importlib.import_module(old), old_name) is getattr(
                next(m for m in map(importlib.import_module, targets) if hasattr(m, new_name)), new_name
            )


COHORT_PARTS = sorted({p.name.split(".")[0] for p in COHORT.glob("*.ipynb")})


@pytest.mark.parametrize(
    "part", [pytest.param(p, marks=[] if p == "05_latent_effects" else pytest.mark.slow) for p in COHORT_PARTS]
)
def test_a_notebook_on_the_old_paths_still_grades(part: str, tmp_path) -> None:
    """The cohort's solved notebook grades all passed, and its fresh one all not attempted, as before the move; an
    exercise added since (its objects nowhere in the old notebook) is "not attempted", saying it is newer.

    Part 5 (which imports the most moved names) runs with the course tests; the rest with ``-m slow``."""
    from utils.checks import exercises_of
    from utils.course.grading import NOT_ATTEMPTED, PASSED, grade_notebook, notebook_text

    from tests.course.parts import solved_by_a_learner

    text = notebook_text(COHORT / f"{part}.solution.ipynb")
    newer = {e.id for e in exercises_of(part) if not any(name in text for name in e.objects)}
    own_words = tmp_path / f"{part}.ipynb"  # the cohort's solutions as a learner's own (the reference's code is
    own_words.write_text(  # graded "used the reference")
        json.dumps(solved_by_a_learner(json.loads((COHORT / f"{part}.solution.ipynb").read_text(encoding="utf-8")))),
        encoding="utf-8",
    )
    solved = grade_notebook(own_words, part)
    expected = {e: NOT_ATTEMPTED if e in newer else PASSED for e in solved}
    assert {e: r.status for e, r in solved.items()} == expected, [
        f"{e}: {r.message}" for e, r in solved.items() if r.status != expected[e]
    ]
    assert all("newer than your notebook" in solved[e].message for e in newer)
    fresh = grade_notebook(COHORT / f"{part}.learner.ipynb", part)
    assert {r.status for r in fresh.values()} == {NOT_ATTEMPTED}, [
        f"{e}: {r.message}" for e, r in fresh.items() if r.status != NOT_ATTEMPTED
    ]


def test_the_course_itself_uses_only_the_new_paths() -> None:
    """Only the cohort's frozen notebooks (and the tests of the old paths) may import an old path."""
    old = set(_moved.MOVED)
    files = [p for folder in ("utils", "tests", "solutions", "data/build") for p in (ROOT / folder).rglob("*.py")]
    files += [ROOT / "install.py"]
    offenders = []
    for path in files:
        if path == Path(__file__) or path.name == "_moved.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names if name in old]
    assert not offenders, "old import paths (see utils/_moved.py for the new ones):\n" + "\n".join(offenders)
