from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, Dataset, Split


def predict(
    run: Annotated[Path, typer.Argument(help="Run folder of `ulmfit finetune-clf`.", show_default=False)],
    input: Annotated[
        str | None, typer.Argument(help="File to classify, or - for one text per line on stdin.", show_default=False)
    ] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    dataset: Dataset = None,
    split: Split = "train",
    backbone: Backbone = None,
):
    """Classify texts: one JSON object per input (label, probabilities) on stdout, in input order."""
    import json
    import sys

    from ..artifacts import open_run
    from ..data import read_texts
    from ..errors import InputError
    from ..stages import predict_probs
    from .common import check_backbone, sources

    model = open_run(run, ("finetune-clf",), "predict")  # checked before reading any input
    check_backbone(model, backbone)
    if input == "-":
        texts = [line.rstrip("\n") for line in sys.stdin]
        if not any(t.strip() for t in texts):
            raise InputError("stdin: no text to classify")
    else:
        (src,) = sources([Path(input)] if input else None, dataset, split, "input")
        col = text_col or model.manifest.get("columns", {}).get("text", "text")
        texts = read_texts(src, col).texts
    classes, probs = predict_probs(model, texts)
    out = sys.stdout
    for p in probs:
        out.write(
            json.dumps(
                {"label": classes[int(p.argmax())], "probs": {c: round(float(v), 6) for c, v in zip(classes, p)}}
            )
            + "\n"
        )
    out.flush()
