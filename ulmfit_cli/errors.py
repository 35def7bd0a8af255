"""Every user-facing failure is a UlmfitError: one line, and an exit code that means something.

Exit codes (docs/guides/troubleshooting.md): 0 success; 2 bad invocation or bad input found before training starts;
1 a run that started and failed; 130 interrupted (Ctrl-C); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path


class UlmfitError(Exception):
    """A failure the user can act on. `str(err)` is the one line printed on stderr."""

    exit_code = 2


class InputError(UlmfitError):
    """A data file, column or label problem found before any training step."""


class ConfigError(UlmfitError):
    """A flag out of range or a combination of flags that cannot work."""


class RunFolderError(UlmfitError):
    """A run folder that is missing, of the wrong stage, incomplete, or unsafe to load."""


class TrainingError(UlmfitError):
    """A run that started and then failed (for example a NaN loss)."""

    exit_code = 1


class OutputError(UlmfitError):
    """The work was done and its results shown, but an output the user asked for could not be written."""

    exit_code = 1


class QualityError(UlmfitError):
    """A model that scored past a bound the user set (`evaluate --fail-under`): the results are out, the gate
    failed, as a CI job needs it to."""

    exit_code = 1


class WriteError(TrainingError):
    """An output could not be written (no space, read-only, quota, a vanished folder): exit 1, with the path,
    the reason and what to do."""

    def __init__(self, path, err: BaseException | str, advice: str = "free space there (or choose a writable place)"):
        self.path, self.reason = path, err if isinstance(err, str) else reason_of(err)
        super().__init__(f"{path}: could not write it ({self.reason}); {advice}")


def reason_of(err: BaseException) -> str:
    """An OSError's reason in words ("No space left on device"), or the first line of another error's message."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return (str(err).splitlines() or [type(err).__name__])[0]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `timeout`, a container stop): handled as Ctrl-C is, but exits 143, not 130."""


@contextmanager
def written(path: Path):
    """Around a write of `path`: any failure to write it (an OSError, or the safetensors library's error for
    one) becomes a WriteError naming `path` and the reason, exit 1."""
    try:
        yield
    except OSError as e:
        raise WriteError(e.filename or path, e) from None
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        io = re.search(r"I/O error: (.*?)(?: \(os error \d+\))?$", str(e))  # "... I/O error: No space left ..."
        raise WriteError(path, OSError(0, io.group(1)) if io else e) from None
