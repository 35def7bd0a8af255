from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Json, Out, Overwrite, Quiet

Weights = Annotated[
    Path | None,
    typer.Argument(metavar="WEIGHTS", help="fastai's language-model weights (.pth, torch.save).", show_default=False),
]
Vocab = Annotated[
    Path | None,
    typer.Argument(metavar="VOCAB", help="Its vocabulary (.pkl, a pickled list of words).", show_default=False),
]


def import_fastai(
    weights: Weights = None,
    vocab: Vocab = None,
    out: Out = Path("runs/wt103"),
    download: Annotated[
        bool, typer.Option("--download", help="Fetch fastai's WT103 model (needs the network; cached).")
    ] = False,
    direction: Annotated[str, typer.Option(help="fwd | bwd: which of fastai's WT103 models.")] = "fwd",
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where --download keeps fastai's archive (default $ULMFIT_CACHE or ~/.cache/ulmfit)."),
    ] = None,
    overwrite: Overwrite = False,
    json: Json = False,
    quiet: Quiet = False,
):
    """Turn fastai's pretrained AWD-LSTM (e.g. WT103) into a `pretrain` run folder for `ulmfit finetune-lm`."""
    from ..importers.fastai import import_fastai as run_import
    from .common import finish
    from .report import Reporter

    reporter = Reporter(quiet)
    summary = run_import(
        weights,
        vocab,
        out,
        download=download,
        direction=direction,
        cache_dir=cache_dir,
        overwrite=overwrite,
        reporter=reporter,
    )
    finish(summary, json, reporter)
