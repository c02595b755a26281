"""Training speed of each mixer-study cell (synthetic batches, fwd + bwd + fused AdamW), to size the study.

    python docs/benchmarks/mixer_cells.py [--dim 128 --depth 6 --mlp_ratio 3 --steps 12]

Prints parameters, forward GFLOPs per image and median train img/s per cell, in the precision `fit` would pick.
"""

import argparse
import platform
import statistics
import time

import torch

from convmixer_lit.models.isotropic import MIXERS, STEMS, Isotropic

parser = argparse.ArgumentParser()
parser.add_argument("--dim", type=int, default=128)
parser.add_argument("--depth", type=int, default=6)
parser.add_argument("--mlp_ratio", type=float, default=3.0)
parser.add_argument("--image_size", type=int, default=64)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--steps", type=int, default=12)
args = parser.parse_args()
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
      f"fp32; dim {args.dim} depth {args.depth} mlp_ratio {args.mlp_ratio} at {args.image_size}px batch {args.batch}")
x = torch.randn(args.batch, 3, args.image_size, args.image_size).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (args.batch,))
for stem in STEMS:
    for mixer in MIXERS:
        model = Isotropic(stem=stem, mixer=mixer, dim=args.dim, depth=args.depth, mlp_ratio=args.mlp_ratio,
                          image_size=args.image_size, pooled_norm=False  # as measured (the default until 2026-12-07)
                          ).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        times = []
        for step in range(args.steps + 2):
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= 2:
                times.append(time.perf_counter() - t0)
        print(f"{stem:5s} {mixer:9s} params {model.num_parameters():>9,}  GFLOPs/img {model.flops_per_image() / 1e9:.3f}"
              f"  train img/s {args.batch / statistics.median(times):6.1f}", flush=True)
