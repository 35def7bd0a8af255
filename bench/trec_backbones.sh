#!/usr/bin/env bash
# The backbones side by side on TREC-6 with one budget: AWD-LSTM and the transformer's pre/post-norm x
# softmax/linear attention variants, each through bench/trec_pipeline.sh with the same token and epoch budget
# (pretrain on the first MAX_TOKENS tokens of the book corpus, FT_EPOCHS of LM fine-tuning, CLF_EPOCHS of
# classifier training), the `small` preset's sizes (200 wide, 512 hidden/feed-forward, 3 layers).
# Appends one JSON line per variant to OUT/backbones.jsonl: accuracy, macro-F1, wall time per stage.
#   bench/trec_backbones.sh OUT [variant...]     variants: awd-lstm pre-softmax post-softmax pre-linear post-linear
set -euo pipefail
OUT=${1:?usage: bench/trec_backbones.sh OUT [variant...]}; shift
HERE=$(cd "$(dirname "$0")" && pwd)
MAX_TOKENS=${MAX_TOKENS:-500000}
FT_EPOCHS=${FT_EPOCHS:-3}
CLF_EPOCHS=${CLF_EPOCHS:-10}
VARIANTS=${*:-awd-lstm pre-softmax post-softmax pre-linear post-linear}
mkdir -p "$OUT"
for v in $VARIANTS; do
  case $v in
    awd-lstm) arch=(--backbone awd-lstm) ;;
    *-*) arch=(--backbone transformer --norm-position "${v%%-*}" --attention "${v##*-}") ;;
  esac
  res=$(FT_FLAGS="--epochs $FT_EPOCHS" CLF_FLAGS="--epochs $CLF_EPOCHS" \
        "$HERE/trec_pipeline.sh" "$OUT/$v" --max-tokens "$MAX_TOKENS" "${arch[@]}")
  echo "{\"variant\": \"$v\", \"budget\": {\"pretrain_tokens\": $MAX_TOKENS, \"ft_epochs\": $FT_EPOCHS, \"clf_epochs\": $CLF_EPOCHS}, \"result\": $res}" \
    | tee -a "$OUT/backbones.jsonl"
done
