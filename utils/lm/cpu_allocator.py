"""Keep freed memory in the process for reuse, so that a CPU training loop stops paying for page faults.

A training step on a CPU allocates and frees tensors of a few megabytes many times a second (the
batch, the error, the pre-activations; inside TransformerLens, the attention scores). glibc's ``malloc``
hands blocks of this size to the operating system when they are freed (``munmap``, or trimming the top
of the heap), so the next allocation of the same size gets fresh pages, and the kernel zeroes each 4 KB
page on its first touch. On the course's 2-core test machine that was a fifth of Part 2b's training
step and a third of the harvest through the model (numbers in ``keep_freed_memory``).

``keep_freed_memory()`` sets two of glibc's ``mallopt`` parameters, the ones its ``MALLOC_MMAP_THRESHOLD_``
and ``MALLOC_TRIM_THRESHOLD_`` environment variables set at start-up: blocks up to 32 MB (glibc's
largest allowed threshold) come from the heap instead of their own mapping, and the heap keeps up to
1 GB of freed memory instead of returning it. The cost is resident memory: the process keeps its peak
working set of such blocks (tens of megabytes here) until it exits. PyTorch's CPU performance guide
recommends a caching allocator (jemalloc, tcmalloc) for the same reason; those need ``LD_PRELOAD`` at
start-up, which a notebook cannot do. ``train_sae`` calls this once when it trains on a CPU, and runs its
loop inside ``heap_only()``, which extends the same reuse to the largest blocks for the loop's duration.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Iterator

__all__ = ["allocator_status", "heap_only", "keep_freed_memory"]

# mallopt's parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
DEFAULT_MMAP_MAX = 65536  # glibc's default number of blocks it may map at once
MMAP_THRESHOLD = 32 * 2**20  # glibc refuses more on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2**30
OPT_OUT = "SAE_COURSE_KEEP_FREED_MEMORY"  # set to 0 to leave glibc's defaults alone

_status: str | None = None  # what the first call did, for ``allocator_status``


def keep_freed_memory() -> bool:
    """Tune glibc's ``malloc`` to reuse freed blocks (module docstring); True if it is tuned now.

    Once per process (later calls return the first answer). Does nothing, and says why in
    ``allocator_status()``, on a system without glibc (macOS, Windows, musl) or with the environment
    variable ``SAE_COURSE_KEEP_FREED_MEMORY=0``. Measured on the course's 2-core test machine with Part 2b's
    sparse step (512 -> 1,024 latents, batch 1,024, bfloat16 encoder product): 14.9 -> 11.6 ms per step,
    and the harvest of 64 sequences through ``gelu-1l-mini`` 6.9 -> 4.5 ms per 1,024 tokens (medians of 40
    and 20 repeats, in a process with and one without it). ``tests/benchmarks/bench_sae.py`` (section 3)
    compares Part 2b's whole training run with and without it."""
    global _status
    if _status is None:
        _status = _tune()
    return _status.startswith("tuned")


@contextlib.contextmanager
def heap_only() -> Iterator[bool]:
    """Within the block, even blocks over 32 MB come from the heap and are reused; after it, freed memory goes back.

    For a training loop whose store is larger than ``keep_freed_memory``'s 32 MB threshold (Part 2b's is
    128 MB, reshuffled and refilled every few dozen steps): each new copy would otherwise be a fresh
    mapping, faulted in page by page. ``M_MMAP_MAX = 0`` stops glibc mapping blocks of their own (it still
    maps if the heap cannot grow); on leaving, the default comes back and ``malloc_trim(0)`` returns the
    free heap pages to the operating system. Yields whether it took effect (``keep_freed_memory()``)."""
    tuned = keep_freed_memory()
    if tuned:
        _libc().mallopt(_M_MMAP_MAX, 0)
    try:
        yield tuned
    finally:
        if tuned:
            _libc().mallopt(_M_MMAP_MAX, DEFAULT_MMAP_MAX)
            _libc().malloc_trim(0)


def allocator_status() -> str:
    """What ``keep_freed_memory`` did in this process, in words ("not called yet" before it runs)."""
    return _status or "not called yet"


def _tune() -> str:
    if os.environ.get(OPT_OUT, "1").strip().lower() in {"0", "false", "no", "off"}:
        return f"left alone: {OPT_OUT}={os.environ[OPT_OUT]}"
    if not sys.platform.startswith("linux"):
        return f"left alone: glibc's mallopt is for Linux, this is {sys.platform}"
    try:
        libc = _libc()
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):  # musl has no gnu_get_libc_version (and its mallopt does nothing)
        return "left alone: the C library is not glibc"
    if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return f"left alone: glibc {version} refused the mallopt settings"
    return (f"tuned: glibc {version} keeps freed blocks up to {MMAP_THRESHOLD // 2**20} MB on its heap "
            f"and up to {TRIM_THRESHOLD // 2**30} GB of free heap")


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, with the signatures of the three glibc functions used here."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc
