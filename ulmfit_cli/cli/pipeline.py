from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    MULTI_RUN,
    Encoding,
    LabelCol,
    Opts,
    Preset,
    TextCol,
    takes_settings,
)

STAGES = "Stage settings"


def _set(stage: str, example: str):
    return Annotated[
        list[str] | None,
        typer.Option(
            help=f"A {stage} setting as SETTING=VALUE (e.g. {example}); repeatable.",
            rich_help_panel=STAGES,
            show_default=False,
        ),
    ]


@takes_settings("pipeline", opts=MULTI_RUN)
def pipeline(
    train: Annotated[Path, typer.Argument(metavar="TRAIN", help="Labelled training data.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every run of the pipeline.")] = Path(
        "runs/pipeline"
    ),
    corpus: Annotated[
        list[Path] | None, typer.Option(help="Pretraining text (repeatable); or --parent.", show_default=False)
    ] = None,
    parent: Annotated[
        list[Path] | None,
        typer.Option(
            help="A pretrained LM to start from instead of --corpus; with --both-directions one forward and one "
            "backward (pretrain --backwards, import-fastai --direction bwd).",
            show_default=False,
        ),
    ] = None,
    texts: Annotated[
        list[Path] | None,
        typer.Option(help="Text for finetune-lm (default: TRAIN's texts); repeatable.", show_default=False),
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Labelled test data: each classifier and the ensemble are scored on it.")
    ] = None,
    both_directions: Annotated[
        bool,
        typer.Option("--both-directions", help="Also train the backward model; predict/evaluate OUT use the ensemble."),
    ] = False,
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: LabelCol = "label",
    settings: dict | None = None,  # the settings declared for pipeline (config.RunConfig): every stage's
    pretrain_set: _set("pretrain", "max_tokens=2000000") = None,
    lm_set: _set("finetune-lm", "epochs=5") = None,
    clf_set: _set("finetune-clf", "lr=0.02") = None,
    distill_into: Annotated[
        Path | None,
        typer.Option(
            help="Last, distil the classifier (both directions' with --both-directions) into a student that starts "
            "from this run (import-hf, finetune-lm or pretrain), over finetune-lm's texts: OUT/student.",
            rich_help_panel=STAGES,
            show_default=False,
        ),
    ] = None,
    distill_set: _set("student", "temperature=4") = None,
    opts: Opts = None,
):
    """pretrain -> finetune-lm -> finetune-clf in one line, forward or (--both-directions) forward and backward,
    with the test score of each classifier and of their ensemble (the paper's bidirectional model).

    Writes OUT/fwd and OUT/bwd (each lm, lm-ft, clf) and OUT/ensemble.json: `ulmfit predict OUT` and
    `ulmfit evaluate OUT` average both directions. Rerun the same command to finish an interrupted pipeline; with
    other settings, --overwrite trains again from each direction's first changed stage and keeps the stages before
    it."""
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..workflows.pipeline import Pipeline, configs, student_config
    from ..workflows.pipeline import run as core
    from .common import caller, set_pairs, source_of, stage_flags, start, tracked

    if bool(corpus) == bool(parent):
        raise ConfigError("give the pretraining text (--corpus) or the pretrained LM(s) to start from (--parent)")
    shared = settings  # seed, device, precision: every stage's
    p = Pipeline(
        train=source_of(train, text_col, encoding),
        out=out,
        preset=preset,
        corpus=[source_of(c, text_col, encoding) for c in corpus or []],
        parents=[open_run(r, LM_STAGES, "pipeline") for r in parent or []],
        texts=[source_of(t, text_col, encoding) for t in texts or []],
        test=source_of(test, text_col, encoding) if test else None,
        both=both_directions,
        pretrain_flags=stage_flags("pretrain", shared, pretrain_set, "--pretrain-set"),
        lm_flags=stage_flags("finetune-lm", shared, lm_set, "--lm-set"),
        clf_flags=stage_flags("finetune-clf", shared, clf_set, "--clf-set"),
        text_col=text_col,
        label_col=label_col,
        overwrite=opts.overwrite,
        cache_dir=opts.cache_dir,
        caller=caller(),
        student_parent=open_run(distill_into, LM_STAGES, "pipeline --distill-into") if distill_into else None,
        distill_flags=set_pairs(distill_set, "--distill-set"),
    )
    if distill_set and distill_into is None:
        raise ConfigError("`--distill-set` sets the student's settings: give the student's parent with --distill-into")
    # every stage's settings resolved and checked first
    student_config(p)  # the student's settings checked before any work, too
    reporter = start(configs(p, "fwd")["finetune-clf"], opts.quiet, opts.track, opts.track_dir)
    settings = {"preset": preset, "both_directions": both_directions, "train": str(train), "test": str(test)}
    summary = tracked(reporter, "pipeline", out, settings, lambda: core(p, reporter))
    if opts.json:
        from .report import emit_json

        emit_json(summary)
    elif "test" in summary:
        _table(summary["test"])


def _table(scores: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = [k for k in next(iter(scores.values())) if k != "n"]
    t = Table(title=f"test scores (n {next(iter(scores.values())).get('n')})")
    t.add_column("model")
    for c in cols:
        t.add_column(c, justify="right")
    for name, s in scores.items():
        t.add_row(name, *(f"{s[c]:.4f}" for c in cols))
    Console(width=100).print(t)
