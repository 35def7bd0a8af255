from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Json


def info(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="A run folder of any stage, or a tune folder.", show_default=False)
    ],
    json: Json = False,
    config: Annotated[
        bool, typer.Option("--config", help="Print a --config file (TOML) that reproduces the run, and exit.")
    ] = False,
):
    """Show a run folder: stage, parent runs, backbone and sizes, tokenizer, inputs, final metrics, plots. A folder
    of `ulmfit tune`: its study (trials in each state, the best value, settings and run folder)."""
    from ..config import STAGES
    from ..runfolder.adapter_runs import sizes
    from ..runfolder.artifacts import describe, open_run
    from .report import emit_json

    if _is_tune(run):
        return _tune(run, json, config)
    opened = open_run(run, STAGES, "info")
    if config:
        return _config_file(opened)
    d = {**describe(opened), "disk": sizes(opened)}
    if json:
        return emit_json(d)
    _table(d)


def _kept(d: dict) -> dict:
    """The rows on the epoch chosen on validation (runs written before loop.Selection have none)."""
    from .report import _fmt

    if "kept_epoch" not in d:
        return {}
    sel = d["selection"]
    if d["best_epoch"] is None:
        best = f"none (no validation {sel['metric']})"
    else:
        best = f"{d['best_epoch']} ({sel['metric']} {_fmt(d['best'].get(sel['metric']))})"
    stop = f", stopped early (--patience {sel['patience']})" if d["stopped_early"] else ""
    return {"best epoch": best, "weights": f"epoch {d['kept_epoch']} (--keep {sel['keep']}){stop}"}


def _table(d: dict) -> None:
    from .report import _fmt

    def pairs(obj: dict, sep: str = " ") -> str:
        return ", ".join(f"{k}{sep}{_fmt(v)}" for k, v in obj.items())

    rows = {
        "stage": f"{d['stage']} (created {d['created']})",
        "parents": "\n".join(f"{p['stage']}  {p['path']}  ({p['status']})" for p in d["parents"]) or "none",
        "backbone": d["backbone"],
        "sizes": pairs(d["sizes"]),
        "tokenizer": f"{d['tokenizer']['kind']}, vocab_size {d['tokenizer']['vocab_size']}",
        "inputs": "\n".join(
            f"{i['source']}  {str(i['documents']) + ' documents  ' if 'documents' in i else ''}{i['fingerprint']}"
            for i in d["inputs"]
        ),
    }
    if "imported" in d:  # import-fastai / import-hf: where the weights came from
        keep = ("from", "hub_id", "commit", "path", "gguf_file", "architecture", "kind", "parameters", "license")
        rows["imported"] = pairs({k: v for k, v in d["imported"].items() if k in keep and v is not None})
        if d.get("lm_head") is False:
            rows["imported"] += ", no LM head (finetune-clf straight from it, or finetune-lm --new-lm-head)"
    if "distilled" in d:  # distill: whose answers the student learned, over which texts
        taught = d["distilled"]
        rows["distilled"] = "\n".join(
            [f"from {t['path']}  {t['weights_sha256'][:12]}" for t in taught["teachers"]]
            + [f"over {taught['texts']['rows']:,} texts  {taught['texts']['sha256'][:12]}"]
            + [f"temperature {taught['temperature']}, hard-weight {taught['hard_weight']}, engine {taught['engine']}"]
        )
    rows["on disk"] = _disk(d["disk"])
    if "tokens" in d:
        rows["tokens"] = pairs(d["tokens"])
    if "classes" in d:
        rows["classes"] = f"{len(d['classes'])}: {', '.join(d['classes'])}"
        rows["init"] = d["init"]
    rows.update(
        {
            "epochs": str(d["epochs"]),
            "final": pairs({k: v for k, v in d["final"].items() if k != "epoch"}),
            **_kept(d),
            "wall time": f"{d['wall_s']} s",
            "seed": str(d["seed"]),
            "versions": pairs({k: v for k, v in d["versions"].items() if v}),
            "plots": "\n".join(f"{k}: {p}" for k, p in d["plots"].items()) or "none",
        }
    )
    _show(d["path"], rows)


def _disk(disk: dict) -> str:
    """The folder's size; an adapter run's also says what it needs beside it (adapter_runs.sizes)."""
    text = f"{disk['folder_bytes'] / 1e6:.1f} MB"
    if "base_bytes" in disk:
        text += f" (adapters; the base weights it adapts, {disk['base_bytes'] / 1e6:.1f} MB, stay in {disk['base']})"
    return text


def _show(title: str, rows: dict) -> None:
    """Rows of (name, value) under `title`, on stdout."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title), show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in rows.items():
        t.add_row(k, Text(str(v)))  # Text: a path or label with [brackets] is not rich markup
    console = Console()
    if not console.is_terminal:  # a pipe or a file: wide enough that paths and fingerprints stay on one line
        console = Console(width=max(console.width, 160))
    console.print(t)


def _config_file(run) -> None:
    """`info RUN --config`: the run's resolved settings as a file for its stage's --config, with the command
    that takes it (parent and inputs as the manifest records them)."""
    import sys

    from ..config import from_dict
    from ..configfile import render
    from ..errors import ConfigError

    m = run.manifest
    if "imported" in m:
        raise ConfigError(f"{run.path} was imported (`ulmfit import-{m['imported'].get('from', 'hf')}`), not trained: "
                          "there are no training settings to write; import it again to reproduce it")  # fmt: skip
    stage = m["stage"]
    args = [m["parent"]["path"]] if m.get("parent") else []
    args += [i["source"] for i in m.get("inputs", [])]
    header = [f"the settings of {run.path} ({stage}, created {m.get('created')}); reproduce it with:",
              f"  ulmfit {stage} {' '.join(args)} --config THIS_FILE --out NEW_RUN"]  # fmt: skip
    if m.get("config_file"):
        header.append(f"it was configured from {m['config_file']['path']} (sha256 {m['config_file']['sha256'][:12]})")
    cols = m.get("columns", {})
    more = {"text_col": cols.get("text") or next((i.get("text_col") for i in m.get("inputs", [])), None)}
    if stage == "finetune-clf":
        more.update(label_col=cols.get("label"), init=m.get("init"))
    sys.stdout.write(render(stage, from_dict(m["config"]), header, more))


def _is_tune(path: Path) -> bool:
    import json

    from ..runfolder.workdir import KEY_FILE

    try:
        return json.loads((path / KEY_FILE).read_text(encoding="utf-8")).get("command") == "tune"
    except (OSError, ValueError, AttributeError):
        return False


def _tune(path: Path, as_json: bool, config: bool) -> None:
    """A tune folder: its study, read from its storage (the counts of other workers' trials included)."""
    import sys

    from ..errors import RunFolderError
    from ..workflows.tune_results import describe
    from .report import _fmt, emit_json

    d = describe(path)
    if config:  # the best trial's settings, as `--config` takes them
        if d["config"] is None:
            raise RunFolderError(f"{path}: no best.toml yet (no trial of the study has finished)")
        sys.stdout.write(Path(d["config"]).read_text(encoding="utf-8"))
        return
    if as_json:
        return emit_json(d)
    best = d.get("best")
    rows = {
        "tune": f"{d['stage']} study {d['study']!r}",
        "storage": d["storage"],
        "scored by": f"validation {d['metric']} ({d['direction']})",
        "parent": d["parent"],
        "data": f"{d['train']}" + (f", valid {d['valid']}" if d["valid"] else ""),
        "space": ", ".join(s["name"] for s in d["space"]),
    }
    if "error" in d:
        rows["study"] = d["error"]
    else:
        rows["trials"] = ", ".join(f"{n} {k}" for k, n in d["counts"].items() if n or k != "waiting")
        rows["best"] = "none yet" if best is None else f"trial {best['number']}: {d['metric']} {_fmt(best['value'])}"
        if best is not None:
            rows["best settings"] = ", ".join(f"{k} {_fmt(v)}" for k, v in best["params"].items())
            rows["best run"] = best["run"] or "not on this machine"
    rows["best.toml"] = d["config"] or "none yet"
    _show(d["path"], rows)
