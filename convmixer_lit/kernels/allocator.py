"""Keep freed memory for reuse instead of handing it back to the OS after every training step (glibc only).

glibc's malloc returns every block above its mmap threshold (at most 32 MiB by default) to the kernel when it is
freed, so the large activation tensors of each training step are mapped afresh and every page of them faults in,
zero-filled, again: on our 2-core CPU that cost ConvMixer-256/12 16-27% of its step time, varying from run to run
(docs/benchmarks.md). Raising the mmap and trim thresholds makes malloc keep and reuse freed blocks, which is
what the jemalloc or tcmalloc preloads of PyTorch's CPU performance guides do, without a dependency. The cost:
the process keeps its peak memory until it exits, which a training process does anyway.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from convmixer_lit.kernels import switched_off

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
LIMIT = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process (DataLoader workers forked later inherit them); False where the C
    library is not glibc (macOS, Windows, musl), which is then left as it is, or with CONVMIXER_LIT_NO_KERNELS=1."""
    if switched_off() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt does nothing
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LIMIT)) and bool(mallopt(M_TRIM_THRESHOLD, LIMIT))
