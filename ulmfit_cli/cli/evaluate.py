from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, Dataset, Ensemble, Json, Split


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder of `ulmfit finetune-clf`.", show_default=False)],
    test: Annotated[Path | None, typer.Argument(help="Labelled test data.", show_default=False)] = None,
    ensemble: Ensemble = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column (default: the one used in training).")] = None,
    dataset: Dataset = None,
    split: Split = "test",
    json: Json = False,
    backbone: Backbone = None,
):
    """Metrics on labelled data (stdout; JSON with --json): accuracy, macro-F1 and a per-class table; for
    multi-label micro/macro-F1 and a per-label table at the tuned thresholds; for regression MAE, RMSE, R^2."""
    from ..report import emit_json
    from ..stages import evaluate as core
    from ..tasks import MULTI, REGRESSION
    from .common import open_models, sources

    runs = open_models(run, ensemble, backbone, "evaluate")
    (src,) = sources([test] if test else None, dataset, split, "test data")
    result = core(runs, src, text_col, label_col)
    if json:
        return emit_json(result)
    from rich.console import Console
    from rich.table import Table

    n = f"n {result['n']}" + (f"   ensemble of {len(runs)} runs" if len(runs) > 1 else "")
    if result["task"] == REGRESSION:
        title = f"MAE {result['mae']:.4f}   RMSE {result['rmse']:.4f}   R^2 {result['r2']:.4f}   {n}"
        return Console(width=100).print(title)
    cols = ["label", "precision", "recall", "f1", "support"]
    if result["task"] == MULTI:
        title = f"micro-F1 {result['micro_f1']:.4f}   macro-F1 {result['macro_f1']:.4f}   {n}"
        cols.append("threshold")
    else:
        title = f"accuracy {result['accuracy']:.4f}   macro-F1 {result['macro_f1']:.4f}   {n}"
    t = Table(title=title)
    for col in cols:
        t.add_column(col, justify="right")
    for r in result["per_class"]:
        t.add_row(*(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    Console(width=100).print(t)
