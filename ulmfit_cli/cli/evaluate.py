from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Backbone, BatchSize, Dataset, Encoding, Engine, Ensemble, Json, Quantize, Split, Threads


def evaluate(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Run folder of `ulmfit finetune-clf` (or a `pipeline` folder: its ensemble).",
            show_default=False,
        ),
    ],
    test: Annotated[Path | None, typer.Argument(metavar="TEST", help="Labelled test data.", show_default=False)] = None,
    ensemble: Ensemble = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default: the one used in training).")] = None,
    encoding: Encoding = None,
    label_col: Annotated[str | None, typer.Option(help="Label column (default: the one used in training).")] = None,
    dataset: Dataset = None,
    split: Split = "test",
    json: Json = False,
    backbone: Backbone = None,
    quantize: Quantize = None,
    engine: Engine = "torch",
    confusion_png: Annotated[
        Path | None,
        typer.Option(help="Also draw the confusion matrix into this PNG file (replaced if it exists)."),
    ] = None,
    batch_size: BatchSize = 64,
    threads: Threads = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            help="METRIC=BOUND: exit 1, after the results, when the metric is below the bound (e.g. accuracy=0.9; "
            "any metric evaluate reports for the task); repeatable. For a CI job that must fail when a model "
            "regresses.",
            show_default=False,
        ),
    ] = None,
    fail_over: Annotated[
        list[str] | None,
        typer.Option(
            help="METRIC=BOUND: exit 1 when the metric is above the bound (an error such as mae=0.5); repeatable.",
            show_default=False,
        ),
    ] = None,
):
    """Metrics of a classifier (or an ensemble) on labelled data, on stdout (JSON with --json).

    Accuracy, macro-F1, a per-class table and the confusion matrix; for multi-label micro/macro-F1 and a
    per-label table at the tuned thresholds; for regression MAE, RMSE, R^2. Nothing is written unless asked: the
    confusion-matrix picture goes only where --confusion-png says, never into the run folder."""
    from ..inference.predictor import evaluate as core
    from ..inference.quantize import check as check_quantize
    from ..tasks import MULTI, REGRESSION, task_of
    from .common import check_engine, check_file_out, open_models, sources, warning
    from .report import emit_json

    check_quantize(quantize)
    runs = open_models(run, ensemble, backbone, "evaluate")
    check_engine(engine, runs)
    gates = _gates(fail_under, "--fail-under", task_of(runs[0].manifest)) + _gates(
        fail_over, "--fail-over", task_of(runs[0].manifest)
    )
    if confusion_png is not None:
        check_file_out(confusion_png, "--confusion-png", "a PNG", ".png")
        if task_of(runs[0].manifest) in (MULTI, REGRESSION):
            from ..errors import ConfigError

            raise ConfigError("`--confusion-png` is for single-label classifiers; this run is not one")
    (src,) = sources([test] if test else None, dataset, split, "test data", text_col, encoding=encoding)
    result = core(runs, src, text_col, label_col, batch_size, threads, quantize, engine, warning)
    failed = _draw(result, runs[0], src, confusion_png) if confusion_png is not None else None
    if json:
        emit_json(result)
    else:
        _table(result)
    if failed:  # after the results: they took the work, and they are complete
        from ..errors import OutputError

        raise OutputError(f"{confusion_png}: could not draw the confusion matrix ({failed}); the results are complete")
    under = {"--fail-under": True, "--fail-over": False}
    missed = [
        f"{m} {result[m]:.4f} is {'below' if under[flag] else 'above'} the bound of {flag} {m}={bound:g}"
        for flag, m, bound in gates
        if (result[m] < bound if under[flag] else result[m] > bound)
    ]
    if missed:
        from ..errors import QualityError

        raise QualityError("; ".join(missed))


def _gates(pairs: list[str] | None, flag: str, task: str) -> list[tuple[str, str, float]]:
    """`METRIC=BOUND` pairs as (flag, metric, bound), refused before any work when malformed or naming a metric
    this run's task does not report."""
    import math

    from ..errors import ConfigError
    from ..tasks import REPORTED

    out = []
    for pair in pairs or []:
        name, eq, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        try:
            bound = float(text)
        except ValueError:
            bound = math.nan
        if not eq or not math.isfinite(bound):
            raise ConfigError(f"`{flag}` takes METRIC=BOUND, e.g. accuracy=0.9; got {pair!r}")
        if name not in REPORTED[task]:
            raise ConfigError(f"`{flag} {pair}`: a {task} run reports {', '.join(REPORTED[task])}; not {name!r}")
        out.append((flag, name, bound))
    return out


def _draw(result: dict, model, src, path: Path) -> str | None:
    """Draw the confusion matrix; on success list it in `result["plots"]`, else say why (the caller reports it
    after the results, which a failed picture must not cost)."""
    import sys

    from ..training.plots import confusion

    title = f"{model.path.name} on {src}: accuracy {result['accuracy']:.4f}, n {result['n']}"
    try:
        confusion(result["confusion"], model.manifest["classes"], path, title)
    except Exception as e:  # any failure to draw: reported as one line once the results are out
        return f"{type(e).__name__}: {e}"
    result["plots"]["confusion"] = str(path)
    sys.stderr.write(f"confusion matrix written to {path}\n")
    return None


def _table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..tasks import MULTI, REGRESSION

    runs = result["runs"]
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
