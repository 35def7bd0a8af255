#!/usr/bin/env bash
# Feeds every kind of bad input to the real CLI and prints a markdown table: what was tried, the exit code and
# the one line on stderr. Needs a tiny pretrain/finetune-lm/finetune-clf trio, made here on sample_data/.
#   bench/bad_inputs.sh > table.md
set -uo pipefail
cd "$(dirname "$0")/.."
U=${ULMFIT:-.venv/bin/ulmfit}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
S=sample_data
$U pretrain $S/books.txt --out "$T/lm" --preset tiny -q
$U finetune-lm "$T/lm" $S/trec_train.csv --out "$T/ft" --preset tiny -q
$U finetune-clf "$T/ft" $S/trec_train.csv --out "$T/clf" --preset tiny -q
printf '\n\n  \n' > "$T/empty.txt"
head -c 4096 /bin/ls > "$T/binary.txt"
python3 -c "open('$T/latin1.txt','wb').write('caf\xe9 cr\xe8me br\xfbl\xe9e\n'.encode('latin-1') * 50)"
python3 -c "open('$T/huge.txt','w').write('word ' * 600000 + '\n' + 'short line\n' * 200)"
printf 'text,label\nwhat ?,A\nwho ?,A\n' > "$T/one_class.csv"
printf 'text,label\nwhat ?,A\nwho ?,\n' > "$T/no_label.csv"
printf 'text,label\nwhat is it ?,ZZZ\n' > "$T/unseen.csv"
cp -r "$T/lm" "$T/lm_incomplete" && rm "$T/lm_incomplete/model.safetensors"
cp -r "$T/lm" "$T/lm_badtok" && sed -i 's/"NFKC"/"NFC"/' "$T/lm_badtok/tokenizer.json"
cp -r "$T/lm" "$T/lm_pickle" && python3 -c "import pickle; open('$T/lm_pickle/model.safetensors','wb').write(pickle.dumps({'a': 1}))"
mkdir "$T/exists"
row() {  # description, then the command
  local what=$1; shift
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  printf '| %s | %s | `%s` |\n' "$what" "$rc" "$(printf '%s' "$err" | grep -E 'error|warning' | tail -1 | sed "s#$T/##g; s#|#/#g")"
}
echo "| input | exit | stderr (last line) |"
echo "|---|---|---|"
row "missing corpus file" $U pretrain "$T/nope.txt" --out "$T/x" --preset tiny
row "empty corpus (blank lines only)" $U pretrain "$T/empty.txt" --out "$T/x" --preset tiny
row "binary file" $U pretrain "$T/binary.txt" --out "$T/x" --preset tiny
row "Latin-1 bytes (not UTF-8): replaced, counted, run goes on" $U pretrain "$T/latin1.txt" --out "$T/x1" --preset tiny --epochs 0
row "a 3-million-character document: handled" $U pretrain "$T/huge.txt" --out "$T/x2" --preset tiny --epochs 0
row "unknown text column" $U finetune-clf "$T/ft" $S/trec_train.csv --out "$T/x" --text-col question
row "unknown label column" $U finetune-clf "$T/ft" $S/trec_train.csv --out "$T/x" --label-col y
row "missing label" $U finetune-clf "$T/ft" "$T/no_label.csv" --out "$T/x"
row "a single class" $U finetune-clf "$T/ft" "$T/one_class.csv" --out "$T/x"
row "validation label never seen in training" $U finetune-clf "$T/ft" $S/trec_train.csv --valid "$T/unseen.csv" --out "$T/x"
row "test label never seen in training" $U evaluate "$T/clf" "$T/unseen.csv"
row "parent run folder missing" $U finetune-lm "$T/none" $S/trec_train.csv --out "$T/x"
row "parent of the wrong stage" $U finetune-lm "$T/clf" $S/trec_train.csv --out "$T/x"
row "parent incomplete (weights deleted)" $U finetune-lm "$T/lm_incomplete" $S/trec_train.csv --out "$T/x"
row "parent tokenizer edited" $U finetune-lm "$T/lm_badtok" $S/trec_train.csv --out "$T/x"
row "weights file is a pickle" $U finetune-lm "$T/lm_pickle" $S/trec_train.csv --out "$T/x"
row "output folder exists, no --overwrite" $U pretrain $S/books.txt --out "$T/exists" --preset tiny
row "flags out of range" $U pretrain $S/books.txt --out "$T/x" --lr -1 --cut-frac 2 --bs 0
row "--resume with nothing to resume" $U pretrain $S/books.txt --out "$T/x" --preset tiny --resume
row "NaN loss (--lr 1e4)" $U pretrain $S/books.txt --out "$T/nan" --preset tiny --lr 1e4 --checkpoint-every 5
row "predict on empty stdin" $U predict "$T/clf" - < /dev/null
