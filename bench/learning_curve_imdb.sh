#!/usr/bin/env bash
# The IMDb learning curve of bench/RESULTS.md (issue 13): `ulmfit learning-curve` from a given PARENT (a pretrain
# run) over IMDb's 25,000 training reviews, with its 50,000 unlabelled reviews (imdb/unsup.txt) for the
# semi-supervised LM, scored on a seeded random TEST_N of the 25,000 test reviews (0: all of them; scoring is what
# the full set costs most). Rerun the same command to finish an interrupted curve.
#   bench/learning_curve_imdb.sh PARENT OUT [learning-curve flags...]
#   (env: PRESET=tiny SIZES=100,300,1000 SEEDS=2 TEST_N=5000 DATA=../shared/data ULMFIT=ulmfit)
set -euo pipefail
PARENT=${1:?usage: bench/learning_curve_imdb.sh PARENT OUT [flags...]}; OUT=${2:?}; shift 2
DATA=${DATA:-../shared/data}
TEST_N=${TEST_N:-5000}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
TEST="$DATA/imdb/test.csv"
if [ "$TEST_N" != 0 ]; then
  TEST="$OUT/test-n$TEST_N.csv"
  [ -e "$TEST" ] || PYTHONPATH="$(dirname "$0")" python3 - "$DATA/imdb/test.csv" "$TEST" "$TEST_N" <<'PY'
import random, sys
from pathlib import Path
from cross_task import read, write  # its reader and its atomic writer (text, label)
rows = read(Path(sys.argv[1]))
write(Path(sys.argv[2]), [rows[i] for i in sorted(random.Random(0).sample(range(len(rows)), int(sys.argv[3])))])
PY
fi
/usr/bin/time -f "learning-curve wall %e s" $U learning-curve "$PARENT" "$DATA/imdb/train.csv" --test "$TEST" \
  --unlabelled "$DATA/imdb/unsup.txt" --sizes "${SIZES:-100,300,1000}" --seeds "${SEEDS:-2}" \
  --preset "${PRESET:-tiny}" --out "$OUT/curve" --json "$@" > "$OUT/curve.json" 2> "$OUT/curve.log"
python3 - "$OUT/curve.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for r in s["curve"]:
    print(f"{r['variant']:16} {str(r['size']):>5} n={r['n']:<5} error {100*r['error_mean']:.1f}% "
          f"({100*r['error_min']:.1f}-{100*r['error_max']:.1f}, {r['seeds']} seeds)")
PY
