from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import DATA, Encoding, Json, Quiet, TextCol


def inspect(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Data files: training first, then validation/test files to compare.",
            show_default=False,
            metavar="DATA",
        ),
    ],
    parent: Annotated[
        Path | None,
        typer.Option(help="A run folder whose tokenizer reads the text (token lengths, unknown tokens, suggestions)."),
    ] = None,
    text_col: TextCol = "text",
    encoding: Encoding = None,
    label_col: Annotated[
        str | None,
        typer.Option(help="Label column (default: label, if present).", rich_help_panel=DATA),
    ] = None,
    label_delim: Annotated[
        str | None, typer.Option(help="Labels are sets split on this string (as finetune-clf).", rich_help_panel=DATA)
    ] = None,
    max_len: Annotated[
        int | None, typer.Option(help="Tokens a classifier keeps (default: the parent's finetune-clf setting).", min=1)
    ] = None,
    json: Json = False,
    quiet: Quiet = False,
):
    """Check data before training: blank and duplicate texts, rows shared between files, labels, and (with
    --parent) how the run's tokenizer reads it. Each problem found gets a verdict line; exit 0 unless the data
    cannot be read."""
    from ..config import STAGES
    from ..runfolder.artifacts import open_run
    from ..workflows.inspect_data import inspect as core
    from .common import source_of
    from .report import Reporter, emit_json

    run = open_run(parent, STAGES, "inspect") if parent is not None else None
    report = core(
        [source_of(p, text_col, encoding) for p in data],
        text_col=text_col,
        label_col=label_col or "label",
        explicit_label=label_col is not None,
        label_delim=label_delim,
        parent=run,
        max_len=max_len,
        reporter=Reporter(quiet),
    )
    if json:
        return emit_json(report)
    show(report)


def show(r: dict) -> None:
    """The report as tables and verdict lines on stdout."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    files = r["files"]
    t = Table(title="files")
    for c in ("file", "rows", "blank", "exact dups", "near dups", "labels", "classes", "missing labels"):
        t.add_column(c, justify="left" if c in ("file", "labels") else "right")
    for f in files:
        lab = f["labels"] or {}
        kind = lab.get("kind", "none") + (f" ({lab['delimiter']!r})" if lab.get("delimiter") else "")
        classes = lab.get("classes", lab.get("distinct", "")) if lab else ""
        t.add_row(
            Text(f["source"]),
            *map(str, (f["rows"], f["blank"], f["exact_duplicates"], f["near_duplicates"])),
            kind,
            str(classes),
            str(lab.get("missing", "")),
        )
    console.print(t)
    for f in files:
        for e in f["duplicate_examples"]:
            console.print(Text(f"  duplicate in {f['source']} rows {e['rows'][0]} and {e['rows'][1]}: {e['text']}"))
    if r["pairs"]:
        t = Table(title="between files")
        for c in ("file", "vs", "shared rows", "exact", "labels only in file", "labels only in vs"):
            t.add_column(c, justify="left" if "file" in c or "vs" in c else "right")
        for p in r["pairs"]:
            g = p.get("labels") or {}
            t.add_row(
                Text(p["b"]),
                Text(p["a"]),
                str(p["shared_rows"]),
                str(p["exact"]),
                Text(_few(g.get("only_in_b", []))),
                Text(_few(g.get("only_in_a", []))),
            )
        console.print(t)
        for p in r["pairs"]:
            for e in p["examples"]:
                console.print(Text(f"  shared: {p['b']} row {e['row_b']} = {p['a']} row {e['row_a']}: {e['text']}"))
    _labels(console, files)
    if r["parent"]:
        t = Table(title=f"tokens under {r['parent']}")
        for c in ("file", "p50", "p90", "p99", "max", "> max_len", "unknown", "words in 4+ pieces"):
            t.add_column(c, justify="left" if c == "file" else "right")
        for f in files:
            k = f["tokens"]
            split = "n/a (word vocabulary)" if k["split_4plus"] is None else f"{k['split_4plus']:.1%}"
            t.add_row(
                Text(f["source"]),
                *map(str, (k["p50"], k["p90"], k["p99"], k["max"])),
                f"{k['over_max_len']:.1%} of {k['max_len']}",
                f"{k['unk_rate']:.2%}",
                split,
            )
        console.print(t)
        for f in files:
            if (w := f["tokens"].get("windows")) is not None:
                console.print(
                    f"{f['source']}: --long windows --window {w['window']} --stride {w['stride']} reads a document "
                    f"in {w['p50']} window(s) (p50), {w['p90']} (p90), {w['p99']} (p99), {w['max']} (max); "
                    f"--max-len {f['tokens']['max_len']} caps it at {w['cap']}"
                )
        s = r["suggest"]
        console.print(f"suggested for finetune-clf: --bptt {s['bptt']} --max-len {s['max_len']} --bs {s['bs']}")
    if not r["verdicts"]:
        console.print("verdict: no problems found")
    for v in r["verdicts"]:
        console.print(Text(f"verdict: {v['message']}"), soft_wrap=True)


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n})" if len(items) > n else "") if items else "-"


def _labels(console, files: list[dict], top: int = 20) -> None:
    """Counts per label and file (the most frequent `top` labels of all files), or a numeric label's range."""
    from collections import Counter

    from rich.table import Table
    from rich.text import Text

    labelled = [f for f in files if f["labels"]]
    if not labelled:
        return
    total = Counter()
    for f in labelled:
        total.update(f["labels"].get("counts", {}))
    numeric = [f for f in labelled if f["labels"]["kind"] == "numeric"]
    for f in numeric:
        lab = f["labels"]
        console.print(Text(f"{f['source']}: numeric labels {lab['min']:g} .. {lab['max']:g}, mean {lab['mean']:.4g}"))
    if not total:
        return
    t = Table(title="labels" + (f" (the {top} most frequent of {len(total)})" if len(total) > top else ""))
    t.add_column("label")
    for f in labelled:
        t.add_column(Text(f["source"]), justify="right")
    for label, _ in total.most_common(top):
        t.add_row(Text(label), *(str(f["labels"].get("counts", {}).get(label, 0)) for f in labelled))
    console.print(t)
