"""How much faster could an fp32 LSTM be on this CPU? The small AWD-LSTM's three LSTMs (batch 64, chunks of 32
steps, one thread) timed as torch's LSTM (oneDNN: what fastai's get_preds runs), as onnxruntime's LSTM (what
`--engine onnx` runs), and as the matrix products alone that any LSTM must do (the input projection of the
chunk as one product, then one (64 x hidden) @ (hidden x 4 hidden) product a step: no gates, no activations,
nothing else), and as a recurrence written by hand in torch ops. If the LSTMs take little more than their
products, no fp32 recurrence of this model can be much faster, whatever is written around the products.
Rounds interleaved; medians; GFLOP/s and each against oneDNN's LSTM.

    OMP_NUM_THREADS=1 python bench/probes/lstm_kernel_probe.py [--rounds 7]      (bench/RESULTS.md 12)
"""

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

SIZES = [(200, 512), (512, 512), (512, 200)]  # the small preset: emb 200, LSTMs of 512, 512 and 200 units
B, T = 64, 32


def onnx_session(m: nn.LSTM, a: int, b: int, folder: Path) -> ort.InferenceSession:
    p = str(folder / f"lstm{a}x{b}.onnx")
    args = (torch.zeros(2, 5, a), (torch.zeros(1, 2, b), torch.zeros(1, 2, b)))
    axes = {"x": {0: "n", 1: "t"}, "y": {0: "n", 1: "t"}, **{s: {1: "n"} for s in ("h", "c", "ho", "co")}}
    torch.onnx.export(m, args, p, input_names=["x", "h", "c"], output_names=["y", "ho", "co"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = 1, 1, 3
    return ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=10, help="chunks per timing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    lstms = [nn.LSTM(a, b, batch_first=True).eval() for a, b in SIZES]
    xs = [torch.randn(B, T, a) for a, _ in SIZES]
    with tempfile.TemporaryDirectory() as d:
        sessions = [onnx_session(m, a, b, Path(d)) for m, (a, b) in zip(lstms, SIZES)]
        feeds = [
            {"x": x.numpy(), "h": np.zeros((1, B, b), np.float32), "c": np.zeros((1, B, b), np.float32)}
            for x, (_, b) in zip(xs, SIZES)
        ]
        wih = [m.weight_ih_l0.detach().t().contiguous() for m in lstms]
        whh = [m.weight_hh_l0.detach().t().contiguous() for m in lstms]
        bias = [(m.bias_ih_l0 + m.bias_hh_l0).detach() for m in lstms]
        hs = [torch.randn(B, b) for _, b in SIZES]
        gs = [torch.empty(B, 4 * b) for _, b in SIZES]

        def torch_lstm():
            for m, x in zip(lstms, xs):
                m(x)

        def onnx_lstm():
            for s, f in zip(sessions, feeds):
                s.run(None, f)

        def products():
            for x, wi, wh, bb, h, g in zip(xs, wih, whh, bias, hs, gs):
                torch.addmm(bb, x.reshape(B * T, -1), wi)
                for _ in range(T):
                    torch.mm(h, wh, out=g)

        def by_hand():  # the whole recurrence in torch ops, one Python iteration a step: gates and state too
            for x, wi, wh, bb, h0, g in zip(xs, wih, whh, bias, hs, gs):
                xi = torch.addmm(bb, x.reshape(B * T, -1), wi).view(B, T, -1)
                h, c = torch.zeros_like(h0), torch.zeros_like(h0)
                for t in range(T):
                    torch.addmm(xi[:, t], h, wh, out=g)
                    i, f, z, o = g.chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(z)
                    h = torch.sigmoid(o) * torch.tanh(c)

        big_a, big_b = torch.randn(B * T, 512), torch.randn(512, 2048)

        def big_product():
            torch.mm(big_a, big_b)

        flops = sum(2 * B * T * (a + b) * 4 * b for a, b in SIZES)
        systems = {
            "torch LSTM (oneDNN)": (torch_lstm, flops),
            "onnxruntime LSTM": (onnx_lstm, flops),
            "the products alone": (products, flops),
            "by hand (torch ops a step)": (by_hand, flops),
            "one (2048x512)@(512x2048)": (big_product, 2 * B * T * 512 * 2048),
        }
        times = {k: [] for k in systems}
        with torch.inference_mode():
            for f, _ in systems.values():
                f()
            for _ in range(args.rounds):
                for k, (f, _) in systems.items():
                    t0 = time.perf_counter()
                    for _ in range(args.reps):
                        f()
                    times[k].append((time.perf_counter() - t0) / args.reps)
    base = flops / statistics.median(times["torch LSTM (oneDNN)"])  # oneDNN's rate
    for k, (_, fl) in systems.items():
        med = statistics.median(times[k])
        print(
            f"{k:28} {1e3 * med:8.2f} ms  {fl / med / 1e9:6.1f} GFLOP/s  rate / oneDNN LSTM's {fl / med / base:5.2f}x"
        )


if __name__ == "__main__":
    main()
