"""Step time of a transformer LM training step with and without the per-block diagnostics (diagnostics.py).

The step is the training loop's (forward, cross-entropy, backward, clip, AdamW); with diagnostics the forward
hooks and the per-block gradient norms are added, exactly as train.fit does. Runs alternate in rounds (one
round: some steps without, then as many with), so a shared machine's load falls on both alike; the figure is
the ratio of the medians of the rounds.

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/probes/diagnostics_overhead.py --emb-sz 128 --n-layers 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ulmfit_cli.config import resolve
from ulmfit_cli.models import transformer as T
from ulmfit_cli.training.diagnostics import LayerDiagnostics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--emb-sz", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=8)
    ap.add_argument("--norm-position", default="pre")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    torch.manual_seed(0)
    V = 4000
    cfg = resolve(
        "pretrain", "small",
        {"backbone": "transformer", "emb_sz": a.emb_sz, "n_hid": 4 * a.emb_sz, "n_layers": a.n_layers,
         "norm_position": a.norm_position, "bptt": a.bptt, "n_heads": 4},
    )  # fmt: skip
    model = T.build_lm(cfg, V).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, V, (a.bs, a.bptt + 1))

    def steps(diag) -> float:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            logits = model(x[:, :-1])[0]
            loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if diag is not None:
                diag.after_backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.4)
            opt.step()
        if diag is not None:
            diag.epoch()  # the per-epoch read-out, once per round here (more often than in a real run)
        return (time.perf_counter() - t0) / a.steps

    steps(None)  # warm-up
    off, on = [], []
    for _ in range(a.rounds):
        off.append(steps(None))
        diag = LayerDiagnostics(T.diagnosed_layers(model))
        on.append(steps(diag))
        diag.close()
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(
        f"emb_sz {a.emb_sz} n_layers {a.n_layers} {a.norm_position} bs {a.bs} bptt {a.bptt} threads "
        f"{torch.get_num_threads()}: step {m_off * 1e3:.1f} ms without, {m_on * 1e3:.1f} ms with diagnostics, "
        f"ratio {m_on / m_off:.3f} (medians of {a.rounds} rounds x {a.steps} steps)"
    )


if __name__ == "__main__":
    main()
