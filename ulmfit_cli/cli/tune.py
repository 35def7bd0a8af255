from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import MULTI_RUN, TEXT_SOURCE, LabelCol, Opts, Preset, Threads, takes_settings

SEARCH = "Search"
WORKERS = "Workers (several processes or machines on one study)"


@takes_settings("tune", source=TEXT_SOURCE, opts=MULTI_RUN)
def tune(
    parent: Annotated[
        Path,
        typer.Argument(
            metavar="PARENT", help="Run folder the trials start from, as the stage's PARENT.", show_default=False
        ),
    ],
    train: Annotated[
        Path | None,
        typer.Argument(
            metavar="TRAIN",
            help="Training data: labelled rows (finetune-clf) or texts (finetune-lm).",
            show_default=False,
        ),
    ] = None,
    valid: Annotated[
        Path | None, typer.Option(help="Validation data that scores the trials (else --valid-pct of TRAIN).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the study's results and the best trial's run folder.")
    ] = Path("runs/tune"),
    stage: Annotated[
        str,
        typer.Option(
            help="finetune-clf (scored by --metric) | finetune-lm (scored by validation perplexity).",
            rich_help_panel=SEARCH,
        ),
    ] = "finetune-clf",
    trials: Annotated[
        int,
        typer.Option(
            help="Finished trials (complete or pruned) the study is to hold, across all its workers.",
            min=1,
            rich_help_panel=SEARCH,
            show_default=False,
        ),
    ] = ...,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Start no trial after this many seconds (a running one finishes).",
            min=0,
            rich_help_panel=SEARCH,
            show_default=False,
        ),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file of the settings to search: a table each, [lr] low = 1e-4 high = 1e-2 "
            "log = true, or choices = [...].",
            rich_help_panel=SEARCH,
            show_default=False,
        ),
    ] = None,
    space_preset: Annotated[
        str | None,
        typer.Option(
            help="awd-lstm | transformer | hf: a default space (the tune guide lists them); default: the "
            "parent's backbone's. Settings given as flags are left out of it.",
            rich_help_panel=SEARCH,
            show_default=False,
        ),
    ] = None,
    print_space: Annotated[
        bool, typer.Option("--print-space", help="Print the space as a --space file and exit.", rich_help_panel=SEARCH)
    ] = False,
    sampler: Annotated[
        str,
        typer.Option(
            help="tpe (Optuna's TPE) | random | grid (every combination of the space's choices and int ranges, "
            "each once, in random order): how each trial's settings are drawn.",
            rich_help_panel=SEARCH,
        ),
    ] = "tpe",
    pruner: Annotated[
        str,
        typer.Option(
            help="median | halving (successive halving) | none: which trials stop at an epoch end, on "
            "their validation score so far.",
            rich_help_panel=SEARCH,
        ),
    ] = "median",
    keep_all: Annotated[
        bool,
        typer.Option(
            "--keep-all", help="Keep every complete trial's run folder (else the best's only).", rich_help_panel=SEARCH
        ),
    ] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Where the study lives: a database URL (sqlite:///study.db, postgresql+psycopg://...) or "
            "a journal file on a shared file system (study.log); default: OUT/study.db. The same command "
            "on another process or machine adds a worker.",
            rich_help_panel=WORKERS,
            show_default=False,
        ),
    ] = None,
    study: Annotated[str, typer.Option(help="The study's name in --storage.", rich_help_panel=WORKERS)] = "tune",
    heartbeat: Annotated[
        int,
        typer.Option(
            help="Seconds between a running trial's heartbeats (database storages): a trial silent for "
            "twice this is failed and run again.",
            min=1,
            rich_help_panel=WORKERS,
        ),
    ] = 60,
    threads: Threads = None,
    preset: Preset = "small",
    source: Opts = None,
    label_col: LabelCol = "label",
    settings: dict | None = None,  # every setting of finetune-clf and finetune-lm: fixed for every trial
    opts: Opts = None,
):
    """Search a stage's settings on Optuna: each trial a real finetune-clf (or finetune-lm) run, scored on the
    validation data; trials clearly behind are stopped at an epoch end.

    Settings given as flags hold for every trial; --space (or a default space per backbone family) names the ones
    searched. A table of trials goes to stderr as they finish; OUT gets best.toml (the best trial's settings, for
    the stage's --config), its run folder, trials.csv and Optuna's pictures. The same command on several processes
    or machines with one --storage works on one study; rerun it after an interruption to continue."""
    import importlib.util

    from ..config import resolve, settings_on
    from ..errors import ConfigError
    from ..runfolder.artifacts import LM_STAGES, open_run
    from ..workflows import space as spaces
    from ..workflows.tune import Tune
    from ..workflows.tune import run as core
    from .common import caller, source_of, sources, start, tracked

    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("`ulmfit tune` searches with Optuna, which is not installed: pip install 'ulmfit-cli[tune]'")
    _check_choices(stage, sampler, pruner)
    if space is not None and space_preset is not None:
        raise ConfigError("give --space or --space-preset, not both")
    run = open_run(parent, LM_STAGES, "tune")
    given = {k: v for k, v in settings.items() if v is not None}
    other = sorted(set(given) - {f.name for f in settings_on(stage)})
    if other:
        flag = "--" + other[0].replace("_", "-")
        raise ConfigError(f"`{flag}` is not a {stage} setting: drop it, or give the --stage that takes it")
    base = resolve(stage, preset, given, run.config)
    if space is not None:
        dims = spaces.parse_file(space, stage, set(given))
    else:
        from ..config import adapter_defaults

        scale = adapter_defaults(stage, base.backbone, base.adapter).get("lr_scale", 1.0)
        family = space_preset or run.config.get("backbone", "awd-lstm")
        dims = spaces.preset(family, stage, set(given), scale)
    if sampler == "grid":  # a float range has no values to list: say so before any work
        spaces.grid(dims, f"`--space` {space}" if space is not None else f"the default {family} space")
    if print_space:
        import sys

        sys.stdout.write(spaces.render(dims, [f"ulmfit tune --space FILE: the settings searched ({stage})"]))
        return
    text_col, encoding = source.text_col, source.encoding
    (src,) = sources([train] if train else None, source.dataset, source.split, "training data", text_col,
                     encoding=encoding)  # fmt: skip
    reporter = start(base, opts.quiet, opts.track, opts.track_dir)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    t = Tune(
        parent=run, train=src, valid=source_of(valid, text_col, encoding) if valid else None, stage=stage,
        preset=preset, given=given, base=base, space=dims, trials=trials, out=out,
        trial_reporter=lambda: _quiet(reporter), timeout=timeout, storage=storage, study=study, heartbeat=heartbeat,
        sampler=sampler, pruner=pruner, keep_all=keep_all, text_col=text_col, label_col=label_col,
        cache_dir=opts.cache_dir, overwrite=opts.overwrite, caller=caller(),
    )  # fmt: skip
    record = {"stage": stage, "trials": trials, "preset": preset, "sampler": sampler, "pruner": pruner}
    summary = tracked(reporter, "tune", out, record, lambda: core(t, reporter))
    if not summary:  # torchrun: rank 0 reports
        return
    if opts.json:
        from .report import emit_json

        emit_json(summary)
    else:
        _table(summary)


CHOICES = {"--stage": ("finetune-clf", "finetune-lm"), "--sampler": ("tpe", "random", "grid"),
           "--pruner": ("median", "halving", "none")}  # fmt: skip


def _check_choices(stage: str, sampler: str, pruner: str) -> None:
    from ..errors import ConfigError

    for (flag, choices), value in zip(CHOICES.items(), (stage, sampler, pruner)):
        if value not in choices:
            raise ConfigError(f"`{flag}` must be {' or '.join(choices)}, got {value!r}")


def _quiet(reporter):
    """A trial's reporter: silent (the table of trials is the progress), tracking what the command tracks."""
    from .report import Reporter

    quiet = Reporter(quiet=True)
    quiet.tracking = reporter.tracking
    return quiet


def _table(summary: dict) -> None:
    """The study's trials on stdout, the complete ones best first."""
    from rich.console import Console
    from rich.table import Table

    from .report import _fmt

    done = [x for x in summary["trials"] if x["state"] == "complete"]
    rest = [x for x in summary["trials"] if x["state"] != "complete"]  # a pruned trial's value is its last epoch's
    done.sort(key=lambda x: x["value"], reverse=summary["direction"] == "maximize")
    names = sorted({k for x in summary["trials"] for k in x["params"]})
    best = summary["best"]
    title = f"study {summary['study']}: {summary['metric']}, " + (
        f"best trial {best['number']} ({summary['out']}/best.toml)" if best else "no complete trial"
    )
    t = Table(title=title)
    for col in ("trial", "state", summary["metric"], "epochs", "time_s", *names):
        t.add_column(col, justify="right")
    for x in done + rest:
        cells = [x["number"], x["state"], x["value"], x["epochs"], x["wall_s"], *(x["params"].get(n) for n in names)]
        t.add_row(*("-" if v is None else _fmt(v) for v in cells))
    Console(width=160).print(t)
