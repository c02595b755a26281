#!/usr/bin/env bash
# The GPU paths this project cannot test on its CPU-only machine, in one go on a CUDA machine:
#   - `fit`, a few steps of every registered model with each input pipeline (standard, fast), in the precision the
#     kit picks for this GPU (bf16 from compute capability 8.0, else fp16), plus one run in 16-mixed (GradScaler);
#   - that the runs recorded that precision and cuDNN autotuning;
#   - `python -m convmixer_lit.bench --quick --accelerator cuda`;
#   - `evaluate` of a produced checkpoint, which must reproduce the val/acc its run logged, and `predict`.
# Prints one line per check, PASS or FAIL with the time (and the error line of a failure), and exits 1 if any
# failed. Every check's full output is kept in $OUT/logs/.
#
# Usage, from the repository root with the kit installed (README, "Quick start"):
#     scripts/gpu-check.sh                     # data: $CONVMIXER_LIT_DATA, else a small synthetic Imagenette
#     CONVMIXER_LIT_DATA=/data OUT=/tmp/gpu-check scripts/gpu-check.sh
# (a folder holding imagenette2-160/; nothing is downloaded). Takes a few minutes on one GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-gpu-check}"
DATA="${CONVMIXER_LIT_DATA:-}"
STEPS=5
mkdir -p "$OUT/logs"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$PWD/$OUT/cache}"  # the fast pipeline's cache and the kernel, kept aside

summary=()
failed=0
check() {  # check NAME COMMAND...: run the command, log its output, record the verdict
    local name=$1 start=$SECONDS log="$OUT/logs/$1.log"
    shift
    if "$@" >"$log" 2>&1; then
        summary+=("PASS  $name  ($((SECONDS - start)) s)")
    else
        local why
        why=$(grep -m1 '^error:' "$log" || grep -m1 -E 'Error|error' "$log" || tail -n 1 "$log")
        summary+=("FAIL  $name  ($((SECONDS - start)) s): ${why:0:300}")
        failed=1
    fi
    echo "${summary[-1]}"
}

check cuda-available python -c "
import torch
assert torch.cuda.is_available(), 'torch.cuda.is_available() is False (a CPU-only torch build, or no driver)'
from convmixer_lit import hardware
print(torch.__version__, torch.version.cuda, hardware.describe('cuda'), '->', hardware.default_precision('cuda'))"
if [[ $failed -ne 0 ]]; then
    printf '%s\n' "${summary[@]}"
    exit 1
fi

if [[ -z "$DATA" ]]; then
    DATA="$OUT/synthetic"
    check synthetic-data python -c "
import sys
from pathlib import Path
sys.path.insert(0, 'tests')
from conftest import make_imagenette
make_imagenette(Path('$DATA'), per_class={'train': 48, 'val': 16})"
fi

RUNS="$OUT/runs"
MODELS=$(python -c "import convmixer_lit.models; from convmixer_lit.base import MODELS; print(' '.join(sorted(MODELS)))")
fit() {  # fit MODEL PIPELINE RUN_NAME [FLAGS...]: a few training steps on the GPU
    local model=$1 pipeline=$2 name=$3
    shift 3
    timeout 600 python -m convmixer_lit.fit --model "$model" --data.root "$DATA" --data.download false \
        --data.pipeline "$pipeline" --trainer.accelerator cuda --trainer.devices 1 --trainer.max_epochs 1 \
        --trainer.limit_train_batches "$STEPS" --trainer.enable_progress_bar false \
        --trainer.default_root_dir "$RUNS" --run_name "$name" --seed_everything 0 "$@"
}
for model in $MODELS; do
    for pipeline in standard fast; do
        # full validation for the run `evaluate` checks below, two batches for the others
        limit=$([[ "$model/$pipeline" == convmixer/fast ]] && echo 1.0 || echo 2)
        check "fit-$model-$pipeline" fit "$model" "$pipeline" "$pipeline" --trainer.limit_val_batches "$limit"
    done
done
check fit-convmixer-fast-16-mixed fit convmixer fast 16-mixed --trainer.precision 16-mixed \
    --trainer.limit_val_batches 2

RUN="$RUNS/lightning_logs/convmixer/fast"
check recorded-precision-and-cudnn-autotuning python -c "
import json, torch, yaml
result = json.load(open('$RUN/result.json'))
config = yaml.safe_load(open('$RUN/config.yaml'))
want = 'bf16-mixed' if torch.cuda.get_device_capability() >= (8, 0) else '16-mixed'
assert result['precision'] == want, (result['precision'], want)
assert result['accelerator'] == 'cuda' and result['completed'], result
assert config['trainer']['benchmark'] is True, config['trainer']['benchmark']
print(result['precision'], result['train_images_per_s'], 'img/s')"

check bench-quick timeout 900 python -m convmixer_lit.bench --quick --accelerator cuda --data.root "$DATA" \
    --output "$OUT/bench-quick.json"

check evaluate-reproduces-the-logged-val-acc bash -c "
python -m convmixer_lit.evaluate --ckpt_path '$RUN/checkpoints/last.ckpt' --accelerator cuda \
    --output '$OUT/evaluate' && python -c \"
import json
logged = json.load(open('$RUN/result.json'))['final_val_acc']
top1 = json.load(open('$OUT/evaluate/metrics.json'))['top1']
print('logged', logged, 'evaluate', top1)
assert abs(logged - top1) < 1e-3, (logged, top1)  # cuDNN's autotuned kernels may differ from run to run
\""

IMAGES=$(find "$DATA/imagenette2-160/val" -name '*.JPEG' | sort | head -n 3)
# shellcheck disable=SC2086  # the image paths are one word each
check predict python -m convmixer_lit.predict --ckpt_path "$RUN/checkpoints/last.ckpt" --accelerator cuda \
    --json $IMAGES

echo
echo "gpu-check summary ($(python -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null)):"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $failed
