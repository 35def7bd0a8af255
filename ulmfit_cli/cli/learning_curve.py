from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    LM_PANEL,
    MULTI_RUN,
    TRAIN,
    Encoding,
    LabelCol,
    Opts,
    Preset,
    TextCol,
    takes_settings,
)

SET_HELP = "Any other {} setting as SETTING=VALUE (e.g. {}); repeatable."


@takes_settings("learning-curve", opts=MULTI_RUN)
def learning_curve(
    parent: Annotated[
        Path,
        typer.Argument(
            metavar="PARENT", help="Run folder of `ulmfit pretrain` (or import-fastai): the LM to start from."
        ),
    ],
    train: Annotated[
        Path, typer.Argument(metavar="TRAIN", help="Labelled training data; the subsamples come from it.")
    ],
    test: Annotated[Path, typer.Option(help="Labelled test data: every point is scored on it.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the runs, the table and the picture.")] = Path(
        "runs/learning-curve"
    ),
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(
            help="Task text without labels for the semi-supervised LM (with TRAIN's texts); repeatable.",
            show_default=False,
        ),
    ] = None,
    sizes: Annotated[str, typer.Option(help="Labelled examples per point, comma-separated; 'all' = TRAIN.")] = (
        "100,200,500,1000,all"
    ),
    per_class: Annotated[
        str | None,
        typer.Option(
            help="Examples of every class per point instead of --sizes, comma-separated (e.g. 8,16,32,64): exactly "
            "that many rows of each class (single-label), the same rows for every variant.",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option(help="Seeded samples per point (--seed, --seed + 1, ...): each draws its rows and trains.", min=1),
    ] = 2,
    variants: Annotated[str, typer.Option(help="Which of random,supervised,semi-supervised,parent to run.")] = (
        "random,supervised,semi-supervised"
    ),
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: LabelCol = "label",
    settings: dict | None = None,  # the classifier's settings declared for learning-curve (config.RunConfig)
    clf_set: Annotated[
        list[str] | None,
        typer.Option(help=SET_HELP.format("finetune-clf", "lin_ftrs=100"), rich_help_panel=TRAIN, show_default=False),
    ] = None,
    lm_settings: dict | None = None,  # the LM stage's: --lm-epochs, --lm-lr, ...
    lm_set: Annotated[
        list[str] | None,
        typer.Option(
            help=SET_HELP.format("finetune-lm", "drop_mult=0.3"), rich_help_panel=LM_PANEL, show_default=False
        ),
    ] = None,
    keep_runs: Annotated[bool, typer.Option("--keep-runs", help="Keep each point's run folders.")] = False,
    opts: Opts = None,
):
    """Test error against the number of labelled examples: no pretraining, ULMFiT supervised and semi-supervised.

    For each size and seed: a stratified subsample of TRAIN trains a classifier from random weights, one on the
    parent LM fine-tuned on the subsample's texts, and one on the LM fine-tuned on all the task's text (once per
    seed). Writes learning_curve.csv and learning_curve.png into --out; rerun the same command to finish an
    interrupted curve (finished points are kept). With other classifier settings, --overwrite trains every point
    again from the same fine-tuned LMs."""
    from ..config import resolve
    from ..runfolder.artifacts import open_run
    from ..workflows.learning_curve import Curve, parse_sizes, parse_variants
    from ..workflows.learning_curve import run as core
    from .common import caller, source_of, stage_flags, start, tracked

    flag = "--per-class" if per_class else "--sizes"
    size_list, variant_list = parse_sizes(per_class or sizes, flag), parse_variants(variants)
    # the classifier's flags; those the LM stage shares (its window, validation share, seed, hardware) go to both
    shared = {k: settings[k] for k in ("bptt", "valid_pct", "seed", "device", "precision")}
    clf_given = stage_flags("finetune-clf", {**settings, "regression": settings["regression"] or None}, clf_set,
                            "--clf-set")  # fmt: skip
    lm_given = stage_flags("finetune-lm", {**shared, **lm_settings}, lm_set, "--lm-set")
    run = open_run(parent, ("pretrain", "finetune-lm"), "learning-curve")
    clf_cfg = resolve("finetune-clf", preset, clf_given, run.config)
    lm_cfg = resolve("finetune-lm", preset, lm_given, run.config)
    reporter = start(clf_cfg, opts.quiet, opts.track, opts.track_dir)
    curve = Curve(
        parent=run,
        train=source_of(train, text_col, encoding),
        test=source_of(test, text_col, encoding),
        unlabelled=[source_of(p, text_col, encoding) for p in unlabelled or []],
        sizes=size_list,
        seeds=seeds,
        variants=variant_list,
        lm_cfg=lm_cfg,
        clf_cfg=clf_cfg,
        out=out,
        text_col=text_col,
        label_col=label_col,
        overwrite=opts.overwrite,
        keep_runs=keep_runs,
        cache_dir=opts.cache_dir,
        per_class=per_class is not None,
        caller=caller(),
    )
    settings = {
        "preset": preset,
        "sizes": per_class or sizes,
        "per_class": per_class is not None,
        "seeds": seeds,
        "variants": variants,
        "train": str(train),
    }
    summary = tracked(reporter, "learning-curve", out, settings, lambda: core(curve, reporter))
    if opts.json:
        from .report import emit_json

        emit_json(summary)
    else:
        _table(summary)


def _table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"test error ({summary['task']}): {summary['csv']}")
    for col in ("variant", "size", "n", "seeds", "error (mean)", "std", "lowest", "highest"):
        t.add_column(col, justify="right")
    for r in summary["curve"]:
        t.add_row(
            r["variant"], str(r["size"]), str(r["n"]), str(r["seeds"]),
            *("-" if r[k] is None else f"{r[k]:.4f}" for k in ("error_mean", "error_std", "error_min", "error_max")),
        )  # fmt: skip
    Console(width=120).print(t)
