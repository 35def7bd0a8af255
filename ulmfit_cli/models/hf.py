"""A pretrained Hugging Face checkpoint as a ULMFiT backbone, from a run folder of `ulmfit import-hf`: a decoder
(GPT-2, Llama, Mistral, Qwen, SmolLM, Gemma: any causal LM that transformers builds without code from the
checkpoint) or an encoder (BERT, RoBERTa, DistilBERT, ModernBERT: a masked LM, or a sentence encoder's bare body).
Which it is, the checkpoint's config says (hf_facts.is_encoder).

The architecture is the checkpoint's config.json, kept whole in the run's config (`hf_config`); transformers
builds the model from it (`from_config`: no code and no weights are fetched), and the run's safetensors fill it.

Layer groups, bottom up: the embeddings (token, and position where the model has them), the blocks split into
`--groups` contiguous groups, and the top (the final norm, with an untied LM head or the classifier's head). A
tied LM head is the embedding matrix and trains with the embeddings.

As a language model a decoder predicts the next token; an encoder is fine-tuned as a masked LM, its inputs masked
by BERT's rule as the stage reads them (lm_objective).

The classifier reads each document whole (up to `--max-len` tokens, cut by `cut_doc`: its head and its tail),
padded at the end with HF_PAD (-1); with `--long windows`, in overlapping windows of `--window` tokens, at most
`--bs` windows a forward pass of the body (windows.py), whose vectors are pooled into the document's. A decoder:
with causal attention a real token never sees a later pad, so no attention mask is needed and the ids are those the
model was trained on. It pools the paper's concat pooling over the last hidden states: the last real token's state,
and the max and mean over the real tokens except the first.
The first is the start token every document begins with (tokenizer.start_id); its state is the same for every
document and far larger than the others' (an attention sink), so on short texts it would dominate the mean. An
encoder reads both ways, so it always gets the attention mask; by default (`--pooling auto`) it pools the mean
over all its real tokens, as sentence encoders are read (`--pooling cls`: its [CLS] state).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..config import RunConfig
from ..hf_facts import is_encoder, window_ends
from . import adapters, windows
from .heads import classifier_head

HF_PAD = -1  # not an id: the classifier masks it out and feeds the model's pad id (or 0) in its place
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


def lm_model(cfg: RunConfig):
    """The checkpoint's language model with fresh weights, in fp32 (its config may name bf16: training runs fp32 or
    autocast): a causal LM, or an encoder with its masked-LM head."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    _quiet_transformers()
    auto = AutoModelForMaskedLM if is_encoder(cfg.hf_config) else AutoModelForCausalLM
    return auto.from_config(hf_config(cfg), dtype=torch.float32, attn_implementation="sdpa")


def base_model(cfg: RunConfig):
    """The checkpoint's body without any head (an encoder's pooler is left out: the ULMFiT head pools itself, and
    --head hf counts BERT's pooler as its head's)."""
    from transformers import AutoModel

    _quiet_transformers()
    body = AutoModel.from_config(hf_config(cfg), dtype=torch.float32, attn_implementation="sdpa")
    if getattr(body, "pooler", None) is not None:
        body.pooler = None
    return body


# --head hf: what each family's *ForSequenceClassification does after its base model, as (pooling, the modules of
# its head in order, by their names there). A decoder scores every token and reads the last real one's scores: the
# same as scoring the last real token's state (a linear map commutes with picking a row).
HF_HEADS = {
    "decoder": ("last", ("score",)),
    "bert": ("first", ("base.pooler", "dropout", "classifier")),  # the base model's pooler: dense, tanh on [CLS]
    "roberta": ("first", ("classifier",)),  # RobertaClassificationHead reads features[:, 0] itself
    "xlm-roberta": ("first", ("classifier",)),
    "distilbert": ("cls", ("pre_classifier", "relu", "dropout", "classifier")),
}


def hf_head_of(cfg: RunConfig) -> tuple[str, tuple[str, ...]]:
    return HF_HEADS["decoder" if not is_encoder(cfg.hf_config) else cfg.hf_config["model_type"]]


def sequence_classifier(cfg: RunConfig, n_class: int, **config):
    """The family's AutoModelForSequenceClassification with fresh weights (`config`: what to set on its config)."""
    from transformers import AutoModelForSequenceClassification

    _quiet_transformers()
    c = hf_config(cfg)
    c.num_labels = n_class
    for k, v in config.items():
        setattr(c, k, v)
    return AutoModelForSequenceClassification.from_config(c, dtype=torch.float32, attn_implementation="sdpa")


class HFHead(nn.Module):
    """transformers' classification head, its modules under their names in the *ForSequenceClassification model
    (`base.NAME`: its base model's; export --hf copies them back by these paths); `relu` stands for DistilBERT's
    ReLU between two of them."""

    def __init__(self, seq, paths: tuple[str, ...]):
        super().__init__()
        self.paths = paths
        for path in paths:
            if path != "relu":
                self.add_module(path.rpartition(".")[2], head_module(seq, path))

    def forward(self, x):
        for path in self.paths:
            x = torch.relu(x) if path == "relu" else getattr(self, path.rpartition(".")[2])(x)
        return x


def head_module(seq, path: str) -> nn.Module:
    """The module at `path` (HF_HEADS) of a *ForSequenceClassification model."""
    return getattr(seq.base_model, path[5:]) if path.startswith("base.") else getattr(seq, path)


class HFLM(nn.Module):
    """tokens (B, T) -> (logits (B, T, V), None, None): the training loop's LM interface; the Nones stand for
    the LSTM's hidden states that AR/TAR would read (0 for this backbone, config.py). A causal LM predicts the next
    token; an encoder's masked-LM head the masked ones (the stage masks them: lm_objective)."""

    def __init__(self, cfg: RunConfig, model=None):
        super().__init__()
        self.hf = model if model is not None else lm_model(cfg)
        self.n_groups = cfg.groups

    def forward(self, x):
        return self.hf(input_ids=x).logits, None, None

    def reset(self):  # no state between batches
        pass


POOLINGS = ("concat", "mean", "cls")


def pooling_of(cfg: RunConfig) -> str:
    """--pooling auto: the paper's concat pooling for a decoder, the mean for an encoder (sentence encoders are
    trained with it, and it does as well as [CLS] for BERT-style ones)."""
    if cfg.pooling != "auto":
        return cfg.pooling
    return "mean" if is_encoder(cfg.hf_config) else "concat"


class HFClassifier(nn.Module):
    """The checkpoint's base model, pooling (see the module docstring) and the ULMFiT head."""

    def __init__(self, cfg: RunConfig, n_class: int):
        super().__init__()
        self.encoder, self.pooling = is_encoder(cfg.hf_config), pooling_of(cfg)
        self.by_windows = cfg.long == "windows"
        self.window_args = (cfg.window, cfg.stride, cfg.window_pool, cfg.bs, window_ends(cfg.hf_config))
        self.body = base_model(cfg)
        if cfg.head == "hf":  # its modules taken from a fresh *ForSequenceClassification, built without blocks
            self.pooling, names = hf_head_of(cfg)
            self.head = HFHead(sequence_classifier(cfg, n_class, num_hidden_layers=0), names)
        else:
            self.head = self._head(cfg, n_class)
        self.n_groups = cfg.groups
        self.pad_id = self.body.config.pad_token_id or 0  # what the model reads in a pad's place (masked anyway)

    def _head(self, cfg: RunConfig, n_class: int):
        c = self.body.config.hidden_size * (3 if self.pooling == "concat" else 1)
        c *= 2 if self.by_windows and cfg.window_pool == "mean-max" else 1
        return classifier_head(cfg, c, n_class)

    def features(self, x, attention_mask: bool | None = None):  # (B, T) padded at the end with HF_PAD -> (B, F)
        """The documents' pooled vectors: read whole (`read`), or as windows (`read_windows`)."""
        if self.by_windows:
            return self.read_windows(x)
        return self.read(x, attention_mask)

    def read_windows(self, x):  # (B, T) padded at the end with HF_PAD -> (B, 2F) mean-max, (B, F) tokens
        """Each document's windows (windows.split_windows), the body on at most `--bs` of them at a time (only the
        documents' own windows, each chunk cut to its longest), pooled into the documents' vectors. While traced
        (export) the body reads every window of the batch at once: a graph has no loop, and the windows a document
        lacks are left out of its pooling all the same."""
        window, stride, how, per_pass, ends = self.window_args
        w, valid = windows.split_windows(x, window, stride, ends, HF_PAD)  # (B, W, L), (B, W)
        B, W, L = w.shape
        flat = w.reshape(B * W, L)
        lens = (flat != HF_PAD).sum(1)
        counts = (lens - 1).clamp(min=1) if not self.encoder else lens  # the tokens pool() reads of each window
        if torch.jit.is_tracing():
            v = self.read(flat, attention_mask=True)
        else:
            keep = valid.reshape(-1).nonzero().squeeze(1)
            got = torch.cat([self.read(flat[i][:, : int(lens[i].max())]) for i in keep.split(per_pass)])
            v = got.new_zeros(B * W, got.shape[1]).index_copy(0, keep, got)
        return windows.pool_windows(v.reshape(B, W, -1), counts.reshape(B, W), valid, how, self.pooling)

    def read(self, x, attention_mask: bool | None = None):  # (B, T) padded at the end with HF_PAD -> (B, C|3C)
        """An encoder always gets the attention mask (attention reads both ways: the pads must be masked out); a
        decoder only when `attention_mask` (export: transformers' mask-free path cannot be traced), since a real
        token never sees a later pad: the model's own fast path, same outputs."""
        mask = x != HF_PAD
        ids = x.masked_fill(~mask, self.pad_id)
        if self.encoder or attention_mask:
            h = self.body(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        else:
            h = self.body(input_ids=ids, use_cache=False).last_hidden_state
        return pool(h, mask, self.pooling, skip_first=not self.encoder)

    engine = None  # --engine onnx: an onnxruntime session standing in for the whole forward (onnx_engine)

    def forward(self, x):
        if self.engine is not None:
            return self.engine(x)
        return (self.head(self.features(x).float()),)

    def reset(self):
        pass


def pool(h, mask, how: str = "concat", skip_first: bool = True):
    """h (B, T, C), mask (B, T) -> concat: [last real token, max, mean] (B, 3C); mean (B, C); cls: the first
    token's state (B, C). With `skip_first` (decoders) max and mean leave out the first token, the start token (a
    document of the start token alone pools it)."""
    if how == "cls":
        return h[:, 0]
    if how == "first":  # (B, 1, C): RoBERTa's head reads [:, 0] itself
        return h[:, :1]
    lens = mask.sum(1).clamp(min=1)  # (B,)
    if how == "last":  # (B, C): a decoder's last real token
        return h[torch.arange(h.shape[0], device=h.device), lens - 1]
    pooled = mask.clone()
    if skip_first:
        pooled[:, 0] = lens == 1
    m = pooled.unsqueeze(-1)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "mean":
        return mean
    last = h[torch.arange(h.shape[0], device=h.device), lens - 1]
    mx = h.masked_fill(~m, float("-inf")).max(1).values
    return torch.cat([last, mx, mean], 1)


MASK_P, MASK_REPLACE, RANDOM_REPLACE = 0.15, 0.8, 0.1  # BERT's masking rule (Devlin et al. 2019)


def mask_tokens(x, mask_id: int, vocab_size: int, special: list[int], generator):
    """BERT's rule, drawn exactly as transformers' DataCollatorForLanguageModeling draws it (same generator, same
    masks): each token but `special` ones is chosen with probability 0.15; a chosen token becomes `mask_id` 80% of
    the time, a random token 10%, and stays 10%. Returns (inputs, labels), labels -100 where nothing is predicted."""
    labels = x.clone()
    prob = torch.full(labels.shape, MASK_P)
    prob.masked_fill_(torch.isin(x, torch.tensor(special, dtype=x.dtype)), 0.0)
    masked = torch.bernoulli(prob, generator=generator).bool()
    labels[~masked] = -100
    x = x.clone()
    replaced = torch.bernoulli(torch.full(labels.shape, MASK_REPLACE), generator=generator).bool() & masked
    x[replaced] = mask_id
    scaled = RANDOM_REPLACE / (1 - MASK_REPLACE)
    rand = torch.bernoulli(torch.full(labels.shape, scaled), generator=generator).bool() & masked & ~replaced
    words = torch.randint(vocab_size, labels.shape, dtype=torch.long, generator=generator)
    x[rand] = words[rand].to(x.dtype)
    return x, labels


def lm_objective(cfg: RunConfig, tok):
    """What an LM stage does to each (x, y) batch of its stream before the loss: nothing for a decoder (y is the
    next token); for an encoder, BERT's masking of x, with y the masked tokens (-100 elsewhere). Returns
    objective(batches, seed) -> batches; the same seed gives the same masks (validation, a resumed epoch)."""
    if not is_encoder(cfg.hf_config):
        return None
    if tok.mask_id is None:
        from ..errors import ConfigError

        raise ConfigError("the checkpoint's tokenizer has no mask token: masked-LM fine-tuning needs one")
    special = sorted({tok.start_id, *(() if tok.end_id is None else (tok.end_id,)), tok.mask_id})
    vocab = tok.get_vocab_size()

    def objective(batches, seed: int):
        g = torch.Generator().manual_seed(seed)
        for x, _ in batches:
            yield mask_tokens(x, tok.mask_id, vocab, special, g)

    return objective


# ---- the backbone interface (models.Backbone), shared with awd_lstm and transformer ------------------------


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
    """[embeddings, block groups..., the rest of the body + `top`] as lists of distinct parameters. With LoRA
    adapters in the body (--adapter lora), only the adapters train: each block group is its blocks' adapters, the
    embeddings' group is empty and the top keeps `top`'s parameters that are not the body's frozen weights (a
    classifier's head whole; an LM's adapters alone)."""
    if adapters.has_lora(body):
        names, groups = _groups_of_weights(body, top, n_groups)
        frozen = {id(p) for p in adapters.frozen(body).values()}
        return names, [[p for p in g if id(p) not in frozen] for g in groups]
    return _groups_of_weights(body, top, n_groups)


def _groups_of_weights(body, top: list, n_groups: int):
    blocks = blocks_of(body)
    in_blocks = {id(p) for p in blocks.parameters()}
    embeds = [m for m in body.modules() if isinstance(m, nn.Embedding)]
    if isinstance(getattr(body, "embeddings", None), nn.Module):  # an encoder's embeddings and their norm
        embeds.append(body.embeddings)
    embed = list({id(p): p for m in embeds for p in m.parameters() if id(p) not in in_blocks}.values())
    seen = in_blocks | {id(p) for p in embed}
    rest = [p for p in body.parameters() if id(p) not in seen]  # the final norm (and anything else outside)
    seen |= {id(p) for p in rest}
    head = rest + [p for p in top if id(p) not in seen]  # a tied LM head is the embedding: trained there
    groups = [[p for i in g for p in blocks[i].parameters()] for g in _block_groups(len(blocks), n_groups)]
    return _names(len(blocks), n_groups), [embed, *groups, list({id(p): p for p in head}.values())]


def lm_groups(model: HFLM):
    lora = adapters.has_lora(model.hf)  # then an LM trains its adapters alone: not an untied or masked-LM head
    top = [p for n, p in model.hf.named_parameters() if adapters.LORA_MARK in n or not lora]
    return _groups(model.hf.base_model, top, model.n_groups)


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
