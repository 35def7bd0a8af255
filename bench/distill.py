"""Distillation against its two baselines (issue 38): a teacher trained on 1,000 labelled rows, a student trained on
the same rows alone, and the student distilled from the teacher over the rest of the training set with its labels
dropped (plus the 1,000 labelled rows, at the default --hard-weight).

For each task: the 1,000 rows are hf_recipe.py's sample (cross_task.covering_sample, seed 42), the unlabelled text
every other training row's text (file order), and the smaller unlabelled sets of the curve the first N of a seeded
shuffle of it. Every run is scored by `ulmfit evaluate` on the whole test set.

    python bench/distill.py WORK --teacher-parent RUN --student minilm=RUN --student awd=RUN
        [--awd-lm awd] [--tasks trec6 sst2] [--seeds 42 43] [--teacher-seeds 42] [--unlabelled 1000 3000]
        [--curve-task trec6] [--curve-student minilm] [--extra imdb=SENTENCES.txt] [--only all+imdb]

--awd-lm NAME: that student's parent is first fine-tuned as a language model (`finetune-lm`) on every training text
of the task (ULMFiT's second stage, which a user of this tool runs on the text it has), once per task; both the
student alone and the distilled student start from it.

--extra NAME=FILE: also distil over the unlabelled training text plus FILE's lines (other in-domain text, e.g.
bench/imdb_sentences.py's for SST-2), a variant named all+NAME; --only restricts the distilled variants run to the
names given (all, all+NAME, the curve's sizes).

Resumable: each finished run is a line of WORK/results.jsonl, skipped when run again. Wall times are of the whole
command; the teacher's labelling time is read from distill's progress lines (rate and count) and is absent when
the labels came from the cache.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from cross_task import TASKS, covering_sample, read, write  # bench/ is on the path
from hf_recipe import sh

LABELLED_RE = re.compile(r"the teacher labelled ([\d,]+)/([\d,]+) texts \((\d+) a second")


def labelling_seconds(log: Path) -> float | None:
    """Seconds the teacher spent labelling, from distill's last progress line (None: the cache answered)."""
    hits = LABELLED_RE.findall(log.read_text())
    if not hits:
        return None
    _, total, rate = hits[-1]
    return round(int(total.replace(",", "")) / max(int(rate), 1), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--teacher-parent", type=Path, required=True)
    ap.add_argument("--student", action="append", default=[], help="NAME=RUN, a student's parent run folder")
    ap.add_argument("--awd-lm", action="append", default=[], help="student NAME whose parent gets finetune-lm")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--tasks", nargs="+", default=["trec6", "sst2"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    ap.add_argument("--teacher-seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--unlabelled", nargs="*", type=int, default=[], help="curve: also distil over N texts")
    ap.add_argument("--curve-task", default="trec6")
    ap.add_argument("--curve-student", default="minilm")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--extra", action="append", default=[], help="NAME=FILE, more unlabelled in-domain text")
    ap.add_argument("--only", nargs="+", help="distilled variants to run (all, all+NAME, curve sizes)")
    a = ap.parse_args()
    students = dict(s.split("=", 1) for s in a.student)
    a.work.mkdir(parents=True, exist_ok=True)
    results = a.work / "results.jsonl"
    have = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    done = {r["key"] for r in have}

    def record(key: str, row: dict) -> None:
        row = {"key": key, **row}
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def scored(key: str, out: Path, test: Path, extra: dict) -> None:
        ev, ev_wall = sh(["evaluate", str(out), str(test)], a.work / f"{key.replace('/', '-')}-eval.log")
        record(key, {**extra, "accuracy": ev["accuracy"], "n_test": ev["n"], "eval_wall_s": ev_wall})

    for task in a.tasks:
        train, test, _ = TASKS[task]
        rows = read(a.data / train)
        test = a.data / test
        labelled = covering_sample(rows, a.n, False, 42)
        data = a.work / f"{task}-train-n{a.n}-s42.csv"
        if not data.exists():
            write(data, labelled)
        taken = {(r["text"], r["label"]) for r in labelled}
        rest = [r["text"] for r in rows if (r["text"], r["label"]) not in taken]
        unl = {"all": a.work / f"{task}-unlabelled-all.txt"}
        rest_text = "".join(t.replace("\n", " ") + "\n" for t in rest)
        unl["all"].write_text(rest_text)
        for spec in a.extra:
            extra, path = spec.split("=", 1)
            unl[f"all+{extra}"] = a.work / f"{task}-unlabelled-all+{extra}.txt"
            unl[f"all+{extra}"].write_text(rest_text + Path(path).read_text())
        if task == a.curve_task:
            shuffled = random.Random(42).sample(rest, len(rest))
            for n in a.unlabelled:
                unl[str(n)] = a.work / f"{task}-unlabelled-{n}.txt"
                unl[str(n)].write_text("".join(t.replace("\n", " ") + "\n" for t in shuffled[:n]))
        (a.work / task).mkdir(exist_ok=True)
        parents = {}
        for name, parent in students.items():
            parents[name] = Path(parent)
            if name in a.awd_lm:
                lm = a.work / task / f"{name}-lm"
                if not (lm / "manifest.json").exists():
                    texts = a.work / f"{task}-texts-all.txt"
                    texts.write_text("".join(r["text"].replace("\n", " ") + "\n" for r in rows))
                    _, wall = sh(["finetune-lm", parent, str(texts), "--out", str(lm), "--preset", a.preset,
                                  "--overwrite"], a.work / f"{task}-{name}-lm.log")  # fmt: skip
                    record(f"{task}/{name}-lm", {"task": task, "system": f"{name}-lm", "wall_s": wall})
                parents[name] = lm
        for tseed in a.teacher_seeds:
            teacher = a.work / task / f"teacher-s{tseed}"
            key = f"{task}/teacher/s{tseed}"
            if key not in done:
                args = ["finetune-clf", str(a.teacher_parent), str(data), "--out", str(teacher), "--preset",
                        a.preset, "--seed", str(tseed), "--overwrite"]  # fmt: skip
                if (teacher / "manifest.json").exists():  # trained, not yet scored: its wall time is in its manifest
                    wall = json.loads((teacher / "manifest.json").read_text())["wall_s"]
                else:
                    _, wall = sh(args, a.work / f"{task}-teacher-s{tseed}.log")
                scored(key, teacher, test, {"task": task, "system": "teacher", "seed": tseed, "train_wall_s": wall})
        teacher = a.work / task / f"teacher-s{a.teacher_seeds[0]}"
        for seed in a.seeds:
            for name, parent in parents.items():
                key = f"{task}/{name}/alone/s{seed}"
                if key not in done:
                    out = a.work / task / f"{name}-alone-s{seed}"
                    args = ["finetune-clf", str(parent), str(data), "--out", str(out), "--preset", a.preset,
                            "--seed", str(seed), "--overwrite"]  # fmt: skip
                    _, wall = sh(args, a.work / f"{key.replace('/', '-')}.log")
                    scored(key, out, test, {"task": task, "system": f"{name}-alone", "seed": seed,
                                            "train_wall_s": wall})  # fmt: skip
                curve = (task, name) == (a.curve_task, a.curve_student) and seed == a.seeds[0]
                sizes = [s for s in unl if s == "all" or s.startswith("all+") or curve]
                sizes = [s for s in sizes if a.only is None or s in a.only]
                for size in sizes:
                    key = f"{task}/{name}/distilled-{size}/s{seed}"
                    if key in done:
                        continue
                    out = a.work / task / f"{name}-distilled-{size}-s{seed}"
                    log = a.work / f"{key.replace('/', '-')}.log"
                    _, wall = sh(["distill", str(teacher), str(parent), str(unl[size]), "--train", str(data), "--out",
                                  str(out), "--preset", a.preset, "--seed", str(seed), "--overwrite",
                                  "--cache-dir", str(a.work / "cache")], log)  # fmt: skip
                    n_unl = sum(1 for _ in open(unl[size]))
                    scored(key, out, test, {"task": task, "system": f"{name}-distilled", "unlabelled": n_unl,
                                            "seed": seed, "teacher_seed": a.teacher_seeds[0], "train_wall_s": wall,
                                            "labelling_s": labelling_seconds(log)})  # fmt: skip


if __name__ == "__main__":
    main()
