"""finetune-lm's training loop on a Hugging Face checkpoint against a plain Hugging Face training loop (issue 30).

Both sides train the same model (an `ulmfit import-hf` run folder's weights), on the same token ids (IMDb reviews
through the checkpoint's tokenizer, as finetune-lm streams them), the same --bs x --bptt batches, fp32 (or
--precision bf16 on a GPU), for --steps optimizer steps after --warmup untimed ones:

  ours   ulmfit_cli.training.loop.fit as finetune-lm runs it: layer groups with discriminative rates, STLR, clipping
  hf     the loop of Hugging Face's examples: loss = model(input_ids=x, labels=x).loss; AdamW over every parameter
         with one rate and a linear warm-up/decay (transformers' get_linear_schedule_with_warmup); clipping

Each side runs in its own process (so peak memory is its own: ru_maxrss), twice in turn (ours, hf, ours, hf); the
best time of each side is kept.

    .venv/bin/python bench/hf_lm_speed.py RUN [--bs 4] [--bptt 128] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def token_ids(run: Path, n: int, data: Path) -> np.ndarray:
    import csv

    from ulmfit_cli.data.tokenizer import StreamEncoder, load_tokenizer

    tok = load_tokenizer(run / "tokenizer.json")
    csv.field_size_limit(sys.maxsize)
    with open(data / "imdb" / "train.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for _, r in zip(range(2000), csv.DictReader(f))]
    ids = StreamEncoder(tok)(texts)
    assert len(ids) >= n, len(ids)
    return ids[:n]


def side(a) -> dict:
    import torch

    from ulmfit_cli import dist
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.config import resolve
    from ulmfit_cli.data.batches import LMStream
    from ulmfit_cli.models import hf
    from ulmfit_cli.runfolder import artifacts as A
    from ulmfit_cli.training.loop import fit, lm_loss
    from ulmfit_cli.training.schedule import unfreeze_plan

    torch.set_num_threads(a.threads)
    run = A.open_run(a.run, A.LM_STAGES, "bench")
    flags = dict(bs=a.bs, bptt=a.bptt, precision=a.precision, device=a.device)
    cfg = resolve("finetune-lm", "small", flags, run.config)
    device = dist.resolve_device(cfg.device)
    steps = a.warmup + a.steps
    ids = token_ids(a.run, (steps + 2) * cfg.bs * cfg.bptt + 1, a.data)
    stream = LMStream(ids, cfg.bs, cfg.bptt)
    torch.manual_seed(0)
    model = hf.build_lm(cfg)
    A.load_weights(model, run.file("weights"))
    model.to(device)
    t = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if a.side == "ours":
        names, groups = hf.lm_groups(model)
        plan = unfreeze_plan(len(groups), 1, cfg.lr, cfg.lr_factor, gradual=False)

        def batches(epoch):
            for i, b in enumerate(stream.batches(0)):
                if i == a.warmup:
                    sync()
                    t["start"] = time.perf_counter()
                yield b

        def evaluate():
            sync()
            t["end"] = time.perf_counter()  # called right after the last training step
            return {}

        fit(model, groups, names, plan, steps, batches, lm_loss(model, cfg), evaluate, cfg, Reporter(quiet=True))
    else:
        from transformers import get_linear_schedule_with_warmup

        m = model.hf.train()
        opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.wd)
        sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
        for i, (x, _) in enumerate(stream.batches(0)):
            if i == steps:
                break
            if i == a.warmup:
                sync()
                t["start"] = time.perf_counter()
            x = x.to(device)
            with dist.autocast(device, cfg.precision):
                loss = m(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.clip)
            opt.step()
            sched.step()
        sync()
        t["end"] = time.perf_counter()
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"seconds": t["end"] - t["start"], "peak_mib": round(peak)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", type=Path, default=REPO / "../shared/data")
    p.add_argument("--bs", type=int, default=4)
    p.add_argument("--bptt", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--side", choices=["ours", "hf"])
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    if a.side:
        print(json.dumps(side(a)))
        return
    runs = {"ours": [], "hf": []}
    for _ in range(a.rounds):
        for s in runs:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--side", s]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[s].append(json.loads(out.strip().splitlines()[-1]))
    tokens = a.steps * a.bs * a.bptt
    tps = {k: round(tokens / min(r["seconds"] for r in v), 1) for k, v in runs.items()}
    peak = {k: max(r["peak_mib"] for r in v) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "run": str(a.run),
                "bs": a.bs,
                "bptt": a.bptt,
                "steps": a.steps,
                "threads": a.threads,
                "precision": a.precision,
                "seconds": {k: [round(r["seconds"], 2) for r in v] for k, v in runs.items()},
                "tokens_per_s": tps,
                "ratio": round(tps["ours"] / tps["hf"], 3),
                "peak_mib": peak,
                "memory_ratio": round(peak["ours"] / peak["hf"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
