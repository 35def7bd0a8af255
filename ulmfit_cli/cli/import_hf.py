from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Json, Out, Overwrite, Quiet

Model = Annotated[
    str,
    typer.Argument(
        help="A local folder in the Hugging Face layout, a .gguf file, or a Hub id (OWNER/NAME; needs the network "
        "or the Hugging Face cache).",
        metavar="MODEL",
        show_default=False,
    ),
]


def import_hf(
    model: Model,
    out: Out = Path("runs/hf"),
    gguf_file: Annotated[
        str | None, typer.Option(help="A GGUF file in MODEL to read (dequantized by transformers; needs gguf).")
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit of a Hub id.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16: how the weights are stored.")] = "float32",
    overwrite: Overwrite = False,
    json: Json = False,
    quiet: Quiet = False,
):
    """Turn a pretrained Hugging Face decoder (GPT-2, Llama, Qwen, SmolLM, Gemma, ...) into a `pretrain` run folder
    for `ulmfit finetune-lm` and `finetune-clf`. No code from the checkpoint runs. Needs transformers: install
    the hf extra of ulmfit-cli (README)."""
    from ..importers.hf import import_hf as run_import
    from .common import finish
    from .report import Reporter

    reporter = Reporter(quiet)
    summary = run_import(
        model, out, gguf_file=gguf_file, revision=revision, dtype=dtype, overwrite=overwrite, reporter=reporter
    )
    finish(summary, json, reporter)
