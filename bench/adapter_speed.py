"""Training speed and memory of `--adapter lora` against full fine-tuning, and against a plain PEFT + transformers
loop on the same model and batches (issue 39).

Four commands, each its own process on `--threads` threads, run in turn `--rounds` times (interleaved, so that what
else runs on the machine weighs on all four alike); each reports its training epochs' seconds (the tool's `time_s`
per epoch, the plain loop's the same way: the epoch's steps and its validation pass) and the process's peak RSS:

  tool-full   ulmfit finetune-clf PARENT TRAIN --head hf --no-gradual-unfreezing --lr-factor 1 --min-steps 0
  tool-lora   the same with --adapter lora
  plain-full  transformers' AutoModelForSequenceClassification on CHECKPOINT, AdamW, linear warm-up and decay
  plain-lora  the same after peft.get_peft_model(LoraConfig(task_type=SEQ_CLS, r=8, alpha=16, dropout 0.05))

Both sides train on the same rows (the tool's validation split of TRAIN, --valid-pct 0.1, --seed) in the same batches
(the tool's own classifier_batches: shuffled, sorted by length in chunks, padded at the end) of the same token ids
(the checkpoint's tokenizer, cut at --max-len), so tokens/s counts the same tokens: the training rows' tokens times
the epochs, over the epochs' seconds. All the adapters train at once on both sides (no gradual unfreezing), and the
tool trains transformers' own head (--head hf), so the four train the same modules.

    python bench/adapter_speed.py PARENT CHECKPOINT TRAIN WORK [--epochs 3] [--threads 1] [--rounds 2]
        [--lora-targets auto|all-linear] [--commands tool-lora plain-lora ...]

PARENT: the `ulmfit import-hf` run of CHECKPOINT (the checkpoint's folder; `from-parent`: a transformers folder
made from PARENT itself, for a checkpoint imported from a GGUF file). Prints a markdown table on stdout and
writes each measurement as a line of WORK/speed.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
COMMANDS = ("tool-full", "tool-lora", "plain-full", "plain-lora")


def rows(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        r = list(csv.DictReader(f))
    return [x["text"] for x in r], [x["label"] for x in r]


def plain(a) -> None:
    """The plain loop (run as its own process): prints one JSON line with each epoch's seconds."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from ulmfit_cli.data.batches import classifier_batches, split_valid
    from ulmfit_cli.models.hf import HF_PAD, pad_batch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    texts, labels = rows(a.train)
    classes = sorted(set(labels))
    y = np.array([classes.index(x) for x in labels])
    tok = AutoTokenizer.from_pretrained(a.checkpoint)
    ids = [np.array(t, dtype=np.int64) for t in tok(texts, truncation=True, max_length=a.max_len)["input_ids"]]
    tr, va = split_valid(len(ids), 0.1, a.seed)
    model = AutoModelForSequenceClassification.from_pretrained(a.checkpoint, num_labels=len(classes))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    pad_id = model.config.pad_token_id
    if a.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        targets = None if a.lora_targets == "auto" else a.lora_targets  # None: PEFT's table, as the tool's auto
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets)
        model = get_peft_model(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    steps = a.epochs * (len(tr) // a.bs)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    rng = np.random.default_rng(a.seed)

    def inputs(x):
        mask = x != HF_PAD
        return {"input_ids": torch.where(mask, x, torch.full_like(x, pad_id)), "attention_mask": mask.long()}

    epochs = []
    for _ in range(a.epochs):
        t0 = time.time()
        model.train()
        for _, x, yb in classifier_batches([ids[i] for i in tr], y[tr], a.bs, a.max_len, HF_PAD, rng, pad_batch):
            loss = model(**inputs(x), labels=yb).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        right = 0
        with torch.no_grad():
            for idx, x, _ in classifier_batches([ids[i] for i in va], None, a.bs, a.max_len, HF_PAD, None, pad_batch):
                right += int((model(**inputs(x)).logits.argmax(-1).numpy() == y[va][idx]).sum())
        epochs.append(round(time.time() - t0, 2))
    print(json.dumps({"epoch_s": epochs, "valid_accuracy": right / len(va)}))


def checkpoint_of(parent: Path, work: Path) -> Path:
    """WORK/checkpoint: the import run as a transformers folder (its hf/ config and tokenizer, its weights without
    the run's `hf.` prefix), for a checkpoint imported from a file transformers' plain loop cannot read as it is
    (a GGUF: SmolLM2-135M). The same tokenizer as the tool's, so the two sides read the same token ids."""
    out = work / "checkpoint"
    if (out / "model.safetensors").exists():
        return out
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    for f in (parent / "hf").iterdir():
        shutil.copy(f, out / f.name)
    weights = load_file(parent / "model.safetensors")
    save_file({k[3:]: v.contiguous() for k, v in weights.items() if k.startswith("hf.")}, out / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    return out


def measure(a, command: str, work: Path) -> dict:
    """One command in its own process: its epochs' seconds and peak RSS."""
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": str(a.threads)}
    lora = ["--adapter", "lora", "--lora-targets", a.lora_targets]
    if command.startswith("tool"):
        out = work / "runs" / command
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [a.ulmfit, "finetune-clf", str(a.parent), str(a.train), "--out", str(out), "--overwrite", "--head", "hf",
               "--no-gradual-unfreezing", "--lr-factor", "1", "--min-steps", "0", "--epochs", str(a.epochs),
               "--seed", str(a.seed), "--lr", str(a.lr), "--head-lr-mult", "1",
               "--json", *(lora if command == "tool-lora" else [])]  # fmt: skip
    else:
        cmd = [sys.executable, __file__, "_plain", str(a.parent), str(a.checkpoint), str(a.train), str(work),
               "--epochs", str(a.epochs), "--threads", str(a.threads), "--seed", str(a.seed), "--lr", str(a.lr),
               "--lora-targets", a.lora_targets, *(["--lora"] if command == "plain-lora" else [])]  # fmt: skip
    log = work / "logs" / f"{command}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        stdout = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
    if (rc := os.waitstatus_to_exitcode(status)) != 0:
        sys.exit(f"{command} failed ({rc}); see {log}")
    if command.startswith("tool"):
        epoch_s = [float(x) for x in re.findall(r"^epoch \d+ .*time_s ([\d.]+)", log.read_text(), re.M)]
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        extra = {"run_bytes": size, "final": json.loads(stdout.strip().splitlines()[-1])["final"]}
    else:
        s = json.loads(stdout.strip().splitlines()[-1])
        epoch_s, extra = s["epoch_s"], {"final": {"accuracy": s["valid_accuracy"]}}
    return {"command": command, "epoch_s": epoch_s, "peak_rss_mb": round(usage.ru_maxrss / 1024), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd_or_parent")
    ap.add_argument("rest", nargs="*")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--lora-targets", default="auto", help="auto (PEFT's table) | all-linear, on both sides")
    ap.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    ap.add_argument("--ulmfit", default=shutil.which("ulmfit") or "ulmfit")
    args = ap.parse_args()
    if args.cmd_or_parent == "_plain":
        args.parent, args.checkpoint, args.train, args.work = map(Path, args.rest)
        return plain(args)
    args.parent = Path(args.cmd_or_parent)
    args.checkpoint, args.train, args.work = map(Path, args.rest)
    if str(args.checkpoint) == "from-parent":
        args.checkpoint = checkpoint_of(args.parent, args.work)
    texts, _ = rows(args.train)
    from transformers import AutoTokenizer

    from ulmfit_cli.data.batches import split_valid

    tok = AutoTokenizer.from_pretrained(args.checkpoint)
    lens = [len(t) for t in tok(texts, truncation=True, max_length=args.max_len)["input_ids"]]
    train_idx, _ = split_valid(len(texts), 0.1, args.seed)
    tokens = sum(lens[i] for i in train_idx)  # the training rows' tokens, read once an epoch
    results = args.work / "speed.jsonl"
    args.work.mkdir(parents=True, exist_ok=True)
    got = {c: [] for c in args.commands}
    for r in range(args.rounds):
        for c in args.commands:
            m = measure(args, c, args.work)
            tps = round(tokens * len(m["epoch_s"]) / sum(m["epoch_s"]))
            m.update(round=r, tokens_per_epoch=tokens, tokens_per_s=tps)
            with open(results, "a", encoding="utf-8") as f:
                f.write(json.dumps(m) + "\n")
            print(json.dumps(m), file=sys.stderr, flush=True)
            got[c].append(m)
    print("| command | tokens/s (median of rounds) | vs plain | peak RSS MB | run folder MB | valid accuracy |")
    print("|---|---|---|---|---|---|")
    for c, ms in got.items():
        tps = statistics.median(m["tokens_per_s"] for m in ms)
        base = "plain-lora" if "lora" in c else "plain-full"
        ref = statistics.median(m["tokens_per_s"] for m in got[base]) if got.get(base) else None
        size = f"{ms[0]['run_bytes'] / 1e6:.1f}" if "run_bytes" in ms[0] else "-"
        ratio = f"{tps / ref:.2f}x" if ref else "-"
        acc = ms[-1]["final"].get("accuracy", float("nan"))
        print(f"| {c} | {tps:,.0f} | {ratio} | {max(m['peak_rss_mb'] for m in ms):,} | {size} | {acc:.3f} |")


if __name__ == "__main__":
    main()
