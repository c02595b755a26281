"""`python -m convmixer_lit.bench` on tiny settings: every figure is measured, printed and saved."""

import json
import math

import pytest
import torch

from convmixer_lit import bench, hardware
from convmixer_lit.bench import Spec


@pytest.mark.slow  # `fit` four times, end to end, and every timing loop
def test_bench_measures_and_saves_every_figure(fake_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.SPECS, "tiny", Spec("tiny ConvMixer", "convmixer",
                                                  dict(dim=16, depth=1, kernel_size=3, patch_size=8), 32))
    monkeypatch.setattr(bench, "BATCH", 8)
    out = tmp_path / "b.json"
    result = bench.main(["--models", "tiny", "--quick", "--data.root", str(fake_root), "--accelerator", "cpu",
                         "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["environment"]["torch"] and saved["command"].startswith("python -m convmixer_lit.bench")
    assert saved["environment"]["cpu_isa"] and isinstance(saved["environment"]["cpu_bf16_native"], bool)
    # fp32, and the dtype the run's precision computes in (bf16 only where native, so never emulated bf16)
    dtypes = {"float32", str(bench.compute_dtype(saved["precision"])).removeprefix("torch.")}
    assert set(saved["peaks_gflops"]) == dtypes and all(v > 0 for v in saved["peaks_gflops"].values())
    row = saved["models"]["tiny"]
    for key in ("naive_fp32", "ceiling", "fit", "fit_fast", "plain_loop", "train_flops_per_image",
                "fraction_of_peak"):
        assert row[key] > 0, key
    assert math.isfinite(row["lightning_overhead_pct"])
    assert row["parameters"] == bench.SPECS["tiny"].build().num_parameters()
    assert set(saved["data"]) == {f"{p}@64px" for p in bench.pipelines()}
    assert all(v > 0 for v in saved["data"].values())
    assert set(saved["data_bound_fit"]) == {f"{p}@64px" for p in bench.pipelines()}
    assert all(saved["data_bound_fit"].values())
    printed = capsys.readouterr().out
    assert "Lightning overhead" in printed and "img/s per core" in printed and "GEMM peak" in printed
    assert f"cpu: {hardware.cpu_class().describe()}" in printed


def test_bench_rejects_a_data_root_without_the_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--quick", "--data.root", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: --data.root")


TINY_SPEC = Spec("tiny ConvMixer", "convmixer", dict(dim=16, depth=1, kernel_size=3, patch_size=8), 32)


def peaks_measured(monkeypatch, accelerator: str) -> tuple[list, dict]:
    """Run bench on synthetic data with the GEMM peak stubbed: the dtypes it measured, and its result."""
    measured = []

    def fake_peak(dtype, device, n=2048, repeats=10):
        measured.append(dtype)
        return {torch.float32: 100.0, torch.float16: 400.0, torch.bfloat16: 300.0}[dtype]

    monkeypatch.setattr(bench, "gemm_peak", fake_peak)
    monkeypatch.setitem(bench.SPECS, "tiny", TINY_SPEC)
    monkeypatch.setattr(bench, "BATCH", 8)
    return measured, bench.run(["tiny"], None, accelerator, quick=True, log=lambda line: None)


def test_bench_never_measures_a_bf16_peak_where_bf16_is_not_native(monkeypatch):
    """An AVX2 CPU emulates bf16 ~100x slower than fp32: its peak alone made `--quick` run for minutes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_class", lambda: hardware.CpuClass("AMD EPYC 7B13", "avx2", False))
    measured, result = peaks_measured(monkeypatch, "cpu")
    assert measured == [torch.float32] and result["precision"] == "32-true"
    assert result["environment"]["cpu_isa"] == "avx2" and result["environment"]["cpu_bf16_native"] is False
    row = result["models"]["tiny"]
    assert "ceiling_stock_bf16" not in row
    assert row["fraction_of_peak"] == pytest.approx(row["ceiling"] * row["train_flops_per_image"] / 1e9 / 100, rel=2e-3)
    assert row["naive_fraction_of_fp32_peak"] == pytest.approx(
        row["naive_fp32"] * row["train_flops_per_image"] / 1e9 / 100, rel=2e-3)


def test_bench_prices_fp16_runs_against_the_fp16_peak(monkeypatch):
    """A GPU without native bf16 (T4: compute capability 7.5) trains in 16-mixed: priced against fp16's peak."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(bench, "train_loop", lambda *args, **kwargs: [0.0, 1.0, 2.0, 3.0, 4.0])  # no GPU here
    measured, result = peaks_measured(monkeypatch, "cuda")
    assert measured == [torch.float32, torch.float16] and result["precision"] == "16-mixed"
    assert result["environment"]["gpu"] == "Tesla T4"
    row = result["models"]["tiny"]
    assert row["fraction_of_peak"] == pytest.approx(row["ceiling"] * row["train_flops_per_image"] / 1e9 / 400, rel=2e-3)


@pytest.mark.slow  # several fits of a tiny attention cell, one after another
def test_bench_times_the_attention_cell_with_and_without_flushing_denormals(fake_root, tmp_path, monkeypatch):
    tiny = Spec("tiny attention cell", "isotropic", dict(stem="patch", mixer="attention", dim=16, depth=1,
                                                         patch_size=8, num_heads=2, kernel_size=3), 32)
    monkeypatch.setattr(bench, "ATTENTION_CELL", tiny)
    monkeypatch.setattr(bench, "BATCH", 8)
    out = tmp_path / "denormal.json"
    result = bench.main(["--denormal", "--denormal-epochs", "1", "--quick", "--data.root", str(fake_root),
                         "--output", str(out)])
    d = result["denormal"]
    assert d["after_epochs"] == 1 and len(d["flush"]) == len(d["no_flush"]) == 1
    assert all(v > 0 for v in d["flush"] + d["no_flush"]) and d["speedup_of_medians"] > 0
    assert json.loads(out.read_text())["denormal"] == d


def test_bench_denormal_needs_the_real_data(capsys, monkeypatch):
    monkeypatch.delenv("CONVMIXER_LIT_DATA", raising=False)
    with pytest.raises(SystemExit) as e:
        bench.main(["--denormal"])
    assert e.value.code == 2 and "pass --data.root" in capsys.readouterr().err
