from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import STAGE_RUN, TEXT_SOURCE, CacheDir, Opts, Out, Preset, takes_settings

Corpus = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="CORPUS", help="Text, CSV/TSV, JSON(L), Parquet files or save_to_disk folders.", show_default=False
    ),
]


@takes_settings("pretrain", source=TEXT_SOURCE, opts=STAGE_RUN)
def pretrain(
    corpus: Corpus = None,
    out: Out = Path("runs/lm"),
    valid: Annotated[
        Path | None, typer.Option(help="Validation corpus (default: the last --valid-pct of the tokens).")
    ] = None,
    preset: Preset = "small",
    source: Opts = None,
    settings: dict | None = None,  # every setting declared for pretrain (config.RunConfig)
    cache_dir: CacheDir = None,
    opts: Opts = None,
):
    """Train a general-domain language model (and its subword tokenizer) on a corpus."""
    from ..config import resolve
    from .common import lm_stage

    lm_stage("pretrain", resolve("pretrain", preset, settings), None, corpus, out, valid, source, cache_dir, opts)
