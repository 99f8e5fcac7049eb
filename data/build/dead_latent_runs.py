"""Part 3's training comparisons over seeds, written to ``data/dead_latents/runs.json`` for the notebook to load.

    python data/build/dead_latent_runs.py               # everything (about 40 minutes on 2 busy CPU cores)
    python data/build/dead_latent_runs.py --only toy    # one section (toy, gelu or beyond); the others are kept

Each section runs ``utils.parts.dead_latents_demo``'s functions at the settings defined there (the notebook runs
seed 0 of the same functions live, and checks that it lands on the bundled seed 0):

- ``toy``: the toy L1 SAE at a too-large learning rate, without resampling, with simple and with Anthropic's
  resampling (the library's ``utils.sae.resampling``), seeds 0-4; and without resampling at the low learning
  rate, the same seeds.
- ``gelu``: the same four variants on ``gelu-1l-mini`` (an L1 SAE with 1,024 latents), seeds 0-2.
- ``beyond``: TopK without and with the auxiliary loss, and Anthropic's 2024 recipe at section 7's learning
  rate and at a low one, on the same data, seeds 0-2.

Per run it keeps the final metrics, the per-latent death record (``DeathTracker.summary``), the AuxK loss's
summary where there is one, and the training curves (every ``log_every`` steps): a few hundred kilobytes. The
runs are deterministic for a given torch version and thread count (both are recorded in the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.parts import dead_latents_demo as demo
from utils.paths import data_dir

SEEDS = {"toy": [0, 1, 2, 3, 4], "gelu": [0, 1, 2], "beyond": [0, 1, 2]}
OUT = data_dir() / demo.RUNS_FILE


def _log(section: str, run: dict, t0: float) -> None:
    label = run.get("method", run.get("name"))
    keys = ("dead", "recovered", "l0", "explained_variance", "ce_loss_recovered")
    print(
        f"{section:>6} {label:>16} seed {run['seed']}: "
        + ", ".join(f"{k} {run[k]:.4g}" for k in keys if k in run)
        + f"  ({time.time() - t0:.0f} s)",
        flush=True,
    )


def toy_section() -> dict:
    runs = []
    for seed in SEEDS["toy"]:
        for method in demo.METHODS:
            t0 = time.time()
            runs.append(demo.toy_run(method, seed))
            _log("toy", runs[-1], t0)
        t0 = time.time()
        runs.append(demo.toy_run("none", seed, lr=demo.TOY.low_lr) | {"method": "none, low lr"})
        _log("toy", runs[-1], t0)
    return {"settings": demo.settings_dict(demo.TOY), "seeds": SEEDS["toy"], "runs": runs}


def gelu_section(data: dict) -> dict:
    runs = []
    for seed in SEEDS["gelu"]:
        for method in demo.METHODS:
            t0 = time.time()
            runs.append(demo.gelu_run(method, seed, data))
            _log("gelu", runs[-1], t0)
        t0 = time.time()
        runs.append(demo.gelu_run("none", seed, data, lr=demo.GELU.low_lr) | {"method": "none, low lr"})
        _log("gelu", runs[-1], t0)
    return {
        "settings": demo.settings_dict(demo.GELU),
        "seeds": SEEDS["gelu"],
        "runs": runs,
        "train_tokens": len(data["train_acts"]),
        "eval_tokens": len(data["eval_acts"]),
    }


def beyond_section(data: dict) -> dict:
    runs = []
    for seed in SEEDS["beyond"]:
        for name in ("topk", "topk + aux loss", "2024 recipe"):
            t0 = time.time()
            runs.append(demo.beyond_run(name, seed, data))
            _log("beyond", runs[-1], t0)
        t0 = time.time()
        low = demo.BEYOND.april_low_lr
        runs.append(demo.beyond_run("2024 recipe", seed, data, lr=low) | {"name": "2024 recipe, low lr"})
        _log("beyond", runs[-1], t0)
    return {"settings": demo.settings_dict(demo.BEYOND), "seeds": SEEDS["beyond"], "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only",
        choices=["toy", "gelu", "beyond"],
        action="append",
        help="rebuild only these sections (repeatable); the others are kept from the existing file",
    )
    args = ap.parse_args()
    todo = args.only or ["toy", "gelu", "beyond"]
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    t0 = time.time()
    if "toy" in todo:
        result["toy"] = toy_section() | {"wall_s": round(time.time() - t0)}
    if {"gelu", "beyond"} & set(todo):
        data = demo.gelu_data(demo.GELU)
        if "gelu" in todo:
            start = time.time()
            result["gelu"] = gelu_section(data) | {"wall_s": round(time.time() - start)}
        if "beyond" in todo:
            start = time.time()
            result["beyond"] = beyond_section(data) | {"wall_s": round(time.time() - start)}
    # the time of the whole build: each section's own (a section built before they were recorded counts 0)
    result["meta"] = {
        "built_by": "data/build/dead_latent_runs.py",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sections_rebuilt": todo,
        "wall_s": sum(result[s].get("wall_s", 0) for s in ("toy", "gelu", "beyond") if s in result),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
