"""A --backbone hf classifier under each inference engine, in one process (issue 31): documents per second of
`predict`'s Predictor with --engine torch, --engine onnx, --engine onnx --quantize int8 and torch's --quantize int8
on the same texts, batches and threads, rounds alternating (best of --rounds each); and `ulmfit export --onnx`'s
graph fed as its JSON says, against the torch Predictor's probabilities (max absolute difference).

    .venv/bin/python bench/hf_engine_speed.py RUN TEXTS.csv [--n 1821] [--bs 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def exported(run, texts: list[str]) -> np.ndarray:
    """The export's probabilities, fed as its JSON says."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from ulmfit_cli.export import export_onnx

    with tempfile.TemporaryDirectory() as d:
        files = export_onnx(run, Path(d) / "m.onnx")
        meta = json.loads(files["meta"].read_text())
        tok = Tokenizer.from_file(str(files["tokenizer"]))
        end = [meta["end_id"]] if meta["end_id"] is not None else []
        docs = [[meta["bos_id"], *tok.encode(t, add_special_tokens=False).ids, *end] for t in texts]
        n, h = meta["max_len"], meta.get("head_tokens", meta["max_len"])
        docs = [d if len(d) <= n else d[:h] + d[len(d) - (n - h) :] for d in docs]
        session = ort.InferenceSession(str(files["onnx"]))
        out = []
        for i in range(0, len(docs), 64):
            part = docs[i : i + 64]
            ids = np.full((len(part), max(map(len, part))), meta["pad_id"], dtype=np.int64)
            for r, d in enumerate(part):
                ids[r, : len(d)] = d
            out.append(session.run(["output"], {"input_ids": ids})[0])
        return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("texts", type=Path)
    p.add_argument("--n", type=int, default=1821)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    import torch

    from ulmfit_cli import artifacts as A
    from ulmfit_cli.inference import Predictor

    torch.set_num_threads(a.threads)
    csv.field_size_limit(sys.maxsize)
    with open(a.texts, newline="", encoding="utf-8") as f:
        texts = [r["text"] for _, r in zip(range(a.n), csv.DictReader(f))]
    run = A.open_run(a.run, ("finetune-clf",), "bench")
    kinds = {"torch": ("torch", None), "onnx": ("onnx", None), "onnx_int8": ("onnx", "int8"),
             "torch_int8": ("torch", "int8")}  # fmt: skip
    preds = {k: Predictor([run], a.bs, a.threads, device="cpu", engine=e, quantize=q) for k, (e, q) in kinds.items()}
    times, outs = {k: [] for k in kinds}, {}
    for _ in range(a.rounds):
        for k, pred in preds.items():
            t0 = time.perf_counter()
            outs[k] = np.concatenate([pred(texts[i : i + a.bs]) for i in range(0, len(texts), a.bs)])
            times[k].append(time.perf_counter() - t0)
    dps = {k: round(len(texts) / min(v), 1) for k, v in times.items()}
    print(
        json.dumps(
            {
                "run": str(a.run),
                "texts": len(texts),
                "threads": a.threads,
                "docs_per_s": dps,
                "vs_torch": {k: round(v / dps["torch"], 2) for k, v in dps.items()},
                "label_agreement_with_torch": {
                    k: float((outs[k].argmax(1) == outs["torch"].argmax(1)).mean()) for k in kinds
                },
                "export_max_abs_diff": float(np.abs(exported(run, texts) - outs["torch"]).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
