"""`keep_freed_memory`: glibc's malloc keeps freed blocks for reuse (a CPU speed setting)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

_KEPT: bool | None = None  # the outcome, once per process


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS.

    Speed trick for training on the CPU. By default glibc serves large allocations with a fresh
    ``mmap`` (above a threshold that adapts up to 32 MiB) and trims the top of its heap on free,
    so a step's multi-megabyte activations are page-faulted in anew every step: on the 2-core
    dev box this made the batched population's ReLU, BatchNorm backward and broadcast multiplies
    10-50x slower than their arithmetic, and the batched small-CNN step 1.14-1.3x slower than
    the looped one (0.93 with this setting). Here the mmap threshold is fixed at its maximum,
    32 MiB, and the trim threshold at 1 GiB: blocks under 32 MiB are then reused from the heap,
    and the heap keeps up to 1 GiB of free space at its top. Blocks of 32 MiB or more are still
    mapped and unmapped each time. The setting is process-wide and replaces any malloc settings
    from ``GLIBC_TUNABLES``; it is made once, on Linux with glibc only, and not at all with
    ``GLX_KEEP_FREED_MEMORY=0`` (or ``false``/``no``/``off``) in the environment.

    Returns whether glibc accepted the setting. (With another allocator preloaded, such as
    jemalloc or tcmalloc, glibc accepts it but it has no effect.)
    """
    global _KEPT
    if _KEPT is not None:
        return _KEPT
    _KEPT = False
    opt_out = os.environ.get("GLX_KEEP_FREED_MEMORY", "1").strip().lower()
    if opt_out in ("0", "false", "no", "off") or not sys.platform.startswith("linux"):
        return _KEPT
    if platform.libc_ver()[0] != "glibc":  # musl and others have no mallopt
        return _KEPT
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return _KEPT
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h; 1 means accepted
    _KEPT = mallopt(m_mmap_threshold, 32 << 20) == 1 and mallopt(m_trim_threshold, 1 << 30) == 1
    return _KEPT
