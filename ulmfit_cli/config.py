"""Resolved configuration of a run: one frozen dataclass, presets as data, validation with flag names.

One concept, one name: the flag `--drop-mult`, the field `drop_mult` and the JSON key "drop_mult". Each setting
is declared once, as a RunConfig field with its help, panel, commands and rule (`setting`): the command line, the
`--config` keys, the reference page and `validate` all come from that declaration.
A stage's configuration is `preset defaults for that stage` updated with every flag the user gave.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


# ---- the settings' schema ---------------------------------------------------------------------------------
# Each setting is declared once, as a field of RunConfig below: its type and default (the field's), its help text,
# help panel, the commands that take it as a flag, and the rule its value must satisfy. The CLI builds each command's
# options from these declarations (cli/options.py: `takes_settings`), `--config` files check their keys against the
# options built from them, and `validate` checks every rule with the flag's name.

# help panels of `--help`
TRAIN = "Training"
DATA = "Data"
MODEL = "Model (pretrain only; later stages take it from the parent)"
HARDWARE = "Hardware"

# the commands that take settings; "learning-curve/lm" is learning-curve's LM stage, whose flags are --lm-NAME
PT, LM, CLF, LRF, LC, LC_LM, PIPE, DISTILL, TUNE = (
    "pretrain", "finetune-lm", "finetune-clf", "lr-find", "learning-curve", "learning-curve/lm", "pipeline", "distill",
    "tune",
)  # fmt: skip
SETTING_COMMANDS = (PT, LM, CLF, LRF, LC, LC_LM, PIPE, DISTILL, TUNE)
# commands that run a stage's training and so take every setting of that stage besides their own: distill trains a
# classifier; tune either stage (its --stage), so it offers both stages' settings and refuses the other one's
RUNS_STAGES = {DISTILL: (CLF,), TUNE: (LM, CLF)}
STAGE_SET = (PT, LM, CLF)


@dataclass(frozen=True)
class Rule:
    """What a value must be: `text` completes "`--flag` must be ...", `ok` tells whether a value is."""

    text: str
    ok: Callable[[Any], bool]


def one_of(*choices: str, text: str | None = None) -> Rule:
    return Rule(text or ", ".join(choices[:-1]) + f" or {choices[-1]}", lambda v: v in choices)


def at_least(lo: float) -> Rule:
    return Rule(f">= {lo}", lambda v: v >= lo)


def within(lo: float, hi: float) -> Rule:
    return Rule(f"in [{lo}, {hi}]", lambda v: lo <= v <= hi)


def above(lo: float) -> Rule:
    return Rule(f"> {lo}", lambda v: v > lo)


@dataclass(frozen=True)
class Needs:
    """The setting a setting only works with: `text` completes "`--flag` has no effect ...", `ok` tells whether a
    resolved RunConfig has it (a flag given where it does nothing is a warning, `inert`)."""

    text: str
    ok: Callable[[Any], bool]


LONG_WINDOWS = Needs("without --long windows", lambda c: c.long == "windows")
LORA = Needs("without --adapter lora", lambda c: c.adapter == "lora")
CONTRASTIVE = Needs("with --contrastive-steps 0", lambda c: c.contrastive_steps != 0)


@dataclass(frozen=True)
class Flag:
    """How a RunConfig field is offered on the command line (`field(metadata={"flag": Flag(...)})`)."""

    help: str
    on: tuple[str, ...]  # the commands (SETTING_COMMANDS) that take it
    panel: str = TRAIN
    decls: tuple[str, ...] = ()  # flag names when not --the-field-name (a switch's on/off pair)
    helps: dict = field(default_factory=dict)  # command: help text where it reads otherwise there
    rule: Rule | None = None  # what `validate` checks; rules between fields are written out in `validate`
    needs: Needs | None = None  # another setting without which this one does nothing
    show_default: bool = True

    def help_on(self, command: str) -> str:
        also = RUNS_STAGES.get(command, ())
        return next((self.helps[c] for c in (command, *also) if c in self.helps), self.help)


def setting(default, help: str, on: tuple[str, ...], **flag) -> Any:
    """A RunConfig field that is a setting: its default and how the command line offers it."""
    return field(default=default, metadata={"flag": Flag(help, on, **flag)})


def flag_of(f: dataclasses.Field) -> Flag | None:
    return f.metadata.get("flag")


def settings_on(command: str) -> list[dataclasses.Field]:
    """The RunConfig fields `command` takes as flags, in declaration order (a command that runs a stage's training
    takes that stage's too: RUNS_STAGES)."""
    also = RUNS_STAGES.get(command, ())
    return [f for f in dataclasses.fields(RunConfig) if flag_of(f) and {command, *also} & set(flag_of(f).on)]


def inert(cfg: RunConfig, names) -> list[str]:
    """A line for each setting in `names` (given by the user) that the resolved `cfg` leaves without effect, because
    the setting it `needs` is not set: a flag that silently did nothing is worth a warning, not an error (a
    `--config` file of every setting, as `info --config` writes one, names them all)."""
    fields = {f.name: flag_of(f) for f in dataclasses.fields(RunConfig)}
    out = []
    for name in names:
        flag = fields.get(name)
        if flag is not None and flag.needs is not None and not flag.needs.ok(cfg):
            out.append(f"`--{name.replace('_', '-')}` has no effect {flag.needs.text}")
    return out


_RATE = "Peak learning rate of the top layer group (finetune-clf --adapter lora: 5x the preset's unless given)."
_LABEL_DELIM = "Multi-label: split each label on this string."


def _is_device(v: str) -> bool:
    return v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())


@dataclass(frozen=True)
class RunConfig:
    stage: str = "pretrain"
    preset: str = "small"
    backbone: str = setting(
        "awd-lstm", "awd-lstm (default) | transformer.", (PT, LM, CLF, LRF), panel=MODEL,
        rule=one_of(*BACKBONES, text=" or ".join(BACKBONES)),
    )  # fmt: skip
    # tokenizer (pretrain only); bpe is deterministic, unigram ties come out in hash order (see tokenizer.py)
    tokenizer: str = setting("bpe", "bpe (repeatable) | unigram.", (PT, LRF), panel=MODEL)
    vocab_size: int = setting(  # MultiFiT's 15k subword vocabulary
        15000, "Subword vocabulary size.", (PT, LRF), panel=MODEL,
        rule=Rule("between 64 and 1000000", lambda v: 64 <= v <= 1_000_000),
    )  # fmt: skip
    tokenizer_sample_lines: int = setting(
        50_000, "Corpus lines the tokenizer is trained on.", (PT,), panel=MODEL, rule=at_least(1)
    )
    # AWD-LSTM sizes (pretrain only)
    emb_sz: int = setting(400, "Embedding size.", (PT, LRF), panel=MODEL, rule=at_least(1))
    n_hid: int = setting(1152, "LSTM hidden size.", (PT, LRF), panel=MODEL, rule=at_least(1))
    n_layers: int = setting(3, "LSTM layers.", (PT, LRF), panel=MODEL, rule=at_least(1))
    # transformer only (emb_sz is the model width, n_hid the feed-forward width, n_layers the blocks)
    n_heads: int = setting(4, "Transformer: attention heads.", (PT,), panel=MODEL)
    norm: str = setting(
        "layernorm", "Transformer: layernorm | rmsnorm.", (PT,), panel=MODEL, rule=one_of("layernorm", "rmsnorm")
    )
    norm_position: str = setting(  # post: Xiong et al. 2020; residual: ResiDual, Xie et al. 2023
        "pre", "Transformer: pre (Pre-LN) | post (Post-LN) | residual (ResiDual).", (PT,), panel=MODEL,
        rule=one_of(*NORM_POSITIONS),
    )  # fmt: skip
    attention: str = setting(  # linear: Katharopoulos et al. 2020
        "softmax", "Transformer: softmax | linear.", (PT,), panel=MODEL, rule=one_of("softmax", "linear")
    )
    backwards: bool = setting(  # the paper's backward model, for ensembles
        False, "Read texts from the end (the paper's backward model; later stages take it from the parent).",
        STAGE_SET, panel=MODEL, decls=("--backwards/--forwards",),
    )  # fmt: skip
    # hf only: the checkpoint's config.json (as transformers writes it), from `ulmfit import-hf`; the architecture
    hf_config: dict | None = None
    # regularisation (recipe section 1 and 3); every dropout ends in _p and is scaled by drop_mult
    drop_mult: float = setting(1.0, "Scales every dropout.", (PT, LM, CLF, LRF, LC), rule=at_least(0))
    wd: float = setting(0.01, "Decoupled weight decay.", (PT, LM, CLF, LRF, LC), rule=at_least(0))
    alpha: float = setting(2.0, "AR regularisation.", (PT, LM), rule=at_least(0))
    beta: float = setting(1.0, "TAR regularisation.", (PT, LM), rule=at_least(0))
    clip: float = setting(0.4, "Gradient norm clip (0 = none).", (PT, LM, CLF, LRF), rule=at_least(0))
    # optimisation
    epochs: int = setting(1, "Epochs.", (PT, LM, CLF, LC, LC_LM), helps={LC_LM: "LM epochs."}, rule=at_least(0))
    lr: float = setting(4e-3, _RATE, (PT, LM, CLF, LC, LC_LM), helps={LC_LM: "LM peak learning rate."}, rule=above(0))
    bs: int = setting(
        64, "Batch size.", (PT, LM, CLF, LRF, LC, LC_LM), helps={LC_LM: "LM batch size (rows)."}, rule=at_least(1)
    )
    bptt: int = setting(70, "Tokens per backpropagation window.", (PT, LM, CLF, LRF, LC), rule=at_least(1))
    beta1: float = setting(0.7, "Adam beta1.", STAGE_SET, rule=Rule("in [0, 1)", lambda v: 0 <= v < 1))
    beta2: float = setting(0.99, "Adam beta2.", STAGE_SET, rule=Rule("in [0, 1)", lambda v: 0 <= v < 1))
    lr_factor: float = setting(  # the discriminative rates' divisor
        2.6,
        "Each lower layer group's rate is the one above / this (finetune-clf --adapter lora: 1 unless given).",
        (PT, LM, CLF, LRF),
        rule=at_least(1),
    )
    # finetune-clf: the head's rate is --lr times this. A fresh head starts from nothing, and Adam moves a weight by
    # about its rate a step, so at a rate fit for pretrained blocks (2e-4) it did not reach a 10:1 class prior in a
    # few hundred steps
    head_lr_mult: float = setting(
        1.0, "The classifier head's rate is --lr times this (the groups below keep theirs): a fresh head learns from "
        "zero, a pretrained checkpoint's blocks need small rates. Preset: 1; 5 for --backbone hf (small, paper).",
        (CLF, LRF), rule=above(0),
    )  # fmt: skip
    cut_frac: float = setting(
        0.1, "STLR: share of a phase spent warming up.", STAGE_SET, rule=Rule("in (0, 1)", lambda v: 0 < v < 1)
    )
    ratio: float = setting(32.0, "STLR: peak rate / lowest rate.", STAGE_SET, rule=at_least(1))
    gradual_unfreezing: bool = setting(
        True, "Unfreeze one layer group per epoch from the top (with --adapter lora: off unless given).", (CLF,),
        decls=("--gradual-unfreezing/--no-gradual-unfreezing",),
    )  # fmt: skip
    keep: str = setting(  # auto: best with enough validation documents to rank them (stage_parts.selection)
        "auto", "Publish the weights of the best validation epoch (best by --metric, or an LM's validation loss) or "
        "of the last one (last); auto: best when the classifier has at least 200 validation documents to choose by, "
        "else last. Without validation data: last. [default: auto]",
        STAGE_SET, rule=one_of("auto", "best", "last"), show_default=False,
    )  # fmt: skip
    patience: int = setting(  # 0: never early
        0, "Stop after this many epochs without a better validation metric, counted once every layer group trains "
        "(0: run every epoch). [default: 0]", STAGE_SET, rule=at_least(0), show_default=False,
    )  # fmt: skip
    metric: str = setting(  # which of them a task has is checked once its labels are read (tasks.selection_metric)
        "auto", "The validation metric that chooses the epoch kept and the early stop: accuracy | macro_f1 | micro_f1 "
        "| valid_loss (classifiers), mae | rmse (--regression); auto: accuracy, a multi-label run's micro_f1, a "
        "regressor's mae. macro_f1 for imbalanced classes. [default: auto]",
        (CLF,), rule=one_of(*METRICS, text=" | ".join(METRICS)), show_default=False,
    )  # fmt: skip
    class_weights: str = setting(
        "none", "none | balanced: weigh each class's loss by its inverse frequency in the training data (multi-label: "
        "each label's positives by negatives/positives), for imbalanced classes. [default: none]",
        (CLF,), rule=one_of("none", "balanced"), show_default=False,
    )  # fmt: skip
    # --backbone hf only
    groups: int = setting(
        4, "--backbone hf: split the checkpoint's blocks into this many layer groups (between the embeddings and the "
        "top).", (LM, CLF, LRF), rule=at_least(1),
    )  # fmt: skip
    pooling: str = setting(
        "auto", "--backbone hf: concat (last token, max, mean; a decoder's default) | mean (an encoder's default) | "
        "cls (an encoder's first token).", (CLF, LRF), rule=one_of("auto", "concat", "mean", "cls"),
    )  # fmt: skip
    head: str = setting(  # hf.HF_HEADS: the families whose head transformers defines and `export --hf` writes
        "auto", "The classifier's head on the pooled features: ulmfit (the paper's: batch norm, dropout, --lin-ftrs "
        "hidden units) | linear (one layer on the normalized features; trained alone after the contrastive step, "
        "it is fitted as a logistic regression, as SetFit fits its head) | hf (--backbone hf: the head and pooling "
        "of the family's *ForSequenceClassification: a decoder's last token, BERT's pooler, ...; `ulmfit export "
        "--hf` needs it) | auto: linear where the few-labels recipe trains the head alone, else ulmfit.",
        (CLF,), rule=one_of("auto", "ulmfit", "linear", "hf"),
    )  # fmt: skip
    # --backbone hf only: documents longer than the model reads at once (models/hf.py: split_windows)
    long: str = setting(
        "head-tail", "--backbone hf: how a document is read: head-tail (its first and last tokens, --max-len in all, "
        "in one pass) | windows (its --max-len tokens, head and tail as with head-tail, in overlapping windows of "
        "--window tokens, each pooled as --pooling pools a document, then pooled together by --window-pool; "
        "--max-len may exceed the model's positions).", (CLF, LRF), rule=one_of("head-tail", "windows"),
    )  # fmt: skip
    window: int = setting(
        256, "--long windows: tokens of a window, the start token (and an encoder's end token) each window repeats "
        "included; at most the model's positions. Preset: 64 for tiny.", (CLF, LRF), rule=at_least(3),
        needs=LONG_WINDOWS,
    )  # fmt: skip
    stride: int = setting(
        192, "--long windows: the document's tokens from one window's start to the next's; at most what a window "
        "holds of them (--window less its start and end tokens), the windows overlapping by the rest. Preset: 48 for "
        "tiny.", (CLF, LRF), rule=at_least(1), needs=LONG_WINDOWS,
    )  # fmt: skip
    window_pool: str = setting(
        "tokens", "--long windows: how the windows' vectors make the document's: tokens (--pooling over every "
        "window's tokens at once, as BPT3C pools a document read in chunks: the last window's last token, the max "
        "and the mean) | mean-max (the mean and the max of the windows' pooled vectors, side by side).", (CLF, LRF),
        rule=one_of("mean-max", "tokens"), needs=LONG_WINDOWS,
    )  # fmt: skip
    new_lm_head: bool = setting(  # hf encoders without an MLM head: finetune-lm trains a fresh one (recorded)
        False, "An encoder checkpoint without a masked-LM head: train a fresh one, tied to its input embeddings.",
        (LM,), decls=("--new-lm-head",), show_default=False,
    )  # fmt: skip
    # --backbone hf only: LoRA adapters (Hu et al. 2021) through PEFT (models/adapters.py)
    adapter: str = setting(
        "none", "--backbone hf: none (train the weights themselves) | lora (train low-rank adapters of the blocks and "
        "the classifier's head; the checkpoint's weights stay frozen).", (LM, CLF), rule=one_of("none", "lora"),
    )  # fmt: skip
    lora_rank: int = setting(8, "--adapter lora: the adapters' rank r.", (LM, CLF), rule=at_least(1), needs=LORA)
    lora_alpha: float = setting(
        16.0, "--adapter lora: the adapters' scale is alpha / r.", (LM, CLF), rule=above(0), needs=LORA
    )
    lora_dropout: float = setting(
        0.05, "--adapter lora: dropout on the adapters' input.", (LM, CLF), rule=within(0, 1), needs=LORA
    )
    lora_targets: str = setting(
        "auto", "--adapter lora: comma-separated names of the layers that get an adapter; auto: PEFT's choice for the "
        "family (the attention's query and value projections), else every linear layer; all-linear: every linear "
        "layer of the blocks (attention and feed-forward).", (LM, CLF), needs=LORA,
    )  # fmt: skip
    # data
    valid_pct: float = setting(
        0.1, "Share held out for validation (0: none). finetune-clf with few labelled rows (--contrastive-steps -1), "
        "and distill with few --train rows, hold out none.", (PT, LM, CLF, LC), panel=DATA,
        rule=Rule("in [0, 1)", lambda v: 0 <= v < 1),
    )  # fmt: skip
    max_tokens: int = setting(
        0, "Use at most this many tokens of the corpus (0 = all).", (PT, LM), panel=DATA, rule=at_least(0)
    )
    max_steps: int = setting(  # LM stages
        0, "At most this many optimizer steps in all, spread over the epochs (0 = no cap).", (PT, LM, LC_LM),
        helps={LC_LM: "LM: at most this many steps."}, rule=at_least(0),
    )  # fmt: skip
    min_steps: int = setting(  # a few labelled rows make a handful of steps an epoch: the schedule is set in steps
        0, "Train at least this many optimizer steps in all: with few training rows, each epoch reads them "
        "several times (0: once).", (CLF, LC), rule=at_least(0),
    )  # fmt: skip
    temperature: float = setting(  # Hinton et al. 2015 (training/distill.py)
        2.0, "The temperature the teacher's probabilities and the student's are compared at: above 1, more of the "
        "teacher's doubt between classes passes on.", (DISTILL,), rule=above(0),
    )  # fmt: skip
    hard_weight: float = setting(
        0.5, "The share of --train's labels in the loss of their rows, the teacher's answers having the rest (0: the "
        "teacher's alone, 1: the labels alone).", (DISTILL,), rule=within(0, 1),
    )  # fmt: skip
    min_confidence: float = setting(  # self-training keeps the teacher's confident answers (training/distill.py)
        0.0, "Learn only the texts the teacher answers with at least this probability (its likeliest class; "
        "every label's, multi-label): self-training from a few-label teacher keeps its confident part (0: all).",
        (DISTILL,), rule=within(0, 1),
    )  # fmt: skip
    contrastive_steps: int = setting(  # SetFit's idea (training/contrastive.py)
        0, "Before the classifier, train the body this many steps to pull texts of one class together and push "
        "texts of two classes apart (pairs of the labelled rows, --bs pairs a step; single-label tasks, transformer "
        "and hf backbones). -1: auto: as many pairs as SetFit draws (at most 500 steps) when the classes have at "
        "most 64 rows each on average, then one epoch of the head alone (--epochs 1); none with more rows; 0: none. "
        "Preset: -1 "
        "for --backbone hf (small, paper), else 0.", (CLF, LC), rule=at_least(-1),
    )  # fmt: skip
    contrastive_lr: float = setting(  # SetFit trains every layer at one rate (2e-5); 5e-5 measured best here
        5e-5, "The contrastive step's peak rate, the same for every layer group of the body (one slanted "
        "triangular cycle).", (CLF, LC), rule=above(0), needs=CONTRASTIVE,
    )  # fmt: skip
    max_len: int = setting(  # BPT3C (fastai's SentenceEncoder)
        20 * 72, "BPT3C: tokens of a document kept.", (CLF, LRF, LC), helps={LC: "BPT3C: tokens kept."}
    )
    lin_ftrs: int = setting(50, "Hidden units of the classifier head.", (CLF,), rule=at_least(1))
    # the task: string labels split on label_delim (or a list column) -> multi-label; regression -> one numeric
    # output (tasks.py)
    label_delim: str | None = setting(
        None, _LABEL_DELIM[:-1] + " (e.g. ' '); a list column is multi-label already.", (CLF, LRF, LC), panel=DATA,
        helps={LRF: _LABEL_DELIM, LC: _LABEL_DELIM},
    )  # fmt: skip
    regression: bool = setting(
        False, "Numeric labels: train a regressor (MSE).", (CLF, LRF, LC), panel=DATA, decls=("--regression",),
        helps={LRF: "Numeric labels.", LC: "Numeric labels (error = test MAE)."},
    )  # fmt: skip
    seed: int = setting(
        42, "Random seed (CPU runs repeat exactly).", (PT, LM, CLF, LRF, LC, PIPE),
        rule=Rule(f"in [0, {MAX_SEED}] (numpy's seeds)", lambda v: 0 <= v <= MAX_SEED),
    )  # fmt: skip
    # hardware (not inherited by later stages)
    device: str = setting(
        "auto", "auto | cpu | cuda | cuda:N | mps (auto: a GPU when there is one).", (PT, LM, CLF, LRF, LC, PIPE),
        panel=HARDWARE, rule=Rule("auto, cpu, cuda, cuda:N or mps", _is_device),
    )  # fmt: skip
    precision: str = setting(  # mixed precision, CUDA only
        "fp32", "fp32 | bf16 | fp16 (mixed precision on CUDA GPUs).", (PT, LM, CLF, LRF, LC, PIPE), panel=HARDWARE,
        rule=one_of("fp32", "bf16", "fp16"),
    )  # fmt: skip
    compile: bool = setting(
        False, "torch.compile the model.", STAGE_SET, panel=HARDWARE, decls=("--compile/--no-compile",)
    )
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
        for f in dataclasses.fields(c):  # each setting's own rule (its declaration above)
            v = getattr(c, f.name)
            if isinstance(v, float) and not math.isfinite(v):  # NaN fails every comparison; infinity passes some
                need(False, f.name, "a finite number", v)
            elif (flag := flag_of(f)) is not None and flag.rule is not None and v is not None:
                need(flag.rule.ok(v), f.name, flag.rule.text, v)
        # rules between settings
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
        if c.stage == "finetune-clf":  # the head's batch-norm cannot train on a batch of one document
            need(c.bs >= 2, "bs", ">= 2 for finetune-clf (its batch-norm needs two documents a batch)", c.bs)
        need(c.max_len >= c.bptt, "max_len", f">= --bptt ({c.bptt})", c.max_len)
        need(c.label_delim is None or c.label_delim != "", "label_delim", "a non-empty string", c.label_delim)
        if c.contrastive_steps > 0 and (c.regression or c.label_delim is not None):
            problems.append("`--contrastive-steps` pairs texts of one class; it needs single-label classes")
        if c.contrastive_steps > 0 and c.backbone == "awd-lstm":
            problems.append("`--contrastive-steps` needs --backbone transformer or hf (the AWD-LSTM has no such step)")
        if c.regression and c.label_delim is not None:
            problems.append("`--regression` and `--label-delim` cannot be combined (numbers vs label lists)")
        if c.adapter != "none" and c.backbone != "hf":
            problems.append(f"`--adapter {c.adapter}` adapts a Hugging Face checkpoint; it needs --backbone hf")
        if c.long == "windows" and c.backbone != "hf":
            problems.append("`--long windows` reads a Hugging Face checkpoint's windows; it needs --backbone hf")
        if c.head == "hf":
            problems += _hf_head_problems(c)
        if c.head == "linear" and c.backbone == "awd-lstm":
            problems.append("`--head linear` needs --backbone transformer or hf (the AWD-LSTM keeps the paper's head)")
        if c.adapter != "none" and c.new_lm_head:
            problems.append("`--new-lm-head` trains a fresh head, which `--adapter lora` would leave frozen: drop one")
        if c.backbone == "hf":
            problems += _hf_problems(c)
        if problems:
            raise ConfigError("; ".join(problems))
        return self


HF_HEAD_ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert")  # hf.HF_HEADS; every decoder has `score`


def _hf_head_problems(c: RunConfig) -> list[str]:
    """`--head hf`: a Hugging Face checkpoint of a family whose head is known, pooled its own way, no pairs."""
    if c.backbone != "hf" or c.hf_config is None:
        return ["`--head hf` is the head transformers defines for a checkpoint: it needs --backbone hf"]
    from .hf_facts import is_encoder

    problems = []
    if is_encoder(c.hf_config) and c.hf_config.get("model_type") not in HF_HEAD_ENCODERS:
        problems.append(
            f"`--head hf` knows the encoder heads of {', '.join(HF_HEAD_ENCODERS)}, not "
            f"{c.hf_config.get('model_type')!r}: use --head ulmfit"
        )
    if c.pooling != "auto":
        problems.append("`--pooling` chooses the ulmfit head's pooling; `--head hf` pools as transformers does")
    if c.contrastive_steps > 0:
        problems.append("`--contrastive-steps` trains the ulmfit head's pooled features; use it with --head ulmfit")
    if c.long == "windows":
        problems.append("`--long windows` pools windows into the ulmfit head's features; use it with --head ulmfit")
    return problems


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
    from . import hf_facts  # transformers' model tables, imported only for an hf run

    if c.pooling == "cls" and not hf_facts.is_encoder(c.hf_config):
        problems.append("`--pooling cls` reads an encoder's first token; a decoder's first token sees nothing else")
    positions = hf_facts.positions(c.hf_config)
    windows = c.long == "windows"
    if positions and c.stage == "finetune-clf" and c.max_len > positions and not windows:
        problems.append(
            f"`--max-len` must be at most the model's {positions} positions, got {c.max_len} (--long windows reads "
            "longer documents)"
        )
    if windows and positions and c.window > positions:
        problems.append(f"`--window` must be at most the model's {positions} positions, got {c.window}")
    ends = hf_facts.window_ends(c.hf_config)
    if windows and c.window > ends and c.stride > c.window - ends:
        problems.append(
            f"`--stride` must be at most --window less the {ends} start/end token(s) each window repeats "
            f"({c.window - ends}), got {c.stride}"
        )
    if positions and c.bptt > positions:
        problems.append(f"`--bptt` must be at most the model's {positions} positions, got {c.bptt}")
    return problems


# Presets are data: per stage, the values that differ from RunConfig's defaults.
# tiny: the real code path in seconds on a CPU (CI, the demo); its classifier rate and dropout were chosen on
# TREC-6 and SST-2 together; it reads as much of a document as the others (max_len 1440: cut to 128, IMDb lost
# 11 points). paper: Howard & Ruder's sizes and dropouts. small: the sizes and rates a search found best for a
# 60-minute, 2-core budget on TREC-6.
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
# at 4 blocks it matched or beat Pre-LN at every warm-up, and Post-LN did not train; tiny, the CI path, stays
# Pre-LN.
BACKBONE_PRESETS: dict[str, dict[str, dict]] = {
    "transformer": {
        "tiny": dict(n_heads=2, alpha=0.0, beta=0.0, lr_scale=0.5),
        "small": dict(n_heads=4, alpha=0.0, beta=0.0, lr_scale=0.1, norm_position="residual"),
        "paper": dict(n_heads=8, alpha=0.0, beta=0.0, lr_scale=0.1, norm_position="residual"),
    }
}


# A pretrained Hugging Face checkpoint: its sizes come from the checkpoint, so a preset only sets the schedule.
# Rates and Adam's betas are those usual for fine-tuning pretrained transformers (Hugging Face's Trainer: AdamW
# (0.9, 0.999), clipping at 1.0); the recipe's discriminative rates and STLR stay. The head is fresh, so it trains
# at 5x the rate (head_lr_mult): at 2e-4 alone it could not learn a 10:1 class prior (all-MiniLM-L6 on SST-2 made
# 10:1: 71.7 / 57.4% on two seeds against 87.7 / 87.6% with it, the majority class alone 90.9%), and on balanced
# TREC-6 and SST-2 it changed nothing beyond a seed's noise. tiny is the CI path on tiny random models.
# With a handful of labelled rows (64 or fewer a class on average), SetFit's recipe inside ULMFiT's: the contrastive
# step on pairs of the rows trains the body, then the head alone, for at least 200 steps; against SetFit on the
# same checkpoint and rows it matched or beat it where the classifier alone scored 10-30 points under. Neither
# setting changes a run of 1,000 rows (auto pairs nothing above 64 a class on average, however rare one class is;
# such a run has more than 200 steps).
FEW_ROWS = dict(min_steps=200, contrastive_steps=-1)
WINDOWS = dict(window=256, stride=192)  # --long windows; a model of fewer positions: windows of all of them
HF_PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "finetune-lm": dict(epochs=1, bs=8, bptt=32, lr=1e-3),
        "finetune-clf": dict(epochs=4, bs=16, bptt=32, lr=1e-3, max_len=128, groups=2, window=64, stride=48),
    },
    "small": {
        "finetune-lm": dict(epochs=1, bs=8, bptt=128, lr=1e-4),
        "finetune-clf": dict(epochs=8, bs=16, bptt=128, lr=2e-4, max_len=512, head_lr_mult=5.0, **WINDOWS, **FEW_ROWS),
    },
    "paper": {
        "finetune-lm": dict(epochs=3, bs=16, bptt=256, lr=1e-4),
        "finetune-clf": dict(epochs=10, bs=16, bptt=256, lr=2e-4, max_len=512, head_lr_mult=5.0, **WINDOWS, **FEW_ROWS),
    },
}
HF_COMMON = dict(alpha=0.0, beta=0.0, beta1=0.9, beta2=0.999, clip=1.0, wd=0.01, drop_mult=1.0)
# A LoRA classifier trains every adapter from the first epoch, at one rate, 5x full fine-tuning's. LoRA's B matrices
# start at zero, so an adapter group unfrozen late, at a fraction of the rate above it, barely moves from nothing in
# the epochs left, and a low-rank update needs a larger step than the weights themselves: on all-MiniLM-L6 with
# 1,000 rows of SST-2 and TREC-6 (two seeds each), the recipe's schedule left LoRA 7.4 points under full fine-tuning
# on average, all at once at the full rate 0.7 under, all at once at 5x it level (+0.1) (bench/README.md, "Adapters").
ADAPTER_CLF = {"lora": dict(gradual_unfreezing=False, lr_factor=1.0, lr_scale=5.0)}


def adapter_defaults(stage: str, backbone: str, adapter: str) -> dict:
    """What `adapter` changes in a stage's defaults (ADAPTER_CLF): settings, and lr_scale, the factor on the preset's
    rate (which `tune`'s default space follows). Empty where nothing changes."""
    return dict(ADAPTER_CLF.get(adapter, {})) if backbone == "hf" and stage == "finetune-clf" else {}


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
        from .hf_facts import positions as hf_positions

        positions = hf_positions(values.get("hf_config") or {})
        for name in ("max_len", "bptt", "window"):  # a preset never asks for more than the model reads; a flag may
            if positions and name in values:  # (and fails)
                values[name] = min(values[name], positions)
        if "window" in values:
            values["stride"] = min(values["stride"], values["window"] * 3 // 4)
    over = dict(BACKBONE_PRESETS.get(backbone, {}).get(preset, {}))
    values["lr"] = values.get("lr", RunConfig.lr) * over.pop("lr_scale", 1.0)
    values.update({k: v for k, v in over.items() if parent is None or k not in ARCH_FIELDS})
    adapter = adapter_defaults(stage, backbone, given.get("adapter") or values.get("adapter") or RunConfig.adapter)
    values["lr"] *= adapter.pop("lr_scale", 1.0)
    values.update(adapter)
    values.update(given)
    return RunConfig(stage=stage, preset=preset, **values).validate()


def flags(values: dict) -> dict:
    """The settings among a command's parameters (`locals()` of a typer function): what `resolve` takes."""
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"stage", "preset", "extra"}
    return {k: v for k, v in values.items() if k in names}


def from_dict(d: dict) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in d.items() if k in names})
