"""`python -m convmixer_lit.bench` on tiny settings: every figure is measured, printed and saved."""

import json
import math

from convmixer_lit import bench
from convmixer_lit.bench import Spec


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
    assert saved["peaks_gflops"]["float32"] > 0 and saved["peaks_gflops"]["bfloat16"] > 0
    row = saved["models"]["tiny"]
    for key in ("naive_fp32", "ceiling", "fit", "fit_fast", "plain_loop", "train_flops_per_image",
                "fraction_of_peak"):
        assert row[key] > 0, key
    assert math.isfinite(row["lightning_overhead_pct"])
    assert row["parameters"] == bench.SPECS["tiny"].build().num_parameters()
    assert set(saved["data"]) == {f"{p}@64px" for p in bench.pipelines()}
    assert all(v > 0 for v in saved["data"].values())
    assert set(saved["data_bound_fit"]) == set(bench.pipelines()) and all(saved["data_bound_fit"].values())
    printed = capsys.readouterr().out
    assert "Lightning overhead" in printed and "img/s per core" in printed and "GEMM peak" in printed


def test_bench_rejects_a_data_root_without_the_dataset(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        bench.main(["--quick", "--data.root", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: --data.root")
