"""Checkpoints inside the temporary run folder, for `--resume` after a crash, SIGKILL or Ctrl-C.

A checkpoint holds everything the next step depends on, so a resumed CPU run ends with exactly the metrics of an
uninterrupted one: weights, Adam state, the torch RNG (dropout masks), the LSTM hidden state carried between LM
batches, and the loop's TrainState whole: the position in the plan (epoch, step, step within the STLR phase), the
running training loss, the history, and the weights of the best validation epoch so far (`--keep best`; the
patience count follows from the history). Batch order depends only on (seed, epoch), so the data position is the
step count. Tensors go to safetensors, everything else to JSON (position.json): loading never unpickles.

Written as `ckpt.new/`, then swapped in by rename; a kill between the two renames leaves `ckpt.old/`, which
`load` falls back on.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..runfolder.artifacts import find_checkpoint, load_weights, written


@dataclass
class TrainState:
    """What `loop.fit` changes as it trains, and so what a checkpoint saves besides the model, the optimizer, the
    RNG and the hidden state. position.json holds every field but `best` under its own name, and the best epoch's
    number as best_weights_epoch (its weights: best.safetensors)."""

    epoch: int = 0  # 0-based: the epoch in progress (at an epoch's end, the next one)
    step: int = 0  # steps of `epoch` done
    phase: int | None = None  # the unfreezing phase whose STLR cycle is running
    phase_t: int = 0  # steps done in that cycle
    tot: float = 0.0  # the epoch's reported training loss, summed over its steps so far,
    n: int = 0  # and how many steps that is
    history: list[dict] = field(default_factory=list)  # a row per finished epoch
    best: tuple[int, dict] | None = None  # under `--keep best`: (0-based epoch, a copy of its weights)


POSITION = [f.name for f in fields(TrainState) if f.name != "best"]  # what position.json holds of a TrainState


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


def save(folder: Path, model, opt, state: TrainState) -> None:
    """The best epoch's weights (`state.best`) are kept beside the model; while the best epoch stays the same, the
    previous checkpoint's file is hard-linked rather than written again."""
    from safetensors.torch import save_file, save_model

    new, cur, old = folder / "ckpt.new", folder / "ckpt", folder / "ckpt.old"
    shutil.rmtree(new, ignore_errors=True)
    try:
        with written(new):
            new.mkdir()
            save_model(model, str(new / "model.safetensors"))
            save_file(_tensor_state(model, opt), str(new / "state.safetensors"))
            if state.best is not None:
                _save_best(cur, new, *state.best)
            position = {k: getattr(state, k) for k in POSITION}
            groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
            extra = {"best_weights_epoch": state.best[0]} if state.best is not None else {}
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


def restore(folder: Path, model, opt) -> TrainState:
    """Load weights, optimizer, RNG and hidden state into `model` and `opt`; return the TrainState saved with
    them (its `best` when the checkpoint holds a best epoch's weights)."""
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
    best = None
    if "best_weights_epoch" in pos and (ck / BEST).exists():
        dev = next(model.parameters()).device
        best = (pos["best_weights_epoch"], load_file(str(ck / BEST), device=str(dev)))
    return TrainState(**{k: pos[k] for k in POSITION}, best=best)
