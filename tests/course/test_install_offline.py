"""install.py's offline mode: what --download gathers, for which platforms, and what --from refuses.

The real round trip (download every wheel, install from the folder alone in a fresh environment) runs in
CI (.ci/run, its offline-install block): it needs minutes and a package index, so it is not a unit test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib

import pytest

from utils.paths import repo_root

ROOT = repo_root()


def load_install():
    spec = importlib.util.spec_from_file_location("course_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install = load_install()


def test_platform_tags_accept_older_manylinux_wheels() -> None:
    tags = install.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    legacy = install.platform_tags("manylinux2014_x86_64")
    assert "manylinux_2_17_x86_64" in legacy and "manylinux_2_28_x86_64" not in legacy
    assert install.platform_tags("macosx_11_0_arm64") == ["macosx_11_0_arm64"]


def test_download_asks_for_every_requirement_and_the_build_backend() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = [r for r in pyproject["project"]["dependencies"] if not r.startswith("torch")]
    wanted += [r for group in pyproject["project"]["optional-dependencies"].values() for r in group]
    wanted += pyproject["build-system"]["requires"]
    got = install.requirements()
    assert set(wanted) <= set(got) and "wheel" in got
    assert not any(r.startswith("torch") for r in got), "torch is asked for separately, at the chosen version"


def test_torch_version_is_read_from_the_folder(tmp_path) -> None:
    with pytest.raises(SystemExit, match="No torch wheel"):
        install.torch_in(tmp_path)
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert install.torch_in(tmp_path) == "2.13.0+cpu"
    (tmp_path / "torch-2.11.0-cp313-cp313-manylinux_2_28_x86_64.whl").touch()
    with pytest.raises(SystemExit, match="several torch versions"):
        install.torch_in(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--from", "no-such-folder"], "no such folder"), (["--platform", "manylinux_2_28_x86_64"], "go with --download")],
)
def test_bad_arguments_are_clear_errors(args, message) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "install.py"), *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(
    ("system", "gpu", "answers", "cuda", "index"),
    [
        ("Linux", False, True, False, install.CPU_INDEX),  # a CPU laptop: the small CPU build
        ("Linux", False, False, False, None),  # the CPU index does not answer: pip's default, and it says so
        ("Linux", True, True, False, None),  # an NVIDIA GPU: the CUDA build is the one to have
        ("Linux", False, True, True, None),  # --cuda
        ("Darwin", False, True, False, None),  # macOS wheels are CPU builds already
    ],
)
def test_torch_comes_from_the_cpu_index_on_linux_without_a_gpu(monkeypatch, system, gpu, answers, cuda, index):
    monkeypatch.setattr(install.platform, "system", lambda: system)
    monkeypatch.setattr(install, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(install, "reachable", lambda url, timeout=3.0: answers)
    args, why = install.torch_source(cuda=cuda)
    assert args == ([] if index is None else ["--index-url", index])
    assert why.startswith("PyTorch's CPU index" if index else "pip's default index")
    if system == "Linux" and not gpu and not answers and not cuda:
        assert "CUDA build (several GB)" in why


def test_a_learner_install_includes_what_grading_needs() -> None:
    """`python install.py` alone must be enough to run `python -m pytest` on the notebooks."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    learner = {r.split(">")[0].split("=")[0] for name in install.LEARNER_EXTRAS for r in extras[name]}
    assert {"pytest", "nbformat", "nbclient", "ipykernel", "jupyterlab"} <= learner
    assert set(install.LEARNER_EXTRAS) < set(install.TEST_EXTRAS)
