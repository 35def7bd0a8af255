"""Issue 37: after the contrastive step, is the tool's head (BatchNorm, dropout, 50 hidden units, trained on the
body's features computed once) what keeps SST-2 below SetFit? SetFit fits scikit-learn's LogisticRegression() on
the body's embeddings, which all-MiniLM-L6 normalizes. Here both heads read the same contrastively trained body:
run folders that `bench/fewshot.py run ... --keep-runs` left, each scored on the whole test set through the head
it trained with (the tool's accuracy) and through heads fitted on the run's own training rows' features.

    OMP_NUM_THREADS=1 python bench/probes/fewshot_heads_trained.py WORK RUN_DIR...

WORK: fewshot.py's folder (its data/ holds the samples and tests); a run folder's name is the sample's stem.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ulmfit_cli.inference.predictor import docs_of, load_classifier
from ulmfit_cli.models import backbone
from ulmfit_cli.runfolder import artifacts
from ulmfit_cli.training.contrastive import head_features


def rows(path: Path) -> tuple[list[str], list[str]]:
    r = list(csv.DictReader(open(path, encoding="utf-8")))
    return [x["text"] for x in r], [x["label"] for x in r]


def fit_lbfgs(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, c: float = 1.0) -> None:
    """scikit-learn's LogisticRegression(C=c) objective (multinomial; L2 on the weights, not the bias), in torch."""
    opt = torch.optim.LBFGS(head.parameters(), max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y, reduction="sum") + 0.5 / c * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)


def main() -> None:
    torch.set_num_threads(1)
    work, runs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    for run_path in runs:
        task = run_path.name.split("-k")[0]
        run = artifacts.open_run(run_path, ("finetune-clf",), "classifier")
        cfg, tok, model = load_classifier(run, "cpu")
        classes = run.manifest["classes"]
        tr_x, tr_y = rows(work / "data" / f"{run_path.name}.csv")
        te_x, te_y = rows(work / "data" / f"{task}-test.csv")
        pad = backbone(cfg.backbone).pad_batch
        f_tr = head_features(model, docs_of(tok, tr_x, cfg), cfg, pad)
        f_te = head_features(model, docs_of(tok, te_x, cfg), cfg, pad)
        y_tr = np.array([classes.index(c) for c in tr_y])
        y_te = np.array([classes.index(c) for c in te_y])
        with torch.no_grad():
            own = float((model.head(f_te).argmax(1).numpy() == y_te).mean())
        norm = lambda z: torch.nn.functional.normalize(z, dim=1).numpy()  # noqa: E731
        out = {"run": run_path.name, "tool_head": round(own, 4)}
        for name, a, b in (("lr_normalized", norm(f_tr), norm(f_te)), ("lr_raw", f_tr.numpy(), f_te.numpy())):
            lr = LogisticRegression(max_iter=2000).fit(a, y_tr)
            out[name] = round(float((lr.predict(b) == y_te).mean()), 4)
        head = torch.nn.Linear(f_tr.shape[1], len(classes))
        fit_lbfgs(head, f_tr, torch.as_tensor(y_tr))
        with torch.no_grad():
            out["torch_lbfgs_raw"] = round(float((head(f_te).argmax(1).numpy() == y_te).mean()), 4)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
