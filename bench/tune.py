"""`ulmfit tune` (issue 41): is a tuned classifier better than the defaults, and than random search on the same
budget; what pruning saves a trial; what a second worker adds.

Tasks: trec6 and sst2, 1,000 training rows each (a seeded draw without replacement from the training set, the
same for every system), scored on the whole test set. PARENT is all-MiniLM-L6 imported with `ulmfit import-hf`.

  sample   writes WORK/data/{task}-train.csv (--rows rows drawn with random.Random(--draw)) and {task}-test.csv.
  run      per task and seed, each of these not yet in WORK/results.jsonl (resumable; one thread a process):
             defaults  `ulmfit finetune-clf PARENT TRAIN --seed S`, then `ulmfit evaluate` on the test set
             tpe       `ulmfit tune PARENT TRAIN --trials N --seed S` (TPE, median pruner), then `ulmfit evaluate`
                       of the best trial's run folder (what `finetune-clf --config best.toml` trains again)
             random    the same with --sampler random: the same budget of random search
             noprune   the same as tpe with --pruner none: the time a trial takes without pruning
           each line: test accuracy and macro-F1, the validation score tune chose by, wall seconds, the trials'
           mean wall seconds and how many were pruned.
  workers  one study on one worker, then another on two workers started together (SQLite in WORK, --threads 1
           each): trials an hour of each, the best value each reached and the settings its trials tried
           (WORK/workers.jsonl; with --flag=--sampler=grid both try the same ones).
  report   markdown tables on stdout: test accuracy by system (mean and spread over the seeds), seconds a trial
           with and without pruning, trials an hour on one and two workers.

    python bench/tune.py sample WORK [--tasks trec6 sst2] [--rows 1000] [--data /work/shared/data]
    python bench/tune.py run WORK --parent MINILM_RUN [--tasks trec6 sst2] [--seeds 0 1] [--trials 20]
    python bench/tune.py workers WORK --parent MINILM_RUN [--task trec6] [--trials 20]
    python bench/tune.py report WORK

A smoke check on the tiny preset, with the test suite's sample data and a tiny parent (seconds, not results):

    mkdir -p /tmp/tb/trec && cp sample_data/trec_train.csv /tmp/tb/trec/train.csv \
      && cp sample_data/trec_test.csv /tmp/tb/trec/test.csv
    ulmfit pretrain sample_data/books.txt --preset tiny --out /tmp/tb/lm
    python bench/tune.py sample /tmp/tb/w --tasks trec6 --rows 300 --data /tmp/tb
    python bench/tune.py run /tmp/tb/w --parent /tmp/tb/lm --tasks trec6 --seeds 0 --trials 3 --preset tiny \
      --flag=--epochs=2
    python bench/tune.py workers /tmp/tb/w --parent /tmp/tb/lm --trials 4 --preset tiny --flag=--epochs=2
    python bench/tune.py report /tmp/tb/w

Every subprocess gets OMP_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false and HF offline mode; to measure another
checkout than the installed one, set PYTHONPATH=CHECKOUT.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fewshot import read, write  # the same text,label CSV files (bench/ is the script's folder: on sys.path)

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data")
TASKS = {"trec6": ("trec/train.csv", "trec/test.csv"), "sst2": ("sst2/train.csv", "sst2/test.csv")}
SYSTEMS = {  # name: the tune flags (None: no search, the preset's defaults)
    "defaults": None,
    "tpe": ["--sampler", "tpe", "--pruner", "median"],
    "random": ["--sampler", "random", "--pruner", "median"],
    "noprune": ["--sampler", "tpe", "--pruner", "none"],
}
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip


def sample(a) -> None:
    (a.work / "data").mkdir(parents=True, exist_ok=True)
    for task in a.tasks:
        train, test = (read(a.data / p) for p in TASKS[task])
        write(a.work / "data" / f"{task}-train.csv", random.Random(a.draw).sample(train, min(a.rows, len(train))))
        write(a.work / "data" / f"{task}-test.csv", test)
        print(f"{task}: {min(a.rows, len(train))} training rows, {len(test)} test rows", file=sys.stderr)


def ulmfit(a, *args: str, log: Path) -> dict:
    """One `ulmfit` command with --json; its summary. A failure stops the benchmark with its log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as err:
        r = subprocess.run([a.ulmfit, *args, "--json"], stdout=subprocess.PIPE, stderr=err, text=True,
                           env={**os.environ, **ENV})  # fmt: skip
    if r.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed ({r.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def point(a, task: str, seed: int, system: str) -> dict:
    data, name = a.work / "data", f"{task}-{system}-s{seed}"
    train, test, log = data / f"{task}-train.csv", data / f"{task}-test.csv", a.work / "logs" / f"{name}.log"
    common = ["--preset", a.preset, "--seed", str(seed), *a.flag]
    t0 = time.time()
    if SYSTEMS[system] is None:
        run = a.work / "runs" / name
        run.parent.mkdir(parents=True, exist_ok=True)
        ulmfit(a, "finetune-clf", str(a.parent), str(train), "--out", str(run), "--overwrite", *common, log=log)
        searched = {}
    else:
        out = a.work / "tune" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        s = ulmfit(a, "tune", str(a.parent), str(train), "--trials", str(a.trials), "--out", str(out), "--threads",
                   "1", *SYSTEMS[system], *common, log=log)  # fmt: skip
        run = Path(s["best"]["run"])
        finished = [t for t in s["trials"] if t["state"] in ("complete", "pruned")]
        searched = {
            "valid": s["best"]["value"], "best_params": s["best"]["params"], "trials": len(finished),
            "pruned": s["counts"]["pruned"], "trial_wall_s": statistics.mean(t["wall_s"] for t in finished),
        }  # fmt: skip
    wall = time.time() - t0
    ev = ulmfit(a, "evaluate", str(run), str(test), "--threads", "1", log=log)
    return {"task": task, "seed": seed, "system": system, "accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"],
            "wall_s": round(wall, 1), "preset": a.preset, "flags": a.flag, **searched}  # fmt: skip


def run(a) -> None:
    results = a.work / "results.jsonl"
    done = {(r["task"], r["seed"], r["system"]) for r in map(json.loads, _lines(results))}
    for task in a.tasks:
        for seed in a.seeds:
            for system in a.systems:
                if (task, seed, system) in done:
                    continue
                print(f"{task} seed {seed}: {system}", file=sys.stderr)
                with open(results, "a", encoding="utf-8") as f:
                    f.write(json.dumps(point(a, task, seed, system)) + "\n")


def workers(a) -> None:
    """The same study (--trials, seed 0) on one worker and on two started together, each on one thread."""
    data = a.work / "data"
    train = data / f"{a.task}-train.csv"
    out = a.work / "workers.jsonl"
    for n in (1, 2):
        name = f"{a.task}-w{n}"
        folder, db = a.work / "workers" / name, a.work / "workers" / f"{name}.db"
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # a fresh study each time (not --overwrite: two start together)
        db.unlink(missing_ok=True)
        cmd = [a.ulmfit, "tune", str(a.parent), str(train), "--trials", str(a.trials), "--out", str(folder),
               "--storage", f"sqlite:///{db}", "--threads", "1", "--preset", a.preset, "--seed", "0", *a.flag,
               "--json"]  # fmt: skip
        logs = [open(a.work / "logs" / f"{name}-{i}.log", "w", encoding="utf-8") for i in range(n)]  # noqa: SIM115
        t0 = time.time()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **ENV})
                 for log in logs]  # fmt: skip
        outs = [p.communicate()[0] for p in procs]
        wall = time.time() - t0
        if any(p.returncode for p in procs):
            sys.exit(f"workers {n} failed; see {a.work / 'logs'}")
        s = max((json.loads(o.strip().splitlines()[-1]) for o in outs), key=lambda s: s["counts"]["complete"])
        finished = s["counts"]["complete"] + s["counts"]["pruned"]
        row = {"task": a.task, "workers": n, "trials": finished, "wall_s": round(wall, 1),
               "trials_per_hour": round(finished / wall * 3600, 1), "best": s["best"]["value"],
               "tried": sorted(json.dumps(t["params"], sort_keys=True) for t in s["trials"]),
               "preset": a.preset, "flags": a.flag}  # fmt: skip
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), file=sys.stderr)


def report(a) -> None:
    rows = [json.loads(line) for line in _lines(a.work / "results.jsonl")]
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    print("| task | " + " | ".join(systems) + " |\n|---|" + "---|" * len(systems))
    for task in sorted({r["task"] for r in rows}):
        cells = []
        for s in systems:
            acc = [100 * r["accuracy"] for r in rows if r["task"] == task and r["system"] == s]
            spread = f" ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else ""
            cells.append(f"{statistics.mean(acc):.1f}{spread} (n={len(acc)})" if acc else "-")
        print(f"| {task} | " + " | ".join(cells) + " |")
    print("\n| task | seconds a trial, pruned (tpe) | without pruning | trials pruned (tpe) |\n|---|---|---|---|")
    for task in sorted({r["task"] for r in rows}):
        per = {s: [r for r in rows if r["task"] == task and r["system"] == s] for s in ("tpe", "noprune")}
        if per["tpe"] and per["noprune"]:
            print(f"| {task} | {statistics.mean(r['trial_wall_s'] for r in per['tpe']):.1f} | "
                  f"{statistics.mean(r['trial_wall_s'] for r in per['noprune']):.1f} | "
                  f"{sum(r['pruned'] for r in per['tpe'])} of {sum(r['trials'] for r in per['tpe'])} |")  # fmt: skip
    w = [json.loads(line) for line in _lines(a.work / "workers.jsonl")]
    if w:
        print(
            "\n| task | workers | trials | wall s | trials an hour | best (validation) | settings as one worker's |"
            "\n|---|---|---|---|---|---|---|"
        )
        for r in w:
            one = next((x for x in w if x["workers"] == 1 and x["flags"] == r["flags"] and x["task"] == r["task"]), r)
            same = "yes" if r.get("tried") == one.get("tried") else "no"
            print(f"| {r['task']} | {r['workers']} | {r['trials']} | {r['wall_s']} | {r['trials_per_hour']} | "
                  f"{r['best']:.4f} | {same} |")  # fmt: skip


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line] if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("sample", "run", "workers", "report"):
        p = sub.add_parser(name)
        p.add_argument("work", type=Path)
        if name == "sample":
            p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
            p.add_argument("--rows", type=int, default=1000)
            p.add_argument("--draw", type=int, default=0, help="the seed of the training rows' draw")
            p.add_argument("--data", type=Path, default=DATA)
        if name in ("run", "workers"):
            p.add_argument("--parent", type=Path, required=True, help="the import-hf run of all-MiniLM-L6")
            p.add_argument("--trials", type=int, default=20)
            p.add_argument("--preset", default="small")
            p.add_argument("--flag", action="append", default=[], help="a flag for every run, e.g. --flag=--epochs=8")
            p.add_argument("--ulmfit", default=str(HERE.parent / ".venv" / "bin" / "ulmfit"))
        if name == "run":
            p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
            p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
            p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
        if name == "workers":
            p.add_argument("--task", choices=list(TASKS), default="trec6")
    a = ap.parse_args()
    if a.cmd in ("run", "workers"):
        (a.work / "logs").mkdir(parents=True, exist_ok=True)
        a.flag = [f for flag in a.flag for f in flag.split("=", 1)]  # --flag=--epochs=8 -> --epochs 8
    {"sample": sample, "run": run, "workers": workers, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
