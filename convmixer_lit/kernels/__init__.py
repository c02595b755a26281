"""How some layers compute on the CPU: fp32 opt-outs from bf16 autocast (precision) and a hand-written depthwise-conv
backward (depthwise). Same functions as the stock layers; chosen because they measure faster (docs/benchmarks.md).

The platform-specific parts — the depthwise loop compiled with the system C compiler, and the glibc allocator
setting (allocator) — switch themselves off where they cannot work (Windows, macOS, no compiler, not glibc), and
`CONVMIXER_LIT_NO_KERNELS=1` switches both off anywhere: the results are the same, only slower.
"""

from __future__ import annotations

import os

NO_KERNELS_ENV = "CONVMIXER_LIT_NO_KERNELS"


def switched_off() -> bool:
    """Whether the user turned the compiled loop and the allocator setting off (`CONVMIXER_LIT_NO_KERNELS=1`)."""
    return os.environ.get(NO_KERNELS_ENV, "").strip() not in ("", "0")
