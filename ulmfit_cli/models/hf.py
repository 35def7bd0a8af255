"""A pretrained Hugging Face decoder (GPT-2, Llama, Mistral, Qwen, SmolLM, Gemma: any causal LM that transformers
builds without code from the checkpoint) as a ULMFiT backbone, from a run folder of `ulmfit import-hf`.

The architecture is the checkpoint's config.json, kept whole in the run's config (`hf_config`); transformers
builds the model from it (`from_config`: no code and no weights are fetched), and the run's safetensors fill it.

Layer groups, bottom up: the embeddings (token, and position where the model has them), the blocks split into
`--groups` contiguous groups, and the top (the final norm, with an untied LM head or the classifier's head). A
tied LM head is the embedding matrix and trains with the embeddings.

The classifier reads each document whole (up to `--max-len` tokens, cut by `cut_doc`: its head and its tail),
padded at the end with HF_PAD (-1): with causal attention a real token never sees a later pad, so no attention
mask is needed and the ids are those the model was trained on. It pools the paper's concat pooling over the last
hidden states: the last real token's state, and the max and mean over the real tokens except the first. The
first is the start token every document begins with (tokenizer.start_id); its state is the same for every
document and far larger than the others' (an attention sink), so on short texts it would dominate the mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..config import RunConfig

HF_PAD = -1  # not an id: the classifier masks it out and feeds id 0 in its place
HEAD_SHARE = 0.25  # of a document longer than --max-len, this share of the kept tokens comes from its start


def hf_config(cfg: RunConfig):
    """The transformers config object of a run (no network: built from the dict, never fetched)."""
    from transformers import AutoConfig

    d = dict(cfg.hf_config)
    model_type = d.pop("model_type")
    config = AutoConfig.for_model(model_type, **d)
    config.use_cache = False
    return config


def _quiet_transformers():
    """transformers' own logging and progress bars off: stderr carries our progress only."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def causal_lm(cfg: RunConfig):
    """The checkpoint's causal LM with fresh weights, in fp32 (its config may name bf16: training runs fp32 or
    autocast)."""
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    return AutoModelForCausalLM.from_config(hf_config(cfg), dtype=torch.float32, attn_implementation="sdpa")


def base_model(cfg: RunConfig):
    from transformers import AutoModel

    _quiet_transformers()
    return AutoModel.from_config(hf_config(cfg), dtype=torch.float32, attn_implementation="sdpa")


class HFLM(nn.Module):
    """tokens (B, T) -> (logits (B, T, V), None, None): the training loop's LM interface; the Nones stand for
    the LSTM's hidden states that AR/TAR would read (0 for this backbone, config.py)."""

    def __init__(self, cfg: RunConfig, model=None):
        super().__init__()
        self.hf = model if model is not None else causal_lm(cfg)
        self.n_groups = cfg.groups

    def forward(self, x):
        return self.hf(input_ids=x, use_cache=False).logits, None, None

    def reset(self):  # no state between batches
        pass


class HFClassifier(nn.Module):
    """The checkpoint's base model, concat pooling (see the module docstring) and the ULMFiT head."""

    def __init__(self, cfg: RunConfig, n_class: int):
        super().__init__()
        self.body = base_model(cfg)
        self.n_groups = cfg.groups
        c, p = self.body.config.hidden_size, 0.4 * cfg.drop_mult
        self.head = nn.Sequential(
            nn.BatchNorm1d(3 * c), nn.Dropout(p), nn.Linear(3 * c, cfg.lin_ftrs), nn.ReLU(inplace=True),
            nn.BatchNorm1d(cfg.lin_ftrs), nn.Dropout(0.1), nn.Linear(cfg.lin_ftrs, n_class),
        )  # fmt: skip

    def features(self, x):  # (B, T) padded at the end with HF_PAD -> (B, 3C)
        mask = x != HF_PAD
        h = self.body(input_ids=x.clamp(min=0), use_cache=False).last_hidden_state  # (B, T, C)
        return pool(h, mask)

    def forward(self, x):
        return (self.head(self.features(x).float()),)

    def reset(self):
        pass


def pool(h, mask):
    """[last real token, max, mean] over the real tokens after the first (the start token; a document of the
    start token alone pools it). h (B, T, C), mask (B, T) -> (B, 3C)."""
    lens = mask.sum(1).clamp(min=1)  # (B,)
    last = h[torch.arange(h.shape[0], device=h.device), lens - 1]
    pooled = mask.clone()
    pooled[:, 0] = lens == 1
    m = pooled.unsqueeze(-1)
    mx = h.masked_fill(~m, float("-inf")).max(1).values
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.cat([last, mx, mean], 1)


# ---- the backbone interface shared with awd_lstm and transformer ------------------------------------------


def build_lm(cfg: RunConfig, vocab_sz: int | None = None) -> HFLM:
    return HFLM(cfg)


def build_classifier(cfg: RunConfig, vocab_sz: int | None, n_class: int) -> HFClassifier:
    return HFClassifier(cfg, n_class)


def _block_groups(n_layers: int, groups: int) -> list[list[int]]:
    return [list(a) for a in np.array_split(np.arange(n_layers), min(n_layers, groups))]


def group_names(kind: str, cfg: RunConfig) -> list[str]:
    return _names(cfg.n_layers, cfg.groups)


def _names(n_layers: int, groups: int) -> list[str]:
    spans = _block_groups(n_layers, groups)
    blocks = [f"blocks{g[0] + 1}-{g[-1] + 1}" if len(g) > 1 else f"block{g[0] + 1}" for g in spans]
    return ["embed", *blocks, "head"]


def blocks_of(body) -> nn.ModuleList:
    """The decoder blocks of a transformers base model: its ModuleList as long as the config's layer count
    (`layers` in Llama-style models, `h` in GPT-2-style ones)."""
    n = body.config.num_hidden_layers
    found = [m for m in body.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not found:
        raise ValueError(f"{type(body).__name__}: no list of {n} blocks")
    return found[0]


def _groups(body, top: list, n_groups: int):
    """[embeddings, block groups..., the rest of the body + `top`] as lists of distinct parameters."""
    blocks = blocks_of(body)
    in_blocks = {id(p) for p in blocks.parameters()}
    embeds = [m for m in body.modules() if isinstance(m, nn.Embedding)]
    embed = list({id(p): p for m in embeds for p in m.parameters() if id(p) not in in_blocks}.values())
    seen = in_blocks | {id(p) for p in embed}
    rest = [p for p in body.parameters() if id(p) not in seen]  # the final norm (and anything else outside)
    seen |= {id(p) for p in rest}
    head = rest + [p for p in top if id(p) not in seen]  # a tied LM head is the embedding: trained there
    groups = [[p for i in g for p in blocks[i].parameters()] for g in _block_groups(len(blocks), n_groups)]
    return _names(len(blocks), n_groups), [embed, *groups, list({id(p): p for p in head}.values())]


def lm_groups(model: HFLM):
    return _groups(model.hf.base_model, list(model.hf.parameters()), model.n_groups)


def classifier_groups(model: HFClassifier):
    return _groups(model.body, list(model.head.parameters()), model.n_groups)


def diagnosed_layers(model) -> None:
    return None


def encoder_of_lm(lm: HFLM):
    return lm.hf.base_model


def encoder_of_classifier(clf: HFClassifier):
    return clf.body


def pad_batch(docs: list[np.ndarray], pad_id: int, bptt: int) -> np.ndarray:
    """Pad at the end with HF_PAD (see the module docstring); rows need no order."""
    out = np.full((len(docs), max(len(d) for d in docs)), HF_PAD, dtype=np.int64)
    for r, d in enumerate(docs):
        out[r, : len(d)] = d
    return out


def cut_doc(doc: np.ndarray, max_len: int) -> np.ndarray:
    """A document longer than `max_len` tokens keeps its start token, the next HEAD_SHARE of the budget and its
    last tokens (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": head + tail beat either alone
    on IMDb); a shorter one is kept whole."""
    if len(doc) <= max_len:
        return doc
    head = max(1, int(max_len * HEAD_SHARE))
    return np.concatenate([doc[:head], doc[len(doc) - (max_len - head) :]])
