#!/usr/bin/env bash
# ULMFiT on sample_data/ on the CPU, in a minute or two, then the test accuracy on the 500 TREC test questions and
# one question answered. It runs one of two paths and says which:
#  - pretrained, when a small pretrained checkpoint is reachable (the `hf` extra installed, and all-MiniLM-L6-v2
#    in the Hugging Face cache or on the network; or any local checkpoint folder in ULMFIT_DEMO_CHECKPOINT):
#    import it and train a classifier on 2,000 TREC questions, the path and the quality a user gets;
#  - from scratch otherwise: pretrain a tiny LM on a slice of public-domain books, fine-tune it on the TREC
#    questions, train the classifier: it shows the machinery, not the quality.
set -euo pipefail
cd "$(dirname "$0")"
U=${ULMFIT:-.venv/bin/ulmfit}
OUT=${OUT:-runs/demo}
CHECKPOINT=${ULMFIT_DEMO_CHECKPOINT:-sentence-transformers/all-MiniLM-L6-v2}
PY=${PYTHON:-$(dirname "$(command -v "$U")")/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"

# exit 0 when CHECKPOINT can be imported: transformers is installed and the checkpoint is a local path, in the
# Hugging Face cache, or answers on the Hub within a few seconds (never with HF_HUB_OFFLINE set)
reachable() {
  "$PY" - "$CHECKPOINT" 2>/dev/null <<'EOF'
import os, sys
from pathlib import Path
name = sys.argv[1]
import transformers  # noqa: F401  (the hf extra)
if Path(name).exists():
    sys.exit(0)
from huggingface_hub import try_to_load_from_cache
if isinstance(try_to_load_from_cache(name, "config.json"), str):
    sys.exit(0)
if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
    sys.exit(1)
from huggingface_hub import HfApi
HfApi().model_info(name, timeout=5)
EOF
}

if reachable; then
  echo "demo: the pretrained path: $CHECKPOINT, fine-tuned on 2,000 TREC questions (one epoch, every layer)" >&2
  $U import-hf "$CHECKPOINT" --out "$OUT/pretrained" --overwrite
  $U finetune-clf "$OUT/pretrained" sample_data/trec_train.csv --out "$OUT/clf" --preset small \
    --epochs 1 --no-gradual-unfreezing --overwrite
else
  echo "demo: no pretrained checkpoint reachable (offline, or without pip install -e '.[hf]'): training a tiny" \
    "model from scratch, which shows the machinery, not the quality (ULMFIT_DEMO_CHECKPOINT=FOLDER names a" \
    "local checkpoint)" >&2
  $U pretrain sample_data/books.txt --out "$OUT/lm" --preset tiny --overwrite
  $U finetune-lm "$OUT/lm" sample_data/trec_train.csv --out "$OUT/lm-ft" --preset tiny --overwrite
  $U finetune-clf "$OUT/lm-ft" sample_data/trec_train.csv --out "$OUT/clf" --preset tiny --overwrite
fi
$U evaluate "$OUT/clf" sample_data/trec_test.csv
echo "What is the capital of France ?" | $U predict "$OUT/clf" -
