"""Does splitting the small AWD-LSTM's three LSTMs between 2 threads (L1+L3 | L2) scale better than splitting the
batch's rows (what onnx_engine.Recurrence does)? onnxruntime, one thread per session, random weights, fp32 and
int8 (quantize_dynamic), chunks of 64 rows x 32 steps; chunks per second, median of 3 rounds.

    OMP_NUM_THREADS=1 python bench/probes/lstm_split_probe.py    (bench/RESULTS.md 12)
"""

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
from onnxruntime.quantization import QuantType, quantize_dynamic

SIZES = [(200, 512), (512, 512), (512, 200)]  # the small preset: emb 200, 3 LSTMs of 512, 512, 200 units
B, T, R = 64, 32, 30  # rows, steps per chunk, chunks per round


def sessions(folder: Path) -> dict:
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    out = {}
    for q in ("fp32", "int8"):
        for i, (a, b) in enumerate(SIZES):
            m = nn.LSTM(a, b, 1, batch_first=True).eval()
            p = str(folder / f"l{i}.onnx")
            args = (torch.zeros(2, 5, a), (torch.zeros(1, 2, b), torch.zeros(1, 2, b)))
            axes = {"x": {0: "n", 1: "t"}, "y": {0: "n", 1: "t"}, **{s: {1: "n"} for s in ("h", "c", "ho", "co")}}
            torch.onnx.export(m, args, p, input_names=["x", "h", "c"], output_names=["y", "ho", "co"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
            if q == "int8":
                quantize_dynamic(p, p + ".q", weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
                p += ".q"
            o = ort.SessionOptions()
            o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = 1, 1, 3
            out[q, i] = ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        sess = sessions(Path(d))

    def run(q, i, x):
        z = np.zeros((1, x.shape[0], SIZES[i][1]), np.float32)
        return sess[q, i].run(None, {"x": x, "h": z, "c": z})[0]

    def all_layers(q, x):
        for i in range(3):
            x = run(q, i, x)
        return x

    def rows_split(q, x):
        for _ in range(R):
            list(pool.map(lambda part: all_layers(q, part), (x[: B // 2], x[B // 2 :])))

    def layers_split(q, x, h1):
        def a():
            for _ in range(R):
                run(q, 0, x)
                run(q, 2, h1)

        def b():
            for _ in range(R):
                run(q, 1, h1)

        for f in [pool.submit(a), pool.submit(b)]:
            f.result()

    pool = ThreadPoolExecutor(2)
    rng = np.random.default_rng(0)
    x, h1 = rng.standard_normal((B, T, 200), np.float32), rng.standard_normal((B, T, 512), np.float32)
    for q in ("fp32", "int8"):
        all_layers(q, x)
        ways = {
            "1 thread": lambda: [all_layers(q, x) for _ in range(R)],  # noqa: B023 (called in this iteration)
            "2 threads, rows split": lambda: rows_split(q, x),  # noqa: B023
            "2 threads, layers split (L1+L3 | L2)": lambda: layers_split(q, x, h1),  # noqa: B023
        }
        res = {k: [] for k in ways}
        for _ in range(3):
            for k, fn in ways.items():
                t = time.perf_counter()
                fn()
                res[k].append(R / (time.perf_counter() - t))
        for k, v in res.items():
            print(f"{q} {k}: {np.median(v):.1f} chunks/s", flush=True)


if __name__ == "__main__":
    main()
