# Where a model's fp32 training step spends its time on this CPU (issue 16: CPUs without native bf16 train in fp32),
# and the step rate of the naive path (stock layers, NCHW, PyTorch's default AdamW) beside the kit's (its layers,
# channels-last where the model uses it, fused AdamW), alternating; then torch.profiler self time per operator over
# two of the kit's steps. Synthetic data, batch 64, 160 px, bench.py's own loop.
# Run: python docs/benchmarks/profile_fp32_step.py convmixer [--compile]   (prefix ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
#      ATEN_CPU_CAPABILITY=avx2 to emulate the AVX2 class; raw output: docs/benchmarks.md)
import argparse

import torch
from torch.profiler import profile

from convmixer_lit import base
from convmixer_lit.base import MODELS
from convmixer_lit.bench import BATCH, SPECS, rate, stock_layers, synthetic, train_loop
from convmixer_lit.hardware import describe
from convmixer_lit.kernels.allocator import keep_freed_memory
from convmixer_lit.kernels.gelu_bn import fuse_gelu_batchnorm

parser = argparse.ArgumentParser()
parser.add_argument("model", choices=list(SPECS))
parser.add_argument("--compile", action="store_true", help="also time the kit's path under torch.compile")
parser.add_argument("--unfused", action="store_true", help="also time the kit's path without its GELU + BN fusion")
parser.add_argument("--steps", type=int, default=4)
opts = parser.parse_args()
keep_freed_memory()  # as fit and bench do
spec, cpu = SPECS[opts.model], torch.device("cpu")
print(f"{describe('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads; {spec.label}, batch {BATCH}")


def timed(label: str, path: str) -> None:
    torch.manual_seed(0)
    model = spec.build() if path != "compile" else MODELS[spec.model](
        num_classes=10, image_size=spec.image_size, compile=True, **spec.init)  # as fit builds it with compile
    if path == "naive":
        with stock_layers():
            ticks = train_loop(model, synthetic(spec, cpu), opts.steps + 2, "32-true", cpu, kit_path=False, fused=False)
    else:
        if path == "compile":
            model.net.compile()  # what setup() does for --model.compile true (prepare_net then fuses nothing)
        if path == "unfused":
            base.fuse_gelu_batchnorm = lambda net: 0  # prepare_net's fusion, switched off for this path only
        ticks = train_loop(model, synthetic(spec, cpu), opts.steps + 2, "32-true", cpu, kit_path=True)
        base.fuse_gelu_batchnorm = fuse_gelu_batchnorm
    print(f"{label:>8s}: {rate(ticks, 2, BATCH):6.1f} img/s", flush=True)


paths = ["naive", "kit", *(["compile"] if opts.compile else []), *(["unfused"] if opts.unfused else [])]
for _ in range(2):
    for path in paths:
        timed(path, path)
torch.manual_seed(0)
model = spec.build()
train_loop(model, synthetic(spec, cpu), 2, "32-true", cpu, kit_path=True)  # warm: oneDNN builds its kernels
with profile() as prof:
    train_loop(model, synthetic(spec, cpu), 2, "32-true", cpu, kit_path=True)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=16, max_name_column_width=44))
