"""Chunks that end where a row's text ends, against chunks of fixed length (issue 12, bench/RESULTS.md 12, stop
20): the classifier's chunk loop (AWDLSTMClassifier._features) before and after, in one process, rounds
interleaved with fastai's get_preds, fp32 and int8 on the onnx engine. `fixed` is the loop until this change:
chunks of `chunk` steps, each running the rows whose text reaches it, so a row runs up to `chunk` - 1 padded
steps in its last chunk; `ends` (the code now) stops a chunk where its shortest row's text ends.

  ULMFIT_CACHE=/tmp/ulc OMP_NUM_THREADS=2 python bench/probes/chunk_ends_probe.py RUN imdb=imdb/test.csv:500 \
      [--rounds 7] [--bs 64] [--threads 2] [--engine onnx|torch] [--chunks 64,...]

Prints, per system, docs/s and its ratio to fastai (median round; median of the per-round ratios, "paired"),
the largest probability difference from `ends` fp32, and for each loop the LSTM steps it ran per real token.
--chunks adds `ends` systems whose chunks run up to that many steps instead of the run's (CHUNK).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for predict_speed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/probes/, for onnx_split_probe
from onnx_split_probe import interleave, report  # noqa: E402
from predict_speed import fastai_predictor, ours, read  # noqa: E402

from ulmfit_cli.config import from_dict  # noqa: E402
from ulmfit_cli.inference.predictor import docs_of, load_classifier  # noqa: E402
from ulmfit_cli.runfolder import artifacts as A  # noqa: E402


def fixed_features(self, x: torch.Tensor, lens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """AWDLSTMClassifier._features as it was before chunks ended at rows' ends (fixed-length chunks, masks)."""
    B, T = x.shape
    if self.chunk <= 0 or T <= self.chunk:
        return self._pool_one_pass(x, lens, pos)
    order = lens.argsort(descending=True)
    x, lens = x[order], lens[order]
    states: list = [None] * len(self.rnns)
    C = self.rnns[-1].hidden_size
    last, total = x.new_zeros((B, C), dtype=torch.float32), x.new_zeros((B, C), dtype=torch.float32)
    mx = torch.full((B, C), float("-inf"), device=x.device)
    for i in range(0, T, self.chunk):
        n = int((lens > i).sum())
        if n == 0:
            break
        h, states = self.recur(
            x[:n, i : i + self.chunk], [None if s is None else (s[0][:, :n], s[1][:, :n]) for s in states]
        )
        keep = (pos[i : i + self.chunk] < lens[:n, None]).unsqueeze(-1)
        j = lens[:n] - 1 - i
        at = h.gather(1, j.clamp(0, h.shape[1] - 1).view(n, 1, 1).expand(n, 1, C)).squeeze(1)
        last[:n] = torch.where(((j >= 0) & (j < h.shape[1])).unsqueeze(1), at.float(), last[:n])
        mx[:n] = torch.maximum(mx[:n], h.masked_fill(~keep, float("-inf")).max(1).values.float())
        total[:n] += h.masked_fill(~keep, 0.0).sum(1).float()
    out = torch.cat([last, mx, total / lens.unsqueeze(1)], 1)
    return out[order.argsort()]


def counting(model) -> list[int]:
    """Make model.recur count the LSTM steps it runs (rows x steps); returns the counter [steps]."""
    seen, recur = [0], model.recur

    def counted(x, states):
        seen[0] += x.shape[0] * x.shape[1]
        return recur(x, states)

    model.recur = counted
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("data", help="NAME=CSV[:N]")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engine", default="onnx")
    p.add_argument("--chunks", default="", help="more chunk lengths for `ends`, e.g. 64,128")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = A.open_run(args.run, ("finetune-clf",), "bench")
    cfg, tok, _ = load_classifier(run, "cpu")
    cfg = dataclasses.replace(cfg, bs=args.bs)
    name, texts, _ = read(args.data)
    docs = docs_of(tok, texts, cfg)
    real = sum(len(d) for d in docs)
    systems = {"fastai": fastai_predictor(from_dict(run.config), run, len(run.manifest["classes"]), args.bs)}
    steps = {}
    for q in (None, "int8"):
        for kind in ("fixed", "ends"):
            model = load_classifier(run, "cpu", q, engine=args.engine)[2]
            if kind == "fixed":
                model._features = types.MethodType(fixed_features, model)
            if q is None:  # one counted pass, then the timed rounds run uncounted
                counter = counting(model)
                ours(model, cfg)(docs)
                steps[kind] = counter[0] / real
                del model.recur
            systems[f"{kind}_{q or 'fp32'}"] = ours(model, cfg)
        for c in filter(None, args.chunks.split(",")):
            model = load_classifier(run, "cpu", q, engine=args.engine)[2]
            model.chunk = int(c)
            systems[f"ends_{q or 'fp32'}_chunk{c}"] = ours(model, cfg)
    times, probs = interleave(systems, docs, args.rounds)
    print(f"{name}: {len(docs)} docs, {real / len(docs):.1f} tokens each; LSTM steps per real token: "
          + ", ".join(f"{k} {v:.3f}" for k, v in steps.items()))  # fmt: skip
    report(name, len(docs), times, probs, "fastai", "ends_fp32")


if __name__ == "__main__":
    main()
