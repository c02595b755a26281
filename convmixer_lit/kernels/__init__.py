"""How some layers compute on the CPU: fp32 opt-outs from bf16 autocast (precision) and a hand-written depthwise-conv
backward (depthwise). Same functions as the stock layers; chosen because they measure faster (docs/benchmarks.md)."""
