"""`ulmfit lr-find` against fastai's `Learner.lr_find`, on the same classifier, weights and batches.

The classifier (encoder from a finetune-lm run) and 100 training batches are built once by lr_find.clf_setup;
each range test starts from the same weights and seed and reads the same batches in the same order
(repeated for --seeds dropout seeds, since one curve's valley moves with its noise):
  ours       lr_find.range_test + lr_find.suggest, valley rule (`ulmfit lr-find --rule valley`)
  fastai     Learner(DataLoaders(torch DataLoader of those batches), model, Adam(mom=beta1, sqr_mom=beta2, wd),
             GradientClip, RNN output [0]) .lr_find(start_lr, end_lr, num_it) -> its valley suggestion
both with every group at one rate (--lr-factor 1: fastai's lr_find default) and with the discriminative factor
(fastai given per-group start and end rates, which its LRFinder schedules group by group). Differences left:
fastai's Adam has eps 1e-5 (torch's AdamW 1e-8), and dropout masks follow each library's RNG use.

  OMP_NUM_THREADS=1 python bench/lr_find_compare.py RUN TRAIN.csv [--preset tiny] [--num-it 100]
prints one JSON line per (library, factor, seed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import warnings
from functools import partial
from pathlib import Path

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("train")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--num-it", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3, help="repeats with other dropout masks: the rule is noisy")
    args = ap.parse_args()

    import dataclasses

    import torch
    import torch.nn.functional as F

    from ulmfit_cli import dist
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.config import resolve
    from ulmfit_cli.data.readers import Source
    from ulmfit_cli.runfolder.artifacts import LM_STAGES, open_run
    from ulmfit_cli.training.schedule import discriminative_lrs
    from ulmfit_cli.workflows import lr_find as L

    torch.set_num_threads(1)
    parent = open_run(args.run, LM_STAGES, "bench")
    base = resolve("finetune-clf", args.preset, {}, parent.config)
    src = Source(path=args.train)
    dist.seed_all(base.seed)
    model, groups, batches, _ = L.clf_setup(base, parent, src, "text", "label", Reporter(quiet=True))
    data = list(itertools.islice(batches, args.num_it))
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh(seed):
        model.load_state_dict(start)
        dist.seed_all(seed)
        return model

    def loss_fn(batch):
        x, y = batch
        loss = F.cross_entropy(model(x)[0], y)
        return loss, loss.item()

    for factor in (1.0, base.lr_factor):
        cfg = dataclasses.replace(base, lr_factor=factor)
        for seed in range(base.seed, base.seed + args.seeds):
            lrs, losses = L.range_test(fresh(seed), groups, iter(data), loss_fn, cfg, 1e-7, 10.0, args.num_it)
            ours = L.suggest(lrs, losses, args.num_it, "valley")
            row = {"lr_factor": factor, "seed": seed}
            print(json.dumps({"library": "ulmfit", **row, "steps": len(lrs), **ours}), flush=True)
            fa = fastai_lr_find(fresh(seed), groups, data, cfg, args.num_it, discriminative_lrs, F, partial)
            print(json.dumps({"library": "fastai", **row, **fa}), flush=True)


def fastai_lr_find(model, groups, data, cfg, num_it, discriminative_lrs, F, partial) -> dict:
    import fastai.callback.schedule  # noqa: F401 - patches Learner.lr_find
    import numpy as np
    from fastai.callback.training import GradientClip
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import Adam
    from torch.utils.data import DataLoader

    dl = DataLoader(data, batch_size=None, shuffle=False)
    dls = DataLoaders(dl, dl, device="cpu")
    learn = Learner(
        dls,
        model,
        loss_func=lambda pred, y: F.cross_entropy(pred[0], y),
        opt_func=partial(Adam, mom=cfg.beta1, sqr_mom=cfg.beta2, wd=cfg.wd),
        splitter=lambda m: groups,
        cbs=[GradientClip(cfg.clip)],
        path="/tmp",
    )
    learn.unfreeze()
    mults = np.array(discriminative_lrs(1.0, len(groups), cfg.lr_factor))
    with learn.no_bar():
        found = learn.lr_find(start_lr=1e-7 * mults, end_lr=10.0 * mults, num_it=num_it, show_plot=False)
    return {"suggested_lr": float(found.valley), "steps": len(learn.recorder.lrs)}


if __name__ == "__main__":
    main()
