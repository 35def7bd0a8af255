"""Option types shared by the commands, declared once. `None` means "not given": the preset decides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer

from ..config import DATA
from ..config import TRAIN as TRAIN  # the panel of the commands' own training options

Opts = SimpleNamespace  # what a command gets for an option block of takes_settings (its values by name)
LM_PANEL = "Language-model fine-tuning (the supervised and semi-supervised variants)"  # learning-curve's LM stage

Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (written atomically).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")]
Preset = Annotated[str, typer.Option(help="Sizes and epochs: tiny | small | paper. Any flag overrides it.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
CheckpointEvery = Annotated[
    int, typer.Option(help="Also checkpoint every N optimizer steps (0: at epoch ends only).", min=0)
]
Ensemble = Annotated[
    list[Path] | None,
    typer.Option(
        "--ensemble",
        help="Another finetune-clf run folder (same task and classes) whose outputs are averaged with RUN's, "
        "e.g. a --backwards model; repeat for more.",
        metavar="RUN2",
        show_default=False,
    ),
]
Quantize = Annotated[
    str | None,
    typer.Option(
        help="int8: dynamic quantization of the Linear and LSTM layers, on the CPU (the export and serve guide has "
        "what it costs and gains).",
        show_default=False,
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        help="torch | onnx: run the model in onnxruntime on the CPU (AWD-LSTM and --backbone hf runs; faster, with "
        "or without --quantize; needs the export extra; the graph is cached, see README).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
PrintSchedule = Annotated[
    bool, typer.Option("--print-schedule", help="Print the per-epoch plan (groups, peak rates) and exit.")
]
TextCol = Annotated[str, typer.Option(help="Column holding the text (tables).", rich_help_panel=DATA)]
LabelCol = Annotated[str, typer.Option(help="Column holding the label.", rich_help_panel=DATA)]
Dataset = Annotated[
    str | None, typer.Option(help="Hub dataset name instead of files (needs the network).", rich_help_panel=DATA)
]
Split = Annotated[str, typer.Option(help="Split of --dataset.", rich_help_panel=DATA)]
Encoding = Annotated[
    str | None,
    typer.Option(
        help="The input files' text encoding (e.g. latin-1, cp1252, utf-16); default UTF-8, where bytes that are "
        "not UTF-8 are counted, said on stderr and read as U+FFFD.",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(help="Token-id cache (default $ULMFIT_CACHE or ~/.cache/ulmfit).", rich_help_panel=DATA),
]
Backbone = Annotated[
    str | None,
    typer.Option(
        help="Check that RUN holds a model of this backbone (awd-lstm | transformer | hf): an error if not.",
        show_default=False,
    ),
]
BatchSize = Annotated[int, typer.Option(help="Documents per forward pass (sorted by length within it).", min=1)]
Threads = Annotated[
    int | None, typer.Option(help="CPU threads for torch and --engine onnx (default: torch's choice).", min=1, max=4096)
]


def _config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None):
    from ..configfile import callback

    return callback(ctx, param, value)


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A TOML file of this command's flags (keys: the flags' names, e.g. lr = 0.01; a multi-stage command "
        "takes a [pretrain], [finetune-lm] or [finetune-clf] table per stage); flags given here override it.",
        is_eager=True,
        callback=_config_callback,
        show_default=False,
    ),
]
PrintConfig = Annotated[
    bool,
    typer.Option("--print-config", help="Print the resolved settings as a --config file and exit."),
]
Track = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="tensorboard | mlflow (repeatable): log losses, rates, validation metrics and settings there "
        "(MLflow: to $MLFLOW_TRACKING_URI; needs the tracking extra). A failing tracker never fails the run.",
        show_default=False,
    ),
]
TrackDir = Annotated[
    Path | None,
    typer.Option(
        help="TensorBoard's folder: event files go to TRACK_DIR/RUN_NAME (default: RUN/tensorboard).",
        show_default=False,
    ),
]


def takes_settings(command: str, **blocks: dict):
    """Give the decorated command the flags of every setting declared for it (config.RunConfig's fields whose
    Flag names `command`), and call it with what was given as `settings` ({field: value or None}); a parameter
    `lm_settings` gets those declared for `command/lm` (flags --lm-NAME: learning-curve's LM stage).

    `blocks` are option blocks that several commands share (STAGE_RUN, TEXT_SOURCE): the command names a
    parameter after each (`run: Opts = None`) and is called with a namespace of the block's values there.
    The flags take the place of those parameters in the signature typer reads, so the command's own options keep
    their places around them."""

    def decorate(fn):
        import functools
        import inspect
        from types import SimpleNamespace

        own = inspect.signature(fn, eval_str=True).parameters
        groups = {"settings": _flags(command, ""), "lm_settings": _flags(f"{command}/lm", "lm_")}
        groups.update({name: _block(options) for name, options in blocks.items()})
        params = []
        for p in own.values():
            # keyword-only, all of them: typer calls a command with keywords, and a signature may not put
            # positional parameters after keyword-only ones
            params += groups[p.name].values() if p.name in groups else [p.replace(kind=p.KEYWORD_ONLY)]
        used = {name: g for name, g in groups.items() if name in own}

        @functools.wraps(fn)
        def command_with_settings(**kwargs):
            for name, group in used.items():
                values = {key: kwargs.pop(p.name) for key, p in group.items()}
                kwargs[name] = values if name in ("settings", "lm_settings") else SimpleNamespace(**values)
            return fn(**kwargs)

        command_with_settings.__signature__ = inspect.Signature(params)
        command_with_settings.__annotations__ = {p.name: p.annotation for p in params}
        return command_with_settings

    return decorate


def _block(options: dict) -> dict:
    import inspect

    return {
        name: inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in options.items()
    }


def _flags(target: str, prefix: str) -> dict:
    """{field: the keyword parameter typer reads for it} for the settings declared for `target`."""
    import inspect
    import typing

    from ..config import RunConfig, flag_of, settings_on

    hints = typing.get_type_hints(RunConfig)
    out = {}
    for f in settings_on(target):
        flag = flag_of(f)
        kind = hints[f.name]
        option = typer.Option(
            *flag.decls,
            help=flag.help_on(target),
            rich_help_panel=LM_PANEL if prefix else flag.panel,
            show_default=flag.show_default,
        )
        annotation = Annotated[kind | None, option]  # None: not given (the preset decides)
        out[f.name] = inspect.Parameter(
            prefix + f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )
    return out


# The option blocks several commands share (`takes_settings(..., run=STAGE_RUN)`): name: (annotation, default).
TEXT_SOURCE = {  # where a stage's text comes from, beside its file arguments
    "text_col": (TextCol, "text"),
    "encoding": (Encoding, None),
    "dataset": (Dataset, None),
    "split": (Split, "train"),
}
STAGE_RUN = {  # how a training stage runs and reports (pretrain, finetune-lm, finetune-clf)
    "overwrite": (Overwrite, False),
    "resume": (Resume, False),
    "checkpoint_every": (CheckpointEvery, 200),
    "json": (Json, False),
    "quiet": (Quiet, False),
    "print_schedule": (PrintSchedule, False),
    "config": (ConfigFile, None),
    "print_config": (PrintConfig, False),
    "track": (Track, None),
    "track_dir": (TrackDir, None),
}
MULTI_RUN = {  # how a command of many runs runs and reports (pipeline, learning-curve)
    "cache_dir": (CacheDir, None),
    "overwrite": (Overwrite, False),
    "json": (Json, False),
    "quiet": (Quiet, False),
    "config": (ConfigFile, None),
    "track": (Track, None),
    "track_dir": (TrackDir, None),
}
