"""Documents per second of a classifier run: ours (fp32 and `--quantize int8`, with `--engine torch` and
`--engine onnx`) against fastai's `get_preds` on the same architecture and weights, interleaved round by round
(the machine is shared), from token ids to probabilities. Also the accuracy of each on labelled data, and how far
each one's probabilities are from ours in fp32 (torch).

  OMP_NUM_THREADS=2 python bench/predict_speed.py RUN --data NAME=CSV[:N] ... [--threads 2] [--rounds 5]
      [--systems fastai,ours_fp32,ours_int8,onnx_fp32,onnx_int8] [--bs 64] [--fastai-bs 64]

For each CSV (text,label; the first N rows): the texts are tokenized once (docs_of: <bos>, cut to max_len, as
predict does), then each round runs fastai (a SortedDL padding chunks first, as TextDataLoaders does, and
TextLearner.get_preds) and each of ours (inference.predict_logits). The same batch size for all unless
--fastai-bs says otherwise. The onnx engine's graphs are exported (and cached, onnx_engine.cache_dir) before
the first round. Wall time is the figure; CPU time of the process (all its threads) is recorded beside it: on a
shared machine, where other processes take turns on the cores, it is the steadier estimate of a quiet machine's
figures at one thread (at two, it also counts threads spinning while they wait). Prints one JSON line per data
set on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ulmfit_cli.config import from_dict
from ulmfit_cli.inference.predictor import docs_of, load_classifier, predict_logits
from ulmfit_cli.inference.quantize import quantize
from ulmfit_cli.models import awd_lstm
from ulmfit_cli.runfolder import artifacts as A


def fastai_predictor(cfg, run, n_class: int, bs: int):
    """fastai's classifier with the run's weights, and a function docs -> probabilities through get_preds."""
    from fastai.callback.progress import ProgressCallback
    from fastai.text.all import (
        CrossEntropyLossFlat,
        DataLoaders,
        SortedDL,
        TensorCategory,
        TensorText,
        TextLearner,
        pad_input_chunk,
    )

    model = awd_lstm.build_classifier(cfg, run.manifest["vocab_size"], n_class)
    A.load_weights(model, run.file("weights"))

    def predict(docs):
        items = [(TensorText(torch.from_numpy(d.astype(np.int64))), TensorCategory(0)) for d in docs]
        before = partial(pad_input_chunk, pad_idx=awd_lstm.PAD_ID, pad_first=True, seq_len=cfg.bptt)
        dl = SortedDL(items, before_batch=before, bs=bs, shuffle=False, num_workers=0)
        learn = TextLearner(DataLoaders(dl, dl), model, loss_func=CrossEntropyLossFlat())
        learn.remove_cb(ProgressCallback)
        probs, _ = learn.get_preds(dl=dl)
        return probs.numpy()

    return predict


def ours(model, cfg):
    def predict(docs):
        logits = predict_logits(model, docs, cfg)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return predict


def read(spec: str) -> tuple[str, list[str], list[str]]:
    name, path = spec.split("=", 1)
    path, _, n = path.partition(":")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[: int(n)] if n else rows
    return name, [r["text"] for r in rows], [r["label"] for r in rows]


SYSTEMS = ("fastai", "ours_fp32", "ours_int8", "onnx_fp32", "onnx_int8")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", action="append", required=True, help="NAME=CSV[:N]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--fastai-bs", type=int, default=None, help="fastai's batch size (default: --bs)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, from " + ",".join(SYSTEMS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = A.open_run(args.run, ("finetune-clf",), "bench")
    cfg, tok, model = load_classifier(run, "cpu")
    cfg = dataclasses.replace(cfg, bs=args.bs)
    classes = run.manifest["classes"]
    make = {
        "fastai": lambda: fastai_predictor(from_dict(run.config), run, len(classes), args.fastai_bs or args.bs),
        "ours_fp32": lambda: ours(model, cfg),
        "ours_int8": lambda: ours(quantize(model, "int8"), cfg),
        "onnx_fp32": lambda: ours(load_classifier(run, "cpu", engine="onnx")[2], cfg),
        "onnx_int8": lambda: ours(load_classifier(run, "cpu", "int8", engine="onnx")[2], cfg),
    }
    names = ["fastai", "ours_fp32", *(k for k in args.systems.split(",") if k not in ("fastai", "ours_fp32"))]
    systems = {k: make[k]() for k in names}  # fastai (the baseline) and ours_fp32 (the reference) always run
    for spec in args.data:
        name, texts, labels = read(spec)
        docs = docs_of(tok, texts, cfg)
        lens = [len(d) for d in docs]
        times: dict[str, list[float]] = {k: [] for k in systems}
        cpu: dict[str, list[float]] = {k: [] for k in systems}  # this process's CPU seconds (all its threads)
        probs = {}
        for r in range(args.rounds):
            for k, fn in systems.items():
                t, c = time.perf_counter(), time.process_time()
                probs[k] = fn(docs)
                times[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
            line = ", ".join(f"{k} {v[-1]:.2f}s ({cpu[k][-1]:.2f} cpu)" for k, v in times.items())
            print(f"{name} round {r + 1}: {line}", file=sys.stderr)
        known = [i for i, y in enumerate(labels) if y in classes]
        y = np.array([classes.index(labels[i]) for i in known])
        out = {
            "data": name,
            "docs": len(docs),
            "tokens_mean": round(float(np.mean(lens)), 1),
            "tokens_max": max(lens),
            "threads": args.threads,
            "bs": args.bs,
            "fastai_bs": args.fastai_bs or args.bs,
        }
        base = len(docs) / statistics.median(times["fastai"])
        base_cpu = len(docs) / statistics.median(cpu["fastai"])
        for k in systems:
            dps = len(docs) / statistics.median(times[k])
            out[k] = {
                "docs_per_s": round(dps, 1),
                "vs_fastai": round(dps / base, 2),
                "accuracy": round(float((probs[k][known].argmax(1) == y).mean()), 4) if known else None,
                "max_abs_prob_diff_vs_fp32": float(np.abs(probs[k] - probs["ours_fp32"]).max()),
                "same_label_as_fp32": round(float((probs[k].argmax(1) == probs["ours_fp32"].argmax(1)).mean()), 4),
                "all_s": [round(t, 3) for t in times[k]],
                "docs_per_cpu_s": round(len(docs) / statistics.median(cpu[k]), 1),
                "vs_fastai_cpu": round(len(docs) / statistics.median(cpu[k]) / base_cpu, 2),
                "all_cpu_s": [round(t, 3) for t in cpu[k]],
            }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
