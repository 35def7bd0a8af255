"""The tiny preset's classifier defaults judged on more than one task (issue 13).

Two sets of tasks:
- default: TREC-6 (sample_data's 2,000 questions, test 500) and SST-2 (2,000 sentences drawn with seed 0 from
  ../shared/data/sst2/train.csv, test 1,821), from one tiny pretraining (sample_data/books.txt) and one tiny LM
  fine-tuning per task made here;
- `--cross-task WORK`: every task of a `bench/cross_task.py run WORK` folder (its training and test files, its
  forward LM fine-tuned on each task: WORK/TASK/pipeline*/fwd/lm-ft); `--max-test N` scores on a seeded N of a
  larger test set (IMDb's 25,000).

For each task, variant and seed: `finetune-clf --preset PRESET FLAGS --seed S`, then `evaluate` on the test set
(micro-F1 for multi-label tasks). Prints one tab-separated line per run (variant, task, seed, test score, best
epoch, kept epoch, classifier wall seconds) and a mean per variant over tasks and seeds; the lines also go to
OUT/results.jsonl, and a run already there is not trained again.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/probes/tiny_clf_defaults.py OUT --seeds 1,2 \\
        --variant "now:" --variant "lr3e-2:--lr 3e-2" ...
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/probes/tiny_clf_defaults.py OUT --cross-task /tmp/ct_tiny --seeds 42 \\
        --max-test 5000 --jobs 2 --variant "now:" --variant "len512:--max-len 512" ...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is bench/probes/tiny_clf_defaults.py)
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


def sampled_test(out: Path, test: Path, n: int) -> Path:
    """A seeded n rows of a test file larger than n (cross_task's reader and atomic writer: text, label), else the
    file itself; the same rows as bench/learning_curve_imdb.sh's test sample."""
    sys.path.insert(0, str(ROOT / "bench"))
    from cross_task import read, write  # bench/cross_task.py

    rows = read(test)
    if not n or len(rows) <= n:
        return test
    path = out / f"{test.parent.name}-{test.stem}-n{n}.csv"
    if not path.exists():
        write(path, [rows[i] for i in sorted(random.Random(0).sample(range(len(rows)), n))])
    return path


def cross_tasks(work: Path, out: Path, max_test: int) -> tuple[str, dict]:
    """task -> (LM fine-tuned on it, train file, test file, multi-label?) from a cross_task.py work folder."""
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines() if line.strip()]
    presets = {r["preset"] for r in rows}
    assert len(presets) == 1, presets
    tasks = {}
    for r in rows:
        fts = sorted(work.glob(f"{r['task']}/pipeline*/fwd/lm-ft"))
        if r["variant"] != "fwd" or not fts:
            continue
        test = sampled_test(out, Path(r["test_file"]), max_test)
        tasks[r["task"]] = (fts[0], Path(r["train_file"]), test, r["multi"])
    return presets.pop(), tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--variant", action="append", required=True, help="NAME:FLAGS for finetune-clf")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: trec,sst2; with --cross-task, all)")
    ap.add_argument("--cross-task", type=Path, help="a bench/cross_task.py work folder: its tasks and LMs")
    ap.add_argument("--max-test", type=int, default=0, help="with --cross-task: score on a seeded N test rows")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cross_task:
        preset, tasks = cross_tasks(a.cross_task, a.out, a.max_test)
    else:
        preset, lm = "tiny", a.out / "lm"
        if not lm.exists():
            cli("pretrain", ROOT / "sample_data" / "books.txt", "--preset", "tiny", "--out", lm, "--quiet")
        tasks = {}
        for task, (train, test) in {
            "trec": (ROOT / "sample_data" / "trec_train.csv", ROOT / "sample_data" / "trec_test.csv"),
            "sst2": (sst2_sample(a.out), SHARED / "sst2" / "test.csv"),
        }.items():
            ft = a.out / f"ft-{task}"
            if not ft.exists():
                cli("finetune-lm", lm, train, "--preset", "tiny", "--out", ft, "--quiet")
            tasks[task] = (ft, train, test, False)
    if a.tasks:
        tasks = {k: tasks[k] for k in a.tasks.split(",")}
    log = a.out / "results.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["variant"], r["task"], r["seed"])] = r
    lock = threading.Lock()

    def one(name: str, flags: str, task: str, seed: str) -> dict:
        ft, train, test, multi = tasks[task]
        if (name, task, seed) in done:
            return done[(name, task, seed)]
        clf = a.out / f"clf-{task}-{name}-{seed}"
        if not (clf / "manifest.json").exists():
            delim = ["--label-delim", " "] if multi else []
            cli("finetune-clf", ft, train, "--preset", preset, "--seed", seed, *delim, *flags.split(), "--out", clf,
                "--quiet", "--overwrite")  # fmt: skip
        m = json.loads((clf / "manifest.json").read_text())
        score = json.loads(cli("evaluate", clf, test, "--json"))["micro_f1" if multi else "accuracy"]
        r = dict(variant=name, task=task, seed=seed, score=score, best_epoch=m.get("best_epoch"))
        r.update(kept_epoch=m.get("kept_epoch"), wall_s=m["wall_s"], flags=flags, test=str(test))
        with lock:
            with open(log, "a") as f:
                f.write(json.dumps(r) + "\n")
            cols = [name, task, seed, f"{score:.4f}", r["best_epoch"], r["kept_epoch"], r["wall_s"]]
            print("\t".join(map(str, cols)), flush=True)
        return r

    jobs = [(*spec.partition(":")[::2], t, s) for spec in a.variant for t in tasks for s in a.seeds.split(",")]
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda j: one(*j), jobs))
    means: dict[str, list[float]] = {}
    for r in results:
        means.setdefault(r["variant"], []).append(r["score"])
    for name, scores in means.items():
        print(f"mean\t{name}\t{sum(scores) / len(scores):.4f}\t({len(scores)} runs)", flush=True)


if __name__ == "__main__":
    main()
