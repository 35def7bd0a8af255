"""The tiny preset's classifier defaults judged on more than one task (issue 13): TREC-6 (sample_data's 2,000
questions, test 500) and SST-2 (2,000 sentences drawn with seed 0 from ../shared/data/sst2/train.csv, test 1,821).

One tiny pretraining run (sample_data/books.txt) and one tiny LM fine-tuning per task, shared by every variant;
then `finetune-clf --preset tiny FLAGS --seed S` and `evaluate` on the task's test set, for each variant and seed.
Prints one tab-separated line per run (variant, task, seed, test accuracy, best epoch, kept epoch, classifier wall
seconds) and a mean per variant over tasks and seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/tiny_clf_defaults.py OUT --seeds 1,2 \\
        --variant "now:" --variant "lr3e-2:--lr 3e-2" ...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ULMFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def cli(*args) -> str:
    r = subprocess.run([sys.executable, "-m", "ulmfit_cli", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{r.stderr[-2000:]}")
    return r.stdout


def sst2_sample(out: Path, n: int = 2000) -> Path:
    """n rows of SST-2's training set, drawn with seed 0 (header kept, CSV lines copied verbatim)."""
    path = out / "sst2_train_2000.csv"
    if not path.exists():
        import csv

        with open(SHARED / "sst2" / "train.csv", newline="") as f:
            rows = list(csv.reader(f))
        head, body = rows[0], rows[1:]
        random.Random(0).shuffle(body)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([head, *body[:n]])
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--variant", action="append", required=True, help="NAME:FLAGS for finetune-clf")
    ap.add_argument("--tasks", default="trec,sst2")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    tasks = {
        "trec": (ROOT / "sample_data" / "trec_train.csv", ROOT / "sample_data" / "trec_test.csv"),
        "sst2": (sst2_sample(a.out), SHARED / "sst2" / "test.csv"),
    }
    tasks = {k: tasks[k] for k in a.tasks.split(",")}
    lm = a.out / "lm"
    if not lm.exists():
        cli("pretrain", ROOT / "sample_data" / "books.txt", "--preset", "tiny", "--out", lm, "--quiet")
    results: dict[str, list[float]] = {}
    for task, (train, test) in tasks.items():
        ft = a.out / f"ft-{task}"
        if not ft.exists():
            cli("finetune-lm", lm, train, "--preset", "tiny", "--out", ft, "--quiet")
        for spec in a.variant:
            name, _, flags = spec.partition(":")
            for seed in a.seeds.split(","):
                clf = a.out / f"clf-{task}-{name}-{seed}"
                if not clf.exists():
                    cli("finetune-clf", ft, train, "--preset", "tiny", "--seed", seed, *flags.split(), "--out", clf,
                        "--quiet")  # fmt: skip
                m = json.loads((clf / "manifest.json").read_text())
                acc = json.loads(cli("evaluate", clf, test, "--json"))["accuracy"]
                results.setdefault(name, []).append(acc)
                cols = [name, task, seed, f"{acc:.4f}", m.get("best_epoch"), m.get("kept_epoch"), m["wall_s"]]
                print("\t".join(map(str, cols)), flush=True)
    for name, accs in results.items():
        print(f"mean\t{name}\t{sum(accs) / len(accs):.4f}\t({len(accs)} runs)", flush=True)


if __name__ == "__main__":
    main()
