#!/usr/bin/env python3
"""Install the course into the current Python environment (standard library only, so it runs anywhere).

    python install.py            # the course and JupyterLab
    python install.py --test     # the course and what grading needs (pytest, nbclient, jupytext)

torch: where none is installed, this installs torch==2.13.0 (a CPU build where the index offers one).
Where one is installed (Colab's, or a CUDA build you chose), it is kept: pip is constrained to that
exact version, so no dependency can replace it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

TORCH_PIN = "torch==2.13.0"
SUPPORTED = ((3, 11), (3, 13))
ROOT = Path(__file__).resolve().parent


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def installed_torch() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="install what grading and the course's tests need")
    parser.add_argument("--no-editable", action="store_true", help="install a copy instead of linking this checkout")
    args = parser.parse_args()

    if not SUPPORTED[0] <= sys.version_info[:2] <= SUPPORTED[1]:
        print(f"This course supports Python 3.11 to 3.13; this is {sys.version.split()[0]}.", file=sys.stderr)
        return 1

    torch_version = installed_torch()
    if torch_version is None:
        pip(TORCH_PIN)
        torch_version = installed_torch()
    else:
        print(f"Keeping the installed torch {torch_version}.")

    extra = "test" if args.test else "notebook"
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "keep-torch.txt"
        constraints.write_text(f"torch=={torch_version}\n")
        target = f"{ROOT}[{extra}]"
        pip("-c", str(constraints), *([] if args.no_editable else ["-e"]), target)
    print(f"\nThe course is installed (extras: {extra}). Next: see README.md.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
