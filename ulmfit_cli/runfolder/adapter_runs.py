"""Run folders of `--adapter lora` stages: small, holding the adapters and the classifier's head (a few MB), and
naming the full weights they adapt (the base) by content hash.

An adapter run's manifest has `adapter`: {"base": where the full weights were and their sha256, "chain": the
adapters to fold in, oldest first}. Its own adapter (and head) is the chain's last file, `adapter.safetensors`,
which the manifest's `weights` names (so the run's identity, its weights' hash, is its own). A classifier trained
from an LM adapter run copies that run's adapters into its folder (a few MB each): the folder then needs only the
base, which is found by its recorded path, or in a folder of the same name beside the run (the two moved or copied
together), or in the cache as `$ULMFIT_CACHE/bases/SHA256.safetensors`, and is used only when its sha256 is the
recorded one. A missing or changed base is one line naming
where it was looked for; never a silently different model.

Loading builds the plain model, loads the base, and folds each adapter in turn into it (LoRA merged: the readers
then see the architecture a full run has).

May import: the root modules, data, models, and artifacts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import RunConfig
from ..errors import RunFolderError, written
from . import artifacts

ADAPTER = "adapter.safetensors"
BASES = "bases"  # $ULMFIT_CACHE/bases/SHA256.safetensors: base weights kept by their hash
LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")


def is_adapter_run(run: artifacts.Run) -> bool:
    return isinstance(run.manifest.get("adapter"), dict)


def _file_name(i: int, n: int) -> str:
    """The chain's i-th of n adapter files in a run folder: the run's own (the last) and its ancestors'."""
    return ADAPTER if i == n - 1 else f"adapter-{i}.safetensors"


def record(parent: artifacts.Run, cfg: RunConfig, kind: str) -> dict:
    """The manifest's `adapter` record of a run trained with `cfg` (--adapter lora) from `parent`; `kind` is "lm"
    or "classifier" (which model its own adapter file is for)."""
    from ..data.tokenizer import file_sha256

    if is_adapter_run(parent):
        base, chain = parent.manifest["adapter"]["base"], list(parent.manifest["adapter"]["chain"])
    else:
        weights = parent.file("weights")
        base = {
            "sha256": file_sha256(weights), "path": str(weights.resolve()), "run": parent.path.resolve().name,
            "file": weights.name, "bytes": weights.stat().st_size,
        }  # fmt: skip
        chain = []
    chain.append({"kind": kind, **{f: getattr(cfg, f) for f in LORA_FIELDS}})
    return {"base": base, "chain": [{**el, "file": _file_name(i, len(chain))} for i, el in enumerate(chain)]}


def save(writer, model, parent: artifacts.Run, cfg: RunConfig, kind: str) -> dict:
    """Write the run's own adapter (its LoRA weights, and a classifier's head) and copy the parent's adapters;
    returns the manifest record."""
    from safetensors.torch import save_file

    rec = record(parent, cfg, kind)
    if is_adapter_run(parent):
        for src, el in zip(parent.manifest["adapter"]["chain"], rec["chain"]):
            artifacts.copy_file(_inside(parent, src["file"]), writer.path(el["file"]))
    trained = _trained(model, model.body if kind == "classifier" else model.hf)
    own = {k: v.detach().cpu().contiguous() for k, v in trained.items()}
    with written(writer.path(ADAPTER)):
        save_file(own, str(writer.path(ADAPTER)))
    return rec


def _trained(model, target) -> dict:
    """{name: tensor} of `model`'s state that an adapter run keeps: all but the frozen weights of `target`, the
    transformers model inside it that holds the adapters (so: the adapters, and a classifier's head with its
    batch-norm statistics)."""
    from ..models import adapters

    base = {id(t) for t in adapters.frozen(target).values()}
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if id(v) not in base}


def _inside(run: artifacts.Run, name: str) -> Path:
    p = (run.path / name).resolve()
    if not p.is_relative_to(run.path.resolve()) or not p.is_file():
        raise RunFolderError(f"{run.path}: {name} is missing; the adapter run folder is incomplete")
    return p


def find_base(run: artifacts.Run) -> Path:
    """The base weights of an adapter run: at the recorded path, or in the same-named folder beside the run; the
    one whose sha256 is the recorded one."""
    from ..data.tokencache import cache_root
    from ..data.tokenizer import file_sha256

    base = run.manifest["adapter"]["base"]
    places = [
        Path(base["path"]),
        run.path.resolve().parent / base["run"] / base["file"],
        cache_root() / BASES / f"{base['sha256']}.safetensors",
    ]
    changed = []
    for p in dict.fromkeys(places):
        if p.is_file():
            if p.stat().st_size == base["bytes"] and file_sha256(p) == base["sha256"]:
                return p
            changed.append(p)
    if changed:
        raise RunFolderError(
            f"{run.path}: the base weights at {changed[0]} changed since this adapter run was trained (sha256 "
            f"{base['sha256'][:12]}... expected); put back the run folder it was trained from, or train again"
        )
    raise RunFolderError(
        f"{run.path}: its base weights (sha256 {base['sha256'][:12]}..., run folder {base['run']!r}) are not at "
        f"{places[0]}, nor beside it at {places[1]}, nor in the cache at {places[2]}; put that run folder back at "
        "either place, or its weights file in the cache under that name"
    )


def _fold(target, el: dict, run: artifacts.Run, cfg: RunConfig, into) -> None:
    """Add chain element `el`'s adapters to `target` (the transformers model inside `into`), load its tensors
    into `into`, and merge them."""
    from safetensors.torch import load_file

    from ..models import adapters

    adapters.add_lora(target, dataclasses.replace(cfg, **{f: el[f] for f in LORA_FIELDS}))
    tensors = load_file(str(_inside(run, el["file"])))
    lacking = set(_trained(into, target)) - set(tensors)  # an adapter or head left as initialised: refused
    unexpected = into.load_state_dict(tensors, strict=False).unexpected_keys
    if unexpected or lacking:
        raise RunFolderError(
            f"{run.path}: {el['file']} does not fit the model ({len(unexpected)} unknown tensors, "
            f"{len(lacking)} missing, e.g. {sorted([*unexpected, *lacking])[0]}); the run folder is damaged"
        )
    adapters.merge(target)


def load_lm(lm, run: artifacts.Run, cfg: RunConfig):
    """`lm` (the backbone's LM, built from `cfg`) with the weights of the LM-stage run `run`."""
    if not is_adapter_run(run):
        artifacts.load_weights(lm, run.file("weights"))
        return lm
    artifacts.load_weights(lm, find_base(run))
    for el in run.manifest["adapter"]["chain"]:
        _fold(lm.hf, el, run, cfg, lm)
    return lm


def load_classifier(clf, run: artifacts.Run, cfg: RunConfig):
    """`clf` (the backbone's classifier, built from `cfg`) with the weights of the classifier run `run`: an adapter
    run's base and LM adapters go through the LM, whose body the classifier takes (stage_parts.build_classifier),
    then its own adapters and head."""
    from ..models import backbone

    if not is_adapter_run(run):
        artifacts.load_weights(clf, run.file("weights"))
        return clf
    bb = backbone(cfg.backbone)
    lm = bb.build_lm(cfg, None)
    artifacts.load_weights(lm, find_base(run))
    *lms, own = run.manifest["adapter"]["chain"]
    for el in lms:
        _fold(lm.hf, el, run, cfg, lm)
    bb.encoder_of_classifier(clf).load_state_dict(bb.encoder_of_lm(lm).state_dict())
    _fold(clf.body, own, run, cfg, clf)
    return clf


def sizes(run: artifacts.Run) -> dict:
    """Bytes of the run folder's files, and, for an adapter run, of the base it needs."""
    own = sum(p.stat().st_size for p in run.path.rglob("*") if p.is_file())
    if not is_adapter_run(run):
        return {"folder_bytes": own}
    base = run.manifest["adapter"]["base"]
    return {"folder_bytes": own, "base_bytes": base["bytes"], "base": base["path"], "base_sha256": base["sha256"]}
