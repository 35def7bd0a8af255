#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (about 5 minutes on an H200):
#  1. the three stages on sample_data with --device cuda --precision bf16, for both backbones, and the
#     transformer once more with --compile: every stage must finish and give finite metrics;
#  2. bench/gpu_throughput.py: transformer LM training tokens/s and share of the bf16 peak, eager and compiled.
# Everything is written under OUT (default $OUT or bench/out/gpu); the JSON lines are what RESULTS.md needs.
#   bench/gpu_check.sh [OUT]
set -uo pipefail
OUT=${1:-${OUT:-bench/out/gpu}}
mkdir -p "$OUT"
PY=${PY:-python3}
U="$PY -m ulmfit_cli"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
for variant in "awd-lstm" "transformer" "transformer --compile"; do
  name=$(echo "$variant" | tr ' ' '_' | tr -d '-')
  backbone=${variant%% *}
  extra=${variant#"$backbone"}
  common="--device cuda --precision bf16 --preset tiny --overwrite --json $extra"
  {
    $U pretrain sample_data/books.txt --out "$OUT/$name/lm" --backbone "$backbone" $common &&
    $U finetune-lm "$OUT/$name/lm" sample_data/trec_train.csv --out "$OUT/$name/ft" $common &&
    $U finetune-clf "$OUT/$name/ft" sample_data/trec_train.csv --out "$OUT/$name/clf" $common &&
    $U evaluate "$OUT/$name/clf" sample_data/trec_test.csv --json
  } > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
  echo "{\"pipeline\": \"$variant\", \"rc\": $?, \"last\": $(tail -1 "$OUT/$name.jsonl" 2>/dev/null || echo null)}" | tee -a "$OUT/summary.jsonl"
done
$PY bench/gpu_throughput.py > "$OUT/throughput.json" 2> "$OUT/throughput.log"; echo "throughput rc=$?"
cat "$OUT/throughput.json"
