#!/usr/bin/env bash
# The demo before and after a change, interleaved (the machine is shared, so pairs are compared, not absolutes):
#   git archive BASE_COMMIT | tar -x -C /tmp/base && bench/demo_time.sh /tmp/base [ROUNDS]
# Prints per run: round, which, wall seconds, and the demo's test-accuracy line. One torch thread.
set -euo pipefail
BASE=$1
ROUNDS=${2:-2}
NEW=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-/work/main/.venv/bin/python}
export OMP_NUM_THREADS=1
for i in $(seq "$ROUNDS"); do
  for v in base new; do
    d=$BASE
    [ "$v" = new ] && d=$NEW
    out=$(mktemp -d)
    s=$(date +%s.%N)
    (cd "$d" && PYTHONPATH=$d ULMFIT="$PY -m ulmfit_cli" OUT=$out ./demo.sh >"$out/stdout" 2>/dev/null)
    e=$(date +%s.%N)
    echo "$i $v $(echo "$e - $s" | bc) $(head -1 "$out/stdout")"
    rm -rf "$out"
  done
done
