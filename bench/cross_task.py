"""One recipe across every labelled task in the shared data (issue 13): no pretraining, ULMFiT forward, and the
forward + backward ensemble, beside the TF-IDF + logistic regression baseline (bench/tfidf_baseline.py).

`run` does, with the real CLI (one subprocess per command, each timed with time.time()):
1. pretrains the forward and the backward parent once, on --corpus capped at --max-tokens
   (`ulmfit pretrain CORPUS --max-tokens N [--backwards]`), into WORK/lm-fwd and WORK/lm-bwd (or takes those of
   --parents-from WORK0, e.g. to run other subsamples from the same parents);
2. per task, `ulmfit pipeline TRAIN --parent WORK/lm-fwd --parent WORK/lm-bwd --both-directions --test TEST`:
   LM fine-tuning on the task's training texts, then the classifier, each direction; test score of the forward
   classifier, the backward one and their ensemble;
3. per task, `ulmfit learning-curve WORK/lm-fwd TRAIN --test TEST --sizes all --seeds 1 --variants random`: the
   same classifier with every weight random (it shares only the parent's tokenizer and sizes): no pretraining.

Multi-label Reuters-21578 (labels separated by a space; micro-F1): `--label-delim ' '` for learning-curve, and
`--clf-set "label_delim= "` for pipeline (its classifier stage setting; evaluation reads it from the run).

--max-train N (or TASK=N, repeatable) trains on a seeded subsample of N training rows: every label at least once
(a label of a multi-label row counts), the rest drawn at random; --max-test likewise subsamples the test set at
random. Test rows whose label (any of its labels) never occurs in the training rows are dropped, because
`ulmfit evaluate` refuses labels the classifier does not know: Reuters' single-label test set has 5 topics its
training set lacks. Every subsample is written once into WORK/data and recorded with the results.

    PYTHONPATH=. python bench/cross_task.py run WORK --preset tiny --max-tokens 2000000 \
        [--tasks trec6 trec50 sst2 imdb reuters reuters1] [--max-train imdb=2000] [--max-test imdb=2000] [--jobs 2]
    python bench/cross_task.py report WORK [--tfidf /tmp/tfidf.jsonl]      # markdown on stdout

WORK/results.jsonl gets one line per (task, variant) as it finishes (variants pretrain-fwd, pretrain-bwd,
random, fwd, bwd, ensemble); a rerun skips what is there (and each CLI command resumes its own interrupted
stage); WORK/settings.json holds the settings, and a rerun with others is refused. With --jobs N, N commands run
side by side, each on one thread (OMP_NUM_THREADS=1; a pretraining with nothing beside it takes every thread).
--forward-only pretrains and trains the forward direction alone (`pipeline` into WORK/TASK/pipeline-fwd), for a
first pass over the tasks at half the cost: the bwd and ensemble columns stay empty; --no-random leaves out the
no-pretraining column (a later run without it fills it in).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path("/work/shared/data")
# name -> (train, test, multi-label?); bench/tfidf_baseline.py uses them too
TASKS = {
    "trec6": ("trec/train.csv", "trec/test.csv", False),
    "trec50": ("trec/train_fine.csv", "trec/test_fine.csv", False),
    "sst2": ("sst2/train.csv", "sst2/test.csv", False),
    "imdb": ("imdb/train.csv", "imdb/test.csv", False),
    "reuters": ("reuters21578/train.csv", "reuters21578/test.csv", True),
    "reuters1": ("reuters21578/train_single_label.csv", "reuters21578/test_single_label.csv", False),
}
COLUMNS = ("tfidf", "random", "fwd", "bwd", "ensemble")
HEADS = {
    "tfidf": "TF-IDF + LR",
    "random": "no pretraining",
    "fwd": "ULMFiT fwd",
    "bwd": "ULMFiT bwd",
    "ensemble": "ULMFiT fwd+bwd",
}
LOCK = threading.Lock()


# ---- data --------------------------------------------------------------------------------------------------


def read(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(f)]


def write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ("text", "label"))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def labels(row: dict, multi: bool) -> set[str]:
    return set(row["label"].split()) if multi else {row["label"]}


def covering_sample(rows: list[dict], n: int, multi: bool, seed: int) -> list[dict]:
    """n rows (seeded): first, in random order, a row for every label not yet covered, then random rows; kept in
    the file's order."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    chosen, seen = [], set()
    for i in order:
        new = labels(rows[i], multi) - seen
        if new:
            chosen.append(i)
            seen |= new
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][: max(0, n - len(chosen))]
    return [rows[i] for i in sorted(chosen)]


def per_task(values: list[str], task: str) -> int | None:
    """`--max-train 2000 imdb=5000`: the TASK= value, else the bare one, else None (everything)."""
    bare = None
    for v in values or []:
        name, eq, num = v.rpartition("=")
        if eq and name == task:
            return int(num)
        if not eq:
            bare = int(v)
    return bare


def prepare(task: str, a, work: Path) -> dict:
    """The task's training and test files (subsampled and filtered as asked), written once; what was done."""
    train, test, multi = TASKS[task]
    max_train, max_test = per_task(a.max_train, task), per_task(a.max_test, task)
    info = {"train_file": str(a.data / train), "test_file": str(a.data / test), "multi": multi}
    tr, te = read(a.data / train), read(a.data / test)
    info.update(train_full=len(tr), test_full=len(te))
    if max_train and max_train < len(tr):
        tr = covering_sample(tr, max_train, multi, a.seed)
    if max_test and max_test < len(te):
        te = [te[i] for i in sorted(random.Random(a.seed + 1).sample(range(len(te)), max_test))]
    known = set().union(*(labels(r, multi) for r in tr))
    kept = [r for r in te if labels(r, multi) <= known]
    info.update(train=len(tr), test=len(kept), test_dropped=len(te) - len(kept))
    if len(tr) < info["train_full"] or len(kept) < info["test_full"]:
        (work / "data").mkdir(parents=True, exist_ok=True)
        if len(tr) < info["train_full"]:
            info["train_file"] = str(work / "data" / f"{task}-train-n{len(tr)}-s{a.seed}.csv")
            if not Path(info["train_file"]).exists():
                write(Path(info["train_file"]), tr)
        if len(kept) < info["test_full"]:
            info["test_file"] = str(work / "data" / f"{task}-test-n{len(kept)}-s{a.seed}.csv")
            if not Path(info["test_file"]).exists():
                write(Path(info["test_file"]), kept)
    return info


# ---- running -----------------------------------------------------------------------------------------------


def done(work: Path) -> dict[tuple[str, str], dict]:
    path = work / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return {(r["task"], r["variant"]): r for r in rows}


def record(work: Path, rows: list[dict]) -> None:
    with LOCK, open(work / "results.jsonl", "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def cli(a, args: list, log: Path, alone: bool = False) -> tuple[dict, float]:
    """One `ulmfit` command (stdout: its --json summary; stderr into `log`): (summary, wall seconds). With
    --jobs > 1 it runs on one thread, unless it is `alone` (nothing runs beside it)."""
    cmd = [*a.ulmfit, *map(str, args)]
    env = dict(os.environ)
    if a.jobs > 1 and not alone:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as err:
        err.write(f"$ {shlex.join(cmd)}\n")
        err.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    wall = round(time.time() - t0, 1)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode} after {wall} s: {shlex.join(cmd)} (see {log})")
    return json.loads(p.stdout.strip().splitlines()[-1]), wall


def common(a) -> dict:
    return {"preset": a.preset, "seed": a.seed, "jobs": a.jobs, "threads": 1 if a.jobs > 1 else "default"}


def lm(a, work: Path, direction: str) -> Path:
    """The parent of `direction`: WORK/lm-fwd (or -bwd), or the one of --parents-from's WORK."""
    return (Path(a.parents_from) if a.parents_from else work) / f"lm-{direction}"


def directions(a) -> tuple[str, ...]:
    return ("fwd",) if a.forward_only else ("fwd", "bwd")


def variants(a) -> tuple[str, ...]:
    """The pipeline's rows: each direction's classifier, and their ensemble when there are two."""
    return ("fwd",) if a.forward_only else ("fwd", "bwd", "ensemble")


def pretrain(a, work: Path, direction: str, alone: bool = False) -> None:
    out = work / f"lm-{direction}"
    args = ["pretrain", a.corpus, "--out", out, "--preset", a.preset, "--seed", a.seed, "--json", "--quiet"]
    args += ["--max-tokens", a.max_tokens] if a.max_tokens else []
    args += ["--backwards"] if direction == "bwd" else []
    s, wall = cli(a, args, work / f"lm-{direction}.log", alone)
    final = s.get("final", {})
    row = {"task": "pretrain", "variant": f"pretrain-{direction}", "metric": "valid_loss"}
    row.update(score=final.get("valid_loss"), wall_s=wall, stage_wall_s=s.get("wall_s"), corpus=str(a.corpus))
    record(work, [{**row, "max_tokens": a.max_tokens, "final": final, **common(a)}])


def pipeline(a, work: Path, task: str, info: dict) -> None:
    out = work / task / ("pipeline-fwd" if a.forward_only else "pipeline")
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["pipeline", info["train_file"]] + [x for d in directions(a) for x in ("--parent", lm(a, work, d))]
    args += [] if a.forward_only else ["--both-directions"]
    args += ["--test", info["test_file"], "--preset", a.preset, "--seed", a.seed]
    args += ["--out", out, "--json", "--quiet"] + (["--clf-set", "label_delim= "] if info["multi"] else [])
    s, wall = cli(a, args, work / task / "pipeline.log")
    metric = "micro_f1" if info["multi"] else "accuracy"
    walls = s.get("wall_s", {})
    rows = []
    for variant in variants(a):
        stages = walls if variant == "ensemble" else {variant: walls.get(variant, {})}
        train_s = round(sum(v or 0 for d in stages.values() for v in d.values()), 1)
        row = {"task": task, "variant": variant, "metric": metric, "score": s["test"][variant][metric]}
        # wall_s: the whole command (both directions, three test scorings); train_wall_s: this variant's LM
        # fine-tuning + classifier stages from their run manifests (the ensemble: both directions')
        row.update(wall_s=wall, train_wall_s=train_s, stage_wall_s=stages)
        rows.append({**row, "test_scores": s["test"][variant], **info, **common(a)})
    record(work, rows)


def no_pretraining(a, work: Path, task: str, info: dict) -> None:
    out = work / task / "random"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["learning-curve", lm(a, work, "fwd"), info["train_file"], "--test", info["test_file"], "--sizes", "all"]
    args += ["--seeds", 1, "--variants", "random", "--preset", a.preset, "--seed", a.seed, "--out", out]
    args += ["--json", "--quiet"] + (["--label-delim", " "] if info["multi"] else [])
    s, wall = cli(a, args, work / task / "random.log")
    (p,) = s["points"]
    row = {"task": task, "variant": "random", "metric": p["metric"], "score": p["score"], "wall_s": wall}
    row.update(train_wall_s=p["clf_wall_s"], epochs=p["epochs"])
    record(work, [{**row, **info, **common(a)}])


def check_settings(a, work: Path) -> None:
    """What the results depend on, in WORK/settings.json: a rerun with others would mix rows that do not belong
    together (more --tasks, another --jobs are fine)."""
    keys = ("preset", "corpus", "max_tokens", "seed", "max_train", "max_test", "data", "parents_from")
    now = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k in keys}
    path = work / "settings.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != now:
            diff = {k: (before.get(k), now.get(k)) for k in keys if before.get(k) != now.get(k)}
            sys.exit(f"{work} holds results with other settings {diff}; use another WORK folder")
    else:
        path.write_text(json.dumps(now, indent=1) + "\n")


def run(a) -> None:
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    check_settings(a, work)
    have = done(work)
    pool = ThreadPoolExecutor(a.jobs)
    if a.parents_from:  # that WORK's pretraining rows, so that the report shows what the parents are
        theirs = done(Path(a.parents_from))
        record(work, [{**theirs[k], "from": a.parents_from} for k in theirs if k[0] == "pretrain" and k not in have])
        have = done(work)
    todo = [] if a.parents_from else [d for d in directions(a) if ("pretrain", f"pretrain-{d}") not in have]
    jobs = [pool.submit(pretrain, a, work, d, len(todo) == 1) for d in todo]
    for j in jobs:
        j.result()
    jobs = []
    for task in a.tasks:
        info = prepare(task, a, work)
        print(f"{task}: {json.dumps(info)}", file=sys.stderr, flush=True)
        if any((task, v) not in have for v in variants(a)):
            jobs.append(pool.submit(pipeline, a, work, task, info))
        if (task, "random") not in have and not a.no_random:
            jobs.append(pool.submit(no_pretraining, a, work, task, info))
    failed = [e for e in (j.exception() for j in jobs) if e is not None]
    for e in failed:
        print(f"failed: {e}", file=sys.stderr)
    sys.exit(1 if failed else 0)


# ---- the table ---------------------------------------------------------------------------------------------


def shown(r: dict) -> float:
    """The time in a cell: training (from the run manifests) for ours, the whole fit for TF-IDF."""
    return r.get("train_wall_s", r["wall_s"])


def report(a) -> None:
    rows = done(Path(a.work))
    if a.tfidf:
        for line in Path(a.tfidf).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[(r["task"], "tfidf")] = {**r, "variant": "tfidf"}
    tasks = [t for t in TASKS if any((t, v) in rows for v in COLUMNS[1:])]
    head = "| task | metric | train / test rows | " + " | ".join(HEADS[c] for c in COLUMNS) + " |"
    print(head + "\n|" + "---|" * (3 + len(COLUMNS)))
    sums = {c: [] for c in COLUMNS}
    for t in tasks:
        ref = next(rows[(t, v)] for v in COLUMNS[1:] if (t, v) in rows)
        size = f"{ref['train']:,} / {ref['test']:,}"
        cells = []
        for c in COLUMNS:
            r = rows.get((t, c))
            cells.append("-" if r is None else f"{100 * r['score']:.1f} ({shown(r):.0f} s)")
            if r is not None:
                sums[c].append(r)
        print(f"| {t} | {ref['metric']} | {size} | " + " | ".join(cells) + " |")
    means = []
    for c in COLUMNS:
        rs = sums[c]
        if not rs:
            means.append("-")
            continue
        cell = f"{100 * sum(r['score'] for r in rs) / len(rs):.1f} ({sum(map(shown, rs)) / len(rs):.0f} s)"
        means.append(cell if len(rs) == len(tasks) else cell + f" ({len(rs)} tasks)")
    print(f"| mean over {len(tasks)} tasks | | | " + " | ".join(means) + " |")
    print("\nWhole commands (time.time() around each: with starting Python, reading and scoring the test set):\n")
    print("| task | learning-curve --variants random | pipeline --both-directions |\n|---|---|---|")
    for t in tasks:
        cells = [f"{rows[(t, v)]['wall_s']:.0f} s" if (t, v) in rows else "-" for v in ("random", "ensemble")]
        print(f"| {t} | " + " | ".join(cells) + " |")
    for d in ("fwd", "bwd"):
        r = rows.get(("pretrain", f"pretrain-{d}"))
        if r:
            print(f"\npretrain-{d}: {r['wall_s']} s, valid loss {r['score']:.3f} ({r['max_tokens'] or 'all'} tokens)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="pretrain once, then every task (resumable)")
    r.add_argument("work")
    r.add_argument("--preset", default="tiny", choices=("tiny", "small"))
    r.add_argument("--corpus", type=Path, default=DATA / "gutenberg/train_000.txt")
    r.add_argument("--max-tokens", type=int, default=0, help="pretraining tokens (0: the whole corpus)")
    r.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    r.add_argument("--max-train", nargs="*", default=[], help="N or TASK=N (repeatable): training rows kept")
    r.add_argument("--max-test", nargs="*", default=[], help="N or TASK=N (repeatable): test rows kept")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--jobs", type=int, default=1, help="commands side by side, each on one thread if > 1")
    r.add_argument("--data", type=Path, default=DATA)
    r.add_argument("--forward-only", action="store_true", help="pretrain and train the forward direction only")
    r.add_argument("--no-random", action="store_true", help="skip the no-pretraining classifier (for now)")
    r.add_argument("--parents-from", help="another WORK whose lm-fwd and lm-bwd to use instead of pretraining")
    r.add_argument("--ulmfit", default=f"{shlex.quote(sys.executable)} -m ulmfit_cli", help="the CLI to call")
    p = sub.add_parser("report", help="the markdown table")
    p.add_argument("work")
    p.add_argument("--tfidf", help="bench/tfidf_baseline.py's JSON lines")
    a = ap.parse_args()
    if a.cmd == "run":
        a.ulmfit = shlex.split(a.ulmfit)
        run(a)
    else:
        report(a)


if __name__ == "__main__":
    main()
