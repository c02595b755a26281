"""The kit's C loops (depthwise.c, gelu_bn.c): compiled once per machine into one library, loaded with ctypes.

Built with the system C compiler into the user's cache folder, keyed by the sources, the CPU, the compiler and the
flags, and published with one rename, so concurrent runs never load a half-written file. Where it cannot be built
(no C compiler, Windows, a compiler error, CONVMIXER_LIT_NO_KERNELS=1) `library()` is None after one warning and the
layers that use it fall back to PyTorch's own kernels: results never depend on whether the loops could be built.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from convmixer_lit.hardware import cpu_class
from convmixer_lit.kernels import NO_KERNELS_ENV, switched_off
from convmixer_lit.paths import default_cache_dir

SOURCES = [Path(__file__).with_name(name) for name in ("depthwise.c", "gelu_bn.c")]
HEADERS = [Path(__file__).with_name("vectors.h")]  # part of the build's key, not compiled on their own
_P, _I = ctypes.c_void_p, ctypes.c_int64
SIGNATURES = {  # name: (argument types, return type)
    "depthwise_weight_grad": ([_P] * 3 + [_I] * 8, ctypes.c_int),
    "depthwise_vector_lanes": ([], ctypes.c_int),
    "gelu_bn_vector_lanes": ([], ctypes.c_int),
    "gelu_bn_stats": ([_P] * 5 + [_I] * 3, None),
    "gelu_bn_forward": ([_P] * 5 + [_I] * 4, None),
    "gelu_bn_backward_sums": ([_P] * 5 + [_I] * 3, None),
    "gelu_bn_backward": ([_P] * 8 + [_I] * 3, None),
}


def _cpu_identity() -> str:
    """What a `-march=native` build depends on: the CPU model and its feature flags (Linux), else the platform."""
    try:
        info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        return "\n".join(line for line in info.splitlines() if line.startswith(("model name", "flags", "Features")))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def unavailable_reason() -> str | None:
    """Why the loops cannot be built here, or None where building them can be tried."""
    if switched_off():
        return f"{NO_KERNELS_ENV} is set"
    if sys.platform == "win32":  # the build below is a POSIX compiler's (cc -shared -fPIC)
        return "the kit's C loops are not built on Windows"
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler found ($CC or cc; install gcc or clang for the fast kernels)"
    return None


def arch_flags() -> list[str]:
    """Optimise for this CPU (GCC and Clang spell it -mcpu=native on ARM; older Apple Clang rejects -march=native),
    within the ISA class the environment caps PyTorch to (hardware.py): so an AVX-512 machine emulating the AVX2 class
    (`ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2`) also times the AVX2 build of the
    loops."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return ["-mcpu=native"]
    cpu = cpu_class()
    if not cpu.capped_by:
        return ["-march=native"]
    return ["-march=native", *{"avx2": ["-mno-avx512f"], "other": ["-mno-avx512f", "-mno-avx2"]}.get(cpu.isa, [])]


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled loops, built on first use; None (with one warning, unless the user switched them off) when they
    cannot be built."""
    reason = unavailable_reason()
    if reason is not None:
        if not switched_off():
            warnings.warn(f"{reason}: ConvMixer's depthwise conv and GELU + batch norm use PyTorch's slower kernels",
                          stacklevel=2)
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    flags = ["-O3", *arch_flags(), "-shared", "-fPIC"]
    sources = b"".join(s.read_bytes() for s in SOURCES + HEADERS)
    key = hashlib.sha256(sources + _cpu_identity().encode() + compiler.encode() + " ".join(flags).encode()).hexdigest()
    path = default_cache_dir() / "kernels" / f"kit-{key[:16]}.so"
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # build aside, publish with one rename
                built = Path(tmp) / path.name
                subprocess.run([compiler, *flags, "-o", str(built), *map(str, SOURCES)], check=True,
                               capture_output=True, text=True)
                os.replace(built, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as e:
        lines = (getattr(e, "stderr", "") or str(e)).strip().splitlines()
        detail = next((line for line in lines if "error" in line), lines[-1] if lines else str(e))  # the first error
        warnings.warn(f"could not build the kit's C loops ({detail}): ConvMixer's depthwise "
                      f"conv and GELU + batch norm use PyTorch's slower kernels", stacklevel=2)
        return None
    for name, (args, result) in SIGNATURES.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = args, result
    return lib


@torch.compiler.disable  # torch.compile runs this as Python (it may build and load the library), not in a graph
def loaded() -> bool:
    """Whether the loops are built and loaded (building them on first use)."""
    return library() is not None


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="kit-kernels")


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the parent's threads


def shares(total: int, step: int = 1) -> list[tuple[int, int]]:
    """[0, total) cut into one (start, end) share per torch thread, each a multiple of `step` long but the last."""
    blocks = max(1, total // step)
    threads = max(1, min(torch.get_num_threads(), blocks))
    bounds = [step * (blocks * t // threads) for t in range(threads)] + [total]
    return list(zip(bounds, bounds[1:]))


def in_parallel(part: Callable[[int, int, int], Any], parts: list[tuple[int, int]]) -> list:
    """`part(i, start, end)` for each share i, on the pool's threads (ctypes releases the GIL); results in order."""
    if len(parts) == 1:
        return [part(0, *parts[0])]
    return list(_pool(len(parts)).map(lambda i: part(i, *parts[i]), range(len(parts))))
