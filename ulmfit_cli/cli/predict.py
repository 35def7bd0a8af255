from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, Dataset, Ensemble, Quantize, Split


def predict(
    run: Annotated[Path, typer.Argument(help="Run folder of `ulmfit finetune-clf`.", show_default=False)],
    input: Annotated[
        str | None, typer.Argument(help="File to classify, or - for one text per line on stdin.", show_default=False)
    ] = None,
    ensemble: Ensemble = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    dataset: Dataset = None,
    split: Split = "train",
    backbone: Backbone = None,
    quantize: Quantize = None,
):
    """Predict: one JSON object per input on stdout, in input order.

    {"label", "probs"} for a classifier, {"labels", "probs"} for multi-label (labels above their tuned
    thresholds), {"value"} for regression. --ensemble averages several runs (e.g. forward + backward)."""
    import json
    import sys

    from ..data import read_texts
    from ..errors import InputError
    from ..inference import predict_ensemble
    from ..quantize import check as check_quantize
    from ..tasks import prediction
    from .common import open_models, sources

    check_quantize(quantize)
    runs = open_models(run, ensemble, backbone, "predict")  # checked before reading any input
    if input == "-":
        texts = [line.rstrip("\n") for line in sys.stdin]
        if not any(t.strip() for t in texts):
            raise InputError("stdin: no text to classify")
    else:
        (src,) = sources([Path(input)] if input else None, dataset, split, "input")
        col = text_col or runs[0].manifest.get("columns", {}).get("text", "text")
        texts = read_texts(src, col).texts
    pred = predict_ensemble(runs, texts, quantize)
    out = sys.stdout
    for row in pred.out:
        out.write(json.dumps(prediction(pred.task, pred.classes, row, pred.cuts)) + "\n")
    out.flush()
