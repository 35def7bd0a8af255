#!/usr/bin/env bash
# `ulmfit inspect` on the labelled sets of ../shared/data: one JSON report per set in OUT, and the wall time of
# each command (start-up included) in OUT/times.txt.
#   bench/inspect_shared.sh OUT          (env: DATA=../shared/data, ULMFIT=ulmfit)
set -euo pipefail
OUT=${1:?usage: bench/inspect_shared.sh OUT}
D=${DATA:-../shared/data}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"; rm -f "$OUT/times.txt"
run() {
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  $U inspect "$@" --json -q > "$OUT/$name.json"
  echo "$name $(python3 -c "print(round($(date +%s.%N) - $t0, 1))")" >> "$OUT/times.txt"
}
run trec "$D/trec/train.csv" "$D/trec/test.csv"
run trec_fine "$D/trec/train_fine.csv" "$D/trec/test_fine.csv"
run sst2 "$D/sst2/train.csv" "$D/sst2/dev.csv" "$D/sst2/test.csv"
run reuters "$D/reuters21578/train.csv" "$D/reuters21578/test.csv" --label-delim ' '
run imdb "$D/imdb/train.csv" "$D/imdb/test.csv"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("trec", "trec_fine", "sst2", "reuters", "imdb"):
    r = json.load(open(f"{out}/{name}.json"))
    for p in r["pairs"]:
        print(json.dumps({"set": name, "file": p["b"], "vs": p["a"], "shared_rows": p["shared_rows"], "exact": p["exact"]}))
    for f in r["files"]:
        print(json.dumps({"set": name, "file": f["source"], "rows": f["rows"], "exact_duplicates": f["exact_duplicates"],
                          "near_duplicates": f["near_duplicates"], "conflicting": (f["labels"] or {}).get("conflicting_duplicates")}))
PY
