#!/usr/bin/env bash
# lr-find's rules against the preset's rate, on TREC-6 and SST-2 (tiny preset), section 6 of RESULTS.md.
# Per task: fine-tune the LM (from the pretrained tiny LM in $LM), record the range test's curve once per seed
# (`lr-find --json` carries every rule's rate), then train the classifier with the preset's --lr and with each
# rate asked for, and evaluate it.
#   bench/lr_find_rules.sh OUT LM                      # LM: a tiny pretrain run (bench/probes/lr_find_trec.sh makes one)
#   bench/lr_find_rules.sh OUT LM train TASK SEED NAME [LR]   # one classifier -> OUT/res-TASK-SEED-NAME.json
# env: DATA=../shared/data, SEEDS="42 43", ULMFIT=ulmfit. SST-2: a 3,000-row sample of train.csv (pandas,
# random_state 0) for time, evaluated on dev.csv; TREC-6: train.csv, evaluated on test.csv.
set -euo pipefail
OUT=${1:?usage: bench/lr_find_rules.sh OUT LM [train TASK SEED NAME [LR]]}
LM=${2:?usage: bench/lr_find_rules.sh OUT LM}
DATA=${DATA:-../shared/data}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
paths() {  # TASK -> FT TRAIN EVAL
  if [ "$1" = trec ]; then echo "$OUT/trec-ft $DATA/trec/train.csv $DATA/trec/test.csv"
  else echo "$OUT/sst-ft $OUT/sst2_train3k.csv $DATA/sst2/dev.csv"; fi
}
if [ "${3:-}" = train ]; then
  T=$4 S=$5 N=$6 LR=${7:-}
  read -r FT TR TE <<< "$(paths "$T")"
  extra=(); [ -n "$LR" ] && extra=(--lr "$LR")
  O=$OUT/clf-$T-$S-$N
  $U finetune-clf "$FT" "$TR" --out "$O" --preset tiny --seed "$S" --overwrite "${extra[@]}" --json > "$O.json" 2> "$O.log"
  $U evaluate "$O" "$TE" --json > "$O.test.json"
  python3 -c "
import json; s, t = json.load(open('$O.json')), json.load(open('$O.test.json'))
print(json.dumps(dict(task='$T', seed=$S, name='$N', lr='$LR' or 'preset', acc=t['accuracy'], wall=s['wall_s'])))" > "$OUT/res-$T-$S-$N.json"
  rm -rf "$O"
  exit 0
fi
python3 -c "import pandas as pd; pd.read_csv('$DATA/sst2/train.csv').sample(3000, random_state=0).to_csv('$OUT/sst2_train3k.csv', index=False)"
$U finetune-lm "$LM" "$DATA/trec/train.csv" --out "$OUT/trec-ft" --preset tiny --overwrite --json > "$OUT/trec-ft.json" 2> "$OUT/trec-ft.log"
$U finetune-lm "$LM" "$OUT/sst2_train3k.csv" --out "$OUT/sst-ft" --preset tiny --overwrite --json > "$OUT/sst-ft.json" 2> "$OUT/sst-ft.log"
for T in trec sst; do
  read -r FT TR TE <<< "$(paths $T)"
  for S in ${SEEDS:-42 43}; do
    $U lr-find "$FT" "$TR" --stage finetune-clf --preset tiny --seed "$S" --json > "$OUT/$T-lrf-$S.json" 2> "$OUT/$T-lrf-$S.log"
    "$0" "$OUT" "$LM" train "$T" "$S" preset
    for rule in $(python3 -c "
import json; f = json.load(open('$OUT/$T-lrf-$S.json'))  # each distinct rate once; steep (1e-6..1e-5) left out
rates = {f'{v:.3g}': k for k, v in reversed(f['suggestions'].items()) if k != 'steep'}
print(' '.join(f'{k}={v}' for v, k in rates.items()))"); do
      "$0" "$OUT" "$LM" train "$T" "$S" "${rule%%=*}" "${rule#*=}"
    done
  done
done
cat "$OUT"/res-*.json
