#!/usr/bin/env bash
# The mixer study, in the order it was run: seed 0 of the 8 cells, the learning-rate arm, seed 1, seed 2 (two runs at
# once), the learning-rate arm's control, the longer-budget arm. Resumable: rerun to continue (finished runs are
# reused from results/*.json; an interrupted run resumes from its last.ckpt where the folder still has it, else it
# restarts). Usage, from the repository root:
#     bash experiments/mixer-study/run.sh [DATA_ROOT]        # DATA_ROOT holds imagenette2-160/ (default: ./data)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/results/mixer-study
DATA=(--data.root "${1:-data}")
MAIN=(patch-attention patch-conv patch-pool patch-identity conv-attention conv-conv conv-pool conv-identity)
study() { python -m convmixer_lit.compare --preset mixer-study --output "$OUT" "${DATA[@]}" "$@"; }
study --models "${MAIN[@]}" --seeds 0
study --models patch-attention-lr0.001 --seeds 0
study --models "${MAIN[@]}" --seeds 0 1
study --models "${MAIN[@]}" --seeds 0 1 2 --jobs 2    # seed 2: two runs at once, one core each (issue 14's measurement)
study --models patch-conv-lr0.001 --seeds 0
study --models patch-attention-long patch-conv-long --seeds 0 --jobs 2
study --models patch-attention-lr0.001 patch-conv-lr0.001 --seeds 0 1 2 --jobs 2    # the lr arm on all 3 seeds
