"""A --backbone hf classifier under each inference engine, in one process (issue 31): documents per second of
`predict`'s Predictor with --engine torch, --engine onnx, --engine onnx --quantize int8 and torch's --quantize int8
on the same texts, batches and threads, rounds alternating (best of --rounds each); and `ulmfit export --onnx`'s
graph fed as its JSON says, against the torch Predictor's probabilities (max absolute difference).

    .venv/bin/python bench/hf_engine_speed.py RUN TEXTS.csv [--n 1821] [--bs 64] [--threads 2]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def exported(run, texts: list[str]) -> np.ndarray:
    """The export's probabilities, fed as its JSON says."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from ulmfit_cli.inference.export import export_onnx

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
    from hf_predict_speed import alternate, setup  # its setup and its rounds, beside it in bench/

    a, run, texts = setup(__doc__, 1821)
    from ulmfit_cli.inference.predictor import Predictor

    kinds = {"torch": ("torch", None), "onnx": ("onnx", None), "onnx_int8": ("onnx", "int8"),
             "torch_int8": ("torch", "int8")}  # fmt: skip
    preds = {k: Predictor([run], a.bs, a.threads, device="cpu", engine=e, quantize=q) for k, (e, q) in kinds.items()}
    calls = {
        k: (lambda pred=pred: np.concatenate([pred(texts[i : i + a.bs]) for i in range(0, len(texts), a.bs)]))
        for k, pred in preds.items()
    }
    times, outs = alternate(calls, a.rounds)
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
