#!/usr/bin/env bash
# The tuned mixer study (issue 21), as it is run: 8 cells x 6 trials on a held-out tenth of train, then each cell's
# best configuration x 3 fresh seeds on val; two runs at a time, one core each. Resumable: rerun to continue (finished
# trials and runs are reused from their results/*.json; an interrupted one resumes from its last.ckpt where the
# folder still has it, else it restarts). Usage, from the repository root:
#     bash experiments/mixer-study-tuned/run.sh [DATA_ROOT] [CODE] [COMPARE FLAGS...]
# DATA_ROOT holds imagenette2-160/ (default: ./data). CODE (optional) is a checkout of the kit to train with, e.g.
# `git worktree add --detach ../study-code HEAD`: a study runs for hours, and code edited under it would reach its
# next run (each result records the commit it ran, `code_version`). Further flags go to compare, e.g.
# `--stop-after 2h30m` in a session of known length: no trial starts that would be cut off by its end.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${2:-}" ]; then  # PYTHONSAFEPATH: not the working directory first on sys.path, so CODE is imported
    export PYTHONPATH="$(cd "$2" && pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1
fi
python -m convmixer_lit.compare --preset experiments/mixer-study-tuned --output docs/results/mixer-study-tuned \
    --data.root "${1:-data}" --jobs 2 "${@:3}"
