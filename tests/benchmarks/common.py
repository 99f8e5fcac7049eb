"""What both benchmark scripts share: median timers (alone, and interleaved with peers), and the model they measure."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from utils.paths import data_dir

# The bundled model's training code lives with the scripts that build the data bundle, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "data" / "build"))
from lm_training import LMTrainConfig, make_model


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(
    candidates: dict[str, Callable[[], object]], rounds: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds of each candidate in each round; every round runs all candidates once (after one warm-up round).

    ``clock=time.process_time`` counts the CPU time this process used instead of the wall-clock time: on a
    machine shared with other jobs it is far steadier (time spent waiting for a core is not counted), and with
    ``--threads 1`` it is close to what the candidate costs on a quiet core."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of slow / fast: how many times faster ``fast`` ran, round by round."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def bundled_or_untrained_model() -> tuple[HookedTransformer, str]:
    """The bundled ``gelu-1l-mini`` and "bundled", or, if its weights are missing, an untrained model of the
    same configuration (seed 0) and "untrained": the speed is the same, only the text it sees differs."""
    if (data_dir() / "models" / "gelu-1l-mini" / "model.safetensors").exists():
        from utils.lm.loading import load_model

        return load_model("gelu-1l-mini", device="cpu"), "bundled"
    torch.manual_seed(0)
    return make_model(LMTrainConfig()).eval(), "untrained (bundled weights not found)"
