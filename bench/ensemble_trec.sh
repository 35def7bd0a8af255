#!/usr/bin/env bash
# Forward, backward and their ensemble on TREC-6 (bench/RESULTS.md, section 11): one `ulmfit pipeline
# --both-directions` per seed (pretrain on CORPUS, finetune-lm and finetune-clf on TREC's 5,452 training
# questions, each direction), scored on the 500 test questions.
#   bench/ensemble_trec.sh OUT [pipeline flags...]     (env: PRESET, SEEDS, CORPUS, TRAIN, DATA)
set -euo pipefail
OUT=${1:?usage: bench/ensemble_trec.sh OUT [flags...]}; shift
DATA=${DATA:-../shared/data}
PRESET=${PRESET:-tiny}
U=${ULMFIT:-ulmfit}
mkdir -p "$OUT"
for seed in ${SEEDS:-42 43}; do
  /usr/bin/time -f "seed $seed: pipeline wall %e s" $U pipeline "${TRAIN:-$DATA/trec/train.csv}" \
    --corpus "${CORPUS:-sample_data/books.txt}" --test "$DATA/trec/test.csv" --both-directions --preset "$PRESET" \
    --seed "$seed" --out "$OUT/s$seed" --json "$@" > "$OUT/s$seed.json" 2> "$OUT/s$seed.log"
  tail -1 "$OUT/s$seed.log" >&2
done
python3 - "$OUT" ${SEEDS:-42 43} <<'PY'
import json, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = {s: json.load(open(f"{out}/s{s}.json")) for s in seeds}
for name in ("fwd", "bwd", "ensemble"):
    accs = [rows[s]["test"][name]["accuracy"] for s in seeds]
    print(f"{name:9} " + "  ".join(f"{100*a:.1f}%" for a in accs) + f"   mean {100*sum(accs)/len(accs):.1f}%")
for s in seeds:
    print(f"seed {s}: stage wall (s) {rows[s]['wall_s']}, pipeline {rows[s]['pipeline_wall_s']} s")
PY
