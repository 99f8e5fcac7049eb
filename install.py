#!/usr/bin/env python3
"""Install the course into the current Python environment (standard library only, so it runs anywhere).

    python install.py            # everything a learner needs: the course, JupyterLab, and pytest to grade
    python install.py --test     # and the maintainers' tools (nbconvert, jupytext, ruff...), for the course's tests

For a room without internet (see solutions/teachers/README.md):

    python install.py --download DIR [--python-version 3.11] [--platform manylinux_2_28_x86_64] [--torch 2.13.0]
                                 # on a connected machine: every wheel the course needs (torch, JupyterLab,
                                 # the test tools, the build backend) into DIR, for that Python and platform
    python install.py --from DIR [--test]
                                 # on each laptop: install from DIR with no network (pip --no-index)

torch: where none is installed, this installs torch==2.13.0. A plain `pip install torch` on Linux downloads
the CUDA build from PyPI (about 900 MB for torch itself, and about 2.5 GB more of NVIDIA libraries), which
a laptop without an NVIDIA GPU cannot use; so on Linux without one, torch comes from PyTorch's CPU index
(https://download.pytorch.org/whl/cpu, about 200 MB) when that index answers, and from pip's default index
otherwise (it says which, and why). `--cuda` asks for pip's default index anyway. Where a torch is installed
(Colab's, or a CUDA build you chose), it is kept: pip is constrained to that exact version, so no
dependency can replace it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TORCH_PIN = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: What each command installs, on top of the course's own dependencies (pyproject.toml's extras).
LEARNER_EXTRAS = ("notebook", "grade")
TEST_EXTRAS = ("notebook", "grade", "test")
SUPPORTED = ((3, 11), (3, 13))
ROOT = Path(__file__).resolve().parent


def pip(*args: str, verb: str = "install") -> None:
    command = [sys.executable, "-m", "pip", verb, *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def requirements() -> list[str]:
    """Every requirement in pyproject.toml: the dependencies and all the extras (notebook, test)."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    torchless = [r for r in project["dependencies"] + extras if not re.match(r"torch\b", r)]
    return list(dict.fromkeys(torchless + pyproject["build-system"]["requires"] + ["wheel"]))


def platform_tags(platform: str) -> list[str]:
    """The platform tags a target accepts: ``manylinux_2_28_x86_64`` also runs manylinux_2_27 ... manylinux1
    wheels (pip's ``--platform`` takes only the tags it is given)."""
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    prefix, _, arch = platform.partition("_")
    if match:
        glibc, arch = int(match[1]), match[2]
    elif prefix in legacy:
        glibc = legacy[prefix]
    else:
        return [platform]
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
    return tags + [f"{name}_{arch}" for name, minor in legacy.items() if minor <= glibc]


def download(folder: Path, *, python_version: str | None, platform: str | None, torch: str) -> None:
    """Gather every wheel the course needs into ``folder``, for the given Python version and platform.

    A dependency published only as source (e.g. transformer_lens's ``transformers-stream-generator``) is
    built into a wheel here, so that the laptops need no build step. For this machine's own Python and
    platform that takes one resolution (source archives are downloaded, then built); for another target,
    pip accepts only wheels, so each source-only dependency is built and the resolution retried."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [f"torch=={torch}", *requirements()]
    if not (python_version or platform):
        pip("--prefer-binary", "--dest", str(folder), *wanted, verb="download")
        for archive in [*folder.glob("*.tar.gz"), *folder.glob("*.zip")]:
            pip(
                "--no-deps",
                "--no-index",
                "--find-links",
                str(folder),
                "--wheel-dir",
                str(folder),
                str(archive),
                verb="wheel",
            )
            archive.unlink()
        return _report(folder)
    target = ["--only-binary=:all:", "--dest", str(folder), "--find-links", str(folder)]
    if python_version:
        target += ["--python-version", python_version]
    for tag in platform_tags(platform) if platform else []:
        target += ["--platform", tag]
    built: set[str] = set()
    while True:
        command = [sys.executable, "-m", "pip", "download", *target, *wanted]
        print("+", " ".join(command), flush=True)
        proc = subprocess.run(command, capture_output=True, text=True)
        missing = re.search(r"No matching distribution found for (\S+)", proc.stderr)
        if proc.returncode == 0 or not missing or missing[1] in built:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
            if proc.returncode:
                raise SystemExit(f"pip download failed (exit code {proc.returncode}); see above.")
            break
        if re.match(r"torch\b", missing[1]):
            raise SystemExit(
                f"No wheel of {missing[1]} for Python {python_version or 'this'} on {platform or 'this platform'} "
                "(recent torch needs manylinux_2_28 on Linux): choose another --torch or --platform."
            )
        built.add(missing[1])
        print(f"{missing[1]} has no wheel for this target: building one from its source.", flush=True)
        pip("--no-deps", "--wheel-dir", str(folder), missing[1], verb="wheel")
    names = {re.split(r"[<>=!~ ]", b)[0].lower().replace("-", "_") for b in built}
    for wheel in folder.glob("*.whl"):
        if wheel.name.split("-")[0].lower() in names and not wheel.name.endswith("-none-any.whl"):
            print(f"warning: {wheel.name} was built here, for this machine's platform only.", file=sys.stderr)
    _report(folder)


def _report(folder: Path) -> None:
    wheels = sorted(folder.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"\n{len(wheels)} wheels ({size:.0f} MiB) in {folder}. Copy it with this checkout to each laptop, then run:")
    print(f"    python install.py --from {folder.name} [--test]")


def torch_in(folder: Path) -> str:
    """The torch version whose wheel lies in ``folder`` (the one ``--from`` installs)."""
    versions = sorted({w.name.split("-")[1] for w in folder.glob("torch-*.whl")})
    if not versions:
        raise SystemExit(f"No torch wheel in {folder}: gather the wheels with `python install.py --download {folder}`.")
    if len(versions) > 1:
        raise SystemExit(f"{folder} holds several torch versions ({', '.join(versions)}); keep one.")
    return versions[0]


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA driver is present (its kernel module's folder, or nvidia-smi on PATH)."""
    if Path("/proc/driver/nvidia").exists():
        return True
    return any((Path(folder) / "nvidia-smi").is_file() for folder in os.environ.get("PATH", "").split(os.pathsep))


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds."""
    host = re.sub(r"^\w+://", "", url).split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def torch_source(*, cuda: bool) -> tuple[list[str], str]:
    """pip's arguments for installing torch here, and why: PyTorch's CPU index on Linux without an NVIDIA GPU
    (when it answers), else pip's default index."""
    if cuda:
        return [], "pip's default index (--cuda)"
    if platform.system() != "Linux":
        return [], f"pip's default index (on {platform.system()} it has no CUDA build to avoid)"
    if has_nvidia_gpu():
        return [], "pip's default index: an NVIDIA GPU is present, so the CUDA build is the one to have"
    if not reachable(CPU_INDEX):
        return [], (
            f"pip's default index: PyTorch's CPU index ({CPU_INDEX}) does not answer; on Linux this may "
            "download the CUDA build (several GB) unless your pip is configured otherwise"
        )
    return ["--index-url", CPU_INDEX], f"PyTorch's CPU index ({CPU_INDEX}): no NVIDIA GPU here, about 200 MB"


def installed_torch() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also install the course's own test tools")
    parser.add_argument(
        "--cuda", action="store_true", help="install torch from pip's default index (CUDA build on Linux)"
    )
    parser.add_argument("--no-editable", action="store_true", help="install a copy instead of linking this checkout")
    parser.add_argument("--download", type=Path, metavar="DIR", help="gather every wheel the course needs into DIR")
    parser.add_argument("--python-version", help="with --download: the target's Python, e.g. 3.11 (default: this one)")
    parser.add_argument("--platform", help="with --download: the target's platform, e.g. manylinux_2_28_x86_64")
    parser.add_argument("--torch", default=TORCH_PIN.split("==")[1], help="with --download: the torch version")
    parser.add_argument("--from", dest="wheels", type=Path, metavar="DIR", help="install from DIR with no network")
    args = parser.parse_args()

    if args.download:
        download(args.download, python_version=args.python_version, platform=args.platform, torch=args.torch)
        return 0
    if (args.python_version or args.platform) and not args.download:
        parser.error("--python-version and --platform go with --download")
    offline: list[str] = []
    if args.wheels:
        if not args.wheels.is_dir():
            parser.error(f"--from {args.wheels}: no such folder")
        offline = ["--no-index", "--find-links", str(args.wheels.resolve())]

    if not SUPPORTED[0] <= sys.version_info[:2] <= SUPPORTED[1]:
        print(f"This course supports Python 3.11 to 3.13; this is {sys.version.split()[0]}.", file=sys.stderr)
        return 1

    torch_version = installed_torch()
    if torch_version is None and args.wheels:
        pip(*offline, f"torch=={torch_in(args.wheels)}")
    elif torch_version is None:
        source, why = torch_source(cuda=args.cuda)
        print(f"Installing {TORCH_PIN} from {why}.", flush=True)
        pip(*source, TORCH_PIN)
    else:
        print(f"Keeping the installed torch {torch_version}.")
    torch_version = installed_torch()

    extras = ",".join(TEST_EXTRAS if args.test else LEARNER_EXTRAS)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "keep-torch.txt"
        constraints.write_text(f"torch=={torch_version}\n")
        target = f"{ROOT}[{extras}]"
        pip(*offline, "-c", str(constraints), *([] if args.no_editable else ["-e"]), target)
    print(
        f"\nThe course is installed (extras: {extras}). Next: `python -m jupyterlab` to work, "
        "`python -m pytest` to grade your notebooks (README.md)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
