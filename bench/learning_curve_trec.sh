#!/usr/bin/env bash
# The TREC-6 learning curves of bench/RESULTS.md (section 11): a pretrain on CORPUS (default sample_data/books.txt,
# the demo's parent; PRETRAIN_FLAGS e.g. --max-tokens 3000000), then `ulmfit learning-curve` over TREC-6's 5,452
# training questions, scored on its 500 test questions. Rerun the same command to finish an interrupted curve.
#   bench/learning_curve_trec.sh OUT [learning-curve flags...]  (env: PRESET, SIZES, SEEDS, DATA, CORPUS, PRETRAIN_FLAGS)
set -euo pipefail
OUT=${1:?usage: bench/learning_curve_trec.sh OUT [flags...]}; shift
DATA=${DATA:-../shared/data}
PRESET=${PRESET:-tiny}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
[ -e "$OUT/lm/manifest.json" ] || $U pretrain "${CORPUS:-sample_data/books.txt}" --out "$OUT/lm" --preset "$PRESET" \
  --quiet ${PRETRAIN_FLAGS:-}
/usr/bin/time -f "learning-curve wall %e s" $U learning-curve "$OUT/lm" "$DATA/trec/train.csv" \
  --test "$DATA/trec/test.csv" --sizes "${SIZES:-100,300,1000,all}" --seeds "${SEEDS:-2}" --preset "$PRESET" \
  --out "$OUT/curve" --json "$@" > "$OUT/curve.json" 2> "$OUT/curve.log"
python3 - "$OUT/curve.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for r in s["curve"]:
    print(f"{r['variant']:16} {str(r['size']):>5} n={r['n']:<5} error {100*r['error_mean']:.1f}% "
          f"({100*r['error_min']:.1f}-{100*r['error_max']:.1f}, {r['seeds']} seeds)")
PY
