#!/usr/bin/env bash
# lr-find's suggestion as --lr against the preset's rate, on TREC-6 (tiny preset): pretrain on the book sample,
# fine-tune the LM on TREC's training questions, run lr-find for finetune-clf, then train the classifier with
# the preset's --lr and with the suggested one (same seed) and evaluate both on the 500 test questions. Also prints
# each stage's time estimate (estimate_s) beside its real training time (train_s) and whole wall time.
#   bench/probes/lr_find_trec.sh OUT          (env: DATA=../shared/data, PRESET=tiny, ULMFIT=ulmfit)
set -euo pipefail
OUT=${1:?usage: bench/probes/lr_find_trec.sh OUT}
DATA=${DATA:-../shared/data}
PRESET=${PRESET:-tiny}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
$U pretrain sample_data/books.txt --out "$OUT/lm" --preset "$PRESET" --overwrite --json > "$OUT/pretrain.json" 2> "$OUT/pretrain.log"
$U finetune-lm "$OUT/lm" "$DATA/trec/train.csv" --out "$OUT/ft" --preset "$PRESET" --overwrite --json > "$OUT/finetune-lm.json" 2> "$OUT/finetune-lm.log"
t0=$(date +%s.%N)
$U lr-find "$OUT/ft" "$DATA/trec/train.csv" --stage finetune-clf --preset "$PRESET" --png "$OUT/lr_find.png" --json > "$OUT/lr_find.json" 2> "$OUT/lr_find.log"
echo "lr-find wall_s $(python3 -c "print(round($(date +%s.%N) - $t0, 1))")" >&2
LR=$(python3 -c "import json; print(json.load(open('$OUT/lr_find.json'))['suggested_lr'])")
for name in preset found; do
  extra=(); [ "$name" = found ] && extra=(--lr "$LR")
  $U finetune-clf "$OUT/ft" "$DATA/trec/train.csv" --out "$OUT/clf-$name" --preset "$PRESET" --overwrite "${extra[@]}" --json > "$OUT/clf-$name.json" 2> "$OUT/clf-$name.log"
  $U evaluate "$OUT/clf-$name" "$DATA/trec/test.csv" --json > "$OUT/test-$name.json"
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("pretrain", "finetune-lm", "clf-preset", "clf-found"):  # the time estimate against the real times
    s = json.load(open(f"{out}/{name}.json"))
    print(json.dumps({"stage": name, "estimate_s": s["estimate_s"], "train_s": s["train_s"], "wall_s": s["wall_s"]}))
f = json.load(open(f"{out}/lr_find.json"))
for name in ("preset", "found"):
    s, t = json.load(open(f"{out}/clf-{name}.json")), json.load(open(f"{out}/test-{name}.json"))
    lr = f["preset_lr"] if name == "preset" else f["suggested_lr"]
    print(json.dumps({"run": name, "lr": lr, "test_accuracy": t["accuracy"], "wall_s": s["wall_s"]}))
PY
