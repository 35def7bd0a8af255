"""`ulmfit export RUN --hf DIR` of a real classifier, read back by transformers' `pipeline("text-classification")`
with nothing of this tool: the same labels as `ulmfit predict` on a whole test set, and how far the probabilities
are apart (issue 39).

    python bench/hf_export_check.py RUN TEST WORK [--threads 1]

RUN: a `finetune-clf --head hf` run (an adapter run is merged on export). TEST: a text,label CSV. Prints one JSON
line: rows, label agreement, the largest probability difference, and each side's accuracy and seconds. The texts
are the test set's as they are; a text longer than the model's window would be cut differently (the tool keeps its
head and tail, the pipeline its head), so this check is for tasks of short texts (TREC-6, SST-2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ulmfit", default=shutil.which("ulmfit") or "ulmfit")
    a = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    a.work.mkdir(parents=True, exist_ok=True)
    hf = a.work / "hf"
    t0 = time.time()
    shutil.rmtree(hf, ignore_errors=True)
    subprocess.run([a.ulmfit, "export", str(a.run), "--hf", str(hf)], check=True, env=env)
    export_s = time.time() - t0
    with open(a.test, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    t0 = time.time()
    out = subprocess.run([a.ulmfit, "predict", str(a.run), str(a.test), "--threads", str(a.threads)], check=True,
                         env=env, stdout=subprocess.PIPE, text=True).stdout  # fmt: skip
    predict_s = time.time() - t0
    ours = [json.loads(line) for line in out.splitlines() if line]

    import torch
    from transformers import pipeline

    torch.set_num_threads(a.threads)
    t0 = time.time()
    clf = pipeline("text-classification", model=str(hf), tokenizer=str(hf), device="cpu")
    theirs = clf(texts, top_k=None, batch_size=32, truncation=True)
    pipeline_s = time.time() - t0

    def top(scores: list[dict]) -> str:
        return max(scores, key=lambda d: d["score"])["label"]

    same, diff = 0, 0.0
    for o, t in zip(ours, theirs, strict=True):
        p = {d["label"]: d["score"] for d in t}
        same += o["label"] == top(t)
        diff = max(diff, max(abs(o["probs"][k] - p[k]) for k in o["probs"]))
    print(json.dumps({
        "run": str(a.run), "rows": len(rows), "same_label": same, "max_prob_diff": diff,
        "ulmfit_accuracy": sum(o["label"] == g for o, g in zip(ours, gold, strict=True)) / len(rows),
        "pipeline_accuracy": sum(top(t) == g for t, g in zip(theirs, gold, strict=True)) / len(rows),
        "export_s": round(export_s, 1), "predict_s": round(predict_s, 1), "pipeline_s": round(pipeline_s, 1),
    }))  # fmt: skip
    if same != len(rows):
        sys.exit(f"{len(rows) - same} of {len(rows)} labels differ")


if __name__ == "__main__":
    main()
