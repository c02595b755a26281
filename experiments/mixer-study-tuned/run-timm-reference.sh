#!/usr/bin/env bash
# Issue 21, item 9, in the tuned study: timm's VisionTransformer built as the patch + attention cell (an independent
# implementation; experiments/mixer-study-reference/timm-patch-attention.yaml) given the study's budget: the same 6
# trials (the same search space, search seed, held-out split and trial seed draw the same configurations as for every
# cell of docs/results/mixer-study-tuned/), then its best configuration with the finals' seeds 1 2 3 on val. In a
# study folder of its own, so the factorial of the 8 cells stays as it is. Note: timm's body normalises the pooled
# features (fc_norm), as the tuned cells do (pooled_norm: true). Usage, from the repository root, after run.sh:
#     bash experiments/mixer-study-tuned/run-timm-reference.sh [DATA_ROOT] [CODE] [COMPARE FLAGS...]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${2:-}" ]; then
    export PYTHONPATH="$(cd "$2" && pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1
fi
python -m convmixer_lit.compare --preset experiments/mixer-study-reference --models timm-patch-attention \
    --output docs/results/mixer-study-tuned-reference --search "model.lr=loguniform(3e-4,1e-2)" \
    "model.weight_decay=loguniform(0.005,0.3)" --trials 6 --seeds 1 2 3 --data.root "${1:-data}" --jobs 2 "${@:3}"
