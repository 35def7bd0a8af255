"""The baseline a practitioner tries first: TF-IDF over word 1-2 grams + logistic regression, C tuned (issue 13).

For each labelled task in the shared data: the vectoriser (word unigrams and bigrams, sublinear tf, min_df 2) is
fitted on the training texts; C is chosen from --cs (0.1 to 1000) on a seeded 10% of the training set held out (the
model is fitted on the other 90%), then refitted on the whole training set with the chosen C and scored once on the test
set. Single-label tasks: accuracy. Multi-label (Reuters-21578, labels separated by spaces): one logistic
regression per label, a label predicted when its probability is at least 0.5 (as `ulmfit`'s default
threshold), micro-F1 over labels. Wall time covers tuning, the final fit and prediction.

    python bench/tfidf_baseline.py [--data /work/shared/data] [--tasks trec6 trec50 sst2 imdb reuters reuters1]
        [--train-file TASK=CSV] [--test-file TASK=CSV]

--train-file/--test-file (repeatable) score a task on other files than its shared ones, e.g. the subsample that
bench/cross_task.py trained on (WORK/data/TASK-train-nN-sS.csv), so both are compared on the same rows.

Prints one JSON line per task on stdout and a markdown table on stderr. Needs scikit-learn (fastai brings it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from cross_task import TASKS  # bench/ is on the path: the same task names and files
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer


def read(path: Path) -> tuple[list[str], list[str]]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def model(c: float, multi: bool):
    lr = LogisticRegression(C=c, max_iter=2000, solver="liblinear" if multi else "lbfgs")
    return OneVsRestClassifier(lr) if multi else lr


def score(y, p, multi: bool) -> float:
    return f1_score(y, p, average="micro", zero_division=0) if multi else accuracy_score(y, p)


def predict(m, x, multi: bool):
    return (m.predict_proba(x) >= 0.5).astype(int) if multi else m.predict(x)


def one(name: str, train: Path, test: Path, cs: list[float], seed: int) -> dict:
    multi = TASKS[name][2]
    t0 = time.time()
    xtr, ytr = read(train)
    xte, yte = read(test)
    if multi:
        mlb = MultiLabelBinarizer().fit([y.split() for y in ytr])
        ytr_, yte_ = mlb.transform([y.split() for y in ytr]), mlb.transform([y.split() for y in yte])
    else:
        ytr_, yte_ = np.array(ytr), np.array(yte)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(xtr))
    hold = idx[: len(xtr) // 10]
    fit = idx[len(xtr) // 10 :]
    v = vec.fit([xtr[i] for i in fit])
    a, b = v.transform([xtr[i] for i in fit]), v.transform([xtr[i] for i in hold])
    tuning = {c: score(ytr_[hold], predict(model(c, multi).fit(a, ytr_[fit]), b, multi), multi) for c in cs}
    best = max(cs, key=lambda c: (tuning[c], -c))  # ties: the smaller C, the stronger regularisation
    xa = vec.fit_transform(xtr)
    m = model(best, multi).fit(xa, ytr_)
    s = score(yte_, predict(m, vec.transform(xte), multi), multi)
    return {
        "task": name,
        "metric": "micro_f1" if multi else "accuracy",
        "score": round(float(s), 4),
        "C": best,
        "tuning": {str(c): round(float(v), 4) for c, v in tuning.items()},
        "train": len(xtr),
        "test": len(xte),
        "features": xa.shape[1],
        "wall_s": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--cs", type=float, nargs="+", default=[0.1, 1, 10, 100, 1000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-file", action="append", default=[], help="TASK=CSV: train on this file instead")
    ap.add_argument("--test-file", action="append", default=[], help="TASK=CSV: score on this file instead")
    a = ap.parse_args()
    trains, tests = dict(x.split("=", 1) for x in a.train_file), dict(x.split("=", 1) for x in a.test_file)
    rows = []
    for name in a.tasks:
        print(f"{name} ...", file=sys.stderr, flush=True)
        train = Path(trains.get(name) or Path(a.data) / TASKS[name][0])
        test = Path(tests.get(name) or Path(a.data) / TASKS[name][1])
        r = one(name, train, test, a.cs, a.seed) | {"train_file": str(train), "test_file": str(test)}
        rows.append(r)
        print(json.dumps(r), flush=True)
    print("\n| task | metric | TF-IDF + LR | C | wall |\n|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        row = f"| {r['task']} | {r['metric']} | {100 * r['score']:.1f} | {r['C']:g} | {r['wall_s']} s |"
        print(row, file=sys.stderr)


if __name__ == "__main__":
    main()
