"""utils.lm.cpu_allocator: glibc keeps freed blocks for reuse inside the block, and gets its defaults back after it.

The settings are checked against a fake C library (what is set, in which order, what comes back, when
``train_sae`` returns and when it raises); what they do, on the real glibc in a subprocess: page faults
are counted (``getrusage``), not timed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from utils.lm import cpu_allocator
from utils.paths import repo_root
from utils.sae.model import SAE, SAEConfig
from utils.sae.steps import sae_training_step
from utils.sae.training import train_sae

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
MMAP_THRESHOLD, TRIM_THRESHOLD, MMAP_MAX = -3, -1, -4  # mallopt's parameter numbers, from glibc's <malloc.h>
TUNED = [("mallopt", MMAP_THRESHOLD, 32 * 2**20), ("mallopt", TRIM_THRESHOLD, 2**30), ("mallopt", MMAP_MAX, 0)]
RESTORED = [
    ("mallopt", MMAP_THRESHOLD, 128 * 1024),
    ("mallopt", TRIM_THRESHOLD, 128 * 1024),
    ("mallopt", MMAP_MAX, 65536),
    ("malloc_trim", 0),
]


class FakeLibc:
    """Records mallopt and malloc_trim calls instead of making them."""

    def __init__(self, refuse: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.refuse = refuse  # a mallopt parameter this glibc refuses

    def gnu_get_libc_version(self) -> bytes:
        return b"2.99"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return int(param != self.refuse)

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch) -> FakeLibc:
    """A fake glibc on Linux, no override and no malloc settings of the user's in the environment."""
    libc = FakeLibc()
    monkeypatch.setattr(cpu_allocator, "_libc", lambda: libc)
    monkeypatch.setattr(cpu_allocator.sys, "platform", "linux")
    for name in (cpu_allocator.ENV_OVERRIDE, "GLIBC_TUNABLES", *cpu_allocator._OWN_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    return libc


def test_the_block_keeps_freed_memory_and_sets_glibc_defaults_back(fake):
    with cpu_allocator.keep_freed_memory() as kept:
        assert kept and fake.calls == TUNED
        assert cpu_allocator.allocator_status().startswith("tuned: glibc 2.99")
    assert fake.calls == TUNED + RESTORED
    assert "set back" in cpu_allocator.allocator_status()
    fake.calls.clear()
    with pytest.raises(KeyError), cpu_allocator.keep_freed_memory():  # set back when the block fails, too
        raise KeyError
    assert fake.calls == TUNED + RESTORED


def test_a_nested_block_leaves_the_restoring_to_the_outermost(fake):
    with cpu_allocator.keep_freed_memory():
        with cpu_allocator.keep_freed_memory() as inner, cpu_allocator.keep_freed_memory(False) as off:
            assert inner and off, "inside a block that keeps memory, it is kept"
        assert fake.calls == TUNED, "the inner blocks changed nothing"
    assert fake.calls == TUNED + RESTORED


def test_a_refused_setting_is_set_back_at_once(fake):
    fake.refuse = MMAP_MAX
    with cpu_allocator.keep_freed_memory() as kept:
        assert not kept and fake.calls == TUNED + RESTORED
    assert fake.calls == TUNED + RESTORED
    assert cpu_allocator.allocator_status() == "left alone: glibc 2.99 refused the mallopt settings"


@pytest.mark.parametrize(
    "enabled, env, kept, status",
    [
        (False, None, False, "left alone: not asked to (keep_freed_memory=False)"),
        (True, "0", False, "left alone: SAE_COURSE_KEEP_FREED_MEMORY=0"),
        (True, "off", False, "left alone: SAE_COURSE_KEEP_FREED_MEMORY=off"),
        (False, "1", True, "tuned: glibc 2.99"),  # the override wins over the argument, both ways
        (True, "", True, "tuned: glibc 2.99"),  # empty: as if unset
    ],
)
def test_the_environment_variable_overrides_the_argument(fake, monkeypatch, enabled, env, kept, status):
    if env is not None:
        monkeypatch.setenv(cpu_allocator.ENV_OVERRIDE, env)
    with cpu_allocator.keep_freed_memory(enabled) as inside:
        assert inside is kept
        assert cpu_allocator.allocator_status().startswith(status)
    assert fake.calls == (TUNED + RESTORED if kept else [])


def test_bad_input_is_named(fake, monkeypatch):
    monkeypatch.setenv(cpu_allocator.ENV_OVERRIDE, "maybe")
    with (
        pytest.raises(ValueError, match="SAE_COURSE_KEEP_FREED_MEMORY='maybe': use 1"),
        cpu_allocator.keep_freed_memory(),
    ):
        pass
    with pytest.raises(TypeError, match="True or False"), cpu_allocator.keep_freed_memory("yes"):
        pass
    assert fake.calls == []


@pytest.mark.parametrize(
    "platform_name, env, reason",
    [
        ("darwin", {}, "this is darwin"),
        ("linux", {"MALLOC_TRIM_THRESHOLD_": "65536"}, "its own malloc settings (MALLOC_TRIM_THRESHOLD_)"),
        ("linux", {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}, "(glibc.malloc.mmap_threshold)"),
    ],
)
def test_left_alone_where_it_cannot_set_back_what_was_there(fake, monkeypatch, platform_name, env, reason):
    monkeypatch.setattr(cpu_allocator.sys, "platform", platform_name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with cpu_allocator.keep_freed_memory() as kept:
        assert not kept
    assert fake.calls == [] and reason in cpu_allocator.allocator_status()


# ---------------------------------------------------------------------------------------------------
# train_sae: TrainConfig.keep_freed_memory, set back when training ends


def tiny_run(**settings) -> list[dict]:
    sae = SAE(SAEConfig(d_in=8, d_sae=16, l1_coefficient=0.1))
    data = torch.randn(64 * 3, 8, generator=torch.Generator().manual_seed(0)).relu_()
    return train_sae(sae, iter(data.split(64)), n_tokens=64 * 3, progress=False, **settings)


def test_train_sae_sets_the_allocator_back_when_it_returns_and_when_it_raises(fake):
    seen_inside = []

    def step(sae, x, **kwargs):
        seen_inside.append(list(fake.calls))
        return sae_training_step(sae, x, **kwargs)

    tiny_run(step_fn=step)  # keep_freed_memory=None: on, for a CPU run
    assert seen_inside[0] == TUNED and fake.calls == TUNED + RESTORED
    fake.calls.clear()

    def failing(sae, x, **kwargs):
        raise KeyError("a bug in a step function")

    with pytest.raises(KeyError):
        tiny_run(step_fn=failing)
    assert fake.calls == TUNED + RESTORED
    fake.calls.clear()
    tiny_run(keep_freed_memory=False)
    assert fake.calls == []


def test_train_sae_follows_the_override(fake, monkeypatch):
    monkeypatch.setenv(cpu_allocator.ENV_OVERRIDE, "0")
    tiny_run(keep_freed_memory=True)
    assert fake.calls == []
    monkeypatch.setenv(cpu_allocator.ENV_OVERRIDE, "1")
    tiny_run(keep_freed_memory=False)
    assert fake.calls == TUNED + RESTORED


# ---------------------------------------------------------------------------------------------------
# The real glibc, in a subprocess: page faults per block of memory allocated, filled and freed

FAULTS = textwrap.dedent("""
    import json, resource, statistics, torch
    from utils.lm.cpu_allocator import allocator_status, keep_freed_memory
    from utils.sae.model import SAE, SAEConfig
    from utils.sae.training import train_sae

    def faults_per_block(floats, n=7):
        \"\"\"Median page faults of allocating, filling and freeing a block (after warm-up: the heap grows, then
        reuses if it keeps freed blocks); the median, because one block may land where the heap cannot reuse.\"\"\"
        for _ in range(3):
            torch.ones(floats)
        counts = []
        for _ in range(n):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(floats)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return statistics.median(counts)

    def train(step_fn="fused"):
        data = torch.randn(64 * 3, 8).relu_()
        train_sae(SAE(SAEConfig(d_in=8, d_sae=16)), iter(data.split(64)), n_tokens=64 * 3, step_fn=step_fn,
                  progress=False)

    def failing(sae, x, **kwargs):
        raise KeyError

    # 64 MiB (over the 32 MiB threshold), 1 MiB, and 8 MiB, a size first asked for after training: the free heap
    # then has no block that large, so only the mmap threshold decides where it comes from
    big, small, fresh = 2**24, 2**18, 2**21
    answer = dict(untouched_big=faults_per_block(big), untouched_small=faults_per_block(small))
    train()
    answer |= dict(after_return=faults_per_block(fresh), status=allocator_status())
    try:
        train(failing)  # tunes again as it starts: only its own clean-up can set the defaults back
    except KeyError:
        pass
    answer |= dict(after_raise=faults_per_block(fresh))
    with keep_freed_memory() as kept:
        answer |= dict(kept=kept, inside_big=faults_per_block(big), inside_small=faults_per_block(small))
    print(json.dumps(answer))
""")


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_real_glibc_reuses_blocks_inside_and_maps_them_afresh_after():
    """Inside the block freed 64 MiB and 1 MiB blocks are reused (no fresh pages). After ``train_sae`` ends
    (returning or raising), an 8 MiB block is mapped afresh each time: the mmap threshold is back at glibc's
    128 KiB, not at the tuned 32 MiB, and it stays there. Before any tuning, glibc's dynamic threshold rose
    past 1 MiB once such a block was freed, and reused it; that adjustment cannot be turned back on, which is
    the cost the module docstring states."""
    env = {k: v for k, v in os.environ.items() if k != cpu_allocator.ENV_OVERRIDE} | {"PYTHONPATH": str(repo_root())}
    done = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    pages = {floats: floats * 4 // os.sysconf("SC_PAGE_SIZE") for floats in (2**24, 2**18, 2**21)}
    big, small, fresh = pages[2**24], pages[2**18], pages[2**21]
    assert answer["kept"], answer
    assert answer["untouched_big"] > 0.5 * big, answer  # glibc maps each 64 MiB block afresh
    assert answer["untouched_small"] < 0.05 * small, answer  # the dynamic threshold rose: 1 MiB is reused
    assert answer["inside_big"] < 0.05 * big and answer["inside_small"] < 0.05 * small, answer
    assert answer["after_return"] > 0.5 * fresh, answer  # set back: 8 MiB is over the 128 KiB threshold
    assert answer["after_raise"] > 0.5 * fresh, answer
    assert "set back" in answer["status"], answer
