"""`ulmfit export RUN --hf DIR`: a classifier of a Hugging Face checkpoint trained with `--head hf`, as a folder that
transformers loads with AutoModelForSequenceClassification and AutoTokenizer, without custom code, and a model
card (README.md, with the YAML metadata the Hub reads).

The model is the family's *ForSequenceClassification: the run's body (an adapter run's adapters merged in) and its
head, which --head hf trained as exactly that family's head (models/hf.HF_HEADS). The tokenizer is the run's,
with a post-processor that puts the start token (and an encoder's [SEP]) around the text as predict does, so
`pipeline("text-classification")` gives predict's probabilities for a text that fits --max-len (a longer one
predict cuts to its head and tail; transformers would cut its tail, or refuse it).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import tasks
from ..config import from_dict
from ..errors import ConfigError
from ..runfolder import artifacts


def check(run: artifacts.Run) -> None:
    """Refuse, before any work, a run whose classifier transformers cannot express exactly."""
    cfg = from_dict(run.config)
    if cfg.long == "windows":  # checked first: such a run has the ulmfit head too, and windows are what it lacks
        raise ConfigError(
            f"{run.path}: it reads long documents as windows (--long windows), which a transformers "
            "*ForSequenceClassification cannot (it reads one window); use --onnx, whose graph reads the windows"
        )
    if cfg.backbone != "hf" or cfg.head != "hf":
        raise ConfigError(
            f"{run.path}: its head (--head {cfg.head}, --backbone {cfg.backbone}) has no exact transformers "
            "equivalent; train it with `finetune-clf --head hf` on an import-hf run to export it with --hf (or use "
            "--onnx)"
        )
    if tasks.task_of(run.manifest) == tasks.REGRESSION:
        raise ConfigError(f"{run.path}: a regressor's outputs are scaled by its labels' statistics; use --onnx")


def export_hf(run: artifacts.Run, out: Path, argv: list[str]) -> dict[str, Path]:
    """Write the folder; returns {what: path}."""
    from ..models.hf import head_module, hf_head_of, sequence_classifier
    from .predictor import load_classifier

    check(run)
    cfg, tok, clf = load_classifier(run, "cpu")
    task, classes = tasks.task_of(run.manifest), run.manifest["classes"]
    pad = clf.body.config.pad_token_id
    seq = sequence_classifier(
        cfg, len(classes), id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
        problem_type="multi_label_classification" if task == tasks.MULTI else "single_label_classification",
        pad_token_id=tok.start_id if pad is None else pad,
    )  # fmt: skip
    missing, unexpected = seq.base_model.load_state_dict(clf.body.state_dict(), strict=False)
    _, paths = hf_head_of(cfg)
    in_head = tuple(p[5:] + "." for p in paths if p.startswith("base."))  # BERT's pooler: the head's
    if unexpected or [k for k in missing if not k.startswith(in_head)]:
        raise ConfigError(f"{run.path}: the body does not fit {type(seq).__name__} ({missing or unexpected})")
    for path in paths:
        if path != "relu":
            head_module(seq, path).load_state_dict(getattr(clf.head, path.rpartition(".")[2]).state_dict())
    out.mkdir(parents=True, exist_ok=True)
    seq.eval().save_pretrained(str(out))
    _tokenizer(tok, seq.config.pad_token_id, cfg.max_len).save_pretrained(str(out))
    card = out / "README.md"
    card.write_text(model_card(run, cfg, type(seq).__name__, argv), encoding="utf-8")
    return {"folder": out, "model_card": card}


def _tokenizer(tok, pad_id: int, max_len: int):
    """The run's tokenizer as transformers' fast tokenizer, adding the start (and end) token as predict does."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    inner = tok.tok.__class__.from_str(tok.tok.to_str())
    start = inner.id_to_token(tok.start_id)
    special = [(start, tok.start_id)]
    template = f"{start} $A"
    if tok.end_id is not None:
        end = inner.id_to_token(tok.end_id)
        special.append((end, tok.end_id))
        template += f" {end}"
    inner.post_processor = processors.TemplateProcessing(single=template, special_tokens=special)
    return PreTrainedTokenizerFast(
        tokenizer_object=inner, pad_token=inner.id_to_token(pad_id), model_max_length=max_len, padding_side="right"
    )


def _chain(run: artifacts.Run) -> list[dict]:
    """The manifests of the run and its ancestors, nearest first, as far as they are still there."""
    m, chain = run.manifest, [run.manifest]
    while m.get("parent"):
        try:
            m = json.loads((Path(m["parent"]["path"]) / artifacts.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            break
        chain.append(m)
    return chain


def model_card(run: artifacts.Run, cfg, architecture: str, argv: list[str]) -> str:
    """README.md: the Hub's YAML metadata, then what the model is, how it was made and how well it does."""
    chain = _chain(run)
    m, imported = run.manifest, chain[-1].get("imported", {})
    base = imported.get("hub_id") or imported.get("path") or "unknown"
    final = {k: v for k, v in m.get("final", {}).items() if isinstance(v, float | int) and k != "epoch"}
    meta = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        **({"base_model": imported["hub_id"]} if imported.get("hub_id") else {}),  # the Hub takes only its own ids
        "license": imported.get("license") or "other",
        "tags": ["ulmfit", "text-classification", *(["lora"] if cfg.adapter != "none" else [])],
    }
    yaml = "\n".join(f"{k}: {json.dumps(v)}" for k, v in meta.items())
    data = "\n".join(
        f"- `{i['source']}`: {i.get('documents', '?')} documents, {i['fingerprint']}" for i in m.get("inputs", [])
    )
    settings = ", ".join(
        f"{k} {getattr(cfg, k)}"
        for k in (
            "epochs",
            "lr",
            "lr_factor",
            "head_lr_mult",
            "gradual_unfreezing",
            "groups",
            "max_len",
            "bs",
            "adapter",
            "lora_rank",
            "lora_alpha",
            "seed",
        )  # fmt: skip
    )
    commands = [*_commands(chain), "ulmfit " + " ".join(argv)]
    parts = [  # what this run's schedule did: a LoRA classifier, by default, trains all at once at one rate
        *(["discriminative learning rates"] if cfg.lr_factor != 1 else []),
        "slanted triangular rates",
        *(["gradual unfreezing"] if cfg.gradual_unfreezing else []),
    ]
    recipe = ", ".join(parts) + ("; LoRA adapters, merged" if cfg.adapter != "none" else "")
    return f"""---
{yaml}
---

# {run.path.name}

A {architecture} fine-tuned from `{base}` with ULMFiT's recipe (Howard & Ruder 2018: {recipe}) by
[ulmfit-cli](https://pypi.org/project/ulmfit-cli/).

## Use

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH_OR_REPO", top_k=None)
```

Classes: {", ".join(map(str, m["classes"]))}. Texts longer than {cfg.max_len} tokens: `ulmfit predict` keeps their
head and tail; transformers cuts or refuses them, so their probabilities can differ.

## Intended use and limits

Classifying texts like its training data into these classes. It learned only what its labelled rows show: check it
on your own data (`ulmfit evaluate`) before relying on it; it inherits the limits and biases of `{base}`.

## Training data

{data or "not recorded"}

## Recipe

{settings}

## Metrics

Validation (the epoch kept, {m.get("kept_epoch", "last")}): {
        ", ".join(f"{k} {v:.4g}" for k, v in final.items()) or "none (no validation data)"
    }.
Test: none recorded by the run (`ulmfit evaluate RUN TEST` measures it).

## How it was made

```
{chr(10).join(commands)}
```
"""


def _commands(chain: list[dict]) -> list[str]:
    """The stages' command lines, oldest first: each run's parent and inputs, its preset, and a flag for every
    setting that differs from what that preset gives from that parent (config.resolve), so each line reproduces
    its run's config."""
    out = []
    for m, parent in zip(reversed(chain), [None, *reversed(chain)]):
        if "imported" in m:
            out.append(f"ulmfit import-hf {m['imported'].get('hub_id') or m['imported'].get('path')}")
            continue
        words = [m["stage"], *([m["parent"]["path"]] if m.get("parent") else [])]
        words += [i["source"] for i in m.get("inputs", [])] + ["--preset", m["config"]["preset"]]
        out.append("ulmfit " + " ".join(words + _flags(m, parent)))
    return out


def _flags(m: dict, parent: dict | None) -> list[str]:
    from ..config import flag_of, resolve, settings_on

    cfg = m["config"]
    try:
        default = resolve(m["stage"], cfg["preset"], {}, None if parent is None else parent["config"])
    except ConfigError:
        return ["(settings: see the run's manifest.json)"]
    words = []
    for f in settings_on(m["stage"]):
        value = cfg.get(f.name, getattr(default, f.name))
        if value == getattr(default, f.name) or f.name == "backbone":
            continue
        decls = flag_of(f).decls
        name = decls[0] if decls else "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            on, _, off = name.partition("/")
            words.append(on if value else off)
        else:
            words += [name, str(value)]
    return words
