from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, Dataset, Json, Split


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder of `ulmfit finetune-clf`.", show_default=False)],
    test: Annotated[Path | None, typer.Argument(help="Labelled test data.", show_default=False)] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column (default: the one used in training).")] = None,
    dataset: Dataset = None,
    split: Split = "test",
    json: Json = False,
    backbone: Backbone = None,
):
    """Accuracy, macro-F1 and a per-class table on labelled data (stdout; JSON with --json)."""
    from ..artifacts import open_run
    from ..report import emit_json
    from ..stages import evaluate as core
    from .common import check_backbone, sources

    model = open_run(run, ("finetune-clf",), "evaluate")
    check_backbone(model, backbone)
    (src,) = sources([test] if test else None, dataset, split, "test data")
    result = core(model, src, text_col, label_col)
    if json:
        return emit_json(result)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"accuracy {result['accuracy']:.4f}   macro-F1 {result['macro_f1']:.4f}   n {result['n']}")
    for col in ("label", "precision", "recall", "f1", "support"):
        t.add_column(col, justify="right")
    for r in result["per_class"]:
        t.add_row(r["label"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"]))
    Console(width=100).print(t)
