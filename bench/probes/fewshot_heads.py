"""Issue 37 (RESULTS 19): is the classifier head the few-shot gap? ULMFiT's head and linear heads against
scikit-learn's logistic regression, on frozen mean-pooled all-MiniLM-L6 features of bench/fewshot.py's samples of
8 a class (seeds 0-4), each scored on the whole test set. The body is not trained: only the heads differ.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/probes/fewshot_heads.py MINILM_FOLDER WORK/data sst2 trec6
"""

from __future__ import annotations

import csv
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from transformers import AutoModel, AutoTokenizer


def embed(tok, model, texts: list[str]) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), 64):
        b = tok(texts[i : i + 64], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            h = model(**b).last_hidden_state
        mask = b["attention_mask"].unsqueeze(-1)
        out.append((h * mask).sum(1) / mask.sum(1))
    return torch.cat(out)


def ulmfit_head(c: int, n: int, p: float = 0.4, hidden: int = 50) -> nn.Module:  # models/hf.py's head
    return nn.Sequential(
        nn.BatchNorm1d(c), nn.Dropout(p), nn.Linear(c, hidden), nn.ReLU(),
        nn.BatchNorm1d(hidden), nn.Dropout(0.1), nn.Linear(hidden, n),
    )  # fmt: skip


def train(head: nn.Module, x, y, seed: int, steps: int = 200, lr: float = 1e-3, bs: int = 16) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:bs]
        head.train()
        loss = nn.functional.cross_entropy(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def main() -> None:
    torch.set_num_threads(1)
    folder, data, tasks = sys.argv[1], sys.argv[2], sys.argv[3:]
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    norm = lambda z: nn.functional.normalize(z, dim=1)  # noqa: E731
    for task in tasks:
        test = list(csv.DictReader(open(f"{data}/{task}-test.csv", encoding="utf-8")))
        classes = sorted({r["label"] for r in test})
        xte, yte = embed(tok, model, [r["text"] for r in test]), torch.tensor([classes.index(r["label"]) for r in test])
        scores: dict[str, list[float]] = {}
        for s in range(5):
            rows = list(csv.DictReader(open(f"{data}/{task}-k8-s{s}.csv", encoding="utf-8")))
            x, y = embed(tok, model, [r["text"] for r in rows]), torch.tensor([classes.index(r["label"]) for r in rows])
            n = len(classes)
            torch.manual_seed(s)
            heads = {
                "ulmfit head, 1e-3": (train(ulmfit_head(x.shape[1], n), x, y, s), xte),
                "linear, 1e-2": (train(nn.Linear(x.shape[1], n), x, y, s, lr=1e-2), xte),
                "linear on normalized, 1e-1": (train(nn.Linear(x.shape[1], n), norm(x), y, s, lr=1e-1), norm(xte)),
            }
            for name, (head, feats) in heads.items():
                scores.setdefault(name, []).append(float((head(feats).argmax(1) == yte).float().mean()))
            lr = LogisticRegression(max_iter=2000).fit(norm(x).numpy(), y.numpy())
            scores.setdefault("sklearn LR on normalized", []).append(
                float((lr.predict(norm(xte).numpy()) == yte.numpy()).mean())
            )
        for name, v in scores.items():
            print(task, f"{name:28s}", " ".join(f"{a:.3f}" for a in v), f"mean {np.mean(v):.3f}", flush=True)


if __name__ == "__main__":
    main()
