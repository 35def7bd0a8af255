from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, BatchSize, Dataset, Encoding, Engine, Ensemble, Quantize, Split, Threads


def predict(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Run folder of `ulmfit finetune-clf` (or a `pipeline` folder: its ensemble).",
            show_default=False,
        ),
    ],
    input: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT", help="File to classify, or - for one text per line on stdin.", show_default=False
        ),
    ] = None,
    ensemble: Ensemble = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    encoding: Encoding = None,
    dataset: Dataset = None,
    split: Split = "train",
    backbone: Backbone = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl | tsv (label, probability, text) | label.")
    ] = "jsonl",
    top_k: Annotated[
        int | None, typer.Option(help="Show only the K most probable classes (jsonl probs, tsv pairs).", min=1)
    ] = None,
    batch_size: BatchSize = 64,
    max_wait: Annotated[
        float,
        typer.Option(
            help="Lines on stdin or a pipe: answer a partial batch this many seconds after its first line.", min=0
        ),
    ] = 0.1,
    threads: Threads = None,
    quantize: Quantize = None,
    engine: Engine = "torch",
):
    """Predict: one line per input line (or row), in input order, written as each batch is done.

    jsonl: {"label", "probs"} for a classifier, {"labels", "probs"} for multi-label (labels above their tuned
    thresholds), {"value"} for regression. tsv: label, probability, then the input text (escaped); label: the
    label alone. A blank input gets nulls (empty fields). --ensemble averages several runs (e.g. forward +
    backward)."""
    import signal
    import sys

    from ..data.readers import Source
    from ..data.rows import is_plain_text, table_batches, text_batches
    from ..inference.formats import Formatter
    from ..inference.predictor import Predictor, head
    from ..inference.predictor import predict as core
    from ..inference.quantize import check as check_quantize
    from .common import check_engine, open_models, sources, warning

    check_quantize(quantize)
    runs = open_models(run, ensemble, backbone, "predict")
    check_engine(engine, runs)  # checked before reading any input
    line = Formatter(format, *head(runs), top_k).line
    if encoding is not None:
        from ..data.readers import _codec

        _codec(encoding)  # an unknown name: one line now, not when the first line is decoded
    given = [Path(input)] if input else None
    # a pipe is streamed as it comes (never copied first), except with --encoding; a file's bytes are checked
    copy = input not in (None, "-") and (encoding is not None or Path(input).is_file())
    (src,) = (
        [Source(path="-")]
        if input == "-"
        else sources(given, dataset, split, "input", text_col, copy=copy, encoding=encoding)
    )
    if is_plain_text(src):
        batches = text_batches(src, batch_size, max_wait, encoding, warning)
    else:
        col = text_col or runs[0].manifest.get("columns", {}).get("text", "text")
        batches = (
            ["" if t is None else str(t) for t in b[col]] for b in table_batches(src, [col], ["--text-col"], batch_size)
        )
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head`: end quietly when the reader has gone, as cat does
    predictor = Predictor(runs, batch_size, threads, quantize=quantize, engine=engine, warn=warning)
    core(predictor, batches, line, sys.stdout)
