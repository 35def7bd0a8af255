"""Checkpoints inside the temporary run folder, for `--resume` after a crash, SIGKILL or Ctrl-C.

A checkpoint holds everything the next step depends on, so a resumed CPU run ends with exactly the metrics of an
uninterrupted one: weights, Adam state, the position in the plan (epoch, step, step within the STLR phase; the
unfreezing phase follows from the epoch), the running training loss, the torch RNG (dropout masks), the
LSTM hidden state carried between LM batches, and the weights of the best validation epoch so far (`--keep best`;
the patience count follows from the history in the position). Batch order depends only on (seed, epoch), so the
data position is the step count. Tensors go to safetensors, everything else to JSON: loading never unpickles.

Written as `ckpt.new/`, then swapped in by rename; a kill between the two renames leaves `ckpt.old/`, which
`load` falls back on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..runfolder.artifacts import find_checkpoint, load_weights, written


def _encoder(model):
    """Where a recurrent backbone keeps its hidden state (fastai's SequentialRNN: the first module)."""
    import torch

    return model[0] if isinstance(model, torch.nn.Sequential) else model


def _tensor_state(model, opt) -> dict:
    import torch

    tensors = {"rng.torch": torch.get_rng_state()}
    enc = _encoder(model)
    for i, (h, c) in enumerate(getattr(enc, "hidden", None) or []):
        tensors[f"hidden.{i}.h"], tensors[f"hidden.{i}.c"] = h.contiguous(), c.contiguous()
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.contiguous()
    return tensors


BEST = "best.safetensors"


def save(folder: Path, model, opt, position: dict, best: tuple[int, dict] | None = None) -> None:
    """`best`: (0-based epoch, its weights), kept beside the model; while the best epoch stays the same, the
    previous checkpoint's file is hard-linked rather than written again."""
    from safetensors.torch import save_file, save_model

    new, cur, old = folder / "ckpt.new", folder / "ckpt", folder / "ckpt.old"
    shutil.rmtree(new, ignore_errors=True)
    try:
        with written(new):
            new.mkdir()
            save_model(model, str(new / "model.safetensors"))
            save_file(_tensor_state(model, opt), str(new / "state.safetensors"))
            if best is not None:
                _save_best(cur, new, *best)
            groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
            extra = {"best_weights_epoch": best[0]} if best is not None else {}
            (new / "position.json").write_text(json.dumps({**position, **extra, "param_groups": groups}))
    except BaseException:  # `ckpt` is untouched until the new one is whole; give back the space the rest took
        shutil.rmtree(new, ignore_errors=True)
        raise
    if cur.exists():
        shutil.rmtree(old, ignore_errors=True)
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)


def _save_best(cur: Path, new: Path, epoch: int, weights: dict) -> None:
    from safetensors.torch import save_file

    try:
        if (cur / BEST).exists() and json.loads((cur / "position.json").read_text()).get("best_weights_epoch") == epoch:
            os.link(cur / BEST, new / BEST)
            return
    except (OSError, ValueError):  # no hard links here, or an unreadable position: write it again
        pass
    # clone: tied weights (the LM's encoder and decoder) share storage, which safetensors refuses to save twice
    save_file({k: v.detach().contiguous().clone() for k, v in weights.items()}, str(new / BEST))


find = find_checkpoint


def position(folder: Path) -> dict | None:
    ck = find(folder)
    return None if ck is None else json.loads((ck / "position.json").read_text())


def restore(folder: Path, model, opt) -> dict:
    """Load weights, optimizer, RNG and hidden state; return the saved position, with "best": (epoch, weights)
    when the checkpoint holds a best epoch's weights."""
    import torch
    from safetensors.torch import load_file

    ck = find(folder)
    load_weights(model, ck / "model.safetensors")
    pos = json.loads((ck / "position.json").read_text())
    tensors = load_file(str(ck / "state.safetensors"))
    torch.set_rng_state(tensors["rng.torch"])
    enc = _encoder(model)
    n_hidden = len([k for k in tensors if k.startswith("hidden.") and k.endswith(".h")])
    if n_hidden:
        dev = next(model.parameters()).device
        enc.hidden = [(tensors[f"hidden.{i}.h"].to(dev), tensors[f"hidden.{i}.c"].to(dev)) for i in range(n_hidden)]
        enc.bs = enc.hidden[0][0].shape[1]
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    groups = opt.state_dict()["param_groups"]
    for g, saved in zip(groups, pos.pop("param_groups")):
        g.update({k: (tuple(v) if k == "betas" else v) for k, v in saved.items()})
    opt.load_state_dict({"state": state, "param_groups": groups})
    if "best_weights_epoch" in pos and (ck / BEST).exists():
        dev = next(model.parameters()).device
        pos["best"] = (pos.pop("best_weights_epoch"), load_file(str(ck / BEST), device=str(dev)))
    return pos
