from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    Alpha,
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
    Encoding,
    Epochs,
    Groups,
    Json,
    Keep,
    Lr,
    LrFactor,
    MaxSteps,
    MaxTokens,
    NewLmHead,
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
    Track,
    TrackDir,
    ValidPct,
    Wd,
)

Parent = Annotated[
    Path,
    typer.Argument(
        metavar="PARENT", help="Run folder of `ulmfit pretrain` (or of an earlier finetune-lm).", show_default=False
    ),
]
Texts = Annotated[
    list[Path] | None,
    typer.Argument(metavar="TEXTS", help="Target-domain texts (labels, if any, are ignored).", show_default=False),
]


def finetune_lm(
    parent: Parent,
    texts: Texts = None,
    out: Out = Path("runs/lm-ft"),
    valid: Annotated[
        Path | None, typer.Option(help="Validation texts (default: the last --valid-pct of the tokens).")
    ] = None,
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    dataset: Dataset = None,
    split: Split = "train",
    backbone: Backbone = None,
    epochs: Epochs = None,
    keep: Keep = None,
    patience: Patience = None,
    lr: Lr = None,
    bs: Bs = None,
    bptt: Bptt = None,
    drop_mult: DropMult = None,
    wd: Wd = None,
    lr_factor: LrFactor = None,
    groups: Groups = None,
    new_lm_head: NewLmHead = None,
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
    """Fine-tune a pretrained language model on target-domain text (discriminative rates, STLR)."""
    from ..config import flags

    given = flags(locals())  # first, before other names join the locals
    from ..config import resolve
    from ..configfile import print_config as print_config_file
    from ..data.readers import source_of
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..training.stages import train_lm_stage
    from .common import finish, show_schedule, sources, start

    run = open_run(parent, LM_STAGES, "finetune-lm")
    cfg = resolve("finetune-lm", preset, given, run.config)
    if print_schedule:
        return show_schedule("finetune-lm", cfg)
    if print_config:
        return print_config_file("finetune-lm", cfg, {"text_col": text_col, "encoding": encoding})
    srcs = sources(texts, dataset, split, "texts", text_col, encoding=encoding)
    reporter = start(cfg, quiet, track, track_dir)
    summary = train_lm_stage(
        "finetune-lm",
        cfg,
        srcs,
        out,
        text_col=text_col,
        parent=run,
        valid=source_of(valid, text_col, encoding) if valid else None,
        overwrite=overwrite,
        resume=resume,
        checkpoint_every=checkpoint_every,
        cache_dir=cache_dir,
        reporter=reporter,
    )
    finish(summary, json, reporter)
