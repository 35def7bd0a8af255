from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import STAGE_RUN, TEXT_SOURCE, CacheDir, Opts, Out, Preset, takes_settings

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


@takes_settings("finetune-lm", source=TEXT_SOURCE, opts=STAGE_RUN)
def finetune_lm(
    parent: Parent,
    texts: Texts = None,
    out: Out = Path("runs/lm-ft"),
    valid: Annotated[
        Path | None, typer.Option(help="Validation texts (default: the last --valid-pct of the tokens).")
    ] = None,
    preset: Preset = "small",
    source: Opts = None,
    settings: dict | None = None,  # every setting declared for finetune-lm (config.RunConfig)
    cache_dir: CacheDir = None,
    opts: Opts = None,
):
    """Fine-tune a pretrained language model on target-domain text (discriminative rates, STLR)."""
    from ..config import resolve
    from ..runfolder.artifacts import LM_STAGES, open_run
    from .common import lm_stage, warn_inert

    run = open_run(parent, LM_STAGES, "finetune-lm")
    cfg = resolve("finetune-lm", preset, settings, run.config)
    warn_inert(cfg, settings)
    lm_stage("finetune-lm", cfg, run, texts, out, valid, source, cache_dir, opts)
