from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    DATA,
    TRAIN,
    Encoding,
    Json,
    Preset,
    Quiet,
    TextCol,
    takes_settings,
)

STAGES = ("pretrain", "finetune-lm", "finetune-clf")


@takes_settings("lr-find")
def lr_find(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="PARENT DATA (finetune-lm: texts, finetune-clf: labelled table), or CORPUS... for pretrain.",
            metavar="PATHS",
            show_default=False,
        ),
    ],
    stage: Annotated[str, typer.Option(help="The stage whose --lr is sought: pretrain | finetune-lm | finetune-clf.")],
    preset: Preset = "small",
    start_lr: Annotated[float, typer.Option(help="First rate tried.", rich_help_panel=TRAIN)] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="Last rate tried.", rich_help_panel=TRAIN)] = 10.0,
    num_it: Annotated[
        int, typer.Option(help="Steps of the test (fewer if the loss diverges).", rich_help_panel=TRAIN)
    ] = 100,
    rule: Annotated[
        str,
        typer.Option(
            help="How the rate is read off the curve: bottom (of the longest run of falling loss: the STLR peak), "
            "lowest (loss), minimum (lowest / 10), valley, slide, steep (fastai's). All are in --json."
        ),
    ] = "bottom",
    png: Annotated[Path | None, typer.Option(help="Draw the loss against the rate here (lr_find.png).")] = None,
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: Annotated[str, typer.Option(help="Column holding the label.", rich_help_panel=DATA)] = "label",
    settings: dict | None = None,  # every setting declared for lr-find (config.RunConfig)
    json: Json = False,
    quiet: Quiet = False,
):
    """Learning-rate range test: the stage's model trained a few steps at growing rates; prints the suggested
    peak --lr (the bottom of the loss's longest valley; --rule). Writes nothing but --png; the parent is only read."""
    from ..config import resolve
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..workflows.lr_find import lr_find as core
    from .common import check_file_out, source_of, start, warn_inert
    from .report import emit_json

    if png is not None:  # before minutes of training, not after
        check_file_out(png, "--png", "a PNG", ".png")
    if stage not in STAGES:
        raise ConfigError(f"`--stage` must be one of {', '.join(STAGES)}, got {stage!r}")
    if settings["head_lr_mult"] is not None and stage != "finetune-clf":
        raise ConfigError(f"`--head-lr-mult` is the classifier head's; --stage {stage} trains a language model")
    if stage == "pretrain":
        parent, data = None, paths
    else:
        if len(paths) < 2:
            raise ConfigError(f"--stage {stage} needs PARENT and DATA, got {len(paths)} path(s)")
        wanted = LM_STAGES if stage == "finetune-clf" else ("pretrain", "finetune-lm")
        parent, data = open_run(paths[0], wanted, "lr-find"), paths[1:]
    cfg = resolve(stage, preset, settings, parent.config if parent else None)
    warn_inert(cfg, settings)
    reporter = start(cfg, quiet)
    out = core(
        stage,
        cfg,
        parent,
        [source_of(p, text_col, encoding) for p in data],
        text_col=text_col,
        label_col=label_col,
        start_lr=start_lr,
        end_lr=end_lr,
        num_it=num_it,
        rule=rule,
        png=png,
        reporter=reporter,
    )
    if json:
        return emit_json(out)
    groups = ", ".join(f"{lr:.2e}" for lr in out["group_lrs"])
    others = ", ".join(f"{k} {v:.2e}" for k, v in out["suggestions"].items() if k != out["rule"])
    print(f"suggested --lr {out['suggested_lr']:.2e} ({out['rule']}; {others})")
    print(
        f"  {out['steps']} of {out['num_it']} steps; layer groups bottom to top: {groups} "
        f"(--lr-factor {out['lr_factor']:g}"
        + (f", head x{out['head_lr_mult']:g})" if out["head_lr_mult"] != 1 else ")")
    )
    print(f"  the preset's --lr is {out['preset_lr']:.2e}" + (f"; picture: {out['png']}" if out["png"] else ""))
