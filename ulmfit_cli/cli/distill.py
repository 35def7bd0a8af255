from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    STAGE_RUN,
    TEXT_SOURCE,
    BatchSize,
    CacheDir,
    Engine,
    LabelCol,
    Opts,
    Out,
    Preset,
    takes_settings,
)

Teacher = Annotated[
    Path,
    typer.Argument(metavar="TEACHER", help="Run folder of `ulmfit finetune-clf`: the classifier to learn from.",
                   show_default=False),
]  # fmt: skip
StudentParent = Annotated[
    Path,
    typer.Argument(
        metavar="STUDENT_PARENT",
        help="Run folder the student starts from, as finetune-clf's PARENT (import-hf, finetune-lm or pretrain).",
        show_default=False,
    ),
]
Texts = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="TEXTS...", help="Unlabelled target-domain text: the teacher labels it.", show_default=False
    ),
]


@takes_settings("distill", source=TEXT_SOURCE, opts=STAGE_RUN)
def distill(
    teacher: Teacher,
    student_parent: StudentParent,
    texts: Texts = None,
    out: Out = Path("runs/student"),
    teachers: Annotated[
        list[Path] | None,
        typer.Option(
            "--teacher",
            help="Another finetune-clf run (same task and classes) averaged with TEACHER; repeat for more.",
            metavar="RUN2",
        ),
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="Labelled rows the student also learns, by --hard-weight.", show_default=False)
    ] = None,
    valid: Annotated[
        Path | None,
        typer.Option(help="Labelled validation data (else --train's --valid-pct, else agreement with the teacher)."),
    ] = None,
    preset: Preset = "small",
    source: Opts = None,
    label_col: LabelCol = "label",
    settings: dict | None = None,  # every setting declared for finetune-clf and distill (config.RunConfig)
    engine: Engine = "torch",
    batch_size: BatchSize = 64,
    cache_dir: CacheDir = None,
    opts: Opts = None,
):
    """Distil a classifier (the teacher) into a smaller, faster student over unlabelled target-domain text.

    The teacher labels TEXTS once (cached, resumable: rerun the same command after an interruption); the student
    then trains through finetune-clf's recipe on the teacher's probabilities at --temperature, and on --train's
    labels where given (--hard-weight). It chooses its epoch on labelled validation rows when there are any, else
    on its agreement with the teacher. The result is an ordinary classifier run folder (predict, evaluate, export
    read it) whose manifest names its teachers and texts."""
    from .. import tasks
    from ..config import resolve
    from ..data.tokencache import cache_root
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..training.distill import open_teachers, teaching
    from ..training.stages import finetune_clf as core
    from .common import (
        check_engine,
        finish,
        print_config,
        run_args,
        show_schedule,
        source_of,
        sources,
        start,
        warn_inert,
    )

    runs = open_teachers([teacher, *(teachers or [])])
    check_engine(engine, runs)
    parent = open_run(student_parent, LM_STAGES, "distill")
    task = tasks.task_of(runs[0].manifest)
    implied = {"regression": task == tasks.REGRESSION, "label_delim": runs[0].config.get("label_delim")}
    for name, value in implied.items():  # the student answers the teacher's question
        if settings.get(name) is not None and settings[name] != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"`{flag}` does not match the teacher's task ({task}); leave it out: the student "
                              "takes the teacher's")  # fmt: skip
    cfg = resolve("finetune-clf", preset, {**settings, **implied}, parent.config)
    warn_inert(cfg, settings)
    if opts.print_schedule:
        return show_schedule("finetune-clf", cfg)
    text_col, encoding = source.text_col, source.encoding
    if opts.print_config:
        return print_config("distill", cfg, {"text_col": text_col, "label_col": label_col, "encoding": encoding})
    if valid is not None and train is None:  # before any input is read
        raise ConfigError("`--valid` scores the student against labels: give the labelled rows with --train too")
    srcs = sources(texts, source.dataset, source.split, "texts", text_col, encoding=encoding)
    train_src = source_of(train, text_col, encoding) if train else None
    valid_src = source_of(valid, text_col, encoding) if valid else None
    reporter = start(cfg, opts.quiet, opts.track, opts.track_dir)
    taught = teaching(runs, srcs, cfg, text_col, cache_root(cache_dir), engine, batch_size, reporter)
    summary = core(
        cfg, parent, train_src, out, valid=valid_src, text_col=text_col, label_col=label_col, teaching=taught,
        **run_args(opts, reporter),
    )  # fmt: skip
    finish(summary, opts.json, reporter)
