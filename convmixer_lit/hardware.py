"""The one place that knows the machine: its CPU class, usable cores and GPU, and the precision that pays off there.

The kit's largest CPU speed-up, bf16 autocast (with kernels/'s bf16 depthwise path), pays only where the CPU does
bf16 dot products natively (x86 AVX512-BF16 or AMX, ARM's BF16 extension). Elsewhere PyTorch emulates them and a
bf16 matmul runs ~100x slower than an fp32 one (1.3 vs 145 GFLOP/s on an AVX2 Zen 3, issue 16), so such CPUs
train in fp32. GPUs likewise: bf16 is native from compute capability 8.0; older ones (T4, V100) train in fp16 mixed
precision. `fit` logs the class once per run, result.json records it (`hardware`) and `bench` prints it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")
X86_CLASSES = ("other", "avx2", "avx512", "amx")  # weakest first; ARM CPUs are one class, "arm64"


@dataclass(frozen=True)
class CpuClass:
    """What decides which of the kit's CPU speed-ups apply: the instruction set class and native bf16."""

    model: str
    isa: str  # "amx", "avx512", "avx2", "other" (x86) or "arm64"
    bf16_native: bool
    capped_by: str | None = None  # the environment variables that cap the ISA, e.g. to emulate the AVX2 class

    def describe(self) -> str:
        isa = f"{self.isa} (capped by {self.capped_by})" if self.capped_by else self.isa
        return f"{self.model}, {isa}, bf16 {'native' if self.bf16_native else 'not native'}"


def classify_x86(flags: set[str]) -> tuple[str, bool]:
    """(ISA class, native bf16) from Linux's x86 feature flags."""
    isa = ("amx" if "amx_bf16" in flags else "avx512" if "avx512f" in flags
           else "avx2" if {"avx2", "fma"} <= flags else "other")
    return isa, bool(flags & {"avx512_bf16", "amx_bf16"})


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """`key : value` lines of /proc/cpuinfo, the first processor's value of each key."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _sysctl(*names: str) -> dict[str, str]:
    """macOS's sysctl values by name (names this Mac lacks are left out)."""
    try:
        out = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def _arm(machine: str) -> bool:
    return machine.lower() in ("arm64", "aarch64")


def _detect() -> CpuClass:
    """The CPU's own class, before any environment cap: /proc/cpuinfo on Linux, sysctl on macOS, else what torch's
    dispatcher chose (no bf16 information there, so bf16 counts as not native: the safe side)."""
    machine = platform.machine()
    try:
        cpuinfo = CPUINFO.read_text()
    except OSError:  # not Linux, or /proc hidden (some sandboxes)
        cpuinfo = ""
    if cpuinfo:
        fields = _cpuinfo_fields(cpuinfo)
        model = fields.get("model name") or f"{machine} CPU"
        if "Features" in fields and "flags" not in fields:  # ARM
            return CpuClass(model, "arm64", "bf16" in fields["Features"].split())
        return CpuClass(model, *classify_x86(set(fields.get("flags", "").split())))
    if platform.system() == "Darwin":
        ctl = _sysctl("machdep.cpu.brand_string", "hw.optional.arm.FEAT_BF16", "hw.optional.avx512f",
                      "hw.optional.avx2_0")
        model = ctl.get("machdep.cpu.brand_string", f"{machine} CPU")
        if _arm(machine):
            return CpuClass(model, "arm64", ctl.get("hw.optional.arm.FEAT_BF16") == "1")
        isa = "avx512" if ctl.get("hw.optional.avx512f") == "1" else "avx2" if ctl.get("hw.optional.avx2_0") == "1" \
            else "other"
        return CpuClass(model, isa, False)  # no Intel Mac has AVX512-BF16
    model = platform.processor() or f"{machine} CPU"
    if _arm(machine):
        return CpuClass(model, "arm64", False)
    isa = {"AVX512": "avx512", "AVX2": "avx2"}.get(torch.backends.cpu.get_cpu_capability(), "other")
    return CpuClass(model, isa, False)


# ONEDNN_MAX_CPU_ISA values by prefix, most specific first: the x86 class each allows, and whether bf16 stays native
_ONEDNN_CAPS = (("AVX512_CORE_AMX", "amx", True), ("AVX10_1_512_AMX", "amx", True), ("AVX10", "avx512", True),
                ("AVX512_CORE_FP16", "avx512", True), ("AVX512_CORE_BF16", "avx512", True),
                ("AVX512", "avx512", False), ("AVX2", "avx2", False), ("AVX", "other", False), ("SSE", "other", False))
# MKL_ENABLE_INSTRUCTIONS values likewise (MKL runs torch's fp32 matmuls on x86); its AVX512* levels, AMX among them,
# are not read as caps
_MKL_CAPS = (("AVX2", "avx2", False), ("AVX", "other", False), ("SSE", "other", False))


def _prefix_cap(variable: str, table: tuple[tuple[str, str, bool], ...]) -> tuple[str, str, bool] | None:
    """(variable=value, class, bf16 allowed) for the first entry of `table` whose prefix the variable's value has."""
    value = os.environ.get(variable, "").upper()
    return next(((f"{variable}={value}", isa, bf16) for prefix, isa, bf16 in table
                 if value.startswith(prefix)), None)


CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")  # read by _env_caps


def _env_caps() -> list[tuple[str, str, bool]]:
    """The x86 class PyTorch is told to stay within, as (variable, class, bf16 allowed): ONEDNN_MAX_CPU_ISA caps
    oneDNN's convolutions (and its GEMMs), MKL_ENABLE_INSTRUCTIONS MKL's, which run torch's fp32 matmuls and linear
    layers, ATEN_CPU_CAPABILITY ATen's own vector kernels. Emulating the AVX2 class takes all three."""
    caps = [cap for cap in (_prefix_cap("ONEDNN_MAX_CPU_ISA", _ONEDNN_CAPS),
                            _prefix_cap("MKL_ENABLE_INSTRUCTIONS", _MKL_CAPS)) if cap]
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if aten in ("default", "avx2", "avx512"):
        caps.append((f"ATEN_CPU_CAPABILITY={aten}", "other" if aten == "default" else aten, True))
    return caps


@functools.cache
def cpu_class() -> CpuClass:
    """This CPU's class as PyTorch will use it: an ISA cap in the environment (emulating a smaller class, as
    docs/benchmarks.md does for AVX2) lowers it, and is named."""
    cpu = _detect()
    if cpu.isa not in X86_CLASSES:
        return cpu
    caps = [(variable, isa, bf16) for variable, isa, bf16 in _env_caps()
            if X86_CLASSES.index(isa) < X86_CLASSES.index(cpu.isa) or (cpu.bf16_native and not bf16)]
    if not caps:
        return cpu
    return CpuClass(cpu.model, min([cpu.isa, *(isa for _, isa, _ in caps)], key=X86_CLASSES.index),
                    cpu.bf16_native and all(bf16 for _, _, bf16 in caps), ", ".join(v for v, _, _ in caps))


def flush_denormals(enabled: bool = True) -> bool:
    """Make the CPU treat subnormal floats as zero (x86's FTZ and DAZ; ARM's FZ), or stop; True where they now are.

    Why: attention trained on real images produces subnormal numbers (softmax probabilities of tokens it has learnt
    to ignore, and their gradients), and x86 cores handle each one in microcode, tens to hundreds of cycles instead
    of one: the mixer study's attention cell trained at 37-44 img/s in fp32 where the same network on random inputs
    ran at 55-58 (docs/benchmarks.md). Values below 1.2e-38 carry no information a network can use; TensorFlow
    flushes them by default on x86 for the same reason. bf16 and fp16 have the same exponent problem, so the
    setting holds for every precision. `torch.set_flush_denormal` sets the calling thread's control register;
    threads started later inherit it, so call this before the first parallel operation where possible.
    """
    return bool(torch.set_flush_denormal(enabled)) and enabled


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask where the OS has one (Linux: a container or taskset may allow
    fewer than the machine has), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cuda_bf16_native() -> bool:
    """bf16 tensor cores (compute capability 8.0, Ampere, and later). Not torch.cuda.is_bf16_supported(): it also
    counts emulation, which would train a T4 or V100 slower than fp16 does."""
    return torch.cuda.get_device_capability() >= (8, 0)


def default_precision(accelerator: str | object) -> str:
    """Lightning precision for an accelerator: bf16 mixed where the device does bf16 natively, fp16 mixed on older
    GPUs, else fp32."""
    name = str(accelerator).lower()
    if torch.cuda.is_available() and name in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if cuda_bf16_native() else "16-mixed"
    if name in ("auto", "cpu"):
        return "bf16-mixed" if cpu_class().bf16_native else "32-true"
    return "32-true"


def describe(accelerator: str | object = "auto") -> str:
    """One line naming the CPU class (and the GPU the accelerator would use), as runs log it."""
    line = f"cpu: {cpu_class().describe()}, {usable_cores()} cores"
    if torch.cuda.is_available() and str(accelerator).lower() in ("auto", "gpu", "cuda"):
        major, minor = torch.cuda.get_device_capability()
        line += (f"; gpu: {torch.cuda.get_device_name()}, compute capability {major}.{minor}, bf16 "
                 f"{'native' if cuda_bf16_native() else 'not native'}")
    return line


def machine() -> dict[str, Any]:
    """The hardware a run was made on (result.json's `hardware`): CPU model, class and cores, and the GPU if any."""
    cpu = cpu_class()
    info: dict[str, Any] = {"cpu": cpu.model, "cpu_isa": cpu.isa, "cpu_bf16_native": cpu.bf16_native,
                            "cpu_cores": usable_cores()}
    if cpu.capped_by:
        info["cpu_isa_capped_by"] = cpu.capped_by
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_capability=f"{major}.{minor}",
                    gpu_bf16_native=(major, minor) >= (8, 0))
    return info


def environment() -> dict[str, Any]:
    """The machine and library versions a result was made on (stored with study results and bench figures)."""
    env = {**machine(), "python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "torchvision", "lightning"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return env


def compile_cache_per_cpu_class() -> str:
    """Point torch.compile's kernel cache (TORCHINDUCTOR_CACHE_DIR, default /tmp/torchinductor_<user>) at a sub-folder
    per vector instruction set PyTorch uses here, and return it. Inductor's cache does not tell kernels generated for
    one instruction set from another's: on an AVX-512 machine, a compiled channel sum cached in a normal run and then
    reused under `ATEN_CPU_CAPABILITY=avx2` (how docs/benchmarks.md emulates a laptop) returned garbage for half the
    channels, silently (torch 2.14.1; the reverse order crashed). The same holds for one cache shared by machines of
    different classes. Idempotent; a folder the user chose keeps the sub-folder inside it."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    tag = f"cpu-{torch.backends.cpu.get_cpu_capability().lower()}"
    base = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    folder = base if base.name == tag else base / tag
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return str(folder)
