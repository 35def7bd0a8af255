"""Resolved configuration of a run: one frozen dataclass, presets as data, validation with flag names.

One concept, one name: the flag `--drop-mult`, the field `drop_mult` and the JSON key "drop_mult".
A stage's configuration is `preset defaults for that stage` updated with every flag the user gave.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import ConfigError

STAGES = ("pretrain", "finetune-lm", "finetune-clf")
BACKBONES = ("awd-lstm", "transformer", "hf")  # hf: a pretrained Hugging Face checkpoint (`ulmfit import-hf`)
TOKENIZERS = ("unigram", "bpe")
NORM_POSITIONS = ("pre", "post", "residual")
MAX_SEED = 2**32 - 1
# --metric: what chooses the classifier's epoch (auto: accuracy, a multi-label run's micro-F1, a regressor's MAE);
# which of them a task has is checked once its labels are read (tasks.selection_metric)
METRICS = ("auto", "accuracy", "macro_f1", "micro_f1", "valid_loss", "mae", "rmse")
WORD_TOKENIZER = "fastai-words"  # fastai's words: only from `ulmfit import-fastai`, then inherited by later stages
HF_TOKENIZER = "hf"  # a Hugging Face checkpoint's own tokenizer: only from `ulmfit import-hf`, then inherited

# Sizes fixed by the pretraining stage: later stages inherit them from the parent run, and giving them
# again is an error rather than a silent mismatch.
ARCH_FIELDS = (
    "backbone",
    "tokenizer",
    "vocab_size",
    "emb_sz",
    "n_hid",
    "n_layers",
    "n_heads",
    "norm",
    "norm_position",
    "attention",
    "backwards",
    "hf_config",
)


@dataclass(frozen=True)
class RunConfig:
    stage: str = "pretrain"
    preset: str = "small"
    backbone: str = "awd-lstm"
    # tokenizer (pretrain only)
    tokenizer: str = "bpe"  # deterministic; unigram ties come out in hash order (see tokenizer.py)
    vocab_size: int = 15000  # MultiFiT's 15k subword vocabulary
    tokenizer_sample_lines: int = 50_000  # lines of the corpus the tokenizer is trained on
    # AWD-LSTM sizes (pretrain only)
    emb_sz: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    # transformer only (emb_sz is the model width, n_hid the feed-forward width, n_layers the blocks)
    n_heads: int = 4
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_position: str = "pre"  # pre | post (Xiong et al. 2020) | residual (ResiDual, Xie et al. 2023)
    attention: str = "softmax"  # softmax | linear (Katharopoulos et al. 2020)
    backwards: bool = False  # read every text from its end (the paper's backward model, for ensembles)
    # hf only: the checkpoint's config.json (as transformers writes it), from `ulmfit import-hf`; the architecture
    hf_config: dict | None = None
    groups: int = 4  # hf only: the blocks are split into this many contiguous layer groups
    pooling: str = "auto"  # hf only: concat | mean | cls; auto: concat for a decoder, mean for an encoder
    new_lm_head: bool = False  # hf encoders without an MLM head: finetune-lm trains a fresh one (recorded)
    # regularisation (recipe section 1 and 3); every dropout ends in _p and is scaled by drop_mult
    drop_mult: float = 1.0
    wd: float = 0.01
    alpha: float = 2.0  # AR
    beta: float = 1.0  # TAR
    clip: float = 0.4
    # optimisation
    epochs: int = 1
    lr: float = 4e-3
    bs: int = 64
    bptt: int = 70
    beta1: float = 0.7
    beta2: float = 0.99
    lr_factor: float = 2.6  # discriminative rate divisor per layer group
    # finetune-clf: the head's rate is --lr times this. A fresh head starts from nothing, and Adam moves a weight by
    # about its rate a step, so at a rate fit for pretrained blocks (2e-4) it did not reach a 10:1 class prior in a
    # few hundred steps (bench/RESULTS.md 18, stop 27)
    head_lr_mult: float = 1.0
    cut_frac: float = 0.1
    ratio: float = 32.0
    gradual_unfreezing: bool = True  # finetune-clf only
    keep: str = "auto"  # best | last | auto: best with enough validation documents to rank them (stage_parts.selection)
    patience: int = 0  # stop after this many epochs without a better validation metric (0: never early)
    metric: str = "auto"  # finetune-clf: the validation metric that chooses the epoch kept (auto: the task's own)
    class_weights: str = "none"  # finetune-clf: none | balanced (inverse class frequency; multi-label: per label)
    # data
    valid_pct: float = 0.1
    max_tokens: int = 0  # 0 = use the whole corpus
    max_steps: int = 0  # LM stages: at most this many optimizer steps in all, spread over the epochs (0 = no cap)
    max_len: int = 20 * 72  # BPT3C: tokens of a document the classifier keeps (fastai SentenceEncoder)
    lin_ftrs: int = 50  # classifier head hidden size
    # finetune-clf task: string labels split on label_delim (or a list column) -> multi-label; regression ->
    # one numeric output (tasks.py)
    label_delim: str | None = None
    regression: bool = False
    seed: int = 42
    # hardware (not inherited by later stages)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (mixed precision, CUDA only)
    compile: bool = False  # torch.compile the model
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        """Check every field, collect every problem, and report them at once with the user's flag names."""
        problems = []

        def need(ok: bool, name: str, rule: str, value) -> None:
            if not ok:
                problems.append(f"`--{name.replace('_', '-')}` must be {rule}, got {value!r}")

        c = self
        need(c.backbone in BACKBONES, "backbone", " or ".join(BACKBONES), c.backbone)
        need(c.norm in ("layernorm", "rmsnorm"), "norm", "layernorm or rmsnorm", c.norm)
        need(c.norm_position in NORM_POSITIONS, "norm_position", "pre, post or residual", c.norm_position)
        need(c.attention in ("softmax", "linear"), "attention", "softmax or linear", c.attention)
        need(
            c.n_heads >= 1 and c.emb_sz % max(c.n_heads, 1) == 0,
            "n_heads",
            f"a divisor of --emb-sz ({c.emb_sz})",
            c.n_heads,
        )
        need(
            c.tokenizer in TOKENIZERS or (c.tokenizer in (WORD_TOKENIZER, HF_TOKENIZER) and c.stage != "pretrain"),
            "tokenizer",
            " or ".join(TOKENIZERS),
            c.tokenizer,
        )
        need(64 <= c.vocab_size <= 1_000_000, "vocab_size", "between 64 and 1000000", c.vocab_size)
        need(c.tokenizer_sample_lines >= 1, "tokenizer_sample_lines", ">= 1", c.tokenizer_sample_lines)
        for name in ("emb_sz", "n_hid", "n_layers", "bs", "bptt", "lin_ftrs"):
            need(getattr(c, name) >= 1, name, ">= 1", getattr(c, name))
        if c.stage == "finetune-clf":  # the head's batch-norm cannot train on a batch of one document
            need(c.bs >= 2, "bs", ">= 2 for finetune-clf (its batch-norm needs two documents a batch)", c.bs)
        need(c.epochs >= 0, "epochs", ">= 0", c.epochs)
        need(0 <= c.seed <= MAX_SEED, "seed", f"in [0, {MAX_SEED}] (numpy's seeds)", c.seed)
        for f in dataclasses.fields(c):  # NaN fails every comparison below; infinity would pass some of them
            v = getattr(c, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                need(False, f.name, "a finite number", v)
        need(c.keep in ("auto", "best", "last"), "keep", "auto, best or last", c.keep)
        need(c.patience >= 0, "patience", ">= 0", c.patience)
        need(c.metric in METRICS, "metric", " | ".join(METRICS), c.metric)
        need(c.class_weights in ("none", "balanced"), "class_weights", "none or balanced", c.class_weights)
        need(c.lr > 0, "lr", "> 0", c.lr)
        need(c.drop_mult >= 0, "drop_mult", ">= 0", c.drop_mult)
        for name in ("wd", "alpha", "beta", "clip"):
            need(getattr(c, name) >= 0, name, ">= 0", getattr(c, name))
        need(0 <= c.beta1 < 1, "beta1", "in [0, 1)", c.beta1)
        need(0 <= c.beta2 < 1, "beta2", "in [0, 1)", c.beta2)
        need(c.lr_factor >= 1, "lr_factor", ">= 1", c.lr_factor)
        need(c.head_lr_mult > 0, "head_lr_mult", "> 0", c.head_lr_mult)
        need(0 < c.cut_frac < 1, "cut_frac", "in (0, 1)", c.cut_frac)
        need(c.ratio >= 1, "ratio", ">= 1", c.ratio)
        need(0 <= c.valid_pct < 1, "valid_pct", "in [0, 1)", c.valid_pct)
        need(c.max_tokens >= 0, "max_tokens", ">= 0", c.max_tokens)
        need(c.max_steps >= 0, "max_steps", ">= 0", c.max_steps)
        need(c.precision in ("fp32", "bf16", "fp16"), "precision", "fp32, bf16 or fp16", c.precision)
        need(
            c.device in ("auto", "cpu", "cuda", "mps") or (c.device.startswith("cuda:") and c.device[5:].isdigit()),
            "device",
            "auto, cpu, cuda, cuda:N or mps",
            c.device,
        )
        need(c.max_len >= c.bptt, "max_len", f">= --bptt ({c.bptt})", c.max_len)
        need(c.label_delim is None or c.label_delim != "", "label_delim", "a non-empty string", c.label_delim)
        if c.regression and c.label_delim is not None:
            problems.append("`--regression` and `--label-delim` cannot be combined (numbers vs label lists)")
        need(c.groups >= 1, "groups", ">= 1", c.groups)
        need(c.pooling in ("auto", "concat", "mean", "cls"), "pooling", "auto, concat, mean or cls", c.pooling)
        if c.backbone == "hf":
            problems += _hf_problems(c)
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def _hf_problems(c: RunConfig) -> list[str]:
    """What a pretrained Hugging Face backbone cannot do: be pretrained here, read backwards, take the LSTM's
    AR/TAR, or read more tokens at once than its position embeddings allow."""
    if c.hf_config is None or c.stage == "pretrain":
        return ["`--backbone hf` is a pretrained checkpoint: make its run folder with `ulmfit import-hf MODEL`"]
    problems = []
    if c.backwards:
        problems.append("`--backwards` needs a model pretrained on reversed text; a Hub checkpoint reads forwards")
    if c.alpha or c.beta:
        problems.append("`--alpha`/`--beta` (AR/TAR) regularise the AWD-LSTM; give 0 for `--backbone hf`")
    if c.pooling == "cls" and not hf_is_encoder(c.hf_config):
        problems.append("`--pooling cls` reads an encoder's first token; a decoder's first token sees nothing else")
    positions = hf_positions(c.hf_config)
    if positions and c.stage == "finetune-clf" and c.max_len > positions:
        problems.append(f"`--max-len` must be at most the model's {positions} positions, got {c.max_len}")
    if positions and c.bptt > positions:
        problems.append(f"`--bptt` must be at most the model's {positions} positions, got {c.bptt}")
    return problems


def hf_is_encoder(hf_config: dict) -> bool:
    """A masked-LM encoder (BERT, RoBERTa, DistilBERT, ...), read both ways; else a causal decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return hf_config.get("model_type") in MODEL_FOR_MASKED_LM_MAPPING_NAMES


ROBERTA_STYLE = ("roberta", "xlm-roberta", "xlm-roberta-xl", "roberta-prelayernorm", "camembert", "data2vec-text")


def hf_positions(hf_config: dict) -> int | None:
    """How many tokens a Hugging Face model reads at once (None when its config does not say). RoBERTa-style
    models number positions from pad id + 1, so two of their position embeddings are never a token's."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(hf_config.get(key), int):
            offset = hf_config.get("pad_token_id", 1) + 1 if hf_config.get("model_type") in ROBERTA_STYLE else 0
            return hf_config[key] - offset
    return None


# Presets are data: per stage, the values that differ from RunConfig's defaults.
# tiny: the real code path in seconds on a CPU (CI, the demo); its classifier rate and dropout were chosen on
# TREC-6 and SST-2 together (bench/RESULTS.md 10); it reads as much of a document as the others (max_len 1440:
# cut to 128, IMDb lost 11 points; bench/RESULTS.md 14). paper: Howard & Ruder's sizes and dropouts.
# small: where a 60-minute, 2-core budget is best spent on TREC-6 (bench/RESULTS.md has the search).
PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "pretrain": dict(vocab_size=800, emb_sz=32, n_hid=64, n_layers=2, epochs=1, bs=16, bptt=32, lr=1e-2,
                         lr_factor=1.0, tokenizer_sample_lines=20_000),
        "finetune-lm": dict(epochs=1, bs=16, bptt=32, lr=4e-3),
        "finetune-clf": dict(epochs=16, bs=32, bptt=32, lr=4e-2, drop_mult=0.3),
    },
    "small": {
        "pretrain": dict(vocab_size=8000, emb_sz=200, n_hid=512, n_layers=3, epochs=1, bs=64, bptt=70, lr=1e-2,
                         lr_factor=1.0, drop_mult=0.1, max_tokens=5_000_000),
        "finetune-lm": dict(epochs=10, bs=32, bptt=70, lr=4e-3, drop_mult=0.5),
        "finetune-clf": dict(epochs=25, bs=32, bptt=70, lr=1e-2, drop_mult=0.5),
    },
    "paper": {
        "pretrain": dict(vocab_size=15000, emb_sz=400, n_hid=1152, n_layers=3, epochs=10, bs=64, bptt=70, lr=4e-3,
                         lr_factor=1.0),
        "finetune-lm": dict(epochs=15, bs=64, bptt=70, lr=4e-3),
        "finetune-clf": dict(epochs=15, bs=64, bptt=70, lr=1e-2, drop_mult=0.5),
    },
}  # fmt: skip


# What differs for the transformer, on top of the preset: Adam rates for transformers are lower, AR/TAR are
# LSTM regularisers, and the head count must divide the width. small and paper are shallow ResiDual (3 blocks):
# at 4 blocks it matched or beat Pre-LN at every warm-up, and Post-LN did not train (bench/RESULTS.md 13); tiny,
# the CI path, stays Pre-LN.
BACKBONE_PRESETS: dict[str, dict[str, dict]] = {
    "transformer": {
        "tiny": dict(n_heads=2, alpha=0.0, beta=0.0, lr_scale=0.5),
        "small": dict(n_heads=4, alpha=0.0, beta=0.0, lr_scale=0.1, norm_position="residual"),
        "paper": dict(n_heads=8, alpha=0.0, beta=0.0, lr_scale=0.1, norm_position="residual"),
    }
}


# A pretrained Hugging Face checkpoint: its sizes come from the checkpoint, so a preset only sets the schedule.
# Rates and Adam's betas are those usual for fine-tuning pretrained transformers (Hugging Face's Trainer: AdamW
# (0.9, 0.999), clipping at 1.0); the recipe's discriminative rates and STLR stay. bench/RESULTS.md 16 has the
# measurements behind them. The head is fresh, so it trains at 5x the rate (head_lr_mult): at 2e-4 alone it could
# not learn a 10:1 class prior (all-MiniLM-L6 on SST-2 made 10:1: 71.7 / 57.4% on two seeds against 87.7 / 87.6%
# with it, the majority class alone 90.9%), and on balanced TREC-6 and SST-2 it changed nothing beyond a seed's
# noise (RESULTS 18, stop 27). tiny is the CI path on tiny random models.
HF_PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "finetune-lm": dict(epochs=1, bs=8, bptt=32, lr=1e-3),
        "finetune-clf": dict(epochs=4, bs=16, bptt=32, lr=1e-3, max_len=128, groups=2),
    },
    "small": {
        "finetune-lm": dict(epochs=1, bs=8, bptt=128, lr=1e-4),
        "finetune-clf": dict(epochs=8, bs=16, bptt=128, lr=2e-4, max_len=512, head_lr_mult=5.0),
    },
    "paper": {
        "finetune-lm": dict(epochs=3, bs=16, bptt=256, lr=1e-4),
        "finetune-clf": dict(epochs=10, bs=16, bptt=256, lr=2e-4, max_len=512, head_lr_mult=5.0),
    },
}
HF_COMMON = dict(alpha=0.0, beta=0.0, beta1=0.9, beta2=0.999, clip=1.0, wd=0.01, drop_mult=1.0)


def resolve(stage: str, preset: str, flags: dict, parent: dict | None = None) -> RunConfig:
    """Preset defaults for `stage`, then the parent's architecture, then every flag the user gave (not None).

    `parent` is the parent run's resolved config (as JSON): sizes and tokenizer come from it, and a flag
    that contradicts it is an error, because the weights could not be loaded into a model of another shape.
    """
    if preset not in PRESETS:
        raise ConfigError(f"`--preset` must be one of {', '.join(PRESETS)}, got {preset!r}")
    values = dict(PRESETS[preset][stage])
    given = {k: v for k, v in flags.items() if v is not None}
    if parent is not None:
        for name in ARCH_FIELDS:
            if name in given and given[name] != parent[name]:
                raise ConfigError(
                    f"`--{name.replace('_', '-')}` is {given[name]!r} but the parent run was trained with "
                    f"{parent[name]!r}; drop the flag (later stages take it from the parent)"
                )
            values[name] = parent.get(name, getattr(RunConfig, name))  # runs older than a field get its default
    unknown = set(given) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    backbone = given.get("backbone") or values.get("backbone") or RunConfig.backbone
    if backbone == "hf" and stage != "pretrain":
        values.update(HF_COMMON, **HF_PRESETS[preset][stage])
        positions = hf_positions(values.get("hf_config") or {})
        for name in ("max_len", "bptt"):  # a preset never asks for more than the model reads; a flag may (and fails)
            if positions and name in values:
                values[name] = min(values[name], positions)
    over = dict(BACKBONE_PRESETS.get(backbone, {}).get(preset, {}))
    values["lr"] = values.get("lr", RunConfig.lr) * over.pop("lr_scale", 1.0)
    values.update({k: v for k, v in over.items() if parent is None or k not in ARCH_FIELDS})
    values.update(given)
    return RunConfig(stage=stage, preset=preset, **values).validate()


def flags(values: dict) -> dict:
    """The settings among a command's parameters (`locals()` of a typer function): what `resolve` takes."""
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"stage", "preset", "extra"}
    return {k: v for k, v in values.items() if k in names}


def from_dict(d: dict) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in d.items() if k in names})
