#!/usr/bin/env bash
# Issue 14: a study's throughput on this machine with one run at a time (--jobs 1, each run on all cores) vs two
# runs at once (--jobs 2, each on half the cores). The runs: the mixer study's 8 cells, seed 0, each cut to one epoch
# of TRAIN_BATCHES training batches and VAL_BATCHES validation batches (the full 4-epoch runs would take hours per
# setting), so start-up (imports, the fast cache's first read, validation) weighs more than in a full run: the
# per-run training img/s printed below is the figure that carries over to full-length runs.
# Usage, from the repository root, on an otherwise idle machine:
#     bash docs/benchmarks/study_jobs.sh DATA_ROOT [TRAIN_BATCHES] [VAL_BATCHES]
set -euo pipefail
DATA=${1:?DATA_ROOT}; TRAIN=${2:-40}; VAL=${3:-10}
CELLS=(patch-attention patch-conv patch-pool patch-identity conv-attention conv-conv conv-pool conv-identity)
OUT=$(mktemp -d /tmp/study-jobs.XXXXXX)
python -c "from convmixer_lit import hardware; print(hardware.describe())"
python -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
for J in 1 2; do
  start=$(date +%s.%N)
  python -m convmixer_lit.compare --preset mixer-study --models "${CELLS[@]}" --seeds 0 --output "$OUT/jobs$J" \
    --data.root "$DATA" --jobs "$J" --trainer.max_epochs 1 --trainer.limit_train_batches "$TRAIN" \
    --trainer.limit_val_batches "$VAL" > "$OUT/jobs$J.log" 2>&1
  end=$(date +%s.%N)
  echo "$J $start $end" >> "$OUT/elapsed.txt"
done
python - "$OUT" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
rate = {}
for line in (out / "elapsed.txt").read_text().splitlines():
    jobs, start, end = line.split()
    rows = list(csv.DictReader(open(out / f"jobs{jobs}" / "summary.csv")))
    rate[int(jobs)] = {r["model"]: float(r["train_images_per_s"]) for r in rows}
    elapsed = float(end) - float(start)
    print(f"--jobs {jobs}: {len(rows)} runs in {elapsed:.0f} s = {3600 * len(rows) / elapsed:.1f} runs/hour")
print("training img/s per run | --jobs 1 | --jobs 2 | machine throughput, 2 at once / 1 at a time")
for model in rate[1]:
    print(f"{model} | {rate[1][model]:.1f} | {rate[2][model]:.1f} | {2 * rate[2][model] / rate[1][model]:.2f}x")
PY
echo "logs and results: $OUT"
