"""environment.yml describes the same environment as pyproject.toml, and install.py pins the same torch."""

from __future__ import annotations

import re
import tomllib

from utils.paths import repo_root

ROOT = repo_root()


def normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), ",".join(sorted(s.strip() for s in spec.split(",") if s.strip()))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def conda_pip_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.strip() == "- pip:"))
    return [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]


def test_environment_yml_lists_exactly_the_pip_requirements() -> None:
    project = pyproject()["project"]
    wanted = set(map(normalise, project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        wanted |= set(map(normalise, extra))
    conda = [r for r in conda_pip_requirements() if not r.startswith("-e")]
    got = set(map(normalise, conda))
    wanted.discard(normalise("torch>=2.4,<3"))
    assert ("torch", "==2.13.0") in got, "environment.yml should pin torch as install.py does"
    got.discard(("torch", "==2.13.0"))
    assert got == wanted, f"only in environment.yml: {sorted(got - wanted)}; only in pyproject: {sorted(wanted - got)}"
    assert "-e ." in conda_pip_requirements()


def test_install_script_pins_the_same_torch_and_python_range() -> None:
    install = (ROOT / "install.py").read_text(encoding="utf-8")
    assert 'TORCH_PIN = "torch==2.13.0"' in install
    yml = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert pyproject()["project"]["requires-python"] == ">=3.11,<3.14"
    assert "python>=3.11,<3.14" in yml and "SUPPORTED = ((3, 11), (3, 13))" in install


def test_transformer_lens_and_ipywidgets_bounds() -> None:
    deps = dict(map(normalise, pyproject()["project"]["dependencies"]))
    assert deps["transformer-lens"] == "<4,>=3.9"  # SAELens 6 needs <4; 4.x removed HookedTransformer
    assert deps["ipywidgets"].startswith("<9,>=7.7")  # Colab ships ipywidgets 7.7
