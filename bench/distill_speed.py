"""A teacher against its distilled students, in one process (issue 38): documents per second of `predict`'s
Predictor for each CASE (a run under an engine, rounds alternating, best of --rounds), on the same texts, batches
and threads; each case's accuracy on the table's labels and its agreement with the first case.

    .venv/bin/python bench/distill_speed.py TEXTS.csv --case teacher=RUN:onnx --case minilm=RUN2:onnx:int8 \
        [--case awd=RUN3:torch] [--n 500] [--bs 64] [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from hf_predict_speed import alternate, parsed  # beside it in bench/

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", action="append", required=True, help="NAME=RUN:ENGINE[:int8]")
    a, rows = parsed(p, 500)
    from ulmfit_cli.inference.predictor import Predictor
    from ulmfit_cli.runfolder import artifacts

    texts = [r["text"] for r in rows]
    preds, classes = {}, {}
    for case in a.case:
        name, spec = case.split("=", 1)
        path, engine, *q = spec.split(":")
        run = artifacts.open_run(Path(path), ("finetune-clf",), "bench")
        preds[name] = Predictor([run], a.bs, a.threads, device="cpu", engine=engine, quantize=q[0] if q else None)
        classes[name] = run.manifest["classes"]
    calls = {
        k: (lambda pred=pred: np.concatenate([pred(texts[i : i + a.bs]) for i in range(0, len(texts), a.bs)]))
        for k, pred in preds.items()
    }
    times, outs = alternate(calls, a.rounds)
    dps = {k: round(len(texts) / min(v), 1) for k, v in times.items()}
    first = next(iter(calls))
    answers = {k: [classes[k][i] for i in outs[k].argmax(1)] for k in calls}
    print(
        json.dumps(
            {
                "texts": len(texts),
                "threads": a.threads,
                "cases": a.case,
                "docs_per_s": dps,
                f"vs_{first}": {k: round(v / dps[first], 2) for k, v in dps.items()},
                "accuracy": {k: float(np.mean([x == r["label"] for x, r in zip(v, rows)])) for k, v in answers.items()},
                f"agreement_with_{first}": {
                    k: float(np.mean([x == y for x, y in zip(v, answers[first])])) for k, v in answers.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
