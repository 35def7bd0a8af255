from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    DATA,
    Backbone,
    Backwards,
    Beta1,
    Beta2,
    Bptt,
    Bs,
    CheckpointEvery,
    ClassWeights,
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
    HeadLrMult,
    Json,
    Keep,
    LabelCol,
    Lr,
    LrFactor,
    Metric,
    Out,
    Overwrite,
    Patience,
    Pooling,
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
        metavar="PARENT", help="Run folder of `ulmfit finetune-lm` (or of `ulmfit pretrain`).", show_default=False
    ),
]
Train = Annotated[
    Path | None,
    typer.Argument(metavar="TRAIN", help="Labelled training data (table with text and label).", show_default=False),
]


def finetune_clf(
    parent: Parent,
    train: Train = None,
    out: Out = Path("runs/clf"),
    valid: Annotated[Path | None, typer.Option(help="Labelled validation data (else --valid-pct).")] = None,
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: LabelCol = "label",
    label_delim: Annotated[
        str | None,
        typer.Option(
            help="Multi-label: split each label on this string (e.g. ' '); a list column is multi-label already.",
            rich_help_panel=DATA,
        ),
    ] = None,
    regression: Annotated[
        bool, typer.Option("--regression", help="Numeric labels: train a regressor (MSE).", rich_help_panel=DATA)
    ] = False,
    dataset: Dataset = None,
    split: Split = "train",
    backbone: Backbone = None,
    epochs: Epochs = None,
    keep: Keep = None,
    metric: Metric = None,
    class_weights: ClassWeights = None,
    patience: Patience = None,
    lr: Lr = None,
    bs: Bs = None,
    bptt: Bptt = None,
    drop_mult: DropMult = None,
    wd: Wd = None,
    lr_factor: LrFactor = None,
    head_lr_mult: HeadLrMult = None,
    groups: Groups = None,
    pooling: Pooling = None,
    cut_frac: CutFrac = None,
    ratio: Ratio = None,
    clip: Clip = None,
    beta1: Beta1 = None,
    beta2: Beta2 = None,
    seed: Seed = None,
    valid_pct: ValidPct = None,
    max_len: Annotated[int | None, typer.Option(help="BPT3C: tokens of a document kept.")] = None,
    lin_ftrs: Annotated[int | None, typer.Option(help="Hidden units of the classifier head.")] = None,
    gradual_unfreezing: Annotated[
        bool | None,
        typer.Option(
            "--gradual-unfreezing/--no-gradual-unfreezing", help="Unfreeze one layer group per epoch from the top."
        ),
    ] = None,
    init: Annotated[
        str,
        typer.Option(
            help="pretrained: encoder from the parent LM; random: the no-pretraining "
            "baseline (parent's tokenizer and sizes only)."
        ),
    ] = "pretrained",
    backwards: Backwards = None,
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
    """Train a classifier on top of a fine-tuned LM (gradual unfreezing, discriminative rates, STLR).

    One label per text, several (--label-delim or a list column: sigmoid outputs, thresholds tuned per label
    on the validation data) or a number (--regression)."""
    from ..config import flags, resolve

    given = flags(locals())  # the settings among the parameters; None = not given
    from ..configfile import print_config as print_config_file
    from ..data.readers import source_of
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..training.stages import finetune_clf as core
    from .common import finish, show_schedule, sources, start

    run = open_run(parent, LM_STAGES, "finetune-clf")
    cfg = resolve("finetune-clf", preset, given, run.config)
    if init not in ("pretrained", "random"):
        raise ConfigError(f"`--init` must be pretrained or random, got {init!r}")
    if print_schedule:
        return show_schedule("finetune-clf", cfg)
    if print_config:
        more = {"text_col": text_col, "label_col": label_col, "encoding": encoding, "init": init}
        return print_config_file("finetune-clf", cfg, more)
    (src,) = sources([train] if train else None, dataset, split, "training data", text_col, encoding=encoding)
    reporter = start(cfg, quiet, track, track_dir)
    summary = core(
        cfg,
        run,
        src,
        out,
        valid=source_of(valid, text_col, encoding) if valid else None,
        text_col=text_col,
        label_col=label_col,
        init=init,
        overwrite=overwrite,
        resume=resume,
        checkpoint_every=checkpoint_every,
        reporter=reporter,
    )
    finish(summary, json, reporter)
