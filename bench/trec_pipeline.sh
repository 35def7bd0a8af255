#!/usr/bin/env bash
# The three-stage TREC-6 run of bench/RESULTS.md: pretrain on the book corpus, fine-tune the LM on TREC's
# training questions, train the classifier, evaluate on the 500 test questions. Wall time per stage is
# recorded with the JSON summaries in $OUT/results.jsonl.
#   bench/trec_pipeline.sh OUT [extra pretrain flags...]      (env: PRESET, FT_FLAGS, CLF_FLAGS, INIT)
set -euo pipefail
OUT=${1:?usage: bench/trec_pipeline.sh OUT [pretrain flags...]}; shift
DATA=${DATA:-../shared/data}
PRESET=${PRESET:-small}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
log() { echo "$*" >&2; }
stage() {  # name, then the command; appends {"stage", "wall_s", "summary"} to results.jsonl
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" --json > "$OUT/$name.json" 2> "$OUT/$name.log"
  local t1; t1=$(date +%s.%N)
  python3 -c "import json,sys; print(json.dumps({'stage': '$name', 'wall_s': round($t1 - $t0, 1), 'summary': json.load(open('$OUT/$name.json'))}))" >> "$OUT/results.jsonl"
  log "$name: $(tail -1 "$OUT/results.jsonl")"
}
rm -f "$OUT/results.jsonl"
if [ "${INIT:-pretrained}" = pretrained ]; then
  stage pretrain $U pretrain "$DATA/gutenberg/train_000.txt" --out "$OUT/lm" --preset "$PRESET" --overwrite "$@"
  stage finetune-lm $U finetune-lm "$OUT/lm" "$DATA/trec/train.csv" --out "$OUT/lm-ft" --preset "$PRESET" --overwrite ${FT_FLAGS:-}
  PARENT="$OUT/lm-ft"
else  # no pretraining: a tokenizer-only "pretrain" (0 epochs) so the classifier starts from random weights
  stage pretrain $U pretrain "$DATA/gutenberg/train_000.txt" --out "$OUT/lm" --preset "$PRESET" --overwrite --epochs 0 "$@"
  PARENT="$OUT/lm"
fi
stage finetune-clf $U finetune-clf "$PARENT" "$DATA/trec/train.csv" --out "$OUT/clf" --preset "$PRESET" --overwrite \
  --init "${INIT:-pretrained}" ${CLF_FLAGS:-}
t0=$(date +%s.%N)
$U evaluate "$OUT/clf" "$DATA/trec/test.csv" --json > "$OUT/test.json"
t1=$(date +%s.%N)
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
test = json.load(open(f"{out}/test.json"))
total = sum(r["wall_s"] for r in rows)
print(json.dumps({"test_accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "total_wall_s": round(total, 1),
                  "stages": {r["stage"]: r["wall_s"] for r in rows}}))
PY
