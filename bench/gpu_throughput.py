"""Transformer LM training throughput on a GPU: tokens/s through our own training loop, and the share of the chip's
bf16 peak that it reaches (model FLOPs utilisation, MFU).

Runs `ulmfit_cli.training.loop.fit` (the loop every stage uses: STLR, AdamW, gradient clipping) on the transformer LM
with `--precision bf16` autocast, with and without `torch.compile`, on random token ids already on the GPU.
FLOPs per token are counted as training FLOPs = 6 x (non-embedding parameters + the tied output projection)
+ 12 x layers x width x context (the attention scores and their use, forward and backward; Kaplan et al. 2020 /
PaLM's MFU). `--peak-tflops` is the chip's dense bf16 peak: 989 for an H100/H200 SXM (NVIDIA's datasheets;
their 1,979 is with sparsity).

  python bench/gpu_throughput.py                                  # GPT-2-small shape, bs 32 x 1024 tokens
  python bench/gpu_throughput.py --device cpu --precision fp32 --emb-sz 64 --n-layers 2 --bptt 64 --bs 4 --steps 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run(args, compile_: bool) -> dict:
    import torch

    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.config import resolve
    from ulmfit_cli.models.transformer import build_lm, lm_groups
    from ulmfit_cli.training.loop import fit, lm_loss
    from ulmfit_cli.training.schedule import unfreeze_plan
    from ulmfit_cli.training.stage_parts import place

    cfg = resolve(
        "pretrain",
        "small",
        dict(backbone="transformer", emb_sz=args.emb_sz, n_hid=4 * args.emb_sz, n_layers=args.n_layers,
             n_heads=args.n_heads, bs=args.bs, bptt=args.bptt, vocab_size=args.vocab, device=args.device,
             precision=args.precision, compile=compile_, drop_mult=0.0, max_tokens=0),
    )  # fmt: skip
    torch.manual_seed(0)
    model = place(build_lm(cfg, args.vocab), cfg)
    device = next(model.parameters()).device
    names, groups = lm_groups(model)
    plan = unfreeze_plan(len(groups), 1, cfg.lr, cfg.lr_factor, gradual=False)
    steps = args.warmup + args.steps
    data = torch.randint(4, args.vocab, (steps, args.bs, args.bptt + 1), device=device)
    t: dict = {}

    def batches(epoch):
        for i in range(steps):
            if i == args.warmup:  # compilation and allocator warm-up are not throughput
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t["start"] = time.perf_counter()
            yield data[i, :, :-1], data[i, :, 1:]

    def evaluate():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t["end"] = time.perf_counter()
        return {}

    fit(model, groups, names, plan, steps, batches, lm_loss(model, cfg), evaluate, cfg, Reporter(quiet=True))
    secs = t["end"] - t["start"]
    tokens = args.steps * args.bs * args.bptt
    emb = args.vocab * args.emb_sz
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * (n_params - emb) + 6 * emb + 12 * args.n_layers * args.emb_sz * args.bptt
    tps = tokens / secs
    return {
        "compile": compile_,
        "tokens_per_s": round(tps),
        "step_ms": round(1000 * secs / args.steps, 1),
        "params_m": round(n_params / 1e6, 1),
        "model_tflops": round(tps * flops_per_token / 1e12, 1),
        "mfu": round(tps * flops_per_token / (args.peak_tflops * 1e12), 3),
        "max_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device.type == "cuda" else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--emb-sz", type=int, default=768)
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--bptt", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--no-compile", action="store_true", help="only the eager run")
    args = p.parse_args()
    import torch

    info = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "torch": torch.__version__,
    }
    rows = [run(args, False)] + ([] if args.no_compile else [run(args, True)])
    print(json.dumps({**info, "args": vars(args), "runs": rows}), flush=True)


if __name__ == "__main__":
    main()
