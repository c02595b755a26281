#!/usr/bin/env bash
# The tuned mixer study's longer budget (issue 21, step 4.3): the 4 cells {patch, conv} stem x {attention, conv} mixer,
# each in the configuration its 4-epoch tuning chose (docs/results/mixer-study-tuned/tuned/<cell>.yaml, written once
# that cell's 6 trials are done), retrained for 16 epochs with the finals' fresh seeds 1 2 3 and scored on val. Not
# retuned at 16 epochs: the best lr at 4 epochs need not be the best at 16, so say which budget each number is.
# Two runs at a time, one core each; resumable like any study. Usage, from the repository root, once the tuned study's
# trials are done:
#     bash experiments/mixer-study-tuned/run-16-epochs.sh [DATA_ROOT] [CODE] [COMPARE FLAGS...]
# DATA_ROOT and CODE as in run.sh (CODE: a frozen checkout to train with); further flags go to compare (--stop-after).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${2:-}" ]; then
    export PYTHONPATH="$(cd "$2" && pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1
fi
python -m convmixer_lit.compare --preset docs/results/mixer-study-tuned/tuned \
    --models patch-attention patch-conv conv-attention conv-conv --seeds 1 2 3 --trainer.max_epochs 16 \
    --output docs/results/mixer-study-tuned-16-epochs --data.root "${1:-data}" --jobs 2 "${@:3}"
