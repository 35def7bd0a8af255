"""`ulmfit predict` on a Hugging Face-backed classifier against transformers-style batched inference (issue 30).

Same classifier (a finetune-clf run folder of --backbone hf), same texts, same batches of --bs texts in input
order, same threads:

  ours       inference.Predictor, as `ulmfit predict` runs it (batches of --bs texts, tokenized by the run's
             tokenizer, cut by the backbone's rule), fp32; and again with --quantize int8
  hf         what `pipeline("text-classification", batch_size=bs)` does for a model of this shape: the checkpoint's
             tokenizer through transformers (PreTrainedTokenizerFast, padding=True, the same start token, and an
             encoder's end token), the base model with its attention mask, the run's pooling and head, softmax

Rounds alternate (ours, hf, ours int8) --rounds times; the best time of each is kept. Prints one JSON line.

    .venv/bin/python bench/hf_predict_speed.py RUN TEST.csv [--n 500] [--bs 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def hf_side(run, texts: list[str], bs: int):
    """A closure running the transformers-style loop; returns probabilities (N, C)."""
    import torch
    from transformers import PreTrainedTokenizerFast

    from ulmfit_cli.inference.predictor import load_classifier
    from ulmfit_cli.models.hf import pool

    cfg, tok, model = load_classifier(run, "cpu")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok.tok)
    hf_tok.pad_token_id, hf_tok.padding_side = tok.start_id, "right"
    start = hf_tok.convert_ids_to_tokens(tok.start_id)
    end = "" if tok.end_id is None else hf_tok.convert_ids_to_tokens(tok.end_id)  # an encoder's [SEP]

    def run_all():
        outs = []
        with torch.inference_mode():
            for i in range(0, len(texts), bs):
                enc = hf_tok([start + t + end for t in texts[i : i + bs]], padding=True, truncation=True,
                             max_length=cfg.max_len, return_tensors="pt", add_special_tokens=False)  # fmt: skip
                h = model.body(**enc, **({} if model.encoder else {"use_cache": False})).last_hidden_state
                mask = enc["attention_mask"].bool()
                logits = model.head(pool(h, mask, model.pooling, skip_first=not model.encoder).float())
                outs.append(torch.softmax(logits, -1).numpy())
        return np.concatenate(outs)

    return run_all


def setup(doc: str, n: int):
    """What both hf speed benchmarks start from (this one and hf_engine_speed.py): their arguments, torch's
    threads, the first --n texts of the table and the run, opened as predict opens it."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("run", type=Path)
    a, rows = parsed(p, n)
    from ulmfit_cli.runfolder import artifacts as A

    return a, A.open_run(a.run, ("finetune-clf",), "bench"), [r["text"] for r in rows]


def parsed(p: argparse.ArgumentParser, n: int) -> tuple[argparse.Namespace, list[dict]]:
    """The speed benchmarks' common arguments (TEXTS, --n, --bs, --threads, --rounds) parsed, torch's threads set,
    and the first --n rows of the table."""
    p.add_argument("texts", type=Path)
    p.add_argument("--n", type=int, default=n)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    csv.field_size_limit(sys.maxsize)
    with open(a.texts, newline="", encoding="utf-8") as f:
        return a, [r for _, r in zip(range(a.n), csv.DictReader(f))]


def alternate(calls: dict, rounds: int) -> tuple[dict, dict]:
    """Each call once a round, in turn, `rounds` times: ({name: seconds of each round}, {name: its last output})."""
    times, outs = {k: [] for k in calls}, {}
    for _ in range(rounds):
        for k, call in calls.items():
            t0 = time.perf_counter()
            outs[k] = call()
            times[k].append(time.perf_counter() - t0)
    return times, outs


def main() -> None:
    a, run, texts = setup(__doc__, 500)
    from ulmfit_cli.inference.predictor import Predictor

    sides = {
        "ours": Predictor([run], a.bs, a.threads, device="cpu"),
        "ours_int8": Predictor([run], a.bs, a.threads, device="cpu", quantize="int8"),
    }
    ours = lambda pred: np.concatenate([pred([*texts[i : i + a.bs]]) for i in range(0, len(texts), a.bs)])  # noqa: E731
    calls = {"ours": lambda: ours(sides["ours"]), "hf": hf_side(run, texts, a.bs),
             "ours_int8": lambda: ours(sides["ours_int8"])}  # fmt: skip
    times, outs = alternate(calls, a.rounds)
    dps = {k: round(len(texts) / min(v), 1) for k, v in times.items()}
    print(
        json.dumps(
            {
                "run": str(a.run),
                "texts": len(texts),
                "bs": a.bs,
                "threads": a.threads,
                "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
                "docs_per_s": dps,
                "ours_vs_hf": round(dps["ours"] / dps["hf"], 3),
                "int8_vs_fp32": round(dps["ours_int8"] / dps["ours"], 3),
                "max_prob_diff_ours_hf": float(np.abs(outs["ours"] - outs["hf"]).max()),
                "int8_label_agreement": float((outs["ours"].argmax(1) == outs["ours_int8"].argmax(1)).mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
