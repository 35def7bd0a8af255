#!/usr/bin/env bash
# Issue 11's cases through the real CLI: each prints a markdown row with what happened, the exit code and what is
# left on disk beside --out. Needs root or user namespaces for the tmpfs cases (`unshare -rm`).
#   bench/robustness.sh > table.md          (env: ULMFIT)
set -uo pipefail
cd "$(dirname "$0")/.."
U=${ULMFIT:-.venv/bin/ulmfit}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1 ULMFIT_CACHE="$T/cache"
S=sample_data
$U pretrain $S/books.txt --out "$T/lm" --preset tiny -q
$U finetune-lm "$T/lm" $S/trec_train.csv --out "$T/ft" --preset tiny -q
head -322 $S/trec_train.csv > "$T/t321.csv"
head -201 $S/trec_train.csv > "$T/t200.csv"
printf '{"text":"what is a cat","label":"A"}\n{"text":"who is he","label":"B"}\n{"text":"where is it","label":"A"}\n' > "$T/three.jsonl"
head -2 "$T/three.jsonl" > "$T/two.jsonl"
left() { ls -A "$1" | tr '\n' ' '; [ -d "$1/.clf.partial/ckpt" ] && printf '(.clf.partial/ckpt: %s)' "$(ls "$1/.clf.partial/ckpt" | tr '\n' ' ')"; }
row() {  # case, out folder's parent, then the command
  local what=$1 where=$2; shift 2
  "$@" > /dev/null 2> "$T/err.log"; local rc=$?
  local said; said=$(grep -E 'error|terminated|interrupted|kept' "$T/err.log" | tail -1 | sed "s#$T/##g; s#|#/#g")
  printf '| %s | %s | %s | %s |\n' "$what" "${said:-ok}" "$rc" "$(left "$where" | sed "s#$T/##g")"
}
inns() {  # a tmpfs of size $1 at $D, then the command, in a mount namespace of its own; keeps a copy of the tmpfs
  local size=$1; shift
  unshare -rm sh -c 'mount -t tmpfs -o "size=$1" tmpfs "$D" || exit 99; shift; "$@"; rc=$?; cp -a "$D/." "$D.copy"; exit $rc' sh "$size" "$@"
}
echo "| case | what happens (last line on stderr) | exit | left beside --out |"
echo "|---|---|---|---|"
mkdir -p "$T/a"
row "finetune-clf, 289 training documents (1 more than 9 x --bs 32)" "$T/a" $U finetune-clf "$T/ft" "$T/t321.csv" --out "$T/a/clf" --preset tiny --epochs 2 -q
mkdir -p "$T/b"
row "finetune-clf, a 3-row JSONL" "$T/b" $U finetune-clf "$T/ft" "$T/three.jsonl" --out "$T/b/clf" --preset tiny --epochs 2 -q
mkdir -p "$T/c"
row "finetune-clf, a 2-row JSONL (1 training document)" "$T/c" $U finetune-clf "$T/ft" "$T/two.jsonl" --out "$T/c/clf" --preset tiny
row "finetune-clf --bs 1" "$T/c" $U finetune-clf "$T/ft" "$T/three.jsonl" --out "$T/c/clf" --preset tiny --bs 1
mkdir -p "$T/d"
clf_d=($U finetune-clf "$T/ft" "$T/t321.csv" --out "$T/d/clf" --preset tiny --epochs 12 --bs 4 --checkpoint-every 25 -q)
sigterm_mid_run() {  # SIGTERM once the run has written its first checkpoint
  "${clf_d[@]}" & local pid=$!
  while [ ! -f "$T/d/.clf.partial/ckpt/position.json" ] && kill -0 $pid 2>/dev/null; do sleep 0.1; done
  kill -TERM $pid; wait $pid
}
row "SIGTERM mid-run (after its first checkpoint)" "$T/d" sigterm_mid_run
row "... then the same command with --resume" "$T/d" $U finetune-clf "$T/ft" "$T/t321.csv" --out "$T/d/clf" --preset tiny --epochs 12 --bs 4 --checkpoint-every 25 -q --resume
for size in 256k 1200k; do
  export D="$T/disk-$size"
  mkdir -p "$D" "$D.copy"
  inns "$size" $U finetune-clf "$T/ft" "$T/t200.csv" --out "$D/clf" --preset tiny --epochs 3 --checkpoint-every 2 -q > /dev/null 2> "$T/err.log"; rc=$?
  printf '| full disk: a %s tmpfs | %s | %s | %s |\n' "$size" "$(grep error "$T/err.log" | tail -1 | sed "s#$T/##g")" "$rc" "$(left "$D.copy")"
done
export D="$T/ro"
mkdir -p "$D"
unshare -rm sh -c 'mount -t tmpfs -o ro tmpfs "$D" && exec "$@"' sh $U finetune-clf "$T/ft" "$T/t200.csv" --out "$D/clf" --preset tiny -q > /dev/null 2> "$T/err.log"; rc=$?
printf '| read-only --out folder | %s | %s | %s |\n' "$(grep error "$T/err.log" | tail -1 | sed "s#$T/##g")" "$rc" "$(ls -A "$D")"
before=$(ls -l --time-style=+%s.%N "$T/ft" | md5sum)
row "finetune-lm PARENT --out PARENT --overwrite" "$T/ft" $U finetune-lm "$T/ft" $S/trec_train.csv --out "$T/ft" --overwrite --preset tiny
row "finetune-clf PARENT --out PARENT/sub" "$T/ft" $U finetune-clf "$T/ft" $S/trec_train.csv --out "$T/ft/sub" --preset tiny
[ "$before" = "$(ls -l --time-style=+%s.%N "$T/ft" | md5sum)" ] && echo "(the parent run folder is unchanged)" >&2
