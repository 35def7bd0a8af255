"""LM training throughput: our training loop against fastai's `language_model_learner`, same model, same data.

Both train the same AWD-LSTM (sizes and vocabulary by flag; the `small` preset's by default) with AR/TAR, gradient
clipping and a one-cycle-like schedule, for the same --steps batches of --bs x --bptt tokens of the same token
ids (the book corpus through our BPE tokenizer), on the same threads. Timed: the training batches only (forward,
backward, optimizer step; fastai's callbacks included), not model building or validation. Each side runs twice
in turn (ours, fastai, ours, fastai) and the best of its two runs is kept, so a busy moment hurts neither side.

  .venv/bin/python bench/lm_throughput.py                       # 200/512/3, vocab 8000, 60 steps
  .venv/bin/python bench/lm_throughput.py --emb-sz 400 --n-hid 1152 --vocab 15000   # the paper's sizes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def token_stream(data: Path, vocab: int, n_tokens: int) -> np.ndarray:
    from ulmfit_cli.data.tokenizer import encode_stream, train_tokenizer

    lines = []
    with open(data / "gutenberg/train_000.txt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.strip())
            if len(lines) >= 60_000:
                break
    tok = train_tokenizer(lines, "bpe", vocab)
    ids = encode_stream(tok, lines, n_tokens)
    assert len(ids) >= n_tokens, f"only {len(ids)} tokens"
    return ids


def cfg_for(args):
    from ulmfit_cli.config import resolve

    return resolve(
        "pretrain",
        "small",
        dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers, bs=args.bs, bptt=args.bptt, lr=1e-3,
             drop_mult=args.drop_mult, vocab_size=args.vocab, device="cpu", max_tokens=0),
    )  # fmt: skip


def ours(args, ids: np.ndarray) -> float:
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.data.batches import LMStream
    from ulmfit_cli.models.awd_lstm import build_lm, lm_groups
    from ulmfit_cli.training.loop import fit, lm_loss
    from ulmfit_cli.training.schedule import unfreeze_plan

    cfg = cfg_for(args)
    torch.manual_seed(0)
    model = build_lm(cfg, args.vocab)
    names, groups = lm_groups(model)
    plan = unfreeze_plan(len(groups), 1, cfg.lr, cfg.lr_factor, gradual=False)
    stream = LMStream(ids, cfg.bs, cfg.bptt)
    t = {}

    def batches(epoch):
        t["start"] = time.perf_counter()
        yield from stream.batches(0)

    def evaluate():
        t["end"] = time.perf_counter()  # called right after the last training step
        return {}

    fit(model, groups, names, plan, args.steps, batches, lm_loss(model, cfg), evaluate, cfg, Reporter(quiet=True))
    return t["end"] - t["start"]


def fastai(args, ids: np.ndarray) -> float:
    from fastai.callback.core import Callback
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.text.all import AWD_LSTM, LMDataLoader, awd_lstm_lm_config, language_model_learner

    torch.manual_seed(0)
    config = {**awd_lstm_lm_config, "emb_sz": args.emb_sz, "n_hid": args.n_hid, "n_layers": args.n_layers}
    stream = torch.from_numpy(ids.astype(np.int64))
    train = LMDataLoader([stream], lens=[len(stream)], bs=args.bs, seq_len=args.bptt, shuffle=False)
    valid = LMDataLoader([stream[: args.bs * args.bptt + 1]], bs=args.bs, seq_len=args.bptt)
    dls = DataLoaders(train, valid, device="cpu")
    dls.vocab = [f"t{i}" for i in range(args.vocab)]
    learn = language_model_learner(dls, AWD_LSTM, config=config, pretrained=False, drop_mult=args.drop_mult)
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *_: None
    t = {}

    class Clock(Callback):
        order = -100

        def before_train(self):
            t["start"] = time.perf_counter()

        def after_train(self):
            t["end"] = time.perf_counter()

        def after_batch(self):
            if self.training and self.iter + 1 >= args.steps:
                raise __import__("fastai").callback.core.CancelTrainException

    learn.fit_one_cycle(1, 1e-3, cbs=[Clock()], moms=(0.8, 0.7, 0.8), wd=0.01)
    return t["end"] - t["start"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "../shared/data")
    p.add_argument("--emb-sz", type=int, default=200)
    p.add_argument("--n-hid", type=int, default=512)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--drop-mult", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ids = token_stream(args.data, args.vocab, (args.steps + 2) * args.bs * args.bptt + args.bptt + 2)
    runs = {"ours": [], "fastai": []}
    for _ in range(2):
        runs["ours"].append(ours(args, ids))
        runs["fastai"].append(fastai(args, ids))
    tokens = args.steps * args.bs * args.bptt
    tps = {k: round(tokens / min(v)) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "sizes": [args.emb_sz, args.n_hid, args.n_layers],
                "vocab": args.vocab,
                "bs": args.bs,
                "bptt": args.bptt,
                "steps": args.steps,
                "threads": args.threads,
                "seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
                "tokens_per_s": tps,
                "ratio": round(tps["ours"] / tps["fastai"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
