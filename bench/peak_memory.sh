#!/usr/bin/env bash
# Peak memory (max RSS) of `ulmfit pretrain` on 10M and 50M words of the book corpus, same model and settings,
# cold token cache, so tokenization and training are both inside the measurement. The corpus folder has one
# 10M-word file (gutenberg/train_000.txt); the 50M-word corpus is that file five times over (same text, five
# times the bytes, lines and tokens: what matters for memory). Training is capped at --max-steps so both runs do
# the same work on the model; the whole corpus is still read, tokenized and cached. 1% of the tokens validate.
#   bench/peak_memory.sh OUT            (env: ULMFIT, DATA, STEPS, PRESET)
set -euo pipefail
OUT=${1:?usage: bench/peak_memory.sh OUT}
DATA=${DATA:-../shared/data}
U=${ULMFIT:-ulmfit}
STEPS=${STEPS:-100}
PRESET=${PRESET:-small}
mkdir -p "$OUT"
cp "$DATA/gutenberg/train_000.txt" "$OUT/w10m.txt"
for i in 1 2 3 4 5; do cat "$DATA/gutenberg/train_000.txt"; done > "$OUT/w50m.txt"
for n in 10m 50m; do
  rm -rf "$OUT/cache-$n"
  /usr/bin/time -v $U pretrain "$OUT/w$n.txt" --preset "$PRESET" --max-tokens 0 --max-steps "$STEPS" \
    --valid-pct "${VALID_PCT:-0.01}" --cache-dir "$OUT/cache-$n" --out "$OUT/lm-$n" --overwrite --json > "$OUT/lm-$n.json" 2> "$OUT/lm-$n.log"
  rss=$(grep "Maximum resident" "$OUT/lm-$n.log" | awk '{print $NF}')
  wall=$(grep "Elapsed (wall" "$OUT/lm-$n.log" | awk '{print $NF}')
  words=$(wc -w < "$OUT/w$n.txt")
  tokens=$(python3 -c "import json;print(json.dumps(json.load(open('$OUT/lm-$n/manifest.json'))['tokens']))")
  echo "{\"corpus\": \"$n\", \"words\": $words, \"max_rss_mb\": $((rss / 1024)), \"wall\": \"$wall\", \"tokens\": $tokens}" | tee -a "$OUT/peaks.jsonl"
done
rm -f "$OUT/w10m.txt" "$OUT/w50m.txt"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/peaks.jsonl")][-2:]
print(json.dumps({"peak_mb": {r["corpus"]: r["max_rss_mb"] for r in rows},
                  "ratio_50m_over_10m": round(rows[1]["max_rss_mb"] / rows[0]["max_rss_mb"], 3)}))
PY
