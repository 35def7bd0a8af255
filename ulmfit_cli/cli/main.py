"""The `ulmfit` command: the typer app, the global flags and the error boundary."""

from __future__ import annotations

import functools
import signal
import sys

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
        info,
        inspect,
        learning_curve,
        lr_find,
        pipeline,
        predict,
        pretrain,
    )

    app.command("pretrain")(guarded(pretrain.pretrain))
    app.command("finetune-lm")(guarded(finetune_lm.finetune_lm))
    app.command("finetune-clf")(guarded(finetune_clf.finetune_clf))
    app.command("predict")(guarded(predict.predict))
    app.command("evaluate")(guarded(evaluate.evaluate))
    app.command("info")(guarded(info.info))
    app.command("import-fastai")(guarded(import_fastai.import_fastai))
    app.command("inspect")(guarded(inspect.inspect))
    app.command("lr-find")(guarded(lr_find.lr_find))
    app.command("export")(guarded(export.export))
    app.command("learning-curve")(guarded(learning_curve.learning_curve))
    app.command("pipeline")(guarded(pipeline.pipeline))


_register()


def run() -> None:
    app()
