"""Keep freed memory in the process while a CPU training loop runs, so that it stops paying for page faults.

A training step on a CPU allocates and frees tensors of a few megabytes many times a second (the
batch, the error, the pre-activations; inside TransformerLens, the attention scores). glibc's ``malloc``
hands blocks of this size to the operating system when they are freed (``munmap``, or trimming the top
of the heap), so the next allocation of the same size gets fresh pages, and the kernel zeroes each 4 KB
page on its first touch. On the course's 2-core test machine that was a fifth of Part 2b's training
step and a third of the harvest through the model (numbers in ``keep_freed_memory``).

``with keep_freed_memory():`` sets three of glibc's ``mallopt`` parameters for the length of the block
(``TrainConfig.keep_freed_memory`` asks ``train_sae`` to run its loop inside one; by default it does on a CPU):

- ``M_MMAP_THRESHOLD`` 32 MiB (glibc's largest allowed on 64-bit systems): blocks up to that size come
  from the heap instead of a mapping of their own;
- ``M_TRIM_THRESHOLD`` 1 GiB: the heap keeps up to that much free memory at its top instead of returning it;
- ``M_MMAP_MAX`` 0: not even larger blocks get a mapping of their own (Part 2b's store is 128 MB, copied
  at every reshuffle), unless the heap cannot grow.

The cost is resident memory: inside the block the process keeps its peak working set of such blocks.
When the block ends, normally or by an exception, the three go back to glibc's documented defaults
(``GLIBC_DEFAULTS``: both thresholds 128 KiB, at most 65,536 mappings) and ``malloc_trim(0)`` returns the
free heap memory to the operating system.

What "back to the defaults" means, exactly. A process that never called ``mallopt`` has a *dynamic* mmap
threshold: it starts at 128 KiB, and whenever a mapped block larger than it (and at most 32 MiB) is freed,
it rises to that block's size, with the trim threshold at twice it (``man 3 mallopt``). Setting any of
``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``, ``M_TOP_PAD`` or ``M_MMAP_MAX`` turns that adjustment off for the
rest of the process, and glibc has no call that turns it back on (each ``do_set_*`` in glibc's ``malloc.c``
sets ``mp_.no_dyn_threshold = 1`` and nothing clears it). So after the block the numbers are glibc's
start-up values, but they stay there: where an untouched process would, after freeing a few large
tensors, have kept blocks of up to a few megabytes on its heap, this one maps and unmaps every block over
128 KiB (``tests/course/test_cpu_allocator.py`` counts the page faults). Memory goes back to the system as
it would by default; the later speed is that of a process with fixed 128 KiB thresholds. A fresh process
(restarting a notebook's kernel) is the only way back to glibc's exact starting behaviour.

The environment variable ``SAE_COURSE_KEEP_FREED_MEMORY`` overrides what the caller asked for: ``0`` leaves
glibc alone, ``1`` tunes it even when not asked. The allocator is also left alone on a system without glibc
(macOS, Windows, musl), and in a process started with its own malloc settings (``MALLOC_TRIM_THRESHOLD_``
and the like, or ``GLIBC_TUNABLES``), which setting the defaults afterwards would overwrite. PyTorch's CPU
performance guide recommends a caching allocator (jemalloc, tcmalloc) for the same reason; those need
``LD_PRELOAD`` at start-up, which a notebook cannot do.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["ENV_OVERRIDE", "GLIBC_DEFAULTS", "KEPT", "allocator_status", "keep_freed_memory"]

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4

#: glibc's documented defaults (man 3 mallopt), what the block sets back when it ends
GLIBC_DEFAULTS: dict[int, int] = {M_MMAP_THRESHOLD: 128 * 1024, M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}
#: what the block sets: freed blocks stay on the heap, and the heap keeps its free memory
KEPT: dict[int, int] = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**30, M_MMAP_MAX: 0}

ENV_OVERRIDE = "SAE_COURSE_KEEP_FREED_MEMORY"  # 0: leave glibc alone; 1: tune it even when not asked

#: start-up settings of glibc's malloc that restoring the defaults would overwrite
_OWN_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")
_OWN_TUNABLES = (
    "glibc.malloc.mmap_threshold",
    "glibc.malloc.trim_threshold",
    "glibc.malloc.mmap_max",
    "glibc.malloc.top_pad",
)

_lock = threading.Lock()
_open_blocks = 0  # blocks inside which the memory is kept now (nested blocks share the outermost one's tuning)
_status = "not used yet"


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, glibc keeps freed memory for reuse; when it ends, glibc's defaults come back (see the
    module docstring).

    Yields whether the memory is kept inside the block. ``enabled=False`` leaves glibc alone, unless
    ``SAE_COURSE_KEEP_FREED_MEMORY=1`` says otherwise (and ``=0`` wins over ``enabled=True``); inside a block
    that already keeps it, a nested block changes nothing and the outermost one restores.
    ``tests/benchmarks/bench_sae.py`` (section 3) compares Part 2b's whole training run with and without it
    (figures in ``tests/benchmarks/README.md``)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"keep_freed_memory(enabled) takes True or False, got {enabled!r}")
    kept = _open(enabled)
    try:
        yield kept
    finally:
        if kept:
            _close()


def allocator_status() -> str:
    """What the last ``keep_freed_memory`` block did, in words: "tuned: ...", "left alone: ..." or "not used yet"."""
    return _status


def _open(enabled: bool) -> bool:
    """Enter a block: tune glibc unless a reason says not to; True if the memory is kept inside it."""
    global _open_blocks, _status
    with _lock:
        if _open_blocks:
            _open_blocks += 1
            return True
        reason = _reason_to_leave_alone(enabled)
        if reason is not None:
            _status = f"left alone: {reason}"
            return False
        libc = _libc()
        if not all([libc.mallopt(param, value) for param, value in KEPT.items()]):  # noqa: C419 (set every one)
            _restore(libc)  # whichever it accepted goes back
            _status = f"left alone: glibc {_glibc_version()} refused the mallopt settings"
            return False
        _open_blocks = 1
        _status = (
            f"tuned: glibc {_glibc_version()} keeps freed blocks on its heap, and up to "
            f"{KEPT[M_TRIM_THRESHOLD] // 2**30} GB of free heap, until the block ends"
        )
        return True


def _close() -> None:
    """Leave a block that kept the memory: the outermost one sets glibc's defaults back and trims the heap."""
    global _open_blocks, _status
    with _lock:
        _open_blocks -= 1
        if _open_blocks == 0:
            _restore(_libc())
            _status = (
                f"tuned: glibc {_glibc_version()} kept freed memory during the block, "
                "and its default settings were set back when the block ended"
            )


def _restore(libc) -> None:
    """glibc's default thresholds (fixed now: see the module docstring), and the free heap back to the system."""
    for param, value in GLIBC_DEFAULTS.items():
        libc.mallopt(param, value)
    libc.malloc_trim(0)


def _reason_to_leave_alone(enabled: bool) -> str | None:
    """Why the allocator stays as it is (the override, the caller, the platform, the user's own settings), or None."""
    override = _env_switch(ENV_OVERRIDE)
    if override is False:
        return f"{ENV_OVERRIDE}={os.environ[ENV_OVERRIDE]}"
    if override is None and not enabled:
        return "not asked to (keep_freed_memory=False)"
    if not sys.platform.startswith("linux"):
        return f"glibc's mallopt is for Linux, this is {sys.platform}"
    if _glibc_version() is None:  # musl has no gnu_get_libc_version (and its mallopt does nothing)
        return "the C library is not glibc"
    own = [name for name in _OWN_SETTINGS if name in os.environ]
    own += [name for name in _OWN_TUNABLES if name in os.environ.get("GLIBC_TUNABLES", "")]
    if own:
        return f"the process started with its own malloc settings ({', '.join(own)}), which it would lose"
    return None


def _env_switch(name: str) -> bool | None:
    """An on/off environment variable: True for 1/true/yes/on, False for 0/false/no/off, None if unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: use 1 (on) or 0 (off), or unset it to let the code decide")


def _glibc_version() -> str | None:
    try:
        return _libc().gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return None


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, with the signatures of the three glibc functions used here."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc
