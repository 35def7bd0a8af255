"""Benchmark reference: the ULMFiT three-stage recipe on TREC-6, written directly against fastai's high-level API.

This is what our tool is compared with in bench/. It follows the fastai ULMFiT tutorial, except that the language
model is pretrained here from scratch on a slice of the Gutenberg book corpus instead of downloading WT103 weights:

  1. pretrain     first --words words of gutenberg/train_000.txt -> AWD-LSTM language model (fit_one_cycle)
  2. finetune-lm  LM fine-tuning on TREC training questions, vocabulary matched with fastai's `load_pretrained`
                  (1 epoch frozen, then unfrozen)
  3. finetune-clf classifier on TREC training questions, gradual unfreezing (4 discriminative-LR steps)
  then accuracy on trec/test.csv. With --no-pretrain, stages 1-2 are skipped and the classifier is trained from
  random weights with a plain fit_one_cycle (fastai's "no pretraining" baseline).

Wall time of each stage (data processing and tokenization included) goes into the JSON line printed on stdout and
written to OUT/results.json. Epoch logs go to stderr. Nothing is downloaded (spaCy's blank English tokenizer only).

  .venv/bin/python bench/fastai_reference.py                          # full run, defaults below
  .venv/bin/python bench/fastai_reference.py --no-pretrain --out bench/out/fastai-nopre
  OMP_NUM_THREADS=1 .venv/bin/python bench/fastai_reference.py --words 20000 --emb-sz 32 --n-hid 64 \\
      --n-layers 2 --ft-epochs 2 --clf-epochs 4 --threads 1 --out /tmp/fastai_ref_test   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from fastai.callback.progress import ProgressCallback
from fastai.text.all import (
    AWD_LSTM,
    Perplexity,
    TextDataLoaders,
    accuracy,
    awd_lstm_clas_config,
    awd_lstm_lm_config,
    defaults,
    language_model_learner,
    save_pickle,
    set_seed,
    text_classifier_learner,
)

REPO = Path(__file__).resolve().parent.parent
MOMS = (0.8, 0.7, 0.8)  # the ULMFiT momentum schedule used in the fastai examples


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "../shared/data")
    p.add_argument("--out", type=Path, default=REPO / "bench/out/fastai")
    p.add_argument("--words", type=int, default=1_000_000, help="pretraining corpus size in whitespace words")
    p.add_argument("--emb-sz", type=int, default=200)
    p.add_argument("--n-hid", type=int, default=512)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--pretrain-epochs", type=int, default=1)
    p.add_argument("--ft-epochs", type=int, default=5)
    p.add_argument("--clf-epochs", type=int, default=12)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2, help="torch threads, tokenizer and data-loader workers")
    p.add_argument("--lm-lr", type=float, default=5e-3)
    p.add_argument("--ft-lr", type=float, default=4e-3)
    p.add_argument("--clf-lr", type=float, default=1e-2)
    p.add_argument("--drop-mult-lm", type=float, default=0.3)
    p.add_argument("--drop-mult-ft", type=float, default=0.5)
    p.add_argument("--drop-mult-clf", type=float, default=0.5)
    p.add_argument("--no-pretrain", action="store_true", help="skip stages 1-2; classifier from random weights")
    args = p.parse_args(argv)
    if not args.no_pretrain and (args.ft_epochs < 1 or args.clf_epochs < 3):
        p.error("the recipe needs --ft-epochs >= 1 and --clf-epochs >= 3")
    return args


def quiet(learn):
    """No progress bars; one line per epoch on stderr (fastai's Recorder logs through `learn.logger`)."""
    learn.remove_cb(ProgressCallback)

    def log(values):
        names = learn.recorder.metric_names
        fields = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(names, values)]
        print("  " + "  ".join(fields), file=sys.stderr)

    learn.logger = log
    return learn


def read_paragraphs(path: Path, n_words: int) -> pd.DataFrame:
    texts, total = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            texts.append(line)
            total += len(line.split())
            if total >= n_words:
                break
    print(f"pretrain corpus: {len(texts)} paragraphs, {total} words", file=sys.stderr)
    return pd.DataFrame({"text": texts})


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    defaults.cpus = args.threads  # fastai's tokenizer processes and DataLoader workers
    set_seed(args.seed, reproducible=True)
    lm_cfg = {**awd_lstm_lm_config, "emb_sz": args.emb_sz, "n_hid": args.n_hid, "n_layers": args.n_layers}
    clas_cfg = {**awd_lstm_clas_config, "emb_sz": args.emb_sz, "n_hid": args.n_hid, "n_layers": args.n_layers}
    trec_train = pd.read_csv(args.data / "trec/train.csv")
    trec_test = pd.read_csv(args.data / "trec/test.csv")
    stages: dict[str, float | None] = {"pretrain": None, "finetune-lm": None, "finetune-clf": None}
    lm_kw = dict(is_lm=True, text_col="text", valid_pct=0.1, seed=args.seed, seq_len=args.bptt, bs=args.bs)
    tmp = Path(tempfile.mkdtemp(prefix="fastai_ref_"))  # learners save to tmp/models/

    ft_vocab = None
    if not args.no_pretrain:
        print("== stage 1: pretrain", file=sys.stderr)
        t0 = time.perf_counter()
        dls = TextDataLoaders.from_df(read_paragraphs(args.data / "gutenberg/train_000.txt", args.words), **lm_kw)
        print(f"vocab: {len(dls.vocab)}", file=sys.stderr)
        learn = language_model_learner(
            dls, AWD_LSTM, config=lm_cfg, pretrained=False, drop_mult=args.drop_mult_lm,
            metrics=[accuracy, Perplexity()], path=tmp,
        )  # fmt: skip
        quiet(learn).fit_one_cycle(args.pretrain_epochs, args.lm_lr, moms=MOMS)
        # language_model_learner(pretrained_fnames=[w, v]) reads models/w.pth and models/v.pkl
        learn.save("pretrain", with_opt=False)
        learn.save_encoder("pretrain_enc")
        pre_vocab = list(dls.vocab)
        save_pickle(tmp / "models/pretrain.pkl", pre_vocab)
        stages["pretrain"] = round(time.perf_counter() - t0, 1)

        print("== stage 2: finetune-lm", file=sys.stderr)
        t0 = time.perf_counter()
        dls = TextDataLoaders.from_df(trec_train, **lm_kw)
        # pretrained_fnames -> learn.load_pretrained: match_embeds maps the rows onto the TREC vocab, then freeze()
        learn = language_model_learner(
            dls, AWD_LSTM, config=lm_cfg, pretrained=False, pretrained_fnames=["pretrain", "pretrain"],
            drop_mult=args.drop_mult_ft, metrics=[accuracy, Perplexity()], path=tmp,
        )  # fmt: skip
        n_known = len(set(dls.vocab) & set(pre_vocab))
        print(f"vocab: {len(dls.vocab)}, {n_known} of them in the pretraining vocab", file=sys.stderr)
        quiet(learn).fit_one_cycle(1, args.ft_lr, moms=MOMS)
        learn.unfreeze()
        if args.ft_epochs > 1:
            learn.fit_one_cycle(args.ft_epochs - 1, args.ft_lr, moms=MOMS)
        learn.save_encoder("finetuned_enc")
        ft_vocab = dls.vocab
        stages["finetune-lm"] = round(time.perf_counter() - t0, 1)

    print("== stage 3: finetune-clf", file=sys.stderr)
    t0 = time.perf_counter()
    dls = TextDataLoaders.from_df(
        trec_train, text_col="text", label_col="label", valid_pct=0.1, seed=args.seed, text_vocab=ft_vocab,
        bs=args.bs, seq_len=args.bptt,
    )  # fmt: skip
    learn = text_classifier_learner(
        dls, AWD_LSTM, seq_len=args.bptt, config=clas_cfg, pretrained=False, drop_mult=args.drop_mult_clf,
        metrics=accuracy, path=tmp,
    )  # fmt: skip
    quiet(learn)
    lr = args.clf_lr
    if args.no_pretrain:
        learn.fit_one_cycle(args.clf_epochs, lr, moms=MOMS)
    else:
        learn.load_encoder("finetuned_enc")  # also freezes all but the head
        learn.fit_one_cycle(1, lr, moms=MOMS)
        learn.freeze_to(-2)
        learn.fit_one_cycle(1, slice(lr / (2.6**4), lr), moms=MOMS)
        learn.freeze_to(-3)
        learn.fit_one_cycle(1, slice(lr / 2 / (2.6**4), lr / 2), moms=MOMS)
        learn.unfreeze()
        if args.clf_epochs > 3:
            learn.fit_one_cycle(args.clf_epochs - 3, slice(lr / 10 / (2.6**4), lr / 10), moms=MOMS)
    stages["finetune-clf"] = round(time.perf_counter() - t0, 1)

    print("== test", file=sys.stderr)
    test_dl = learn.dls.test_dl(trec_test, with_labels=True)
    preds, targs = learn.get_preds(dl=test_dl)  # reorder=True undoes the length sorting of the text DataLoader
    o2i = learn.dls.vocab[1].o2i
    truth = torch.tensor([o2i[label] for label in trec_test["label"]])
    assert torch.equal(targs.cpu(), truth), "test predictions are not in the order of test.csv"
    test_acc = (preds.argmax(dim=1) == truth).float().mean().item()

    result = {
        "test_accuracy": round(test_acc, 4),
        "stages": stages,
        "total_wall_s": round(sum(v for v in stages.values() if v is not None), 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "fastai": __import__("fastai").__version__,
    }
    shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON line alone
        res = main()
    print(json.dumps(res), flush=True)
