"""Per-layer precision: a few layers are faster in fp32 than in bf16 on the CPU, so they opt out of autocast.

Measured on this project's CPU (docs/benchmarks.md): oneDNN's bf16 depthwise-conv weight gradient is ~3x slower than
its fp32 one, and PyTorch's CPU flash-attention backward with 16-dim heads is ~2.4x slower in bf16 than in fp32.
The function computed is the same (in higher precision); GPUs keep bf16 for every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# The kit's CPU layer choices (these fp32 layers and kernels/depthwise.py's backward); `python -m
# convmixer_lit.bench` switches them off to measure stock PyTorch and what the choices buy.
ENABLED = True


def float32_on_cpu(call: Callable[..., Any], *tensors: torch.Tensor, **kwargs: Any) -> Any:
    """`call(*tensors, **kwargs)`, in fp32 when CPU bf16 autocast is on for these tensors; unchanged elsewhere."""
    if not ENABLED or tensors[0].device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return call(*tensors, **kwargs)
    with torch.autocast("cpu", enabled=False):
        return call(*(t.float() for t in tensors), **kwargs)
