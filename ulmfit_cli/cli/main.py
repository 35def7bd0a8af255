"""The `ulmfit` command: the typer app, the global flags and the error boundary."""

from __future__ import annotations

import functools
import signal
import sys
from inspect import cleandoc

import typer

from ..errors import Terminated, UlmfitError

app = typer.Typer(
    name="ulmfit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="ULMFiT transfer learning for text classification: pretrain -> finetune-lm -> finetune-clf.",
)
_state = {"debug": False}


def guarded(fn):
    """The one error boundary: a UlmfitError becomes one line on stderr and its exit code (a traceback only
    with --debug); Ctrl-C exits 130, SIGTERM 143 (both after the cleanup of a KeyboardInterrupt: training
    checkpoints first, a partial run folder is kept or removed). Anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except UlmfitError as e:
            if _state["debug"]:
                raise
            sys.stderr.write(f"ulmfit: error: {e}\n")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            stopped = isinstance(e, Terminated)
            sys.stderr.write(f"ulmfit: {'terminated (SIGTERM)' if stopped else 'interrupted'}\n")
            raise typer.Exit(143 if stopped else 130) from None

    return wrapper


def _terminate(signum, frame):
    raise Terminated


def _version(value: bool):
    if value:
        from .. import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    _state["debug"] = debug


def _register():
    from . import (
        evaluate,
        export,
        finetune_clf,
        finetune_lm,
        import_fastai,
        import_hf,
        info,
        inspect,
        learning_curve,
        lr_find,
        pipeline,
        predict,
        pretrain,
    )

    commands = {
        "pretrain": pretrain.pretrain,
        "finetune-lm": finetune_lm.finetune_lm,
        "finetune-clf": finetune_clf.finetune_clf,
        "predict": predict.predict,
        "evaluate": evaluate.evaluate,
        "info": info.info,
        "import-fastai": import_fastai.import_fastai,
        "import-hf": import_hf.import_hf,
        "inspect": inspect.inspect,
        "lr-find": lr_find.lr_find,
        "export": export.export,
        "learning-curve": learning_curve.learning_curve,
        "pipeline": pipeline.pipeline,
    }
    for name, fn in commands.items():
        command = guarded(fn)
        command.__doc__ = reflow(fn.__doc__)
        app.command(name)(command)


def reflow(doc: str | None) -> str:
    """A docstring as --help should show it: paragraphs kept, each one line (typer keeps a docstring's single line
    breaks after the first paragraph, and rich then wraps each source line by itself into ragged lines)."""
    paragraphs = cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


_register()


def run() -> None:
    app()
