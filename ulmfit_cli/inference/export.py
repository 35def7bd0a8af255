"""`ulmfit export RUN --onnx OUT.onnx`: a classifier run as an ONNX graph for serving stacks, its tokenizer and a
small JSON that says how to feed it, side by side:

  OUT.onnx            input_ids (batch, time) int64 -> logits (batch, C) and output: probabilities (batch, C)
                      (softmax; one sigmoid per label for multi-label) or values (batch,) in the labels' units
  OUT.tokenizer.json  the run's tokenizer (Hugging Face `tokenizers`)
  OUT.json            classes, task, thresholds or target, max_len, bptt, backwards, pad/bos ids, how to feed it

How to feed it: per text, <bos> then `tokenizer.encode(text, add_special_tokens=False).ids` (a run imported
with `import-fastai` has fastai's word list instead, tokenized with spaCy and fastai's rules, see words.py);
rows padded with <pad> at the end to the longest in the batch. The graph itself cuts each document to
`max_len` tokens and reverses it for a backwards run, exactly as `predict` does (predictor.docs_of), so the
outputs are predict's probabilities for the same texts (tests/test_export.py checks both backbones).

A Hugging Face checkpoint's classifier (--backbone hf) is fed its own way, which OUT.json spells out: the start
token, the ids, an encoder's [SEP], a long document already cut to its head and tail (as predict cuts it), rows
padded with -1 (no id: the graph masks them out); OUT.tokenizer.json is the checkpoint's own tokenizer.json. A run
that reads long documents as windows (--long windows) is fed the same whole documents: the graph splits each into its
windows and pools them as predict does (models/windows.py).

Every backbone runs the whole document in one graph with dynamic batch and time axes:
- AWD-LSTM: the LSTMs over the whole document from a zero state are what fastai's BPT3C chunk loop computes at
  inference (models/awd_lstm_infer.py);
- transformer: the document is padded to a multiple of `bptt` and folded into (batch * chunks, bptt), which is the
  classifier's own chunk loop (each chunk attends only within itself) without a loop;
- hf: the checkpoint's body with its attention mask (transformers' mask-free path for decoders cannot be traced;
  with pads at the end the two give the same states), then the pooling and the head.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from .. import tasks
from ..data.tokenizer import BOS_ID, PAD_ID
from ..errors import OutputError
from ..runfolder import artifacts

OPSET = 17


def paths(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {"onnx": out, "tokenizer": Path(f"{stem}.tokenizer.json"), "meta": Path(f"{stem}.json")}


def graph(run: artifacts.Run):
    """The run's classifier as an nn.Module from right-padded ids to (logits, output), on the CPU, eval mode."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from .predictor import load_classifier

    cfg, tok, model = load_classifier(run, "cpu")
    _decompose_rmsnorm(model)
    if hasattr(model, "chunk"):
        model.chunk = 0  # the AWD-LSTM in one pass: a graph with a dynamic time axis has no Python loop
    task, target = tasks.task_of(run.manifest), run.manifest.get("target") or {}

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids):  # (B, T), padding at the end
            if cfg.backbone != "hf":  # a checkpoint's documents come cut (head and tail), see the module docstring
                ids = ids[:, : cfg.max_len]
            T = ids.shape[1]
            lens = (ids != PAD_ID).sum(1, keepdim=True)
            pos = torch.arange(T, device=ids.device).unsqueeze(0)
            if cfg.backwards:  # each row's text reversed in place, padding still at the end
                ids = torch.where(pos < lens, ids.gather(1, (lens - 1 - pos).clamp(min=0)), PAD_ID)
            logits = self.logits(ids)
            if task == tasks.REGRESSION:
                return logits, logits[:, 0] * target["std"] + target["mean"]
            return logits, torch.sigmoid(logits) if task == tasks.MULTI else torch.softmax(logits, 1)

        def logits(self, ids):
            if cfg.backbone == "hf":
                return self.model.head(self.model.features(ids, attention_mask=True).float())
            if cfg.backbone != "transformer":
                return self.model(ids)[0]
            m, ctx = self.model, cfg.bptt
            B, T = ids.shape
            padded = F.pad(ids, (0, (ctx - T % ctx) % ctx), value=PAD_ID)
            h = m.body(padded.reshape(-1, ctx)).reshape(B, padded.shape[1], -1)[:, :T]
            return m.head(_pool(h, ids != PAD_ID))

    return cfg, tok, Graph().eval()


def _decompose_rmsnorm(model) -> None:
    """ONNX opset 17 has no RMSNorm (torch's exporter refuses aten::rms_norm): the same sum in plain ops."""
    import torch
    import torch.nn as nn

    class RMSNorm(nn.Module):
        def __init__(self, norm: nn.RMSNorm):
            super().__init__()
            self.weight, self.eps = norm.weight, norm.eps

        def forward(self, x):
            eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.RMSNorm):
                setattr(parent, name, RMSNorm(child))


def _pool(h, mask):
    """TransformerClassifier.features' pooling from hidden states (B, T, C) and the mask of real tokens."""
    import torch

    lens = mask.sum(1).clamp(min=1)
    last = h.gather(1, (lens - 1).view(-1, 1, 1).expand(-1, 1, h.shape[2])).squeeze(1)
    m = mask.unsqueeze(-1)
    mx = h.masked_fill(~m, float("-inf")).max(1).values
    mean = (h * m).sum(1) / lens.unsqueeze(-1).to(h.dtype)
    return torch.cat([last, mx, mean], 1)


def feeding(cfg, tok) -> tuple[int, int, int | None]:
    """The pad, start and end ids of the graph's input: ours (<pad>, <bos>, none), or a checkpoint's (HF_PAD, its
    start token, an encoder's [SEP])."""
    from ..data.tokenizer import end_ids, start_id

    if cfg.backbone == "hf":
        from ..models.hf import HF_PAD

        return HF_PAD, start_id(tok), (end_ids(tok) or (None,))[0]
    return PAD_ID, BOS_ID, None


def export_onnx(run: artifacts.Run, out: Path) -> dict[str, Path]:
    """Write the three files (each atomically: a temporary name, then renamed); returns their paths."""
    lock = artifacts.OutputLock(out)  # a second export to the same file at the same time is refused
    try:
        return _export(run, out)
    finally:
        lock.release()


def _export(run: artifacts.Run, out: Path) -> dict[str, Path]:
    import torch

    cfg, tok, g = graph(run)
    files = paths(out)
    pad, first, last = feeding(cfg, tok)
    example = torch.full((2, cfg.bptt + 3), pad, dtype=torch.int64)
    example[:, 0], example[0, 1:] = first, 7
    meta = {
        "format": "ulmfit-onnx/1",
        "run": str(run.path),
        "backbone": cfg.backbone,
        "task": tasks.task_of(run.manifest),
        "classes": run.manifest["classes"],
        "thresholds": None if (t := tasks.thresholds(run.manifest)) is None else t.tolist(),
        "target": run.manifest.get("target"),
        "max_len": cfg.max_len,
        "bptt": cfg.bptt,
        "backwards": cfg.backwards,
        "pad_id": pad,
        "bos_id": first,
        "end_id": last,
        "tokenizer": "fastai-words" if type(tok).__name__ == "WordVocab" else "huggingface-tokenizers",
        "inputs": {"input_ids": "int64 (batch, time): bos_id, then tokenizer.encode(text, add_special_tokens="
                   "False).ids, then end_id when it is not null, padded at the end with pad_id; the graph cuts to "
                   "max_len and reverses backwards runs itself"
                   if cfg.backbone != "hf" else
                   "int64 (batch, time): bos_id, then tokenizer.encode(text, add_special_tokens=False).ids, then "
                   "end_id when it is not null; a document longer than max_len keeps its first head_tokens and "
                   "the rest from its end (as predict cuts it); rows padded at the end with pad_id (-1)"
                   + ("; the graph reads it in windows itself (long, window, stride)"
                      if cfg.long == "windows" else "")},
        **({"head_tokens": max(1, int(cfg.max_len * 0.25))} if cfg.backbone == "hf" else {}),
        **({"long": cfg.long, "window": cfg.window, "stride": cfg.stride, "window_pool": cfg.window_pool}
           if cfg.backbone == "hf" and cfg.long == "windows" else {}),
        "outputs": {"logits": "float32 (batch, C)",
                    "output": "probabilities (batch, C): softmax, or one sigmoid per label for multi-label "
                    "(a label is on at or above its threshold); regression: values (batch,)"},
    }  # fmt: skip
    tmp = {k: p.with_name(f".{p.name}.tmp{os.getpid()}") for k, p in files.items()}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes: the dynamic axes are tested instead
            torch.onnx.export(
                g, (example,), str(tmp["onnx"]), input_names=["input_ids"], output_names=["logits", "output"],
                dynamic_axes={"input_ids": {0: "batch", 1: "time"}, "logits": {0: "batch"}, "output": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )  # fmt: skip
        if hasattr(tok, "start_id"):  # a checkpoint's tokenizer: its own tokenizer.json, loadable by any client
            tmp["tokenizer"].write_text(tok.tok.to_str(pretty=True), encoding="utf-8")
        else:
            shutil.copyfile(run.file("tokenizer"), tmp["tokenizer"])
        tmp["meta"].write_text(json.dumps(meta, indent=2) + "\n")
        for k in files:
            os.replace(tmp[k], files[k])
    except OSError as e:
        raise OutputError(f"{out}: could not write the export ({e.strerror or e}); nothing was replaced") from None
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    return files
