"""The `ulmfit` command: the typer app, the global flags and the error boundary."""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
from inspect import cleandoc

import typer

from ..errors import Terminated, UlmfitError

try:  # the UsageError typer raises: from its own copy of click in recent typer, else click's
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError


class _SwitchesShowNoType:
    """Help for switches (--json, --debug, --help): no value type beside them (typer would write <bool>)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""  # the help shows a metavar in the type column; a switch takes no value
        return params


class Command(_SwitchesShowNoType, typer.core.TyperCommand):
    """A command's help as users read it elsewhere: `Usage: ulmfit predict [OPTIONS] RUN [INPUT]` (typer writes a
    required argument as {RUN}), and switches without a value type."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = p.metavar or p.name.upper()
                pieces.append((name if p.required else f"[{name}]") + ("..." if p.nargs != 1 else ""))
        return pieces


class Group(_SwitchesShowNoType, typer.core.TyperGroup):
    """The `ulmfit` group, which also gives usage errors their one line: it parses its own arguments in
    make_context and each command's in invoke, so a usage error of any command passes through one of the two."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as e:
            _usage_error(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            _usage_error(e)


def _usage_error(e) -> None:
    """A usage error (an unknown flag, a value typer's own range check refuses, a missing argument) as every
    other error is: one line on stderr, exit 2 (typer would draw a box of several lines). `ulmfit` alone, or an
    error without a message, goes on to typer, which shows the help."""
    if type(e).__name__ == "NoArgsIsHelpError" or not e.format_message().strip():
        raise e
    command = e.ctx.command_path if getattr(e, "ctx", None) is not None else "ulmfit"
    sys.stderr.write(f"ulmfit: error: {' '.join(e.format_message().split())} (see `{command} --help`)\n")
    raise typer.Exit(2)


app = typer.Typer(
    cls=Group,
    name="ulmfit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # rich's markup would eat bracketed text ("pip install 'ulmfit-cli[export]'")
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
            result = fn(*args, **kwargs)
            if sys.stdout is not None:  # None: started with fd 1 closed
                sys.stdout.flush()  # here, not at exit: a full disk under stdout is then our one line below
            return result
        except OSError as e:
            if not _output_failed(e):
                raise
            raise typer.Exit(1) from None
        except UlmfitError as e:
            if _state["debug"]:
                raise
            sys.stderr.write(f"ulmfit: error: {e}{_from_config_file(e)}\n")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            stopped = isinstance(e, Terminated)
            sys.stderr.write(f"ulmfit: {'terminated (SIGTERM)' if stopped else 'interrupted'}\n")
            raise typer.Exit(143 if stopped else 130) from None

    return wrapper


def _from_config_file(e: UlmfitError) -> str:
    """A bad setting that may have come from --config: say which file, as the flag's name alone would not."""
    from ..errors import ConfigError
    from .common import caller

    loaded = caller().config_file
    if loaded is None or not isinstance(e, ConfigError) or "`--" not in str(e):
        return ""
    return f" (a flag here is also a key of --config {loaded['path']})"


# writing stdout (or stderr) failed: a full disk, an I/O error, a closed descriptor (a closed pipe is SIGPIPE's)
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG, errno.EROFS}
STD_NAMES = ("<stdout>", "<stderr>")


def _output_failed(e: OSError) -> bool:
    """Whether `e` is a failed write of stdout or stderr; if so, say it in one line (where stderr still takes it)."""
    if e.errno not in OUTPUT_ERRNOS or (e.filename is not None and e.filename not in STD_NAMES):
        return False
    _stdout_gone()
    try:
        sys.stderr.write(f"ulmfit: error: could not write the output ({os.strerror(e.errno)}); "
                         "free space there or write it elsewhere\n")  # fmt: skip
        sys.stderr.flush()
    except (OSError, AttributeError):  # stderr is what failed: the exit code says it
        pass
    return True


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that the interpreter's own flush at exit cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor (in-process tests): nothing to protect
        pass


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
    from .. import configfile
    from . import (
        distill,
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
        tune,
    )

    commands = {
        "pretrain": pretrain.pretrain,
        "finetune-lm": finetune_lm.finetune_lm,
        "finetune-clf": finetune_clf.finetune_clf,
        "distill": distill.distill,
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
        "tune": tune.tune,
    }
    configfile.COMMANDS.update(commands)  # --config reads the options' annotations
    for name, fn in commands.items():
        command = guarded(fn)
        command.__doc__ = reflow(fn.__doc__)
        app.command(name, cls=Command)(command)


def reflow(doc: str | None) -> str:
    """A docstring as --help should show it: paragraphs kept, each one line (typer keeps a docstring's single line
    breaks after the first paragraph, and rich then wraps each source line by itself into ragged lines)."""
    paragraphs = cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


_register()


class _ClosedStdout:
    """sys.stdout when the process started with fd 1 closed (`>&-`): writing is EBADF, which `guarded` reports in
    one line; a command that prints nothing runs as usual."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), "<stdout>")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), "<stdout>")


def run() -> None:
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:  # nowhere to say anything: exit codes still tell
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        app()
    except OSError as e:  # outside a command's own boundary (`guarded`): --help, usage errors
        if not _output_failed(e):
            raise
        sys.exit(1)
