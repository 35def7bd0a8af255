from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import STAGE_RUN, TEXT_SOURCE, LabelCol, Opts, Out, Preset, takes_settings

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


@takes_settings("finetune-clf", source=TEXT_SOURCE, opts=STAGE_RUN)
def finetune_clf(
    parent: Parent,
    train: Train = None,
    out: Out = Path("runs/clf"),
    valid: Annotated[Path | None, typer.Option(help="Labelled validation data (else --valid-pct).")] = None,
    preset: Preset = "small",
    source: Opts = None,
    label_col: LabelCol = "label",
    settings: dict | None = None,  # every setting declared for finetune-clf (config.RunConfig)
    init: Annotated[
        str,
        typer.Option(
            help="pretrained: encoder from the parent LM; random: the no-pretraining "
            "baseline (parent's tokenizer and sizes only)."
        ),
    ] = "pretrained",
    opts: Opts = None,
):
    """Train a classifier on top of a fine-tuned LM (gradual unfreezing, discriminative rates, STLR).

    One label per text, several (--label-delim or a list column: sigmoid outputs, thresholds tuned per label
    on the validation data) or a number (--regression).

    With few labelled rows (64 or fewer a class on average) a pretrained checkpoint (--backbone hf) first learns
    from pairs of them which texts belong together (--contrastive-steps, SetFit's idea), then trains its head for at
    least --min-steps steps, and keeps the last epoch: a handful of validation rows cannot choose one. Against
    SetFit on the same checkpoint and rows this matched or beat it, where the classifier alone scored at or below
    always answering the most common class (the few labels guide has the figures). A classifier that ends no better
    than that constant answer on its validation rows says so."""
    from ..config import resolve
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..training.stages import finetune_clf as core
    from .common import finish, print_config, run_args, show_schedule, source_of, sources, start, warn_inert

    run = open_run(parent, LM_STAGES, "finetune-clf")
    cfg = resolve("finetune-clf", preset, settings, run.config)
    warn_inert(cfg, settings)
    if init not in ("pretrained", "random"):
        raise ConfigError(f"`--init` must be pretrained or random, got {init!r}")
    if opts.print_schedule:
        return show_schedule("finetune-clf", cfg)
    text_col, encoding = source.text_col, source.encoding
    if opts.print_config:
        more = {"text_col": text_col, "label_col": label_col, "encoding": encoding, "init": init}
        return print_config("finetune-clf", cfg, more)
    train_paths = [train] if train else None
    (src,) = sources(train_paths, source.dataset, source.split, "training data", text_col, encoding=encoding)
    reporter = start(cfg, opts.quiet, opts.track, opts.track_dir)
    summary = core(
        cfg,
        run,
        src,
        out,
        valid=source_of(valid, text_col, encoding) if valid else None,
        text_col=text_col,
        label_col=label_col,
        init=init,
        **run_args(opts, reporter),
    )
    finish(summary, opts.json, reporter)
