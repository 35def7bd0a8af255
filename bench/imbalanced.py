"""Imbalanced classes (issue 28): SST-2 made 10:1 by keeping one negative review in ten, in training and in test;
a classifier from a parent run (e.g. all-MiniLM-L6 from `import-hf`) with and without `--class-weights balanced`
and `--metric macro_f1`, per seed; accuracy and macro-F1 on the imbalanced test set.

    python bench/imbalanced.py WORK --parent RUN [--seeds 42 43] [--n-pos 1100] [--valid-pct 0.2] [--flag=--lr=1e-3]

The rows: N_POS positive training sentences and N_POS/10 negative ones (seeded sample of SST-2's train.csv),
`--valid-pct` of them held out for validation (0.2: at least 200 validation sentences, so `--keep auto` chooses
the best epoch and `--metric` decides which); the test set: every positive test sentence and one negative in ten
(seeded). Resumable: WORK/results.jsonl holds the finished runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "default": [],
    "balanced": ["--class-weights", "balanced"],
    "macro_f1": ["--metric", "macro_f1"],
    "balanced+macro_f1": ["--class-weights", "balanced", "--metric", "macro_f1"],
}


def read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows({"text": r["text"], "label": r["label"]} for r in rows)


def imbalance(rows: list[dict], n_pos: int | None, rng: random.Random) -> list[dict]:
    pos = [r for r in rows if r["label"] == "pos"]
    neg = [r for r in rows if r["label"] == "neg"]
    pos = rng.sample(pos, n_pos) if n_pos else pos
    out = pos + rng.sample(neg, max(1, len(pos) // 10 if n_pos else len(neg) // 10))
    rng.shuffle(out)
    return out


def ulmfit(args: list[str], log: Path) -> tuple[dict, float]:
    t0 = time.time()
    with log.open("w") as err:
        p = subprocess.run([sys.executable, "-m", "ulmfit_cli", *args], stdout=subprocess.PIPE, stderr=err, text=True)
    if p.returncode:
        sys.exit(f"failed ({p.returncode}): ulmfit {' '.join(args)}; see {log}")
    return json.loads(p.stdout.strip().splitlines()[-1]), round(time.time() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--parent", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--n-pos", type=int, default=1100)
    ap.add_argument("--valid-pct", default="0.2")
    ap.add_argument("--preset", default="small")
    ap.add_argument(
        "--flag", action="append", default=[], help="more finetune-clf flags for every run, e.g. --flag=--lr=1e-3"
    )
    a = ap.parse_args()
    extra = [p for f in a.flag for p in f.split("=", 1)]
    a.work.mkdir(parents=True, exist_ok=True)
    train, test = a.work / "train.csv", a.work / "test.csv"
    if not train.exists():
        write(train, imbalance(read(a.data / "train.csv"), a.n_pos, random.Random(42)))
        write(test, imbalance(read(a.data / "test.csv"), None, random.Random(43)))
    results = a.work / "results.jsonl"
    have = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    done = {(r["variant"], r["seed"]) for r in have}
    for seed in a.seeds:
        for variant in a.variants:
            if (variant, seed) in done:
                continue
            out = a.work / f"{variant}-s{seed}"
            summary, wall = ulmfit(["finetune-clf", str(a.parent), str(train), "--out", str(out), "--preset", a.preset,
                                    "--seed", str(seed), "--valid-pct", a.valid_pct, "--overwrite", "--json",
                                    *VARIANTS[variant], *extra], a.work / f"{variant}-s{seed}.log")  # fmt: skip
            ev, ev_wall = ulmfit(["evaluate", str(out), str(test), "--json"], a.work / f"{variant}-s{seed}-eval.log")
            row = {"variant": variant, "seed": seed, "accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"],
                   "neg_f1": next(c["f1"] for c in ev["per_class"] if c["label"] == "neg"), "n_test": ev["n"],
                   "kept_epoch": summary.get("kept_epoch"), "best_epoch": summary.get("best_epoch"),
                   "epochs": summary["epochs"], "clf_wall_s": wall, "flags": VARIANTS[variant] + extra}  # fmt: skip
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    print("| variant | seed | accuracy | macro-F1 | F1 of neg (the 10%) | epoch kept |\n|---|---|---|---|---|---|",
          file=sys.stderr)  # fmt: skip
    for r in rows:
        print(f"| {r['variant']} | {r['seed']} | {100 * r['accuracy']:.1f} | {r['macro_f1']:.3f} | {r['neg_f1']:.3f} | "
              f"{r['kept_epoch']} of {r['epochs']} |", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
