#!/usr/bin/env bash
# Peak memory (max RSS) of `ulmfit pretrain --preset tiny` on the same 57 MB of text (gutenberg/train_000.txt,
# 10M words) as ordinary lines and as one single line (every newline turned into a space, no line end), cold token
# cache, so tokenizer training, tokenization and a few training steps are all inside the measurement.
#   bench/long_line.sh OUT            (env: ULMFIT, DATA, STEPS)
set -euo pipefail
OUT=${1:?usage: bench/long_line.sh OUT}
DATA=${DATA:-../shared/data}
U=${ULMFIT:-ulmfit}
STEPS=${STEPS:-20}
mkdir -p "$OUT"
cp "$DATA/gutenberg/train_000.txt" "$OUT/lines.txt"
tr '\n' ' ' < "$DATA/gutenberg/train_000.txt" > "$OUT/oneline.txt"
for n in lines oneline; do
  rm -rf "$OUT/cache-$n"
  /usr/bin/time -v $U pretrain "$OUT/$n.txt" --preset tiny --max-steps "$STEPS" --valid-pct 0.01 \
    --cache-dir "$OUT/cache-$n" --out "$OUT/lm-$n" --overwrite --json > "$OUT/lm-$n.json" 2> "$OUT/lm-$n.log" || true
  rss=$(grep "Maximum resident" "$OUT/lm-$n.log" | awk '{print $NF}')
  wall=$(grep "Elapsed (wall" "$OUT/lm-$n.log" | awk '{print $NF}')
  code=$(grep "Exit status" "$OUT/lm-$n.log" | awk '{print $NF}')
  echo "{\"text\": \"$n\", \"bytes\": $(stat -c %s "$OUT/$n.txt"), \"lines\": $(wc -l < "$OUT/$n.txt"), \"max_rss_mb\": $((rss / 1024)), \"wall\": \"$wall\", \"exit\": $code}" | tee -a "$OUT/peaks.jsonl"
done
rm -f "$OUT/lines.txt" "$OUT/oneline.txt"
