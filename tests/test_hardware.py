"""hardware.py: the CPU class and the default precision, with /proc/cpuinfo, sysctl and the CUDA queries stubbed."""

from __future__ import annotations

import json
import os
import platform

import pytest
import torch

from convmixer_lit import hardware

AVX2_ZEN3 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
             "flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
AVX512_NO_BF16 = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
                  "flags\t\t: fpu avx fma avx2 avx512f avx512bw avx512_vnni avx512_vbmi\n")
AVX512_BF16 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: avx fma avx2 avx512f avx512_bf16\n"
AMX = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n"
       "flags\t\t: avx fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
OLD_X86 = "processor\t: 0\nmodel name\t: Intel(R) Core(TM)2 Duo\nflags\t\t: fpu sse sse2 ssse3\n"
ARM_BF16 = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd aes sha2 atomics asimddp sve bf16 i8mm\n"
ARM_NO_BF16 = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """Pretend to be a Linux machine whose /proc/cpuinfo reads `text`, with no ISA cap in the environment."""
    for variable in hardware.CAP_VARIABLES:  # the suite may run under docs/benchmarks.md's AVX2 emulation
        monkeypatch.delenv(variable, raising=False)

    def use(text: str) -> hardware.CpuClass:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(hardware, "CPUINFO", path)
        hardware.cpu_class.cache_clear()
        return hardware.cpu_class()

    yield use
    hardware.cpu_class.cache_clear()


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA GPU of the given compute capability (torch.cuda's queries stubbed)."""
    def use(capability: tuple[int, int], name: str = "Tesla T4") -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        # what hardware must not ask: it also counts emulated bf16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("emulation counted"))
    return use


@pytest.mark.parametrize("text, model, isa, bf16, precision", [
    (AVX2_ZEN3, "AMD EPYC 7B13", "avx2", False, "32-true"),
    (AVX512_NO_BF16, "Intel(R) Xeon(R) Processor", "avx512", False, "32-true"),
    (AVX512_BF16, "AMD EPYC 9R14", "avx512", True, "bf16-mixed"),
    (AMX, "Intel(R) Xeon(R) Platinum 8488C", "amx", True, "bf16-mixed"),
    (OLD_X86, "Intel(R) Core(TM)2 Duo", "other", False, "32-true"),
    (ARM_BF16, f"{platform.machine()} CPU", "arm64", True, "bf16-mixed"),
    (ARM_NO_BF16, f"{platform.machine()} CPU", "arm64", False, "32-true"),
])
def test_cpu_class_and_default_precision_from_cpuinfo(cpu, no_gpu, text, model, isa, bf16, precision):
    assert cpu(text) == hardware.CpuClass(model, isa, bf16)
    assert hardware.default_precision("auto") == hardware.default_precision("cpu") == precision
    assert hardware.default_precision("mps") == "32-true"


def test_describe_names_model_class_and_bf16(cpu, no_gpu):
    cpu(AVX2_ZEN3)
    assert hardware.describe().startswith("cpu: AMD EPYC 7B13, avx2, bf16 not native, ")
    cpu(AMX)
    assert hardware.describe().startswith("cpu: Intel(R) Xeon(R) Platinum 8488C, amx, bf16 native, ")


def test_an_isa_cap_in_the_environment_emulates_a_smaller_class(cpu, monkeypatch):
    """As docs/benchmarks.md emulates AVX2 on an AVX-512 machine (oneDNN, MKL and ATen each capped): the class, the
    precision and the record follow."""
    caps = "ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert cpu(AMX) == hardware.CpuClass("Intel(R) Xeon(R) Platinum 8488C", "avx2", False, caps)
    assert f"avx2 (capped by {caps}), bf16 not native" in hardware.cpu_class().describe()
    assert hardware.default_precision("cpu") == "32-true"
    assert hardware.machine()["cpu_isa_capped_by"] == caps
    assert cpu(AVX2_ZEN3) == hardware.CpuClass("AMD EPYC 7B13", "avx2", False)  # at or above the CPU: no cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    assert cpu(AMX) == hardware.CpuClass("Intel(R) Xeon(R) Platinum 8488C", "avx512", True,
                                         "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")  # MKL alone caps the matmuls, so the class
    assert cpu(AMX) == hardware.CpuClass("Intel(R) Xeon(R) Platinum 8488C", "avx2", False,
                                         "MKL_ENABLE_INSTRUCTIONS=AVX2")


def test_without_cpuinfo_macos_asks_sysctl(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(hardware, "_sysctl", lambda *names: {"machdep.cpu.brand_string": "Apple M2",
                                                             "hw.optional.arm.FEAT_BF16": "1"})
    assert hardware._detect() == hardware.CpuClass("Apple M2", "arm64", True)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(hardware, "_sysctl", lambda *names: {"machdep.cpu.brand_string": "Intel Core i9",
                                                             "hw.optional.avx2_0": "1"})
    assert hardware._detect() == hardware.CpuClass("Intel Core i9", "avx2", False)


def test_without_cpuinfo_or_sysctl_torch_names_the_isa_and_bf16_counts_as_not_native(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(platform, "machine", lambda: "AMD64")
    monkeypatch.setattr(platform, "processor", lambda: "Intel64 Family 6 Model 85")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert hardware._detect() == hardware.CpuClass("Intel64 Family 6 Model 85", "avx512", False)


def test_usable_cores_without_sched_getaffinity(monkeypatch):
    """macOS and Windows have no affinity call: every core counts."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert hardware.usable_cores() == 6


@pytest.mark.parametrize("capability, precision", [((7, 0), "16-mixed"), ((7, 5), "16-mixed"),
                                                    ((8, 0), "bf16-mixed"), ((9, 0), "bf16-mixed")])
def test_cuda_bf16_only_where_native_else_fp16(gpu, cpu, capability, precision):
    cpu(AVX2_ZEN3)
    gpu(capability)
    assert hardware.default_precision("auto") == hardware.default_precision("gpu") == precision
    assert hardware.default_precision("cuda") == precision
    assert hardware.default_precision("cpu") == "32-true"  # the CPU's own class still decides a CPU run
    assert hardware.machine()["gpu_bf16_native"] == (precision == "bf16-mixed")


def test_environment_records_the_machine_class_and_versions(gpu, cpu):
    cpu(AVX512_NO_BF16)
    gpu((7, 5), "Tesla T4")
    env = hardware.environment()
    assert env["cpu"] == "Intel(R) Xeon(R) Processor" and env["cpu_isa"] == "avx512"
    assert env["cpu_bf16_native"] is False and env["cpu_cores"] >= 1
    assert env["gpu"] == "Tesla T4" and env["gpu_capability"] == "7.5" and env["gpu_bf16_native"] is False
    assert env["torch"] and env["torchvision"] and env["lightning"] and env["python"] == platform.python_version()
    assert "cpu: Intel(R) Xeon(R) Processor, avx512, bf16 not native" in hardware.describe("auto")
    assert "gpu: Tesla T4, compute capability 7.5, bf16 not native" in hardware.describe("auto")
    assert "gpu:" not in hardware.describe("cpu")
    json.dumps(env)  # stored in JSON files
