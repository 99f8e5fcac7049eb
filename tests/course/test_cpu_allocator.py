"""utils.lm.cpu_allocator: glibc keeps freed blocks for reuse, so a training step stops faulting in fresh pages.

The settings are checked against a fake C library; what they do, in a subprocess (the tuning is for the
whole process and cannot be undone): page faults are counted (``getrusage``), not timed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from utils.paths import repo_root

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

SCRIPT = textwrap.dedent("""
    import json
    from utils.lm.cpu_allocator import allocator_status, keep_freed_memory

    tuned = keep_freed_memory()
    again = keep_freed_memory()
    print(json.dumps(dict(tuned=tuned, again=again, status=allocator_status())))
""")


def run(env_extra: dict[str, str]) -> dict:
    env = os.environ | {"PYTHONPATH": str(repo_root())} | env_extra
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class FakeLibc:
    """Records mallopt and malloc_trim calls instead of making them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def gnu_get_libc_version(self) -> bytes:
        return b"2.99"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def test_keep_freed_memory_sets_both_thresholds_once_and_heap_only_restores(monkeypatch):
    from utils.lm import cpu_allocator

    fake = FakeLibc()
    monkeypatch.setattr(cpu_allocator, "_libc", lambda: fake)
    monkeypatch.setattr(cpu_allocator, "_status", None)
    monkeypatch.setattr(cpu_allocator.sys, "platform", "linux")
    monkeypatch.delenv(cpu_allocator.OPT_OUT, raising=False)
    assert cpu_allocator.keep_freed_memory() and cpu_allocator.keep_freed_memory()
    assert sorted(fake.calls) == [("mallopt", -3, 32 * 2**20), ("mallopt", -1, 2**30)]  # once, glibc's numbers
    assert cpu_allocator.allocator_status().startswith("tuned: glibc 2.99")
    fake.calls.clear()
    with cpu_allocator.heap_only() as tuned:
        assert tuned and fake.calls == [("mallopt", -4, 0)]
    assert fake.calls[1:] == [("mallopt", -4, 65536), ("malloc_trim", 0)]
    fake.calls.clear()
    with pytest.raises(KeyError), cpu_allocator.heap_only():  # restored when the loop fails, too
        raise KeyError
    assert fake.calls[1:] == [("mallopt", -4, 65536), ("malloc_trim", 0)]
    monkeypatch.setattr(cpu_allocator, "_status", None)
    monkeypatch.setattr(cpu_allocator.sys, "platform", "darwin")
    assert not cpu_allocator.keep_freed_memory() and "darwin" in cpu_allocator.allocator_status()
    fake.calls.clear()
    with cpu_allocator.heap_only() as tuned:
        assert not tuned
    assert fake.calls == []


def test_status_before_and_opt_out_words():
    from utils.lm import cpu_allocator

    if cpu_allocator._status is None:
        assert cpu_allocator.allocator_status() == "not called yet"
    answer = run({"SAE_COURSE_KEEP_FREED_MEMORY": "off"})
    assert (answer["tuned"], answer["again"]) == (False, False)
    assert answer["status"] == "left alone: SAE_COURSE_KEEP_FREED_MEMORY=off"


HEAP_ONLY = textwrap.dedent("""
    import json, resource, torch
    from utils.lm.cpu_allocator import heap_only

    def faults_per_block(n=5):
        for _ in range(20):  # 64 MB blocks (over keep_freed_memory's 32 MB threshold): the heap grows, then reuses
            torch.ones(2**24)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            torch.ones(2**24)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n

    outside = faults_per_block()
    with heap_only() as tuned:
        inside = faults_per_block()
    print(json.dumps(dict(tuned=tuned, inside=inside, outside=outside)))
""")


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_heap_only_reuses_large_blocks():
    env = os.environ | {"PYTHONPATH": str(repo_root())}
    done = subprocess.run([sys.executable, "-c", HEAP_ONLY], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["tuned"]
    pages = 2**24 * 4 // resource_page_size()
    assert answer["outside"] > 0.5 * pages, answer  # glibc maps each 64 MB block afresh: a fault per page
    assert answer["inside"] < 0.05 * pages, answer  # the freed block is reused: no fresh pages


def resource_page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
