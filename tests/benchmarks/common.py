"""What both benchmark scripts share: a median timer, and the model they measure."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from transformer_lens import HookedTransformer

from utils.lm_training import LMTrainConfig, make_model
from utils.paths import data_dir


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


def bundled_or_untrained_model() -> tuple[HookedTransformer, str]:
    """The bundled ``gelu-1l-mini`` and "bundled", or, if its weights are missing, an untrained model of the
    same configuration (seed 0) and "untrained": the speed is the same, only the text it sees differs."""
    if (data_dir() / "models" / "gelu-1l-mini" / "model.safetensors").exists():
        from utils.loading import load_model

        return load_model("gelu-1l-mini", device="cpu"), "bundled"
    torch.manual_seed(0)
    return make_model(LMTrainConfig()).eval(), "untrained (bundled weights not found)"
