from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    DATA,
    TRAIN,
    Bptt,
    Bs,
    CacheDir,
    ConfigFile,
    Device,
    DropMult,
    Encoding,
    Epochs,
    Json,
    LabelCol,
    Lr,
    Overwrite,
    Precision,
    Preset,
    Quiet,
    Seed,
    TextCol,
    Track,
    TrackDir,
    ValidPct,
    Wd,
)

LM = "Language-model fine-tuning (the supervised and semi-supervised variants)"
SET_HELP = "Any other {} setting as SETTING=VALUE (e.g. {}); repeatable."


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
    seeds: Annotated[int, typer.Option(help="Seeds per point (--seed, --seed + 1, ...).", min=1)] = 2,
    variants: Annotated[str, typer.Option(help="Which of random,supervised,semi-supervised to run.")] = (
        "random,supervised,semi-supervised"
    ),
    preset: Preset = "small",
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: LabelCol = "label",
    label_delim: Annotated[
        str | None, typer.Option(help="Multi-label: split each label on this string.", rich_help_panel=DATA)
    ] = None,
    regression: Annotated[
        bool, typer.Option("--regression", help="Numeric labels (error = test MAE).", rich_help_panel=DATA)
    ] = False,
    epochs: Epochs = None,
    lr: Lr = None,
    bs: Bs = None,
    bptt: Bptt = None,
    drop_mult: DropMult = None,
    wd: Wd = None,
    max_len: Annotated[int | None, typer.Option(help="BPT3C: tokens kept.", rich_help_panel=TRAIN)] = None,
    seed: Seed = None,
    valid_pct: ValidPct = None,
    clf_set: Annotated[
        list[str] | None,
        typer.Option(help=SET_HELP.format("finetune-clf", "lin_ftrs=100"), rich_help_panel=TRAIN, show_default=False),
    ] = None,
    lm_epochs: Annotated[int | None, typer.Option(help="LM epochs.", rich_help_panel=LM)] = None,
    lm_lr: Annotated[float | None, typer.Option(help="LM peak learning rate.", rich_help_panel=LM)] = None,
    lm_bs: Annotated[int | None, typer.Option(help="LM batch size (rows).", rich_help_panel=LM)] = None,
    lm_max_steps: Annotated[int | None, typer.Option(help="LM: at most this many steps.", rich_help_panel=LM)] = None,
    lm_set: Annotated[
        list[str] | None,
        typer.Option(help=SET_HELP.format("finetune-lm", "drop_mult=0.3"), rich_help_panel=LM, show_default=False),
    ] = None,
    cache_dir: CacheDir = None,
    device: Device = None,
    precision: Precision = None,
    keep_runs: Annotated[bool, typer.Option("--keep-runs", help="Keep each point's run folders.")] = False,
    overwrite: Overwrite = False,
    json: Json = False,
    quiet: Quiet = False,
    config: ConfigFile = None,
    track: Track = None,
    track_dir: TrackDir = None,
):
    """Test error against the number of labelled examples: no pretraining, ULMFiT supervised and semi-supervised.

    For each size and seed: a stratified subsample of TRAIN trains a classifier from random weights, one on the
    parent LM fine-tuned on the subsample's texts, and one on the LM fine-tuned on all the task's text (once per
    seed). Writes learning_curve.csv and learning_curve.png into --out; rerun the same command to finish an
    interrupted curve (finished points are kept). With other classifier settings, --overwrite trains every point
    again from the same fine-tuned LMs."""
    from ..config import resolve
    from ..data.readers import source_of
    from ..runfolder.artifacts import open_run
    from ..workflows.learning_curve import Curve, parse_sizes, parse_variants
    from ..workflows.learning_curve import run as core
    from .common import stage_flags, start, tracked

    size_list, variant_list = parse_sizes(sizes), parse_variants(variants)
    shared = {"bptt": bptt, "valid_pct": valid_pct, "seed": seed, "device": device, "precision": precision}
    clf_given = stage_flags("finetune-clf", {
        **shared, "epochs": epochs, "lr": lr, "bs": bs, "drop_mult": drop_mult, "wd": wd, "max_len": max_len,
        "label_delim": label_delim, "regression": regression or None}, clf_set, "--clf-set")  # fmt: skip
    lm_given = stage_flags("finetune-lm", {
        **shared, "epochs": lm_epochs, "lr": lm_lr, "bs": lm_bs, "max_steps": lm_max_steps}, lm_set, "--lm-set",
    )  # fmt: skip
    run = open_run(parent, ("pretrain", "finetune-lm"), "learning-curve")
    clf_cfg = resolve("finetune-clf", preset, clf_given, run.config)
    lm_cfg = resolve("finetune-lm", preset, lm_given, run.config)
    reporter = start(clf_cfg, quiet, track, track_dir)
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
        overwrite=overwrite,
        keep_runs=keep_runs,
        cache_dir=cache_dir,
    )
    settings = {"preset": preset, "sizes": sizes, "seeds": seeds, "variants": variants, "train": str(train)}
    summary = tracked(reporter, "learning-curve", out, settings, lambda: core(curve, reporter))
    if json:
        from .report import emit_json

        emit_json(summary)
    else:
        _table(summary)


def _table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"test error ({summary['task']}): {summary['csv']}")
    for col in ("variant", "size", "n", "seeds", "error (mean)", "lowest", "highest"):
        t.add_column(col, justify="right")
    for r in summary["curve"]:
        t.add_row(
            r["variant"], str(r["size"]), str(r["n"]), str(r["seeds"]),
            *(f"{r[k]:.4f}" for k in ("error_mean", "error_min", "error_max")),
        )  # fmt: skip
    Console(width=120).print(t)
