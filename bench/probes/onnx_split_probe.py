"""The onnx engine at --threads N, two ways of splitting the work side by side with fastai's get_preds (issue 12,
bench/RESULTS.md 12, stop 19): `old` splits every onnxruntime call's rows between the threads (the engine until
f5469f6: the threads meet once a chunk, pooling on one thread), `new` deals each batch's rows out once and each
thread runs its own chunks and pooling (onnx_engine.Recurrence.parts/map). fp32 and int8, rounds interleaved.

  ULMFIT_CACHE=/tmp/ulc OMP_NUM_THREADS=2 python bench/probes/onnx_split_probe.py RUN imdb=imdb/test.csv:500 \
      [--rounds 7] [--bs 64,128] [--kinds old,new] [--threads 2]

Prints per system: docs/s and the ratio to fastai at --bs's first size by the median round, by the fastest round,
and the median of the per-round ratios (paired: a slow spell of the machine slows both of a round's runs), and
the largest probability difference from `new` fp32 (fastai's differs on long reviews: its ragged padding,
RESULTS 8).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for predict_speed
from predict_speed import fastai_predictor, ours, read  # noqa: E402

from ulmfit_cli.config import from_dict  # noqa: E402
from ulmfit_cli.inference import onnx_engine as O  # noqa: E402
from ulmfit_cli.inference.predictor import docs_of, load_classifier  # noqa: E402
from ulmfit_cli.runfolder import artifacts as A  # noqa: E402


class PerCall(O.Recurrence):
    """The engine before f5469f6: no parts; every call's rows split between the pool's threads."""

    def parts(self, rows: int) -> int:
        return 1

    def __call__(self, x, states):
        n = x.shape[0]
        feed = {"ids": np.ascontiguousarray(x.cpu().numpy())}
        for i, (size, st) in enumerate(zip(self.sizes, states)):
            for j, name in enumerate(self.names[0][2 * i : 2 * i + 2]):
                feed[name] = np.zeros((1, n, size), np.float32) if st is None else np.ascontiguousarray(st[j].numpy())
        k = min(self.threads, n // O.MIN_ROWS)
        if k < 2:
            res = self.session.run(None, feed)
        else:  # states are (1, n, size): rows on axis 1; ids rows on axis 0
            cuts = [n * p // k for p in range(k + 1)]
            parts = [
                {m: (a[lo:hi] if m == "ids" else a[:, lo:hi]) for m, a in feed.items()}
                for lo, hi in zip(cuts, cuts[1:])
            ]
            outs = list(self.pool.map(lambda f: self.session.run(None, f), parts))
            res = [np.concatenate([o[0] for o in outs], 0)]
            res += [np.concatenate([o[i] for o in outs], 1) for i in range(1, len(outs[0]))]
        h, *out = (torch.from_numpy(a) for a in res)
        return h, [(out[2 * i], out[2 * i + 1]) for i in range(len(self.sizes))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("data", help="NAME=CSV[:N]")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--bs", default="64")
    p.add_argument("--kinds", default="old,new")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(b) for b in args.bs.split(",")]
    run = A.open_run(args.run, ("finetune-clf",), "bench")
    cfg, tok, _ = load_classifier(run, "cpu")
    n_class = len(run.manifest["classes"])
    systems = {f"fastai_bs{b}": fastai_predictor(from_dict(run.config), run, n_class, b) for b in sizes}
    for q in (None, "int8"):
        for kind in args.kinds.split(","):
            model = load_classifier(run, "cpu", q, engine="onnx")[2]
            if kind == "old":
                old = PerCall.__new__(PerCall)
                old.__dict__.update(model.engine.__dict__)
                model.engine = old
            for b in sizes:
                systems[f"{kind}_{q or 'fp32'}_bs{b}"] = ours(model, dataclasses.replace(cfg, bs=b))
    name, texts, _ = read(args.data)
    docs = docs_of(tok, texts, cfg)
    times, probs = interleave(systems, docs, args.rounds)
    report(name, len(docs), times, probs, f"fastai_bs{sizes[0]}", f"new_fp32_bs{sizes[0]}")


def interleave(systems: dict, docs: list, rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Each system on `docs`, round after round: wall seconds per round, and each one's last probabilities."""
    times: dict[str, list[float]] = {k: [] for k in systems}
    probs = {}
    for r in range(rounds):
        for k, fn in systems.items():
            t = time.perf_counter()
            probs[k] = fn(docs)
            times[k].append(time.perf_counter() - t)
        print(r + 1, {k: round(v[-1], 2) for k, v in times.items()}, file=sys.stderr)
    return times, probs


def report(name: str, n: int, times: dict, probs: dict, base_key: str, ref_key: str) -> None:
    """One line per system: docs/s, its ratio to `base_key` by the median round, the fastest and paired, and its
    largest probability difference from `ref_key`'s."""
    base, ref = times[base_key], probs.get(ref_key, probs[next(iter(probs))])
    for k, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        paired = statistics.median(b / t for b, t in zip(base, ts))
        print(
            f"{name} {k}: {n / med:.1f} docs/s, {statistics.median(base) / med:.2f}x {base_key} (median round); "
            f"fastest {min(base) / best:.2f}x; paired {paired:.2f}x; max |p - {ref_key}| "
            f"{float(np.abs(probs[k] - ref).max()):.1e}; rounds {[round(t, 2) for t in ts]}"
        )


if __name__ == "__main__":
    main()
