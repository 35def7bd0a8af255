#!/usr/bin/env bash
# The whole ULMFiT pipeline on sample_data/ with the tiny preset, on the CPU, in well under 3 minutes:
# pretrain on a slice of public-domain books, fine-tune the LM on TREC questions, train the classifier,
# then evaluate on the 500 TREC test questions and print the test accuracy.
set -euo pipefail
cd "$(dirname "$0")"
U=${ULMFIT:-.venv/bin/ulmfit}
OUT=${OUT:-runs/demo}
mkdir -p "$OUT"
$U pretrain sample_data/books.txt --out "$OUT/lm" --preset tiny --overwrite
$U finetune-lm "$OUT/lm" sample_data/trec_train.csv --out "$OUT/lm-ft" --preset tiny --overwrite
$U finetune-clf "$OUT/lm-ft" sample_data/trec_train.csv --out "$OUT/clf" --preset tiny --overwrite
$U evaluate "$OUT/clf" sample_data/trec_test.csv
echo "What is the capital of France ?" | $U predict "$OUT/clf" -
