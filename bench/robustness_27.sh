#!/usr/bin/env bash
# Issue 27's cases through the real CLI on the tiny preset: what happens (the last line on stderr), the exit code,
# and what is left on disk. Prints the markdown rows of bench/RESULTS.md section 17.
#   bench/robustness_27.sh [WORK]      (WORK: a scratch folder, default a new temporary one; removed at the end)
set -u
cd "$(dirname "$0")/.."
U="${ULMFIT:-.venv/bin/ulmfit}"
W="${1:-$(mktemp -d)}"
S=sample_data
export OMP_NUM_THREADS=1 ULMFIT_CACHE="$W/cache"
mkdir -p "$W"
"$U" pretrain $S/books.txt --out "$W/lm" --preset tiny -q &&
  "$U" finetune-lm "$W/lm" $S/trec_train.csv --out "$W/ft" --preset tiny -q &&
  "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/clf" --preset tiny -q || { echo "pipeline failed"; exit 1; }

row() {  # row CASE CMD...: run CMD, print | case | last stderr line | exit | files beside --out |
  local case="$1"; shift
  local err rc
  "$@" >/dev/null 2>"$W/stderr"; rc=$?
  err=$(tail -1 "$W/stderr")
  [ $rc -eq 0 ] && err=ok
  echo "| $case | $err | $rc | $(ls -A "$W/out" 2>/dev/null | tr '\n' ' ') |"
}
mkdir -p "$W/out"
echo "| case | what happens (last line on stderr) | exit | left in the --out folder's parent |"
echo "|---|---|---|---|"
# 1. two processes, one --out
"$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/c8" --preset tiny --epochs 30 -q &
first=$!
while [ ! -s "$W/out/.c8.lock" ]; do sleep 0.1; done
row "a second finetune-clf on the same --out, with --overwrite" \
  "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/c8" --preset tiny --epochs 2 --overwrite
row "... with --resume" "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/c8" --preset tiny --resume
kill -9 $first; wait $first 2>/dev/null
row "the first killed (SIGKILL), then the same command with --overwrite" \
  "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/c8" --preset tiny --epochs 1 --overwrite
rm -rf "$W/out/c8" "$W/out/.c8.lock"
# 2. a damaged run folder
cp -r "$W/clf" "$W/bad"; python3 - "$W/bad/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m.pop("classes"); json.dump(m, open(sys.argv[1], "w"))
EOF
row "predict on a run whose manifest lacks 'classes'" "$U" predict "$W/bad" $S/trec_test.csv
# 3. outputs that fail
row "predict > /dev/full" sh -c "\"$U\" predict \"$W/clf\" $S/trec_test.csv > /dev/full"
row "evaluate --json > /dev/full" sh -c "\"$U\" evaluate \"$W/clf\" $S/trec_test.csv --json > /dev/full"
row "info with stdout closed (>&-)" sh -c "\"$U\" info \"$W/clf\" >&-"
# 5. pipes
row "finetune-clf RUN <(cat train.csv)" bash -c "\"$U\" finetune-clf \"$W/ft\" <(cat $S/trec_train.csv) --out \"$W/out/p\" --preset tiny --epochs 1"
row "evaluate RUN <(cat test.csv)" bash -c "\"$U\" evaluate \"$W/clf\" <(cat $S/trec_test.csv)"
row "cat books.txt \\| finetune-lm RUN -" bash -c "cat $S/books.txt | \"$U\" finetune-lm \"$W/lm\" - --out \"$W/out/l\" --preset tiny"
# 6. labels with tabs: see tests/test_formats.py (a trained run's labels come from its training table)
# 7. --out that is a file
echo mine > "$W/out/notes.txt"
row "--out that is a file, with --overwrite" "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/notes.txt" --preset tiny --overwrite
# 8. out-of-range numbers
row "--seed 4294967296" "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/s" --preset tiny --seed 4294967296
row "--lr inf" "$U" finetune-clf "$W/ft" $S/trec_train.csv --out "$W/out/s" --preset tiny --lr inf
# 9. duplicate columns
printf 'text,text,label\nwhat is it,what,DESC\nwho is he,who,HUM\n' > "$W/dup.csv"
row "a table with two 'text' columns" "$U" evaluate "$W/clf" "$W/dup.csv"
[ -z "${1:-}" ] && rm -rf "$W"
