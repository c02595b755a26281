"""kernels/depthwise.py: ConvMixer's depthwise conv with a hand-written CPU backward computes nn.Conv2d's function."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from convmixer_lit import hardware
from convmixer_lit.kernels import NO_KERNELS_ENV, allocator, depthwise, native, precision
from convmixer_lit.kernels.depthwise import DepthwiseConv2d
from convmixer_lit.kernels.gelu_bn import fuse_gelu_batchnorm

UNAVAILABLE = native.unavailable_reason()
# what tests the compiled loop itself: skipped, saying why, where it cannot be built (the fallback is tested anyway)
needs_loop = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"needs the compiled depthwise loop: {UNAVAILABLE}")


def pair(channels: int, k: int, **kwargs) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The kit's layer and a plain nn.Conv2d with the same parameters (so checkpoints stay interchangeable)."""
    torch.manual_seed(k)
    ours = DepthwiseConv2d(channels, channels, k, groups=channels, padding="same", **kwargs)
    reference = nn.Conv2d(channels, channels, k, groups=channels, padding="same", **kwargs)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def outputs_and_grads(module: nn.Module, x: torch.Tensor, autocast: bool = False) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = module(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()  # a non-uniform gradient
    return [out.float(), x.grad, *[p.grad for p in module.parameters()]]


def assert_pytorch_kernel_used(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    """The kit's layer takes PyTorch's own path and computes exactly the reference's outputs and gradients."""
    assert ours._compute_dtype(x) is None
    for got, want in zip(outputs_and_grads(ours, x), outputs_and_grads(reference, x), strict=True):
        assert torch.equal(got, want)


@needs_loop
def test_the_compiled_loop_is_built_and_used_here():
    """This machine has a C compiler (so does CI): the fast backward must really be in use, not a silent fallback."""
    assert depthwise.library() is not None
    ours, _ = pair(32, 7)
    assert ours._compute_dtype(torch.zeros(1, 32, 8, 8)) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours._compute_dtype(torch.zeros(1, 32, 8, 8)) == torch.bfloat16
    assert ours._compute_dtype(torch.zeros(1, 32, 8, 8, dtype=torch.float64)) is None


@needs_loop
@pytest.mark.parametrize("k", depthwise.KERNEL_SIZES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fp32_outputs_and_all_gradients_equal_nn_conv2d(k, channels_last):
    """Every kernel size the loop covers, a non-square image smaller than the kernel on one side, 48 channels (three
    16-channel blocks, split unevenly over two threads), both memory formats: fp32 rounding only."""
    ours, reference = pair(48, k)
    x = torch.randn(3, 48, 11, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = outputs_and_grads(ours, x)
    finally:
        torch.set_num_threads(threads)
    want = outputs_and_grads(reference, x)
    for name, g, w in zip(["output", "input grad", "weight grad", "bias grad"], got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-5 * w.abs().max().item()), name


@needs_loop
def test_under_bf16_autocast_it_runs_in_bf16_with_an_fp32_weight_gradient():
    """As `fit` trains on a CPU: activations stay bf16 (no casts), outputs and gradients are within bf16 rounding of
    the stock bf16 layer's, and the weight gradient is closer to the exact one than the stock layer's."""
    ours, reference = pair(32, 5)
    x = torch.randn(4, 32, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x).dtype == reference(x).dtype == torch.bfloat16
    got, want = outputs_and_grads(ours, x, True), outputs_and_grads(reference, x, True)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert torch.allclose(g.float(), w.float(), rtol=2e-2, atol=2e-2 * w.abs().max().item())
    exact = torch.nn.grad.conv2d_weight(x.bfloat16().double(), ours.weight.shape,
                                        torch.linspace(-1, 1, x.numel()).view_as(x).bfloat16().double(),
                                        padding=2, groups=32)
    assert (got[2] - exact).abs().max() < (want[2] - exact).abs().max()


@needs_loop
def test_bf16_weight_gradient_loop_equals_the_exact_sum():
    x = torch.randn(2, 48, 9, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 48, 9, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    exact = torch.nn.grad.conv2d_weight(x.double(), (48, 1, 7, 7), g.double(), padding=3, groups=48)
    got = depthwise.weight_grad(x, g, 7)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", ["channels not a multiple of 16", "even kernel", "stride 2", "switched off"])
def test_what_the_loop_does_not_cover_falls_back_to_pytorch_exactly(case, monkeypatch):
    channels, k, kwargs = (24, 3, {}) if case.startswith("channels") else (32, 4, {}) if case == "even kernel" \
        else (32, 3, {})
    if case == "stride 2":
        torch.manual_seed(0)
        ours = DepthwiseConv2d(32, 32, 3, groups=32, padding=1, stride=2)
        reference = nn.Conv2d(32, 32, 3, groups=32, padding=1, stride=2)
        reference.load_state_dict(ours.state_dict())
    else:
        ours, reference = pair(channels, k, **kwargs)
    if case == "switched off":
        monkeypatch.setattr(precision, "ENABLED", False)
    assert_pytorch_kernel_used(ours, reference, torch.randn(2, ours.in_channels, 9, 9))


def test_without_a_c_compiler_it_warns_once_and_uses_pytorch(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing built there yet
    depthwise.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="no C compiler found"):
            assert depthwise.library() is None
        assert_pytorch_kernel_used(*pair(32, 3), torch.randn(2, 32, 6, 6))
    finally:
        depthwise.library.cache_clear()


def test_a_compiler_error_is_one_warning_and_pytorch_is_used(monkeypatch, tmp_path):
    bad = tmp_path / "cc"
    bad.write_text("#!/bin/sh\necho 'error: this compiler is broken' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CC", str(bad))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    depthwise.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="could not build the kit.s C loops .error: this compiler is broken"):
            assert depthwise.library() is None
        assert not list((tmp_path / "cache").rglob("*.so"))  # nothing half-built is left to be loaded later
    finally:
        depthwise.library.cache_clear()


@needs_loop
def test_the_library_is_built_once_per_machine_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    depthwise.library.cache_clear()
    try:
        assert depthwise.library() is not None
        built = list((tmp_path / "cache" / "convmixer_lit" / "kernels").glob("kit-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        depthwise.library.cache_clear()
        def no_compiling(*args, **kwargs):
            raise AssertionError(f"rebuilt: {args}")
        monkeypatch.setattr(native.subprocess, "run", no_compiling)  # the cached build must be what loads
        assert depthwise.library() is not None and built[0].stat().st_mtime_ns == stamp
    finally:
        depthwise.library.cache_clear()


@needs_loop
def test_an_isa_cap_builds_the_loop_for_that_class(monkeypatch, tmp_path):
    """Emulating the AVX2 class on a bigger x86 CPU (docs/benchmarks.md) builds the loop without AVX-512: a separate
    cached build of 8-lane vectors, computing the same gradients; uncapped, x86 builds for the CPU itself."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the ISA cap variables are x86's")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    hardware.cpu_class.cache_clear()
    depthwise.library.cache_clear()
    try:
        isa = hardware.cpu_class().isa
        assert native.arch_flags() == ["-march=native"]
        assert depthwise.library().depthwise_vector_lanes() == (16 if isa in ("avx512", "amx") else 8)
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
        hardware.cpu_class.cache_clear()
        depthwise.library.cache_clear()
        if isa in ("avx512", "amx"):
            assert native.arch_flags() == ["-march=native", "-mno-avx512f"]
        assert depthwise.library().depthwise_vector_lanes() == 8
        assert len(list((tmp_path / "cache").rglob("kit-*.so"))) == (2 if isa in ("avx512", "amx") else 1)
        ours, reference = pair(48, 7)
        x = torch.randn(3, 48, 9, 11)
        for got, want in zip(outputs_and_grads(ours, x), outputs_and_grads(reference, x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        stock = nn.Sequential(nn.GELU(), nn.BatchNorm2d(48))  # gelu_bn.c's 8-lane build too
        fused = nn.Sequential(nn.GELU(), nn.BatchNorm2d(48))
        fuse_gelu_batchnorm(fused)
        x = x.contiguous(memory_format=torch.channels_last)
        assert fused[1].fast_path(x)
        for got, want in zip(outputs_and_grads(fused, x), outputs_and_grads(stock, x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    finally:
        hardware.cpu_class.cache_clear()
        depthwise.library.cache_clear()


@needs_loop
def test_under_torch_compile_it_computes_the_same_gradients():
    """`--model.compile true`: the loop is an opaque operator in the compiled graph; same results as eager."""
    torch.manual_seed(0)
    eager = nn.Sequential(DepthwiseConv2d(16, 16, 3, groups=16, padding="same"), nn.GELU(), nn.BatchNorm2d(16))
    compiled = nn.Sequential(DepthwiseConv2d(16, 16, 3, groups=16, padding="same"), nn.GELU(), nn.BatchNorm2d(16))
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    calls = []
    original = depthwise.weight_grad
    depthwise.weight_grad = lambda *a: calls.append(1) or original(*a)
    try:
        got = outputs_and_grads(compiled, x)
    finally:
        depthwise.weight_grad = original
    assert calls, "the compiled backward did not use the loop"
    for g, w in zip(got, outputs_and_grads(eager, x), strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5)


ALLOC_CHILD = """
import resource, sys, torch
if sys.argv[1] == "kit":
    from convmixer_lit.kernels.allocator import keep_freed_memory
    assert keep_freed_memory()
for _ in range(10):  # the first 64 MiB blocks fault in either way (and the heap settles on its layout)
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # a training step's large activations: allocated, filled, freed, again
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator setting is for glibc on Linux")
def test_freed_blocks_are_reused_without_page_faults():
    """With glibc's defaults every large free goes back to the kernel, so reusing the memory faults every page in
    again; after keep_freed_memory() the same loop reuses the heap."""
    faults = {}
    for mode in ("stock", "kit"):
        out = subprocess.run([sys.executable, "-c", ALLOC_CHILD, mode], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        faults[mode] = int(out.stdout.split()[-1])
    assert faults["stock"] > 100 and faults["kit"] * 10 < faults["stock"], faults


@pytest.fixture
def fresh_choices():
    """Forget which loop and allocator setting this process chose, before and after the test."""
    depthwise.library.cache_clear()
    allocator.keep_freed_memory.cache_clear()
    yield
    depthwise.library.cache_clear()
    allocator.keep_freed_memory.cache_clear()


def test_the_environment_variable_switches_the_loop_and_the_allocator_off(monkeypatch, fresh_choices):
    """CONVMIXER_LIT_NO_KERNELS=1: nothing compiled, no warning (the user chose it), the allocator left as it is, and
    ConvMixer's layer computes with PyTorch's kernel."""
    monkeypatch.setenv(NO_KERNELS_ENV, "1")
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: pytest.fail(f"compiled: {a}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert depthwise.library() is None
    assert native.unavailable_reason() == f"{NO_KERNELS_ENV} is set"
    assert allocator.keep_freed_memory() is False
    assert_pytorch_kernel_used(*pair(32, 3), torch.randn(2, 32, 6, 6))
    monkeypatch.setenv(NO_KERNELS_ENV, "0")  # an explicit 0 leaves them on
    assert native.unavailable_reason() == UNAVAILABLE


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_windows_and_macos_skip_what_cannot_work_there(platform, monkeypatch, fresh_choices):
    """Windows: no loop (its build is a POSIX compiler's), one warning; neither has glibc's allocator to tune."""
    monkeypatch.setattr(sys, "platform", platform)
    assert allocator.keep_freed_memory() is False
    if platform == "win32":
        monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: pytest.fail(f"compiled: {a}"))
        with pytest.warns(UserWarning, match="not built on Windows: ConvMixer.s depthwise conv and GELU"):
            assert depthwise.library() is None


COMPILED_SUM_CHILD = """
import sys, torch
from convmixer_lit.hardware import compile_cache_per_cpu_class
if sys.argv[1] == "kit":
    compile_cache_per_cpu_class()
torch.manual_seed(0)
g = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
got = torch.compile(lambda t: t.sum((0, 2, 3), dtype=torch.float32))(g)
print("same" if torch.allclose(got, g.sum((0, 2, 3)), atol=1e-5) else "WRONG")
"""


@pytest.mark.slow
@pytest.mark.skipif(hardware.cpu_class().isa not in ("avx512", "amx"), reason="needs a CPU above the AVX2 class")
def test_compiled_kernels_are_cached_per_instruction_set(tmp_path):
    """A kernel cached in a normal run must not be reused under an AVX2 cap (docs/benchmarks.md's emulation): with
    one shared cache torch 2.14.1 computed half the channels of this channel sum wrong ("WRONG" from the same child
    without the kit's call, 2026-12-07, Intel Xeon with AMX); the kit's cache per class keeps them apart."""
    def run(which: str, cap: bool) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "TORCHINDUCTOR_CACHE_DIR")}
        env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / which)
        if cap:
            env["ATEN_CPU_CAPABILITY"] = "avx2"
        done = subprocess.run([sys.executable, "-c", COMPILED_SUM_CHILD, which], env=env, capture_output=True,
                              text=True, timeout=300)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"crashed: {done.returncode}"

    assert run("kit", cap=False) == "same" and run("kit", cap=True) == "same"
    assert (tmp_path / "kit" / "cpu-avx2").is_dir() and (tmp_path / "kit" / "cpu-avx512").is_dir()


def test_the_compile_cache_folder_is_per_class_and_idempotent(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    tag = f"cpu-{torch.backends.cpu.get_cpu_capability().lower()}"
    assert hardware.compile_cache_per_cpu_class() == str(tmp_path / tag)
    assert hardware.compile_cache_per_cpu_class() == str(tmp_path / tag)  # twice: not nested
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / tag)
