from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    Alpha,
    Attention,
    Backbone,
    Backwards,
    Beta,
    Beta1,
    Beta2,
    Bptt,
    Bs,
    CacheDir,
    CheckpointEvery,
    Clip,
    Compile,
    ConfigFile,
    CutFrac,
    Dataset,
    Device,
    DropMult,
    EmbSz,
    Encoding,
    Epochs,
    Json,
    Keep,
    Lr,
    LrFactor,
    MaxSteps,
    MaxTokens,
    NHeads,
    NHid,
    NLayers,
    Norm,
    NormPosition,
    Out,
    Overwrite,
    Patience,
    Precision,
    Preset,
    PrintConfig,
    PrintSchedule,
    Quiet,
    Ratio,
    Resume,
    Seed,
    Split,
    TextCol,
    Tokenizer,
    TokSample,
    Track,
    TrackDir,
    ValidPct,
    VocabSize,
    Wd,
)

Corpus = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="CORPUS", help="Text, CSV/TSV, JSON(L), Parquet files or save_to_disk folders.", show_default=False
    ),
]


def pretrain(
    corpus: Corpus = None,
    out: Out = Path("runs/lm"),
    valid: Annotated[
        Path | None, typer.Option(help="Validation corpus (default: the last --valid-pct of the tokens).")
    ] = None,
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    dataset: Dataset = None,
    split: Split = "train",
    tokenizer: Tokenizer = None,
    vocab_size: VocabSize = None,
    tokenizer_sample_lines: TokSample = None,
    backbone: Backbone = None,
    emb_sz: EmbSz = None,
    n_hid: NHid = None,
    n_layers: NLayers = None,
    n_heads: NHeads = None,
    norm: Norm = None,
    norm_position: NormPosition = None,
    attention: Attention = None,
    epochs: Epochs = None,
    keep: Keep = None,
    patience: Patience = None,
    lr: Lr = None,
    bs: Bs = None,
    bptt: Bptt = None,
    drop_mult: DropMult = None,
    wd: Wd = None,
    lr_factor: LrFactor = None,
    cut_frac: CutFrac = None,
    ratio: Ratio = None,
    clip: Clip = None,
    alpha: Alpha = None,
    beta: Beta = None,
    beta1: Beta1 = None,
    beta2: Beta2 = None,
    seed: Seed = None,
    valid_pct: ValidPct = None,
    max_tokens: MaxTokens = None,
    backwards: Backwards = None,
    max_steps: MaxSteps = None,
    cache_dir: CacheDir = None,
    device: Device = None,
    precision: Precision = None,
    compile: Compile = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 200,
    json: Json = False,
    quiet: Quiet = False,
    print_schedule: PrintSchedule = False,
    config: ConfigFile = None,
    print_config: PrintConfig = False,
    track: Track = None,
    track_dir: TrackDir = None,
):
    """Train a general-domain language model (and its subword tokenizer) on a corpus."""
    from ..config import flags, resolve

    given = flags(locals())  # the settings among the parameters; None = not given
    from ..configfile import print_config as print_config_file
    from ..data.readers import source_of
    from ..training.stages import train_lm_stage
    from .common import finish, show_schedule, sources, start

    cfg = resolve("pretrain", preset, given)
    if print_schedule:
        return show_schedule("pretrain", cfg)
    if print_config:
        return print_config_file("pretrain", cfg, {"text_col": text_col, "encoding": encoding})
    srcs = sources(corpus, dataset, split, "corpus", text_col, encoding=encoding)
    reporter = start(cfg, quiet, track, track_dir)
    summary = train_lm_stage(
        "pretrain",
        cfg,
        srcs,
        out,
        text_col=text_col,
        valid=source_of(valid, text_col, encoding) if valid else None,
        overwrite=overwrite,
        resume=resume,
        checkpoint_every=checkpoint_every,
        cache_dir=cache_dir,
        reporter=reporter,
    )
    finish(summary, json, reporter)
