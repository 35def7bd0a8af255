"""Helpers shared by the command bodies (imported inside them, never at `--help` time)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import readers
from ..data.readers import Source
from ..errors import InputError


def sources(
    paths: list[Path] | None,
    dataset: str | None,
    split: str,
    what: str,
    text_col: str | None = "text",
    copy=True,
    encoding: str | None = None,
) -> list[Source]:
    """The inputs as Sources; with `copy`, a pipe, `<(...)` or `-` (stdin) is read once into a file, and a file of
    another `encoding` read as it (source_of)."""
    if dataset and paths:
        raise InputError(f"give {what} files or --dataset, not both")
    if dataset:
        return [Source(dataset=dataset, split=split)]
    if not paths:
        raise InputError(f"no {what} given; pass one or more files, or --dataset NAME")
    return [source_of(p, text_col or "text", encoding) if copy else Source(path=str(p)) for p in paths]


def check_file_out(path: Path, flag: str, kind: str, suffix: str) -> None:
    """Before any work: `path` names a `suffix` file (a `kind`) in a folder that exists."""
    from ..errors import ConfigError

    if path.suffix.lower() != suffix:
        raise ConfigError(f"`{flag}` writes {kind}; give a file name ending in {suffix}, got {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"`{flag}` {path} is a folder; give a file name ending in {suffix}")
    if not path.parent.is_dir():
        raise ConfigError(f"`{flag}`: the folder {path.parent} does not exist; create it first")


def check_backbone(run, backbone: str | None) -> None:
    """`--backbone` on predict/evaluate is a check: the run folder decides, a different request is an error."""
    from ..errors import ConfigError

    if backbone is not None and backbone != run.manifest.get("backbone"):
        raise ConfigError(f"`--backbone` is {backbone!r} but {run.path} holds a {run.manifest.get('backbone')} model")


def open_models(run: Path, ensemble: list[Path] | None, backbone: str | None, what: str) -> list:
    """RUN and every --ensemble run (an ensemble folder written by `pipeline` counts as its runs), opened and
    checked (kind, backbone, same task and classes) before any input is read."""
    from ..runfolder.artifacts import ensemble_members, open_run
    from ..tasks import check_ensemble

    paths = [m for p in [run, *(ensemble or [])] for m in (ensemble_members(p) or [p])]  # an ensemble folder: its runs
    runs = [open_run(p, ("finetune-clf",), what) for p in paths]
    for r in runs:
        check_backbone(r, backbone)
    check_ensemble(runs)
    return runs


def check_engine(engine: str, runs: list) -> None:
    """--engine: known, installed, and able to run every run's backbone (exit 2 before any input is read)."""
    from ..inference.onnx_engine import check

    for r in runs:
        check(engine, r.manifest.get("backbone"))


def show_schedule(stage: str, cfg) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..training.stage_parts import head_mult, print_plan

    rows = print_plan(stage, cfg)
    t = Table(
        title=f"{stage} schedule: lr {cfg.lr}, /{cfg.lr_factor} per lower group"
        + (f", head x{head_mult(cfg):g}" if head_mult(cfg) != 1 else "")
        + f", STLR cut_frac "
        f"{cfg.cut_frac} ratio {cfg.ratio:g}"
    )
    if not rows:
        Console().print("no epochs to run (--epochs 0)")
        return
    for k in rows[0]:
        t.add_column(k, justify="right")
    for r in rows:
        t.add_row(
            *(
                f"{v:.3g}" if isinstance(v, float) and v else ("frozen" if isinstance(v, float) else str(v))
                for v in r.values()
            )
        )
    Console(width=160).print(t)


def finish(summary: dict, as_json: bool, reporter) -> None:
    from .report import emit_json

    if not summary:  # a data-parallel process other than rank 0: rank 0 reports
        return
    reporter.table(reporter.rows, f"{summary['stage']}: {summary['out']} ({summary['wall_s']} s)")
    summary = {
        **summary,
        "estimate_s": reporter.estimate_s,
        "estimates": reporter.estimates,
        "train_s": reporter.train_s,
    }
    if as_json:
        emit_json(summary)


def start(cfg, quiet: bool, track: list[str] | None = None, track_dir: Path | None = None):
    """Join torchrun's process group if there is one, check the device and precision (and the --track
    libraries) before any work, and return the Reporter (progress and tracking from rank 0 only)."""
    from .. import dist
    from ..training import tracking
    from .report import Reporter

    kinds = tracking.check(track)
    w = dist.init(cfg.device)
    dist.check_precision(cfg.precision, dist.resolve_device(cfg.device))
    reporter = Reporter(quiet or not w.main)
    if kinds and w.main:
        reporter.tracking = tracking.Tracking(kinds, track_dir, lambda msg: reporter.notice(f"warning: {msg}"))
    return reporter


def set_pairs(pairs: list[str] | None, flag: str) -> dict:
    """`--clf-set KEY=VALUE` (repeatable) -> {field: value}, each value read as the type of that RunConfig field:
    any stage setting, also one no command of this one names (e.g. a finetune-clf flag added later)."""
    import dataclasses

    from ..config import RunConfig
    from ..errors import ConfigError

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    out = {}
    for pair in pairs or []:
        key, eq, text = pair.partition("=")
        name = key.strip().lstrip("-").replace("-", "_")
        if not eq or name not in fields or name in ("stage", "preset", "extra"):
            raise ConfigError(f"`{flag}` takes SETTING=VALUE with a stage setting such as lr=0.01; got {pair!r}")
        default = fields[name].default
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1", "yes")
            elif isinstance(default, int | float):
                value = type(default)(text)
            else:
                value = None if text.lower() == "none" else text
        except ValueError:
            raise ConfigError(f"`{flag} {pair}`: {text!r} is not a {type(default).__name__}") from None
        out[name] = value
    return out


def stage_flags(stage: str, given: dict, pairs: list[str] | None, flag: str) -> dict:
    """A stage's settings in pipeline / learning-curve: its --config table, under the command's own flags that
    were given (not None), under its `flag` SETTING=VALUE pairs."""
    from ..configfile import stage_settings

    file = caller().config_file
    return {
        **stage_settings(stage, file),
        **{k: v for k, v in given.items() if v is not None},
        **set_pairs(pairs, flag),
    }


def inputs() -> readers.Inputs:
    """The running command's readers.Inputs (what it has read: each input read and said once), kept in its click
    context so that it lives and dies with the command; outside one (a direct call), a fresh one."""
    ctx = current_context()
    if ctx is None:
        return readers.Inputs(warn=warning)
    return ctx.meta.setdefault("ulmfit.inputs", readers.Inputs(warn=warning))


def warn_inert(cfg, settings: dict) -> None:
    """A warning for each setting given on the command line that `cfg` leaves without effect (config.inert). Only
    the command line's: a --config file may hold every setting, as `info --config` writes one."""
    from ..config import inert

    ctx = current_context()
    if ctx is None:
        return
    source = ctx.get_parameter_source  # typer's click or click's own: the same enum, compared by name
    typed = [k for k, v in settings.items() if v is not None and getattr(source(k), "name", "") == "COMMANDLINE"]
    for line in inert(cfg, typed):
        warning(line)


def warning(msg: str) -> None:
    sys.stderr.write(f"warning: {msg}\n")  # said before the command's Reporter exists, and even with --quiet


def source_of(path, text_col: str = "text", encoding: str | None = None) -> Source:
    """readers.source_of with the command's inputs()."""
    return readers.source_of(path, text_col, encoding, inputs())


def caller():
    """What the running command hands its stages (artifacts.Caller): the file it read with --config, if any,
    which its click context holds (configfile.callback put it there)."""
    from ..configfile import loaded
    from ..runfolder.artifacts import Caller

    return Caller(config_file=loaded(current_context()))


def current_context():
    """The click context of the command running, None outside one. Recent typer runs its own copy of click
    (typer._click), whose contexts click's own get_current_context does not see."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context(silent=True)


def print_config(stage: str, cfg, more: dict | None = None) -> None:
    """`--print-config`: the resolved settings as a file for `--config`, on stdout."""
    from ..configfile import render

    file = caller().config_file
    header = [f"ulmfit {stage} --config FILE: the resolved settings"]
    if file:
        header.append(f"from {file['path']} (sha256 {file['sha256'][:12]}) and the command line")
    sys.stdout.write(render(stage, cfg, header, more))


def tracked(reporter, command: str, out: Path, settings: dict, body):
    """Run `body()` (a multi-stage command) as one tracked parent run whose children are its stages or points."""
    t = reporter.tracking
    if t is None:
        return body()
    t.group(command, out, settings)
    try:
        summary = body()
    except BaseException:
        t.group_end(None, failed=True)
        raise
    t.group_end(summary)
    return summary


def lm_stage(stage: str, cfg, parent, paths, out: Path, valid, source, cache_dir, opts) -> None:
    """pretrain and finetune-lm once their settings are resolved: --print-schedule, --print-config, or the run
    (`source`, `opts`: the TEXT_SOURCE and STAGE_RUN option blocks; `parent`: the run folder, None to pretrain)."""
    from ..training.stages import train_lm_stage

    if opts.print_schedule:
        return show_schedule(stage, cfg)
    if opts.print_config:
        return print_config(stage, cfg, {"text_col": source.text_col, "encoding": source.encoding})
    what = "corpus" if parent is None else "texts"
    srcs = sources(paths, source.dataset, source.split, what, source.text_col, encoding=source.encoding)
    reporter = start(cfg, opts.quiet, opts.track, opts.track_dir)
    summary = train_lm_stage(
        stage,
        cfg,
        srcs,
        out,
        text_col=source.text_col,
        parent=parent,
        valid=source_of(valid, source.text_col, source.encoding) if valid else None,
        cache_dir=cache_dir,
        **run_args(opts, reporter),
    )
    finish(summary, opts.json, reporter)


def run_args(opts, reporter) -> dict:
    """What a training stage takes from the STAGE_RUN options block: how to treat the folder, and the reporter."""
    return dict(
        overwrite=opts.overwrite,
        resume=opts.resume,
        checkpoint_every=opts.checkpoint_every,
        reporter=reporter,
        caller=caller(),
    )
