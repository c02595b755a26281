#!/usr/bin/env bash
# Commit each finished study run as it lands, so a session that ends mid-study loses only the runs in flight.
# Usage, from the repository root, beside a running study (e.g. experiments/mixer-study-tuned/run.sh):
#     nohup bash experiments/commit-results.sh docs/results/mixer-study-tuned [MORE_STUDY_DIRS...] &
# Every 2 minutes it looks for result files git does not know yet (DIR/results/*.json, DIR/tuning/results/*.json)
# and commits that study folder alone (`git commit -- DIR`: whatever else is staged stays out of it), with the
# finished runs' names in the message. Checkpoints stay out (.gitignore). Stop it with `kill`.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "error: name the study folders to watch, e.g. docs/results/mixer-study-tuned" >&2; exit 2; }
while true; do
    for dir in "$@"; do
        new=$(git ls-files --others --exclude-standard -- "$dir/results" "$dir/tuning/results" | grep '\.json$')
        [ -n "$new" ] || continue
        names=$(echo "$new" | xargs -n1 basename | sed 's/\.json$//' | tr '\n' ' ')
        if git add -- "$dir" && git commit -q -m "$(basename "$dir"): ${names}finished" -- "$dir"; then
            echo "$(date -u +%H:%M) committed $names"
        else  # unstage, so the next pass sees the results as new again (a held index.lock, a failing hook)
            git reset -q -- "$dir"
        fi
    done
    [ -z "${COMMIT_RESULTS_ONCE:-}" ] || break  # one pass (the test)
    sleep 120
done
