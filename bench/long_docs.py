"""Long documents on a pretrained encoder: head and tail against windows, on IMDb (finetune-clf --long).

The same seeded 1,000 training reviews (bench/cross_task.py's covering_sample, seed 42) for every variant, each
variant's classifier trained from the import-hf run folder PARENT (all-MiniLM-L6-v2: `ulmfit import-hf
sentence-transformers/all-MiniLM-L6-v2`) and scored by `ulmfit evaluate` on a seeded sample of the test reviews
(2,000, seed 43, as hf_recipe.py draws it; `--test-n 0`: all 25,000). Variants:

  head-tail    the default: the first quarter of --max-len 512 tokens and the last ones, one pass
  windows-128  --long windows --window 128 --stride 96, the first --max-len 2048 tokens (head and tail past it)
  windows-256  --long windows --window 256 --stride 192, the same cap

    python bench/long_docs.py WORK --parent RUN [--n 1000] [--test-n 2000] [--variants head-tail windows-128]
        [--clf-flag=--window-pool=tokens ...] [--eval-flag=--engine=onnx ...] [--tag NAME]

Each run's wall time and peak resident memory (its own process's, from wait4) are recorded for training and for
scoring. Resumable: each finished (variant, tag) is a line of WORK/results.jsonl and is skipped when run again.
Prints a markdown table on stderr at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from cross_task import covering_sample, read, write  # bench/ is on the path

WINDOWS_CAP = ["--max-len", "2048"]
VARIANTS = {
    "head-tail": ["--long", "head-tail"],
    "windows-128": ["--long", "windows", "--window", "128", "--stride", "96", *WINDOWS_CAP],
    "windows-256": ["--long", "windows", "--window", "256", "--stride", "192", *WINDOWS_CAP],
}


def sh(args: list[str], log: Path) -> tuple[dict, float, float]:
    """Run `ulmfit ARGS --json`: its JSON summary, wall seconds and peak RSS in MB (stderr into `log`)."""
    t0 = time.time()
    with open(log, "w") as err:
        p = subprocess.Popen(["ulmfit", *args, "--json"], stdout=subprocess.PIPE, stderr=err, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)  # this child's own peak, not every child's so far
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): ulmfit {' '.join(args)}; see {log}")
    return json.loads(out.strip().splitlines()[-1]), round(time.time() - t0, 1), round(usage.ru_maxrss / 1024, 1)


def samples(a) -> tuple[Path, Path]:
    """The seeded training and test samples, written once into WORK."""
    train = a.work / f"imdb-train-n{a.n}-s42.csv"
    if not train.exists():
        write(train, covering_sample(read(a.data / "imdb" / "train.csv"), a.n, False, 42))
    test = a.data / "imdb" / "test.csv"
    if a.test_n:
        sample = a.work / f"imdb-test-n{a.test_n}-s43.csv"
        if not sample.exists():
            rows = read(test)
            write(sample, [rows[i] for i in sorted(random.Random(43).sample(range(len(rows)), a.test_n))])
        test = sample
    return train, test


def rows_of(results: Path) -> list[dict]:
    return [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []


def split_flags(flags: list[str]) -> list[str]:
    """["--window-pool=tokens"] -> ["--window-pool", "tokens"]"""
    return [p for f in flags for p in f.split("=", 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--parent", type=Path, required=True, help="the import-hf run folder (all-MiniLM-L6-v2)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--test-n", type=int, default=2000, help="0: the whole test set")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--clf-flag", action="append", default=[], help="e.g. --clf-flag=--window-pool=tokens")
    ap.add_argument("--eval-flag", action="append", default=[], help="e.g. --eval-flag=--engine=onnx")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tag", default="", help="names the rows of a run with other flags (its own folder too)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = a.work / "results.jsonl"
    done = {(r["variant"], r["tag"], r["n_test"]) for r in rows_of(results)}
    clf_extra, ev_extra = split_flags(a.clf_flag), split_flags(a.eval_flag)
    train, test = samples(a)
    n_test = len(read(test))
    for variant in a.variants:
        if (variant, a.tag, n_test) in done:
            continue
        name = f"{variant}{'-' + a.tag if a.tag else ''}-s{a.seed}"
        out = a.work / name
        if not (out / "manifest.json").exists():  # a classifier trained before a scoring that failed is kept
            args = ["finetune-clf", str(a.parent), str(train), "--out", str(out), "--preset", a.preset,
                    "--seed", str(a.seed), "--overwrite", *VARIANTS[variant], *clf_extra]  # fmt: skip
            summary, wall, rss = sh(args, a.work / f"{name}.log")
        else:
            summary, wall, rss = {}, None, None
        ev, ev_wall, ev_rss = sh(["evaluate", str(out), str(test), *ev_extra], a.work / f"{name}-eval-{n_test}.log")
        row = {"variant": variant, "tag": a.tag, "seed": a.seed, "accuracy": ev["accuracy"], "n_test": ev["n"],
               "train_rows": a.n, "clf_wall_s": wall, "clf_peak_rss_mb": rss, "eval_wall_s": ev_wall,
               "eval_peak_rss_mb": ev_rss, "kept_epoch": summary.get("kept_epoch"), "epochs": summary.get("epochs"),
               "flags": VARIANTS[variant] + clf_extra, "eval_flags": ev_extra}  # fmt: skip
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    have = rows_of(results)
    print(
        "| variant | tag | test rows | accuracy | train s | train peak MB | score s | score peak MB |", file=sys.stderr
    )
    print("|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in have:
        print(f"| {r['variant']} | {r['tag']} | {r['n_test']} | {100 * r['accuracy']:.1f} | {r['clf_wall_s']} | "
              f"{r['clf_peak_rss_mb']} | {r['eval_wall_s']} | {r['eval_peak_rss_mb']} |", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
